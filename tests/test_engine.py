"""Engine behaviour that is not training itself: defaults online/offline, caches, predict choices."""

import pytest

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


def test_device_label_names_the_cpu(engine):
    assert engine.device_label().startswith("CPU") or engine.device_label().startswith("GPU")


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
    assert "base" in base["model"] and base["n"] == len(preds) and 0 <= base["accuracy"] <= 1
    engine.delete_run(run.run_id)
    assert engine.get_run(run.run_id) is None and not run.out_dir.exists() and engine.store.get(run.run_id) is None
    with pytest.raises(FtuiError, match="No run"):
        engine.delete_run(run.run_id)
    with pytest.raises(FtuiError, match="not a run id|No run"):
        engine.delete_run("../../etc")


def test_label_mapping():
    from ftui.engine import map_labels

    assert map_labels(["NEGATIVE", "POSITIVE"], ["negative", "positive"]) == {"NEGATIVE": 0, "POSITIVE": 1}
    assert map_labels(["LABEL_0", "LABEL_1"], ["neg", "pos"]) == {"LABEL_0": 0, "LABEL_1": 1}
    assert map_labels(["a", "b", "c"], ["neg", "pos"]) is None
