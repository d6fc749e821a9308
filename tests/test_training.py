"""Training end to end through the engine: tiny random BERT for speed, the packaged MiniLM for a real run."""

import json
import threading
from dataclasses import replace

import numpy as np
import pytest
import torch
from helpers import ASPECTS, aspect_reviews, assert_fraction_of, assert_scores_match_predictions, verdict_reviews

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.errors import ConfigError, FtuiError
from ftui.run_layout import MODEL_DIR
from ftui.runs import Run, RunStatus
from ftui.training_core import _set_train_mode
from ftui.worker import iter_events


def tiny_cfg(tiny_bert_dir, **train):
    t = {"epochs": 2, "batch_size": 32, "learning_rate": 1e-3, "evals_per_epoch": 2, "max_length": 32, **train}
    return RunConfig(data=DataConfig(), model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), train=TrainConfig(**t))


def wait_for(run: Run, predicate, timeout: float = 60.0) -> bool:
    """Wait on the run's version counter (no sleeps) until predicate(run) holds."""
    version = 0
    import time

    deadline = time.monotonic() + timeout
    while not predicate(run):
        if time.monotonic() > deadline:
            return False
        version = run.wait_for_change(version, timeout=max(0.0, deadline - time.monotonic()))
    return True


def test_tiny_bert_trains_and_streams_metrics(engine, tiny_bert_dir):
    run = engine.start_run(tiny_cfg(tiny_bert_dir))
    events = list(iter_events(run, timeout=120))
    assert run.status == RunStatus.COMPLETED, run.error
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "test"
    train = [e for e in events if e["type"] == "train"]
    evals = [e for e in events if e["type"] == "eval"]
    assert len(train) >= 4 and len(evals) == 4  # 2 evals per epoch x 2 epochs
    assert [e["step"] for e in train] == sorted(e["step"] for e in train)
    n_val = len(engine.load_data(DataConfig()).splits["validation"])
    for e in evals:
        assert_fraction_of(e["eval_accuracy"], n_val)  # right answers out of the validation split
    start = events[0]
    assert start["total_steps"] == 2 * start["steps_per_epoch"]
    result = run.result
    assert result["best_eval"]["step"] in [e["step"] for e in evals]
    assert_scores_match_predictions(engine, run.run_id, result)
    model_dir = run.out_dir / MODEL_DIR
    assert json.loads((model_dir / "labels.json").read_text()) == ["negative", "positive"]
    assert (model_dir / "tokenizer.json").exists() or (model_dir / "vocab.txt").exists()
    record = json.loads((run.out_dir / "run.json").read_text())
    assert record["status"] == "completed" and len(record["events"]) == len(events)
    probs = engine.predict("Great value, works perfectly.")
    assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-5
    assert engine.join(30)


def test_stop_mid_run_keeps_a_checkpoint_and_frees_the_slot(engine, tiny_bert_dir):
    run = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=200))
    assert wait_for(run, lambda r: any(e["type"] == "train" for e in r.events()))
    assert engine.stop_run() is run
    assert run.done.wait(30)
    assert run.status == RunStatus.STOPPED
    assert (run.out_dir / MODEL_DIR / "labels.json").exists()
    assert run.snapshot().progress.step < 200 * 8
    assert engine.join(30)
    # the lock is released: the next run starts and finishes
    again = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=1))
    assert again.done.wait(120) and again.status == RunStatus.COMPLETED
    # the stopped run can still be used for prediction
    key = f"run:{run.run_id}"
    assert key in [k for _, k in engine.predict_choices()]
    assert set(engine.predict("nice", key)) == {"negative", "positive"}
    # a damaged model folder gives a message, not a crash
    broken = f"run:{again.run_id}"
    (again.out_dir / MODEL_DIR / "config.json").write_text("{ not json")
    with pytest.raises(FtuiError, match="Could not run the model"):
        engine.predict("nice", broken)


