"""The app's side of a Jobs run (ftui/engine_jobs.py) against the fake Hub: the Train tab follows the viewer's job and
its run, Stop keeps a snapshot then cancels, a failed job shows the end of its logs, an app that comes back finds the
job, and one job trains a whole sweep."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import wait_until

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
    return wait_until(what, seconds)


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


@pytest.mark.slow  # about a minute on the shared 2-core machine: a run trains here, then its job resumes it
def test_a_run_stopped_here_on_local_data_resumes_on_jobs_in_the_same_record(hub: Any, tmp_path: Path) -> None:
    import pandas as pd

    from ftui.data import DEMO_DATASET
    from ftui.errors import FtuiError

    csv = tmp_path / "mine.csv"  # a local file, off the bucket: the job reads its copy
    pd.read_csv(DEMO_DATASET).head(80).to_csv(csv, index=False)
    engine = _engine(hub.bucket)
    target = engine.jobs_target()
    cfg = RunConfig(data=DataConfig(source="upload", dataset_id=str(csv)),
                    train=TrainConfig(epochs=200, max_length=32, evals_per_epoch=1, learning_rate=1e-4,
                                      auto_baseline=False))  # fmt: skip  # no time cap: fine here, not on Jobs
    run = engine.start_run(cfg, None)
    _wait(lambda: any(e.get("type") == EventType.TRAIN.value for e in run.events()))
    with pytest.raises(FtuiError, match="cannot be resumed"):  # still training here
        engine.resume_on_job(run.run_id, "cpu-basic", target, TOKEN)
    run.request_stop()
    engine.join(120)
    assert run.status.value == "stopped" and snapshot_path(run.out_dir).is_file()
    stopped_at = max(e.get("step") or 0 for e in run.events())
    with pytest.raises(FtuiError, match="needs a time cap"):  # the run has none and none was given
        engine.resume_on_job(run.run_id, "cpu-basic", target, TOKEN)
    with pytest.raises(FtuiError, match="Jobs need your Hugging Face token"):
        engine.resume_on_job(run.run_id, "cpu-basic", target, None, max_minutes=0.1)
    assert not hub.jobs  # nothing submitted by a refusal

    note = engine.resume_on_job(run.run_id, "cpu-basic", target, TOKEN, max_minutes=0.1)
    assert note.resume == run.run_id
    (job,) = hub.jobs.values()
    command = job.spec["command"]
    assert command[command.index("--resume") + 1] == run.run_id and job.spec["timeoutSeconds"] == int((0.1 + 15) * 60)
    assert engine.followed_job().run.run_id == run.run_id  # the Train tab follows the resumed run
    final = jobs.hub_api(TOKEN).wait_for_job(note.job_id, timeout=300, poll_interval=0.2)
    assert final.status.stage == "COMPLETED", jobs.log_tail(note.job_id, "alice", TOKEN)

    # This app, which trained the run before, sees the job's outcome (its copy of the stopped run is read again).
    seen = _wait(lambda: (v := engine.followed_job()) is not None and v.run.status.value == "completed" and v.run, 60)
    assert seen.run_id == run.run_id
    (done,) = _engine(hub.bucket).runs()  # read back from the shared folder: the same record, no new run
    assert done.run_id == run.run_id and done.out_dir == run.out_dir and done.status.value == "completed"
    kinds = [e.get("type") for e in done.events()]
    assert EventType.RESUME.value in kinds
    # The job's 0.1-minute cap cut the 200 epochs: by re-planning the schedule for the steps that fit (a fast machine
    # then completes that plan) or by ending the run at the cap (a slow one), whichever came first.
    assert max(e.get("epoch") or 0 for e in done.events()) < 200
    assert max(e.get("step") or 0 for e in done.events()) > stopped_at  # it trained on from the snapshot
    assert done.config.train.max_minutes == 0.1 and done.config.data.uploaded_from == str(csv.resolve())
    (copy,) = (hub.bucket / "ftui-data").rglob("mine.csv")
    assert copy.read_bytes() == csv.read_bytes()
