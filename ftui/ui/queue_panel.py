"""The Train tab's queue panel: runs waiting for the training slot, with cancel, move up/down and clear."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.experiments import queue_frame
from ftui.ui.common import error_md, viewer_of


@dataclass
class QueuePanel:
    """Widgets and the render function the Train tab's timer and other tabs (sweeps) refresh."""

    table: gr.Dataframe
    pick: gr.Dropdown
    summary: gr.Markdown
    signature: gr.State
    render: Any  # (signature) -> values for `outputs`
    outputs: list[Any]  # [table, pick, summary, signature]


def _signature(items: list[Any]) -> str:
    return "|".join(f"{q.item_id}:{q.position}:{q.here}" for q in items)


def _choices(items: list[Any]) -> list[tuple[str, str]]:
    return [(f"#{q.position} {q.config.train.run_name or q.config.model.checkpoint or 'packaged'}", q.item_id)
            for q in items if q.here]  # fmt: skip


def summary_text(items: list[Any]) -> str:
    """One line over the table: how many wait, and that they start on their own."""
    if not items:
        return "**Queue:** empty. Press Start while a run trains to queue the next one."
    return (f"**Queue:** {len(items)} run(s) waiting; each starts when the one before it ends (completed, stopped or "
            "failed).")  # fmt: skip


def build(engine: Engine) -> QueuePanel:
    """Lay out the panel and wire its buttons."""
    items = engine.queued()
    with gr.Accordion("Queue", open=True, elem_id="queue-panel"):
        summary = gr.Markdown(summary_text(items), elem_id="queue-summary")
        table = gr.Dataframe(queue_frame(items), interactive=False, elem_id="queue-table", wrap=True)
        with gr.Row():
            # Custom values: API callers send an item id the page's choices have not caught up with (the engine checks it).
            pick = gr.Dropdown(
                _choices(items), value=None, label="Queued run", elem_id="queue-pick", scale=3, allow_custom_value=True
            )
            up = gr.Button("Move up", elem_id="queue-up", scale=1)
            down = gr.Button("Move down", elem_id="queue-down", scale=1)
            cancel = gr.Button("Cancel", elem_id="queue-cancel", scale=1)
            clear = gr.Button("Clear queue", variant="stop", elem_id="queue-clear", scale=1)
        message = gr.Markdown("", elem_id="queue-message")
    signature = gr.State(_signature(items))

    def render_queue(last: str, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        now = engine.queued(viewer_of(engine, profile))  # with sign-in: the viewer's own runs only
        sig = _signature(now)
        if sig == last:
            return gr.skip(), gr.skip(), gr.skip(), last
        return queue_frame(now), gr.Dropdown(choices=_choices(now), value=None), summary_text(now), sig

    outputs = [table, pick, summary, signature]

    def act(what: str, item_id: str | None, profile: gr.OAuthProfile | None) -> tuple[Any, ...]:
        viewer = viewer_of(engine, profile)
        try:
            if what == "clear":
                n = engine.clear_queue(viewer)
                text = f"Took {n} run(s) off the queue; the training run goes on."
            elif not item_id:
                raise FtuiError("No queued run is picked.", "Pick one in the list above the buttons.")
            elif what == "cancel":
                item = engine.cancel_queued(item_id, viewer)
                text = f"Cancelled queued run #{item.position}."
            else:
                moved = engine.move_queued(item_id, -1 if what == "up" else 1, viewer)
                text = "Moved." if moved else f"Already {'first' if what == 'up' else 'last'}."
        except FtuiError as exc:
            text = error_md(exc)
        now = engine.queued(viewer)
        keep = item_id if any(q.item_id == item_id and q.here for q in now) else None
        return text, queue_frame(now), gr.Dropdown(choices=_choices(now), value=keep), summary_text(now), _signature(now)

    outs = [message, *outputs]

    def move_up(item_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        return act("up", item_id, profile)

    def move_down(item_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        return act("down", item_id, profile)

    def cancel_one(item_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        return act("cancel", item_id, profile)

    def clear_all(profile: gr.OAuthProfile | None = None) -> tuple[Any, ...]:
        return act("clear", None, profile)

    up.click(move_up, pick, outs, api_name="queue_up")
    down.click(move_down, pick, outs, api_name="queue_down")
    cancel.click(cancel_one, pick, outs, api_name="queue_cancel")
    clear.click(clear_all, None, outs, api_name="queue_clear")
    return QueuePanel(table=table, pick=pick, summary=summary, signature=signature, render=render_queue, outputs=outputs)
