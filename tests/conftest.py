"""Shared fixtures: offline engine, tiny random-weight checkpoints, small data files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("FTUI_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parent.parent
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
