"""Real texts are never dropped: pandas' NA spellings ("None", "NA", "n/a", ...) are words and class names in every
file format; only a truly empty cell is missing. List columns are found as multi-label labels."""

import json
from pathlib import Path

import pandas as pd
import pytest
from pandas._libs.parsers import STR_NA_VALUES

from ftui.config import DataConfig
from ftui.data import LABEL, TEXT, load_data
from ftui.errors import DataError
from ftui.readers import read_table
from ftui.tasks import Task

# Every string pandas reads as missing by default, but the empty one (a truly empty cell).
SPELLINGS = sorted(s for s in STR_NA_VALUES if s)


def _rows() -> list[dict[str, str]]:
    """One row per NA spelling as the text (label "good"), one per spelling as the label, and two empty cells."""
    rows = [{"text": s, "label": "good"} for s in SPELLINGS]
    rows += [{"text": f"a review labelled {s}", "label": s} for s in SPELLINGS]
    rows += [{"text": f"plain review {i}", "label": "bad"} for i in range(len(SPELLINGS))]
    rows += [{"text": "", "label": "good"}, {"text": "a review with no label", "label": ""}]
    return rows


def _write(rows: list[dict[str, str]], path: Path) -> Path:
    if path.suffix == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    elif path.suffix == ".tsv":
        pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r) for r in rows))
    else:
        import openpyxl

        wb = openpyxl.Workbook()
        ws = wb.active
        ws.append(["text", "label"])
        for r in rows:
            ws.append([r["text"] or None, r["label"] or None])  # an empty cell is a cell with no value
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if cell.value is not None:
                    cell.data_type = "s"  # "#N/A" typed as text, not Excel's own error value
        wb.save(path)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".xlsx", ".json", ".jsonl"])
def test_na_spellings_are_texts_and_labels(tmp_path: Path, suffix: str) -> None:
    path = _write(_rows(), tmp_path / f"reviews{suffix}")
    frame = read_table(path)
    assert frame["text"].isna().sum() <= 1 and frame["label"].isna().sum() <= 1  # only the empty cells
    b = load_data(DataConfig(source="upload", dataset_id=str(path), label_column="label"))
    texts = set()
    for split in b.splits.values():
        texts |= set(split[TEXT])
    assert set(SPELLINGS) <= texts  # no spelling of a text was dropped as "missing"
    assert set(SPELLINGS) <= set(b.label_names)  # nor of a class
    dropped = [n for n in b.notes if n.startswith("Dropped")]
    assert dropped == ["Dropped 1 rows with empty or missing text from train.",
                       "Dropped 1 rows with a missing or unknown label from train."]  # fmt: skip
    assert sum(b.sizes.values()) == len(_rows()) - 2


def test_list_column_is_found_as_multi_label(tmp_path: Path) -> None:
    aspects = [["price"], ["service", "food"], [], ["food"]]
    rows = [{"text": f"a sentence about things {i}", "aspects": json.dumps(aspects[i % 4])} for i in range(40)]
    path = tmp_path / "aspects.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    b = load_data(DataConfig(source="upload", dataset_id=str(path)))
    assert b.label_column == "aspects" and b.task is Task.MULTI
    assert b.label_names == ["food", "price", "service"]
    assert b.splits["train"].features[LABEL].feature.dtype == "float32"


def test_no_label_message_names_the_cli_flag(tmp_path: Path) -> None:
    path = tmp_path / "free.csv"
    pd.DataFrame({"text": [f"words {i}" for i in range(10)], "notes": [f"note {i}" for i in range(10)]}).to_csv(path, index=False)
    with pytest.raises(DataError) as got:
        load_data(DataConfig(source="upload", dataset_id=str(path)))
    assert "No label column found" in str(got.value) and "--label-column" in str(got.value)


@pytest.mark.parametrize(
    ("cfg", "flag"),
    [
        (DataConfig(text_columns=("a", "b", "c")), "--text-column"),
        (DataConfig(task="bogus"), "--task"),
        (DataConfig(label_columns=("only",)), "--label-columns"),
        (DataConfig(source="hub", dataset_id=""), "--dataset"),
    ],
)
def test_settings_messages_about_data_controls_name_the_cli_flag(cfg: DataConfig, flag: str) -> None:
    from ftui.config import validate_data

    problems = validate_data(cfg)
    assert problems and flag in " ".join(problems)


def test_label_messages_name_the_cli_flag(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    pd.DataFrame({"text": [f"words {i}" for i in range(10)], "label": ["same"] * 10}).to_csv(path, index=False)
    with pytest.raises(DataError, match="--label-column"):  # a single class: pick another label column
        load_data(DataConfig(source="upload", dataset_id=str(path)))
    with pytest.raises(DataError, match="--text-column"):
        load_data(DataConfig(source="upload", dataset_id=str(path), text_columns=("nope",)))
