"""Train tab: hyperparameters, Start/Stop, and live curves polled from the engine's current run."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from typing import Any

import gradio as gr

from ftui.config import PRECISIONS, RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import escape_md
from ftui.events import decode_all
from ftui.experiments import baseline_verdict
from ftui.plots import accuracy_figure, add_baseline_line, loss_figure, status_markdown
from ftui.run_queue import QueuedRun
from ftui.significance import pairer
from ftui.tasks import Task
from ftui.ui import estimate_line, jobs_panel, queue_panel, recommend_panel
from ftui.ui.baseline_view import auto_baseline_box, queued_after, run_line, started_text
from ftui.ui.common import as_float, as_int, error_md, key_for, predictions_loader, queued_message, token_of, viewer_of
from ftui.ui.data_tab import DataUI
from ftui.ui.model_tab import ModelUI

POLL_SECONDS = 1.0
START_LABEL = "Start training"
QUEUE_LABEL = "Add to queue (a run is training)"
OTHERS_RUN = "others"  # the version shown while another user's run trains (its details are theirs)
OTHERS_TEXT = (
    "Another user's run is training on this Space (one at a time). Start queues yours; the queue takes turns between users."
)
BASELINES_LABEL = "Run baselines"  # which ones: the message after the press and the docs (one line at 1024 px)


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
    long_text: gr.Dropdown  # the length histogram says what this mode reads of long texts
    render: Any  # (version) -> values for `outputs`
    outputs: list[Any]  # [status, loss_plot, acc_plot, version, timer, start, baselines]
    config_of: Any  # ({widget: value}) -> RunConfig: the Data, Model and Train tabs' settings
    inputs: set[Any]  # the widgets config_of reads, plus the token box
    queue: queue_panel.QueuePanel
    multi_row: gr.Row  # the multi-label threshold controls, shown only for multi-label data
    widgets: dict[str, Any]  # TrainConfig field name -> its widget
    recommend: recommend_panel.RecommendPanel  # what the data calls for, with a checkbox that turns it off


def shape_visibility(task: str) -> Any:
    """The multi-label controls apply to multi-label data only: hidden for single-label and regression."""
    return gr.update(visible=task == Task.MULTI.value)


LONG_TEXT_LABELS = {
    "truncate": "cut at the max length",
    "head_tail": "head + tail (the start and the end)",
    "chunks": "chunks (overlapping windows, averaged)",
}
SCHEDULE_LABELS = {"one-phase": "One phase", "two-phase": "Head first, then fine-tune"}


def train_config(values: dict[str, Any]) -> TrainConfig:
    """Widget values, keyed by TrainConfig field name, to a TrainConfig (validation happens in the engine)."""
    d = TrainConfig()
    parsed: dict[str, Any] = {}
    for name, value in values.items():
        default = getattr(d, name)
        if name == "schedule":
            parsed[name] = key_for(SCHEDULE_LABELS, value, d.schedule)
        elif isinstance(default, bool):
            parsed[name] = bool(value)
        elif isinstance(default, int):
            parsed[name] = as_int(value, default)
        elif isinstance(default, float):
            parsed[name] = as_float(value, default)
        else:
            parsed[name] = (value or default).strip() if isinstance(value or default, str) else value
    return replace(d, **parsed)


def build(engine: Engine, token_box: gr.Textbox, data_ui: DataUI, model_ui: ModelUI) -> TrainUI:
    """Lay out the Train tab and wire Start, Run baselines, Stop and the polling timer."""
    d = engine.default_train()
    w: dict[str, Any] = {}  # TrainConfig field name -> its widget: values reach the config by name
    # Essentials first, then Start, then the live curves: at 1024x768 all three are on the first screen; everything
    # else waits in a collapsed "Advanced" section below the curves.
    with gr.Row(equal_height=True):
        w["learning_rate"] = gr.Number(value=d.learning_rate, label="Learning rate", elem_id="lr", min_width=120)
        w["epochs"] = gr.Number(value=d.epochs, label="Epochs", elem_id="epochs", min_width=90)
        w["batch_size"] = gr.Number(value=d.batch_size, precision=0, label="Batch size", elem_id="batch-size", min_width=90)
        max_len = w["max_length"] = gr.Number(
            value=d.max_length, precision=0, label="Max length (tokens)", elem_id="max-len", min_width=120
        )
        w["schedule"] = gr.Radio(
            list(SCHEDULE_LABELS.values()),
            value=SCHEDULE_LABELS[d.schedule],
            label="Schedule (head first: the new head trains alone on the frozen encoder, then fine-tuning)",
            elem_id="schedule",
            scale=4,
            min_width=300,
        )
    with gr.Row(visible=False) as head_row:  # the head phase's own settings, shown for the two-phase schedule only
        w["head_epochs"] = gr.Number(value=d.head_epochs, label="Head-phase epochs", elem_id="head-epochs")
        w["head_learning_rate"] = gr.Number(value=d.head_learning_rate, label="Head-phase learning rate", elem_id="head-lr")
    recommended = recommend_panel.build({"schedule": SCHEDULE_LABELS})  # filled once the Data tab measured the data
    w["recommend"] = recommended.use
    with gr.Row():
        where = jobs_panel.where_choice("train")  # this machine or Hugging Face Jobs
        start = gr.Button(START_LABEL, variant="primary", elem_id="start", scale=2)
        baselines = gr.Button(BASELINES_LABEL, elem_id="baselines", scale=2)
        stop = gr.Button("Stop", variant="stop", elem_id="stop", scale=1)
        estimate = estimate_line.button("train")
    place = jobs_panel.build(engine, token_box, "train", where)  # the hardware, time cap and cost, for Jobs
    estimate_text = estimate_line.line("train")
    message = gr.Markdown("", elem_id="train-message")
    with gr.Row():
        loss_plot = gr.Plot(label="Loss", elem_id="loss-plot")
        acc_plot = gr.Plot(label="Accuracy", elem_id="acc-plot")
    # Under the curves: a finished run's status is several lines (scores, checkpoint, verdict) that would push the
    # curves off a 1024x768 screen.
    status = gr.Markdown(status_markdown(None), elem_id="run-status")
    with gr.Accordion("Advanced", open=False, elem_id="train-advanced"):
        with gr.Row():
            w["weight_decay"] = gr.Number(value=d.weight_decay, label="Weight decay")
            w["warmup_ratio"] = gr.Number(value=d.warmup_ratio, label="Warmup ratio")
            w["seed"] = gr.Number(value=d.seed, precision=0, label="Seed")
            w["precision"] = gr.Dropdown(list(PRECISIONS), value="auto", label="Precision (auto: bf16/fp16 on GPU, fp32 on CPU)")
        with gr.Row():
            w["grad_accum"] = gr.Number(value=d.grad_accum, precision=0, label="Gradient accumulation")
            w["evals_per_epoch"] = gr.Number(value=d.evals_per_epoch, precision=0, label="Evaluations per epoch")
            w["early_stopping_patience"] = gr.Number(value=0, precision=0, label="Early-stopping patience (evals; 0 = off)")
            w["max_minutes"] = gr.Number(value=d.max_minutes, label="Time limit (minutes; 0 = none)", elem_id="max-minutes")
            w["run_name"] = gr.Textbox(label="Run name (optional)", elem_id="run-name")
        with gr.Row():
            w["class_weights"] = gr.Dropdown(
                ["none", "balanced"],
                value=d.class_weights,
                allow_custom_value=True,  # custom weights are typed: "1, 3" (checked in the engine)
                label="Class weights in the loss: none, balanced (for imbalanced data: rarer classes weigh more), or "
                "one weight per class such as 1, 3",
                elem_id="class-weights",
                scale=3,
            )
            w["long_text"] = gr.Dropdown(
                [(label, key) for key, label in LONG_TEXT_LABELS.items()],
                value=d.long_text,
                label="Long texts (longer than the max length)",
                elem_id="long-text",
                scale=2,
            )
            w["auto_baseline"] = auto_baseline_box(d.auto_baseline)
        # Multi-label only: hidden until the Data tab loads multi-label data (shape_visibility drives it).
        with gr.Row(visible=False, elem_id="multi-label-row") as multi_row:
            w["threshold"] = gr.Number(
                value=d.threshold, label="Multi-label: decision threshold", elem_id="threshold", minimum=0.01, maximum=1.0
            )
            w["tune_threshold"] = gr.Checkbox(
                value=d.tune_threshold, label="Multi-label: tune the threshold on validation after training",
                elem_id="tune-threshold",
            )  # fmt: skip
        offered = engine.max_processes()
        with gr.Row(visible=offered > 1):
            # One process per GPU (DDP under torchrun); shown only where there is more than one to use.
            w["processes"] = gr.Slider(
                1, max(offered, 2), value=1, step=1, elem_id="processes",
                label=f"{'GPUs' if engine.device == 'cuda' else 'Processes'}: 1 trains in the app; more launch torchrun "
                "(data-parallel, same global batch)",
            )  # fmt: skip
        gr.Markdown(f"Training device: **{engine.device_label()}**", elem_id="device")

    def on_schedule(shown: str) -> Any:
        return gr.update(visible=key_for(SCHEDULE_LABELS, shown, "one-phase") == "two-phase")

    w["schedule"].change(on_schedule, w["schedule"], head_row, api_visibility="private")
    queue = queue_panel.build(engine)
    timer = gr.Timer(POLL_SECONDS, active=False)
    version = gr.State("")

    drawn: dict[tuple[str, int, str], tuple[Any, ...]] = {}  # the last version drawn, shared by every tab
    drawn_lock = threading.Lock()

    def buttons(training: bool) -> tuple[Any, Any]:
        """Start and Run baselines: while a run trains they queue the next one, and Start says so."""
        return gr.Button(value=QUEUE_LABEL if training else START_LABEL, interactive=True), gr.Button(interactive=True)

    def render(last_version: str, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        viewer = viewer_of(engine, profile)
        run = engine.current_run_for(viewer)
        if run is None:
            waiting = engine.waiting_here()
            theirs = engine.current_run()
            if theirs is not None and not theirs.status.finished:  # another user's run: the slot is busy, no details
                text = gr.skip() if last_version == OTHERS_RUN else OTHERS_TEXT
                return text, gr.skip(), gr.skip(), OTHERS_RUN, gr.Timer(active=True), *buttons(True)
            return gr.skip(), gr.skip(), gr.skip(), last_version, gr.Timer(active=bool(waiting)), *buttons(False)
        # One read for the version, the status and its text: read apart, a run ending in between was drawn as
        # "completed" under a not-finished version, and the verdict against the baselines never came.
        now = run.snapshot(events=False)  # cheap: no copy of the events
        version, finished = f"{run.run_id}#{now.version}", now.status.finished
        # A queued run starts when this one ends: keep watching for it. Read after the status, and the slot read again
        # last: a run that ended while the next one left the queue is never taken for the end of the line.
        waiting = engine.waiting_here()
        keep_polling = gr.Timer(active=not finished or bool(waiting) or engine.current_run_for(viewer) is not run)
        if version == last_version:
            if finished:
                return gr.skip(), gr.skip(), gr.skip(), last_version, keep_polling, gr.skip(), gr.skip()
            # Nothing new from the worker (a slow step on a CPU): still tick the elapsed time and the phase.
            return status_markdown(now, now=time.time()), gr.skip(), gr.skip(), last_version, keep_polling, *buttons(True)
        with drawn_lock:
            key = (run.run_id, now.version, viewer.user)  # the baseline line is the best one this viewer can see
            if key not in drawn:
                # Many tabs poll the same run: build its figures once per version, not once per tab.
                snap = run.snapshot()
                drawn.clear()
                events = decode_all(snap.events)  # once for both charts
                line = run_line(run, snap, engine.run_headers(viewer))  # the best baseline's dashed line, if any
                accuracy = add_baseline_line(accuracy_figure(events, snap.run_id), line)
                drawn[key] = (loss_figure(events, snap.run_id), accuracy, version)
            figures = drawn[key]
        status_now = status_markdown(now, now=time.time())
        if finished:
            paired = pairer(predictions_loader(engine, viewer), accuracy_only=True)  # within noise of the baseline says so
            verdict = baseline_verdict(run.header(), engine.run_headers(viewer), paired=paired)
            warned = {w.kind for w in run.snapshot(events=False).progress.warnings}
            status_now += f"\n\n{verdict}" if verdict and "below_baseline" not in warned else ""  # warned above
        return (status_now, *figures, keep_polling, *buttons(not finished))

    render = place.render(render)  # the viewer's Jobs run, while they follow one
    outputs = [status, loss_plot, acc_plot, version, timer, start, baselines]
    # Ticks are cheap reads of the run; no limit so they never wait behind other events.
    timer.tick(render, version, outputs, api_visibility="private", concurrency_limit=None, show_progress="hidden")
    timer.tick(queue.render, queue.signature, queue.outputs, api_visibility="private", concurrency_limit=None,
               show_progress="hidden")  # fmt: skip

    def config_of(values: dict[Any, Any]) -> RunConfig:
        return RunConfig(
            data=DataUI.to_config(*[values[c] for c in data_ui.inputs]),
            model=ModelUI.to_config(*[values[c] for c in model_ui.inputs]),
            train=train_config({name: values[widget] for name, widget in w.items()}),
        )

    def started(got: Any, message_text: str, profile: gr.OAuthProfile | None) -> tuple[Any, ...]:
        queued = queue.render("", profile)
        if isinstance(got, QueuedRun):  # the training run's charts stay; the queue shows the new item
            return message_text, *[gr.skip()] * 4, gr.Timer(active=True), *buttons(True), *queued
        return (
            message_text,
            status_markdown(got.snapshot(), now=time.time()),
            loss_figure([], got.run_id),
            accuracy_figure([], got.run_id),
            "",
            gr.Timer(active=True),
            *buttons(True),
            *queued,
        )

    def on_start(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        try:
            got = engine.start_run(config_of(values), token_of(values[token_box]), viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc), *[gr.skip()] * 11
        text = queued_message(got) if isinstance(got, QueuedRun) else started_text(got, f"Started **{escape_md(got.name)}**.")
        return started(got, text, profile)

    def on_baselines(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        try:
            first, *rest = engine.start_baselines(config_of(values), token_of(values[token_box]), viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc), *[gr.skip()] * 11
        what = queued_message(first) if isinstance(first, QueuedRun) else f"Started **{escape_md(first.name)}**"
        return started(first, f"{what}; {queued_after(rest)}. All appear in the Runs tab.", profile)

    # Inputs as a set: the handlers receive {widget: value} and read each value by its widget, never by position.
    inputs = {*data_ui.inputs, *model_ui.inputs, *w.values(), token_box, *place.inputs}
    on_start = place.start(on_start, config_of, 1 + len(outputs) + len(queue.outputs), timer_at=5)
    start.click(on_start, inputs, [message, *outputs, *queue.outputs], api_visibility="private")
    baselines.click(on_baselines, inputs, [message, *outputs, *queue.outputs], api_visibility="private")

    def on_stop(profile: gr.OAuthProfile | None = None) -> str:
        try:
            run = engine.stop_run(viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc)
        if run is None:
            return "No run is in progress."
        then = " The next queued run starts after it." if engine.waiting_here() else ""
        return f"Stopping **{escape_md(run.name)}** after the current step; the best checkpoint so far is kept.{then}"

    stop.click(place.stop(on_stop), token_box, message, api_visibility="private")
    estimate_line.wire_run(engine, estimate, estimate_text, config_of, inputs, token_box,
                           [*w.values(), *model_ui.inputs], [*data_ui.loaded, *model_ui.loaded])  # fmt: skip

    def clear_when_finished() -> Any:
        """ "Started X" and "Stopping X…" belong to a run in progress: gone once the status says how it ended."""
        run = engine.current_run()
        return "" if run is not None and run.status.finished else gr.skip()

    version.change(clear_when_finished, None, message, api_visibility="private", show_progress="hidden")
    return TrainUI(
        timer=timer,
        status=status,
        loss_plot=loss_plot,
        acc_plot=acc_plot,
        version=version,
        start=start,
        max_len=max_len,
        long_text=w["long_text"],
        render=render,
        outputs=outputs,
        config_of=config_of,
        inputs=inputs,
        queue=queue,
        multi_row=multi_row,
        widgets=w,
        recommend=recommended,
    )
