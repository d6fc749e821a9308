"""The score to beat, per label shape: the best baseline on the same test split, "vs base", the verdict and its advice,
and the chart's dashed line (pure functions over stored records: no training)."""

from dataclasses import replace

import pytest

from ftui import reference
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.experiments import baseline_verdict, display_frame, runs_frame
from ftui.plots import accuracy_figure, add_baseline_line, regression_figure
from ftui.reference import Line, best_baselines, chart_line, has_baseline
from ftui.significance import Paired

FT = RunConfig(DataConfig(source="local", dataset_id="/data/reviews.csv", task="auto"), ModelConfig(), TrainConfig())
TFIDF = replace(FT, kind="baseline", baseline="tfidf")
OTHER_DATA = replace(FT, data=replace(FT.data, dataset_id="/data/other.csv"))


def rec(run_id: str, cfg: RunConfig, shape: str, test: float | None, val: float | None = None, status: str = "completed"):
    key = {"single_label": "accuracy", "multi_label": "micro_f1", "regression": "rmse"}[shape]
    result = {"task": shape, f"test_{key}": test, "best_eval": {key: val if val is not None else test}} if test else {}
    return {"run_id": run_id, "name": run_id, "status": status, "config": cfg.to_dict(), "result": result,
            "started_at": 1.0, "ended_at": 2.0, "note": ""}  # fmt: skip


def test_the_best_baseline_is_per_test_split_and_label_shape_and_rmse_is_lower_is_better():
    records = [
        rec("tf-reg", TFIDF, "regression", 0.50),
        rec("emb-reg", replace(TFIDF, baseline="embeddings"), "regression", 0.40),  # a lower error: the better one
        rec("tf-multi", replace(TFIDF, data=replace(FT.data, task="multi_label")), "multi_label", 0.70),
        rec("tf-other", replace(TFIDF, data=OTHER_DATA.data), "single_label", 0.90),
        rec("ft", FT, "regression", 0.45),  # a fine-tune is never a baseline
    ]
    best = best_baselines(records)
    assert best[(reference.split_key(FT.to_dict()), "regression")]["run_id"] == "emb-reg"
    assert best[(reference.split_key(replace(FT, data=replace(FT.data, task="multi_label")).to_dict()), "multi_label")][
        "run_id"] == "tf-multi"  # fmt: skip
    assert len(best) == 3


def test_vs_base_is_the_shapes_score_difference_and_says_which():
    records = [
        rec("b1", TFIDF, "regression", 0.50),
        rec("ft-worse", FT, "regression", 0.55),
        rec("b2", replace(TFIDF, data=OTHER_DATA.data), "multi_label", 0.70),
        rec("ft-better", OTHER_DATA, "multi_label", 0.75),
    ]
    frame = runs_frame(records).set_index("run_id")
    assert frame.loc["ft-worse", "delta_vs_baseline"] == pytest.approx(0.05)
    assert frame.loc["ft-worse", "vs_base_metric"] == "RMSE" and frame.loc["ft-better", "vs_base_metric"] == "micro-F1"
    shown = display_frame(runs_frame(records)).set_index("id")
    assert shown.loc["ft-worse", "vs base"] == "+0.05 RMSE"  # an error's difference: plus is worse (the legend says so)
    assert shown.loc["ft-better", "vs base"] == "+5.0 pts micro-F1"
    assert shown.loc["b1", "vs base"] == ""  # a baseline has no baseline


def test_vs_base_marks_noise_only_from_the_test_of_the_shapes_own_score():
    records = [rec("b", TFIDF, "multi_label", 0.70), rec("ft", FT, "multi_label", 0.72)]
    subset_only = Paired("subset accuracy", 0.5, 0.5, -0.1, 0.1, 0.9, 30, "exact McNemar")
    frame = runs_frame(records, paired=lambda a, b: [subset_only]).set_index("run_id")
    assert frame.loc["ft", "vs_base_noise"] is None  # subset accuracy says nothing about micro-F1
    micro = Paired("micro-F1", 0.72, 0.70, -0.05, 0.09, 0.6, 30, "paired bootstrap")
    frame = runs_frame(records, paired=lambda a, b: [micro, subset_only]).set_index("run_id")
    assert frame.loc["ft", "vs_base_noise"] is True


