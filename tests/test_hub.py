"""Hub code paths without the Internet: a fake Hub on loopback, the local cache, and error translation."""

import json
import shutil
import threading
from http.server import ThreadingHTTPServer

import datasets
import httpx
import pytest
from helpers import FakeHub
from huggingface_hub import constants as hf_constants
from huggingface_hub import errors as hf_errors

from ftui import hub
from ftui.config import DataConfig, ModelConfig
from ftui.data import load_raw
from ftui.errors import HubError


@pytest.fixture()
def fake_hub(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.delenv("FTUI_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hf_constants, "ENDPOINT", url)
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)
    FakeHub.requests = []
    yield url
    server.shutdown()
    thread.join(5)


def test_check_hub_online_against_a_hub_that_answers(fake_hub):
    status = hub.check_hub(timeout=5)
    assert status.online, status.message
    assert FakeHub.requests[0][0] == "/api/models"


def test_check_hub_offline_when_nothing_answers(monkeypatch):
    monkeypatch.delenv("FTUI_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: connection refused at once
    status = hub.check_hub(timeout=2)
    assert not status.online and "cannot be reached" in status.message
    # Plain words for the page's header, the exception's name only in the log (case: "(ConnectError)")
    assert "Error" not in status.message and "no answer within 2 s" in status.message


def test_check_hub_respects_ftui_offline(monkeypatch):
    monkeypatch.setenv("FTUI_OFFLINE", "1")
    assert not hub.check_hub().online


def test_dataset_search_asks_for_text_classification_by_downloads(fake_hub):
    assert hub.search_datasets("rev") == ["org/reviews", "org/tweets"]
    path, q = FakeHub.requests[-1]
    assert path == "/api/datasets" and q["search"] == ["rev"] and q["sort"] == ["downloads"]
    assert "task_categories:text-classification" in q["filter"]


def test_model_search_merges_both_tasks_by_downloads(fake_hub):
    found = hub.search_models("bert", limit=4)
    assert len(found) == 4 and found[0].endswith("-model-2")
    tags = {q["pipeline_tag"][0] for p, q in FakeHub.requests if p == "/api/models"}
    assert tags == {"fill-mask", "text-classification"}


def test_engine_search_offline_says_so(engine):
    with pytest.raises(HubError, match="cannot be reached"):
        engine.search_datasets("imdb")
    with pytest.raises(HubError, match="cannot be reached"):
        engine.search_models("bert")


def _http_error(kind, status):
    req = httpx.Request("GET", "https://huggingface.co/api/x")
    return kind("boom", response=httpx.Response(status, request=req))


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (lambda: _http_error(hf_errors.GatedRepoError, 401), "gated"),
        (lambda: _http_error(hf_errors.RepositoryNotFoundError, 404), "not found"),
        (lambda: datasets.exceptions.DatasetNotFoundError("Dataset 'x/y' doesn't exist on the Hub"), "not found"),
        (lambda: ValueError("Config name is missing. Please pick one among the available configs"), "needs a config"),
        (lambda: RuntimeError("Dataset scripts are no longer supported, but found y.py"), "loading script"),
        (lambda: hf_errors.OfflineModeIsEnabled("offline mode is enabled"), "not in the local cache"),
        (lambda: httpx.ReadTimeout("timed out"), "did not answer in time"),
        (lambda: ConnectionError("Name or service not known"), "cannot be reached"),
    ],
)
def test_errors_become_messages_with_a_fix(exc, expected):
    err = hub.explain_hub_error(exc(), "dataset", "x/y")
    assert isinstance(err, HubError)
    assert expected in err.problem
    assert err.fix or expected == "did not answer in time"


def test_script_dataset_refused_by_default_and_parquet_export_with_trust(monkeypatch):
    calls = []

    def fake_load(path, name=None, **kw):
        calls.append(kw.get("revision"))
        if kw.get("revision") != "refs/convert/parquet":
            raise RuntimeError("Dataset scripts are no longer supported, but found old.py")
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    with pytest.raises(HubError, match="loading script"):
        load_raw(DataConfig(source="hub", dataset_id="old/scripted"))
    assert calls == [None]
    raw = load_raw(DataConfig(source="hub", dataset_id="old/scripted", trust_remote_code=True))
    assert calls == [None, None, "refs/convert/parquet"] and len(raw["train"]) == 2


def test_hub_token_is_passed_but_never_part_of_the_config(monkeypatch):
    seen = {}

    def fake_load(path, name=None, **kw):
        seen.update(kw, path=path, name=name)
        return datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]})})

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    cfg = DataConfig(source="hub", dataset_id="glue", config_name="sst2")
    load_raw(cfg, token="hf_secret")
    assert seen == {"path": "glue", "name": "sst2", "token": "hf_secret"}
    assert "hf_secret" not in json.dumps(cfg.__dict__)


def test_cached_hub_checkpoint_works_offline(tmp_path, monkeypatch, tiny_bert_dir):
    """A model already in the local Hugging Face cache loads by its Hub id with the Hub unreachable."""
    cache = tmp_path / "hub-cache"
    commit = "0" * 40
    snap = cache / "models--tiny--bert" / "snapshots" / commit
    shutil.copytree(tiny_bert_dir, snap)
    (cache / "models--tiny--bert" / "refs").mkdir(parents=True)
    (cache / "models--tiny--bert" / "refs" / "main").write_text(commit)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    from ftui.model_card import summarize
    from ftui.modeling import build_model

    cfg = ModelConfig(source="hub", checkpoint="tiny/bert")
    s = summarize(cfg)
    assert s.num_layers == 2 and s.freeze_supported
    model = build_model(cfg, ["a", "b"])
    assert model.config.num_labels == 2
    with pytest.raises(HubError, match="not in the local cache|not found"):
        summarize(ModelConfig(source="hub", checkpoint="tiny/absent"))