def test_one_run_at_a_time_even_under_concurrent_starts(engine, tiny_bert_dir):
    """50 Starts at once: exactly one trains, 20 (the queue cap) wait in the order they were admitted, the rest are
    refused with a message; the queue then drains one run at a time."""
    assert engine.manager.max_queue == 20
    barrier = threading.Barrier(50)
    started, queued, refused = [], [], []
    lock = threading.Lock()

    def press_start(i: int) -> None:
        cfg = tiny_cfg(tiny_bert_dir, epochs=200, run_name=f"start-{i}")
        barrier.wait()
        try:
            got = engine.start_run(cfg)
        except FtuiError as exc:
            with lock:
                refused.append(str(exc))
            return
        with lock:
            (started if isinstance(got, Run) else queued).append(got)

    threads = [threading.Thread(target=press_start, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(started) == 1 and len(queued) == 20 and len(refused) == 29
    assert "The queue holds at most 20 runs" in refused[0] and "FTUI_MAX_QUEUE" in refused[0]
    assert sorted(q.position for q in queued) == list(range(1, 21))
    by_position = [q.item_id for q in sorted(queued, key=lambda q: q.position)]
    assert [q.item_id for q in engine.queued()] == by_position  # the store keeps the order each Start was admitted in
    # Stop: the first queued run starts in the slot; still one run trains
    first_waiting, worker = engine.queued()[0], engine.manager.worker
    engine.stop_run()
    worker.join(60)
    assert started[0].done.is_set() and not worker.is_alive()
    now = engine.current_run()
    assert now is not started[0] and now.name == first_waiting.config.train.run_name
    assert sum(1 for r in engine.runs() if not r.status.finished) == 1
    assert len(engine.queued()) == 19


def test_predict_answers_while_training(engine, tiny_bert_dir):
    first = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=1))
    assert first.done.wait(120) and first.status == RunStatus.COMPLETED
    engine.join(30)
    second = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=200))
    assert wait_for(second, lambda r: any(e["type"] == "train" for e in r.events()))
    probs = engine.predict("the food was cold", f"run:{first.run_id}")
    assert second.status == RunStatus.RUNNING and set(probs) == {"negative", "positive"}
    engine.stop_run()
    assert second.done.wait(60)


def test_out_of_memory_fails_with_advice_and_the_next_run_works(engine, tiny_bert_dir, monkeypatch):
    import ftui.finetune as training

    real = training.collate

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(training, "collate", oom)
    run = engine.start_run(tiny_cfg(tiny_bert_dir, batch_size=64))
    assert run.done.wait(60)
    assert run.status == RunStatus.FAILED
    assert "Out of host memory at batch size 64" in run.error and "try 32" in run.error
    engine.join(30)
    monkeypatch.setattr(training, "collate", real)
    ok = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=1))
    assert ok.done.wait(120) and ok.status == RunStatus.COMPLETED


def test_bad_data_fails_the_run_with_a_message(engine, tiny_bert_dir, tmp_path):
    p = tmp_path / "one_class.csv"
    p.write_text("text,label\n" + "\n".join(f"row {i},pos" for i in range(20)))
    cfg = RunConfig(
        data=DataConfig(source="upload", dataset_id=str(p)), model=tiny_cfg(tiny_bert_dir).model, train=TrainConfig(epochs=1)
    )
    run = engine.start_run(cfg)
    assert run.done.wait(60) and run.status == RunStatus.FAILED
    assert "single class" in run.error


def test_invalid_settings_are_refused_before_a_thread_starts(engine, tiny_bert_dir):
    with pytest.raises(ConfigError) as err:
        engine.start_run(tiny_cfg(tiny_bert_dir, learning_rate=float("nan"), batch_size=-1))
    assert any("learning rate" in m for m in err.value.messages) and any("batch size" in m for m in err.value.messages)
    bad_depth = RunConfig(model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=5))
    with pytest.raises(ConfigError, match="freeze depth must be 0 to 2"):
        engine.start_run(bad_depth)
    assert engine.current_run() is None


def test_frozen_layers_run_in_eval_mode(tiny_bert_dir):
    from ftui.architecture import encoder_layers
    from ftui.modeling import build_model

    model = build_model(ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), ["a", "b"])
    _set_train_mode(model, 1)
    layers = encoder_layers(model.base_model)
    assert not model.base_model.embeddings.training and not layers[0].training
    assert layers[1].training and model.classifier.training


def test_runs_reload_after_restart(engine, tiny_bert_dir):
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    run = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=1))
    assert run.done.wait(120)
    engine.join(30)
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = fresh.get_run(run.run_id)
    assert again is not None and again.status == RunStatus.COMPLETED
    assert again.result["test_accuracy"] == run.result["test_accuracy"]
    assert f"run:{run.run_id}" in [k for _, k in fresh.predict_choices()]


