"""Noise on real runs: two finished tiny runs and a TF-IDF baseline on the same test texts, paired; one on other texts,
refused; the sizes recorded, the intervals in the tables and the CLI's end line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers import SHARED_DATA, baseline_cfg, finish, finished_tiny_run, wind_down
from scipy.stats import binomtest

from ftui import significance as sig


@pytest.fixture(scope="module")
def three_runs(tiny_bert_dir, tmp_path_factory):
    """Two fine-tuned tiny runs and a TF-IDF baseline, all on the demo data's test split (trained once per module)."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    engine = Engine(runs_dir=tmp_path_factory.mktemp("noise-runs"), hub_status=HubStatus(False, "offline (tests)"))
    a = finished_tiny_run(engine, tiny_bert_dir, "tiny *a*")
    b = finished_tiny_run(engine, tiny_bert_dir, "tiny [b](x:y)")
    base = finish(engine, engine.start_run(baseline_cfg("tfidf")))
    yield engine, a, b, base
    wind_down(engine)


def discordant(a: pd.DataFrame, b: pd.DataFrame) -> tuple[int, int]:
    ca, cb = a["correct"].to_numpy(bool), b["correct"].to_numpy(bool)
    return int((ca & ~cb).sum()), int((~ca & cb).sum())


def test_runs_record_sizes_and_pair_on_the_same_test_texts(three_runs):
    engine, a, b, base = three_runs
    pa, pb, pbase = (engine.test_predictions(r.run_id) for r in (a, b, base))
    for run, frame in ((a, pa), (b, pb), (base, pbase)):
        assert run.result["test_size"] == len(frame) > 0 and run.result["val_size"] > 0
    assert (pa["text"].to_numpy() == pbase["text"].to_numpy()).all()  # the same split, row for row
    pairs = sig.compare_runs(pa, pb)
    assert pairs is not None and [p.metric for p in pairs] == ["accuracy", "macro-F1"]
    only_a, only_b = discordant(pa, pb)
    assert (pairs[0].only_a, pairs[0].only_b, pairs[0].n) == (only_a, only_b, len(pa))
    expected = binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    assert pairs[0].p == pytest.approx(expected)
    assert pairs[0].a == pytest.approx(a.result["test_accuracy"]) and pairs[0].b == pytest.approx(b.result["test_accuracy"])
    assert (pairs[1].a, pairs[1].b) == pytest.approx((a.result["test_macro_f1"], b.result["test_macro_f1"]))
    ivs = sig.test_intervals(pa)
    assert (ivs[0].low, ivs[0].high) == pytest.approx(sig.wilson(int(pa["correct"].sum()), len(pa)))


def test_vs_base_in_the_table_and_the_verdict_follow_mcnemar(three_runs):
    from ftui.experiments import baseline_verdict, display_frame, runs_frame
    from ftui.ui.common import predictions_loader

    engine, a, _b, base = three_runs
    paired = sig.pairer(predictions_loader(engine), accuracy_only=True)
    frame = runs_frame(engine.run_headers(), paired=paired)
    row = frame[frame["run_id"] == a.run_id].iloc[0]
    only_a, only_b = discordant(engine.test_predictions(a.run_id), engine.test_predictions(base.run_id))
    noise = sig.mcnemar_exact(only_a, only_b) >= 0.05
    assert row["vs_base_noise"] is noise
    n = a.result["test_size"]
    assert row["test_ci"] == "{:.3f}–{:.3f} (n={:,})".format(*sig.wilson(round(a.result["test_accuracy"] * n), n), n)
    shown = display_frame(frame).set_index("id")
    assert shown.loc[a.run_id, "vs base"].endswith(" (noise)") is noise
    assert shown.loc[a.run_id, "test acc 95% CI"] == row["test_ci"] and shown.loc[base.run_id, "vs base"] == ""
    verdict = baseline_verdict(a.header(), engine.run_headers(), paired=paired)
    below = a.result["test_accuracy"] < base.result["test_accuracy"]
    assert ("within noise" in verdict) is noise and verdict.startswith("⚠") is below, verdict
    assert verdict.startswith("Within noise of the best baseline") is (noise and not below)
    assert f"on the same {n} test texts" in verdict and "exact McNemar p = " in verdict


