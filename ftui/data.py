"""Loading datasets from the Hub, files, folders or the bundled demo, and shaping them for classification."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ftui.columns import ColumnFacts, pick_label_column
from ftui.config import DataConfig, ReadLimits, validate_data
from ftui.errors import DataError, FtuiError
from ftui.tasks import Task

# Inside the package when installed (pip install .), beside it in the repository and on a Space.
_PACKAGED_ASSETS = Path(__file__).resolve().parent / "assets"
_REPO_ASSETS = Path(__file__).resolve().parent.parent / "assets"
ASSETS = _PACKAGED_ASSETS if (_PACKAGED_ASSETS / "demo_reviews.csv").exists() else _REPO_ASSETS
DEMO_DATASET = ASSETS / "demo_reviews.csv"

TEXT = "text"
TEXT_PAIR = "text_pair"
LABEL = "label"

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "body", "tweet", "utterance", "sms")
PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("sentence_a", "sentence_b"),
    ("text_a", "text_b"),
)
VALIDATION_NAMES = ("validation", "valid", "dev", "val")
TEST_NAMES = ("test",)
FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".xls")
EXCEL_SUFFIXES = (".xlsx", ".xls")
PREVIEW_CHARS = 500  # characters of a text shown in the data preview
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


# ----------------------------------------------------------------------------------------------------------- raw
def _too_many_rows(path: Path, max_rows: int) -> DataError:
    return DataError(
        f"'{path.name}' has more than {max_rows:,} rows, the most this deployment reads from one file.",
        "Upload a sample, or run ftui yourself to train on the whole file.",
    )


def _read_parquet(path: Path, max_bytes: int, max_rows: int) -> pd.DataFrame:
    """Read in record batches, stopping as soon as rows or decoded bytes pass the caps: dictionary-encoded or
    compressed columns can inflate a small file by thousands of times (a decompression bomb)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if max_rows and pf.metadata.num_rows > max_rows:
        raise _too_many_rows(path, max_rows)
    batches, decoded = [], 0
    for batch in pf.iter_batches(batch_size=256):
        decoded += batch.nbytes
        if decoded > 4 * max_bytes:
            raise DataError(
                f"'{path.name}' expands to more than {4 * max_bytes / 2**20:,.0f} MB in memory, more than this deployment "
                "allows.",
                "Upload a smaller file (this looks like a decompression bomb or a very large dataset).",
            )
        batches.append(batch)
    return pa.Table.from_batches(batches, schema=pf.schema_arrow).to_pandas()


SEPARATORS = ",;\t|"  # what spreadsheet exports use: Excel in many locales writes semicolons
# A text is a string: "None", "NA" or "n/a" are words (and class names), not pandas' default missing values; only a
# truly empty cell is missing.
NA_SAFE: dict[str, Any] = {"keep_default_na": False, "na_values": [""]}


def _read_delimited(path: Path, sep: str, nrows: dict[str, int]) -> pd.DataFrame:
    """A CSV/TSV, its separator read off the header line first: a semicolon export whose texts hold commas splits on
    the semicolons, not on the first comma in a text (which made pandas fail on a later line)."""
    return pd.read_csv(path, sep=_separator(path, sep), encoding="utf-8", encoding_errors="strict", **NA_SAFE, **nrows)


def _separator(path: Path, expected: str) -> str:
    """The expected separator when it splits the header; else the one of SEPARATORS that splits it into the most
    fields (an Excel export in a locale that writes semicolons); the expected one when none splits it."""
    import csv

    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        header = f.readline()
    fields = {s: len(next(csv.reader([header], delimiter=s), [])) for s in SEPARATORS}
    if fields[expected] >= 2:
        return expected
    best = max(SEPARATORS, key=lambda s: fields[s])
    return best if fields[best] >= 2 else expected


