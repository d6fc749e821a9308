"""Hostile input over raw HTTP: file routes, hidden endpoints with bad values and URL-shaped ids, a stampede of
Starts, hostile predict text, oversized and malformed uploads."""

import threading
import urllib.parse

import numpy as np
import pandas as pd
import pytest
from helpers import raw_call, wind_down

from ftui.config import DataConfig
from ftui.data import load_data
from ftui.errors import DataError
from ftui.readers import read_table
from ftui.settings import Settings


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_bert_dir):
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.ui import create_app, launch_kwargs

    runs = tmp_path_factory.mktemp("hostile-runs")
    engine = Engine(runs_dir=runs, hub_status=HubStatus(False, "offline (tests)"))
    app = create_app(engine)
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs())
    yield app.local_url.rstrip("/"), app, engine
    wind_down(engine, app)


def tiny_model(tiny_bert_dir) -> dict:
    return {"model-source": "Local folder", "model-local": str(tiny_bert_dir), "epochs": 1, "batch-size": 32}


def message_of(msg: dict) -> str:
    """The Train tab's message markdown from a finished on_start call (or the error Gradio returned)."""
    if not msg.get("success", False):
        return f"rejected: {msg.get('output', {}).get('error') or msg.get('title') or msg}"
    return str(msg["output"]["data"][0])


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "../../../../etc/passwd",
        "..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/ETC/../etc/passwd",
        "RUNS_DB",
        ".env",
        "~/.bashrc",
    ],
)
def test_file_routes_serve_nothing_outside_the_apps_files(served, path):
    import httpx

    url, _, engine = served
    if path == "RUNS_DB":
        path = str(engine.runs_dir / "ftui.db")
    for route in (f"{url}/gradio_api/file={path}", f"{url}/gradio_api/file={urllib.parse.quote(path)}"):
        r = httpx.get(route, timeout=10)
        assert r.status_code in (400, 403, 404), (route, r.status_code)
        assert b"root:" not in r.content and b"SQLite format" not in r.content


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"lr": float("nan")}, "learning rate must be a number above 0.0 to 1.0 (got nan)"),
        ({"lr": -1}, "learning rate must be a number above 0.0 to 1.0 (got -1.0)"),
        ({"lr": 1e9}, "learning rate must be a number above 0.0 to 1.0 (got 1000000000.0)"),
        ({"batch-size": -5}, "batch size must be a whole number from 1 to 4096 (got -5)"),
        ({"batch-size": 10**9}, "batch size must be a whole number from 1 to 4096 (got 1000000000)"),
        ({"epochs": 1e12}, "epochs must be a number above 0.0 to 1000.0"),
        ({"max-len": 10**7}, "max sequence length must be a whole number from 8 to 8192 (got 10000000)"),
        ({"model-source": "Hugging Face Hub", "model-hub-id": "http://169.254.169.254/latest/meta-data"}, "not a Hub model id"),
        ({"model-source": "Hugging Face Hub", "model-hub-id": "file:///etc"}, "is not a Hub model id"),
        ({"model-source": "Hugging Face Hub", "model-hub-id": "../../etc"}, "'../../etc' is not a Hub model id"),
        ({"data-source": "Hugging Face Hub", "data-hub-id": "http://169.254.169.254/"}, "is not a Hub dataset id"),
        ({"data-source": "Hugging Face Hub", "data-hub-id": "../../../etc"}, "'../../../etc' is not a Hub dataset id"),
        (
            {"data-source": "Local path", "data-local-path": "/nonexistent/../../etc/shadow"},
            "no file or folder at '/nonexistent/../../etc/shadow'",
        ),
    ],
)
def test_hidden_start_endpoint_validates_in_the_engine(served, tiny_bert_dir, overrides, expected):
    url, app, engine = served
    before = {r.run_id for r in engine.runs()}
    msg = raw_call(url, app, "on_start", {**tiny_model(tiny_bert_dir), **overrides})
    assert msg.get("success") is True, msg  # the request reached the handler: the engine, not the transport, refuses it
    text = message_of(msg)
    assert text.startswith("✗ **Settings need fixing: ") and expected in text, text
    assert {r.run_id for r in engine.runs()} == before and engine.queued() == []  # nothing started, nothing queued