@pytest.mark.slow  # 12-18 s
def test_real_minilm_on_the_demo_data(engine):
    """The packaged checkpoint on the bundled reviews: it must actually learn."""
    cfg = RunConfig(data=DataConfig(), model=ModelConfig(), train=TrainConfig(epochs=3, learning_rate=1e-4))
    run = engine.start_run(cfg)
    assert run.done.wait(300), "MiniLM demo run did not finish in 5 minutes"
    assert run.status == RunStatus.COMPLETED, run.error
    assert run.result["best_eval"]["accuracy"] >= 0.75
    assert run.result["test_accuracy"] >= 0.75
    base = engine.predict("Wonderful food and friendly staff!", f"base:{run.run_id}")
    tuned = engine.predict("Wonderful food and friendly staff!", f"run:{run.run_id}")
    assert tuned["positive"] > 0.7 and tuned["positive"] > base["positive"]


def test_stopped_run_resumes_to_the_same_result(engine, tiny_bert_dir):
    """Stop after the first evaluation, resume: the evaluations and test score equal an uninterrupted run's."""
    from ftui.run_layout import RESUME_DIR

    cfg = tiny_cfg(tiny_bert_dir, epochs=3, evals_per_epoch=2)
    whole = engine.start_run(cfg)
    assert whole.done.wait(120) and engine.join(30) and whole.status == RunStatus.COMPLETED

    run = engine.start_run(cfg)
    assert wait_for(run, lambda r: any(e["type"] == "eval" for e in r.events()))
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    assert (run.out_dir / RESUME_DIR / "state.pt").exists()
    stopped_at = max(e["step"] for e in run.events() if e["type"] == "train")

    from ftui.engine import Engine
    from ftui.hub import HubStatus

    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))  # after an app restart
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(120) and fresh.join(30)
    assert again.status == RunStatus.COMPLETED, again.error
    evals = [(e["step"], round(e["eval_loss"], 5)) for e in again.events() if e["type"] == "eval"]
    assert evals == [(e["step"], round(e["eval_loss"], 5)) for e in whole.events() if e["type"] == "eval"]
    assert again.result["test_accuracy"] == whole.result["test_accuracy"]
    assert any(e["type"] == "resume" and e["step"] <= stopped_at for e in again.events())
    assert not (again.out_dir / RESUME_DIR).exists()
    with pytest.raises(FtuiError, match="cannot be resumed"):
        fresh.resume_run(run.run_id)


def test_a_crash_mid_swap_is_repaired_at_startup_and_the_run_resumes(engine, tiny_bert_dir, monkeypatch):
    """Case: kill -9 between the two renames of the best-model swap left no model/; resuming then failed and deleted
    the resume snapshot. Now startup restores model/, the resume completes, and the snapshot goes only after the
    restored model was tested."""
    import shutil

    from ftui import finetune as training
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.run_layout import RESUME_DIR

    run = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=3, evals_per_epoch=2))
    assert wait_for(run, lambda r: any(e["type"] == "eval" for e in r.events()))
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    model = run.out_dir / MODEL_DIR
    # The state a kill between the renames leaves: the complete new copy in .model.tmp, the old in .model.old.
    shutil.copytree(model, run.out_dir / ".model.tmp")
    model.rename(run.out_dir / ".model.old")
    assert not model.exists()

    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))  # the app restarts
    assert (model / "labels.json").exists() and not (run.out_dir / ".model.tmp").exists()
    assert not (run.out_dir / ".model.old").exists()

    # If testing the best model fails at the end, the snapshot that protects the run must still be there.
    def broken(*a, **k):
        raise OSError("the model folder is unreadable")

    monkeypatch.setattr(training, "load_classifier", broken)
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(120) and fresh.join(30) and again.status == RunStatus.FAILED
    assert (again.out_dir / RESUME_DIR / "state.pt").exists()
    monkeypatch.undo()
    # (a failed run is not resumable by status; the point is that nothing was thrown away)
    assert (model / "labels.json").exists()


def test_an_unbroken_resume_deletes_the_snapshot_only_after_testing(engine, tiny_bert_dir):
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.run_layout import RESUME_DIR

    run = engine.start_run(tiny_cfg(tiny_bert_dir, epochs=2, evals_per_epoch=2))
    assert wait_for(run, lambda r: any(e["type"] == "eval" for e in r.events()))
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    import shutil

    model = run.out_dir / MODEL_DIR
    shutil.rmtree(model)  # the best checkpoint is gone entirely: the resumed run must save a new one
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(120) and fresh.join(30)
    assert again.status == RunStatus.COMPLETED, again.error
    assert (model / "labels.json").exists() and not (again.out_dir / RESUME_DIR).exists()


