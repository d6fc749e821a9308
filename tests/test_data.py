"""Column and label detection, label casting, re-splitting, subsets, and bad files."""

import json

import datasets
import pandas as pd
import pytest

from ftui.config import DataConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, load_data, prepare
from ftui.data_report import label_counts, preview_frame, sanity_report, text_lengths
from ftui.errors import DataError
from ftui.tasks import Task


def dd(**splits):
    return datasets.DatasetDict(
        {k: datasets.Dataset.from_pandas(pd.DataFrame(v), preserve_index=False) for k, v in splits.items()}
    )


def rows(n, label_fn, text="sample text {i}"):
    return {"text": [text.format(i=i) for i in range(n)], "label": [label_fn(i) for i in range(n)]}


def test_demo_dataset_loads_and_is_balanced():
    b = load_data(DataConfig())
    assert b.label_names == ["negative", "positive"]
    assert sum(b.sizes.values()) == 320
    counts = label_counts(b)
    train = counts[counts.split == "train"].set_index("label")["count"]
    assert train["negative"] == train["positive"]
    assert any("carved" in n for n in b.notes)


def test_string_labels_become_sorted_classlabel(csv_file):
    b = load_data(DataConfig(source="upload", dataset_id=str(csv_file)))
    assert b.label_names == ["neg", "neu", "pos"]
    assert b.text_columns == ("review",) and b.label_column == "label"
    assert isinstance(b.splits["train"].features[LABEL], datasets.ClassLabel)
    assert any("Dropped 2 rows with empty or missing text" in n for n in b.notes)
    assert sum(b.sizes.values()) == 60


def test_override_columns(csv_file):
    with pytest.raises(DataError, match="no column 'nope'"):
        load_data(DataConfig(source="upload", dataset_id=str(csv_file), text_columns=("nope",)))
    b = load_data(DataConfig(source="upload", dataset_id=str(csv_file), text_columns=("review",), label_column="label"))
    assert b.text_columns == ("review",)


def test_classlabel_is_kept_and_named():
    raw = dd(train=rows(40, lambda i: i % 2), validation=rows(10, lambda i: i % 2), test=rows(10, lambda i: i % 2))
    raw = raw.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    b = prepare(raw, DataConfig())
    assert b.label_names == ["neg", "pos"] and b.sizes == {"train": 40, "validation": 10, "test": 10}
    assert b.notes == []


def test_non_contiguous_int_labels_are_remapped():
    raw = dd(train=rows(30, lambda i: [3, 7, 10][i % 3]))
    b = prepare(raw, DataConfig())
    assert b.label_names == ["3", "7", "10"]
    assert set(b.splits["train"][LABEL]) == {0, 1, 2}


def test_integral_floats_are_classes_but_real_floats_are_regression():
    b = prepare(dd(train=rows(20, lambda i: float(i % 2))), DataConfig())
    assert b.label_names == ["0", "1"] and b.task is Task.SINGLE
    r = prepare(dd(train=rows(40, lambda i: i / 7)), DataConfig())
    assert r.task is Task.REGRESSION and r.label_names == ["label"]
    assert r.splits["train"].features[LABEL].dtype == "float32"
    every = sorted(v for split in r.splits.values() for v in split[LABEL])
    assert every == pytest.approx([i / 7 for i in range(40)], rel=1e-6)  # every row kept, value intact
    assert any("Regression" in n for n in r.notes) and any("at random" in n for n in r.notes)  # no stratifying numbers
    with pytest.raises(DataError, match="regression"):  # asking for classes on decimals says what to pick instead
        prepare(dd(train=rows(20, lambda i: i / 7)), DataConfig(task="single_label"))


