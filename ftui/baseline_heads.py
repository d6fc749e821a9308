"""What a baseline fits on its features, per label shape: logistic regression (classes), one-vs-rest logistic
regression with its threshold tuned on validation (label sets), ridge regression (numbers); the regularisation chosen
on the validation split by the shape's own score, every score computed by the one implementation (ftui.tasks)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ftui import tasks
from ftui.errors import StopRequested
from ftui.tasks import Task

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried on the validation split
ALPHA_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # ridge penalties tried on the validation split (regression)
ESTIMATORS = {  # the final step's name in the saved pipeline, and what the model card calls it
    Task.SINGLE: ("logistic", "logistic regression"),
    Task.MULTI: ("logistic", "one-vs-rest logistic regression (one per label)"),
    Task.REGRESSION: ("ridge", "ridge regression"),
}


def logistic(c: float, seed: int) -> Any:
    """The classifier on top of either featurisation."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=seed)


def one_vs_rest(c: float, seed: int) -> Any:
    """Multi-label: an independent logistic regression per label (a label never or always present in train is a
    constant, as scikit-learn's OneVsRestClassifier makes it)."""
    from sklearn.multiclass import OneVsRestClassifier

    return OneVsRestClassifier(logistic(c, seed))


def ridge(alpha: float, seed: int) -> Any:
    """Regression: least squares with an L2 penalty."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=alpha, random_state=seed)


def full_probabilities(clf: Any, x: Any, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (a class absent from train gets probability 0)."""
    out = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def outputs(task: Task, model: Any, x: Any, n_outputs: int) -> np.ndarray:
    """What a prediction reports (as ftui.tasks.scores): class probabilities, label probabilities, or the value."""
    if task is Task.SINGLE:
        return full_probabilities(model, x, n_outputs)
    if task is Task.MULTI:
        with warnings.catch_warnings():  # a constant label's "estimator" has no feature names: sklearn says so each call
            warnings.simplefilter("ignore", UserWarning)
            return np.asarray(model.predict_proba(x), dtype=np.float64).reshape(x.shape[0], n_outputs)
    return np.asarray(model.predict(x), dtype=np.float64).reshape(-1, 1)


def loss(task: Task, out: np.ndarray, y: np.ndarray) -> float:
    """The shape's loss of the outputs: log loss, mean binary cross-entropy over labels, or mean squared error."""
    if not len(y):
        return 0.0
    if task is Task.SINGLE:
        return float(-np.mean(np.log(np.clip(out[np.arange(len(y)), y], 1e-12, 1.0))))
    if task is Task.MULTI:
        p, g = np.clip(out, 1e-12, 1 - 1e-12), y >= 0.5
        return float(-np.mean(np.where(g, np.log(p), np.log(1 - p))))
    return float(np.mean((out.reshape(-1) - y.reshape(-1)) ** 2))


@dataclass(frozen=True)
class Fitted:
    """The estimator chosen on validation, with what it was chosen by."""

    model: Any
    param: str  # "C" or "alpha"
    value: float
    scores: list[dict[str, float]]  # validation metrics at each value tried
    threshold: float  # multi-label: the decision threshold (tuned on validation, or the configured one)
    val_out: np.ndarray  # validation outputs of the chosen estimator


def _rank(task: Task, m: dict[str, float]) -> tuple[float, float]:
    """Higher is better: accuracy then macro-F1; micro-F1 then macro-F1; the lowest RMSE then the lowest MAE."""
    if task is Task.SINGLE:
        return m["accuracy"], m["macro_f1"]
    if task is Task.MULTI:
        return m["micro_f1"], m["macro_f1"]
    return -m["rmse"], -m["mae"]


def fit_head(
    task: Task,
    x: dict[str, Any],
    y: dict[str, np.ndarray],
    n_outputs: int,
    seed: int,
    stop: Callable[[], bool],
    make: Callable[[float, int], Any] | None = None,
    threshold: float = 0.5,
    tune: bool = True,
) -> Fitted:
    """Fit the shape's estimator at each regularisation of its grid on train; keep the one that scores best on
    validation (the first of equals: the most regularised). Multi-label: each is scored at the threshold tuned on
    validation (tasks.tune_threshold, as fine-tuned models are) unless `tune` is off."""
    if make is None:
        make = {Task.SINGLE: logistic, Task.MULTI: one_vs_rest, Task.REGRESSION: ridge}[task]
    param, grid = ("alpha", ALPHA_GRID) if task is Task.REGRESSION else ("C", C_GRID)
    target = (y["train"] >= 0.5).astype(int) if task is Task.MULTI else y["train"]
    best: tuple[tuple[float, float], Fitted] | None = None
    scores = []
    for value in grid:
        if stop():
            raise StopRequested
        with warnings.catch_warnings():  # OneVsRest warns once per label that is never (or always) on in train
            warnings.simplefilter("ignore", UserWarning)
            model = make(value, seed).fit(x["train"], target)
        out = outputs(task, model, x["validation"], n_outputs)
        t = tasks.tune_threshold(out, y["validation"], threshold)[0] if task is Task.MULTI and tune else threshold
        m = tasks.metrics(task, out, y["validation"], t)
        scores.append({param: value, **m, **({"threshold": t} if task is Task.MULTI else {})})
        if best is None or _rank(task, m) > best[0]:
            best = (_rank(task, m), Fitted(model, param, value, scores, t, out))
    assert best is not None
    return best[1]