# ------------------------------------------------------------------------------------------ schedules and the core
def two_phase_cfg(tiny_bert_dir, **train):
    t = {"schedule": "two-phase", "head_epochs": 2, "head_learning_rate": 5e-3, "epochs": 2, "learning_rate": 1e-3, **train}
    return tiny_cfg(tiny_bert_dir, **t)


def test_build_schedule_phases():
    from ftui.schedule import Phase, build_schedule

    one = build_schedule(RunConfig(model=ModelConfig(freeze_depth=2), train=TrainConfig(epochs=3, learning_rate=2e-5)), 6)
    assert one == [Phase("train", 3, 2e-5, 0.1, 2)]
    two = build_schedule(
        RunConfig(model=ModelConfig(freeze_depth=1), train=TrainConfig(schedule="two-phase", head_epochs=1,
                  head_learning_rate=1e-3, epochs=2, learning_rate=3e-5)), 6)  # fmt: skip
    assert [(p.name, p.epochs, p.learning_rate, p.freeze_depth) for p in two] == [("head", 1, 1e-3, 6), ("finetune", 2, 3e-5, 1)]


def test_two_phase_run_steps_rates_and_trainable_sets(engine, tiny_bert_dir):
    from ftui.events import EventType, of_type

    run = engine.start_run(two_phase_cfg(tiny_bert_dir))
    assert run.done.wait(180) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    events = run.events()
    start = of_type(events, EventType.START)[0]
    per_epoch = start["steps_per_epoch"]
    assert [p["steps"] for p in start["phases"]] == [2 * per_epoch, 2 * per_epoch]
    assert start["total_steps"] == 4 * per_epoch == run.result["steps"]
    phases = of_type(events, EventType.PHASE)
    assert [(p["phase"], p["index"], p["step"]) for p in phases] == [("head", 0, 0), ("finetune", 1, 2 * per_epoch)]
    head_params = sum(p.numel() for n, p in run_model_params(tiny_bert_dir) if n.startswith(("classifier", "bert.pooler")))
    assert phases[0]["trainable_params"] == head_params  # only the head (and the pooler it reads) in phase 1
    assert phases[1]["trainable_params"] > 10 * head_params  # the whole encoder in phase 2 (freeze depth 0)
    train = of_type(events, EventType.TRAIN)
    head_lr = max(e["lr"] for e in train if e["phase"] == "head")
    tune_lr = max(e["lr"] for e in train if e["phase"] == "finetune")
    assert head_lr <= 5e-3 and head_lr > 1e-3 and tune_lr <= 1e-3  # each phase its own peak rate (and warmup)
    assert {e["phase"] for e in of_type(events, EventType.EVAL)} == {"head", "finetune"}
    assert [e["step"] for e in train] == sorted(e["step"] for e in train)  # one step axis across the phases


def run_model_params(tiny_bert_dir):
    from ftui.modeling import build_model

    return list(build_model(ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), ["a", "b"]).named_parameters())


def test_head_epochs_after_the_first_never_call_the_encoder(engine, tiny_bert_dir, monkeypatch):
    """Phase 1 trains a head on a frozen encoder: its outputs are cached in the first pass and reused after."""
    from ftui import finetune as training
    from ftui.architecture import encoder_layers

    calls: list[tuple[str, int]] = []
    real_core = training.TrainingCore

    class Counting(real_core):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            for layer in encoder_layers(self.model.base_model):  # every call of an encoder layer, with where it was
                layer.register_forward_hook(lambda *_: calls.append(self._where()))

        def _fit_phase(self, state):
            self._state = state
            return super()._fit_phase(state)

        def _where(self):
            state = getattr(self, "_state", None)
            return (self.phases[state.phase].name, state.epoch_no) if state else ("setup", -1)

    monkeypatch.setattr(training, "TrainingCore", Counting)
    run = engine.start_run(two_phase_cfg(tiny_bert_dir, head_epochs=3, epochs=1, evals_per_epoch=1))
    assert run.done.wait(180) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    head_calls = [epoch for phase, epoch in calls if phase == "head"]
    assert head_calls and head_calls.count(0) > 4  # the first head epoch fills the cache
    # Later head epochs read the cache; the only encoder calls left are the cache's one-batch self-check at the first
    # reuse of train and of validation (2 batches x 2 layers), all in the second epoch.
    later = [epoch for epoch in head_calls if epoch >= 1]
    assert len(later) <= 4 and set(later) <= {1}, later
    assert any(phase == "finetune" for phase, _ in calls)


