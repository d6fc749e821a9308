"""Sweeps: parsing and checking every field, grid and random plans, points as run configs, the median pruning rule,
the sweep table, and whole sweeps through the engine's queue and the CLI."""

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import REPO, assert_scores_match_predictions, offline_engine

from ftui.config import DataConfig, ModelConfig, RunConfig, SweepRef, TrainConfig
from ftui.errors import ConfigError, FtuiError
from ftui.events import EvalEvent, EventType
from ftui.runs import Run, RunStatus
from ftui.sweeps import (
    MIN_COMPLETED,
    SweepConfig,
    apply_point,
    best_run,
    parse,
    points,
    prune_verdict,
    size,
    sweep_table,
)


def test_every_bad_field_is_named():
    sweep = SweepConfig(values=(("lr", "abc, 5"), ("freeze_depth", "-1, 2.5"), ("epochs", "1:3"), ("dropout", "0.1"),
                                ("schedule", "three-phase")))  # fmt: skip
    _, problems = parse(sweep)
    text = " | ".join(problems)
    assert "learning rate: 'abc' is not a number" in text and "learning rate: 5 is out of range" in text
    assert "freeze depth: -1 is out of range" in text and "freeze depth: 2.5 is not a whole number" in text
    assert "epochs: a range like '1:3' needs random mode" in text
    assert "'dropout' cannot be swept" in text and "schedule: 'three-phase' is not one of" in text
    assert parse(SweepConfig())[1] == ["give at least one setting to sweep, e.g. learning rate '1e-5, 3e-5, 1e-4'"]
    assert "random draws must be" in " ".join(parse(SweepConfig(values=(("lr", "1e-4"),), mode="random", draws=0))[1])


def test_grid_is_every_combination_in_order():
    sweep = SweepConfig(values=(("lr", "1e-5, 3e-5, 1e-5"), ("depth", "0, 3")))
    parsed, problems = parse(sweep)
    assert not problems and size(parsed, sweep) == 4  # a value typed twice is one value
    assert points(parsed, sweep) == [
        {"learning_rate": 1e-5, "freeze_depth": 0}, {"learning_rate": 1e-5, "freeze_depth": 3},
        {"learning_rate": 3e-5, "freeze_depth": 0}, {"learning_rate": 3e-5, "freeze_depth": 3},
    ]  # fmt: skip


def test_random_draws_are_seeded_and_within_ranges():
    sweep = SweepConfig(values=(("lr", "1e-5:1e-3"), ("batch_size", "8:64"), ("checkpoint", "packaged, a/b")),
                        mode="random", draws=200, seed=3)  # fmt: skip
    parsed, problems = parse(sweep)
    assert not problems
    drawn = points(parsed, sweep)
    assert drawn == points(parsed, sweep) and drawn != points(parsed, replace(sweep, seed=4))
    lrs = [p["learning_rate"] for p in drawn]
    assert all(1e-5 <= x <= 1e-3 for x in lrs)
    # log-uniform: about half the draws below the geometric midpoint 1e-4 (uniform would put ~9% there)
    assert 0.35 < sum(x < 1e-4 for x in lrs) / len(lrs) < 0.65
    assert all(isinstance(p["batch_size"], int) and 8 <= p["batch_size"] <= 64 for p in drawn)
    assert {p["checkpoint"] for p in drawn} == {"packaged", "a/b"}


def test_a_point_becomes_a_run_config(tmp_path):
    base = RunConfig(DataConfig(), ModelConfig(source="hub", checkpoint="x/y"), TrainConfig(run_name="mine"))
    sweep = SweepConfig(values=(), prune=True, metric="macro_f1", max_train_examples=100, max_minutes=2)
    folder = tmp_path / "ckpt"
    folder.mkdir()
    cfg = apply_point(base, {"learning_rate": 3e-5, "freeze_depth": 2, "checkpoint": str(folder)}, sweep, "sweep-1-abcd", 0)
    assert cfg.train.learning_rate == 3e-5 and cfg.model.freeze_depth == 2 and cfg.model.source == "local"
    assert cfg.data.max_train_examples == 100 and cfg.train.max_minutes == 2.0 and cfg.train.run_name == "mine-abcd-01"
    assert cfg.sweep == SweepRef("sweep-1-abcd", (("learning_rate", "3e-05"), ("freeze_depth", "2"),
                                                  ("checkpoint", str(folder))), "macro_f1", True)  # fmt: skip
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # survives the store
    assert apply_point(base, {"checkpoint": "packaged"}, sweep, "s-1", 1).model.source == "packaged"
    assert apply_point(base, {"checkpoint": "org/model"}, sweep, "s-1", 1).model == replace(base.model, checkpoint="org/model")


def test_median_rule():
    assert prune_verdict(0.1, [0.9] * (MIN_COMPLETED - 1)) is None  # too few completed points to judge
    assert prune_verdict(0.6, [0.7, 0.8, 0.9]) == 0.8
    assert prune_verdict(0.8, [0.7, 0.8, 0.9]) is None  # at the median: kept
    assert prune_verdict(0.95, [0.7, 0.8, 0.9], lower_is_better=True) == 0.8  # an error (RMSE) above the median
    assert prune_verdict(0.6, [0.7, 0.8, 0.9], lower_is_better=True) is None


