"""How long it will take, before Start: the Train tab's line under Start and the Sweeps tab's under Queue sweep, timed
on a click (a few steps) and redrawn from that timing as the Train tab's settings change."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ftui.config import RunConfig
from ftui.engine import Engine
from ftui.engine_estimate import SweepTimes, TimeEstimate
from ftui.errors import FtuiError
from ftui.escaping import escape_md
from ftui.icons import WARN
from ftui.sweeps import SweepConfig
from ftui.ui.common import token_of, viewer_of

BUTTON = "Estimate time"
PROMPT = f"How long will it take? **{BUTTON}** times a few training steps here (seconds) and says."
SWEEP_PROMPT = f"**{BUTTON}** times a few steps for each checkpoint, max length and batch size of the sweep and says."


def button(prefix: str) -> gr.Button:
    """The button, placed by the tab beside its Start (or Queue) button."""
    return gr.Button(BUTTON, elem_id=f"{prefix}-estimate-button", scale=0, min_width=140)


def line(prefix: str, prompt: str = PROMPT) -> gr.Markdown:
    """The line, placed by the tab under its Start (or Queue) button."""
    return gr.Markdown(prompt, elem_id=f"{prefix}-estimate")


def run_text(got: TimeEstimate | None) -> str:
    """The Train tab's line: the estimate and what the time limit will do (engine words: numbers and fixed text)."""
    if got is None:
        return PROMPT
    return "\n\n".join([got.line, *(f"{WARN} {w}" for w in got.warnings)])


def sweep_text(got: SweepTimes) -> str:
    """The Sweeps tab's line: per run and in all."""
    if not got.runs:
        return SWEEP_PROMPT
    return "\n\n".join([got.line, *(f"{WARN} {w}" for w in got.warnings)])


def refused(exc: FtuiError) -> str:
    """No estimate, and why (the problem quotes settings the user typed: escaped)."""
    return f"{WARN} No estimate: {escape_md(exc.problem)} {escape_md(exc.fix)}".rstrip()


def wire_run(
    engine: Engine,
    go: gr.Button,
    text: gr.Markdown,
    config_of: Callable[[dict[Any, Any]], RunConfig],
    inputs: set[Any],
    token_box: gr.Textbox,
    changes: list[Any],
    loaded: list[Any],
) -> None:
    """The button times steps now; a change of any of `changes` (the settings' widgets) or the end of any `loaded`
    event (data or checkpoint loaded) redraws the line from a timing kept for that config, never timing anything."""

    def estimate(values: dict[Any, Any], measure: bool, profile: gr.OAuthProfile | None) -> str:
        try:
            got = engine.estimate_run(config_of(values), token_of(values[token_box]), viewer_of(engine, profile), measure)
        except FtuiError as exc:
            return refused(exc)
        except (TypeError, ValueError) as exc:  # a widget value that is not a setting yet (typing): no estimate
            return refused(FtuiError(f"the settings are not complete ({type(exc).__name__}).", ""))
        return run_text(got)

    def on_click(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> str:
        return estimate(values, True, profile)

    def on_change(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> str:
        return estimate(values, False, profile)

    go.click(on_click, inputs, text, api_visibility="private")
    quiet = {"api_visibility": "private", "show_progress": "hidden"}
    gr.on([c.change for c in changes], on_change, inputs, text, trigger_mode="always_last", **quiet)  # type: ignore[arg-type]
    for event in loaded:
        event.then(on_change, inputs, text, **quiet)  # type: ignore[arg-type]


def wire_sweep(
    engine: Engine,
    go: gr.Button,
    text: gr.Markdown,
    config_of: Callable[[dict[Any, Any]], RunConfig],
    sweep_of: Callable[[dict[str, Any]], SweepConfig],
    fields: dict[str, Any],
    inputs: set[Any],
    token_box: gr.Textbox,
) -> None:
    """The button estimates every point of the sweep (the Train tab's config with the sweep's fields, by name),
    timing the checkpoints, max lengths and batch sizes not timed yet."""

    def on_click(values: dict[Any, Any], profile: gr.OAuthProfile | None = None) -> str:
        try:
            base, sweep = config_of(values), sweep_of({name: values[widget] for name, widget in fields.items()})
            got = engine.estimate_sweep(base, sweep, token_of(values[token_box]), viewer_of(engine, profile), measure=True)
        except FtuiError as exc:
            return refused(exc)
        return sweep_text(got)

    go.click(on_click, inputs, text, api_visibility="private")
