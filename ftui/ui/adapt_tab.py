"""Adapt tab: masked-language-model pre-training on a corpus (continue the Model tab's checkpoint, or a WordPiece
tokenizer and a small BERT from scratch), with live loss and perplexity."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from ftui.config import PRECISIONS, AdaptConfig, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import escape_md
from ftui.events import decode_all
from ftui.icons import OK
from ftui.mlm import PRESETS, preset_parameters
from ftui.plots import loss_figure, perplexity_figure, status_markdown
from ftui.recipes import recipe_of
from ftui.run_queue import QueuedRun
from ftui.runs import RunStatus
from ftui.ui.common import MODEL_SOURCE_LABELS, as_float, as_int, error_md, key_for, queued_message, token_of, viewer_of
from ftui.ui.model_tab import ModelUI

CORPUS_LABELS = {"demo": "Bundled demo texts", "file": "A file (upload or path)", "hub": "Hugging Face Hub dataset"}
# What the curves mean, so a short run on the demo (a few steps) is read for what it is.
EXPECT = (
    "**What to expect:** held-out *perplexity* (how surprised the model is by texts it did not train on; lower is "
    "better) falls as the model learns the domain's words. *Masked-token accuracy* is the share of hidden tokens "
    "guessed exactly: it rises slowly and can stay near 0 for a from-scratch model on a small corpus. The default run "
    "on the 320 bundled demo reviews is a smoke test of a few steps; a real adaptation reads thousands of documents "
    "for an epoch or more."
)
MODE_LABELS = {"continue": "Continue pre-training the Model tab's checkpoint", "scratch": "From scratch: new tokenizer and model"}


@dataclass
class AdaptUI:
    """What the app wires: the Model tab's adapted-checkpoint list refreshes when a run here completes."""

    version: gr.State


def adapt_config(v: dict[str, Any]) -> AdaptConfig:
    """Widget values by AdaptConfig field name to a config (validation happens in the engine)."""
    d = AdaptConfig()
    source = key_for(CORPUS_LABELS, v["corpus_source"], d.corpus_source)
    upload = v.get("upload")
    path = upload if isinstance(upload, str) and upload else (v.get("path") or "")
    return AdaptConfig(
        corpus_source=source,
        corpus=str(path if source == "file" else (v.get("hub_id") or "")).strip(),
        corpus_config=(v.get("hub_config") or None),
        corpus_split=(v.get("hub_split") or "train").strip(),
        mode=key_for(MODE_LABELS, v["mode"], d.mode),
        mask_rate=as_float(v["mask_rate"], d.mask_rate),
        whole_word=bool(v["whole_word"]),
        vocab_size=as_int(v["vocab_size"], d.vocab_size),
        min_frequency=as_int(v["min_frequency"], d.min_frequency),
        lowercase=bool(v["lowercase"]),
        preset=v["preset"] or d.preset,
    )


