"""Reading data files within a deployment's limits: CSV/TSV (separator sniffed), JSON/JSONL, Parquet and Excel as
data frames, and frames as a DatasetDict."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ftui.config import ReadLimits
from ftui.errors import DataError

FILE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".xlsx", ".xls")
EXCEL_SUFFIXES = (".xlsx", ".xls")


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
            df[col] = df[col].map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else text_of(v))
    return df


def text_of(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 from a JSON number is the class "1"
    return value if isinstance(value, str) else (json.dumps(value) if isinstance(value, (dict, list)) else str(value))


def from_frames(frames: dict[str, pd.DataFrame]) -> Any:
    import datasets

    return datasets.DatasetDict(
        {name: datasets.Dataset.from_pandas(df.reset_index(drop=True), preserve_index=False) for name, df in frames.items()}
    )


def check_rows(raw: Any, max_rows: int, what: str) -> Any:
    for split, ds in raw.items():
        if max_rows and len(ds) > max_rows:
            raise DataError(
                f"{what} split '{split}' has {len(ds):,} rows; this deployment reads at most {max_rows:,} per split.",
                "Pick a smaller dataset or config, or run ftui yourself to train on all of it.",
            )
    return raw
