"""Helpers shared by the test modules (fixtures stay in conftest.py): tiny configs, app and browser steps, run configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np

REPO = Path(__file__).resolve().parent.parent  # the repository root


SHARED_DATA = REPO.parent / "shared" / "data"


def tiny_config(model_type: str = "bert", layers: int = 2, vocab_size: int = 30522):
    """A transformers config small enough to train in seconds on a CPU."""
    from transformers import AutoConfig

    sizes = {
        "hidden_size": 32,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "vocab_size": vocab_size,
    }
    if model_type == "distilbert":
        sizes = {
            "dim": 32,
            "n_layers": layers,
            "n_heads": 2,
            "hidden_dim": 64,
            "max_position_embeddings": 128,
            "vocab_size": vocab_size,
        }
    if model_type == "electra":
        sizes["embedding_size"] = 16
    if model_type == "roberta":
        sizes["max_position_embeddings"] = 130
    return AutoConfig.for_model(model_type, **sizes)


FAMILY_EXTRAS: dict[str, dict] = {  # what each family needs beyond the common tiny sizes
    "bert": {},
    "distilbert": {},
    "roberta": {},
    "electra": {},
    "xlm-roberta": {"max_position_embeddings": 130},
    "mpnet": {"max_position_embeddings": 130},
    "albert": {"embedding_size": 16},
    "deberta-v2": {"relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
                   "position_biased_input": False, "norm_rel_ebd": "layer_norm"},  # DeBERTa-v3's shape
    "deberta-v2-conv": {"relative_attention": True, "position_buckets": 16, "pos_att_type": ["p2c", "c2p"],
                        "position_biased_input": False, "norm_rel_ebd": "layer_norm", "conv_kernel_size": 3},
    "modernbert": {"global_attn_every_n_layers": 1, "local_attention": 16, "pad_token_id": 0, "bos_token_id": 101,
                   "eos_token_id": 102, "cls_token_id": 101, "sep_token_id": 102},
    "eurobert": {"pad_token_id": 0, "bos_token_id": 101, "eos_token_id": 102},
}  # fmt: skip


def family_config(kind: str, layers: int = 3, vocab_size: int = 30522):
    """A tiny config of an encoder family (FAMILY_EXTRAS' keys; "deberta-v2-conv" is DeBERTa-v2 with its conv layer)."""
    from transformers import AutoConfig

    if kind in ("bert", "distilbert", "roberta", "electra"):
        return tiny_config(kind, layers, vocab_size)
    model_type = "deberta-v2" if kind.startswith("deberta-v2") else kind
    sizes = {"hidden_size": 32, "num_hidden_layers": layers, "num_attention_heads": 2, "intermediate_size": 64,
             "max_position_embeddings": 128, "vocab_size": vocab_size}  # fmt: skip
    if kind == "eurobert":
        sizes["num_key_value_heads"] = 2
    return AutoConfig.for_model(model_type, **{**sizes, **FAMILY_EXTRAS[kind]})


def finished_tiny_run(engine, checkpoint: Path, run_name: str):
    """A completed 1-epoch run of a tiny checkpoint on the demo data, freeze depth 1 (for export tests)."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.runs import RunStatus

    cfg = RunConfig(
        DataConfig(),
        ModelConfig(source="local", checkpoint=str(checkpoint), freeze_depth=1),
        TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, run_name=run_name),
    )
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED
    return run


CHROMIUM = os.environ.get("FTUI_CHROMIUM", "/usr/bin/chromium")


CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def raw_call(url: str, app, fn_name: str, overrides: dict | None = None, session: str | None = None, timeout: float = 60):
    """Call any event handler (hidden ones too) over raw HTTP, as a hostile client would; returns the final message.

    Inputs start from the components' defaults; `overrides` maps elem_id (or label) to a value.
    """
    import json
    import uuid

    import httpx

    def keys(f) -> set:
        return {k for c in f.inputs for k in (getattr(c, "elem_id", None), getattr(c, "label", None)) if k}

    # Handlers share names across tabs (each tab's "on_load"): take the one whose inputs have every overridden widget.
    index = next(i for i, f in app.fns.items() if f.name == fn_name and set(overrides or {}) <= keys(f))
    fn = app.fns[index]
    data = []
    for comp in fn.inputs:
        key = next((k for k in (getattr(comp, "elem_id", None), getattr(comp, "label", None)) if k in (overrides or {})), None)
        data.append(overrides[key] if key is not None else getattr(comp, "value", None))
    session = session or uuid.uuid4().hex[:12]
    with httpx.Client(timeout=timeout) as c:
        payload = {"data": data, "fn_index": index, "session_hash": session, "event_data": None, "trigger_id": None}
        joined = c.post(  # json.dumps writes NaN/Infinity as a hostile client may
            f"{url}/gradio_api/queue/join", content=json.dumps(payload), headers={"content-type": "application/json"}
        )
        if joined.status_code != 200:
            return {"msg": "rejected", "status": joined.status_code, "text": joined.text}
        with c.stream("GET", f"{url}/gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                if line.startswith("data:"):
                    msg = json.loads(line[5:])
                    if msg.get("msg") == "process_completed":
                        return msg
    return {"msg": "no answer"}


def remote_code_checkpoint(path: Path, marker: Path) -> Path:
    """A tiny BERT whose config.json points (auto_map) at code in the folder that, when run, writes `marker`."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    torch.manual_seed(0)
    AutoModel.from_config(tiny_config("bert")).save_pretrained(path)
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(path)
    (path / "configuration_evil.py").write_text(
        "from pathlib import Path\n"
        "from transformers import BertConfig\n"
        f"Path({str(marker)!r}).write_text('remote code ran')\n"
        "class EvilConfig(BertConfig):\n"
        "    model_type = 'bert'\n"
    )
    import json

    cfg = json.loads((path / "config.json").read_text())
    cfg["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (path / "config.json").write_text(json.dumps(cfg))
    return path


TIMEOUT_MS = 60_000


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def open_advanced(page, elem_id: str) -> None:
    """Open a tab's collapsed "Advanced" section (its settings are hidden until then)."""
    page.locator(f"#{elem_id}").get_by_text("Advanced").first.click()


def fill_number(page, elem_id: str, value: str) -> None:
    """Set a number box as a user does: focus it, give the value, leave it (Tab), so the component has its value
    before the next click (an input event into a tab that had only just been rendered was seen lost under load)."""
    box = page.locator(f"#{elem_id} input")
    box.click()  # focused first: the component is live before the value arrives
    box.fill(value)  # one input event with the whole value (typing "2e-5" key by key passes through invalid numbers)
    box.press("Tab")


def upload(page, path: Path) -> str:
    """Choose a file in the Data tab; it loads by itself. Returns the status it produced."""
    page.locator("#data-source").get_by_text("Upload a file").click()
    clear = page.locator("#data-upload button[aria-label='Clear']")
    if clear.count():
        clear.click()  # the previous file; the upload box comes back
        clear.wait_for(state="detached")  # else the clear can land after the new file and drop it
    # the previous dataset's status is gone at once (case: it stayed until Load was pressed)
    page.wait_for_selector("#data-status:has-text('Choose a file to preview it')")
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(3):  # under load the upload box can drop a file set while it re-renders: set it again
        try:
            # the box's file input comes back after the Clear re-renders it (seen missing for 60 s once, then back)
            page.locator("#data-upload input[type=file]").set_input_files(str(path), timeout=20_000)
            page.wait_for_selector("#data-upload :text('" + path.name + "')", timeout=20_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
            if clear.count():  # a file the box still shows (the earlier set landed late): clear it and set again
                clear.click()
                clear.wait_for(state="detached")
    page.wait_for_function(
        """() => { const t = document.querySelector('#data-status [data-testid=markdown]').innerText;
                   return t.includes('✓') || t.includes('✗'); }"""
    )
    return md(page, "data-status")


def md(page, elem_id: str) -> str:
    """Text of a gr.Markdown, without its progress tracker."""
    return page.inner_text(f"#{elem_id} [data-testid=markdown]")


BROKEN_WORDS_JS = """(sel) => {
  const broken = [];
  for (const th of document.querySelectorAll(sel)) {
    const walker = document.createTreeWalker(th, NodeFilter.SHOW_TEXT);
    while (walker.nextNode()) {
      const node = walker.currentNode, re = /\\S+/g;
      let m;
      while ((m = re.exec(node.textContent))) {
        const r = document.createRange();
        r.setStart(node, m.index);
        r.setEnd(node, m.index + m[0].length);
        const lines = new Set(Array.from(r.getClientRects()).map((c) => Math.round(c.top)));
        if (lines.size > 1) broken.push(m[0]);  // one word on two lines: wrapped mid-word
      }
    }
  }
  return broken;
}"""


def serve(runs_dir, settings=None):
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.ui import create_app, launch_kwargs

    hub = HubStatus(False, "The Hugging Face Hub cannot be reached (tests).")
    eng = Engine(runs_dir=runs_dir, hub_status=hub, settings=settings)
    demo = create_app(eng)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **launch_kwargs())
    return demo, eng


def wind_down(engine, app=None, timeout: float = 60) -> None:
    """A test's engine (and app) put away: queued runs dropped first (they would start as soon as the current one
    stops), the current run stopped and joined, the app closed."""
    engine.manager.clear()
    engine.stop_run()
    engine.join(timeout)
    if app is not None:
        app.close()


def open_page(browser, url, width: int = 1300, height: int = 1400):
    """A new browser context at width x height on the app's page, once the demo data has loaded."""
    ctx = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("#data-status:has-text('Loaded')")
    return ctx, page


def choose(page, elem_id: str, text: str) -> None:
    """Pick an option of a Gradio dropdown by its visible text."""
    page.click(f"#{elem_id} input")
    page.locator("ul[role=listbox] li", has_text=text).first.click()


def cli_train(runs_dir, checkpoint, *extra: str) -> subprocess.Popen:
    """`python -m ftui train` in its own process, a long run on the tiny model, streaming JSON lines."""
    args = ["--dataset", "demo", "--checkpoint", str(checkpoint), "--epochs", "500", "--batch-size", "32", "--lr", "1e-3",
            "--max-length", "32", "--evals-per-epoch", "2", "--runs-dir", str(runs_dir), "--offline", *extra]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    runs_dir = Path(runs_dir)
    runs_dir.parent.mkdir(parents=True, exist_ok=True)
    err_path = runs_dir.parent / f"cli-stderr-{len(list(runs_dir.parent.glob('cli-stderr-*')))}.txt"
    with err_path.open("w") as err:  # a file, not a pipe: nothing reads it while the CLI runs
        cmd = [sys.executable, "-m", "ftui", "train", *args]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
    proc.stderr_path = err_path  # type: ignore[attr-defined]  # what exit_code shows when the CLI does not end
    return proc


def exit_code(proc: subprocess.Popen, timeout: float) -> int:
    """The CLI's exit code, reading what it still prints meanwhile: a full stdout pipe would block its last writes.
    A CLI still running after `timeout` is asked for its threads' stacks (SIGUSR1), which the failure shows."""
    try:
        proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        path: Path = proc.stderr_path  # type: ignore[attr-defined]
        proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while "most recent call first" not in path.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)  # polls for the dump the signal asked for
        raise AssertionError(f"the CLI ran {timeout} s past its signal; its stderr:\n{path.read_text()[-6000:]}") from None
    return proc.returncode


def wait_until(what, seconds: float = 120.0):
    """Poll `what` until it returns something truthy, and return that (for work in another process: nothing to join)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {seconds} s waiting")


def read_until(proc: subprocess.Popen, kind: str, count: int = 1) -> list[dict]:
    """Events printed by the CLI until `count` of type `kind` have appeared."""
    seen: list[dict] = []
    for line in proc.stdout:
        seen.append(json.loads(line))
        if sum(e.get("type") == kind for e in seen) >= count:
            return seen
    raise AssertionError(f"the CLI ended before {count} '{kind}' events: {seen[-3:]}")


def short_config(checkpoint, name: str, data=None):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        data or DataConfig(),
        ModelConfig(source="local", checkpoint=str(checkpoint)),
        TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=32, evals_per_epoch=1, run_name=name),
    )


def processes_config(checkpoint: Path, epochs: float, examples: int, processes: int = 2):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    return RunConfig(
        DataConfig(max_train_examples=examples),
        ModelConfig(source="local", checkpoint=str(checkpoint)),
        TrainConfig(epochs=epochs, batch_size=8, learning_rate=1e-3, evals_per_epoch=1, processes=processes),
    )


def header(run_id: str, status: str = "running", **kw):
    """A store row for a run (what Store.save_run takes)."""
    from ftui.config import RunConfig
    from ftui.rows import RunRow, RunStatus

    return RunRow(run_id=run_id, name=run_id, status=RunStatus(status), config=RunConfig().to_dict(), started_at=1.0,
                  out_dir=f"/tmp/{run_id}", **kw)  # fmt: skip


def store_writer(path: str, run_id: str, n: int, network: bool = False) -> None:
    """One writer of the store (a thread or a spawned process): a run's row, then n events."""
    from ftui.store import Store

    store = Store(Path(path), network=network)
    store.save_run(header(run_id))
    for i in range(n):
        store.add_event(run_id, i, {"type": "train", "step": i})


ASPECTS = {  # multi-label fixture: each aspect a review mentions is one label
    "plot": ["story", "twist", "script", "ending", "storyline"],
    "acting": ["actor", "actress", "performance", "cast", "acting"],
    "music": ["soundtrack", "score", "song", "melody", "music"],
}


FILLER = ["the", "film", "was", "really", "quite", "movie", "honestly", "overall", "and", "this"]


def aspect_reviews(path, n=300, seed=0):
    """Reviews naming 0-3 aspects among filler words; labels as a JSON list, 0/1 columns, and a 0-5 score that grows
    with the number of praise words (the regression target)."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        labels = [a for a in ASPECTS if rng.random() < 0.4]
        words = [str(rng.choice(FILLER)) for _ in range(6)]
        words += [str(rng.choice(ASPECTS[a])) for a in labels]
        praise = int(rng.integers(0, 4))
        words += ["great"] * praise + ["awful"] * int(3 - praise)
        rng.shuffle(words)
        rows.append({"text": " ".join(words), "labels": json.dumps(labels), **{a: int(a in labels) for a in ASPECTS},
                     "score": praise + float(rng.normal(0, 0.2))})  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def verdict_reviews(path, n=240, seed=0):
    """Long reviews whose verdict is only in their last sentence: cut at the max length, a model never sees it."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        filler = " ".join(str(rng.choice(FILLER)) for _ in range(60))
        verdict = "in the end it was great and wonderful" if i % 2 else "in the end it was awful and boring"
        rows.append({"text": f"{filler} {verdict}", "label": "pos" if i % 2 else "neg"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def assert_fraction_of(value: float, n: int, digits: int | None = None) -> None:
    """`value` is k/n for a whole k in 0..n (an accuracy over n examples); `digits`: the decimals it was rounded to."""
    k = round(value * n)
    tolerance = 0.5 * 10.0**-digits * n if digits is not None else 1e-6
    assert 0 <= k <= n and abs(value * n - k) <= tolerance, f"{value} is not a whole count out of {n}"


def assert_scores_match_predictions(engine, run_id: str, scores: dict) -> None:
    """A run's reported test accuracy (and macro F1 when reported) are those of its saved test predictions."""
    import pytest
    from sklearn.metrics import f1_score

    preds = engine.test_predictions(run_id)
    assert len(preds) > 0
    assert scores["test_accuracy"] == pytest.approx(preds["correct"].mean(), abs=1e-4)
    if "test_macro_f1" in scores:
        f1 = f1_score(preds["label"], preds["predicted"], average="macro")
        assert scores["test_macro_f1"] == pytest.approx(f1, abs=1e-4)


def offline_engine(runs_dir: Path):
    """An offline engine over a runs folder (to read back what another process wrote there)."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    return Engine(runs_dir=runs_dir, hub_status=HubStatus(False, "offline (tests)"))


def baseline_cfg(kind: str, checkpoint=None, **train):
    """A baseline run config on the demo data (a local checkpoint for the embeddings baseline)."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    model = ModelConfig(source="local", checkpoint=str(checkpoint)) if checkpoint else ModelConfig()
    return RunConfig(DataConfig(), model, TrainConfig(max_length=32, **train), kind="baseline", baseline=kind)


def finish(engine, run):
    """Wait for a run to complete (it must)."""
    from ftui.runs import RunStatus

    assert run.done.wait(180) and engine.join(30)
    assert run.status == RunStatus.COMPLETED, run.error
    return run


class FakeHub(BaseHTTPRequestHandler):
    """Answers the few Hub API routes ftui (and Gradio's local OAuth mock) uses, recording each request."""

    requests: list[tuple[str, dict]] = []

    def do_GET(self):  # noqa: N802 - http.server's naming
        url = urlparse(self.path)
        q = parse_qs(url.query)
        FakeHub.requests.append((url.path, q))
        if url.path == "/api/models":
            tag = q.get("pipeline_tag", [""])[0]
            body = [{"id": f"org/{tag}-model-{i}", "_id": str(i), "downloads": 100 * i} for i in range(3)]
        elif url.path == "/api/whoami-v2":  # the user Gradio's local OAuth mock signs in
            body = {"type": "user", "name": "alice", "fullname": "Alice", "avatarUrl": "", "orgs": []}
        elif url.path == "/api/datasets":
            body = [{"id": "org/reviews", "_id": "1", "downloads": 50}, {"id": "org/tweets", "_id": "2", "downloads": 5}]
        else:
            self.send_response(404)
            self.end_headers()
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def stopped_run_record(runs_dir: Path, run_id: str, cfg=None) -> Path:
    """A stopped run in the store of `runs_dir` with a (placeholder) resume snapshot: what Resume offers, without
    training one. Returns its folder."""
    from ftui.config import RunConfig
    from ftui.rows import RunRow, RunStatus
    from ftui.run_layout import snapshot_path
    from ftui.store import Store

    out = runs_dir / run_id
    snapshot_path(out).parent.mkdir(parents=True)
    snapshot_path(out).write_bytes(b"snapshot")
    row = RunRow(run_id=run_id, name="mine", status=RunStatus.STOPPED, config=(cfg or RunConfig()).to_dict(),
                 started_at=1.0, out_dir=str(out))  # fmt: skip
    Store(runs_dir, network=True).save_run(row)
    return out
