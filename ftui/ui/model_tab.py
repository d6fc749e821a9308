"""Model tab: pick a checkpoint, see its summary and card, choose freeze depth and head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftui.config import ModelConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import code_block_md, code_md, escape_md, escape_md_block
from ftui.model_card import ModelSummary
from ftui.ui.common import (
    HEAD_LABELS,
    MODEL_SOURCE_LABELS,
    as_float,
    as_int,
    error_md,
    key_for,
    ok_md,
    search_handler,
    token_of,
    viewer_of,
)


@dataclass
class ModelUI:
    """The Model tab's widgets; `inputs` feed `to_config` in this order."""

    inputs: list[gr.components.Component]
    autoload: tuple[Any, list[Any], list[Any]]  # (handler, inputs, outputs) of "Load checkpoint summary"
    loaded: list[Any]  # the events that load a checkpoint summary (the length histogram follows them)
    source: gr.Radio  # these three: the Adapt tab selects its finished checkpoint here
    adapted: gr.Dropdown
    local: gr.Textbox

    @staticmethod
    def to_config(
        source: str,
        hub_id: str | None,
        local: str | None,
        trust: bool,
        depth: Any,
        head: str,
        mlp_hidden: Any,
        mlp_dropout: Any,
        allow_bin: bool = False,
    ) -> ModelConfig:
        """Widget values to a ModelConfig (validation happens in the engine)."""
        src = key_for(MODEL_SOURCE_LABELS, source, "packaged")
        ckpt = {"hub": hub_id, "local": local}.get(src) or ""
        return ModelConfig(
            source=src,
            checkpoint=str(ckpt).strip(),
            freeze_depth=as_int(depth, 0),
            head=key_for(HEAD_LABELS, head, "auto"),
            mlp_hidden=as_int(mlp_hidden, 256),
            mlp_dropout=as_float(mlp_dropout, 0.1),
            trust_remote_code=bool(trust),
            allow_bin_weights=bool(allow_bin),
        )


def summary_md(s: ModelSummary) -> str:
    """Architecture and sizes as markdown."""
    return (
        f"**{escape_md(s.name)}** · {code_md(s.architecture)} ({escape_md(s.model_type)}) · {s.num_layers} layers · "
        f"hidden size {s.hidden_size} · "
        f"{s.total_params / 1e6:.1f} M parameters · "
        + (f"reads at most **{s.max_length:,} tokens** per input" if s.max_length else "no fixed input length limit")
    )


def trainable_md(s: ModelSummary, depth: int) -> str:
    """What the freeze depth leaves trainable."""
    if not s.freeze_supported:
        return (
            f"Freeze depth is not supported for {code_md(s.model_type)}: all {s.total_params / 1e6:.2f} M parameters train "
            "(keep depth at 0)."
        )
    n = s.trainable(depth)
    notes = []
    if depth and s.shared_frozen:
        notes.append(f"also frozen: {', '.join(code_md(m) for m in s.shared_frozen)} (every layer reads them, frozen ones too)")
    if depth and s.always_trains:
        notes.append(f"always trains: {', '.join(code_md(m) for m in s.always_trains)} (above the layers)")
    if depth and s.model_type == "albert":
        notes.append("ALBERT reuses one layer's weights at every depth: freeze depth 1 freezes all of them")
    what = (
        "everything trains"
        if depth == 0
        else "only the head trains (and what sits above the layers)"
        if depth >= s.num_layers
        else f"embeddings + bottom {depth} of {s.num_layers} layers frozen"
    )
    extra = "".join(f"; {n_}" for n_ in notes)
    return (
        f"Trainable: **{n / 1e6:.2f} M** of {s.total_params / 1e6:.2f} M parameters ({100 * n / s.total_params:.1f}%) — "
        f"{what}{extra}."
    )


