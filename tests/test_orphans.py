"""Nothing orphaned (issue 22, case 2): the app's torchrun child and its ranks die with the app, a restarted app ends
the children a dead app left, and a queued run starts only when no other process trains in the folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, cli_train, exit_code, read_until, short_config

from ftui.engine import Engine
from ftui.hub import HubStatus
from ftui.runs import RunStatus
from ftui.scaleout import LAUNCHER_FILE, PID_FILE, _started, end_orphans
from ftui.store import Store

OFFLINE = HubStatus(False, "offline")


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def _await_gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive after `timeout` s (the kernel ends SIGKILLed processes asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not all(_gone(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if not _gone(p)]


def _sleeper(tag: str) -> subprocess.Popen:
    """A process in its own session whose command line names ftui, as a torchrun child's does."""
    code = "import sys, time; sys.stdout.write('up\\n'); sys.stdout.flush(); time.sleep(600)"
    proc = subprocess.Popen([sys.executable, "-c", code, f"ftui-{tag}"], stdout=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    assert proc.stdout.readline() == "up\n"
    return proc


def test_a_restarted_app_ends_the_children_a_dead_app_left_and_the_run_reads_interrupted(tmp_path, tiny_bert_dir):
    runs = tmp_path / "runs"
    first = Engine(runs_dir=runs, hub_status=OFFLINE)
    run = first.manager.reserve(lambda: first.launcher._new_run(short_config(tiny_bert_dir, "orphaned")))
    run.save_header()
    run.out_dir.mkdir(parents=True)
    launcher, rank = _sleeper("launcher"), _sleeper("rank")
    dead_app = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run.out_dir / LAUNCHER_FILE).write_text(f"{int(dead_app.stdout)} 12345 {launcher.pid} {_started(launcher.pid)}")
    (run.out_dir / PID_FILE.format(rank=1)).write_text(str(rank.pid))
    # The orphan's rank 0 keeps the run's heartbeat: make the record look like it, owned by the rank's live PID.
    with Store(runs)._tx() as c:
        c.execute("UPDATE runs SET owner=?, pid=?, status='running', heartbeat=? WHERE run_id=?",
                  (f"{os.uname().nodename}:{rank.pid}:x", rank.pid, time.time(), run.run_id))  # fmt: skip
    try:
        assert Store(runs).live_elsewhere() == [run.run_id]
        second = Engine(runs_dir=runs, hub_status=OFFLINE, adopt_queue=True)  # the app comes back
        assert launcher.wait(10) == -signal.SIGKILL and rank.wait(10) == -signal.SIGKILL
        assert second.get_run(run.run_id).status == RunStatus.INTERRUPTED
        assert not (run.out_dir / LAUNCHER_FILE).exists()
    finally:
        for proc in (launcher, rank):
            proc.kill()
            proc.wait(10)


def test_a_child_whose_app_still_lives_is_left_alone(tmp_path):
    runs = tmp_path / "runs"
    (runs / "r1").mkdir(parents=True)
    launcher = _sleeper("launcher")
    app = _sleeper("app")  # another app on this folder, alive: it supervises its child
    try:
        (runs / "r1" / LAUNCHER_FILE).write_text(f"{app.pid} {_started(app.pid)} {launcher.pid} {_started(launcher.pid)}")
        assert end_orphans(runs, ["r1"]) == [] and launcher.poll() is None
        app.kill()
        app.wait(10)
        assert end_orphans(runs, ["r1"]) == ["r1"] and launcher.wait(10) == -signal.SIGKILL
    finally:
        for proc in (launcher, app):
            proc.kill()
            proc.wait(10)


def test_a_queued_run_waits_while_another_process_trains_then_starts(tmp_path, tiny_bert_dir):
    runs = tmp_path / "runs"
    cli = cli_train(runs, tiny_bert_dir, "--run-name", "cli-run")
    try:
        read_until(cli, "train")
        app = Engine(runs_dir=runs, hub_status=OFFLINE, adopt_queue=True)
        got = app.start_run(short_config(tiny_bert_dir, "waits"))
        assert not hasattr(got, "run_id") and app.current_run() is None  # queued, not training beside the CLI run
        assert [q.config.train.run_name for q in app.queued()] == ["waits"]
        cli.send_signal(signal.SIGINT)  # the CLI run stops; the queue goes on by itself
        assert exit_code(cli, 60) == 1
        deadline = time.monotonic() + 60
        while app.current_run() is None and time.monotonic() < deadline:
            time.sleep(0.1)  # the queue's watcher checks the store once per heartbeat period
        run = app.current_run()
        assert run is not None and run.name == "waits"
        assert run.done.wait(120) and run.status == RunStatus.COMPLETED, run.error
        assert app.join(30)
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait(30)


APP = """
import sys, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from ftui.engine import Engine
from ftui.hub import HubStatus
from ftui.settings import Settings
from tests.helpers import processes_config
from tests.helpers import short_config
eng = Engine(runs_dir={runs!r}, hub_status=HubStatus(False, "offline"), settings=Settings(cpu_processes=2), adopt_queue=True)
run = eng.start_run(processes_config(Path({ckpt!r}), 40, 400))
eng.start_run(short_config(Path({ckpt!r}), "queued-behind"))
version = 0
while not any(e["type"] == "train" for e in run.events()):
    assert not run.done.is_set(), run.error
    version = run.wait_for_change(version, timeout=5)
ranks = [p.read_text() for p in sorted(run.out_dir.glob(".rank-*.pid"))]
print(run.run_id, run.snapshot(events=False).progress.launcher_pid, *ranks, flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_kill_9_of_the_app_ends_its_torchrun_child_and_the_next_app_trains_alone(tmp_path, tiny_bert_dir):
    runs = tmp_path / "runs"
    script = APP.format(repo=str(REPO), runs=str(runs), ckpt=str(tiny_bert_dir))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    app = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        run_id, *pids = app.stdout.readline().split()
        assert len(pids) == 3, pids  # torchrun and both ranks
        app.kill()  # kill -9: no handler, no atexit
        app.wait(30)
        assert _await_gone([int(p) for p in pids], 20) == []  # they died with the app
        restarted = Engine(runs_dir=runs, hub_status=OFFLINE, adopt_queue=True)
        assert restarted.get_run(run_id).status == RunStatus.INTERRUPTED
        assert restarted.store.live_elsewhere() == []
        nxt = restarted.current_run()
        assert nxt is not None and nxt.name == "queued-behind"  # the queue goes on, one run at a time
        assert nxt.done.wait(120) and nxt.status == RunStatus.COMPLETED, nxt.error
        assert restarted.join(30)
    finally:
        if app.poll() is None:
            app.kill()
            app.wait(30)