def test_regression_can_be_forced_on_integers_and_text_numbers_but_not_words():
    stars = prepare(dd(train=rows(40, lambda i: 1 + i % 5)), DataConfig(task="regression"))
    assert stars.task is Task.REGRESSION and set(stars.splits["train"][LABEL]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    text_numbers = prepare(dd(train=rows(40, lambda i: f"{i / 4:.2f}" if i != 3 else "n/a")), DataConfig(task="regression"))
    assert sum(text_numbers.sizes.values()) == 39 and any("Dropped 1 rows with a missing" in n for n in text_numbers.notes)
    with pytest.raises(DataError, match="holds no numbers"):
        prepare(dd(train=rows(20, lambda i: "good" if i % 2 else "bad")), DataConfig(task="regression"))
    with pytest.raises(DataError, match="at least two different values"):
        prepare(dd(train=rows(20, lambda i: 0.5)), DataConfig(task="regression"))


def test_multi_label_lists_become_multi_hot_vectors():
    raw = dd(train={"text": [f"t {i}" for i in range(40)], "label": [[i % 2, 1] if i % 3 else [] for i in range(40)]})
    b = prepare(raw, DataConfig())
    assert b.task is Task.MULTI and b.label_names == ["0", "1"]
    got = {t: v for split in b.splits.values() for t, v in zip(split[TEXT], split[LABEL], strict=True)}
    assert len(got) == 40  # a text with no labels is a valid multi-label row
    for i in range(40):
        assert got[f"t {i}"] == ([0.0, 0.0] if not i % 3 else [1.0 if i % 2 == 0 else 0.0, 1.0]), i
    words = {(0.0, 0.0): "none", (1.0, 1.0): "0, 1", (0.0, 1.0): "1"}
    head = preview_frame(b, 8)
    assert head[LABEL].tolist() == [words[tuple(got[t])] for t in head[TEXT]]
    counts = label_counts(b)
    want = {"0": sum(1 for i in range(40) if i % 3 and i % 2 == 0), "1": sum(1 for i in range(40) if i % 3)}
    assert counts.groupby("label")["count"].sum().to_dict() == want  # texts carrying each label


def test_multi_label_from_json_strings_separators_and_indicator_columns(tmp_path):
    frame = pd.DataFrame(
        {
            "text": [f"review {i}" for i in range(30)],
            "tags": [json.dumps(["plot", "music"][: i % 3]) for i in range(30)],
            "piped": ["plot|music" if i % 2 else "plot" for i in range(30)],
            "plot": [i % 2 for i in range(30)],
            "music": [int(i % 5 == 0) for i in range(30)],
        }
    )
    path = tmp_path / "tags.csv"
    frame.to_csv(path, index=False)
    from_json = load_data(DataConfig(source="local", dataset_id=str(path), label_column="tags"))
    assert from_json.task is Task.MULTI and from_json.label_names == ["music", "plot"]  # detected: lists as JSON text
    piped = load_data(DataConfig(source="local", dataset_id=str(path), label_column="piped", task="multi_label"))
    assert piped.label_names == ["music", "plot"]
    cols = load_data(DataConfig(source="local", dataset_id=str(path), label_columns=("plot", "music")))
    assert cols.task is Task.MULTI and cols.label_names == ["plot", "music"]
    rows_by_text = {t: v for s in cols.splits.values() for t, v in zip(s[TEXT], s[LABEL], strict=True)}
    assert rows_by_text["review 5"] == [1.0, 1.0] and rows_by_text["review 2"] == [0.0, 0.0]
    frame.loc[4, "music"] = 7
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match="'music' holds '7'"):
        load_data(DataConfig(source="local", dataset_id=str(path), label_columns=("plot", "music")))
    with pytest.raises(DataError, match="no column 'mood'"):
        load_data(DataConfig(source="local", dataset_id=str(path), label_columns=("plot", "mood")))


def test_rare_multi_labels_are_reported():
    raw = dd(train={"text": [f"t {i}" for i in range(60)], "label": [["a", "b"] if i < 3 else ["a"] for i in range(60)]})
    b = prepare(raw, DataConfig())
    assert any("Rare labels in train" in w and "b " in w for w in sanity_report(b))


def test_bool_labels():
    b = prepare(dd(train=rows(20, lambda i: i % 2 == 0)), DataConfig())
    assert b.label_names == ["False", "True"]


def test_single_class_is_refused():
    with pytest.raises(DataError, match="single class"):
        prepare(dd(train=rows(20, lambda i: "pos")), DataConfig())


def test_no_text_column_is_explained():
    raw = dd(train={"a": list(range(20)), "label": [i % 2 for i in range(20)]})
    with pytest.raises(DataError, match="No text column"):
        prepare(raw, DataConfig())


def test_sentence_pairs_are_detected():
    raw = dd(
        train={
            "sentence1": [f"a {i}" for i in range(20)],
            "sentence2": [f"b {i}" for i in range(20)],
            "label": [i % 2 for i in range(20)],
            "idx": list(range(20)),
        }
    )
    b = prepare(raw, DataConfig())
    assert b.text_columns == ("sentence1", "sentence2")
    assert TEXT_PAIR in b.splits["train"].column_names


