"""The experiment store: concurrent writers, a training process killed mid-run, reopening and reading back."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading

from ftui.config import RunConfig
from ftui.runs import Run, RunStatus
from ftui.store import Store
from tests.conftest import REPO


def header(run_id: str, status: str = "running", **kw) -> dict:
    return {"run_id": run_id, "name": run_id, "status": status, "config": RunConfig().to_dict(), "started_at": 1.0,
            "out_dir": f"/tmp/{run_id}", **kw}  # fmt: skip


def test_round_trip_and_updates(tmp_path):
    store = Store(tmp_path)
    store.save_run(header("a", "completed", result={"test_accuracy": 0.9}, label_names=["x", "y"]))
    for i in range(5):
        store.add_event("a", i, {"type": "train", "step": i, "loss": 1.0 / (i + 1)})
    store.update("a", name="renamed", note="lr too high?")
    rec = Store(tmp_path).get("a")  # a second connection sees committed data
    assert rec["name"] == "renamed" and rec["note"] == "lr too high?" and rec["label_names"] == ["x", "y"]
    assert [e["step"] for e in rec["events"]] == [0, 1, 2, 3, 4] and rec["result"]["test_accuracy"] == 0.9
    store.delete("a")
    assert store.get("a") is None and store.events("a") == []


def _writer(path: str, run_id: str, n: int) -> None:
    store = Store(__import__("pathlib").Path(path))
    store.save_run(header(run_id))
    for i in range(n):
        store.add_event(run_id, i, {"type": "train", "step": i})


def test_concurrent_writers_threads_and_processes(tmp_path):
    store = Store(tmp_path)
    threads = [threading.Thread(target=_writer, args=(str(tmp_path), f"t{i}", 200)) for i in range(4)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), f"p{i}", 200)) for i in range(3)]
    for w in (*threads, *procs):
        w.start()
    for t in threads:
        t.join(120)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = {r["run_id"] for r in store.runs()}
    assert runs == {f"t{i}" for i in range(4)} | {f"p{i}" for i in range(3)}
    for r in runs:
        assert [e["step"] for e in store.events(r)] == list(range(200))


def test_unfinished_runs_of_dead_processes_become_interrupted(tmp_path):
    store = Store(tmp_path)
    store.save_run(header("mine"))  # this process: still alive, left alone
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    rec = header("gone")
    store.save_run(rec)
    with store._tx() as c:
        c.execute("UPDATE runs SET pid=? WHERE run_id='gone'", (int(dead.stdout),))
    assert store.mark_interrupted() == ["gone"]
    assert {r["run_id"]: r["status"] for r in store.runs()} == {"mine": "running", "gone": "interrupted"}


CHILD = """
import sys, json
from pathlib import Path
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.hub import HubStatus
engine = Engine(runs_dir=Path(sys.argv[1]), hub_status=HubStatus(False, "offline"))
cfg = RunConfig(data=DataConfig(), model=ModelConfig(source="local", checkpoint=sys.argv[2]),
                train=TrainConfig(epochs=500, batch_size=32, learning_rate=1e-3, evals_per_epoch=2, max_length=32))
run = engine.start_run(cfg)
version = 0
while sum(e["type"] == "eval" for e in run.events()) < 3:
    version = run.wait_for_change(version, timeout=60)
print(json.dumps({"run_id": run.run_id, "events": len(run.events())}), flush=True)
run.done.wait(600)
"""


def test_killed_training_process_leaves_a_readable_interrupted_run(engine, tiny_bert_dir):
    from ftui.config import DataConfig, ModelConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    # A finished run from before the crash must survive it untouched.
    done = engine.start_run(
        RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1, batch_size=32))
    )
    assert done.done.wait(120) and engine.join(30) and done.status == RunStatus.COMPLETED
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(engine.runs_dir), str(tiny_bert_dir)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        line = proc.stdout.readline()
        seen = json.loads(line)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    run = fresh.get_run(seen["run_id"])
    assert run is not None and run.status == RunStatus.INTERRUPTED
    events = run.events()
    assert len(events) >= seen["events"] and sum(e["type"] == "eval" for e in events) >= 3
    assert [e["type"] for e in events][0] == "start"
    old = fresh.get_run(done.run_id)
    assert old.status == RunStatus.COMPLETED and old.result["test_accuracy"] == done.result["test_accuracy"]
    assert len(old.events()) == len(done.events())


def test_runs_from_before_the_store_are_imported(tmp_path):
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    old = Run("20260101-000000-abcdef", "legacy", RunConfig(), tmp_path / "20260101-000000-abcdef")
    old.log({"type": "train", "step": 1, "loss": 0.5})
    old.finish(RunStatus.COMPLETED, None, {"test_accuracy": 0.5})
    assert not (tmp_path / "ftui.db").exists()
    engine = Engine(runs_dir=tmp_path, hub_status=HubStatus(False, "offline"))
    assert engine.get_run(old.run_id).status == RunStatus.COMPLETED
    assert engine.store.get(old.run_id)["events"][0]["loss"] == 0.5
