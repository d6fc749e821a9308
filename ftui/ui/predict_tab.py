"""Predict tab: type a review, pick a finished run or its base checkpoint, see label probabilities."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftui.engine import Engine
from ftui.errors import FtuiError

EXAMPLES = [
    "The battery died after two days and support never answered.",
    "A warm, funny film with a terrific cast. I loved it.",
    "The room was clean but the staff were rude at check-in.",
    "Best pasta I have had in years, we will be back!",
]


def build(engine: Engine) -> tuple[gr.Dropdown, Any]:
    """Lay out the Predict tab; returns the model picker and a function that refreshes it."""
    choices = engine.predict_choices()
    with gr.Row():
        model = gr.Dropdown(
            choices=choices,
            value=choices[0][1] if choices else None,
            scale=4,
            elem_id="predict-model",
            allow_custom_value=True,  # runs appear after the page is built; the engine validates the key
            label="Model (a finished run, or its base checkpoint before fine-tuning)",
        )
        refresh = gr.Button("Refresh list", scale=1)
    text = gr.Textbox(lines=3, label="Review text", placeholder="Type a review…", elem_id="predict-text")
    go = gr.Button("Predict", variant="primary", elem_id="predict-btn")
    out = gr.Label(label="Predicted label and class probabilities", num_top_classes=10, elem_id="predict-label")
    gr.Examples(EXAMPLES, inputs=text)

    def predict(review: str, model_key: str | None) -> dict[str, float]:
        """Class probabilities for a review from the chosen model (default: the newest finished run)."""
        try:
            return engine.predict(review, model_key or None)
        except FtuiError as exc:
            raise gr.Error(str(exc)) from exc

    go.click(predict, [text, model], out, api_name="predict")
    text.submit(predict, [text, model], out, api_visibility="private")

    def refresh_choices(current: str | None = None) -> Any:
        found = engine.predict_choices()
        keys = [k for _, k in found]
        return gr.update(choices=found, value=current if current in keys else (keys[0] if keys else None))

    refresh.click(refresh_choices, model, model, api_visibility="private")
    return model, refresh_choices
