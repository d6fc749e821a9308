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
    # The cap ends training (by the cap itself, or by the schedule planned for what fits): either way the run says so.
    said = [e for e in run.events() if e["type"] == "warning" and e["kind"] == "time_limit"]
    assert len(said) == 1 and kinds[-1] == "test" and run.result["steps"] < run.events()[0]["total_steps"]


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
        assert sorted(api["named_endpoints"]) == ["/explain", "/predict", "/predict_batch"]
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
    from helpers import tiny_config
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import build_model, packaged_checkpoint

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


def test_remote_code_runs_only_where_the_operator_allows_it(tmp_path):
    from helpers import remote_code_checkpoint

    marker = tmp_path / "remote-code-ran"
    ckpt = remote_code_checkpoint(tmp_path / "ckpt", marker)
    cfg = ModelConfig(source="local", checkpoint=str(ckpt), trust_remote_code=True)
    # An allowlist: the local checkpoint is refused before its config is read.
    engine = Engine(tmp_path / "r1", OFFLINE, Settings(allowed_checkpoints=("packaged",)))
    with pytest.raises(ModelError, match="not allowed"):
        engine.model_summary(cfg)
    # A Space: remote code is off whatever a caller sends, for the summary and the tokenizer alike.
    space = Settings.from_env({"SPACE_ID": "someone/ftui"})
    assert not space.allow_remote_code and Settings.from_env({}).allow_remote_code
    engine = Engine(tmp_path / "r2", OFFLINE, space)
    for call in (engine.model_summary, engine.tokenizer):
        with pytest.raises(ModelError, match="FTUI_ALLOW_REMOTE_CODE=1"):
            call(cfg)
    assert engine.model_summary(ModelConfig(source="local", checkpoint=str(ckpt))).model_type == "bert"  # unticked: fine
    assert not marker.exists()
    # The operator allows it: the same call runs the repo's code (so the refusals above were real).
    allowed = Settings.from_env({"SPACE_ID": "someone/ftui", "FTUI_ALLOW_REMOTE_CODE": "1"})
    with pytest.raises(ModelError, match="architecture"):  # the fake config class has no classifier; its code ran first
        Engine(tmp_path / "r3", OFFLINE, allowed).model_summary(cfg)
    assert marker.read_text() == "remote code ran"


def test_every_engine_entry_point_applies_the_deployment_rules(tmp_path, tiny_bert_dir, csv_file, monkeypatch):
    """The rule behind the preview holes: any Engine method that takes a dataset or a checkpoint refuses what the
    deployment forbids before it reads anything, so a new entry point cannot forget it."""
    import inspect
    import typing

    import datasets
    import transformers

    from ftui import data as data_module

    def touched(*a, **k):
        raise AssertionError("read something before applying the deployment rules")

    for target, name in (
        (transformers.AutoConfig, "from_pretrained"),
        (transformers.AutoTokenizer, "from_pretrained"),
        (datasets, "load_dataset"),
        (data_module, "read_table"),
        (data_module, "load_raw"),
    ):
        monkeypatch.setattr(target, name, touched)
    engine = Engine(tmp_path / "runs", OFFLINE, Settings(allowed_checkpoints=("packaged",), allowed_datasets=("demo",)))
    bad_data = DataConfig(source="local", dataset_id=str(csv_file))
    bad_model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    from ftui.config import AdaptConfig
    from ftui.sweeps import SweepConfig

    values = {
        DataConfig: bad_data,
        ModelConfig: bad_model,
        RunConfig: RunConfig(bad_data, bad_model),
        AdaptConfig: AdaptConfig(corpus_source="file", corpus=str(csv_file)),  # a pre-training corpus is a dataset too
        SweepConfig: SweepConfig(values=(("learning_rate", "1e-4, 3e-4"),)),  # every point is checked like a Start
    }
    checked = []
    for name, fn in inspect.getmembers(Engine, inspect.isfunction):
        if name.startswith("_"):
            continue
        hints = typing.get_type_hints(fn)
        params = [p for p in inspect.signature(fn).parameters.values() if p.name != "self"]
        if not any(hints.get(p.name) in values or p.name == "dataset_id" for p in params):
            continue
        args = []
        for p in params:
            if hints.get(p.name) in values:
                args.append(values[hints[p.name]])
            elif p.name == "dataset_id":
                args.append("someone/secret-data")
            elif p.default is inspect.Parameter.empty:
                args.append(None)
        with pytest.raises(FtuiError, match="not allowed"):
            getattr(engine, name)(*args)
        checked.append(name)
    assert {"load_data", "model_summary", "tokenizer", "start_run", "dataset_configs", "dataset_splits",
            "preview_corpus", "text_lengths", "start_baselines", "plan_sweep", "start_sweep", "estimate_run",
            "estimate_sweep", "loaded_data"} <= set(checked)  # fmt: skip
    assert engine.queued() == []
    assert engine.current_run() is None


def test_the_model_tab_preview_refuses_a_forbidden_checkpoint_over_raw_http(tmp_path):
    """The hole as found: the Model tab's hidden summary event with a local checkpoint and 'Trust remote code' ticked."""
    from helpers import raw_call, remote_code_checkpoint

    from ftui.ui import create_app, launch_kwargs

    marker = tmp_path / "remote-code-ran"
    ckpt = remote_code_checkpoint(tmp_path / "ckpt", marker)
    settings = Settings.from_env({"FTUI_ALLOWED_CHECKPOINTS": "packaged", "FTUI_ALLOWED_DATASETS": "demo"})
    app = create_app(Engine(tmp_path / "runs", OFFLINE, settings))
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(settings))
    try:
        url = app.local_url.rstrip("/")
        trust = "Trust remote code: run model code shipped in the repo (off by default)"
        msg = raw_call(url, app, "on_load", {"model-source": "Local folder", "model-local": str(ckpt), trust: True})
        out = msg["output"]["data"][0] if msg.get("success") else str(msg)
        assert "not allowed" in out and not marker.exists()
        # The Data tab's Load with a local path: refused, and nothing about the file (its columns) leaks.
        secret = tmp_path / "secret.csv"
        secret.write_text("password_column,label\nhunter2,1\nswordfish,0\n")
        msg = raw_call(url, app, "on_load", {"data-source": "Local path", "data-local-path": str(secret)})
        out = str(msg["output"]["data"][0]) if msg.get("success") else str(msg)
        assert "not allowed" in out and "password_column" not in out and "hunter2" not in out
    finally:
        app.close()
