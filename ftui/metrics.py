"""Accuracy and macro-F1: through `evaluate` when its scripts load, else the same numbers computed locally."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

_lock = threading.Lock()
_loaded: dict[str, Any] | None = None
_backend = ""


def accuracy(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Share of predictions equal to their label."""
    p, y = np.asarray(preds), np.asarray(labels)
    return float((p == y).mean()) if len(y) else 0.0


def macro_f1(preds: Sequence[int], labels: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over classes seen in labels or predictions (scikit-learn's rule)."""
    p, y = np.asarray(preds), np.asarray(labels)
    classes = np.union1d(p, y)
    if len(classes) == 0:
        return 0.0
    scores = []
    for c in classes:
        tp = float(np.sum((p == c) & (y == c)))
        fp = float(np.sum((p == c) & (y != c)))
        fn = float(np.sum((p != c) & (y == c)))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores))


def _load_evaluate() -> dict[str, Any] | None:
    """evaluate's accuracy and f1 modules, or None offline (they are fetched from the Hub at run time)."""
    global _loaded, _backend
    with _lock:
        if _backend:
            return _loaded
        try:
            import huggingface_hub.constants

            if huggingface_hub.constants.HF_HUB_OFFLINE:
                raise ConnectionError("offline")
            import evaluate

            _loaded = {"accuracy": evaluate.load("accuracy"), "f1": evaluate.load("f1")}
            _backend = "evaluate"
        except Exception:
            _loaded, _backend = None, "local"
        return _loaded


def backend() -> str:
    """'evaluate' or 'local': which implementation compute_metrics uses."""
    _load_evaluate()
    return _backend


def compute_metrics(preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """{'accuracy', 'macro_f1'} for class predictions against labels."""
    mods = _load_evaluate()
    if mods is not None:
        try:
            acc = mods["accuracy"].compute(predictions=list(preds), references=list(labels))["accuracy"]
            f1 = mods["f1"].compute(predictions=list(preds), references=list(labels), average="macro")["f1"]
            return {"accuracy": float(acc), "macro_f1": float(f1)}
        except Exception:
            pass  # fall through to the local numbers, which are the same formulas
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels)}


def confusion(preds: Sequence[int], labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] (scikit-learn's confusion_matrix layout)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return m


def per_class(preds: Sequence[int], labels: Sequence[int], names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn with zero_division=0)."""
    m = confusion(preds, labels, len(names))
    rows = []
    for i, name in enumerate(names):
        tp, fp, fn = float(m[i, i]), float(m[:, i].sum() - m[i, i]), float(m[i, :].sum() - m[i, i])
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(m[i, :].sum())})
    return rows
