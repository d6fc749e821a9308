"""Runs on a network mount (a Space's bucket volume; issue 24, point 1): the store keeps a rollback journal, full
syncs and no mmap there, behaves as on a local disk, and a restart with every local path wiped brings every run back.
A FUSE mount (bindfs) stands in for the bucket where one can be made here; tests needing it skip otherwise."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import REPO, header, store_writer

from ftui.engine import Engine
from ftui.hub import HubStatus
from ftui.runs import RunStatus
from ftui.settings import Settings
from ftui.store import Store

OFFLINE = HubStatus(False, "offline")
NETWORK = Settings(network_storage=True)


@pytest.fixture()
def fuse_dir(tmp_path: Path):
    """A FUSE passthrough mount of a temporary folder (bindfs), unmounted afterwards."""
    if shutil.which("bindfs") is None:
        pytest.skip("bindfs is not installed (apt-get install -y bindfs)")
    src, mnt = tmp_path / "bucket", tmp_path / "mnt"
    src.mkdir()
    mnt.mkdir()
    done = subprocess.run(["bindfs", str(src), str(mnt)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"no FUSE mount here: {done.stderr.strip()}")
    yield mnt
    subprocess.run(["fusermount", "-u", str(mnt)], capture_output=True)
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _side_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("ftui.db-*"))


def test_the_settings_choose_network_storage_on_a_space_or_when_asked():
    assert Settings.from_env({"SPACE_ID": "me/ftui"}).network_storage
    assert Settings.from_env({"FTUI_RUNS_STORAGE": "network"}).network_storage
    assert not Settings.from_env({"SPACE_ID": "me/ftui", "FTUI_RUNS_STORAGE": "local"}).network_storage
    assert not Settings.from_env({}).network_storage
    with pytest.raises(ValueError, match="FTUI_RUNS_STORAGE must be 'local' or 'network'"):
        Settings.from_env({"FTUI_RUNS_STORAGE": "nfs"})


def test_a_network_store_keeps_no_wal_and_no_mmap_and_behaves_the_same(tmp_path):
    store = Store(tmp_path, network=True)
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    assert store._conn.execute("PRAGMA mmap_size").fetchone()[0] == 0
    store.save_run(header("a", "completed", result={"test_accuracy": 0.9}))
    for i in range(20):
        store.add_event("a", i, {"type": "train", "step": i})
    again = Store(tmp_path, network=True)
    assert [e["step"] for e in again.events("a")] == list(range(20)) and again.header("a").result["test_accuracy"] == 0.9
    assert _side_files(tmp_path) == []  # no -wal/-shm (nor a leftover -journal) beside the database
    local = Store(tmp_path / "local")
    assert local._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # a local disk keeps WAL's speed


def test_a_wal_database_moves_to_a_rollback_journal_when_the_folder_becomes_network_storage(tmp_path):
    old = Store(tmp_path)  # written by an ftui that kept WAL, which has since ended
    old.save_run(header("old", "completed"))
    old.close()
    store = Store(tmp_path, network=True)
    assert store.header("old").status == "completed" and _side_files(tmp_path) == []


def test_concurrent_writers_on_a_fuse_mount(fuse_dir):
    store = Store(fuse_dir, network=True)
    threads = [threading.Thread(target=store_writer, args=(str(fuse_dir), f"t{i}", 60, True)) for i in range(3)]
    procs = [mp.get_context("spawn").Process(target=store_writer, args=(str(fuse_dir), f"p{i}", 60, True)) for i in range(2)]
    for w in (*threads, *procs):
        w.start()
    for t in threads:
        t.join(120)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    for r in (*(f"t{i}" for i in range(3)), *(f"p{i}" for i in range(2))):
        assert [e["step"] for e in store.events(r)] == list(range(60))
    assert _side_files(fuse_dir) == []  # (the local-disk twin of this test is in test_store.py)


APP = """
import sys, time
from dataclasses import replace
from pathlib import Path
sys.path.insert(0, {repo!r})
from ftui.engine import Engine
from ftui.hub import HubStatus
from ftui.settings import Settings
from tests.helpers import short_config
ckpt, runs = Path({ckpt!r}), Path({runs!r})
eng = Engine(runs_dir=runs, hub_status=HubStatus(False, "offline"), settings=Settings(network_storage=True), adopt_queue=True)
def wait(run, kind):
    version = 0
    while not any(e["type"] == kind for e in run.events()):
        assert not run.done.is_set(), run.error
        version = run.wait_for_change(version, timeout=5)