def build(engine: Engine, token_box: gr.Textbox) -> ModelUI:
    """Lay out the Model tab and wire its events."""
    default = engine.default_model()
    source = gr.Radio(
        list(MODEL_SOURCE_LABELS.values()), value=MODEL_SOURCE_LABELS[default.source], label="Checkpoint", elem_id="model-source"
    )
    with gr.Group(visible=default.source == "hub") as hub_box:
        with gr.Row():
            query = gr.Textbox(
                label="Search Hub checkpoints (fill-mask and text-classification)",
                placeholder="e.g. distilbert, roberta, minilm",
                scale=4,
            )
            search_btn = gr.Button("Search", scale=1)
        hub_id = gr.Dropdown(
            elem_id="model-hub-id",
            choices=[default.checkpoint] if default.checkpoint else [],
            value=default.checkpoint or None,
            allow_custom_value=True,
            label="Checkpoint id (pick a result or type owner/name)",
        )
    with gr.Group(visible=default.source == "local") as local_box:
        with gr.Row():
            adapted = gr.Dropdown(
                choices=engine.adapted_checkpoints(),
                value=None,
                label="Adapted checkpoint (from the Adapt tab)",
                elem_id="adapted",
                scale=3,
            )
            adapted_refresh = gr.Button("Refresh", scale=1)
        local = gr.Textbox(label="Checkpoint folder (with config.json)", elem_id="model-local")
    adapted.change(lambda folder: folder or gr.skip(), adapted, local, api_visibility="private")

    def refresh_adapted(profile: gr.OAuthProfile | None = None) -> Any:
        return gr.update(choices=engine.adapted_checkpoints(viewer_of(engine, profile)))

    adapted_refresh.click(refresh_adapted, None, adapted, api_visibility="private")
    with gr.Row():
        trust = gr.Checkbox(False, label="Trust remote code: run model code shipped in the repo (off by default)")
        allow_bin = gr.Checkbox(False, label="Allow .bin weights: pickle files can run code when loaded (off: safetensors only)")
    with gr.Row():
        head = gr.Radio(list(HEAD_LABELS.values()), value=HEAD_LABELS["auto"], label="Classification head")
        mlp_hidden = gr.Number(value=256, precision=0, label="MLP hidden size")
        mlp_dropout = gr.Slider(0.0, 0.9, value=0.1, step=0.05, label="MLP dropout")
    load_btn = gr.Button("Load checkpoint summary", variant="primary", elem_id="load-model")
    status = gr.Markdown("Press **Load checkpoint summary** to see its size and card.", elem_id="model-status")
    depth = gr.Slider(
        0,
        6,
        value=0,
        step=1,
        label="Freeze depth (0 = train all; k = embeddings + bottom k layers frozen; N = only the head trains)",
        elem_id="freeze-depth",
    )
    trainable = gr.Markdown("", elem_id="trainable")
    with gr.Accordion("Model card", open=False):
        limits = gr.Markdown("")
        card = gr.Markdown("")
    inputs = [source, hub_id, local, trust, depth, head, mlp_hidden, mlp_dropout, allow_bin]

    def on_source(shown: str) -> tuple[Any, ...]:
        src = key_for(MODEL_SOURCE_LABELS, shown, "packaged")
        return gr.update(visible=src == "hub"), gr.update(visible=src == "local")

    source.change(on_source, source, [hub_box, local_box], api_visibility="private")

    on_search = search_handler(engine.search_models, "checkpoints")
    search_btn.click(on_search, [query, token_box], [hub_id, status], api_visibility="private")
    query.submit(on_search, [query, token_box], [hub_id, status], api_visibility="private")

    def on_load(*values: Any) -> tuple[Any, ...]:
        *model_values, token = values
        try:
            cfg = ModelUI.to_config(*model_values)
            s = engine.model_summary(cfg, token_of(token))
        except FtuiError as exc:
            return error_md(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        n = s.num_layers if s.freeze_supported else 0
        d = min(int(cfg.freeze_depth), n)
        lim = (
            f"**Limitations and bias (from the card):**\n\n{escape_md_block(s.card_limitations)}"
            if s.card_limitations
            else "The card has no limitations or bias section: the model inherits whatever biases its pre-training data has."
        )
        return (
            ok_md(summary_md(s)),
            gr.update(maximum=max(n, 1), value=d, interactive=s.freeze_supported),
            trainable_md(s, d),
            lim,
            code_block_md(s.card[:20000]) if s.card else "_No model card._",  # a card from anyone: shown, not rendered
        )

    load_inputs = [*inputs, token_box]
    load_outputs = [status, depth, trainable, limits, card]
    loaded = [load_btn.click(on_load, load_inputs, load_outputs, api_visibility="private")]

    def on_depth(*values: Any) -> str | Any:
        *model_values, token = values
        try:
            cfg = ModelUI.to_config(*model_values)
            return trainable_md(engine.model_summary(cfg, token_of(token)), int(cfg.freeze_depth))
        except (FtuiError, TypeError, ValueError):
            return gr.skip()

    depth.change(on_depth, [*inputs, token_box], trainable, api_visibility="private")
    head.change(on_depth, [*inputs, token_box], trainable, api_visibility="private")
    return ModelUI(
        inputs=inputs,
        autoload=(on_load, load_inputs, load_outputs),
        loaded=loaded,
        source=source,
        adapted=adapted,
        local=local,
    )
