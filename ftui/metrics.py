"""The one implementation of every score: accuracy and macro-F1, per-class, multi-label and regression metrics
(scikit-learn's definitions, tested equal to scikit-learn; no scripts fetched from the Hub, so online and offline agree)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


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


def compute_metrics(preds: Sequence[int], labels: Sequence[int]) -> dict[str, float]:
    """{'accuracy', 'macro_f1'} for class predictions against labels."""
    return {"accuracy": accuracy(preds, labels), "macro_f1": macro_f1(preds, labels)}


def confusion(preds: Sequence[int], labels: Sequence[int], n_classes: int) -> np.ndarray:
    """Counts [true class, predicted class] (scikit-learn's confusion_matrix layout)."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=np.int64), np.asarray(preds, dtype=np.int64)), 1)
    return m


def _prf(tp: float, fp: float, fn: float) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts, 0 where undefined (scikit-learn's zero_division=0)."""
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def per_class(preds: Sequence[int], labels: Sequence[int], names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class (0 where undefined, as scikit-learn with zero_division=0)."""
    m = confusion(preds, labels, len(names))
    rows = []
    for i, name in enumerate(names):
        tp, fp, fn = float(m[i, i]), float(m[:, i].sum() - m[i, i]), float(m[i, :].sum() - m[i, i])
        precision, recall, f1 = _prf(tp, fp, fn)
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1, "support": int(m[i, :].sum())})
    return rows


def multilabel_metrics(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """Micro- and macro-F1 over labels and subset accuracy (every label of a text right), from boolean (texts, labels)
    matrices; scikit-learn's definitions with zero_division=0. 'accuracy' is the subset accuracy."""
    p, y = np.asarray(pred, dtype=bool), np.asarray(gold, dtype=bool)
    if p.size == 0:
        return {"accuracy": 0.0, "micro_f1": 0.0, "macro_f1": 0.0}
    tp = (p & y).sum(0).astype(np.float64)
    fp = (p & ~y).sum(0).astype(np.float64)
    fn = (~p & y).sum(0).astype(np.float64)
    denom = 2 * tp + fp + fn
    per_label = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    micro_denom = denom.sum()
    return {
        "accuracy": float((p == y).all(1).mean()),
        "micro_f1": float(2 * tp.sum() / micro_denom) if micro_denom else 0.0,
        "macro_f1": float(per_label.mean()),
    }


def per_label(pred: np.ndarray, gold: np.ndarray, names: Sequence[str]) -> list[dict[str, Any]]:
    """Precision, recall, F1, support (texts carrying the label) and the counts behind them, per label of a
    multi-label task."""
    p, y = np.asarray(pred, dtype=bool), np.asarray(gold, dtype=bool)
    rows = []
    for i, name in enumerate(names):
        tp, fp, fn = float((p[:, i] & y[:, i]).sum()), float((p[:, i] & ~y[:, i]).sum()), float((~p[:, i] & y[:, i]).sum())
        precision, recall, f1 = _prf(tp, fp, fn)
        rows.append({"label": name, "precision": precision, "recall": recall, "f1": f1, "support": int(y[:, i].sum()),
                     "tp": int(tp), "fp": int(fp), "fn": int(fn)})  # fmt: skip
    return rows


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / denom) if denom > 0 else 0.0  # a constant prediction correlates with nothing


def regression_metrics(pred: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, Pearson and Spearman correlation (Pearson of average ranks, as scipy.stats.spearmanr)."""
    from scipy.stats import rankdata

    p, y = np.asarray(pred, dtype=np.float64), np.asarray(gold, dtype=np.float64)
    if p.size == 0:
        return {"rmse": 0.0, "mae": 0.0, "pearson": 0.0, "spearman": 0.0}
    err = p - y
    return {
        "rmse": float(np.sqrt((err * err).mean())),
        "mae": float(np.abs(err).mean()),
        "pearson": _pearson(p, y),
        "spearman": _pearson(rankdata(p), rankdata(y)),
    }