def _read_excel(path: Path, nrows: dict[str, int]) -> pd.DataFrame:
    """The first sheet of an Excel workbook (what a spreadsheet user means by 'the file')."""
    if path.suffix.lower() == ".xls":
        raise DataError(
            f"'{path.name}' is an old Excel 97-2003 workbook (.xls), which ftui cannot read.",
            "Save it as .xlsx or CSV UTF-8 in Excel, then upload again.",
        )
    import zipfile

    if not zipfile.is_zipfile(path):  # an .xlsx is a zip; anything else renamed to .xlsx is not
        raise DataError(f"'{path.name}' is not an Excel workbook.", "Save it as .xlsx or CSV from Excel, then upload again.")
    return pd.read_excel(path, sheet_name=0, engine="openpyxl", **NA_SAFE, **nrows)


def read_table(path: Path, limits: ReadLimits | None = None) -> pd.DataFrame:
    """Read a CSV/TSV/JSON/JSONL/Parquet file into a DataFrame, with messages for bad files; size and rows capped."""
    limits = limits or ReadLimits()
    suffix = path.suffix.lower()
    max_bytes, max_rows = limits.max_bytes, limits.max_rows
    size = path.stat().st_size if path.exists() else 0
    if size > max_bytes:
        raise DataError(
            f"'{path.name}' is {size / 2**20:,.0f} MB; this deployment reads files up to {max_bytes / 2**20:,.0f} MB.",
            "Upload a smaller file or a sample of it.",
        )
    nrows = {"nrows": max_rows + 1} if max_rows else {}
    try:
        if suffix == ".parquet":
            df = _read_parquet(path, max_bytes, max_rows)
        elif suffix in EXCEL_SUFFIXES:
            df = _read_excel(path, nrows)
        elif suffix == ".jsonl":
            df = pd.read_json(path, lines=True, encoding="utf-8", **nrows)
        elif suffix == ".json":
            try:
                df = pd.read_json(path, encoding="utf-8")
            except ValueError:
                df = pd.read_json(path, lines=True, encoding="utf-8")
        else:
            df = _read_delimited(path, "\t" if suffix == ".tsv" else ",", nrows)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(
            f"'{path.name}' is not UTF-8 text (byte {exc.start} cannot be decoded).",
            "Re-save it as UTF-8 (in Excel: 'CSV UTF-8'), then upload again.",
        ) from exc
    except Exception as exc:
        raise DataError(
            f"'{path.name}' could not be read as a table ({type(exc).__name__}: {str(exc)[:200]}).",
            "Upload a CSV, TSV, Excel (.xlsx), JSON/JSONL or Parquet file with one row per example.",
        ) from exc
    if not isinstance(df, pd.DataFrame) or df.empty or len(df.columns) < 2:
        raise DataError(
            f"'{path.name}' holds no table with at least a text column and a label column"
            + (f" (it has one column, '{df.columns[0]}')." if isinstance(df, pd.DataFrame) and len(df.columns) == 1 else "."),
            "Upload a file with one row per example and columns such as 'text' and 'label', separated by commas, "
            "semicolons or tabs.",
        )
    if max_rows and len(df) > max_rows:
        raise _too_many_rows(path, max_rows)
    df.columns = [str(c) for c in df.columns]
    return _arrow_safe(df)


def _arrow_safe(df: pd.DataFrame) -> pd.DataFrame:
    """Columns mixing numbers and strings (a JSONL label that is sometimes 1, sometimes "pos") become strings,
    which Arrow can hold; missing values stay missing."""
    for col in df.columns:
        if df[col].dtype != object:
            continue
        kinds = {type(v) for v in df[col].dropna()}
        if len(kinds) > 1:
            df[col] = df[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else _text_of(v))
    return df


def _text_of(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a JSON number is the class "1"
    return value if isinstance(value, str) else (json.dumps(value) if isinstance(value, (dict, list)) else str(value))


def _from_frames(frames: dict[str, pd.DataFrame]) -> Any:
    import datasets

    return datasets.DatasetDict(
        {name: datasets.Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False) for name, df in frames.items()}
    )


def _check_rows(raw: Any, max_rows: int, what: str) -> Any:
    for split, ds in raw.items():
        if max_rows and len(ds) > max_rows:
            raise DataError(
                f"{what} split '{split}' has {len(ds):,} rows; this deployment reads at most {max_rows:,} per split.",
                "Pick a smaller dataset or config, or run ftui yourself to train on all of it.",
            )
    return raw


