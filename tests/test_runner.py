"""Run management across processes: the app and the CLI on one runs folder, the store (with heartbeats) as the truth."""

import os
import signal
import subprocess
import sys

import pytest
from helpers import REPO, cli_train, exit_code, read_until, short_config

from ftui.engine import Engine
from ftui.errors import FtuiError, RunInProgress
from ftui.hub import HubStatus
from ftui.runner import check_run_id
from ftui.runs import RunStatus

OFFLINE = HubStatus(False, "offline")


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
        assert exit_code(first, 60) == 1
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


def test_the_queue_runs_in_order_after_moves_and_cancels_and_survives_a_refused_run(engine, tiny_bert_dir, tmp_path):
    from dataclasses import replace

    from ftui.config import DataConfig
    from ftui.run_queue import QueuedRun
    from ftui.runs import Run

    csv = tmp_path / "later-gone.csv"
    csv.write_text("text,label\n" + "\n".join(f"row {i} {'good' if i % 2 else 'bad'},{i % 2}" for i in range(60)))
    base = short_config(tiny_bert_dir, "long")
    long = engine.start_run(replace(base, train=replace(base.train, epochs=200)))
    assert isinstance(long, Run)
    b = engine.start_run(short_config(tiny_bert_dir, "B"))
    c = engine.start_run(short_config(tiny_bert_dir, "C", DataConfig(source="local", dataset_id=str(csv))))
    d = engine.start_run(short_config(tiny_bert_dir, "D"))
    assert all(isinstance(q, QueuedRun) for q in (b, c, d)) and [b.position, c.position, d.position] == [1, 2, 3]
    assert engine.move_queued(d.item_id, -1) and not engine.move_queued(b.item_id, -1)  # B is already first
    assert engine.cancel_queued(b.item_id).item_id == b.item_id
    assert [q.config.train.run_name for q in engine.queued()] == ["D", "C"]
    with pytest.raises(FtuiError, match="no longer in the queue"):
        engine.cancel_queued(b.item_id)
    csv.unlink()  # C's data disappears while it waits
    worker = engine.manager.worker
    engine.stop_run()
    worker.join(60)
    assert long.status == RunStatus.STOPPED
    started = engine.current_run()
    assert started.name == "D", "the run moved up starts first"
    worker = engine.manager.worker
    assert started.done.wait(120) and started.status == RunStatus.COMPLETED, started.error
    worker.join(60)
    engine.manager.worker.join(60)  # C: refused at its turn, or failed in its worker
    by_name = {r.name: r for r in engine.runs()}
    assert "B" not in by_name and by_name["C"].status == RunStatus.FAILED
    assert "later-gone.csv" in by_name["C"].error
    assert engine.queued() == [] and not engine.manager.training()


def test_a_restart_keeps_the_queue(tmp_path, tiny_bert_dir):
    """The app's process dies with runs queued: the next app process starts them, in order; its own run is
    interrupted (and resumable) as before."""
    runs = tmp_path / "runs"
    script = f"""
import sys
from dataclasses import replace
sys.path.insert(0, {str(REPO)!r})
from ftui.engine import Engine
from ftui.hub import HubStatus
from tests.helpers import short_config
from pathlib import Path
ckpt = Path({str(tiny_bert_dir)!r})
eng = Engine(runs_dir={str(runs)!r}, hub_status=HubStatus(False, "offline"))
base = short_config(ckpt, "long")
eng.start_run(replace(base, train=replace(base.train, epochs=500)))
eng.start_run(short_config(ckpt, "after-restart-1"))
eng.start_run(short_config(ckpt, "after-restart-2"))
from ftui.ui.common import queued_message
said = queued_message(eng.start_run(short_config(ckpt, "with-token"), token="hf_secretvalue123"))
print("queued", len(eng.queued()), "memory only" in said, flush=True)
sys.stdin.readline()
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().split() == ["queued", "3", "True"]  # Start said the token will not survive
    finally:
        proc.kill()
        proc.wait(30)
    app = Engine(runs_dir=runs, hub_status=OFFLINE, adopt_queue=True)
    first = app.current_run()
    assert first is not None and first.name == "after-restart-1"
    worker = app.manager.worker
    assert first.done.wait(120) and first.status == RunStatus.COMPLETED, first.error
    worker.join(60)
    second = app.current_run()
    assert second.name == "after-restart-2" and second.done.wait(120) and second.status == RunStatus.COMPLETED
    app.manager.worker.join(60)
    assert {r.name: r.status for r in app.runs()}["long"] == RunStatus.INTERRUPTED
    # The run queued with a Hub token fails at its turn saying why (the token lived in the dead process's memory).
    lost = {r.name: r for r in app.runs()}["with-token"]
    assert lost.status == RunStatus.FAILED and "queued with a Hub token" in lost.error and "Queue it again" in lost.error
    assert b"hf_secretvalue123" not in b"".join(p.read_bytes() for p in runs.rglob("*") if p.is_file())
    assert app.queued() == []


def test_a_run_leaving_the_queue_for_the_slot_is_always_counted_as_coming(tmp_path):
    """Case: the Train tab stopped polling when one queued run ended while the next was between the queue and the slot
    (off the store's queue, not yet current), so the page never showed the next run finish (CI, stop 33)."""
    import threading

    from ftui.config import RunConfig
    from ftui.runner import RunManager
    from ftui.store import Store

    manager = RunManager(tmp_path, Store(tmp_path))
    inside, release, seen = threading.Event(), threading.Event(), []

    def start_item(item, token) -> bool:  # the engine's start, held while the test looks
        inside.set()
        release.wait(10)
        return True

    manager.start_item = start_item
    worker = threading.Thread(target=manager.enqueue, args=([RunConfig()], None))  # the slot is free: it starts at once
    worker.start()
    try:
        assert inside.wait(10)
        seen.append(manager.store.queued_here())  # off the store's queue already...
        seen.append(manager.waiting_here())  # ...and still counted as coming
    finally:
        release.set()
        worker.join(10)
    assert seen == [0, 1] and manager.waiting_here() == 0
