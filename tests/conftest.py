"""Shared fixtures: offline engine, tiny random-weight checkpoints, small data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, tiny_config

os.environ.setdefault("FTUI_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random BERT saved like a checkpoint, with the packaged MiniLM's tokenizer."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    path = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(path)
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(path)
    (path / "README.md").write_text("# Tiny BERT\n\nFor tests.\n\n## Limitations and bias\n\nRandom weights: predicts noise.\n")
    return path


@pytest.fixture()
def engine(tmp_path: Path):
    """An offline engine with its own runs folder."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    eng = Engine(runs_dir=tmp_path / "runs", hub_status=HubStatus(False, "offline (tests)"))
    yield eng
    eng.manager.clear()  # queued runs would start as soon as the current one stops
    eng.stop_run()
    eng.join(60)


@pytest.fixture()
def csv_file(tmp_path: Path) -> Path:
    """A small labelled CSV with string labels, three classes, some empty texts."""
    import pandas as pd

    rows = []
    for i in range(60):
        label = ["neg", "neu", "pos"][i % 3]
        rows.append({"id": i, "review": f"review number {i} that is {label}", "label": label})
    rows.append({"id": 99, "review": "", "label": "pos"})
    rows.append({"id": 100, "review": None, "label": "neg"})
    path = tmp_path / "reviews.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def app_server(tmp_path_factory: pytest.TempPathFactory):
    """The real app on a loopback port, around an offline engine; yields (url, engine)."""
    from ftui.engine import Engine
    from ftui.hub import check_hub
    from ftui.ui import create_app, launch_kwargs

    # FTUI_OFFLINE is set above: the status line is the one a user without the Hub sees
    eng = Engine(runs_dir=tmp_path_factory.mktemp("ui-runs"), hub_status=check_hub())
    demo = create_app(eng)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **launch_kwargs())
    yield demo.local_url.rstrip("/"), eng
    eng.manager.clear()
    eng.stop_run()
    eng.join(60)
    demo.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium through Playwright (never a downloaded browser)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