def load_raw(cfg: DataConfig, token: str | None = None, limits: ReadLimits | None = None) -> Any:
    """The dataset as its source has it: a DatasetDict of whatever splits exist."""
    import datasets

    limits = limits or ReadLimits()
    if cfg.source == "demo":
        return _from_frames({"train": read_table(DEMO_DATASET, limits)})
    if cfg.source in ("upload", "local"):
        path = Path(cfg.dataset_id).expanduser()
        if path.is_file():
            return _from_frames({"train": read_table(path, limits)})
        if path.is_dir():
            if (path / "dataset_dict.json").exists() or (path / "state.json").exists():
                loaded = datasets.load_from_disk(str(path))  # memory-mapped: counting rows reads nothing
                loaded = loaded if isinstance(loaded, datasets.DatasetDict) else datasets.DatasetDict({"train": loaded})
                return _check_rows(loaded, limits.max_rows, f"'{path.name}'")
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in FILE_SUFFIXES)
            if not files:
                raise DataError(
                    f"The folder '{path}' has no data files.",
                    "Point at a save_to_disk folder, a data file, or a folder of train/validation/test files.",
                )
            return _from_frames({p.stem: read_table(p, limits) for p in files})
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
    return _check_rows(loaded, limits.max_rows, f"The Hub dataset '{cfg.dataset_id}'")