def build(engine: Engine, token_box: gr.Textbox, model_ui: ModelUI) -> AdaptUI:
    """Lay out the Adapt tab and wire Preview, Start, Stop and its polling timer."""
    gr.Markdown(
        "Teach a checkpoint the language of your domain before fine-tuning it: masked-language modelling on unlabeled "
        "texts (15% of tokens hidden, the model guesses them), or a WordPiece tokenizer and a small BERT from scratch. "
        "When a run completes, the Model tab is set to its checkpoint (*Local folder*): the Train tab fine-tunes it."
    )
    w: dict[str, Any] = {}
    d, a = TrainConfig(), AdaptConfig()
    # Essentials first (what to read, how, how long), then Start, then the curves; the rest under "Advanced".
    with gr.Row():
        w["corpus_source"] = gr.Radio(list(CORPUS_LABELS.values()), value=CORPUS_LABELS["demo"], label="Corpus",
                                      elem_id="corpus-source", scale=3)  # fmt: skip
        w["mode"] = gr.Radio(list(MODE_LABELS.values()), value=MODE_LABELS["continue"], label="Mode", elem_id="adapt-mode",
                             scale=3)  # fmt: skip
    # Only the chosen corpus source's fields are shown.
    with gr.Row(visible=False) as file_box:
        w["upload"] = gr.File(label="Corpus file (.txt: one document per line; or CSV/Excel/JSON/Parquet with a text column)",
                              file_types=[".txt", ".csv", ".tsv", ".xlsx", ".json", ".jsonl", ".parquet"], type="filepath",
                              elem_id="corpus-upload")  # fmt: skip
        w["path"] = gr.Textbox(label="…or a file path", elem_id="corpus-path")
    with gr.Row(visible=False) as hub_box:
        w["hub_id"] = gr.Textbox(label="Hub dataset id", placeholder="stanfordnlp/imdb", elem_id="corpus-hub")
        w["hub_config"] = gr.Textbox(label="Config (optional)")
        w["hub_split"] = gr.Textbox(value="train", label="Split (e.g. unsupervised)")
    with gr.Group(visible=False) as scratch_box:
        with gr.Row():
            w["vocab_size"] = gr.Number(value=a.vocab_size, precision=0, label="Vocabulary size", elem_id="vocab-size")
            w["min_frequency"] = gr.Number(value=a.min_frequency, precision=0, label="Minimum frequency")
            w["lowercase"] = gr.Checkbox(value=a.lowercase, label="Lowercase")
            w["preset"] = gr.Radio(list(PRESETS), value=a.preset, label="Model size", elem_id="preset")
        size = gr.Markdown(elem_id="preset-size")
    with gr.Row():
        lr = gr.Number(value=5e-5, label="Learning rate", elem_id="adapt-lr")
        epochs = gr.Number(value=1, label="Epochs", elem_id="adapt-epochs")
        max_steps = gr.Number(value=0, precision=0, label="Max steps (0 = all epochs)", elem_id="adapt-max-steps")
        block = gr.Number(value=128, precision=0, label="Block length (tokens)", elem_id="adapt-block")
    with gr.Row():
        preview_btn = gr.Button("Preview corpus", elem_id="corpus-preview-btn")
        start = gr.Button("Start pre-training", variant="primary", elem_id="adapt-start")
        stop = gr.Button("Stop", variant="stop", elem_id="adapt-stop")
    preview = gr.Markdown(elem_id="corpus-preview")
    message = gr.Markdown(elem_id="adapt-message")
    status = gr.Markdown(elem_id="adapt-status")
    with gr.Row():
        loss_plot = gr.Plot(label="MLM loss", elem_id="mlm-loss")
        ppl_plot = gr.Plot(label="Held-out perplexity", elem_id="mlm-perplexity")
    gr.Markdown(EXPECT, elem_id="adapt-expect")
    with gr.Accordion("Advanced", open=False, elem_id="adapt-advanced"):
        with gr.Row():
            batch = gr.Number(value=16, precision=0, label="Batch size (blocks)")
            w["mask_rate"] = gr.Number(value=a.mask_rate, label="Mask rate")
            w["whole_word"] = gr.Checkbox(value=False, label="Whole-word masking")
            warmup = gr.Number(value=d.warmup_ratio, label="Warmup ratio")
        with gr.Row():
            wd = gr.Number(value=d.weight_decay, label="Weight decay")
            seed = gr.Number(value=d.seed, precision=0, label="Seed")
            precision = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision")
            evals = gr.Number(value=4, precision=0, label="Evaluations per epoch")

    def on_corpus(shown: str) -> tuple[Any, Any]:
        src = key_for(CORPUS_LABELS, shown, "demo")
        return gr.update(visible=src == "file"), gr.update(visible=src == "hub")

    w["corpus_source"].change(on_corpus, w["corpus_source"], [file_box, hub_box], api_visibility="private")
    timer = gr.Timer(1.0, active=False)
    version = gr.State(-1)

    def sizes(preset: str, vocab: Any) -> str:
        rows = [f"{name}: {preset_parameters(name, as_int(vocab, a.vocab_size)) / 1e6:.1f} M parameters" for name in PRESETS]
        return "Model sizes with this vocabulary — " + " · ".join(f"**{r}**" if r.startswith(preset) else r for r in rows)

    def on_mode(shown: str, preset: str, vocab: Any) -> tuple[Any, Any]:
        scratch = key_for(MODE_LABELS, shown, "continue") == "scratch"
        return gr.update(visible=scratch), sizes(preset, vocab) if scratch else ""

    w["mode"].change(on_mode, [w["mode"], w["preset"], w["vocab_size"]], [scratch_box, size], api_visibility="private")
    w["preset"].change(sizes, [w["preset"], w["vocab_size"]], size, api_visibility="private")

    names = list(w)
    inputs = [*w.values(), *model_ui.inputs, lr, batch, epochs, max_steps, block, warmup, wd, seed, precision, evals, token_box]

    def unpack(values: tuple[Any, ...]) -> tuple[RunConfig, str | None]:
        v = dict(zip(names, values[: len(names)], strict=True))
        rest = values[len(names) :]
        model = ModelUI.to_config(*rest[: len(model_ui.inputs)])
        lr_, batch_, epochs_, steps_, block_, warmup_, wd_, seed_, prec_, evals_, token = rest[len(model_ui.inputs) :]
        train = replace(
            d,
            learning_rate=as_float(lr_, 5e-5),
            batch_size=as_int(batch_, 16),
            epochs=as_float(epochs_, 1.0),
            max_steps=as_int(steps_, 0),
            max_length=as_int(block_, 128),
            warmup_ratio=as_float(warmup_, d.warmup_ratio),
            weight_decay=as_float(wd_, d.weight_decay),
            seed=as_int(seed_, d.seed),
            precision=prec_ or "auto",
            evals_per_epoch=as_int(evals_, 4),
        )
        return RunConfig(model=model, train=train, kind="mlm", adapt=adapt_config(v)), token_of(token)

    def on_preview(*values: Any) -> str:
        try:
            cfg, token = unpack(values)
            p = engine.preview_corpus(cfg.adapt, cfg.model, cfg.train.max_length, token)
        except FtuiError as exc:
            return error_md(exc)
        lines = [
            f"**{escape_md(p['name'])}**: {p['documents']:,} documents"
            + (f" ({p['duplicates_removed']:,} duplicates removed)" if p["duplicates_removed"] else ""),
        ]
        if p["tokens"]:
            lines.append(
                f"about {p['tokens']:,} tokens → {p['blocks']:,} blocks of {cfg.train.max_length}; "
                f"{p['longer_than_block']:,} documents are longer than one block (they continue in the next block: "
                "nothing is cut)"
            )
        lines += [f"> {escape_md(t[:200])}" for t in p["first"]]
        return "\n\n".join(lines)

    preview_btn.click(on_preview, inputs, preview, api_visibility="private")

    def on_start(given: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        try:
            cfg, token = unpack(tuple(given[c] for c in inputs))  # a set of inputs arrives as {widget: value}
            run = engine.start_run(cfg, token, viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        if isinstance(run, QueuedRun):
            return queued_message(run), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (
            f"Started **{escape_md(run.name)}**.",
            status_markdown(run.snapshot(), now=time.time()),
            None,
            None,
            -1,
            gr.Timer(active=True),
        )

    start.click(on_start, set(inputs), [message, status, loss_plot, ppl_plot, version, timer], api_visibility="private")

    def on_stop(profile: gr.OAuthProfile | None = None) -> str:
        try:
            return "Stopping after the current step." if engine.stop_run(viewer_of(engine, profile)) else "Nothing is running."
        except FtuiError as exc:
            return error_md(exc)

    stop.click(on_stop, None, message, api_visibility="private")

    drawn: dict[tuple[str, int], tuple[Any, Any]] = {}
    lock = threading.Lock()

    def render_mlm(last: int, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        run = engine.current_run_for(viewer_of(engine, profile))
        if run is None or not recipe_of(run.config).adapts:
            return gr.skip(), gr.skip(), gr.skip(), last, gr.Timer(active=False)
        v, finished = run.version, run.status.finished
        if v == last:
            text = status_markdown(run.snapshot(events=False), now=time.time())
            return (gr.skip() if finished else text), gr.skip(), gr.skip(), last, gr.Timer(active=not finished)
        with lock:
            if (run.run_id, v) not in drawn:
                snap = run.snapshot()
                drawn.clear()
                events = decode_all(snap.events)  # once for both charts
                drawn[(run.run_id, v)] = (loss_figure(events, snap.run_id), perplexity_figure(events, snap.run_id))
            figs = drawn[(run.run_id, v)]
        return status_markdown(run.snapshot(events=False), now=time.time()), *figs, v, gr.Timer(active=not finished)

    outputs = [status, loss_plot, ppl_plot, version, timer]
    timer.tick(render_mlm, version, outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")

    def on_finished(profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        """A completed run's checkpoint is selected in the Model tab at once (no Refresh); "Started X" goes."""
        viewer = viewer_of(engine, profile)
        run = engine.current_run_for(viewer)
        if run is None or not recipe_of(run.config).adapts or not run.status.finished:
            return (gr.skip(),) * 4
        folder = run.result.get("model_dir")
        if run.status != RunStatus.COMPLETED or not folder:
            return "", gr.skip(), gr.skip(), gr.skip()
        return (
            f"{OK} **{escape_md(run.name)}** is selected in the **Model** tab (*Local folder*): the Train tab now "
            "fine-tunes the adapted checkpoint.",
            gr.update(value=MODEL_SOURCE_LABELS["local"]),
            gr.update(choices=engine.adapted_checkpoints(viewer), value=folder),
            folder,
        )

    version.change(on_finished, None, [message, model_ui.source, model_ui.adapted, model_ui.local],
                   api_visibility="private", show_progress="hidden")  # fmt: skip
    return AdaptUI(version=version)
