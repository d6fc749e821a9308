"""ZeroGPU (issue 24, point 3): training is refused before anything starts, Predict-side handlers run inside
spaces.GPU with durations sized to the call, and off ZeroGPU the spaces decorator changes nothing."""

from __future__ import annotations

import pytest

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import ConfigError
from ftui.hub import HubStatus
from ftui.runs import RunStatus
from ftui.settings import Settings
from ftui.ui import zerogpu


def test_off_zerogpu_the_spaces_decorator_hands_the_handler_back(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)

    def handler(text: str) -> str:
        return text

    assert zerogpu.gpu(handler, 10) is handler


def test_durations_grow_with_the_call():
    assert zerogpu.batch_seconds("a\nb") < zerogpu.batch_seconds("\n".join(["x"] * 5000)) <= zerogpu.MAX_SECONDS
    assert zerogpu.batch_seconds(None, "/tmp/upload.csv") == zerogpu.batch_seconds(
        "\n".join(["x"] * 10_000)
    )  # the most a file may hold
    assert zerogpu.explain_seconds("t", None, "ig") > zerogpu.explain_seconds("t", None, "fast")


def test_settings_read_zerogpu_as_the_spaces_package_does():
    assert Settings.from_env({"SPACES_ZERO_GPU": "true"}).zero_gpu
    assert not Settings.from_env({"SPACES_ZERO_GPU": "false"}).zero_gpu and not Settings.from_env({}).zero_gpu


def test_training_and_adapting_are_refused_on_zerogpu_but_a_tfidf_baseline_runs(tmp_path, tiny_bert_dir):
    engine = Engine(runs_dir=tmp_path / "runs", hub_status=HubStatus(False, "offline"), settings=Settings(zero_gpu=True))
    model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    for cfg in (RunConfig(DataConfig(), model, TrainConfig(epochs=1)), RunConfig(DataConfig(), model, kind="mlm"),
                RunConfig(DataConfig(), model, kind="baseline", baseline="embeddings")):  # fmt: skip
        with pytest.raises(ConfigError, match="ZeroGPU, which lends a GPU only for short calls") as err:
            engine.start_run(cfg)
        assert "GPU Space" in str(err.value)
    assert engine.runs() == [] and engine.queued() == []  # nothing started, nothing queued
    run = engine.start_run(RunConfig(DataConfig(), model, kind="baseline", baseline="tfidf"))
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error


def test_the_app_wraps_each_gpu_handler_with_its_duration(monkeypatch, tmp_path):
    import spaces

    from ftui.ui import create_app

    wrapped: dict[str, object] = {}

    def fake_gpu(handler, duration=None):
        wrapped[handler.__name__] = duration
        return handler

    monkeypatch.setattr(spaces, "GPU", fake_gpu)
    engine = Engine(runs_dir=tmp_path / "runs", hub_status=HubStatus(False, "offline"), settings=Settings(zero_gpu=True))
    create_app(engine)
    assert {"predict", "explain", "predict_batch", "baseline"} <= set(wrapped), wrapped
    assert wrapped["predict_batch"] is zerogpu.batch_seconds and wrapped["explain"] is zerogpu.explain_seconds
    assert wrapped["baseline"] is zerogpu.score_seconds and wrapped["predict"] is zerogpu.predict_seconds


def test_the_page_says_so_before_anything_is_filled_in():
    zero = Settings.from_env({"SPACE_ID": "me/ftui", "SPACES_ZERO_GPU": "true", "FTUI_AUTH": "a:b"}).page_notices()
    assert len(zero) == 1 and zero[0].startswith("**ZeroGPU:** This Space runs on ZeroGPU")
    shared = Settings.from_env({"SPACE_ID": "me/ftui"}).page_notices()
    assert len(shared) == 1 and "every visitor of this Space sees and controls every run" in shared[0]
    assert Settings.from_env({"SPACE_ID": "me/ftui", "FTUI_MODE": "demo"}).page_notices() == []  # demo: nothing to control
    assert Settings.from_env({}).page_notices() == []  # local use: nothing changes
