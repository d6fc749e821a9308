"""Train tab: hyperparameters, Start/Stop, and live curves polled from the engine's current run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftui.config import PRECISIONS, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.plots import accuracy_figure, loss_figure, status_markdown
from ftui.ui.common import as_float, as_int, error_md, token_of
from ftui.ui.data_tab import DataUI
from ftui.ui.model_tab import ModelUI

POLL_SECONDS = 1.0
START_LABEL = "Start training"


@dataclass
class TrainUI:
    """Widgets other tabs and the page-load hook need."""

    timer: gr.Timer
    status: gr.Markdown
    loss_plot: gr.Plot
    acc_plot: gr.Plot
    version: gr.State
    start: gr.Button
    max_len: gr.Number
    render: Any  # (version) -> values for `outputs`
    outputs: list[Any]  # [status, loss_plot, acc_plot, version, timer, start]


def train_config(
    lr: Any,
    batch: Any,
    epochs: Any,
    wd: Any,
    warmup: Any,
    max_len: Any,
    seed: Any,
    precision: str,
    accum: Any,
    evals: Any,
    patience: Any,
    name: str | None,
) -> TrainConfig:
    """Widget values to a TrainConfig (validation happens in the engine)."""
    d = TrainConfig()
    return TrainConfig(
        learning_rate=as_float(lr, d.learning_rate),
        batch_size=as_int(batch, d.batch_size),
        epochs=as_float(epochs, d.epochs),
        weight_decay=as_float(wd, d.weight_decay),
        warmup_ratio=as_float(warmup, d.warmup_ratio),
        max_length=as_int(max_len, d.max_length),
        seed=as_int(seed, d.seed),
        precision=precision or "auto",
        grad_accum=as_int(accum, d.grad_accum),
        evals_per_epoch=as_int(evals, d.evals_per_epoch),
        early_stopping_patience=as_int(patience, 0),
        run_name=(name or "").strip(),
    )


def build(engine: Engine, token_box: gr.Textbox, data_ui: DataUI, model_ui: ModelUI) -> TrainUI:
    """Lay out the Train tab and wire Start, Stop and the polling timer."""
    d = engine.default_train()
    with gr.Row():
        lr = gr.Number(value=d.learning_rate, label="Learning rate", elem_id="lr")
        batch = gr.Number(value=d.batch_size, precision=0, label="Batch size", elem_id="batch-size")
        epochs = gr.Number(value=d.epochs, label="Epochs", elem_id="epochs")
        wd = gr.Number(value=d.weight_decay, label="Weight decay")
    with gr.Row():
        warmup = gr.Number(value=d.warmup_ratio, label="Warmup ratio")
        max_len = gr.Number(value=d.max_length, precision=0, label="Max sequence length (tokens)", elem_id="max-len")
        seed = gr.Number(value=d.seed, precision=0, label="Seed")
        precision = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision (auto: bf16/fp16 on GPU, fp32 on CPU)")
    with gr.Row():
        accum = gr.Number(value=d.grad_accum, precision=0, label="Gradient accumulation")
        evals = gr.Number(value=d.evals_per_epoch, precision=0, label="Evaluations per epoch")
        patience = gr.Number(value=0, precision=0, label="Early-stopping patience (evals; 0 = off)")
        name = gr.Textbox(label="Run name (optional)", elem_id="run-name")
    gr.Markdown(f"Training device: **{engine.device_label()}**", elem_id="device")
    with gr.Row():
        start = gr.Button(START_LABEL, variant="primary", elem_id="start")
        stop = gr.Button("Stop", variant="stop", elem_id="stop")
    message = gr.Markdown("", elem_id="train-message")
    status = gr.Markdown(status_markdown(None), elem_id="run-status")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
        acc_plot = gr.Plot(label="Accuracy", elem_id="acc-plot")
    timer = gr.Timer(POLL_SECONDS, active=False)
    version = gr.State(-1)
    train_inputs = [lr, batch, epochs, wd, warmup, max_len, seed, precision, accum, evals, patience, name]
    n_data, n_model = len(data_ui.inputs), len(model_ui.inputs)

    drawn: dict[tuple[str, int], tuple[Any, ...]] = {}  # the last version drawn, shared by every tab
    drawn_lock = threading.Lock()

    def start_button(training: bool) -> Any:
        # While a run trains, Start is off and says why: a second click read as if one's own start had failed.
        if training:
            return gr.Button(value="Training… (Stop ends it)", interactive=False)
        return gr.Button(value=START_LABEL, interactive=True)

    def render(last_version: int) -> tuple[Any, ...]:
        run = engine.current_run()
        if run is None:
            return gr.skip(), gr.skip(), gr.skip(), last_version, gr.Timer(active=False), start_button(False)
        version = run.version  # cheap: no copy of the events unless something changed
        finished = run.status.finished
        keep_polling = gr.Timer(active=not finished)
        if version == last_version:
            if finished:
                return gr.skip(), gr.skip(), gr.skip(), last_version, keep_polling, gr.skip()
            # Nothing new from the worker (a slow step on a CPU): still tick the elapsed time and the phase.
            status_now = status_markdown(run.snapshot(events=False), now=time.time())
            return status_now, gr.skip(), gr.skip(), last_version, keep_polling, start_button(True)
        with drawn_lock:
            key = next(iter(drawn), None)
            if key != (run.run_id, version):
                # Many tabs poll the same run: build its figures once per version, not once per tab.
                snap = run.snapshot()
                drawn.clear()
                drawn[(run.run_id, snap.version)] = (
                    loss_figure(snap.events, snap.run_id),
                    accuracy_figure(snap.events, snap.run_id),
                    snap.version,
                )
                key = (run.run_id, snap.version)
            figures = drawn[key]
        status_now = status_markdown(run.snapshot(events=False), now=time.time())
        return (status_now, *figures, keep_polling, start_button(not finished))

    outputs = [status, loss_plot, acc_plot, version, timer, start]
    # Ticks are cheap reads of the run; no limit so they never wait behind other events.
    timer.tick(render, version, outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")

    def on_start(*values: Any) -> tuple[Any, ...]:
        data_vals = values[:n_data]
        model_vals = values[n_data : n_data + n_model]
        train_vals = values[n_data + n_model : -1]
        token = token_of(values[-1])
        try:
            cfg = RunConfig(
                data=DataUI.to_config(*data_vals), model=ModelUI.to_config(*model_vals), train=train_config(*train_vals)
            )
            run = engine.start_run(cfg, token)
        except FtuiError as exc:
            return error_md(exc), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return (
            f"Started **{run.name}**.",
            status_markdown(run.snapshot(), now=time.time()),
            loss_figure([], run.run_id),
            accuracy_figure([], run.run_id),
            -1,
            gr.Timer(active=True),
            start_button(True),
        )

    start.click(
        on_start,
        [*data_ui.inputs, *model_ui.inputs, *train_inputs, token_box],
        [message, *outputs[:5], start],
        api_visibility="private",
    )

    def on_stop() -> str:
        run = engine.stop_run()
        return (
            f"Stopping **{run.name}** after the current step; the best checkpoint so far is kept."
            if run
            else "No run is in progress."
        )

    stop.click(on_stop, None, message, api_visibility="private")
    return TrainUI(
        timer=timer,
        status=status,
        loss_plot=loss_plot,
        acc_plot=acc_plot,
        version=version,
        start=start,
        max_len=max_len,
        render=render,
        outputs=outputs,
    )