@pytest.mark.parametrize(
    ("shape", "base", "run", "said"),
    [
        ("single_label", 0.80, 0.70, "(0.800) beats this fine-tuned model (0.700) by 10.0 points"),
        ("multi_label", 0.80, 0.70, "(micro-F1 0.800) beats this fine-tuned model (micro-F1 0.700) by 10.0 points"),
        ("regression", 0.40, 0.60, "(RMSE 0.4) beats this fine-tuned model (RMSE 0.6) by 0.2"),
    ],
)
def test_below_its_baseline_a_run_is_told_plainly_what_tends_to_help(shape, base, run, said):
    verdict = baseline_verdict(rec("ft", FT, shape, run), [rec("b", TFIDF, shape, base), rec("ft", FT, shape, run)])
    assert said in verdict and verdict.startswith("⚠")
    for tip in ("more epochs", "--long-text chunks", "--schedule two-phase", "a larger checkpoint", "Hugging Face Jobs"):
        assert tip in verdict, tip
    two_phase_chunks = replace(FT, train=replace(FT.train, schedule="two-phase", long_text="chunks"))
    tuned = baseline_verdict(rec("ft", two_phase_chunks, shape, run), [rec("b", TFIDF, shape, base)])
    assert "more epochs" in tuned and "--schedule" not in tuned and "--long-text" not in tuned  # what it already does


def test_above_its_baseline_a_run_is_not_given_advice():
    verdict = baseline_verdict(rec("ft", FT, "regression", 0.30), [rec("b", TFIDF, "regression", 0.40)])
    assert verdict.startswith("This fine-tuned model beats the best baseline") and "What tends to help" not in verdict


def test_a_baseline_queued_running_or_completed_counts_a_failed_one_does_not():
    assert not has_baseline(FT.to_dict(), [rec("ft", FT, "single_label", 0.8)])
    for status in ("queued", "running", "completed"):
        assert has_baseline(FT.to_dict(), [rec("b", TFIDF, "single_label", None, status=status)])
    assert not has_baseline(FT.to_dict(), [rec("b", TFIDF, "single_label", None, status="failed")])
    assert not has_baseline(OTHER_DATA.to_dict(), [rec("b", TFIDF, "single_label", 0.8)])  # other data
    capped = replace(FT, data=replace(FT.data, max_train_examples=100))  # the cap keeps the test split
    assert has_baseline(capped.to_dict(), [rec("b", TFIDF, "single_label", 0.8)])


def test_the_chart_line_is_the_baselines_validation_score_labelled_with_its_method():
    records = [rec("b", TFIDF, "single_label", 0.78, val=0.8125), rec("ft", FT, "single_label", 0.9)]
    line = chart_line(records[1], records)
    assert line == Line(0.8125, "TF-IDF baseline 0.81 (accuracy)", "single_label")
    running = {**records[1], "result": {}}  # a run still training: its label shape comes from its events
    assert chart_line(running, records, "single_label") == line and chart_line(running, records, "regression") is None
    assert chart_line(records[0], records) is None  # a baseline draws no line for itself
    fig = add_baseline_line(accuracy_figure([{"type": "eval", "step": 1, "eval_accuracy": 0.5}]), line)
    (shape,) = fig.layout.shapes
    assert shape.line.dash == "dash" and shape.y0 == shape.y1 == 0.8125
    assert [a.text for a in fig.layout.annotations] == ["TF-IDF baseline 0.81 (accuracy)"]
    rmse = Line(0.42, "TF-IDF baseline 0.42 (RMSE)", "regression")
    assert not add_baseline_line(accuracy_figure([]), rmse, "single_label").layout.shapes  # another shape's chart
    assert add_baseline_line(regression_figure([]), rmse).layout.shapes[0].yref == "y"  # the RMSE axis


def test_a_baseline_name_is_inert_in_the_chart_label():
    hostile = replace(TFIDF, baseline="tfidf")
    records = [{**rec("b", hostile, "single_label", 0.7), "name": "<img src=x onerror=alert(1)>"},
               rec("ft", FT, "single_label", 0.8)]  # fmt: skip
    line = chart_line(records[1], records)
    assert line is not None and "<" not in line.label  # the label names the method, never the run's free-text name
