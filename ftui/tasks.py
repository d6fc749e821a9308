"""Label shapes (one class, several labels, a number): the one table of what each means for outputs, loss, metrics,
the best checkpoint and how a prediction reads, so the data, training, predict and UI code ask here, not branch."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftui.errors import FtuiError

log = logging.getLogger(__name__)

TASK_FILE = "task.json"  # beside labels.json in a saved model; absent = single-label (every model saved before it)
THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)  # what threshold tuning tries on validation


class Task(str, Enum):
    """What a label is; the value is what configs, run records and task.json hold."""

    SINGLE = "single_label"  # one class per text: softmax, cross-entropy
    MULTI = "multi_label"  # any number of labels per text: a sigmoid per label, binary cross-entropy
    REGRESSION = "regression"  # a number per text: one output, mean squared error

    @property
    def problem_type(self) -> str:
        """transformers' config.problem_type for this shape (what a pipeline reading the saved model expects)."""
        return {"single_label": "single_label_classification", "multi_label": "multi_label_classification"}.get(
            self.value, "regression"
        )

    @property
    def primary(self) -> str:
        """The validation metric the best checkpoint is chosen by (ties broken by the lower loss)."""
        return {"single_label": "accuracy", "multi_label": "micro_f1", "regression": "rmse"}[self.value]

    @property
    def higher_is_better(self) -> bool:
        """False for errors (RMSE), True for scores."""
        return self is not Task.REGRESSION

    @property
    def label(self) -> str:
        """How the UI names it."""
        return {"single_label": "single-label classes", "multi_label": "multi-label", "regression": "regression"}[self.value]


TASK_CHOICES = ("auto", *(t.value for t in Task))  # what the Data tab and --task offer; auto = detect from the column


def n_outputs(task: Task, names: list[str]) -> int:
    """Logits the head has: one per class or label, one for a regression target."""
    return 1 if task is Task.REGRESSION else len(names)


@dataclass(frozen=True)
class TaskInfo:
    """What a saved model needs besides its weights to read its inputs and outputs (task.json)."""

    task: Task = Task.SINGLE
    threshold: float = 0.5  # multi-label: a label is predicted when its probability reaches this
    threshold_tuned: bool = False  # multi-label: the threshold was chosen on validation (else the configured one)
    long_text: str = "truncate"  # how the model reads a text longer than max_length (ftui.config.LONG_TEXT)

    def to_json(self) -> str:
        """task.json's text."""
        return json.dumps({**asdict(self), "task": self.task.value})


def save_task(folder: Path, info: TaskInfo) -> None:
    """Write task.json into a model folder."""
    (folder / TASK_FILE).write_text(info.to_json())


def read_task(folder: Path) -> TaskInfo:
    """task.json of a model folder; a folder without one holds a single-label classifier."""
    path = folder / TASK_FILE
    if not path.exists():
        return TaskInfo()
    try:
        d = json.loads(path.read_text())
        return TaskInfo(Task(d["task"]), float(d.get("threshold", 0.5)), bool(d.get("threshold_tuned", False)),
                        str(d.get("long_text", "truncate")))  # fmt: skip
    except (ValueError, KeyError, TypeError) as exc:  # a damaged file must not pass for another task silently
        raise ValueError(f"{path} is not a task file: {exc}") from exc


# ------------------------------------------------------------------------------------------------- the head's output
def scores(task: Task, logits: torch.Tensor) -> torch.Tensor:
    """What a prediction reports per output: class probabilities (summing to 1), label probabilities (each 0-1),
    or the predicted value."""
    logits = logits.float()
    if task is Task.SINGLE:
        return torch.softmax(logits, -1)
    if task is Task.MULTI:
        return torch.sigmoid(logits)
    return logits[..., :1]


