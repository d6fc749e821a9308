"""Metric sinks: parsed by report_to name, refused when missing, fed every event when present (fake trackio)."""

import importlib.machinery
import sys
import types

import pytest

from ftui import sinks
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig, validate_train
from ftui.runs import RunStatus


def test_parse_and_validate():
    assert sinks.parse(" TensorBoard, none ,trackio") == ["tensorboard", "trackio"]
    assert sinks.parse("") == []
    assert any("unknown metric sink 'wandb'" in m for m in validate_train(TrainConfig(report_to="wandb")))


@pytest.fixture()
def fake_trackio(monkeypatch):
    mod = types.ModuleType("trackio")
    mod.__spec__ = importlib.machinery.ModuleSpec("trackio", None)
    mod.calls = []
    mod.init = lambda **kw: mod.calls.append(("init", kw))
    mod.log = lambda values, step=None: mod.calls.append(("log", step, values))
    mod.finish = lambda: mod.calls.append(("finish",))
    monkeypatch.setitem(sys.modules, "trackio", mod)
    return mod


def test_missing_sink_is_refused_before_training(monkeypatch):
    monkeypatch.setattr(sinks, "available", lambda: [])
    assert any("not installed" in m for m in validate_train(TrainConfig(report_to="trackio")))


def test_trackio_receives_the_curves(engine, tiny_bert_dir, fake_trackio):
    cfg = RunConfig(
        DataConfig(),
        ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
        TrainConfig(epochs=1, batch_size=32, evals_per_epoch=2, report_to="trackio"),
    )
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    kinds = [c[0] for c in fake_trackio.calls]
    assert kinds[0] == "init" and kinds[-1] == "finish"
    assert fake_trackio.calls[0][1]["name"] == run.name
    logged = [c for c in fake_trackio.calls if c[0] == "log"]
    assert any("train/loss" in c[2] for c in logged) and any("eval/accuracy" in c[2] for c in logged)
    assert any("test/accuracy" in c[2] for c in logged)
