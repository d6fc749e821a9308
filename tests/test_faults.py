"""Faults: Stop in every phase, a full disk at checkpoint time, many runs back to back, predictions under load."""

import errno
import gc
import os
import threading
import weakref

import pytest

from ftui import finetune as training
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.modeling import load_classifier
from ftui.runs import RunStatus


def cfg_for(tiny_bert_dir, **train) -> RunConfig:
    t = {"epochs": 50, "batch_size": 32, "learning_rate": 1e-3, "evals_per_epoch": 2, "max_length": 32, **train}
    return RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(**t))


def no_worker_threads() -> bool:
    return not any(t.name.startswith(("ftui-run-", "ftui-resume-")) and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("phase", ["tokenizing", "training", "evaluating"])
def test_stop_in_each_phase_ends_promptly_and_frees_everything(engine, tiny_bert_dir, monkeypatch, phase):
    reached = threading.Event()
    models: list[weakref.ref] = []
    holder: dict = {}

    real_build, real_tokenize, real_collate = training.build_model, training.tokenize_split, training.collate

    def build(*a, **k):
        model = real_build(*a, **k)
        models.append(weakref.ref(model))
        return model

    def hold_until_stopped() -> None:
        reached.set()
        holder["run"].stop_event.wait(30)

    def tokenize(*a, **k):
        if phase == "tokenizing":
            hold_until_stopped()
        return real_tokenize(*a, **k)

    def collate(*a, **k):
        snap = holder["run"].snapshot()
        if phase == snap.progress.phase and (phase == "evaluating" or snap.events):
            hold_until_stopped()
        return real_collate(*a, **k)

    monkeypatch.setattr(training, "build_model", build)
    monkeypatch.setattr(training, "tokenize_split", tokenize)
    monkeypatch.setattr(training, "collate", collate)
    run = engine.start_run(cfg_for(tiny_bert_dir))
    holder["run"] = run
    assert reached.wait(60), f"never reached {phase}"
    engine.stop_run()
    assert run.done.wait(10), f"Stop during {phase} took more than 10 s"
    assert engine.join(10) and no_worker_threads()
    assert run.status == RunStatus.STOPPED, run.error
    if phase == "tokenizing":  # no training step yet: no model is kept, and none is offered as fine-tuned
        from ftui.plots import status_markdown

        assert not (run.out_dir / "model").exists() and "model_dir" not in run.result
        assert "nothing was trained" in status_markdown(run.snapshot())
        assert f"run:{run.run_id}" not in [k for _, k in engine.predict_choices()]
    gc.collect()
    assert models and all(ref() is None for ref in models)  # weights released
    monkeypatch.undo()
    again = engine.start_run(cfg_for(tiny_bert_dir, epochs=1))  # the lock is free
    assert again.done.wait(120) and engine.join(30) and again.status == RunStatus.COMPLETED


def test_disk_full_while_saving_keeps_the_earlier_checkpoint(engine, tiny_bert_dir, monkeypatch):
    real_save = training.save_classifier
    saves: list[int] = []

    def save(model, tokenizer, path, names, info=None):
        saves.append(1)
        if len(saves) >= 2:
            (path / "partial.bin").parent.mkdir(parents=True, exist_ok=True)
            (path / "partial.bin").write_bytes(b"\0" * 1024)
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_save(model, tokenizer, path, names, info)

    monkeypatch.setattr(training, "save_classifier", save)
    # Make every evaluation an improvement so the second one must save again.
    monkeypatch.setattr(training.tasks, "better", lambda task, new, best: True)
    run = engine.start_run(cfg_for(tiny_bert_dir, epochs=2))
    assert run.done.wait(120) and engine.join(30)
    assert run.status == RunStatus.FAILED and "disk is full" in run.error and "kept" in run.error
    model_dir = run.out_dir / training.MODEL_DIR
    model, _, names = load_classifier(model_dir, "cpu")  # the first checkpoint is whole and loads
    assert names == ["negative", "positive"] and not (run.out_dir / f".{training.MODEL_DIR}.tmp").exists()
    rec = engine.store.header(run.run_id)
    assert rec.status == "failed" and len(engine.store.events(run.run_id)) == len(run.events())
    assert (run.out_dir / "run.json").exists()
    assert engine.start_run(cfg_for(tiny_bert_dir, epochs=1)).done.wait(120) and engine.join(30)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.slow
def test_twenty_runs_back_to_back_keep_memory_and_files_flat(engine, tiny_bert_dir):
    marks = {}
    for i in range(1, 21):
        run = engine.start_run(cfg_for(tiny_bert_dir, epochs=1, evals_per_epoch=1))
        assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
        if i in (5, 20):
            gc.collect()
            marks[i] = (_rss_mb(), len(os.listdir("/proc/self/fd")))
    print(f"\n20 runs: RSS {marks[5][0]:.0f} MB after 5, {marks[20][0]:.0f} MB after 20; "
          f"open files {marks[5][1]} after 5, {marks[20][1]} after 20")  # fmt: skip
    assert marks[20][1] <= marks[5][1] + 2
    assert marks[20][0] - marks[5][0] < 150


def test_two_hundred_predictions_answer_while_training(app_server, tiny_bert_dir):
    from concurrent.futures import ThreadPoolExecutor

    from gradio_client import Client

    url, engine = app_server
    first = engine.start_run(cfg_for(tiny_bert_dir, epochs=1))
    assert first.done.wait(120) and engine.join(30)
    busy = engine.start_run(cfg_for(tiny_bert_dir, epochs=200))
    try:
        clients = [Client(url, verbose=False) for _ in range(8)]

        def ask(i: int) -> str:
            return clients[i % 8].predict(f"review number {i}", f"run:{first.run_id}", api_name="/predict")["label"]

        with ThreadPoolExecutor(max_workers=32) as pool:
            labels = list(pool.map(ask, range(200)))
        assert len(labels) == 200 and set(labels) <= {"negative", "positive"}
        assert busy.status == RunStatus.RUNNING  # training went on throughout
    finally:
        engine.stop_run()
        busy.done.wait(60)
        engine.join(30)
