"""Predict tab: type a review (or upload many), pick a finished run or its base checkpoint, see label probabilities."""

from __future__ import annotations

import logging
from typing import Any

import gradio as gr

from ftui.data_report import PREVIEW_CHARS
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import escape_html
from ftui.explain import METHODS
from ftui.predict import batch_summary, describe, predictions_frame
from ftui.serving import RUNTIMES
from ftui.tasks import Task
from ftui.ui.common import error_md, explanation_view, ok_md, show_explanation, viewer_of
from ftui.ui.zerogpu import batch_seconds, explain_seconds, gpu, predict_seconds
from ftui.workspace import Viewer

log = logging.getLogger(__name__)
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
        runtime = gr.Dropdown(
            choices=[(label, key) for key, label in RUNTIMES.items()],
            value="pytorch",
            scale=2,
            elem_id="predict-runtime",
            label="Runtime (ONNX: export in Runs)",
        )
        refresh = gr.Button("Refresh list", scale=1)
    # The answer sits beside the input: at 1024x768 it appears on the first screen, where the click was.
    with gr.Row():
        with gr.Column(scale=3):
            text = gr.Textbox(lines=3, label="Review text", placeholder="Type a review…", elem_id="predict-text")
            with gr.Row():
                go = gr.Button("Predict", variant="primary", elem_id="predict-btn")
                why = gr.Button("Explain: which words?", elem_id="explain-btn")
            method = gr.Radio(
                choices=[(METHODS["ig"], "ig"), (f"fast ({METHODS['fast']})", "fast")],
                value="ig",
                label="Explanation",
                elem_id="explain-method",
            )
        with gr.Column(scale=2):
            out = gr.Label(label="Predicted label and class probabilities", num_top_classes=10, elem_id="predict-label")
            shape_note = gr.Markdown(elem_id="predict-shape")  # multi-label: labels over the threshold; regression: value
    explained, explain_note = explanation_view(
        "Each word's push towards the predicted class (red: for, purple: against)", "explain-view", "explain-note"
    )
    first = engine.predict_examples(choices[0][1] if choices else None, EXAMPLES)
    examples = gr.Dataset(
        components=[text], samples=[[e] for e in first], label="Examples (from the model's own test set)", elem_id="examples"
    )
    examples.click(lambda sample: sample[0], examples, text, api_visibility="private")

    def on_model(model_key: str | None, profile: gr.OAuthProfile | None = None) -> Any:
        return gr.Dataset(samples=[[e] for e in engine.predict_examples(model_key, EXAMPLES, viewer_of(engine, profile))])

    model.change(on_model, model, examples, api_visibility="private", show_progress="hidden")

    def predict(
        review: str, model_key: str | None = None, runtime: str = "pytorch", profile: gr.OAuthProfile | None = None
    ) -> dict[str, float] | float:
        """Class probabilities for a review from the chosen model (default: the newest completed run) and runtime
        (pytorch, pytorch-int8, onnx, onnx-int8); every label's probability for a multi-label model; the predicted
        number for a regression model."""
        viewer = viewer_of(engine, profile)
        try:
            values = engine.predict(review, model_key or None, runtime or "pytorch", viewer)
            info = engine.task_info(model_key or None, viewer)
        except FtuiError as exc:
            # A user's mistake (empty text, unknown model) is one log line, not Gradio's printed traceback.
            log.info("predict refused: %s", exc.problem)
            raise gr.Error(escape_html(exc), print_exception=False) from exc  # a toast renders its message as HTML
        return round(next(iter(values.values())), 4) if info.task is Task.REGRESSION else values

    def note(shown: Any, model_key: str | None = None, profile: gr.OAuthProfile | None = None) -> str:
        try:
            info = engine.task_info(model_key or None, viewer_of(engine, profile))
        except FtuiError:
            return ""
        if info.task is Task.REGRESSION and isinstance(shown, (str, int, float)):
            return describe(info, {"value": float(shown)})
        return describe(info, shown) if isinstance(shown, dict) else ""

    def clear_answer() -> tuple[Any, ...]:
        """A new request starts: the previous answer, its note and its explanation belong to another text."""
        return None, "", gr.update(value=None, visible=False), ""

    answer_parts = [out, shape_note, explained, explain_note]
    # Cleared first, outside the queue, so nothing of the previous request stays under the new one (also after an
    # error, which leaves the outputs of the failed event as they were).
    go.click(clear_answer, None, answer_parts, queue=False, api_visibility="private", show_progress="hidden")
    text.submit(clear_answer, None, answer_parts, queue=False, api_visibility="private", show_progress="hidden")
    on_gpu = gpu(predict, predict_seconds)  # ZeroGPU: the GPU is lent for this call only
    go.click(on_gpu, [text, model, runtime], out, api_name="predict").success(
        note, [out, model], shape_note, api_visibility="private", show_progress="hidden"
    )
    text.submit(on_gpu, [text, model, runtime], out, api_visibility="private").success(
        note, [out, model], shape_note, api_visibility="private", show_progress="hidden"
    )

    def explain(
        review: str, model_key: str | None = None, how: str = "ig", profile: gr.OAuthProfile | None = None
    ) -> tuple[Any, str]:
        """Each word's contribution to the predicted class (integrated gradients, or "fast" gradient x input)."""
        try:
            ex = engine.explain(review, model_key or None, how or "ig", viewer_of(engine, profile))
        except FtuiError as exc:
            return gr.update(value=None, visible=False), error_md(exc)
        return show_explanation(ex)

    def clear_explanation() -> tuple[Any, str]:
        return gr.update(value=None, visible=False), ""

    why.click(clear_explanation, None, [explained, explain_note], queue=False, api_visibility="private",
              show_progress="hidden")  # fmt: skip
    why.click(gpu(explain, explain_seconds), [text, model, method], [explained, explain_note], api_name="explain")

    def refresh_choices(current: str | None = None, viewer: Viewer | None = None) -> Any:
        """The list as the viewer sees it now; keeps the current choice while it is listed, else the default."""
        found = engine.predict_choices(viewer)
        keys = [k for _, k in found]
        return gr.update(choices=found, value=current if current in keys else (keys[0] if keys else None))

    def on_refresh(current: str | None = None, profile: gr.OAuthProfile | None = None) -> Any:
        return refresh_choices(current, viewer_of(engine, profile))

    refresh.click(on_refresh, model, model, api_visibility="private")

    with gr.Accordion("Many reviews at once", open=False):
        gr.Markdown("One review per line, or a CSV / JSONL / Parquet file with a text column. Results download as CSV.")
        with gr.Row():
            lines = gr.Textbox(lines=5, label="Reviews, one per line", elem_id="batch-text", scale=3)
            upload = gr.File(label="…or a file", file_types=[".csv", ".tsv", ".json", ".jsonl", ".parquet", ".txt"], scale=2)
        with gr.Row():
            fast = gr.Checkbox(
                value=engine.device == "cpu",
                label="With the PyTorch runtime: a fast int8 copy on CPU (about 3x faster; on rotten_tomatoes 96% same "
                "labels, accuracy -0.4 pt)",
                interactive=engine.device == "cpu",
            )
            batch_go = gr.Button("Predict all", elem_id="batch-btn")
        batch_msg = gr.Markdown(elem_id="batch-status")
        table = gr.Dataframe(label="Predictions (first 200 rows)", interactive=False, elem_id="batch-table")
        download = gr.File(label="All predictions (CSV)", interactive=False, elem_id="batch-download")

    def predict_batch(
        block: str | None = None,
        file: str | None = None,
        model_key: str | None = None,
        int8: bool = False,
        runtime: str = "pytorch",
        profile: gr.OAuthProfile | None = None,
    ) -> tuple[str, Any, Any]:
        viewer = viewer_of(engine, profile)
        try:
            texts = engine.batch_texts(block, file)
            probs = engine.predict_many(texts, model_key or None, int8=bool(int8), runtime=runtime or "pytorch", viewer=viewer)
            info = engine.task_info(model_key or None, viewer)
        except FtuiError as exc:
            return error_md(exc), gr.skip(), None
        frame = predictions_frame(texts, probs, info)
        try:
            out = engine.predictions_file(frame)  # texts cut, the downloads' byte budget kept
        except FtuiError as exc:
            return error_md(exc), gr.skip(), None
        summary = batch_summary(frame, info)
        shown = frame.head(200).copy()
        shown["text"] = [t if len(t) <= PREVIEW_CHARS else t[:PREVIEW_CHARS] + " …" for t in shown["text"]]
        return ok_md(f"{len(frame):,} reviews scored ({summary})."), shown, str(out)

    batch_go.click(gpu(predict_batch, batch_seconds), [lines, upload, model, fast, runtime], [batch_msg, table, download],
                   api_name="predict_batch")  # fmt: skip
    return model, refresh_choices
