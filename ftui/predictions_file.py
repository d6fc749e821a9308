"""A run's test predictions file: every test row with its true and predicted label and the scores, for error analysis."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ftui.data import LABEL, TEXT, TEXT_PAIR
from ftui.significance import THRESHOLD_COLUMN
from ftui.tasks import Task, TaskInfo


def save_predictions(path: Path, ds: Any, probs: np.ndarray, names: list[str], info: TaskInfo | None = None) -> None:
    """Every test row with its true and predicted label and the scores, for error analysis: class probabilities;
    label probabilities with the predicted label set; the predicted value and its error."""
    import pandas as pd

    from ftui.data_report import label_matrix

    info = info or TaskInfo()
    frame = pd.DataFrame({"text": ds[TEXT]})
    if TEXT_PAIR in ds.column_names:
        frame["text_pair"] = ds[TEXT_PAIR]
    if info.task is Task.REGRESSION:
        gold = np.asarray(ds[LABEL], dtype=np.float64)
        pred = probs.reshape(-1).astype(np.float64)
        frame["label"], frame["predicted"], frame["error"] = gold, pred, pred - gold
        # A number has no confidence; "correct" means closer than predicting the mean would be on average (the
        # mean absolute deviation), so the mistakes view lists the rows the model does worse on than a constant.
        frame["confidence"] = np.nan
        frame["correct"] = np.abs(pred - gold) <= np.abs(gold - gold.mean()).mean()
    elif info.task is Task.MULTI:
        gold_m, pred_m = label_matrix(ds) >= 0.5, probs >= info.threshold

        def words(row: np.ndarray) -> str:
            on = [n for n, v in zip(names, row, strict=True) if v]
            return ", ".join(on) if on else "none"

        frame["label"] = [words(r) for r in gold_m]
        frame["predicted"] = [words(r) for r in pred_m]
        frame["confidence"] = np.where(pred_m, probs, 1 - probs).min(-1)  # the least sure of its label decisions
        frame["correct"] = (gold_m == pred_m).all(-1)
        frame[THRESHOLD_COLUMN] = info.threshold  # what the p() columns were cut at: the label sets can be rebuilt
        for i, name in enumerate(names):
            frame[f"p({name})"] = probs[:, i]
        for i, name in enumerate(names):
            frame[f"y({name})"] = gold_m[:, i]  # the true label set, unambiguous whatever the label names hold
    else:
        pred = probs.argmax(-1)
        frame["label"] = [names[i] for i in ds[LABEL]]
        frame["predicted"] = [names[i] for i in pred]
        frame["confidence"] = probs.max(-1)
        frame["correct"] = frame["label"] == frame["predicted"]
        for i, name in enumerate(names):
            frame[f"p({name})"] = probs[:, i]
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp)
    os.replace(tmp, path)
