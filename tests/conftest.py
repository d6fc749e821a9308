"""Shared fixtures: offline engine, tiny random-weight checkpoints, small data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import CHROMIUM, CHROMIUM_ARGS, tiny_config, wind_down

os.environ.setdefault("FTUI_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The automatic TF-IDF baseline beside a model run on new data (ftui.auto_baseline) is off for engines read from the
# environment (the `engine` fixture, the CLI and app children): most tests count and order their own runs. Its tests
# (tests/test_auto_baseline.py, the browser test) turn it on; an engine given Settings() directly has it on.
os.environ.setdefault("FTUI_AUTO_BASELINE", "0")
# One torch (OpenMP) thread per test process, set before torch is imported here and inherited by the CLI and app
# children the tests start: the tiny test models' ops are too small to split, and two threads per process spin against
# each other and the other xdist worker on a 2-core machine (a tiny run took 7-10 s with 2 threads, 2 s with 1, under
# load). The slow set keeps every core (the `cores_for_slow_tests` fixture): its real MiniLM runs do use them.
if "OMP_NUM_THREADS" not in os.environ:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["PYTEST_FTUI_ONE_THREAD"] = "1"  # the tests chose it (xdist workers inherit both), not the caller
ONE_THREAD_HERE = os.environ.get("PYTEST_FTUI_ONE_THREAD") == "1"


@pytest.fixture(autouse=True)
def cores_for_slow_tests(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    """A `slow` test runs with every core (torch threads and OMP_NUM_THREADS for its children); the others with one."""
    import sys

    slow = request.node.get_closest_marker("slow") is not None and ONE_THREAD_HERE
    threads = (os.cpu_count() or 1) if slow else 1
    if slow:
        monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    torch = sys.modules.get("torch")  # not imported yet: it reads OMP_NUM_THREADS when it is
    if ONE_THREAD_HERE and torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    yield


WORKERS = 2  # one per core of the 2-core CI machine (each runs torch on one thread, above)


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """The default suite runs on WORKERS pytest-xdist processes (`-n` given on the command line wins).

    Set here rather than in pyproject's addopts so that pytest without xdist (bench/gpu_check's carried wheels) still
    runs; the slow set (`-m slow`) and runs with output shown (`-s`) stay in one process. A module's tests that share a
    module-scoped fixture go to one worker (--dist loadgroup and pytest_collection_modifyitems below)."""
    option = config.option
    if not config.pluginmanager.hasplugin("xdist") or hasattr(config, "workerinput") or option.collectonly:
        return
    if option.numprocesses is None and option.markexpr == "not slow" and option.capture != "no" and not option.usepdb:
        option.numprocesses = WORKERS
        if option.dist == "no":
            option.dist = "loadgroup"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (--dist loadgroup), a module's tests that share a module-scoped fixture (a served app, a
    browser, a trained run) go to one worker, so the fixture is built once; the other tests spread one by one."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        scopes = {d.scope for fixture_defs in (defs.name2fixturedefs.values() if defs else ()) for d in fixture_defs}
        if "module" in scopes and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))


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
    wind_down(eng)


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
    wind_down(eng, demo)


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