done = eng.start_run(short_config(ckpt, "app-done"))
assert done.done.wait(120) and eng.join(30) and done.status.value == "completed", done.error
base = short_config(ckpt, "resumable")
resumable = eng.start_run(replace(base, train=replace(base.train, epochs=3, evals_per_epoch=2)))
wait(resumable, "train")
eng.stop_run()
assert resumable.done.wait(60) and eng.join(30) and resumable.status.value == "stopped", resumable.error
long = eng.start_run(replace(base, train=replace(base.train, epochs=500, run_name="killed")))
wait(long, "eval")
eng.start_run(short_config(ckpt, "still-queued"))
print(done.run_id, resumable.run_id, long.run_id, flush=True)
sys.stdin.readline()
"""


@pytest.mark.slow
def test_a_restart_with_every_local_path_wiped_brings_every_run_back(fuse_dir, tiny_bert_dir, tmp_path):
    """A Space restart is a new container: a fresh local disk, the same bucket. Train (app and CLI), kill -9, delete
    every local state path, start again on the same folder: every run is back with its curves, Predict serves, the
    queued run trains, the stopped run resumes."""
    runs, local = fuse_dir / "runs", tmp_path / "local"
    env = {**os.environ, "PYTHONPATH": str(REPO), "FTUI_RUNS_STORAGE": "network", "TMPDIR": str(local / "tmp"),
           "HF_HOME": str(local / "hf"), "FTUI_OFFLINE": "1"}  # fmt: skip
    (local / "tmp").mkdir(parents=True)
    cli = subprocess.run([sys.executable, "-m", "ftui", "train", "--dataset", "demo", "--checkpoint", str(tiny_bert_dir),
                          "--epochs", "1", "--batch-size", "32", "--max-length", "32", "--runs-dir", str(runs),
                          "--run-name", "cli-done", "--offline"],
                         capture_output=True, text=True, env=env, timeout=300)  # fmt: skip
    assert json.loads(cli.stdout.splitlines()[-1])["status"] == "completed", cli.stderr[-2000:]
    script = APP.format(repo=str(REPO), ckpt=str(tiny_bert_dir), runs=str(runs))
    app = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        done_id, resumable_id, killed_id = app.stdout.readline().split()
        before = Store(runs, network=True)
        logged = {r.run_id: len(before.events(r.run_id)) for r in before.runs()}
        app.send_signal(signal.SIGKILL)
        app.wait(30)
    finally:
        if app.poll() is None:
            app.kill()
    shutil.rmtree(local)  # the container's disk is gone: temp files, downloads, caches
    assert _side_files(runs) == []
    engine = Engine(runs_dir=runs, hub_status=OFFLINE, settings=NETWORK, adopt_queue=True)
    status = {r.name: r.status for r in engine.runs()}
    assert status["cli-done"] == status["app-done"] == RunStatus.COMPLETED
    assert status["resumable"] == RunStatus.STOPPED and status["killed"] == RunStatus.INTERRUPTED
    for run in engine.runs():  # every curve is back, as it was logged (the kill came after the last event it saw)
        if run.run_id in logged:  # the app's automatic TF-IDF baseline has no curve: its test scores are its log
            logs = "test" if run.config.kind == "baseline" else "train"
            assert len(run.events()) >= logged[run.run_id] and any(e["type"] == logs for e in run.events()), run.name
    assert set(engine.predict("a wonderful film", f"run:{done_id}")) == {"negative", "positive"}
    queued = engine.current_run()
    assert queued is not None and queued.name == "still-queued"  # still queued after the restart, and now trains
    assert queued.done.wait(120) and engine.join(30) and queued.status == RunStatus.COMPLETED, queued.error
    resumed = engine.resume_run(resumable_id)
    assert resumed.done.wait(120) and engine.join(30) and resumed.status == RunStatus.COMPLETED, resumed.error
    assert engine.get_run(killed_id).status == RunStatus.INTERRUPTED
    assert _side_files(runs) == []
