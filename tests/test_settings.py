"""Deployment settings: caps and allowlists enforced in the engine, demo mode, login, .bin refusal, tokens never stored."""

import pytest

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import ConfigError, FtuiError, ModelError
from ftui.hub import HubStatus
from ftui.runs import RunStatus
from ftui.settings import Settings

OFFLINE = HubStatus(False, "offline")


def test_from_env_and_bad_values():
    s = Settings.from_env(
        {"FTUI_MODE": "demo", "FTUI_MAX_EPOCHS": "2", "FTUI_MAX_LENGTH": "64", "FTUI_AUTH": "ann:pw1, bob:pw2",
         "FTUI_ALLOWED_CHECKPOINTS": "packaged, distilbert/distilbert-base-uncased"}
    )  # fmt: skip
    assert s.demo and s.max_epochs == 2 and s.max_length == 64 and s.auth == (("ann", "pw1"), ("bob", "pw2"))
    assert s.allowed_checkpoints == ("packaged", "distilbert/distilbert-base-uncased")
    assert Settings.from_env({}) == Settings()
    with pytest.raises(ValueError, match="FTUI_MAX_EPOCHS"):
        Settings.from_env({"FTUI_MAX_EPOCHS": "lots"})
    with pytest.raises(ValueError, match="FTUI_MODE"):
        Settings.from_env({"FTUI_MODE": "party"})
    with pytest.raises(ValueError, match="FTUI_AUTH"):
        Settings.from_env({"FTUI_AUTH": "nopassword"})


def test_caps_fill_unset_limits_and_refuse_values_over_them():
    s = Settings(max_train_examples=100, max_epochs=2, max_length=64, max_batch_size=32, max_minutes=5)
    cfg, errors = s.apply(RunConfig(train=TrainConfig(epochs=2, max_length=64)))
    assert errors == [] and cfg.data.max_train_examples == 100 and cfg.train.max_minutes == 5
    _, errors = s.apply(
        RunConfig(DataConfig(max_train_examples=500), train=TrainConfig(epochs=9, max_length=512, batch_size=4096))
    )
    text = " | ".join(errors)
    assert "at most 100 examples" in text and "epochs is capped at 2" in text
    assert "max sequence length is capped at 64" in text and "batch size is capped at 32" in text


def test_allowlists_refuse_other_and_local_sources():
    s = Settings(allowed_checkpoints=("packaged",), allowed_datasets=("demo", "stanfordnlp/imdb"))
    assert s.apply(RunConfig())[1] == []
    _, errors = s.apply(RunConfig(DataConfig(source="local", dataset_id="/etc"), ModelConfig(source="hub", checkpoint="x/y")))
    assert any("checkpoint 'x/y' is not allowed" in e for e in errors)
    assert any("dataset '/etc' is not allowed" in e for e in errors)
    _, errors = s.apply(RunConfig(DataConfig(source="hub", dataset_id="stanfordnlp/imdb")))
    assert errors == []


def test_engine_enforces_caps_on_raw_calls(tmp_path, tiny_bert_dir):
    engine = Engine(tmp_path, OFFLINE, Settings(max_train_examples=64, max_epochs=1, max_minutes=30))
    model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    with pytest.raises(ConfigError, match="epochs is capped at 1"):
        engine.start_run(RunConfig(DataConfig(), model, TrainConfig(epochs=50)))
    assert engine.current_run() is None  # nothing reserved by the refused call
    run = engine.start_run(RunConfig(DataConfig(), model, TrainConfig(epochs=1, batch_size=32)))
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    assert run.result["train_size"] == 64 and run.config.train.max_minutes == 30


def test_wall_clock_cap_ends_training_with_a_tested_checkpoint(tmp_path, tiny_bert_dir):
    engine = Engine(tmp_path, OFFLINE, Settings(max_minutes=0.002))  # 120 ms
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=500))
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    kinds = [e["type"] for e in run.events()]
    assert "time_limit" in kinds and kinds[-1] == "test" and run.result["steps"] < run.events()[0]["total_steps"]


def test_demo_mode_refuses_training_and_management(tmp_path):
    engine = Engine(tmp_path, OFFLINE, Settings(demo=True))
    with pytest.raises(FtuiError, match="predictions only"):
        engine.start_run(RunConfig())
    for call in (lambda: engine.delete_run("x"), lambda: engine.rename_run("x", "y"), lambda: engine.export_zip("x")):
        with pytest.raises(FtuiError, match="predictions only"):
            call()


def test_demo_mode_app_exposes_prediction_only(tmp_path):
    from gradio_client import Client

    from ftui.ui import create_app, launch_kwargs

    settings = Settings(demo=True)
    app = create_app(Engine(tmp_path, OFFLINE, settings))
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(settings))
    try:
        api = Client(app.local_url, verbose=False).view_api(print_info=False, return_format="dict")
        assert sorted(api["named_endpoints"]) == ["/predict", "/predict_batch"]
    finally:
        app.close()


def test_login_required_when_auth_is_set(tmp_path):
    import httpx

    from ftui.ui import create_app, launch_kwargs

    settings = Settings(auth=(("ann", "s3cret"),))
    app = create_app(Engine(tmp_path, OFFLINE, settings))
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(settings))
    try:
        url = app.local_url.rstrip("/")
        assert httpx.get(f"{url}/config").status_code == 401
        with httpx.Client() as c:
            assert c.post(f"{url}/login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert c.post(f"{url}/login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            assert c.get(f"{url}/config").status_code == 200
    finally:
        app.close()


def test_pickle_only_checkpoints_need_consent(tmp_path):
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import build_model, packaged_checkpoint
    from tests.conftest import tiny_config

    torch.manual_seed(0)
    base = AutoModel.from_config(tiny_config("bert"))
    base.config.save_pretrained(tmp_path)
    torch.save(base.state_dict(), tmp_path / "pytorch_model.bin")  # the old pickle format, as many Hub repos still ship
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(tmp_path)
    assert (tmp_path / "pytorch_model.bin").exists() and not (tmp_path / "model.safetensors").exists()
    cfg = ModelConfig(source="local", checkpoint=str(tmp_path))
    with pytest.raises(ModelError, match="pickle"):
        build_model(cfg, ["a", "b"])
    model = build_model(ModelConfig(source="local", checkpoint=str(tmp_path), allow_bin_weights=True), ["a", "b"])
    assert model.config.num_labels == 2


def test_a_typed_token_is_never_written(engine, tiny_bert_dir):
    secret = "hf_DoNotStoreMe1234567890"
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
    run = engine.start_run(cfg, token=secret)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    for path in engine.runs_dir.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
    assert secret not in repr(run.to_json()) and secret not in repr(run.snapshot())
