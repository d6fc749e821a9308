"""Sweeps tab: define a grid or random sweep over the Train tab's settings, queue it, and compare its runs."""

from __future__ import annotations

from typing import Any

import gradio as gr
import pandas as pd

from ftui.config import SCHEDULES, SWEEP_METRICS
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import code_md, escape_md
from ftui.icons import OK
from ftui.plots import sweep_figure
from ftui.sweeps import SWEEP_COLUMNS, SweepConfig, best_run, shown_ranks
from ftui.ui import estimate_line
from ftui.ui.common import as_float, as_int, error_md, token_of, viewer_of
from ftui.ui.train_tab import TrainUI

MODE_LABELS = {"grid": "Grid (every combination)", "random": "Random draws"}
POLL_SECONDS = 3.0
SWEEP_WIDTHS = {"rank": 64, "name": 220, "status": 110, "swept": 260, "val_score": 100, "test_ci": 150, "minutes": 90,
                "run_id": 200}  # fmt: skip
SWEEP_LEGEND = (
    "Ranked by the validation score. **1=**: within noise of the best run's validation accuracy (two-proportion test, "
    "p ≥ 0.05): those runs are tied; pick among them by another reason (speed, size). **test_ci**: the 95% Wilson "
    "interval of the test accuracy, with the number of test texts."
)


def sweep_config(values: dict[str, Any]) -> SweepConfig:
    """Widget values, keyed by name, to a SweepConfig (checked by the engine)."""
    fields = {k: str(values.get(k) or "").strip() for k in
              ("learning_rate", "freeze_depth", "checkpoint", "epochs", "batch_size", "max_length")}  # fmt: skip
    schedules = values.get("schedule") or []
    if schedules:
        fields["schedule"] = ", ".join(schedules)
    mode = next((k for k, v in MODE_LABELS.items() if values.get("mode") in (k, v)), "grid")
    return SweepConfig(
        values=tuple((k, v) for k, v in fields.items() if v),
        mode=mode,
        draws=as_int(values.get("draws"), 8),
        seed=as_int(values.get("seed"), 0),
        metric=str(values.get("metric") or "accuracy"),
        prune=bool(values.get("prune")),
        max_train_examples=as_int(values.get("max_train_examples"), 0),
        max_minutes=as_float(values.get("max_minutes"), 0.0),
    )


