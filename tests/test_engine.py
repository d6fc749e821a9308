"""Engine behaviour that is not training itself: defaults online/offline, caches, predict choices."""

import pytest
from helpers import assert_fraction_of

from ftui.config import DataConfig, ModelConfig
from ftui.engine import ONLINE_CHECKPOINT, ONLINE_DATASET, Engine
from ftui.errors import FtuiError
from ftui.hub import HubStatus


def test_offline_defaults_are_embedded(engine):
    assert engine.default_data() == DataConfig()  # bundled demo
    assert engine.default_model() == ModelConfig()  # packaged MiniLM


def test_online_defaults_are_hub_ids(tmp_path):
    eng = Engine(runs_dir=tmp_path, hub_status=HubStatus(True, "ok"))
    assert eng.default_data().source == "hub" and eng.default_data().dataset_id == ONLINE_DATASET
    assert eng.default_model().source == "hub" and eng.default_model().checkpoint == ONLINE_CHECKPOINT


def test_data_is_cached_per_config_and_token(engine):
    a = engine.load_data(DataConfig())
    assert engine.load_data(DataConfig()) is a
    assert engine.load_data(DataConfig(), token="t1") is not a  # a token's loads stay its own
    assert engine.load_data(DataConfig(max_train_examples=50)).sizes["train"] == 50


def test_predict_without_runs_explains(engine):
    with pytest.raises(FtuiError, match="No trained model yet"):
        engine.predict("hello")
    with pytest.raises(FtuiError, match="no text"):
        engine.predict("")


def test_device_label_names_the_device(engine, monkeypatch):
    import os

    import torch

    monkeypatch.setattr(engine, "device", "cpu")
    assert engine.device_label() == f"CPU ({os.cpu_count()} cores; no GPU found)"
    monkeypatch.setattr(engine, "device", "cuda")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=0: "NVIDIA Test Card")
    assert engine.device_label() == "GPU: NVIDIA Test Card"


def test_rename_note_delete_and_baseline(engine, tiny_bert_dir):
    from ftui.config import RunConfig, TrainConfig
    from ftui.runs import RunStatus

    cfg = RunConfig(
        DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1, batch_size=32)
    )
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    engine.rename_run(run.run_id, "renamed")
    engine.set_note(run.run_id, "try a higher lr")
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = fresh.get_run(run.run_id)
    assert again.name == "renamed" and again.note == "try a higher lr"
    with pytest.raises(FtuiError, match="no slashes"):
        engine.rename_run(run.run_id, "a/b")
    preds = engine.test_predictions(run.run_id)
    assert len(preds) == len(engine.load_data(DataConfig()).splits["test"]) and set(preds["label"]) <= {"negative", "positive"}
    assert (preds["correct"].mean()) == pytest.approx(run.result["test_accuracy"])
    base = engine.score_checkpoint(run.run_id)
    assert "base" in base["model"] and base["n"] == len(preds)
    assert_fraction_of(base["accuracy"], base["n"])  # the base checkpoint's right answers out of the test split
    engine.delete_run(run.run_id)
    assert engine.get_run(run.run_id) is None and not run.out_dir.exists() and engine.store.header(run.run_id) is None
    with pytest.raises(FtuiError, match="No run"):
        engine.delete_run(run.run_id)
    with pytest.raises(FtuiError, match="not a run id|No run"):
        engine.delete_run("../../etc")


def test_label_mapping():
    from ftui.engine_predict import map_labels

    assert map_labels(["NEGATIVE", "POSITIVE"], ["negative", "positive"]) == {"NEGATIVE": 0, "POSITIVE": 1}
    assert map_labels(["LABEL_0", "LABEL_1"], ["neg", "pos"]) == {"LABEL_0": 0, "LABEL_1": 1}
    assert map_labels(["a", "b", "c"], ["neg", "pos"]) is None


def tiny_run_config(tiny_bert_dir, **train):
    from ftui.config import RunConfig, TrainConfig

    t = {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "max_length": 32, **train}
    return RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(**t))


@pytest.fixture()
def finished(engine, tiny_bert_dir):
    from ftui.runs import RunStatus

    run = engine.start_run(tiny_run_config(tiny_bert_dir))
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    return run


