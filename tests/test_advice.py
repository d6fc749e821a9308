"""Run warnings as typed events (shown on the page, printed by the CLI), time-capped schedules planned for the steps
that fit, the real epoch fraction of a cut run, and a length chart that says what each long-text mode reads."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ftui.advice import emit, predictions, truncation, warnings_of
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.escaping import escape_md
from ftui.events import WarningKind
from ftui.plots import length_histogram, status_markdown
from ftui.runs import Run, RunStatus
from ftui.schedule import planned_total, steps_that_fit
from ftui.tasks import Task


def tiny(tiny_bert_dir: Path, **train) -> RunConfig:
    t = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "max_length": 32, **train}
    return RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(**t))


def finish(engine, run: Run) -> Run:
    assert run.done.wait(180) and engine.join(30)
    assert run.status == RunStatus.COMPLETED, run.error
    return run


# ------------------------------------------------------------------------------------------------ length chart
@pytest.mark.parametrize(
    ("mode", "reads"),
    [("truncate", "cut there"), ("head_tail", "first and last tokens"), ("chunks", "read whole, in overlapping windows")],
)
def test_length_chart_says_what_each_long_text_mode_reads(mode: str, reads: str) -> None:
    title = length_histogram([10, 20, 300, 400], "tokens", 128, mode).layout.title.text
    assert "50% are longer than 128 tokens" in title and reads in title
    assert ("will be cut" in title) == (mode == "truncate")


# ---------------------------------------------------------------------------------------------- warning rules
def test_truncation_warning_per_mode() -> None:
    lengths = [300] * 99 + [10]
    cut = truncation(lengths, 256, "truncate")
    assert cut is not None and cut.kind is WarningKind.TRUNCATION and "99.0% of 100 train texts" in cut.message
    assert "--max-length" in cut.message and "--long-text chunks" in cut.message
    assert "head + tail" in truncation(lengths, 256, "head_tail").message
    assert truncation(lengths, 256, "chunks") is None  # chunks read every token
    assert truncation([300] + [10] * 9, 256, "truncate") is None  # 10%: below the share that warns


def test_prediction_warnings() -> None:
    gold = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 1]], dtype=np.float32)
    evals = [{"type": "eval", "eval_micro_f1": 0.0}, {"type": "eval", "eval_micro_f1": 0.0}]
    nothing = predictions(Task.MULTI, np.full((4, 3), 0.1), gold, ["a", "b", "c"], 0.5, evals, 9)
    assert nothing.kind is WarningKind.NO_LABELS and "0.000 at all 2 evaluations" in nothing.message
    good_evals = [{"type": "eval", "eval_micro_f1": 0.6}]
    few = predictions(Task.MULTI, np.full((4, 3), 0.1), gold, ["a", "b", "c"], 0.5, good_evals, 9)
    assert few.kind is WarningKind.NO_LABELS and "predicts 0 labels on the test set, where 5 are true" in few.message
    assert predictions(Task.MULTI, gold * 0.9, gold, ["a", "b", "c"], 0.5, good_evals, 9) is None
    # A threshold tuned down on a collapsed model: the commonest label for every text (the defaults on sparse labels).
    same = predictions(Task.MULTI, np.tile([0.4, 0.2, 0.1], (4, 1)), gold, ["a", "b", "c"], 0.3, evals, 9)
    assert same.kind is WarningKind.NO_LABELS and "gives 100.0% of the test texts the same labels (a)" in same.message
    late = predictions(Task.MULTI, np.tile([0.4, 0.2, 0.1], (4, 1)), gold, ["a", "b", "c"], 0.3, good_evals, 9)
    assert "has not learned to tell the texts apart: it gives 100.0%" in late.message
    assert "--schedule two-phase" in late.message and "--class-weights balanced" in late.message
    assert predictions(Task.MULTI, np.tile([0.9, 0.1, 0.1], (4, 1)), np.tile([1, 0, 0], (4, 1)), ["a", "b", "c"], 0.5,
                       good_evals, 9) is None  # every text does carry the same labels: nothing to warn about  # fmt: skip
    one = predictions(Task.SINGLE, np.tile([0.9, 0.1], (50, 1)), np.array([0, 1] * 25), ["neg", "pos"], 0.5, [], 3)
    assert one.kind is WarningKind.ONE_CLASS and "'neg' for 100.0% of the test texts" in one.message
    mixed = np.array([[0.9, 0.1], [0.1, 0.9]] * 25)
    assert predictions(Task.SINGLE, mixed, np.array([0, 1] * 25), ["neg", "pos"], 0.5, [], 3) is None


def test_a_warning_is_an_event_and_a_status_line(tmp_path: Path) -> None:
    run = Run("r1", "tiny", RunConfig(), tmp_path)
    emit(run, truncation([300] * 10, 256, "truncate"))
    assert warnings_of(run.events()) == [{"kind": "truncation", "message": run.events()[0]["message"]}]
    assert run.events()[0]["type"] == "warning"
    assert f"⚠ {run.events()[0]['message']}" in status_markdown(run.snapshot())


def test_a_warning_of_a_kind_from_a_newer_version_is_listed_as_stored() -> None:
    events = [{"type": "warning", "step": 2, "kind": "from_the_future", "message": "m1"},
              {"type": "warning", "step": 3, "kind": "one_class", "message": "m2"}]  # fmt: skip
    assert warnings_of(events) == [{"kind": "from_the_future", "message": "m1"}, {"kind": "one_class", "message": "m2"}]


# --------------------------------------------------------------------------------------------- planning a cap
def test_steps_that_fit_and_the_planned_total() -> None:
    assert steps_that_fit(100.0, 0.5) == 194  # 97% of the time left
    assert steps_that_fit(100.0, 0.5, share=0.5) == 97
    assert planned_total(40, 194, 1000) == 234 and planned_total(40, 5000, 1000) == 1000 and planned_total(40, 0, 99) == 41


def test_a_rebuilt_schedule_continues_from_the_step_it_is_at() -> None:
    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_linear_schedule_with_warmup(opt, 0, 1000)
    for _ in range(10):
        opt.step()
        sched.step()
    sched = get_linear_schedule_with_warmup(opt, 0, 20, last_epoch=9)  # as TimeCapPlanner re-plans at step 10
    assert opt.param_groups[0]["lr"] == pytest.approx(0.5)  # (20 - 10) / 20
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0)


def test_a_time_capped_run_plans_for_the_steps_that_fit(engine, tiny_bert_dir) -> None:
    """100 epochs cannot fit in 6 s: the schedule is re-planned for what fits, so the rate decays by the cap (the old
    code planned 100 epochs and was cut with the rate still at its peak)."""
    cfg = tiny(tiny_bert_dir, epochs=100, batch_size=8, warmup_ratio=0.0, max_minutes=0.1, evals_per_epoch=1)
    run = finish(engine, engine.start_run(cfg))
    events = run.events()
    plans = [e for e in events if e["type"] == "schedule"]
    start = events[0]
    assert plans and all(p["steps"] < start["total_steps"] and p["planned_epochs"] == 100 for p in plans)
    plan = run.snapshot().progress.plan
    assert "steps that fit" in plan and f"{plans[-1]['epochs']:.2f} of the 100" in plan
    assert escape_md(run.snapshot().progress.plan) in status_markdown(run.snapshot())  # the page says it
    lrs = [e["lr"] for e in events if e["type"] == "train"]
    assert lrs[-1] < 0.5 * 1e-3  # planned to decay by the cap, not cut at the peak
    trained = run.result["epoch"]
    assert trained < 100 and trained == pytest.approx(run.result["steps"] / start["steps_per_epoch"], abs=1e-3)
    cut = [w for w in warnings_of(events) if w["kind"] == "time_limit"]
    assert len(cut) == 1 and f"after {trained:.2f} of the 100 epochs" in cut[0]["message"]


def test_a_run_cut_mid_epoch_logs_the_real_epoch_fraction(engine, tiny_bert_dir) -> None:
    cfg = tiny(tiny_bert_dir, epochs=3, batch_size=64, max_steps=6, evals_per_epoch=1, max_length=16)  # 4 per epoch
    run = finish(engine, engine.start_run(cfg))
    epochs = [e["epoch"] for e in run.events() if e["type"] == "epoch"]
    assert epochs == [1, 1.5] and run.result["epoch"] == 1.5  # the old code logged [1, 2]


# ------------------------------------------------------------------------------------------ end-to-end warnings
def test_below_baseline_is_warned_on_the_run(engine, tiny_bert_dir) -> None:
    base = finish(
        engine, engine.start_run(RunConfig(DataConfig(), ModelConfig(), TrainConfig(), kind="baseline", baseline="tfidf"))
    )
    run = finish(engine, engine.start_run(tiny(tiny_bert_dir, learning_rate=1e-9, max_steps=1)))  # learns nothing
    assert run.result["test_accuracy"] < base.result["test_accuracy"]
    kinds = {w["kind"]: w["message"] for w in warnings_of(run.events())}
    assert "below_baseline" in kinds and base.name in kinds["below_baseline"] and "**" not in kinds["below_baseline"]
    assert run.events()[-1]["type"] == "test"  # warnings come before the test event, which stays last
    shown = run.snapshot().progress.warnings
    assert [(w.kind, w.message) for w in shown] == [(w["kind"], w["message"]) for w in warnings_of(run.events())]


def test_cli_prints_each_warning_on_stderr_and_lists_them_at_the_end(tiny_bert_dir, tmp_path, capsys) -> None:
    from ftui.cli import main

    argv = ["train", "--offline", "--dataset", "demo", "--checkpoint", str(tiny_bert_dir), "--max-length", "8",
            "--max-steps", "1", "--evals-per-epoch", "1", "--batch-size", "32", "--runs-dir", str(tmp_path)]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr()
    lines = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    end = lines[-1]
    assert end["type"] == "end" and end["warnings"] and end["warnings"][0]["kind"] == "truncation"
    said = [line.removeprefix("ftui: warning: ") for line in out.err.splitlines() if line.startswith("ftui: warning: ")]
    assert said == [w["message"] for w in end["warnings"]]  # one stderr line per warning, in order
    assert "longer than the max length (8 tokens)" in said[0]
