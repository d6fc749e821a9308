"""The Train tab's recommendations: once the Data tab has measured the data, the settings it calls for (ftui.recommend)
are set in the Train tab's widgets with one line each saying why, and one checkbox turns them all off (and on again)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from ftui.config import RunConfig, TrainConfig
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import escape_md
from ftui.recommend import RECOMMENDED, Recommendation
from ftui.ui.common import as_int, token_of
from ftui.ui.data_tab import DataUI
from ftui.ui.model_tab import ModelUI

log = logging.getLogger(__name__)

USE_LABEL = "Use recommended settings"
NAMES = {"long_text": "Long texts", "schedule": "Schedule", "class_weights": "Class weights"}
VALUES = {"head_tail": "head + tail", "two-phase": "head first, then fine-tune", "balanced": "balanced"}


@dataclass
class RecommendPanel:
    """The checkbox and the lines (in a row hidden until there is something to recommend) and what is applied."""

    row: gr.Row
    use: gr.Checkbox
    lines: gr.Markdown
    state: gr.State  # {"recs": [[setting, value, reason]], "applied": {setting: [value before, value set]}}
    shown: dict[str, dict[str, str]] = field(default_factory=dict)  # setting -> {config value: what its widget shows}

    def widget_value(self, setting: str, value: Any) -> Any:
        """A config value as its widget holds it (the schedule radio shows labels)."""
        return self.shown.get(setting, {}).get(value, value)


def build(shown: dict[str, dict[str, str]]) -> RecommendPanel:
    """Lay out the (hidden) panel where it is called; `shown` maps a setting's values to its widget's labels."""
    with gr.Row(visible=False, elem_id="recommend-row", equal_height=False) as row:
        with gr.Column(scale=1, min_width=200):
            use = gr.Checkbox(True, label=USE_LABEL, elem_id="use-recommended", container=False)
        with gr.Column(scale=5):
            lines = gr.Markdown("", elem_id="recommended")
    return RecommendPanel(row, use, lines, gr.State({}), shown)


def lines_md(recs: list[list[Any]], applied: dict[str, Any], on: bool) -> str:
    """One short line per recommendation: what it sets and why; whether it is applied, off, or a choice kept."""
    if not recs:
        return ""
    head = (
        "**Recommended for this data** (untick to train on the defaults):"
        if on
        else "**Recommendations off:** the defaults stand (tick to apply):"
    )
    out = [head]
    for setting, value, reason in recs:
        what = f"{NAMES.get(setting, setting)}: **{escape_md(VALUES.get(value, value))}**"
        if on and setting not in applied:
            what += " (your own choice is kept)"
        out.append(f"- {what} — {escape_md(reason)}")
    return "\n".join(out)


def _undo(applied: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    """The widget values with every applied recommendation that still shows its value put back as it was."""
    return {s: (applied[s][0] if s in applied and v == applied[s][1] else v) for s, v in current.items()}


def _apply(
    recs: list[list[Any]], current: dict[str, Any], defaults: dict[str, Any], panel: RecommendPanel
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Set each recommendation whose widget still holds the default (a value the user picked is theirs)."""
    applied: dict[str, Any] = {}
    values = dict(current)
    for setting, value, _ in recs:
        if setting in values and values[setting] == defaults[setting]:
            applied[setting] = [values[setting], panel.widget_value(setting, value)]
            values[setting] = applied[setting][1]
    return values, applied


def wire(
    engine: Engine,
    panel: RecommendPanel,
    data_ui: DataUI,
    model_ui: ModelUI,
    widgets: dict[str, Any],
    token_box: gr.Textbox,
    after: list[Any],
) -> None:
    """Recommend after each event in `after` (data or checkpoint loaded) and when the max length changes; the checkbox
    undoes and redoes the applied ones."""
    settings = [s for s in RECOMMENDED if s in widgets]
    targets = [widgets[s] for s in settings]
    d = engine.default_train()
    defaults = {s: panel.widget_value(s, getattr(d, s)) for s in settings}
    n_data, n_model = len(data_ui.inputs), len(model_ui.inputs)

    def measured(*values: Any) -> tuple[Any, ...]:
        data_vals, model_vals = values[:n_data], values[n_data : n_data + n_model]
        max_length, on, state, token, *shown_now = values[n_data + n_model :]
        state = state or {}
        current = _undo(state.get("applied", {}), dict(zip(settings, shown_now, strict=True)))
        try:
            data, model = DataUI.to_config(*data_vals), ModelUI.to_config(*model_vals)
            train = TrainConfig(max_length=as_int(max_length, d.max_length))
            got: list[Recommendation] = engine.recommendations(RunConfig(data=data, model=model, train=train), token_of(token))
        except (FtuiError, TypeError, ValueError) as exc:  # the Data and Model tabs say what is wrong with them
            log.info("no recommendations: %s", exc)
            got = []
        recs = [[r.setting, r.value, r.reason] for r in got if r.setting in settings]
        values, applied = _apply(recs, current, defaults, panel) if on else (current, {})
        return (*[values[s] for s in settings], lines_md(recs, applied, on), gr.Row(visible=bool(recs)),
                {"recs": recs, "applied": applied})  # fmt: skip

    def toggled(on: bool, state: dict[str, Any], *shown_now: Any) -> tuple[Any, ...]:
        state = state or {}
        recs = state.get("recs", [])
        current = _undo(state.get("applied", {}), dict(zip(settings, shown_now, strict=True)))
        values, applied = _apply(recs, current, defaults, panel) if on else (current, {})
        return (*[values[s] for s in settings], lines_md(recs, applied, on), {"recs": recs, "applied": applied})

    inputs = [*data_ui.inputs, *model_ui.inputs, widgets["max_length"], panel.use, panel.state, token_box, *targets]
    outputs = [*targets, panel.lines, panel.row, panel.state]
    for event in after:
        event.then(measured, inputs, outputs, api_visibility="private", show_progress="hidden")
    widgets["max_length"].change(measured, inputs, outputs, api_visibility="private", show_progress="hidden")
    panel.use.input(toggled, [panel.use, panel.state, *targets], [*targets, panel.lines, panel.state],
                    api_visibility="private", show_progress="hidden")  # fmt: skip
