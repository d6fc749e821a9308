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