def sweep_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The sweep table as shown: the best completed run starred, runs within noise of it ranked as tied ("1=")."""
    best = best_run(rows)
    shown = [{**r, "rank": rank, "name": ("★ " if best is not None and r is best else "") + r["name"]}
             for r, rank in zip(rows, shown_ranks(rows), strict=True)]  # fmt: skip
    return pd.DataFrame(shown, columns=SWEEP_COLUMNS)


def build(engine: Engine, token_box: gr.Textbox, train_ui: TrainUI, predict_model: gr.Dropdown) -> None:
    """Lay out the Sweeps tab and wire it to the Train tab's settings, its queue and the Predict tab."""
    gr.Markdown(
        "A sweep trains one run per point, through the Train tab's queue, with everything else as set in the Data, "
        "Model and Train tabs. Type lists (`1e-5, 3e-5, 1e-4`); in random mode also ranges (`1e-5:1e-3`, drawn "
        "log-uniformly for the learning rate). Leave a field empty to keep the Train tab's value. "
        "A **model shoot-out** is a sweep over checkpoints only."
    )
    w: dict[str, Any] = {}
    # Essentials first (what varies, how many points, ranked by what), then Queue, then the results; the rest is
    # under "Advanced", and the random mode's draws and seed show only in random mode.
    with gr.Row():
        w["learning_rate"] = gr.Textbox(label="Learning rates", placeholder="1e-5, 3e-5, 1e-4", elem_id="sweep-lr")
        w["epochs"] = gr.Textbox(label="Epochs", placeholder="1, 2", elem_id="sweep-epochs")
        w["checkpoint"] = gr.Textbox(
            label="Checkpoints (packaged, Hub ids or local folders)", placeholder="packaged, distilbert/distilbert-base-uncased",
            elem_id="sweep-checkpoints", scale=2,
        )  # fmt: skip
    with gr.Row():
        w["mode"] = gr.Radio(list(MODE_LABELS.values()), value=MODE_LABELS["grid"], label="Points", elem_id="sweep-mode",
                             scale=2)  # fmt: skip
        w["draws"] = gr.Number(value=8, precision=0, label="Random draws", elem_id="sweep-draws", visible=False)
        w["seed"] = gr.Number(value=0, precision=0, label="Draw seed", visible=False)
        w["metric"] = gr.Dropdown(list(SWEEP_METRICS), value="accuracy", label="Rank by (validation)", elem_id="sweep-metric")
    with gr.Accordion("Advanced", open=False, elem_id="sweep-advanced"):
        with gr.Row():
            w["freeze_depth"] = gr.Textbox(label="Freeze depths", placeholder="0, 3", elem_id="sweep-depth")
            w["batch_size"] = gr.Textbox(label="Batch sizes", placeholder="16, 32", elem_id="sweep-batch")
            w["max_length"] = gr.Textbox(label="Max lengths", placeholder="64, 128", elem_id="sweep-maxlen")
            w["schedule"] = gr.CheckboxGroup(
                list(SCHEDULES), label="Schedules (none ticked: the Train tab's)", elem_id="sweep-schedule"
            )
        with gr.Row():
            w["max_train_examples"] = gr.Number(value=0, precision=0, label="Training examples per run (0 = all)",
                                                elem_id="sweep-cap")  # fmt: skip
            w["max_minutes"] = gr.Number(value=0, label="Minutes per run (0 = no budget)", elem_id="sweep-minutes")
            w["prune"] = gr.Checkbox(
                label="Prune: stop a run after its first evaluation when it scores below the median of completed runs",
                elem_id="sweep-prune",
            )

    def on_mode(shown: str) -> tuple[Any, Any]:
        random = shown in ("random", MODE_LABELS["random"])
        return gr.update(visible=random), gr.update(visible=random)

    w["mode"].change(on_mode, w["mode"], [w["draws"], w["seed"]], api_visibility="private")
    with gr.Row():
        go_btn = gr.Button("Queue sweep", variant="primary", elem_id="sweep-start", scale=4)
        estimate = estimate_line.button("sweep")
    estimate_text = estimate_line.line("sweep", estimate_line.SWEEP_PROMPT)
    message = gr.Markdown("", elem_id="sweep-message")

    gr.Markdown("### Sweep results")
    with gr.Row():
        ids = engine.sweep_ids()
        pick = gr.Dropdown(ids, value=None, label="Sweep", elem_id="sweep-pick", scale=3)
        refresh = gr.Button("Refresh", elem_id="sweep-refresh", scale=1)
        use_best = gr.Button("Use best in Predict", elem_id="sweep-use-best", scale=1)
    table = gr.Dataframe(
        pd.DataFrame(columns=SWEEP_COLUMNS),
        interactive=False,
        elem_id="sweep-table",
        wrap=True,
        column_widths=[f"{SWEEP_WIDTHS.get(c, 96)}px" for c in SWEEP_COLUMNS],  # wide enough for whole header words
    )
    gr.Markdown(SWEEP_LEGEND, elem_id="sweep-legend")
    plot = gr.Plot(label="Settings vs validation score", elem_id="sweep-plot")
    view_msg = gr.Markdown("", elem_id="sweep-view-message")
    timer = gr.Timer(POLL_SECONDS, active=False)

    def rows_of(sweep_id: str, metric: str, profile: gr.OAuthProfile | None) -> list[dict[str, Any]]:
        return engine.sweep_table(sweep_id, metric if metric in SWEEP_METRICS else "accuracy", viewer_of(engine, profile))

    def view(sweep_id: str | None, metric: str, profile: gr.OAuthProfile | None = None) -> tuple[Any, Any, Any]:
        if not sweep_id:
            return pd.DataFrame(columns=SWEEP_COLUMNS), None, gr.Timer(active=False)
        rows = rows_of(sweep_id, metric, profile)
        going = any(r["status"].startswith("queued") or r["status"] == "running" for r in rows)
        return sweep_frame(rows), sweep_figure(rows, metric), gr.Timer(active=going)

    def on_start(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        sweep_values = {name: values[widget] for name, widget in w.items()}
        viewer = viewer_of(engine, profile)
        try:
            items = engine.start_sweep(
                train_ui.config_of(values), sweep_config(sweep_values), token_of(values[token_box]), viewer
            )
        except FtuiError as exc:
            return error_md(exc), *[gr.skip()] * 5, *[gr.skip()] * len(train_ui.queue.outputs)
        sweep_id = items[0].sweep_id
        text = (f"Queued **{len(items)}** runs as sweep {code_md(sweep_id)}; they train one after another (Train tab: queue "
                "and live curves). Results appear below as they finish.")  # fmt: skip
        frame, fig, tick = view(sweep_id, sweep_values["metric"], profile)
        return (text, gr.Dropdown(choices=engine.sweep_ids(viewer), value=sweep_id), frame, fig, tick,
                gr.Timer(active=True), *train_ui.queue.render("", profile))  # fmt: skip

    inputs = {*train_ui.inputs, *w.values()}
    go_btn.click(on_start, inputs, [message, pick, table, plot, timer, train_ui.timer, *train_ui.queue.outputs],
                 api_visibility="private")  # fmt: skip
    estimate_line.wire_sweep(engine, estimate, estimate_text, train_ui.config_of, sweep_config, w, inputs, token_box)
    pick.change(view, [pick, w["metric"]], [table, plot, timer], api_visibility="private")
    w["metric"].change(view, [pick, w["metric"]], [table, plot, timer], api_visibility="private")
    timer.tick(view, [pick, w["metric"]], [table, plot, timer], api_visibility="private", show_progress="hidden")

    def on_refresh(sweep_id: str | None, metric: str, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        ids = engine.sweep_ids(viewer_of(engine, profile))
        keep = sweep_id if sweep_id in ids else (ids[0] if ids else None)
        return gr.Dropdown(choices=ids, value=keep), *view(keep, metric, profile)

    refresh.click(on_refresh, [pick, w["metric"]], [pick, table, plot, timer], api_visibility="private")

    def on_use_best(sweep_id: str | None, metric: str, profile: gr.OAuthProfile | None = None) -> tuple[str, Any]:
        if not sweep_id:
            return error_md(FtuiError("No sweep is picked.", "Pick one above.")), gr.skip()
        rows = rows_of(sweep_id, metric, profile)
        best = best_run(rows)
        if best is None:
            return error_md(FtuiError("No run of this sweep has completed yet.", "Wait for one to finish.")), gr.skip()
        key = f"run:{best['run_id']}"
        what = f"**{escape_md(best['name'])}** ({escape_md(best['swept'])}; val {metric} {best['val_score']:.3f})"
        tied = [r for r, rank in zip(rows, shown_ranks(rows), strict=True) if rank.endswith("=") and r is not best]
        if tied:  # the star is one of several runs that cannot be told apart
            what += (f". {len(tied)} other run(s) are within noise of it on validation (ranked 1=): "
                     + ", ".join(escape_md(r["name"]) for r in tied))  # fmt: skip
        return (f"{OK} The Predict tab now serves {what}.",
                gr.Dropdown(choices=engine.predict_choices(viewer_of(engine, profile)), value=key))  # fmt: skip

    use_best.click(on_use_best, [pick, w["metric"]], [view_msg, predict_model], api_visibility="private")