def test_a_run_stopped_in_phase_two_resumes_to_the_same_result(engine, tiny_bert_dir):
    from ftui.engine import Engine
    from ftui.events import EventType, of_type
    from ftui.hub import HubStatus

    cfg = two_phase_cfg(tiny_bert_dir, head_epochs=1, epochs=2)
    whole = engine.start_run(cfg)
    assert whole.done.wait(180) and engine.join(30) and whole.status == RunStatus.COMPLETED, whole.error
    run = engine.start_run(cfg)
    assert wait_for(run, lambda r: any(e.get("phase") == "finetune" for e in of_type(r.events(), EventType.EVAL)))
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(180) and fresh.join(30) and again.status == RunStatus.COMPLETED, again.error
    evals = [(e["step"], e["phase"], round(e["eval_loss"], 5)) for e in of_type(again.events(), EventType.EVAL)]
    assert evals == [(e["step"], e["phase"], round(e["eval_loss"], 5)) for e in of_type(whole.events(), EventType.EVAL)]
    assert again.result["test_accuracy"] == whole.result["test_accuracy"]
    assert of_type(again.events(), EventType.RESUME)[0]["phase"] == "finetune"


def test_the_head_starts_from_its_seed_whatever_else_used_the_global_random_state(tiny_bert_dir):
    from ftui.modeling import build_model, head_parameters

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    first = build_model(cfg, ["a", "b"], generator=torch.Generator().manual_seed(7))
    torch.rand(1000)  # another thread (a prediction on a base checkpoint) drawing from the global stream
    second = build_model(cfg, ["a", "b"], generator=torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(head_parameters(first), head_parameters(second), strict=True))


def test_two_phase_needs_something_left_to_fine_tune(engine, tiny_bert_dir):
    model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=2)  # all 2 layers frozen
    with pytest.raises(ConfigError, match="fine-tune phase would train only the head"):
        engine.start_run(RunConfig(DataConfig(), model, TrainConfig(schedule="two-phase")))
    assert engine.current_run() is None


def test_a_snapshot_taken_at_the_end_of_an_epoch_resumes_into_the_next_epochs_order(engine, tiny_bert_dir, monkeypatch):
    """The data order of the next epoch must be the one an uninterrupted run draws (a snapshot at an epoch's last step
    once replayed the finished epoch)."""
    from ftui import finetune as training
    from ftui.engine import Engine
    from ftui.events import EventType, of_type
    from ftui.hub import HubStatus

    cfg = tiny_cfg(tiny_bert_dir, epochs=3, evals_per_epoch=1)
    whole = engine.start_run(cfg)
    assert whole.done.wait(120) and engine.join(30) and whole.status == RunStatus.COMPLETED
    real = training.TrainingCore._evaluate

    def stop_after_first_epoch(self, state, epoch, phase):
        spent = real(self, state, epoch, phase)
        if state.phase_step == self.steps_per_epoch:
            self.run.request_stop()  # the evaluation at the epoch's last step: the snapshot lands on the boundary
        return spent

    monkeypatch.setattr(training.TrainingCore, "_evaluate", stop_after_first_epoch)
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.STOPPED
    monkeypatch.undo()
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(120) and fresh.join(30) and again.status == RunStatus.COMPLETED, again.error
    losses = [(e["step"], round(e["eval_loss"], 5)) for e in of_type(again.events(), EventType.EVAL)]
    assert losses == [(e["step"], round(e["eval_loss"], 5)) for e in of_type(whole.events(), EventType.EVAL)]


def test_class_weights_balanced_custom_and_refused():
    from ftui.errors import FtuiError
    from ftui.tasks import class_weight_vector

    labels = np.array([0, 0, 0, 1])
    assert class_weight_vector("none", labels, ["a", "b"]) is None
    w = class_weight_vector("balanced", labels, ["a", "b"])
    assert w.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])  # n / (k * n_c)
    assert class_weight_vector("1, 3", labels, ["a", "b"]).tolist() == [1.0, 3.0]
    with pytest.raises(FtuiError, match="3 class weights were given for 2 classes"):
        class_weight_vector("1,2,3", labels, ["a", "b"])