def test_compare_section_escapes_names_and_refuses_other_texts(three_runs, csv_file):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    engine, a, b, _base = three_runs
    data = DataConfig(source="upload", dataset_id=str(csv_file), text_columns=("review",), label_column="label")
    other_cfg = RunConfig(data, ModelConfig(), TrainConfig(max_length=32), kind="baseline", baseline="tfidf")
    other = finish(engine, engine.start_run(other_cfg))
    load = {r.run_id: engine.test_predictions(r.run_id) for r in (a, b, other)}
    text = sig.compare_md([(a.name, load[a.run_id]), (b.name, load[b.run_id]), (other.name, load[other.run_id])])
    assert "tiny \\*a\\*" in text and "tiny \\[b\\](x:y)" in text and "*a*" not in text.replace("\\*a\\*", "")
    assert f"on the same {len(load[a.run_id])} test texts" in text
    assert f"**{other.name}** vs **tiny \\*a\\***: not tested on the same test texts, so they cannot be paired" in text
    assert text.count("95% CI") >= 3 + 1  # three runs' accuracy intervals (and macro-F1), one paired difference or more


def test_cli_end_line_has_the_accuracy_interval(three_runs):
    from ftui.cli import end_line

    _engine, a, _b, _base = three_runs
    line = end_line(a)
    n, acc = line["test_size"], line["test_accuracy"]
    assert line["test_accuracy_95ci"] == [round(x, 4) for x in sig.wilson(round(acc * n), n)]
    assert line["test_accuracy_95ci"][0] <= acc <= line["test_accuracy_95ci"][1]


def test_sweep_rows_carry_the_validation_size_and_ties(three_runs):
    from ftui.sweeps import shown_ranks

    _engine, a, b, base = three_runs
    rows = [  # as sweep_table builds them, from the real runs' results
        {"rank": i, "run_id": r.run_id, "completed": True, "val_score": r.result["best_eval"]["accuracy"],
         "val_acc": r.result["best_eval"]["accuracy"], "val_size": r.result["val_size"]}
        for i, r in enumerate(sorted((a, b, base), key=lambda r: -r.result["best_eval"]["accuracy"]), start=1)
    ]  # fmt: skip
    best = rows[0]
    tied = [r is best or sig.two_proportion_p(best["val_acc"], best["val_size"], r["val_acc"], r["val_size"]) >= 0.05
            for r in rows]  # fmt: skip
    expected = [("1=" if t and sum(tied) > 1 else str(r["rank"])) for r, t in zip(rows, tied, strict=True)]
    assert shown_ranks(rows) == expected
    assert np.isfinite([r["val_acc"] for r in rows]).all() and all(r["val_size"] > 0 for r in rows)


RT = SHARED_DATA / "rotten_tomatoes"


@pytest.mark.slow
@pytest.mark.skipif(not RT.exists(), reason="../shared/data/rotten_tomatoes absent")
def test_tfidf_against_nbsvm_on_rotten_tomatoes_is_measured(engine):
    """The docs' measured example: two bag-of-words baselines on the 1,066 rotten_tomatoes test reviews, paired."""
    import json

    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    runs = {}
    for kind in ("tfidf", "nbsvm"):
        cfg = RunConfig(DataConfig(source="local", dataset_id=str(RT)), ModelConfig(), TrainConfig(max_length=64),
                        kind="baseline", baseline=kind)  # fmt: skip
        runs[kind] = finish(engine, engine.start_run(cfg))
    frames = {k: engine.test_predictions(r.run_id) for k, r in runs.items()}
    pairs = sig.compare_runs(frames["nbsvm"], frames["tfidf"])
    assert pairs is not None and pairs[0].n == len(frames["tfidf"]) == runs["tfidf"].result["test_size"]
    only_a, only_b = discordant(frames["nbsvm"], frames["tfidf"])
    assert pairs[0].p == pytest.approx(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)
    assert (pairs[1].a, pairs[1].b) == pytest.approx((runs["nbsvm"].result["test_macro_f1"],
                                                      runs["tfidf"].result["test_macro_f1"]))  # fmt: skip
    print(json.dumps({
        "intervals": {k: [sig.interval_text(iv) for iv in sig.test_intervals(f)] for k, f in frames.items()},
        "nbsvm_vs_tfidf": sig.paired_md("nbsvm", "tfidf", pairs),
        "validation": {k: (r.result["val_size"], sig.validation_flag(r.result["best_eval"]["accuracy"],
                                                                      r.result["val_size"])) for k, r in runs.items()},
    }, indent=1, ensure_ascii=False))  # fmt: skip
