"""The app's side of a Jobs run (ftui/engine_jobs.py) against the fake Hub: the Train tab follows the viewer's job and
its run, Stop keeps a snapshot then cancels, a failed job shows the end of its logs, an app that comes back finds the
job, and one job trains a whole sweep."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from ftui import jobs
from ftui.config import DataConfig, RunConfig, TrainConfig
from ftui.events import EventType
from ftui.run_layout import STOP_FILE, snapshot_path
from ftui.sweeps import SweepConfig
from tests.fake_jobs_hub import BUCKET, TOKEN, serving


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    with serving(tmp_path, monkeypatch) as fake:
        yield fake


def _engine(bucket: Path) -> Any:
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings

    env = {"FTUI_BUCKET": BUCKET, "FTUI_BUCKET_DIR": str(bucket), "FTUI_RUNS_STORAGE": "network"}
    return Engine(runs_dir=bucket / "runs", hub_status=HubStatus(True, "the fake Hub"), settings=Settings.from_env(env))


def _cfg(epochs: float, **train: Any) -> RunConfig:
    return RunConfig(data=DataConfig(max_train_examples=64),
                     train=TrainConfig(epochs=epochs, max_length=32, max_minutes=5, evals_per_epoch=1, learning_rate=1e-4,
                                       **train))  # fmt: skip


def _wait(what: Any, seconds: float = 180.0) -> Any:
    """Poll a condition until it holds (the job is another process: there is nothing to join)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError("timed out waiting")


@pytest.mark.slow  # 80 s on the shared 2-core machine: a real job trains until Stop
def test_stop_keeps_a_snapshot_then_cancels_and_an_app_that_comes_back_follows_the_job(hub: Any) -> None:
    engine = _engine(hub.bucket)
    target = engine.jobs_target()
    assert engine.followed_job() is None  # nothing submitted yet
    note = engine.submit_job(_cfg(200), "cpu-basic", target, TOKEN)
    assert engine.followed_job().note == note  # followed at once, before the job has made its run

    def training() -> Any:
        view = engine.followed_job()
        run = view.run
        return view if run is not None and any(e.get("type") == EventType.TRAIN.value for e in run.events()) else None

    view = _wait(training)
    assert view.stage == "RUNNING" and view.run.name == note.run_name and not view.run.status.finished

    again = _engine(hub.bucket)  # the app went away and came back while the job trains: it follows the job again
    back = again.followed_job(token=None)
    assert back is not None and back.note == note and back.run.run_id == view.run.run_id
    assert back.stage == "unknown"  # no token yet (it was in the old app's memory only); the run still shows live
    assert again.followed_job(token=TOKEN).stage == "RUNNING"

    assert engine.stop_job(view, None) == "stopping"  # the token that paid is in memory
    stopped = _wait(lambda: (r := engine.manager.get(view.run.run_id)) is not None and r.status.finished and r)
    assert stopped.status.value == "stopped" and snapshot_path(stopped.out_dir).is_file()  # resumable
    _wait(lambda: hub.jobs[note.job_id].stage == "CANCELED" and hub.jobs[note.job_id].proc.poll() is not None)
    ended = _wait(lambda: (v := engine.followed_job()) is not None and v.ended and v)
    assert ended.stage == "CANCELED" and ended.run.status.value == "stopped"
    # Resumed here, the run continues from its snapshot; the stop asked of the job is not asked again.
    resumed = engine.resume_run(stopped.run_id, None)
    assert not (resumed.out_dir / STOP_FILE).exists()
    assert engine.followed_job() is None  # the Train tab follows the run resumed here
    resumed.request_stop()
    engine.join(120)


def test_a_failed_jobs_view_says_why_and_shows_the_end_of_its_logs(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "_SCRIPT", "echo 'ftui: the data could not be read'; exit 7")
    engine = _engine(hub.bucket)
    note = engine.submit_job(_cfg(1), "cpu-basic", engine.jobs_target(), TOKEN)
    view = _wait(lambda: (v := engine.followed_job()) is not None and v.ended and v)
    assert view.stage == "ERROR" and view.message == "exit code 7" and view.run is None
    assert view.logs == ("ftui: the data could not be read",)
    assert jobs.ending(view.stage, view.message).startswith("The job failed (exit code 7)")
    with pytest.raises(Exception, match="someone else's"):
        from ftui.workspace import Viewer

        engine.stop_job(view, TOKEN, Viewer(user="bob", scoped=True))
    assert note.job_id in hub.jobs


@pytest.mark.slow  # 110 s on the shared 2-core machine: two runs in one job
def test_one_job_trains_a_whole_sweep_that_the_app_follows(hub: Any) -> None:
    engine = _engine(hub.bucket)
    sweep = SweepConfig(values=(("learning_rate", "1e-4, 3e-4"),), max_minutes=2)
    note = engine.submit_job(_cfg(1), "cpu-basic", engine.jobs_target(), TOKEN, sweep=sweep)
    assert note.sweep_id.startswith("sweep-job-") and note.run_name == ""
    (job,) = hub.jobs.values()
    assert "-m ftui sweep" in job.spec["command"][2] and job.spec["timeoutSeconds"] == (2 * 2 + jobs.STARTUP_MINUTES) * 60
    final = jobs.hub_api(TOKEN).wait_for_job(note.job_id, timeout=300, poll_interval=0.2)
    assert final.status.stage == "COMPLETED", jobs.log_tail(note.job_id, "alice", TOKEN)
    runs = [r for r in engine.runs() if r.config.sweep.sweep_id == note.sweep_id]
    assert sorted(r.config.train.learning_rate for r in runs) == [1e-4, 3e-4]
    assert all(r.status.value == "completed" and r.config.train.max_minutes == 2 for r in runs)
    assert note.sweep_id in engine.sweep_ids()  # the Sweeps tab lists it like a local sweep
    view = engine.followed_job()
    assert view.stage == "COMPLETED" and view.run is not None and view.run.config.sweep.sweep_id == note.sweep_id


@pytest.mark.slow  # about a minute on the shared 2-core machine: a real job trains until it is killed
def test_a_killed_job_says_so_and_its_run_reads_interrupted(hub: Any) -> None:
    import os
    import signal

    engine = _engine(hub.bucket)
    note = engine.submit_job(_cfg(200), "cpu-basic", engine.jobs_target(), TOKEN)
    _wait(lambda: (v := engine.followed_job()) is not None and v.run is not None and len(v.run.events()) > 3)
    os.killpg(hub.jobs[note.job_id].proc.pid, signal.SIGKILL)  # out of memory, as the container sees it
    view = _wait(lambda: (v := engine.followed_job()) is not None and v.ended and v)
    assert view.stage == "ERROR" and "was killed (exit code -9)" in jobs.ending(view.stage, view.message)
    run = _wait(lambda: (r := engine.manager.get(view.run.run_id)) is not None and r.status.finished and r)
    assert run.status.value == "interrupted"  # its process is gone: the heartbeat rule says so