# ---------------------------------------------------------------------------------------------------- detection
def _is_string(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")


def _is_classlabel(feature: Any) -> bool:
    return type(feature).__name__ == "ClassLabel"


def detect_label_column(features: dict[str, Any], sample: pd.DataFrame) -> str | None:
    """The label column (ftui.columns' rules over what each column holds)."""
    return pick_label_column([_facts(n, f, sample[n]) for n, f in features.items()])


def _facts(name: str, feature: Any, values: pd.Series) -> ColumnFacts:
    if _is_classlabel(feature):
        return ColumnFacts(name, classlabel=True)
    if _is_list_column(feature, values):
        return ColumnFacts(name, kind="list")
    present = values.dropna()
    distinct = present.astype(str).str.strip().str.lower().unique() if _is_string(feature) else present.unique()
    kind = "int" if getattr(feature, "dtype", "").startswith("int") else "string" if _is_string(feature) else "other"
    shown = tuple(str(v) for v in distinct[:60]) if kind == "string" else ()
    return ColumnFacts(name, kind=kind, distinct=len(distinct), values=shown)


def _is_list_column(feature: Any, values: pd.Series) -> bool:
    """A multi-label candidate: an Arrow list, or strings that are JSON lists ('["food", "price"]' in a CSV cell)."""
    if type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return True
    present = values.dropna().iloc[:50]
    return (
        _is_string(feature)
        and not present.empty
        and all(
            isinstance(v, str) and v.strip().startswith("[") and _as_items(v, split_strings=False) is not None for v in present
        )
    )


def detect_text_columns(features: dict[str, Any], sample: pd.DataFrame, label: str | None) -> tuple[str, ...]:
    """One text column, or two for sentence-pair tasks; empty when none is a string column."""
    strings = [n for n, f in features.items() if _is_string(f) and n != label]
    if not strings:
        return ()
    lower = {c.lower(): c for c in strings}
    for a, b in PAIR_NAMES:
        if a in lower and b in lower:
            return (lower[a], lower[b])
    for cand in TEXT_NAMES:
        if cand in lower:
            return (lower[cand],)
    mean_len = {n: sample[n].astype(str).str.len().mean() for n in strings}
    return (max(strings, key=lambda n: mean_len[n]),)


# -------------------------------------------------------------------------------------------------- label casting
def label_names_for(values: pd.Series, feature: Any, negative_is_missing: bool = False) -> tuple[list[str], dict[Any, int]]:
    """Names and a value→index map: ClassLabel kept, ints/bools by sorted value, strings sorted.

    negative_is_missing: integer labels below 0 mean "unlabelled" (the convention of some Hub test splits); a user's
    own file keeps them as classes (-1/0/1 sentiment is common).
    """
    if _is_classlabel(feature):
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


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _as_items(value: Any, split_strings: bool) -> list[str] | None:
    """A cell of a multi-label column as its labels: a list, a JSON list in a string ('["a", "b"]'), or with
    split_strings a string listing them ("a|b"); None when the cell is missing or not a list."""
    if _missing(value):
        return None
    if _is_listlike(value):
        return [str(_text_of(v)).strip() for v in list(value) if not _missing(v) and str(v).strip()]
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except ValueError:
                parsed = None
            if isinstance(parsed, list):
                return [str(_text_of(v)).strip() for v in parsed if not _missing(v) and str(v).strip()]
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
    if any(_as_items(v, split_strings=False) is not None for v in present.iloc[:50]):
        return Task.MULTI
    if pd.api.types.is_float_dtype(present) and not all(float(v).is_integer() for v in present):
        return Task.REGRESSION
    return Task.SINGLE


def _inner_names(feature: Any) -> list[str] | None:
    inner = getattr(feature, "feature", None)
    return list(inner.names) if _is_classlabel(inner) else None


def multi_label_names(values: pd.Series, feature: Any) -> list[str]:
    """Every label that occurs in a list column, sorted (a Sequence of ClassLabel keeps its own names and order)."""
    names = _inner_names(feature)
    if names is not None:
        return names
    seen: set[str] = set()
    for v in values:
        items = _as_items(v, split_strings=True)
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
        items = _as_items(v, split_strings=True)
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
            if _missing(v):
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


def _label_encoder(
    task: Task, cfg: DataConfig, label_col: str, feature: Any, all_labels: pd.Series, notes: list[str]
) -> tuple[Callable[[pd.DataFrame], list[Any]], list[str], Any]:
    """(frame → encoded labels with None for missing, label names, the standard label feature) for a label shape."""
    import datasets

    if task is Task.SINGLE:
        names, mapping = label_names_for(all_labels, feature, negative_is_missing=cfg.source == "hub")
        present = all_labels.dropna()
        is_str = not _is_classlabel(feature) and not (
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
        if _missing(v):
            return None
        key = str(v).strip() if is_str else (int(v) if not isinstance(v, bool) else v)
        i = mapping.get(key, -1)
        return i if i >= 0 else None

    return [to_index(v) for v in values]


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
    encode, label_names, label_type = _label_encoder(task, cfg, label_col, label_feature, all_labels, notes)

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


# ------------------------------------------------------------------------------------------------------ previews
def preview_frame(bundle: DataBundle, n: int = 8) -> pd.DataFrame:
    """First rows of train with label names, for a table."""
    head = bundle.splits["train"].select(range(min(n, len(bundle.splits["train"])))).to_pandas()
    head[LABEL] = [label_text(bundle, v) for v in head[LABEL]]
    head = head[[LABEL, *(c for c in head.columns if c != LABEL)]]  # first: long texts never push it off-screen
    for col in (TEXT, TEXT_PAIR):
        if col in head:  # a 10 MB review must not travel to the browser for a preview
            head[col] = [t if len(t) <= PREVIEW_CHARS else t[:PREVIEW_CHARS] + " …" for t in head[col]]
    return head


def label_text(bundle: DataBundle, value: Any) -> str:
    """One row's label in words: the class, the labels it carries (or 'none'), the number."""
    if bundle.task is Task.SINGLE:
        return bundle.label_names[int(value)]
    if bundle.task is Task.MULTI:
        on = [n for n, v in zip(bundle.label_names, value, strict=True) if v >= 0.5]
        return ", ".join(on) if on else "none"
    return f"{float(value):.4g}"


REGRESSION_BINS = 8  # bars of the target's histogram in the label chart


def label_matrix(ds: Any) -> np.ndarray:
    """A multi-label split's 0/1 labels as a (rows, labels) array."""
    return np.asarray(ds[LABEL], dtype=np.float32).reshape(len(ds), -1)


def label_counts(bundle: DataBundle) -> pd.DataFrame:
    """Rows per (split, label), long format: per class; per label (texts carrying it, multi-label); per range of the
    target (regression, the same bins for every split)."""
    rows = []
    if bundle.task is Task.REGRESSION:
        values = {s: np.asarray(ds[LABEL], dtype=np.float64) for s, ds in bundle.splits.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=REGRESSION_BINS)
        names = [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        for split, v in values.items():
            counts, _ = np.histogram(v, bins=edges)
            rows += [{"split": split, "label": n, "count": int(c)} for n, c in zip(names, counts, strict=True)]
        return pd.DataFrame(rows)
    for split, ds in bundle.splits.items():
        if bundle.task is Task.MULTI:
            per = label_matrix(ds).sum(0) if len(ds) else np.zeros(len(bundle.label_names))
            rows += [{"split": split, "label": n, "count": int(c)} for n, c in zip(bundle.label_names, per, strict=True)]
            continue
        counts = pd.Series(ds[LABEL]).value_counts()
        for i, name in enumerate(bundle.label_names):
            rows.append({"split": split, "label": name, "count": int(counts.get(i, 0))})
    return pd.DataFrame(rows)


def text_lengths(bundle: DataBundle, tokenizer: Any = None, limit: int = 2000) -> tuple[list[int], str]:
    """Lengths of up to `limit` train texts: tokens when a tokenizer is given, else words."""
    ds = bundle.splits["train"]
    texts = list(ds.select(range(min(limit, len(ds))))[TEXT])
    if tokenizer is not None:
        enc = tokenizer(texts, add_special_tokens=True, truncation=False)
        return [len(ids) for ids in enc["input_ids"]], "tokens"
    return [len(t.split()) for t in texts], "words"


IMBALANCE_RATIO = 3.0  # largest class over smallest in train above which the Data tab warns


def sanity_report(bundle: DataBundle) -> list[str]:
    """Warnings to read before training: class imbalance, labels unseen in train, texts shared across splits."""
    out: list[str] = []
    names = bundle.label_names
    if bundle.task is Task.MULTI:
        out += _multi_label_report(bundle)
    if bundle.task is not Task.SINGLE:
        return out + _leakage(bundle)
    counts = {s: pd.Series(ds[LABEL]).value_counts() for s, ds in bundle.splits.items()}
    train = counts.get("train", pd.Series(dtype=int))
    present = train[train > 0]
    if len(present) >= 2 and present.min() * IMBALANCE_RATIO <= present.max():
        ratio = present.max() / present.min()
        share = ", ".join(f"{names[i]} {n / present.sum():.0%}" for i, n in present.sort_values(ascending=False).items())
        out.append(
            f"Class imbalance in train: the largest class is {ratio:.1f}x the smallest ({share}). Accuracy will flatter "
            "the model; watch macro-F1 and the per-class scores, and consider Class weights: balanced in the Train tab."
        )
    for split in ("validation", "test"):
        unseen = sorted(set(counts.get(split, pd.Series(dtype=int)).index) - set(present.index))
        if unseen:
            out.append(f"Labels in {split} but not in train: {', '.join(names[i] for i in unseen)}. The model cannot learn them.")
    return out + _leakage(bundle)


def _multi_label_report(bundle: DataBundle) -> list[str]:
    """Rare labels of a multi-label train split (the imbalance a per-label weight corrects)."""
    train = bundle.splits["train"]
    if not len(train):
        return []
    share = label_matrix(train).mean(0)
    rare = [(n, s) for n, s in zip(bundle.label_names, share, strict=True) if 0 < s < 1 / (1 + IMBALANCE_RATIO)]
    if not rare:
        return []
    listed = ", ".join(f"{n} {s:.0%}" for n, s in sorted(rare, key=lambda x: x[1])[:8])
    return [
        f"Rare labels in train (share of texts carrying them): {listed}. Watch macro-F1 and the per-label scores, and "
        "consider Class weights: balanced in the Train tab (it weighs each label's positives by its rarity)."
    ]


def _leakage(bundle: DataBundle) -> list[str]:
    out: list[str] = []
    texts = {s: set(ds[TEXT]) for s, ds in bundle.splits.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = len(texts.get(a, set()) & texts.get(b, set()))
        if shared:
            out.append(
                f"{shared} text(s) appear in both {a} and {b} (leakage): scores on {b} will be optimistic. "
                "Remove the duplicates or re-split."
            )
    return out
