"""The Run object: append-only log under concurrent writers, versions, snapshots, persistence."""

import threading

from ftui.config import RunConfig
from ftui.rows import RunRow
from ftui.runs import Run, RunStatus


def make_run(tmp_path):
    return Run("r1", "run one", RunConfig(), tmp_path / "r1")


def test_concurrent_writers_lose_nothing(tmp_path):
    run = make_run(tmp_path)
    n_threads, per_thread = 8, 500
    barrier = threading.Barrier(n_threads)

    def writer(k):
        barrier.wait()
        for i in range(per_thread):
            run.log({"type": "train", "step": i, "writer": k})
            run.set_progress(step=i)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    events = run.events()
    assert len(events) == n_threads * per_thread
    for k in range(n_threads):
        steps = [e["step"] for e in events if e["writer"] == k]
        assert steps == list(range(per_thread))  # each writer's order is kept
    assert run.version == 2 * n_threads * per_thread


def test_snapshot_is_a_copy(tmp_path):
    run = make_run(tmp_path)
    run.log({"type": "train", "step": 1, "loss": 1.0})
    snap = run.snapshot()
    run.log({"type": "train", "step": 2, "loss": 0.5})
    assert len(snap.events) == 1 and snap.version == 1
    assert run.snapshot().version == 2


def test_wait_for_change_wakes_on_write(tmp_path):
    run = make_run(tmp_path)
    started = threading.Event()

    def later():
        started.wait(5)
        run.log({"type": "train", "step": 1})

    t = threading.Thread(target=later)
    t.start()
    started.set()
    assert run.wait_for_change(0, timeout=10) == 1
    t.join(5)


def test_first_final_status_wins(tmp_path):
    run = make_run(tmp_path)
    run.finish(RunStatus.STOPPED)
    run.finish(RunStatus.FAILED, "late")
    assert run.status == RunStatus.STOPPED and run.error is None and run.done.is_set()


def test_save_and_load(tmp_path):
    run = make_run(tmp_path)
    run.label_names = ["a", "b"]
    run.log({"type": "eval", "step": 3, "eval_accuracy": 0.75})
    run.finish(RunStatus.COMPLETED, None, {"test_accuracy": 0.8})
    run.save()
    back = Run.load(run.out_dir)
    assert back.status == RunStatus.COMPLETED and back.result["test_accuracy"] == 0.8
    assert back.events()[0]["eval_accuracy"] == 0.75 and back.label_names == ["a", "b"]
    assert back.config == run.config


def test_run_left_running_by_a_dead_process_loads_as_interrupted(tmp_path):
    run = make_run(tmp_path)
    run.set_status(RunStatus.RUNNING)
    run.log({"type": "train", "step": 1, "loss": 0.9})
    run.save()
    back = Run.load(run.out_dir)
    assert back.status == RunStatus.INTERRUPTED
    assert back.events()[0]["loss"] == 0.9


def test_an_interrupted_run_shows_its_best_evaluation(tmp_path):
    """Case: interrupted runs showed no best validation accuracy although their evaluations were stored."""
    from ftui.experiments import run_row

    events = [
        {"type": "eval", "step": 5, "eval_loss": 0.6, "eval_accuracy": 0.70, "eval_macro_f1": 0.69},
        {"type": "eval", "step": 10, "eval_loss": 0.5, "eval_accuracy": 0.80, "eval_macro_f1": 0.79},
        {"type": "eval", "step": 15, "eval_loss": 0.4, "eval_accuracy": 0.80, "eval_macro_f1": 0.80},
        {"type": "eval", "step": 20, "eval_loss": 0.7, "eval_accuracy": 0.75, "eval_macro_f1": 0.74},
    ]
    rec = {"run_id": "r", "name": "r", "status": "running", "config": RunConfig().to_dict(), "events": events, "result": {}}
    run = Run.from_record(RunRow.from_json(rec), events, tmp_path / "r")  # a run.json of a run whose process died
    assert run.status == RunStatus.INTERRUPTED
    best = run.result["best_eval"]
    assert best["accuracy"] == 0.80 and best["step"] == 15 and best["loss"] == 0.4  # ties go to the lower loss
    assert run_row(run.header())["best_eval_acc"] == 0.8
