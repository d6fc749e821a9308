"""Settings chosen from the data (ftui.recommend): the rules with their measured reasons, applying them only where a
setting was not given, and the engine's and CLI's use of them."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ftui.cli import build_parser
from ftui.cli_flags import given_fields
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.recommend import DataFacts, Recommendation, apply, label_shares, measure, recommend
from ftui.tasks import Task


def facts(cut: float = 0.0, task: Task = Task.SINGLE, shares: tuple[float, ...] = (0.5, 0.5), two_phase_ok: bool = True):
    lengths = [300] * round(100 * cut) + [20] * (100 - round(100 * cut))
    return measure(task, shares, lengths, "tokens", 256, two_phase_ok)


def settings(recs: list[Recommendation]) -> dict[str, object]:
    return {r.setting: r.value for r in recs}


# ------------------------------------------------------------------------------------------------ the rules
def test_many_texts_cut_at_the_max_length_recommend_head_and_tail_with_the_share_in_the_reason() -> None:
    recs = recommend(facts(cut=0.64))
    long = next(r for r in recs if r.setting == "long_text")
    assert long.value == "head_tail"
    assert long.reason.startswith("64% of train texts are cut at 256 tokens: head + tail keeps their endings")
    assert settings(recs) == {"long_text": "head_tail"}  # head first did not win on long documents: one phase stays
    assert recommend(facts(cut=0.1)) == []  # below advice.CUT_SHARE: cutting is harmless


def test_short_texts_and_balanced_single_labels_keep_every_default() -> None:
    assert recommend(facts()) == []
    assert recommend(facts(task=Task.SINGLE, shares=(0.9, 0.1))) == []  # imbalance: the Data tab warns; no rule here


def test_sparse_multi_label_data_gets_balanced_weights_and_the_head_first_and_dense_does_not() -> None:
    sparse = recommend(facts(task=Task.MULTI, shares=(0.125,) * 12))
    assert settings(sparse) == {"class_weights": "balanced", "schedule": "two-phase"}
    assert "a text carries 1.5 of 12 labels on average" in sparse[0].reason and "no label" in sparse[0].reason
    assert "1.5 of 12 per text" in sparse[1].reason
    no_layers = recommend(facts(task=Task.MULTI, shares=(0.125,) * 12, two_phase_ok=False))
    assert settings(no_layers) == {"class_weights": "balanced"}  # a checkpoint that cannot train its head alone
    assert recommend(facts(task=Task.MULTI, shares=(0.6, 0.5, 0.4))) == []  # 1.5 of 3: not sparse
    assert recommend(facts(task=Task.REGRESSION, shares=())) == []


def test_the_facts_count_what_is_past_the_max_length() -> None:
    f = measure(Task.SINGLE, (0.5, 0.5), [256, 257, 10, 300], "words", 256, False)
    assert (f.measured, f.over, f.cut_share, f.unit) == (4, 2, 0.5, "words")  # exactly the max length is not cut
    assert DataFacts(Task.SINGLE, 128, 0, 0, "tokens", (), True).cut_share == 0.0  # nothing measured: nothing cut
    assert label_shares(Task.SINGLE, np.array([0, 0, 0, 1]), 3) == (0.75, 0.25, 0.0)
    multi = label_shares(Task.MULTI, np.array([[1, 0], [1, 1], [0, 0], [0, 0]], dtype=np.float32), 2)
    assert multi == (0.5, 0.25)
    assert label_shares(Task.REGRESSION, np.array([0.1, 0.2]), 1) == ()


# ------------------------------------------------------------------------------------------------ applying
def test_apply_sets_what_was_not_given_and_reports_only_what_changed() -> None:
    recs = [Recommendation("long_text", "head_tail", "r1"), Recommendation("class_weights", "balanced", "r2")]
    train, applied = apply(TrainConfig(), recs)
    assert (train.long_text, train.class_weights) == ("head_tail", "balanced") and applied == recs
    train, applied = apply(TrainConfig(long_text="chunks"), recs, given={"long_text"})
    assert (train.long_text, train.class_weights, applied) == ("chunks", "balanced", recs[1:])  # a given flag wins
    train, applied = apply(TrainConfig(class_weights="balanced"), recs[1:])
    assert applied == []  # already so: nothing changed
    off = TrainConfig(recommend=False)
    assert apply(off, recs) == (off, [])


# --------------------------------------------------------------------------------------------- engine and CLI
def long_csv(tmp_path: Path) -> Path:
    """Reviews of about 60 words whose label word comes last: every one is cut at 16 tokens."""
    rows = [{"text": " ".join(["filler"] * 60 + [["awful", "great"][i % 2]]), "label": ["neg", "pos"][i % 2]}
            for i in range(40)]  # fmt: skip
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def sparse_jsonl(tmp_path: Path) -> Path:
    """Multi-label rows carrying one of 8 labels each (12.5% of the labels: sparse)."""
    names = [f"l{k}" for k in range(8)]
    path = tmp_path / "sparse.jsonl"
    pd.DataFrame([{"text": f"text {i} about {names[i % 8]}", "labels": [names[i % 8]]} for i in range(48)]).to_json(
        path, orient="records", lines=True
    )
    return path


def run_config(data: Path, tiny_bert_dir: Path, **train: object) -> RunConfig:
    return RunConfig(
        data=DataConfig(source="local", dataset_id=str(data)),
        model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
        train=TrainConfig(max_length=16, **train),
    )


def test_the_engine_applies_the_data_recommendations_only_where_not_given(engine, tiny_bert_dir, tmp_path) -> None:
    cfg = run_config(long_csv(tmp_path), tiny_bert_dir)
    got, applied = engine.with_recommendations(cfg)
    assert settings(applied) == {"long_text": "head_tail"} and got.train.long_text == "head_tail"
    assert "100% of train texts are cut at 16 tokens" in applied[0].reason
    kept, applied = engine.with_recommendations(cfg, given={"long_text"})
    assert kept == cfg and applied == []
    off = run_config(long_csv(tmp_path), tiny_bert_dir, recommend=False)
    assert engine.with_recommendations(off) == (off, [])
    sparse, applied = engine.with_recommendations(run_config(sparse_jsonl(tmp_path), tiny_bert_dir))
    assert (sparse.train.class_weights, sparse.train.schedule) == ("balanced", "two-phase")
    assert settings(applied) == {"class_weights": "balanced", "schedule": "two-phase"}
    baseline = RunConfig(data=cfg.data, model=cfg.model, train=cfg.train, kind="baseline", baseline="tfidf")
    assert engine.recommendations(baseline) == []  # a TF-IDF baseline reads none of these settings


@pytest.mark.parametrize(
    ("flags", "given"),
    [([], set()), (["--long-text", "truncate"], {"long_text"}), (["--schedule=one-phase", "--lr", "1e-3"],
                                                                 {"schedule", "learning_rate"})],
)  # fmt: skip
def test_the_cli_knows_which_train_flags_were_typed(flags: list[str], given: set[str]) -> None:
    assert given_fields(build_parser().parse_args(["train", *flags])) == given
    assert build_parser().parse_args(["train", "--no-recommend"]).no_recommend


@pytest.mark.parametrize(
    ("data", "flags", "expected"),
    [(long_csv, [], {"long_text": "head_tail"}), (long_csv, ["--long-text", "truncate"], {}),
     (long_csv, ["--no-recommend"], {}), (sparse_jsonl, ["--schedule", "one-phase"], {"class_weights": "balanced"})],
)  # fmt: skip
def test_cli_train_applies_recommendations_unless_given_or_off(
    data, flags: list[str], expected: dict[str, str], tiny_bert_dir, tmp_path, capsys
) -> None:
    from ftui.cli import main

    argv = ["train", "--offline", "--dataset", str(data(tmp_path)), "--checkpoint", str(tiny_bert_dir),
            "--max-length", "16", "--max-steps", "1", "--evals-per-epoch", "1", "--batch-size", "32",
            "--runs-dir", str(tmp_path / "runs"), *flags]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    start, end = lines[0], lines[-1]
    assert start["type"] == "start" and {r["setting"]: r["value"] for r in start["recommended"]} == expected
    assert start["recommend"] is ("--no-recommend" not in flags)
    assert end["recommended"] == [f"{k}={v}" for k, v in expected.items()]
    said = [line.removeprefix("ftui: recommended: ") for line in out.err.splitlines() if line.startswith("ftui: recommended: ")]
    assert [line.split(": ")[0] for line in said] == [f"{k} {v}" for k, v in expected.items()]  # one line each, why
    train = json.loads((Path(end["run_dir"]) / "run.json").read_text())["config"]["train"]
    assert train["long_text"] == expected.get("long_text", "truncate") and train["schedule"] == "one-phase"
    assert train["class_weights"] == expected.get("class_weights", "none")