def test_weighted_loss_by_hand_on_a_tiny_batch():
    """Weighted cross-entropy = sum_i w[y_i] * CE_i / sum_i w[y_i], computed here without torch's weight argument."""
    import math

    from ftui.batching import Tokenized
    from ftui.finetune import ClassificationObjective

    ids = np.array([5, 6, 7, 8], dtype=np.int32)
    tok = Tokenized(ids=ids, offsets=np.array([0, 1, 2, 3, 4]), labels=np.array([0, 0, 0, 1]))
    logits = torch.tensor([[2.0, 0.0], [0.5, 0.5], [0.0, 1.0], [1.0, -1.0]])

    class Fixed(torch.nn.Module):
        def forward(self, input_ids, attention_mask):
            return type("Out", (), {"logits": logits[input_ids[:, 0] - 5]})()

    weights = torch.tensor([1 / 1.5, 2.0])
    obj = ClassificationObjective({"train": tok}, 0, "cpu", 4, ["a", "b"], weights)
    loss = obj.train_loss(Fixed(), np.arange(4), None, None)
    ce = [-(logits[i, y].item() - math.log(sum(math.exp(v) for v in logits[i].tolist()))) for i, y in enumerate([0, 0, 0, 1])]
    w = [weights[y].item() for y in [0, 0, 0, 1]]
    assert loss.item() == pytest.approx(sum(a * b for a, b in zip(w, ce, strict=True)) / sum(w), rel=1e-6)
    plain = ClassificationObjective({"train": tok}, 0, "cpu", 4, ["a", "b"]).train_loss(Fixed(), np.arange(4), None, None)
    assert plain.item() == pytest.approx(sum(ce) / 4, rel=1e-6) and plain.item() != pytest.approx(loss.item())


def test_class_weights_setting_is_validated_and_recorded(engine, tiny_bert_dir):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig, validate_train
    from ftui.runs import RunStatus

    assert validate_train(TrainConfig(class_weights="balanced")) == []
    assert any("class weights" in m for m in validate_train(TrainConfig(class_weights="heavy")))
    assert any("class weights" in m for m in validate_train(TrainConfig(class_weights="1, -2")))
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
                    TrainConfig(epochs=1, class_weights="balanced"))  # fmt: skip
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    assert run.to_json()["config"]["train"]["class_weights"] == "balanced"
    bad = engine.start_run(replace(cfg, train=replace(cfg.train, class_weights="1,2,3")))
    assert bad.done.wait(60) and engine.join(30) and bad.status == RunStatus.FAILED
    assert "3 class weights were given for 2 classes" in (bad.error or "")


def test_multi_label_run_learns_tunes_its_threshold_and_predicts_every_label(engine, tmp_path):
    from ftui.export import per_class_table
    from ftui.tasks import Task, read_task

    data = DataConfig(source="local", dataset_id=str(aspect_reviews(tmp_path / "aspects.csv")), label_column="labels")
    cfg = RunConfig(data=data, model=ModelConfig(), train=TrainConfig(epochs=3, learning_rate=3e-4, max_length=32))
    run = engine.start_run(cfg)
    assert run.done.wait(300) and run.status == RunStatus.COMPLETED, run.error
    assert run.result["task"] == "multi_label" and run.result["test_micro_f1"] > 0.8, run.result
    evals = [e for e in run.events() if e["type"] == "eval"]
    assert all({"eval_micro_f1", "eval_macro_f1", "eval_accuracy"} <= e.keys() for e in evals)
    info = read_task(run.out_dir / MODEL_DIR)
    assert info.task is Task.MULTI and info.threshold_tuned and info.threshold == run.result["threshold"]
    probs = engine.predict("the soundtrack and the cast were great great great", f"run:{run.run_id}")
    assert set(probs) == set(ASPECTS)  # every label's probability, not one class
    assert probs["music"] > info.threshold and probs["acting"] > info.threshold and probs["plot"] < info.threshold
    table = {r["label"]: r for r in per_class_table(run.out_dir, run.label_names)}
    assert set(table) == set(ASPECTS) and all(r["support"] > 0 for r in table.values())
    preds = engine.test_predictions(run.run_id)
    assert {"p(music)", "y(music)", "predicted", "correct"} <= set(preds.columns)


def test_multi_label_from_indicator_columns_with_balanced_weights_and_an_mlp_head(engine, tmp_path):
    data = DataConfig(source="local", dataset_id=str(aspect_reviews(tmp_path / "aspects.csv", n=120)),
                      label_columns=("plot", "acting", "music"))  # fmt: skip
    cfg = RunConfig(data=data, model=ModelConfig(head="mlp"),
                    train=TrainConfig(epochs=1, learning_rate=3e-4, max_length=32, class_weights="balanced",
                                      tune_threshold=False, threshold=0.4))  # fmt: skip
    run = engine.start_run(cfg)
    assert run.done.wait(300) and run.status == RunStatus.COMPLETED, run.error
    assert run.result["threshold"] == 0.4 and len(run.snapshot().progress.class_weights) == 3
    assert set(engine.predict("a story", f"run:{run.run_id}")) == {"plot", "acting", "music"}


