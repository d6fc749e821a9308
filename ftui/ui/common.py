"""Helpers shared by the tab builders: source names, parsing widget values, formatting messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gradio as gr

from ftui.errors import FtuiError
from ftui.escaping import escape_md
from ftui.explain import Explanation
from ftui.icons import ERR, OK, WAIT
from ftui.ui import explain_view
from ftui.workspace import Viewer

DATA_SOURCE_LABELS = {"demo": "Bundled demo", "hub": "Hugging Face Hub", "upload": "Upload a file", "local": "Local path"}
MODEL_SOURCE_LABELS = {"packaged": "Packaged MiniLM (offline)", "hub": "Hugging Face Hub", "local": "Local folder"}
HEAD_LABELS = {"auto": "Model's own head", "mlp": "MLP head"}
AUTO = "auto"


def viewer_of(engine: Any, profile: gr.OAuthProfile | None) -> Viewer:
    """Who calls: the Hugging Face user signed in on this browser session (Gradio injects the profile), else nobody."""
    return engine.viewer(profile.username if profile is not None else None)


def key_for(labels: dict[str, str], shown: str | None, default: str) -> str:
    """The config value behind a radio label (raw API callers may send the value itself)."""
    for key, label in labels.items():
        if shown in (label, key):
            return key
    return default


def error_md(exc: BaseException) -> str:
    """A failure as the UI shows it: the problem, then what to do (both escaped: they quote names, labels, paths)."""
    if isinstance(exc, FtuiError):
        fix = f"\n\n**What to do:** {escape_md(exc.fix)}" if exc.fix else ""
        return f"{ERR} **{escape_md(exc.problem)}**{fix}"
    return f"{ERR} **Unexpected error:** {type(exc).__name__}: {escape_md(exc)}"


def queued_message(item: Any) -> str:
    """What Start says when the run went to the queue (item is a runner.QueuedRun)."""
    ahead = "next" if item.position == 1 else f"#{item.position} in the queue"
    kept = (
        " Its Hub token is kept in memory only: if the app restarts before its turn, the run fails and must be queued again."
        if getattr(item, "with_token", False)
        else ""
    )
    return f"{WAIT} Queued ({ahead}): it starts when the run before it ends. The queue panel below can move or cancel it.{kept}"


def ok_md(text: str) -> str:
    """A success line."""
    return f"{OK} {text}"


def as_int(value: Any, default: int = 0) -> Any:
    """Widget numbers arrive as floats (or None); whole ones become ints, others pass through for validation."""
    if value is None or value == "":
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def as_float(value: Any, default: float = 0.0) -> Any:
    """None from an emptied number box becomes the default; the rest is checked by validation."""
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


def optional(value: Any) -> str | None:
    """Empty, None and 'auto' mean: let the engine decide."""
    if value is None:
        return None
    text = str(value).strip()
    return None if not text or text == AUTO else text


def token_of(value: Any) -> str | None:
    """The session's Hub token, or None."""
    return str(value).strip() or None if value else None


def search_handler(search: Callable[[str, str | None], list[str]], what: str) -> Callable[[str, str], tuple[Any, str]]:
    """A Hub search event: fills the id dropdown with results, or says why there are none."""

    def on_search(query: str, token: str) -> tuple[Any, str]:
        try:
            found = search(query or "", token_of(token))
        except FtuiError as exc:
            return gr.update(), error_md(exc)
        if not found:
            return gr.update(), f"No Hub {what} match '{escape_md(query)}'. Type an id directly if you know it."
        return gr.update(choices=found, value=found[0]), ok_md(f"{len(found)} {what} found, most downloaded first.")

    return on_search


def explanation_view(label: str, elem_id: str, note_id: str) -> tuple[gr.HighlightedText, gr.Markdown]:
    """Coloured words (hidden until there is an explanation) and the summary under them."""
    words = gr.HighlightedText(label=label, show_legend=False, elem_id=elem_id, visible=False)
    return words, gr.Markdown(elem_id=note_id)


def show_explanation(ex: Explanation, before: str = "") -> tuple[Any, str]:
    """The values for explanation_view's pair: the words with scores, and the summary (after `before`)."""
    return gr.update(value=explain_view.spans(ex), visible=True), before + explain_view.summary(ex)


def predictions_loader(engine: Any, viewer: Viewer | None = None) -> Callable[[str], Any]:
    """run id -> its saved test predictions (a DataFrame), or None: a run without them (or not the viewer's to see)
    cannot be paired."""

    def load(run_id: str) -> Any:
        try:
            return engine.test_predictions(run_id, viewer)
        except FtuiError:
            return None

    return load
