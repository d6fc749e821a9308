"""Label columns cast to the shapes ftui.tasks knows: class names and indices, multi-label lists or 0/1 columns as
multi-hot vectors, numbers for regression; and which shape a label column holds."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import pandas as pd

from ftui.config import DataConfig
from ftui.errors import DataError
from ftui.readers import text_of
from ftui.tasks import Task


def is_string(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def is_classlabel(feature: Any) -> bool:
    return type(feature).__name__ == "ClassLabel"


def label_names_for(values: pd.Series, feature: Any, negative_is_missing: bool = False) -> tuple[list[str], dict[Any, int]]:
    """Names and a value→index map: ClassLabel kept, ints/bools by sorted value, strings sorted.

    negative_is_missing: integer labels below 0 mean "unlabelled" (the convention of some Hub test splits); a user's
    own file keeps them as classes (-1/0/1 sentiment is common).
    """
    if is_classlabel(feature):
        names = list(feature.names)
        return names, {i: i for i in range(len(names))}
    present = values.dropna()
    if present.empty:
        raise DataError("The label column is empty.", "Pick the column that holds the class of each row (--label-column).")
    first = present.iloc[0]
    if _is_listlike(first) or isinstance(first, dict):
        raise DataError(
            "The label column holds lists, and single-label classes were asked for.",
            "Choose the label shape 'multi_label' (or 'auto') in the Data tab (CLI: --task multi_label), or pick a column "
            "with one class per row (--label-column).",
        )
    if pd.api.types.is_bool_dtype(present):
        return ["False", "True"], {False: 0, True: 1}
    if pd.api.types.is_float_dtype(present):
        if not all(float(v).is_integer() for v in present):
            raise DataError(
                "The label column holds non-integer numbers, and single-label classes were asked for.",
                "Choose the label shape 'regression' (or 'auto') in the Data tab (CLI: --task regression), or bin the scores "
                "into classes first.",
            )
        present = present.astype("int64")
    if pd.api.types.is_integer_dtype(present):
        uniq = sorted(int(v) for v in present.unique() if int(v) >= 0 or not negative_is_missing)
        return [str(v) for v in uniq], {v: i for i, v in enumerate(uniq)}
    uniq_s = sorted({str(v).strip() for v in present if str(v).strip()})
    return uniq_s, {v: i for i, v in enumerate(uniq_s)}


MULTI_SEPARATORS = "|;,"  # how a spreadsheet cell lists several labels: "action|comedy"


def _is_listlike(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or getattr(value, "ndim", 0) > 0  # ndim: numpy arrays from Arrow lists


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def as_items(value: Any, split_strings: bool) -> list[str] | None:
    """A cell of a multi-label column as its labels: a list, a JSON list in a string ('["a", "b"]'), or with
    split_strings a string listing them ("a|b"); None when the cell is missing or not a list."""
    if is_missing(value):
        return None
    if _is_listlike(value):
        return [str(text_of(v)).strip() for v in list(value) if not is_missing(v) and str(v).strip()]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return [str(text_of(v)).strip() for v in parsed if not is_missing(v) and str(v).strip()]
        if split_strings:
            sep = next((c for c in MULTI_SEPARATORS if c in text), None)
            parts = text.split(sep) if sep else [text]
            return [p.strip() for p in parts if p.strip()]
    return None


def detect_task(values: pd.Series, feature: Any, cfg: DataConfig) -> Task:
    """The label shape: the one asked for, else several label columns or lists → multi-label, non-integer numbers →
    regression, anything else → single-label classes."""
    if cfg.label_columns:
        return Task.MULTI
    if cfg.task != "auto":
        return Task(cfg.task)
    if type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return Task.MULTI
    present = values.dropna()
    if present.empty:
        return Task.SINGLE
    if any(as_items(v, split_strings=False) is not None for v in present.iloc[:50]):
        return Task.MULTI
    if pd.api.types.is_float_dtype(present) and not all(float(v).is_integer() for v in present):
        return Task.REGRESSION
    return Task.SINGLE


def _inner_names(feature: Any) -> list[str] | None:
    inner = getattr(feature, "feature", None)
    return list(inner.names) if is_classlabel(inner) else None


def multi_label_names(values: pd.Series, feature: Any) -> list[str]:
    """Every label that occurs in a list column, sorted (a Sequence of ClassLabel keeps its own names and order)."""
    names = _inner_names(feature)
    if names is not None:
        return names
    seen: set[str] = set()
    for v in values:
        items = as_items(v, split_strings=True)
        if items:
            seen.update(items)
    if not seen:
        raise DataError("The label column holds no labels.", "Pick the column that lists each text's labels (--label-column).")
    return sorted(seen)


def _multi_hot(values: pd.Series, names: list[str], feature: Any) -> tuple[list[list[float] | None], int]:
    """0/1 vectors per row (None where the label cell is missing) and how many rows named labels not in `names`."""
    index = {n: i for i, n in enumerate(names)}
    by_id = _inner_names(feature) is not None
    out: list[list[float] | None] = []
    unknown = 0
    for v in values:
        items = as_items(v, split_strings=True)
        if items is None:
            out.append(None)
            continue
        vec = [0.0] * len(names)
        for item in items:
            i = int(item) if by_id and item.lstrip("-").isdigit() else index.get(item, -1)
            if 0 <= i < len(names):
                vec[i] = 1.0
            else:
                unknown += 1
        out.append(vec)
    return out, unknown


def _columns_multi_hot(df: pd.DataFrame, cols: tuple[str, ...]) -> list[list[float] | None]:
    """0/1 vectors from several indicator columns (1/0, true/false, yes/no); None where a cell is missing."""
    truth = {"1": 1.0, "0": 0.0, "true": 1.0, "false": 0.0, "yes": 1.0, "no": 0.0, "1.0": 1.0, "0.0": 0.0}
    columns = []
    for c in cols:
        vals = []
        for v in df[c]:
            if is_missing(v):
                vals.append(None)
                continue
            key = str(v).strip().lower()
            if key not in truth:
                raise DataError(
                    f"The label column '{c}' holds {str(v)[:40]!r}; multi-label columns hold 0/1 (or true/false).",
                    "Choose only the 0/1 indicator columns, one per label (--label-columns a,b,c).",
                )
            vals.append(truth[key])
        columns.append(vals)
    return [None if any(x is None for x in row) else list(row) for row in zip(*columns, strict=True)]


def _numbers(values: pd.Series, column: str) -> list[float | None]:
    """Regression targets: numbers (a text that reads as one too); None for a missing cell or a non-number."""
    nums = pd.to_numeric(values, errors="coerce")
    if values.notna().any() and nums.notna().sum() == 0:
        raise DataError(
            f"The label column '{column}' holds no numbers, and regression was asked for.",
            "Pick a column of scores (--label-column), or choose the label shape 'single_label' for classes "
            "(--task single_label).",
        )
    values64 = nums.astype("float64").to_numpy()
    # Training runs in float32, where the squared errors of targets this large overflow (1e308 is finite in
    # float64, infinite in float32): such a loss turns NaN and poisons the model, so those rows are refused by number.
    huge = [i for i, x in enumerate(values64) if not math.isnan(x) and not abs(x) < TARGET_LIMIT]
    if huge:
        rows = ", ".join(str(i + 1) for i in huge[:10]) + (f" and {len(huge) - 10} more" if len(huge) > 10 else "")
        raise DataError(
            f"The regression target in '{column}' is too large to train on in row(s) {rows} (counting data rows from "
            f"1): values must lie within ±{TARGET_LIMIT:.2g}, and e.g. {values64[huge[0]]:g} does not.",
            "Fix or drop those rows, or rescale the column (e.g. divide it by a constant or take its logarithm).",
        )
    return [None if math.isnan(x) else float(x) for x in values64]


# Beyond this the squared errors of a batch overflow float32 (its largest value is 3.4e38; a batch of up to 65,536
# targets of 1e16 sums to 6.6e36), and no float32 model resolves such numbers anyway.
TARGET_LIMIT = 1e16


def label_encoder(
    task: Task, cfg: DataConfig, label_col: str, feature: Any, all_labels: pd.Series, notes: list[str]
) -> tuple[Callable[[pd.DataFrame], list[Any]], list[str], Any]:
    """(frame → encoded labels with None for missing, label names, the standard label feature) for a label shape."""
    import datasets

    if task is Task.SINGLE:
        names, mapping = label_names_for(all_labels, feature, negative_is_missing=cfg.source == "hub")
        present = all_labels.dropna()
        is_str = not is_classlabel(feature) and not (
            pd.api.types.is_numeric_dtype(present) or pd.api.types.is_bool_dtype(present)
        )

        return (lambda frame: _standardize_labels(frame[label_col], mapping, is_str)), names, datasets.ClassLabel(names=names)
    vector = datasets.List(datasets.Value("float32"))
    if task is Task.REGRESSION:
        notes.append(f"Regression: predicting the number in '{label_col}' (mean squared error).")
        return (lambda frame: _numbers(frame[label_col], label_col)), [label_col], datasets.Value("float32")
    if cfg.label_columns:
        cols = tuple(cfg.label_columns)
        notes.append(f"Multi-label: {len(cols)} labels from the 0/1 columns {', '.join(cols)}.")
        return (lambda frame: _columns_multi_hot(frame, cols)), list(cols), vector
    names = multi_label_names(all_labels, feature)
    notes.append(f"Multi-label: {len(names)} labels from the lists in '{label_col}'.")

    def multi(frame: pd.DataFrame) -> list[Any]:
        vecs, unknown = _multi_hot(frame[label_col], names, feature)
        if unknown:
            notes.append(f"{unknown} label(s) outside the known labels were ignored.")
        return vecs

    return multi, names, vector


def _standardize_labels(values: pd.Series, mapping: dict[Any, int], is_str: bool) -> list[int | None]:
    def to_index(v: Any) -> int | None:
        if is_missing(v):
            return None
        key = str(v).strip() if is_str else (int(v) if not isinstance(v, bool) else v)
        i = mapping.get(key, -1)
        return i if i >= 0 else None

    return [to_index(v) for v in values]