def test_unlabelled_test_split_is_replaced_by_a_carved_one():
    # glue-style: the test split's labels are all -1
    raw = dd(train=rows(50, lambda i: i % 2), validation=rows(10, lambda i: i % 2), test=rows(10, lambda i: -1))
    raw = raw.cast_column("label", datasets.ClassLabel(names=["neg", "pos"]))
    b = prepare(raw, DataConfig())
    assert any("has no labels" in n for n in b.notes)
    assert b.sizes["test"] > 0 and b.sizes["validation"] == 10


def test_carving_is_stratified_and_seeded():
    raw = dd(train=rows(200, lambda i: "a" if i % 4 == 0 else "b"))  # 1:3 imbalance
    b1, b2 = prepare(raw, DataConfig(seed=1)), prepare(raw, DataConfig(seed=1))
    for split in ("validation", "test"):
        labels = b1.splits[split][LABEL]
        assert labels.count(0) / len(labels) == pytest.approx(0.25, abs=0.06)
        assert b1.splits[split][TEXT] == b2.splits[split][TEXT]
    assert prepare(raw, DataConfig(seed=2)).splits["test"][TEXT] != b1.splits["test"][TEXT]


def test_max_train_examples_is_a_stratified_subset():
    raw = dd(train=rows(400, lambda i: "a" if i % 4 == 0 else "b"))
    b = prepare(raw, DataConfig(max_train_examples=40))
    labels = b.splits["train"][LABEL]
    assert len(labels) == 40 and labels.count(0) == 10