def test_regression_run_learns_and_predicts_a_number(engine, tmp_path):
    from ftui.plots import accuracy_figure

    data = DataConfig(source="local", dataset_id=str(aspect_reviews(tmp_path / "scores.csv")), label_column="score")
    cfg = RunConfig(data=data, model=ModelConfig(), train=TrainConfig(epochs=3, learning_rate=3e-4, max_length=32))
    run = engine.start_run(cfg)
    assert run.done.wait(300) and run.status == RunStatus.COMPLETED, run.error
    r = run.result
    assert r["task"] == "regression" and r["test_spearman"] > 0.5 and "test_accuracy" not in r, r
    losses = [e["loss"] for e in run.events() if e["type"] == "train"]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])  # the loss falls
    fig = accuracy_figure(run.events())
    assert {t.name for t in fig.data} == {"eval RMSE", "eval Spearman", "eval Pearson"}
    high = engine.predict("great great great film", f"run:{run.run_id}")
    low = engine.predict("awful awful awful film", f"run:{run.run_id}")
    assert list(high) == ["score"] and high["score"] > low["score"] + 1.0
    with pytest.raises(FtuiError, match="ONNX export covers single-label"):
        engine.export_onnx(run.run_id)


def test_chunked_evaluation_averages_each_documents_window_logits(tiny_bert_dir):
    from datasets import Dataset

    from ftui.batching import chunk_rows, tokenize_split
    from ftui.finetune import evaluate
    from ftui.modeling import build_model, load_tokenizer

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    model, tok = build_model(cfg, ["a", "b"], generator=torch.Generator().manual_seed(0)).eval(), load_tokenizer(cfg)
    texts = ["ok then", " ".join(f"word{i}" for i in range(80)), "fine " * 30]
    enc = tokenize_split(Dataset.from_dict({"text": texts, "label": [0, 1, 0]}), tok, 24, long_text="chunks")
    out: list[np.ndarray] = []
    evaluate(model, enc, 4, tok.pad_token_id, "cpu", None, probs_out=out)
    rows, owner = chunk_rows(tok, texts, 24)
    with torch.no_grad():
        logits = [model(input_ids=torch.tensor([r])).logits[0] for r in rows]
    for d in range(3):
        mean = torch.stack([lg for lg, o in zip(logits, owner, strict=True) if o == d]).mean(0)
        assert out[0][d] == pytest.approx(torch.softmax(mean, -1).numpy(), abs=1e-5)


@pytest.mark.parametrize(
    "mode", [pytest.param("head_tail", marks=pytest.mark.slow), pytest.param("chunks", marks=pytest.mark.slow)]
)  # 12 s, 33 s
def test_long_text_modes_read_the_verdict_that_truncation_cuts(engine, tmp_path, mode):
    data = DataConfig(source="local", dataset_id=str(verdict_reviews(tmp_path / "long.csv")))
    train = TrainConfig(epochs=2, learning_rate=2e-4, max_length=32, long_text=mode, evals_per_epoch=1)
    run = engine.start_run(RunConfig(data=data, model=ModelConfig(), train=train))
    assert run.done.wait(300) and run.status == RunStatus.COMPLETED, run.error
    assert run.result["test_accuracy"] >= 0.9, run.result  # truncation at 32 tokens sees only filler: about 0.5
    preds = engine.test_predictions(run.run_id)
    first = preds.iloc[0]
    served = engine.predict(first["text"], f"run:{run.run_id}")
    assert served["pos"] == pytest.approx(first["p(pos)"], abs=1e-4)  # Predict reads texts the way the test did
    with pytest.raises(FtuiError, match="ONNX export covers runs that cut texts"):
        engine.export_onnx(run.run_id)


@pytest.mark.slow  # 12-18 s
def test_truncation_misses_the_verdict(engine, tmp_path):
    """The control for the long-text test above: the same data cut at 32 tokens cannot be learned."""
    data = DataConfig(source="local", dataset_id=str(verdict_reviews(tmp_path / "long.csv")))
    train = TrainConfig(epochs=2, learning_rate=2e-4, max_length=32, evals_per_epoch=1)
    run = engine.start_run(RunConfig(data=data, model=ModelConfig(), train=train))
    assert run.done.wait(300) and run.status == RunStatus.COMPLETED, run.error
    assert run.result["test_accuracy"] <= 0.75, run.result