def loss(
    task: Task, logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """The training loss: cross-entropy (weights per class), binary cross-entropy with logits (weights = positive
    weight per label), or mean squared error."""
    logits = logits.float()
    if task is Task.SINGLE:
        return nn.functional.cross_entropy(logits, y, weight=weights, reduction=reduction)
    if task is Task.MULTI:
        per = nn.functional.binary_cross_entropy_with_logits(logits, y.float(), pos_weight=weights, reduction="none")
        per = per.mean(-1)  # one number per text, so 'sum' counts texts like the other shapes
        return per.mean() if reduction == "mean" else per.sum()
    return nn.functional.mse_loss(logits[:, 0], y.float(), reduction=reduction)


def metrics(task: Task, out: np.ndarray, y: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Validation/test metrics from scores (see `scores`) and labels: accuracy and macro-F1; micro/macro-F1 and subset
    accuracy (reported as 'accuracy', scikit-learn's accuracy_score on label sets); RMSE, MAE, Pearson, Spearman."""
    from ftui import metrics as m

    if task is Task.SINGLE:
        return m.compute_metrics(out.argmax(-1).tolist() if out.size else [], y.tolist())
    if task is Task.MULTI:
        return m.multilabel_metrics(out >= threshold, y >= 0.5)
    return m.regression_metrics(out.reshape(-1), y.reshape(-1))


def better(task: Task, new: dict[str, float], best: dict[str, Any] | None) -> bool:
    """Whether an evaluation beats the best so far: the primary metric, then the lower loss."""
    key = task.primary
    if not (math.isfinite(new[key]) and math.isfinite(new["loss"])):
        return False  # a NaN or infinite score is never the best (NaN compares false both ways)
    if best is None or not math.isfinite(best[key]):
        return True
    sign = 1.0 if task.higher_is_better else -1.0
    return (sign * new[key], -new["loss"]) > (sign * best[key], -best["loss"])


def tune_threshold(probs: np.ndarray, y: np.ndarray, default: float = 0.5) -> tuple[float, float]:
    """(threshold, micro-F1) maximising micro-F1 on these labels over THRESHOLDS; ties go to the one nearest the
    default, so a flat curve keeps the usual 0.5."""
    from ftui.metrics import multilabel_metrics

    best_t, best_f1 = default, -1.0
    for t in sorted(THRESHOLDS, key=lambda t: abs(t - default)):
        f1 = multilabel_metrics(probs >= t, y >= 0.5)["micro_f1"]
        if f1 > best_f1 + 1e-12:
            best_t, best_f1 = float(t), f1
    return best_t, best_f1


def predicted(info: TaskInfo, values: dict[str, float]) -> str:
    """A prediction in words: the top class; the labels at or above the threshold (or 'none'); the value."""
    if not values:
        return ""
    if info.task is Task.SINGLE:
        return max(values, key=values.__getitem__)
    if info.task is Task.MULTI:
        on = [k for k, v in sorted(values.items(), key=lambda kv: -kv[1]) if v >= info.threshold]
        return ", ".join(on) if on else "none"
    return f"{next(iter(values.values())):.4g}"


def class_weight_vector(spec: str, train_labels: np.ndarray, names: list[str], task: Task = Task.SINGLE) -> torch.Tensor | None:
    """Loss weights: None for "none". Single-label: per class, "balanced" gives n / (k * n_c) (a class 10x rarer weighs
    10x more, scikit-learn's convention). Multi-label: per label, a weight on its positives, "balanced" gives
    negatives / positives (BCEWithLogits' pos_weight). A custom list has one weight per class or label."""
    from ftui.config import parse_class_weights

    word = spec.strip().lower()
    if word in ("", "none"):
        return None
    if task is Task.REGRESSION:
        raise FtuiError("Class weights apply to classes and labels; this is a regression task.", "Set Class weights to 'none'.")
    if word == "balanced":
        if task is Task.MULTI:
            pos = train_labels.reshape(len(train_labels), -1).sum(0).astype(np.float64)
            neg = len(train_labels) - pos
            return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)
        counts = np.bincount(train_labels, minlength=len(names)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(names) * np.maximum(counts, 1)), 1.0)
        return torch.tensor(weights, dtype=torch.float32)
    custom = parse_class_weights(spec) or []
    what = "labels" if task is Task.MULTI else "classes"
    if len(custom) != len(names):
        raise FtuiError(
            f"{len(custom)} class weights were given for {len(names)} {what} ({', '.join(names)}).",
            f"Give one weight per {what[:-1]}, in that order, or choose 'balanced'.",
        )
    return torch.tensor(custom, dtype=torch.float32)