def test_non_utf8_upload(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("text,label\ncaf\xe9 au lait tr\xe8s bon,pos\nmauvais,neg\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_data(DataConfig(source="upload", dataset_id=str(p)))


def test_not_a_table(tmp_path):
    p = tmp_path / "junk.parquet"
    p.write_bytes(b"\x00\x01 this is not parquet")
    with pytest.raises(DataError, match="could not be read as a table"):
        load_data(DataConfig(source="upload", dataset_id=str(p)))
    q = tmp_path / "one.csv"
    q.write_text("just one column\nhello\n")
    with pytest.raises(DataError, match="at least a text column"):
        load_data(DataConfig(source="upload", dataset_id=str(q)))


def test_json_jsonl_parquet_and_folders(tmp_path):
    df = pd.DataFrame(rows(30, lambda i: ["x", "y"][i % 2]))
    df.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    (tmp_path / "d.json").write_text(json.dumps(df.to_dict(orient="records")))
    for name in ("d.jsonl", "d.json"):
        assert load_data(DataConfig(source="local", dataset_id=str(tmp_path / name))).label_names == ["x", "y"]
    folder = tmp_path / "splits"
    folder.mkdir()
    df.to_parquet(folder / "train.parquet")
    df.iloc[:10].to_parquet(folder / "validation.parquet")
    df.iloc[10:20].to_parquet(folder / "test.parquet")
    b = load_data(DataConfig(source="local", dataset_id=str(folder)))
    assert b.sizes == {"train": 30, "validation": 10, "test": 10}
    saved = tmp_path / "saved"
    dd(train=rows(30, lambda i: i % 2)).save_to_disk(str(saved))
    assert load_data(DataConfig(source="local", dataset_id=str(saved))).sizes["train"] > 0


def test_previews(csv_file):
    b = load_data(DataConfig(source="upload", dataset_id=str(csv_file)))
    head = preview_frame(b, 5)
    assert len(head) == 5 and set(head[LABEL]) <= {"neg", "neu", "pos"}
    lengths, unit = text_lengths(b)
    assert unit == "words" and len(lengths) == b.sizes["train"] and min(lengths) >= 5


def test_token_lengths_with_a_tokenizer():
    from transformers import AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    b = load_data(DataConfig())
    lengths, unit = text_lengths(b, AutoTokenizer.from_pretrained(packaged_checkpoint()))
    assert unit == "tokens" and all(n >= 3 for n in lengths)


@pytest.mark.skipif(not (__import__("helpers").SHARED_DATA / "rotten_tomatoes").exists(), reason="../shared/data absent")
def test_shared_rotten_tomatoes_folder():
    from helpers import SHARED_DATA

    b = load_data(DataConfig(source="local", dataset_id=str(SHARED_DATA / "rotten_tomatoes")))
    assert b.sizes == {"train": 8530, "validation": 1066, "test": 1066}


def test_sanity_report_flags_imbalance_unseen_labels_and_leakage():
    train = {"text": [f"t{i}" for i in range(40)] + ["shared text"], "label": ["a"] * 32 + ["b"] * 8 + ["a"]}
    test = {"text": ["shared text", "x1", "x2", "x3"], "label": ["a", "b", "c", "a"]}
    val = {"text": ["v1", "v2"], "label": ["a", "b"]}
    bundle = prepare(dd(train=train, validation=val, test=test), DataConfig())
    report = " | ".join(sanity_report(bundle))
    assert "Class imbalance in train" in report and "4.1x" in report
    assert "Labels in test but not in train: c" in report
    assert "1 text(s) appear in both train and test" in report
    (only,) = sanity_report(load_data(DataConfig()))  # the demo data is clean, but its validation split is small
    assert only.startswith("The validation split holds 32 texts") and "picked by chance" in only


def test_negative_labels_in_a_users_file_are_classes(tmp_path):
    """Case: labels -1/0/1 in a CSV lost class -1 ('missing or unknown label'); -1 as 'unlabelled' is a Hub convention."""
    f = tmp_path / "sentiment.csv"
    pd.DataFrame({"text": [f"review {i}" for i in range(90)], "label": [-1, 0, 1] * 30}).to_csv(f, index=False)
    bundle = load_data(DataConfig(source="upload", dataset_id=str(f)))
    assert bundle.label_names == ["-1", "0", "1"] and sum(bundle.sizes.values()) == 90
    assert not any("unknown label" in n for n in bundle.notes)


def test_jsonl_with_mixed_value_types_loads(tmp_path):
    """Case: a JSONL label that is sometimes 1, sometimes "pos", or a mixed unused column, gave a raw ArrowInvalid."""
    import json

    f = tmp_path / "mixed.jsonl"
    rows = [{"text": f"review {i}", "label": (i % 2 if i % 3 else ["neg", "pos"][i % 2]), "meta": (i if i % 2 else "x")}
            for i in range(60)]  # fmt: skip
    f.write_text("\n".join(json.dumps(r) for r in rows))
    bundle = load_data(DataConfig(source="upload", dataset_id=str(f)))
    assert sum(bundle.sizes.values()) == 60 and set(bundle.label_names) == {"0", "1", "neg", "pos"}


def test_semicolon_csv_from_excel_is_read(tmp_path):
    f = tmp_path / "excel.csv"
    f.write_text("text;label\n" + "\n".join(f"review number {i}, with a comma;{'pos' if i % 2 else 'neg'}" for i in range(40)))
    bundle = load_data(DataConfig(source="upload", dataset_id=str(f)))
    assert bundle.label_names == ["neg", "pos"] and sum(bundle.sizes.values()) == 40


def test_one_column_file_says_what_it_found(tmp_path):
    f = tmp_path / "one.csv"
    f.write_text("just_text\n" + "\n".join(f"line {i}" for i in range(10)))
    with pytest.raises(DataError, match="it has one column, 'just_text'"):
        load_data(DataConfig(source="upload", dataset_id=str(f)))


def test_a_hub_dataset_over_the_row_cap_is_refused_before_downloading(monkeypatch):
    import datasets

    from ftui import hub
    from ftui.config import ReadLimits
    from ftui.data import load_raw

    monkeypatch.setattr(hub, "hub_split_rows", lambda *a, **k: {"train": 25_000, "test": 25_000})

    def no_download(*a, **k):
        raise AssertionError("downloaded")

    monkeypatch.setattr(datasets, "load_dataset", no_download)
    with pytest.raises(DataError, match="25,000 rows; this deployment reads at most 10,000"):
        load_raw(DataConfig(source="hub", dataset_id="stanfordnlp/imdb"), limits=ReadLimits(max_rows=10_000))


def test_excel_workbooks_are_read_like_csv(tmp_path):
    f = tmp_path / "reviews.xlsx"
    pd.DataFrame({"review": [f"review number {i}" for i in range(40)], "label": ["pos", "neg"] * 20}).to_excel(f, index=False)
    bundle = load_data(DataConfig(source="local", dataset_id=str(f)))
    assert bundle.label_names == ["neg", "pos"] and sum(bundle.sizes.values()) == 40
    fake = tmp_path / "not-really.xlsx"
    fake.write_text("text,label\na,b\n")
    with pytest.raises(DataError, match="not an Excel workbook"):
        load_data(DataConfig(source="local", dataset_id=str(fake)))
    old = tmp_path / "old.xls"
    old.write_bytes(b"\xd0\xcf\x11\xe0" + b"\0" * 100)
    with pytest.raises(DataError, match=r"Save it as \.xlsx"):
        load_data(DataConfig(source="local", dataset_id=str(old)))


def test_the_preview_shows_the_label_first():
    bundle = load_data(DataConfig())
    assert list(preview_frame(bundle).columns)[0] == LABEL