def test_an_error_metric_ranks_lowest_first():
    def rec(run_id: str, rmse: float) -> dict:
        cfg = replace(RunConfig(), sweep=SweepRef("s", (("learning_rate", run_id),), "rmse"))
        return {"run_id": run_id, "name": run_id, "status": "completed", "config": cfg.to_dict(),
                "result": {"best_eval": {"rmse": rmse, "loss": rmse**2}}, "events": []}  # fmt: skip

    rows = sweep_table([rec("a", 0.9), rec("b", 0.3), rec("c", 0.5)], "s", "rmse")
    assert [r["name"] for r in rows] == ["b", "c", "a"] and best_run(rows)["val_score"] == 0.3


def _record(run_id: str, status: str, acc: float | None, pruned: bool = False, sweep_id: str = "s") -> dict:
    events = [{"type": "eval", "step": 1, "eval_accuracy": acc or 0.5}] + ([{"type": "pruned"}] if pruned else [])
    cfg = replace(RunConfig(), sweep=SweepRef(sweep_id, (("learning_rate", run_id),)))
    result = {"best_eval": {"accuracy": acc, "macro_f1": acc}} if acc is not None else {}
    return {"run_id": run_id, "name": run_id, "status": status, "config": cfg.to_dict(), "result": result,
            "events": events, "started_at": 1.0, "ended_at": 61.0}  # fmt: skip


def test_sweep_table_ranks_completed_runs_by_validation_score():
    records = [_record("a", "completed", 0.7), _record("b", "stopped", 0.95, pruned=True), _record("c", "completed", 0.9),
               _record("d", "failed", None), _record("x", "completed", 0.99, sweep_id="other")]  # fmt: skip
    rows = sweep_table(records, "s")
    assert [r["name"] for r in rows] == ["c", "a", "b", "d"] and [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[2]["status"] == "pruned" and rows[0]["minutes"] == 1.0 and rows[0]["swept"] == "learning_rate=c"
    assert best_run(rows)["name"] == "c"  # a pruned run's early score never wins
    assert best_run(sweep_table(records[3:4], "s")) is None


def test_runs_within_noise_of_the_best_share_its_rank():
    from ftui.significance import two_proportion_p
    from ftui.sweeps import shown_ranks

    def sized(run_id: str, acc: float, n: int | None, status: str = "completed") -> dict:
        rec = _record(run_id, status, acc)
        rec["result"]["val_size"] = n
        return rec

    records = [sized("a", 0.905, 200), sized("b", 0.92, 200), sized("c", 0.70, 200), sized("d", 0.915, 200, "failed"),
               sized("e", 0.91, None)]  # fmt: skip
    rows = sweep_table(records, "s")
    assert [r["name"] for r in rows] == ["b", "e", "a", "c", "d"]
    assert two_proportion_p(0.92, 200, 0.905, 200) >= 0.05 > two_proportion_p(0.92, 200, 0.70, 200)
    # a ties with b; c is worse beyond noise; e has no validation size (no claim); d did not complete
    assert shown_ranks(rows) == ["1=", "2", "1=", "4", "5"]
    assert shown_ranks(sweep_table(records[2:3], "s")) == ["1"]  # alone: no tie to show


def test_a_sweep_of_ten_thousand_points_is_refused_and_nothing_is_queued(engine):
    grid = SweepConfig(
        values=(("lr", ", ".join(f"{i + 1}e-6" for i in range(100))), ("epochs", ", ".join(str(i + 1) for i in range(100))))
    )
    with pytest.raises(FtuiError, match="The queue holds at most 20 runs; 0 are waiting and 10000 more"):
        engine.start_sweep(RunConfig(), grid)
    assert engine.queued() == [] and engine.current_run() is None


def test_a_point_the_checkpoint_cannot_take_is_named(engine, tiny_bert_dir):
    base = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(max_length=32))
    with pytest.raises(ConfigError) as exc:
        engine.start_sweep(base, SweepConfig(values=(("freeze_depth", "0, 9"), ("max_length", "32, 99999"))))
    text = str(exc.value)
    assert "max length: 99999 is out of range" in text
    with pytest.raises(ConfigError, match=r"point 2 \(freeze_depth=9\): freeze depth must be 0 to 2"):
        engine.start_sweep(base, SweepConfig(values=(("freeze_depth", "0, 9"),)))
    assert engine.queued() == []