# ------------------------------------------------------------------------------------ GPU-path bugs, shown on CPU
def in_process_run(cfg: RunConfig, out_dir, stop_at_step: int | None = None, resume: bool = False) -> Run:
    """One run through train_run in this thread (the engine's worker body), optionally stopped at a step."""
    from ftui.data import load_data
    from ftui.finetune import train_run

    run = Run("r-" + out_dir.name, out_dir.name, cfg, out_dir)
    if stop_at_step is not None:
        run.listeners = [lambda ev: run.request_stop() if isinstance(ev, dict) and ev.get("step", 0) >= stop_at_step else None]
    train_run(run, lambda: load_data(cfg.data), resume=resume)
    return run


def test_the_model_optimizer_and_cache_are_freed_before_the_test_phase(tiny_bert_dir, tmp_path, monkeypatch):
    """Bug: `cache.on_off = core._cache_off` made a core<->cache cycle, so `del model, core` freed nothing and the
    model, the AdamW state and the cache stayed allocated (on a GPU) while the best checkpoint was loaded and tested.
    With the automatic gc off, weak references to them must be dead when the test phase loads the checkpoint."""
    import gc
    import weakref

    import ftui.finetune as T

    refs: dict[str, weakref.ref] = {}
    alive_at_test: list[str] = []
    enter, load = T.TrainingCore._enter_phase, T.load_classifier

    def spy_enter(self, index: int) -> None:
        enter(self, index)
        refs.update(core=weakref.ref(self), model=weakref.ref(self.model), opt=weakref.ref(self.opt),
                    cache=weakref.ref(self.cache))  # fmt: skip

    def spy_load(*args, **kwargs):
        alive_at_test.extend(name for name, ref in refs.items() if ref() is not None)
        return load(*args, **kwargs)

    monkeypatch.setattr(T.TrainingCore, "_enter_phase", spy_enter)
    monkeypatch.setattr(T, "load_classifier", spy_load)
    cfg = RunConfig(DataConfig(max_train_examples=64), ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=1),
                    TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=32, evals_per_epoch=1))  # fmt: skip
    gc.disable()  # a collection at the wrong moment would hide the cycle
    try:
        run = in_process_run(cfg, tmp_path / "freed")
    finally:
        gc.enable()
    assert run.status == RunStatus.COMPLETED, run.error
    assert set(refs) == {"core", "model", "opt", "cache"} and alive_at_test == []


def test_a_snapshot_keeps_and_restores_the_gpus_random_state(tiny_bert_dir, tmp_path, monkeypatch):
    """Bug: the resume snapshot kept the CPU generator only, while dropout on a GPU draws from the CUDA generator, so a
    resumed GPU run drew other masks. Stand-in for a GPU on CPU: torch.cuda reports itself in use and hands out a
    known state; the snapshot must hold it, and resuming the run (train_run with resume, the engine's path) must hand
    it to accel.restore_cuda_rng, which must give it to torch.cuda."""
    from ftui import accel

    gpu_state = torch.arange(16, dtype=torch.uint8)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [gpu_state.clone()])
    cfg = tiny_cfg(tiny_bert_dir, epochs=2, evals_per_epoch=1)
    out = tmp_path / "rng"
    first = in_process_run(cfg, out, stop_at_step=2)
    assert first.status == RunStatus.STOPPED, first.error
    snap = torch.load(out / "resume" / "state.pt", weights_only=True)
    assert [t.tolist() for t in snap["cuda_rng"]] == [gpu_state.tolist()]

    handed: list[list[list[int]] | None] = []
    real_restore = accel.restore_cuda_rng
    monkeypatch.setattr(accel, "restore_cuda_rng", lambda states: handed.append(states and [t.tolist() for t in states]))
    again = in_process_run(cfg, out, stop_at_step=snap["step"] + 1, resume=True)
    assert again.status == RunStatus.STOPPED, again.error
    assert handed == [[gpu_state.tolist()]]  # once, at the resume, with what the snapshot held

    restored: list[list[torch.Tensor]] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # only what restore_cuda_rng asks
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", lambda states: restored.append(list(states)))
    real_restore(snap["cuda_rng"])
    assert [[t.tolist() for t in s] for s in restored] == [[gpu_state.tolist()]]
