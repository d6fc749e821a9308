"""The experiment store: concurrent writers, a training process killed mid-run, reopening and reading back."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading

import pytest
from helpers import REPO, header, store_writer

from ftui.config import RunConfig
from ftui.errors import FtuiError
from ftui.runs import Run, RunStatus
from ftui.store import Store


def test_round_trip_and_updates(tmp_path):
    store = Store(tmp_path)
    store.save_run(header("a", "completed", result={"test_accuracy": 0.9}, label_names=("x", "y")))
    for i in range(5):
        store.add_event("a", i, {"type": "train", "step": i, "loss": 1.0 / (i + 1)})
    store.update("a", name="renamed", note="lr too high?")
    second = Store(tmp_path)  # a second connection sees committed data
    rec = second.header("a")
    assert rec.name == "renamed" and rec.note == "lr too high?" and rec.label_names == ("x", "y")
    assert [e["step"] for e in second.events("a")] == [0, 1, 2, 3, 4] and rec.result["test_accuracy"] == 0.9
    assert rec.status is RunStatus.COMPLETED and rec.owner == store.identity and rec.host and rec.heartbeat
    store.delete("a")
    assert store.header("a") is None and store.events("a") == []


def test_concurrent_writers_threads_and_processes(tmp_path):
    store = Store(tmp_path)
    threads = [threading.Thread(target=store_writer, args=(str(tmp_path), f"t{i}", 200)) for i in range(4)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=store_writer, args=(str(tmp_path), f"p{i}", 200)) for i in range(3)]
    for w in (*threads, *procs):
        w.start()
    for t in threads:
        t.join(120)
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    runs = {r.run_id for r in store.runs()}
    assert runs == {f"t{i}" for i in range(4)} | {f"p{i}" for i in range(3)}
    for r in runs:
        assert [e["step"] for e in store.events(r)] == list(range(200))


def test_unfinished_runs_of_dead_processes_become_interrupted(tmp_path):
    import socket

    now = [1000.0]
    store = Store(tmp_path, stale_after=60.0, clock=lambda: now[0])
    host, me = socket.gethostname(), os.getpid()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout)
    owners = {
        "mine": None,  # written by this store: this process, heartbeat fresh
        "dead-pid": (host, dead, f"{host}:{dead}:aaaa"),
        "reused-pid": (host, me, f"{host}:{me}:an-earlier-process"),  # a restarted container's PID 1 again
        "other-host-fresh": ("elsewhere", 1, "elsewhere:1:bbbb"),
        "other-host-stale": ("elsewhere", 1, "elsewhere:1:cccc"),
        "legacy-my-pid": (host, me, None),  # a database from before heartbeats
    }
    for run_id, owner in owners.items():
        store.save_run(header(run_id))
        if owner:
            beat = now[0] - (120 if run_id.endswith("stale") else 1)
            with store._tx() as c:
                c.execute("UPDATE runs SET host=?, pid=?, owner=?, heartbeat=? WHERE run_id=?", (*owner, beat, run_id))
    assert sorted(store.mark_interrupted()) == ["dead-pid", "legacy-my-pid", "other-host-stale", "reused-pid"]
    status = {r.run_id: r.status for r in store.runs()}
    assert status["mine"] == "running" and status["other-host-fresh"] == "running"
    now[0] += 61  # this process stopped beating for "mine" (its worker died): it goes stale too
    assert sorted(store.mark_interrupted()) == ["mine", "other-host-fresh"]


def test_heartbeat_revives_a_run_marked_interrupted_while_its_process_stalled(tmp_path):
    now = [1000.0]
    store = Store(tmp_path, stale_after=60.0, clock=lambda: now[0])
    store.save_run(header("slow"))
    now[0] += 100
    assert store.mark_interrupted() == ["slow"]
    assert store.beat("slow")  # still the owner: back to running, the stale error cleared
    rec = store.header("slow")
    assert rec.status == "running" and rec.error is None
    other = Store(tmp_path)
    other.identity = "another-host:1:another-process"  # as a second process would be
    with other._tx() as c:
        c.execute("UPDATE runs SET status='interrupted' WHERE run_id='slow'")
    assert other.claim("slow") and not other.claim("slow")  # one claim wins
    assert not store.beat("slow")  # taken over: the old owner learns it at its next beat


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
    assert engine.store.header(old.run_id).name == "legacy" and engine.store.events(old.run_id)[0]["loss"] == 0.5


def finished_run(runs_dir, run_id: str = "20260101-000000-abcdef") -> Run:
    run = Run(run_id, "kept", RunConfig(), runs_dir / run_id)
    run.log({"type": "eval", "step": 4, "eval_loss": 0.4, "eval_accuracy": 0.8, "eval_macro_f1": 0.79})
    run.finish(RunStatus.COMPLETED, None, {"test_accuracy": 0.75})
    return run


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_database_is_moved_aside_and_rebuilt(tmp_path, damage):
    """Case: a corrupt ftui.db stopped the app from starting with a raw sqlite3 traceback."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    run = finished_run(tmp_path)
    store = Store(tmp_path)
    store.save_run(run.row())
    store.close()
    db = tmp_path / "ftui.db"
    if damage == "garbage":
        db.write_bytes(b"this is not a database at all " * 100)
    else:
        db.write_bytes(db.read_bytes()[: 100 + len(db.read_bytes()) // 3])
    for extra in ("ftui.db-wal", "ftui.db-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    engine = Engine(runs_dir=tmp_path, hub_status=HubStatus(False, "offline"))
    assert engine.notices and "damaged" in engine.notices[0] and "rebuilt" in engine.notices[0]
    assert engine.get_run(run.run_id).result["test_accuracy"] == 0.75  # back, from its run.json
    assert any(p.name.startswith("ftui.db.damaged-") for p in tmp_path.iterdir())
    assert engine.store.header(run.run_id) is not None  # and in the new store


def _make_read_only(folder) -> bool:
    """chmod for ordinary users; root ignores modes, so an immutable flag (chattr +i) instead. False if neither holds."""
    for path in (folder, *folder.iterdir()):
        if path.is_file():
            os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    if not os.access(folder, os.W_OK):
        return True
    targets = [folder, *(p for p in folder.iterdir() if p.is_file())]
    done = subprocess.run(["chattr", "+i", *map(str, targets)], capture_output=True)
    if done.returncode != 0:
        return False
    try:
        (folder / ".probe").write_text("")
    except OSError:
        return True
    (folder / ".probe").unlink()
    return False


def _undo_read_only(folder) -> None:
    subprocess.run(["chattr", "-i", str(folder), *map(str, folder.iterdir())], capture_output=True)
    os.chmod(folder, 0o755)


def test_a_read_only_runs_folder_is_served_read_only(tmp_path):
    """Case: a read-only runs folder stopped the app from starting. Now it serves its runs, refuses changes clearly."""
    from ftui.config import DataConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.ui import create_app

    runs = tmp_path / "runs"
    runs.mkdir()
    run = finished_run(runs)
    writer = Store(runs)
    writer.save_run(run.row())
    writer.close()  # the process that wrote it has ended
    if not _make_read_only(runs):
        pytest.skip("cannot make a folder read-only here")
    try:
        engine = Engine(runs_dir=runs, hub_status=HubStatus(False, "offline"))
        assert engine.store.read_only and "Read-only" in engine.notices[-1]
        assert [r.run_id for r in engine.runs()] == [run.run_id] and engine.get_run(run.run_id).status == RunStatus.COMPLETED
        for call in (lambda: engine.start_run(RunConfig(DataConfig())), lambda: engine.delete_run(run.run_id),
                     lambda: engine.set_note(run.run_id, "x")):  # fmt: skip
            with pytest.raises(FtuiError, match="read-only"):
                call()
        create_app(engine)  # the page builds, with the notice
    finally:
        _undo_read_only(runs)


def _item(i: int) -> tuple[str, dict, str]:
    return (f"item{i}", RunConfig().to_dict(), "")


def test_queue_keeps_order_caps_all_or_none_and_moves(tmp_path):
    store = Store(tmp_path)
    assert store.enqueue([_item(i) for i in range(3)], cap=5) == 3
    assert store.enqueue([_item(i) for i in range(3, 6)], cap=5) == 0  # 6 > 5: none of the three is added
    assert [q.item_id for q in store.queue()] == ["item0", "item1", "item2"]
    assert store.move_queued("item2", -1) and not store.move_queued("item0", -1) and not store.move_queued("nope", 1)
    assert [q.item_id for q in store.queue()] == ["item0", "item2", "item1"]
    assert store.cancel_queued(["item0"]) == 1
    other = Store(tmp_path)  # another process's connection: it sees the queue, but pops only its own items
    other.identity = "elsewhere:1:x"
    assert [q.item_id for q in other.queue()] == ["item2", "item1"] and other.pop_queued() is None
    assert store.pop_queued().item_id == "item2" and store.pop_queued().item_id == "item1"
    assert store.pop_queued() is None and store.queue() == []


def test_a_dead_process_queue_is_adopted_in_order(tmp_path):
    """Items of a process that ended (same host, its PID gone) move to the next process that adopts them; items of a
    live process stay with it."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone_pid = int(dead.stdout)
    first = Store(tmp_path)
    first.enqueue([_item(0), _item(1)], cap=0)
    with first._tx() as c:  # as if a process that has since ended had queued them
        c.execute("UPDATE queue SET pid=?, owner=?", (gone_pid, f"host:{gone_pid}:old"))
    first.enqueue([_item(2)], cap=0)
    with first._tx() as c:  # queued by a process that is still alive (our parent): it stays that process's
        c.execute("UPDATE queue SET pid=?, owner=? WHERE item_id='item2'", (os.getppid(), f"host:{os.getppid()}:live"))
    later = Store(tmp_path)
    later.identity = "restarted:2:new"
    assert later.adopt_queue() == 2
    assert [q.owner for q in later.queue()] == ["restarted:2:new", "restarted:2:new", f"host:{os.getppid()}:live"]
    assert later.pop_queued().item_id == "item0"