def test_predict_never_serves_a_replaced_model(engine, finished):
    """Case: /predict during a run, then after it (or after a resume) ended, answered from the first checkpoint."""
    import torch

    from ftui.files import replace_dir
    from ftui.modeling import load_classifier, save_classifier

    key, text = f"run:{finished.run_id}", "The room was dirty and the staff were rude."
    first = engine.predict(text, key)
    model_dir = finished.out_dir / "model"
    model, tok, names = load_classifier(model_dir)
    with torch.no_grad():
        for p in model.classifier.parameters():
            p.add_(torch.randn_like(p))  # a different best checkpoint, as a later evaluation or a resume would save
    replace_dir(model_dir, lambda tmp: save_classifier(model, tok, tmp, names))
    second = engine.predict(text, key)
    expected = engine.predictor.predict("check", lambda: load_classifier(model_dir), [text], max_length=32)[0]
    assert second == pytest.approx(expected, abs=1e-6) and second != pytest.approx(first, abs=1e-4)
    assert len([k for k in engine.predictor.keys() if k.startswith(key + "@")]) == 1  # the old version was dropped


def test_a_training_run_is_offered_as_its_best_checkpoint_so_far(engine, tiny_bert_dir, finished):
    run = engine.start_run(tiny_run_config(tiny_bert_dir, epochs=500, evals_per_epoch=2))
    try:
        version = 0
        while not (run.out_dir / "model" / "labels.json").exists():
            version = run.wait_for_change(version, timeout=30)
        labels = dict((k, v) for v, k in engine.predict_choices())
        assert "training now: best checkpoint so far" in labels[f"run:{run.run_id}"]
        assert list(labels)[0] == f"run:{finished.run_id}"  # the default stays the newest completed run
        assert "fine-tuned" in labels[f"run:{finished.run_id}"]
        assert engine.predict("fine", None) == engine.predict("fine", f"run:{finished.run_id}")
    finally:
        engine.stop_run()
        engine.join(60)


@pytest.mark.parametrize("key", [{"run": "x"}, 7, ["run:x"], 3.5])
def test_predict_with_a_malformed_model_key_says_so(engine, key):
    with pytest.raises(FtuiError, match="not a model choice"):
        engine.predict("hello", key)


def test_a_long_note_is_refused_with_its_length(engine, finished):
    with pytest.raises(FtuiError, match="up to 2,000 characters .*10,485,760"):
        engine.set_note(finished.run_id, "x" * 10 * 2**20)
    assert engine.get_run(finished.run_id).note == ""  # nothing half-saved
    engine.set_note(finished.run_id, "x" * 2000)
    assert len(engine.store.header(finished.run_id).note) == 2000


def test_delete_waits_for_an_export_of_the_same_run(engine, finished, monkeypatch):
    """Case: /export_zip racing /delete_run gave a bare 'Error'. Delete during an export is refused with a message;
    an export after the delete says the run is gone."""
    import threading

    from ftui import export

    inside, release = threading.Event(), threading.Event()
    real = export.export_zip

    def slow_export(*a, **k):
        inside.set()
        release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(export, "export_zip", slow_export)
    out: dict = {}
    worker = threading.Thread(target=lambda: out.update(path=engine.export_zip(finished.run_id)))
    worker.start()
    assert inside.wait(30)
    with pytest.raises(FtuiError, match="being read \\(an export\\)"):
        engine.delete_run(finished.run_id)
    release.set()
    worker.join(60)
    assert out["path"].exists()
    engine.delete_run(finished.run_id)
    with pytest.raises(FtuiError, match="No run"):
        engine.export_zip(finished.run_id)


def test_batch_requests_are_bounded(engine, finished, monkeypatch):
    """Case: 10,000 lines of 20,000 characters took minutes and gigabytes. Now the call is refused at once over the
    character cap, and within it every text is cut to what the model reads and tokenized a batch at a time."""
    import time

    from ftui.predict import BATCH_SIZE, CHARS_PER_TOKEN

    t0 = time.perf_counter()
    with pytest.raises(FtuiError, match="characters, more than one batch prediction takes"):
        engine.predict_many(["w" * 20_000] * 10_000, f"run:{finished.run_id}")
    assert time.perf_counter() - t0 < 2.0
    seen: list[list[str]] = []
    entry = engine.predictor.get(*engine.serving.versioned(f"run:{finished.run_id}"))
    tok = entry.scorer.tokenizer

    class Spy:
        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, texts, **kw):
            seen.append(list(texts))
            return tok(texts, **kw)

    entry.scorer.tokenizer = Spy()
    texts = ["A long review. " * 300] * 300  # 4,500 characters each, 1.35 M in all
    probs = engine.predict_many(texts, f"run:{finished.run_id}")
    assert len(probs) == 300 and probs[0] == probs[-1]
    assert max(len(batch) for batch in seen) <= BATCH_SIZE
    assert max(len(t) for batch in seen for t in batch) <= 32 * CHARS_PER_TOKEN  # the run's max length is 32
    # cutting first changes nothing the model sees: the same answer as the whole text
    whole = tok(texts[0], truncation=True, max_length=32)["input_ids"]
    assert tok(texts[0][: 32 * CHARS_PER_TOKEN], truncation=True, max_length=32)["input_ids"] == whole
