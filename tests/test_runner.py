"""Run management across processes: the app and the CLI on one runs folder, the store (with heartbeats) as the truth."""

import json
import os
import signal
import subprocess
import sys

import pytest

from ftui.engine import Engine
from ftui.errors import FtuiError, RunInProgress
from ftui.hub import HubStatus
from ftui.runner import check_run_id
from ftui.runs import RunStatus
from tests.conftest import REPO

OFFLINE = HubStatus(False, "offline")


def cli_train(runs_dir, checkpoint, *extra: str) -> subprocess.Popen:
    """`python -m ftui train` in its own process, a long run on the tiny model, streaming JSON lines."""
    args = ["--dataset", "demo", "--checkpoint", str(checkpoint), "--epochs", "500", "--batch-size", "32", "--lr", "1e-3",
            "--max-length", "32", "--evals-per-epoch", "2", "--runs-dir", str(runs_dir), "--offline", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "ftui", "train", *args], stdout=subprocess.PIPE, text=True, env=env)


def read_until(proc: subprocess.Popen, kind: str, count: int = 1) -> list[dict]:
    """Events printed by the CLI until `count` of type `kind` have appeared."""
    seen: list[dict] = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if sum(e.get("type") == kind for e in seen) >= count:
            return seen
    raise AssertionError(f"the CLI ended before {count} '{kind}' events: {seen[-3:]}")


def test_the_app_sees_cli_runs_live_and_cannot_break_them(tmp_path, tiny_bert_dir):
    """Case: an app started while a CLI run trained showed it interrupted; /delete_run 'deleted' it while it went on,
    resume made two processes train one run, and CLI runs started after the app never appeared."""
    runs = tmp_path / "runs"
    first = cli_train(runs, tiny_bert_dir, "--run-name", "cli-before")
    second = None
    try:
        read_until(first, "eval")
        app = Engine(runs_dir=runs, hub_status=OFFLINE)  # the app starts while the CLI trains
        (live,) = app.runs()
        assert live.name == "cli-before" and live.status == RunStatus.RUNNING and live.remote
        record = app.run_record(live.run_id)  # its curves, from the store
        assert any(e["type"] == "eval" for e in record["events"])
        with pytest.raises(FtuiError, match="training in process"):
            app.delete_run(live.run_id)
        with pytest.raises(FtuiError, match="training in process"):
            app.resume_run(live.run_id)
        assert (runs / live.run_id).exists()
        # A run the CLI starts after the app appears in the app's list, live too.
        second = cli_train(runs, tiny_bert_dir, "--run-name", "cli-after")
        read_until(second, "eval")
        names = {r.name: r for r in app.runs()}
        assert names["cli-after"].status == RunStatus.RUNNING
        # Ctrl-C in the first CLI stops it: the app sees 'stopped' with the result, and may now resume it.
        first.send_signal(signal.SIGINT)
        assert first.wait(60) == 1
        app.manager.sync(force=True)
        stopped = app.get_run(live.run_id)
        assert stopped.status == RunStatus.STOPPED and not stopped.remote
        # kill -9 of the second: its process is gone, so the app shows it interrupted at once (no heartbeat wait).
        second.send_signal(signal.SIGKILL)
        second.wait(30)
        app.manager.sync(force=True)
        assert app.get_run(names["cli-after"].run_id).status == RunStatus.INTERRUPTED
        resumed = app.resume_run(live.run_id)
        assert resumed.status in (RunStatus.QUEUED, RunStatus.RUNNING)
        with pytest.raises((RunInProgress, FtuiError), match="in progress|cannot be resumed"):
            app.resume_run(names["cli-after"].run_id)  # one run at a time here (and this one saved no snapshot yet)
        app.stop_run()
        assert resumed.done.wait(60) and app.join(30)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(30)


RESUME_ELSEWHERE = """
import sys
from pathlib import Path
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.hub import HubStatus
engine = Engine(runs_dir=Path(sys.argv[1]), hub_status=HubStatus(False, "offline"))
try:
    engine.resume_run(sys.argv[2])
    print("resumed")
except FtuiError as exc:
    print("refused:", exc)
"""


def test_a_second_process_cannot_resume_a_run_already_resumed(tmp_path, tiny_bert_dir):
    """Of two processes resuming one stopped run, exactly one trains it (the claim in the store is atomic)."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    runs = tmp_path / "runs"
    a = Engine(runs_dir=runs, hub_status=OFFLINE)
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
                    TrainConfig(epochs=500, batch_size=32, learning_rate=1e-3, evals_per_epoch=2, max_length=32))  # fmt: skip
    run = a.start_run(cfg)
    version = 0
    while not any(e["type"] == "eval" for e in run.events()):
        version = run.wait_for_change(version, timeout=30)
    a.stop_run()
    assert run.done.wait(60) and a.join(30) and run.status == RunStatus.STOPPED
    resumed = a.resume_run(run.run_id)
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        other = subprocess.run(
            [sys.executable, "-c", RESUME_ELSEWHERE, str(runs), run.run_id], capture_output=True, text=True, env=env, timeout=120
        )
        assert other.stdout.startswith("refused:") and "training in process" in other.stdout, other.stdout + other.stderr
    finally:
        a.stop_run()
        assert resumed.done.wait(60) and a.join(30)


def test_run_ids_are_checked():
    assert check_run_id("20260101-000000-abcdef") == "20260101-000000-abcdef"
    for bad in ("../etc", "a/b", "", None, 7, {"x": 1}, "x" * 200):
        with pytest.raises(FtuiError, match="not a run id"):
            check_run_id(bad)
