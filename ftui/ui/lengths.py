"""The Data tab's length histogram, in the chosen checkpoint's tokens with the Train tab's max length marked."""

from __future__ import annotations

from typing import Any

import gradio as gr

from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.plots import length_histogram
from ftui.ui.common import as_int, token_of
from ftui.ui.data_tab import DataUI
from ftui.ui.model_tab import ModelUI


def wire(
    engine: Engine,
    data_ui: DataUI,
    model_ui: ModelUI,
    max_len: gr.Number,
    token_box: gr.Textbox,
    after: list[Any],
    long_text: gr.Dropdown,
) -> None:
    """Redraw the histogram after each event in `after` (data or checkpoint loaded) and when the max length or the
    long-text mode changes."""
    n_data, n_model = len(data_ui.inputs), len(model_ui.inputs)

    def redraw(*values: Any) -> Any:
        data_vals, model_vals = values[:n_data], values[n_data : n_data + n_model]
        max_length, mode, token = values[n_data + n_model], values[n_data + n_model + 1], values[-1]
        try:
            data, model = DataUI.to_config(*data_vals), ModelUI.to_config(*model_vals)
            lengths, unit = engine.text_lengths(data, model, token_of(token))
        except (FtuiError, TypeError, ValueError):
            return gr.skip()  # the Data tab's own status says what is wrong with the data
        limit = as_int(max_length, 0)
        return length_histogram(lengths, unit, limit if isinstance(limit, int) and limit > 0 else None, mode or "truncate")

    inputs = [*data_ui.inputs, *model_ui.inputs, max_len, long_text, token_box]
    for event in after:
        event.then(redraw, inputs, data_ui.len_plot, api_visibility="private", show_progress="hidden")
    for control in (max_len, long_text):
        control.change(redraw, inputs, data_ui.len_plot, api_visibility="private", show_progress="hidden")
