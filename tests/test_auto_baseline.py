"""Baselines first, by themselves: a model run on data with no baseline gets the TF-IDF baseline beside it (not in the
training slot, not delaying it), once per test split; its verdict waits for it; one setting turns it off (a run's, a
deployment's, the CLI's --no-auto-baseline)."""

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import REPO, baseline_cfg, finish, offline_engine, short_config, wind_down

from ftui.config import DataConfig
from ftui.events import EventType, of_type
from ftui.experiments import runs_frame
from ftui.recipes import RECIPES
from ftui.reference import score_on_test
from ftui.runs import RunStatus
from ftui.settings import Settings


def make_engine(runs_dir: Path, settings: Settings):
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    return Engine(runs_dir=runs_dir, hub_status=HubStatus(False, "offline (tests)"), settings=settings)


@pytest.fixture()
def auto_engine(tmp_path: Path):
    """An offline engine whose deployment leaves the automatic baseline on (Settings' default)."""
    eng = make_engine(tmp_path / "runs", Settings())
    yield eng
    wind_down(eng)


def baselines_of(engine) -> list:
    return [r for r in engine.manager.runs() if RECIPES[r.config.kind].reference]  # every user's


def test_a_model_run_on_new_data_gets_the_tfidf_baseline_beside_it_once(auto_engine, tiny_bert_dir, csv_file):
    run = auto_engine.start_run(short_config(tiny_bert_dir, "first"))
    (base,) = baselines_of(auto_engine)
    assert auto_engine.current_run() is run and run.awaits == [base.done]  # the slot is the model run's; beside it
    assert base.config.baseline == "tfidf" and base.config.data == run.config.data and not base.config.sweep.sweep_id
    assert base.note.startswith("Started by itself beside 'first'") and "--no-auto-baseline" in base.note
    finish(auto_engine, run)
    assert base.status == RunStatus.COMPLETED and base.ended_at <= run.ended_at  # the verdict waited for it
    diff = score_on_test(run.result) - score_on_test(base.result)
    warned = [e for e in of_type(run.events(), EventType.WARNING) if e["kind"] == "below_baseline"]
    assert bool(warned) == (diff < 0)  # the end-of-run verdict saw the baseline
    row = runs_frame(auto_engine.run_headers()).set_index("run_id").loc[run.run_id]
    assert row["delta_vs_baseline"] == pytest.approx(round(diff, 4)) and row["vs_base_metric"] == "accuracy"

    again = finish(auto_engine, auto_engine.start_run(short_config(tiny_bert_dir, "second")))
    assert len(baselines_of(auto_engine)) == 1 and again.awaits == []  # that data has its baseline now
    other = DataConfig(source="local", dataset_id=str(csv_file))
    off = short_config(tiny_bert_dir, "off", other)
    off = finish(auto_engine, auto_engine.start_run(replace(off, train=replace(off.train, auto_baseline=False))))
    assert len(baselines_of(auto_engine)) == 1 and off.awaits == []  # the run's own setting


def test_baselines_and_deployments_that_turn_it_off_get_none(tmp_path, tiny_bert_dir):
    eng = make_engine(tmp_path / "a", Settings())
    try:
        finish(eng, eng.start_run(baseline_cfg("nbsvm")))  # a baseline is not measured against another
        assert [r.config.baseline for r in baselines_of(eng)] == ["nbsvm"]
        run = eng.start_run(short_config(tiny_bert_dir, "has-one"))
        assert run.awaits == [] and len(baselines_of(eng)) == 1  # any baseline on the data will do
        finish(eng, run)
    finally:
        eng.join(60)
    off = make_engine(tmp_path / "b", Settings.from_env({"FTUI_AUTO_BASELINE": "0"}))
    run = finish(off, off.start_run(short_config(tiny_bert_dir, "deployment-off")))
    assert run.awaits == [] and baselines_of(off) == []
    assert Settings.from_env({}).auto_baseline and not Settings.from_env({"FTUI_AUTO_BASELINE": "off"}).auto_baseline
    assert [k for k, r in RECIPES.items() if r.auto_reference] == ["finetune"]  # never for baselines or masked-LM runs


def test_with_sign_in_another_users_baseline_is_not_yours(tmp_path, tiny_bert_dir):
    eng = make_engine(tmp_path / "runs", Settings(oauth=True))
    try:
        alice, bob = eng.viewer("alice"), eng.viewer("bob")
        finish(eng, eng.start_run(baseline_cfg("tfidf"), viewer=alice))
        run = eng.start_run(short_config(tiny_bert_dir, "bobs"), viewer=bob)
        mine = [r for r in baselines_of(eng) if r.config.user == "bob"]
        assert len(mine) == 1 and run.awaits == [mine[0].done]  # bob cannot see alice's, so his "vs base" needs his own
        eng.stop_run(bob)
    finally:
        eng.join(60)


@pytest.mark.slow  # two CLI processes (28 s at load 8): in the slow set, which CI runs after
def test_the_cli_flag_turns_it_off_and_train_waits_for_the_baseline_it_started(tmp_path, tiny_bert_dir):
    from ftui.cli import build_parser
    from ftui.cli_flags import train_config

    args = build_parser().parse_args(["train", "--no-auto-baseline"])
    assert train_config(args, learning_rate=1e-3, batch_size=8, processes=1).auto_baseline is False
    cmd = [sys.executable, "-m", "ftui", "train", "--offline", "--dataset", "demo", "--checkpoint", str(tiny_bert_dir),
           "--epochs", "1", "--batch-size", "32", "--lr", "1e-3", "--max-length", "32", "--runs-dir", str(tmp_path)]  # fmt: skip
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "FTUI_AUTO_BASELINE": "1"})  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    end = json.loads(out.stdout.strip().splitlines()[-1])
    runs = {r.name: r for r in offline_engine(tmp_path).runs()}  # what the store and the run folders say afterwards
    (base,) = [r for r in runs.values() if r.config.kind == "baseline"]
    assert base.config.baseline == "tfidf" and base.note.startswith(f"Started by itself beside '{end['name']}'")
    assert base.status == RunStatus.COMPLETED and runs[end["name"]].status == RunStatus.COMPLETED  # not interrupted