def test_fifty_simultaneous_starts_give_exactly_one_run_and_a_capped_queue(served, tiny_bert_dir):
    url, app, engine = served
    before = {r.run_id for r in engine.runs()}
    results: list[str] = []
    lock = threading.Lock()
    gate = threading.Barrier(50)

    def press() -> None:
        gate.wait(30)
        text = message_of(raw_call(url, app, "on_start", {**tiny_model(tiny_bert_dir), "epochs": 200}))
        with lock:
            results.append(text)

    threads = [threading.Thread(target=press) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    started = [r for r in results if r.startswith("Started")]
    queued = [r for r in results if "Queued (" in r]
    full = [r for r in results if "The queue holds at most 20 runs" in r]
    assert len(results) == 50 and len(started) == 1 and len(queued) == 20 and len(full) == 29, results[:3]
    new = [r for r in engine.runs() if r.run_id not in before]
    assert len(new) == 1 and len(engine.queued()) == 20
    engine.clear_queue()  # else the twenty would train, one after another, behind the other tests
    engine.stop_run()
    assert new[0].done.wait(60) and engine.join(30)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "x" * 1_000_000,
        "😀🎬👍" * 50,
        "هذا الفيلم رائع جدا",
        "bad\x00\x07\x1b[31m\r\nmovie",
        "<script>alert(1)</script>",
    ],
)
def test_hostile_predict_text(served, tiny_bert_dir, text):
    from gradio_client import Client

    from ftui.config import ModelConfig, RunConfig, TrainConfig
    from ftui.runs import RunStatus

    url, _, engine = served
    if not any(r.status == RunStatus.COMPLETED for r in engine.runs()):
        run = engine.start_run(
            RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
        )
        assert run.done.wait(120) and engine.join(30)
    client = Client(url, verbose=False)
    if not text.strip():
        with pytest.raises(Exception, match="no text to classify"):
            client.predict(text, None, api_name="/predict")
        return
    out = client.predict(text, None, api_name="/predict")
    assert out["label"] in ("negative", "positive")  # the label is ours; the text is never echoed back


def test_upload_limits(tmp_path):
    big = tmp_path / "big.csv"
    pd.DataFrame({"text": ["a review"] * 1_000_000, "label": ["pos", "neg"] * 500_000}).to_csv(big, index=False)
    limits = Settings.from_env({"FTUI_MAX_ROWS": "100000"}).read_limits()
    with pytest.raises(DataError, match="more than 100,000 rows"):
        read_table(big, limits)
    with pytest.raises(DataError, match="up to 1 MB"):
        read_table(big, Settings.from_env({"FTUI_MAX_UPLOAD_MB": "1"}).read_limits())


def test_parquet_bomb_is_refused_from_its_footer(tmp_path):
    bomb = tmp_path / "bomb.parquet"
    # 200 rows of 1 MB of one repeated letter: a few KB on disk, ~200 MB in memory
    pd.DataFrame({"text": ["a" * 2**20] * 200, "label": [0, 1] * 100}).to_parquet(bomb, compression="zstd")
    assert bomb.stat().st_size < 2**20
    with pytest.raises(DataError, match="expands to"):
        read_table(bomb, Settings.from_env({"FTUI_MAX_UPLOAD_MB": "10"}).read_limits())


def test_one_ten_megabyte_line_loads_and_previews_short(tmp_path):
    from ftui.data_report import PREVIEW_CHARS, preview_frame

    f = tmp_path / "long.csv"
    rows = {"text": ["w" * 10 * 2**20] + [f"review {i}" for i in range(59)], "label": (["pos", "neg"] * 30)}
    pd.DataFrame(rows).to_csv(f, index=False)
    bundle = load_data(DataConfig(source="upload", dataset_id=str(f)))
    assert sum(bundle.sizes.values()) == 60
    assert max(len(t) for t in preview_frame(bundle, 60)["text"]) <= PREVIEW_CHARS + 2


def test_random_bytes_upload_is_explained(tmp_path):
    f = tmp_path / "junk.csv"
    f.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="not UTF-8|could not be read|no table"):
        read_table(f)