def test_a_sweep_trains_every_point_through_the_queue(engine, tiny_bert_dir):
    base = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
                     TrainConfig(epochs=1, batch_size=32, max_length=32, evals_per_epoch=1))  # fmt: skip
    items = engine.start_sweep(base, SweepConfig(values=(("lr", "1e-3, 3e-3"), ("depth", "0, 1"))))
    assert len(items) == 4 and len({q.sweep_id for q in items}) == 1
    sweep_id = items[0].sweep_id
    assert engine.current_run().config.sweep.sweep_id == sweep_id and len(engine.queued()) == 3  # the first started
    assert engine.sweep_ids()[0] == sweep_id
    while engine.manager.training() or engine.queued():
        engine.manager.worker.join(120)
    rows = engine.sweep_table(sweep_id)
    assert len(rows) == 4 and all(r["status"] == "completed" for r in rows)
    scores = [r["val_score"] for r in rows]
    assert scores == sorted(scores, reverse=True)
    assert {r["swept"] for r in rows} == {f"learning_rate={lr}, freeze_depth={d}" for lr in ("0.001", "0.003") for d in (0, 1)}


def _done(engine, name: str, sweep: SweepRef, acc: float) -> Run:
    run = Run(name, name, replace(RunConfig(), sweep=sweep), engine.runs_dir / name)
    run.log(EvalEvent(step=1, eval_accuracy=acc))
    run.finish(RunStatus.COMPLETED, persist=False)
    engine.manager.record(run)
    return run


def test_the_pruner_stops_a_run_below_the_median_at_its_first_evaluation(engine):
    sweep = SweepRef("sweep-p", (), "accuracy", True)
    for i, acc in enumerate((0.8, 0.9, 0.7)):
        _done(engine, f"done{i}", sweep, acc)
    _done(engine, "elsewhere", replace(sweep, sweep_id="other"), 0.99)  # another sweep's runs do not count
    weak = Run("weak", "weak", replace(RunConfig(), sweep=sweep), engine.runs_dir / "weak")
    weak.listeners.append(engine.launcher.pruner(weak))
    weak.log(EvalEvent(step=4, eval_accuracy=0.75))
    assert weak.stop_event.is_set()
    (pruned,) = [e for e in weak.events() if e["type"] == EventType.PRUNED.value]
    assert pruned["median"] == 0.8 and pruned["completed"] == 3 and pruned["score"] == 0.75
    assert "pruned: accuracy 0.750 < median 0.800 of 3" in weak.snapshot().progress.pruned
    strong = Run("strong", "strong", replace(RunConfig(), sweep=sweep), engine.runs_dir / "strong")
    strong.listeners.append(engine.launcher.pruner(strong))
    strong.log(EvalEvent(step=4, eval_accuracy=0.85))
    strong.log(EvalEvent(step=8, eval_accuracy=0.1))  # only the first evaluation is judged
    assert not strong.stop_event.is_set()


def test_cli_sweep_prints_each_end_line_and_a_summary(tmp_path, tiny_bert_dir):
    args = ["--dataset", "demo", "--checkpoint", str(tiny_bert_dir), "--epochs", "1", "--batch-size", "32", "--max-length",
            "8", "--evals-per-epoch", "1", "--runs-dir", str(tmp_path / "runs"), "--offline",
            "--grid", "lr=1e-3,3e-3", "--grid", "freeze_depth=0,1", "--max-train-examples", "64"]  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "ftui", "sweep", *args], capture_output=True, text=True, cwd=REPO, timeout=600)
    lines = [json.loads(x) for x in out.stdout.strip().splitlines()]
    assert out.returncode == 0, out.stderr[-2000:]
    assert lines[0]["type"] == "sweep" and lines[0]["points"] == 4
    ends = [x for x in lines if x["type"] == "end"]
    assert len(ends) == 4 and all(e["status"] == "completed" for e in ends)
    for e in ends:
        assert_scores_match_predictions(offline_engine(tmp_path / "runs"), Path(e["run_dir"]).name, e)
    assert {tuple(sorted(e["swept"].items())) for e in ends} == {
        (("freeze_depth", d), ("learning_rate", lr)) for lr in ("0.001", "0.003") for d in ("0", "1")
    }
    # max length 8 cuts most demo reviews: each point's truncation warning is in its end line and on stderr, as `train` does
    assert all(any(w["kind"] == "truncation" for w in e["warnings"]) for e in ends)
    said = [line for line in out.stderr.splitlines() if line.startswith("ftui: warning: ")]
    assert sum("longer than the max length" in line for line in said) == 4
    summary = lines[-1]
    assert summary["type"] == "sweep_end" and summary["completed"] == 4 and summary["best"]["name"] in {e["name"] for e in ends}
    assert set(summary["tied_with_best"]) <= {e["name"] for e in ends} - {summary["best"]["name"]}
    assert all(e["test_accuracy_95ci"][0] <= e["test_accuracy"] <= e["test_accuracy_95ci"][1] for e in ends)
    bad = subprocess.run([sys.executable, "-m", "ftui", "sweep", *args[:-6], "--grid", "lr=abc"], capture_output=True,
                         text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert bad.returncode == 2 and "learning rate: 'abc' is not a number" in json.loads(bad.stdout.strip())["message"]


def test_a_nan_validation_score_never_ranks_first_or_wins():
    records = [_record("a", "completed", 0.7), _record("nan", "completed", float("nan")), _record("c", "completed", 0.9)]
    rows = sweep_table(records, "s")
    assert [r["name"] for r in rows] == ["c", "a", "nan"] and rows[2]["val_score"] is None
    assert best_run(rows)["name"] == "c"
