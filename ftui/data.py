"""Loading datasets from the Hub, files, folders or the bundled demo, and preparing them for training: the standard
columns, the label shape, the splits (carved when missing) and the checks a model needs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftui.columns import detect_label_column, detect_text_columns
from ftui.config import DataConfig, ReadLimits, validate_data
from ftui.errors import DataError, FtuiError
from ftui.label_shapes import detect_task, label_encoder
from ftui.readers import FILE_SUFFIXES, check_rows, from_frames, read_table
from ftui.tasks import Task

# Inside the package when installed (pip install .), beside it in the repository and on a Space.
_PACKAGED_ASSETS = Path(__file__).resolve().parent / "assets"
_REPO_ASSETS = Path(__file__).resolve().parent.parent / "assets"
ASSETS = _PACKAGED_ASSETS if (_PACKAGED_ASSETS / "demo_reviews.csv").exists() else _REPO_ASSETS
DEMO_DATASET = ASSETS / "demo_reviews.csv"

TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"

VALIDATION_NAMES = ("validation", "valid", "dev", "val")
TEST_NAMES = ("test",)
CARVE_FRACTION = 0.1


@dataclass
class DataBundle:
    """Train/validation/test with standard columns text[, text_pair], label: a ClassLabel (single-label), a 0/1 float
    vector with one entry per label (multi-label) or a float (regression, whose one 'label name' is the target)."""

    splits: Any  # datasets.DatasetDict with keys train, validation, test
    text_columns: tuple[str, ...]
    label_column: str
    label_names: list[str]
    columns: list[str]
    notes: list[str] = field(default_factory=list)
    task: Task = Task.SINGLE

    @property
    def sizes(self) -> dict[str, int]:
        """Rows per split."""
        return {k: len(v) for k, v in self.splits.items()}


def load_raw(cfg: DataConfig, token: str | None = None, limits: ReadLimits | None = None) -> Any:
    """The dataset as its source has it: a DatasetDict of whatever splits exist."""
    import datasets

    limits = limits or ReadLimits()
    if cfg.source == "demo":
        return from_frames({"train": read_table(DEMO_DATASET, limits)})
    if cfg.source in ("upload", "local"):
        path = Path(cfg.dataset_id).expanduser()
        if path.is_file():
            return from_frames({"train": read_table(path, limits)})
        if path.is_dir():
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                loaded = datasets.load_from_disk(str(path))  # memory-mapped: counting rows reads nothing
                loaded = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
                return check_rows(loaded, limits.max_rows, f"'{path.name}'")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
            if not files:
                raise DataError(
                    f"The folder '{path}' has no data files.",
                    "Point at a save_to_disk folder, a data file, or a folder of train/validation/test files.",
                )
            return from_frames({p.stem: read_table(p, limits) for p in files})
        raise DataError(f"No file or folder at '{path}'.", "Check the path.")
    # Hub
    from ftui.hub import explain_hub_error, hub_split_rows

    kwargs: dict[str, Any] = {"token": token or None}
    if limits.max_rows:
        # Refuse before downloading when the Hub's metadata already says a split is too big.
        for split, rows in hub_split_rows(cfg.dataset_id.strip(), cfg.config_name, token).items():
            if rows > limits.max_rows:
                raise DataError(
                    f"The Hub dataset '{cfg.dataset_id}' split '{split}' has {rows:,} rows; this deployment reads at most "
                    f"{limits.max_rows:,} per split.",
                    "Pick a smaller dataset or config, or run ftui yourself to train on all of it.",
                )
    try:
        loaded = datasets.load_dataset(cfg.dataset_id.strip(), cfg.config_name or None, **kwargs)
    except Exception as exc:
        err = explain_hub_error(exc, "dataset", cfg.dataset_id)
        if not (cfg.trust_remote_code and "loading script" in err.problem):
            raise err from exc
        # datasets>=4 never executes scripts; the Hub's Parquet export is the same data without code.
        try:
            loaded = datasets.load_dataset(
                cfg.dataset_id.strip(), cfg.config_name or None, revision="refs/convert/parquet", **kwargs
            )
        except Exception as exc2:
            raise explain_hub_error(exc2, "dataset (Parquet export)", cfg.dataset_id) from exc2
    return check_rows(loaded, limits.max_rows, f"The Hub dataset '{cfg.dataset_id}'")


def _standardize_with(df: pd.DataFrame, text_cols: tuple[str, ...], labels: list[Any]) -> tuple[pd.DataFrame, int, int]:
    """Standard columns from encoded labels (None = missing): (frame, rows dropped for empty text, rows dropped for a
    missing label)."""
    out = pd.DataFrame({TEXT: df[text_cols[0]]})
    if len(text_cols) == 2:
        out[TEXT_PAIR] = df[text_cols[1]]
    text_ok = pd.Series(True, index=df.index)
    for c in out.columns:
        col = out[c]
        text_ok &= col.notna() & col.astype(str).str.strip().ne("")
    label_ok = pd.Series([v is not None for v in labels], index=df.index)
    n_empty = int((~text_ok).sum())
    n_unlabeled = int((text_ok & ~label_ok).sum())
    keep = text_ok & label_ok
    out = out[keep].copy()
    for c in (TEXT, TEXT_PAIR):
        if c in out:
            out[c] = out[c].astype(str)
    out[LABEL] = [v for v, k in zip(labels, keep, strict=True) if k]
    return out.reset_index(drop=True), n_empty, n_unlabeled


def _pick(names: list[str], wanted: str | None, candidates: tuple[str, ...]) -> str | None:
    if wanted:
        if wanted not in names:
            raise DataError(f"The dataset has no split '{wanted}' (it has: {', '.join(names)}).", "Pick one of those.")
        return wanted
    for c in candidates:
        if c in names:
            return c
    return None


def _split(ds: Any, fraction: float, seed: int, notes: list[str], what: str, stratify: bool = True) -> tuple[Any, Any]:
    """Stratified, seeded carve; plain random when a class is too small to stratify (or labels are not classes)."""
    try:
        if not stratify:
            raise ValueError("not classes")
        parts = ds.train_test_split(test_size=fraction, stratify_by_column=LABEL, seed=seed)
        notes.append(f"No {what} split: carved {len(parts['test'])} rows out of train (stratified, seed {seed}).")
    except ValueError:
        parts = ds.train_test_split(test_size=fraction, seed=seed)
        why = "a class is too small to stratify" if stratify else f"seed {seed}"
        notes.append(f"No {what} split: carved {len(parts['test'])} rows out of train at random ({why}).")
    return parts["train"], parts["test"]


def _check_train_labels(task: Task, train: Any, names: list[str], notes: list[str]) -> None:
    """Refuse training data a model cannot learn from: one class, no label ever present, one value."""
    if task is Task.SINGLE:
        present = set(train[LABEL])
        if len(present) < 2:
            only = names[next(iter(present))] if present else "none"
            raise DataError(
                f"The training data has a single class ('{only}'): a classifier needs at least two.",
                "Pick another label column (--label-column) or a dataset with several classes.",
            )
    elif task is Task.MULTI:
        counts = np.asarray(train[LABEL], dtype=np.float32).reshape(len(train), -1).sum(0)
        if len(names) < 2 and counts.sum() == 0:
            raise DataError(
                "No training text carries any label.", "Pick the column that lists each text's labels (--label-column)."
            )
        if counts.sum() == 0:
            raise DataError("No training text carries any of the labels.", "Check the label columns (--label-columns).")
        never = [n for n, c in zip(names, counts, strict=True) if c == 0]
        if never:
            notes.append(f"Labels never present in train (the model cannot learn them): {', '.join(never[:10])}.")
    else:
        values = np.asarray(train[LABEL], dtype=np.float64)
        if len(np.unique(values)) < 2:
            raise DataError(
                f"Every training target is {values[0]:g}: regression needs at least two different values.",
                "Pick another label column (--label-column).",
            )


def prepare(raw: Any, cfg: DataConfig) -> DataBundle:
    """Pick splits, detect/override columns, cast labels, drop empties, carve missing splits, subset train."""
    import datasets

    names = list(raw.keys())
    if not names:
        raise DataError("The dataset has no splits.", "Check the dataset id and config.")
    train_name = cfg.train_split if cfg.train_split in names else ("train" if "train" in names else names[0])
    if cfg.train_split and cfg.train_split not in names and cfg.train_split != "train":
        raise DataError(f"The dataset has no split '{cfg.train_split}' (it has: {', '.join(names)}).", "Pick one of those.")
    val_name = _pick(names, cfg.validation_split, VALIDATION_NAMES)
    test_name = _pick(names, cfg.test_split, TEST_NAMES)
    notes: list[str] = []
    if train_name != "train":
        notes.append(f"Training on split '{train_name}'.")

    train_raw = raw[train_name]
    features = dict(train_raw.features)
    columns = list(features)
    sample = train_raw.select(range(min(1000, len(train_raw)))).to_pandas()

    if cfg.label_columns:
        absent = [c for c in cfg.label_columns if c not in features]
        if absent:
            raise DataError(
                f"There is no column '{absent[0]}' (columns: {', '.join(columns)}).",
                "Choose other label columns (--label-columns).",
            )
    label_col = ", ".join(cfg.label_columns) if cfg.label_columns else (cfg.label_column or detect_label_column(features, sample))
    if not cfg.label_columns and (not label_col or label_col not in features):
        raise DataError(
            f"No label column found (columns: {', '.join(columns)})."
            if not cfg.label_column
            else f"There is no column '{cfg.label_column}' (columns: {', '.join(columns)}).",
            "Choose the label column in the Data tab (CLI: --label-column NAME).",
        )
    text_cols = tuple(cfg.text_columns) or detect_text_columns(features, sample, label_col)
    if not text_cols:
        raise DataError(
            f"No text column found: none of the columns ({', '.join(columns)}) holds strings.",
            "Choose the text column in the Data tab (CLI: --text-column NAME), or use a dataset with a text field.",
        )
    missing = [c for c in text_cols if c not in features]
    if missing:
        raise DataError(
            f"There is no column '{missing[0]}' (columns: {', '.join(columns)}).", "Choose another text column (--text-column)."
        )
    label_cols = list(cfg.label_columns) or [label_col]
    both = next((c for c in label_cols if c in text_cols), None)
    if both:
        raise DataError(
            f"'{both}' cannot be both the text and the label.", "Choose different columns (--text-column, --label-column)."
        )

    picked = {"train": train_name, "validation": val_name, "test": test_name}
    frames = {k: raw[v].select_columns([*text_cols, *label_cols]).to_pandas() for k, v in picked.items() if v}
    label_feature = features[label_cols[0]]
    all_labels = pd.concat([f[label_cols[0]] for f in frames.values()], ignore_index=True)
    task = detect_task(all_labels, label_feature, cfg)
    encode, label_names, label_type = label_encoder(task, cfg, label_col, label_feature, all_labels, notes)

    feats = {TEXT: datasets.Value("string")}
    if len(text_cols) == 2:
        feats[TEXT_PAIR] = datasets.Value("string")
    feats[LABEL] = label_type
    features_std = datasets.Features(feats)
    out: dict[str, Any] = {}
    for split, frame in frames.items():
        try:
            encoded = encode(frame)
        except DataError as exc:
            if len(frames) > 1:  # row numbers count within a split: say which
                raise DataError(f"{exc.problem} (split '{picked[split]}')", exc.fix) from None
            raise
        std, n_empty, n_unlabeled = _standardize_with(frame, text_cols, encoded)
        if n_empty:
            notes.append(f"Dropped {n_empty} rows with empty or missing text from {split}.")
        if split != "train" and std.empty and n_unlabeled:
            notes.append(f"The {picked[split]} split has no labels (all {n_unlabeled} rows unlabeled): not used.")
            continue
        if n_unlabeled:
            notes.append(f"Dropped {n_unlabeled} rows with a missing or unknown label from {split}.")
        out[split] = datasets.Dataset.from_pandas(std, features=features_std, preserve_index=False)

    train = out["train"]
    if len(train) == 0:
        raise DataError("No usable training rows are left after dropping empty texts and missing labels.", "Check the columns.")
    _check_train_labels(task, train, label_names, notes)
    stratify = task is Task.SINGLE  # stratifying needs one class per row
    if "validation" not in out:
        train, out["validation"] = _split(train, CARVE_FRACTION, cfg.seed, notes, "validation", stratify)
    if "test" not in out:
        train, out["test"] = _split(train, CARVE_FRACTION / (1 - CARVE_FRACTION), cfg.seed + 1, notes, "test", stratify)
    if cfg.max_train_examples and cfg.max_train_examples < len(train):
        n = cfg.max_train_examples
        try:
            if not stratify:
                raise ValueError("random subset")
            train = train.train_test_split(train_size=n, stratify_by_column=LABEL, seed=cfg.seed)["train"]
            notes.append(f"Training on a stratified subset of {n} examples (max training examples).")
        except ValueError:
            train = train.shuffle(seed=cfg.seed).select(range(n))
            notes.append(f"Training on a random subset of {n} examples (max training examples).")
    out["train"] = train
    return DataBundle(
        splits=datasets.DatasetDict({k: out[k] for k in ("train", "validation", "test")}),
        text_columns=tuple(text_cols),
        label_column=label_col,
        label_names=label_names,
        columns=columns,
        notes=notes,
        task=task,
    )


def load_data(cfg: DataConfig, token: str | None = None, limits: ReadLimits | None = None) -> DataBundle:
    """Validate, load and prepare; every failure is an FtuiError with a fix."""
    problems = validate_data(cfg)
    if problems:
        raise DataError("; ".join(problems) + ".", "")
    try:
        raw = load_raw(cfg, token, limits)
    except FtuiError:
        raise
    except Exception as exc:  # Arrow refusing a column, a damaged save_to_disk folder, ...
        raise DataError(
            f"The data could not be read: {type(exc).__name__}: {str(exc)[:300]}",
            "Check that each column holds one kind of value (all text, or all numbers), or re-export the file.",
        ) from exc
    try:
        return prepare(raw, cfg)
    except FtuiError:
        raise
    except Exception as exc:
        raise DataError(f"The dataset could not be prepared: {type(exc).__name__}: {str(exc)[:300]}", "") from exc
