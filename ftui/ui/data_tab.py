"""Data tab: pick a source, load and preview it, override the detected columns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from ftui.config import DataConfig
from ftui.data import DataBundle
from ftui.data_report import label_counts, preview_frame, sanity_report
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import code_md, escape_md, escape_md_all
from ftui.icons import WARN
from ftui.plots import label_distribution_figure
from ftui.tasks import Task
from ftui.ui.common import AUTO, DATA_SOURCE_LABELS, as_int, error_md, key_for, ok_md, optional, search_handler, token_of

SHAPE_LABELS = {  # the label shape a user picks; auto reads it from the label column
    "auto": "auto (lists → multi-label, decimals → regression)",
    "single_label": "single-label classes",
    "multi_label": "multi-label (a list of labels per text, or several 0/1 columns)",
    "regression": "regression (a number per text)",
}

SOURCE_PROMPTS = {
    "demo": "Press **Load dataset** to preview the bundled demo reviews.",
    "hub": "Pick or type a Hub dataset, then press **Load dataset**.",
    "upload": "Choose a file to preview it.",
    "local": "Type a file or folder path, then press **Load dataset**.",
}


@dataclass
class DataUI:
    """The Data tab's widgets; `inputs` feed `to_config` in this order."""

    inputs: list[gr.components.Component]
    status: gr.Markdown
    len_plot: gr.Plot
    autoload: tuple[Any, list[Any], list[Any]]  # (handler, inputs, outputs) of "Load dataset"
    loaded: list[Any]  # the events that load a dataset, so the length histogram can follow each
    task: gr.State  # the loaded data's label shape (a Task value; "" before any load): other tabs show what applies

    @staticmethod
    def to_config(
        source: str,
        dataset_id: str | None,
        config: str | None,
        train_split: str | None,
        val_split: str | None,
        test_split: str | None,
        upload: Any,
        local_path: str | None,
        text_cols: list[str] | None,
        label_col: str | None,
        max_train: Any,
        trust: bool,
        shape: str | None = "auto",
        label_cols: list[str] | None = None,
    ) -> DataConfig:
        """Widget values to a DataConfig (validation happens in the engine)."""
        src = key_for(DATA_SOURCE_LABELS, source, "demo")
        path = {
            "hub": dataset_id,
            "upload": upload if isinstance(upload, str) else getattr(upload, "name", None),
            "local": local_path,
        }.get(src) or ""
        return DataConfig(
            source=src,
            dataset_id=str(path).strip(),
            config_name=optional(config) if src == "hub" else None,
            train_split=optional(train_split) or "train",
            validation_split=optional(val_split),
            test_split=optional(test_split),
            text_columns=tuple(c for c in (text_cols or []) if c),
            label_column=optional(label_col),
            label_columns=tuple(c for c in (label_cols or []) if c),
            task=key_for(SHAPE_LABELS, shape, "auto"),
            max_train_examples=as_int(max_train, 0),
            trust_remote_code=bool(trust),
        )


def shape_line(bundle: DataBundle) -> str:
    """What the labels are, in a phrase: the classes, the labels of a multi-label task, or the regression target."""
    names = escape_md_all(bundle.label_names[:20]) + (" …" if len(bundle.label_names) > 20 else "")
    if bundle.task is Task.MULTI:
        return f"multi-label, {len(bundle.label_names)} labels: {names}"
    if bundle.task is Task.REGRESSION:
        return f"regression on {code_md(bundle.label_names[0])}"
    return f"{len(bundle.label_names)} classes: {names}"


def build(engine: Engine, token_box: gr.Textbox) -> DataUI:
    """Lay out the Data tab and wire its events."""
    default = engine.default_data()
    with gr.Row():
        source = gr.Radio(
            list(DATA_SOURCE_LABELS.values()), value=DATA_SOURCE_LABELS[default.source], label="Source", elem_id="data-source"
        )
    with gr.Group(visible=default.source == "hub") as hub_box:
        with gr.Row():
            query = gr.Textbox(
                label="Search Hub text-classification datasets", placeholder="e.g. sentiment, imdb, emotion", scale=4
            )
            search_btn = gr.Button("Search", scale=1)
        with gr.Row():
            dataset_id = gr.Dropdown(
                elem_id="data-hub-id",
                choices=[default.dataset_id] if default.dataset_id else [],
                value=default.dataset_id or None,
                label="Dataset id (pick a result or type owner/name)",
                allow_custom_value=True,
                scale=3,
            )
            config = gr.Dropdown(choices=[], value=None, label="Config", allow_custom_value=True, scale=2)
        with gr.Row():
            train_split = gr.Dropdown(choices=["train"], value="train", label="Train split", allow_custom_value=True)
            val_split = gr.Dropdown(
                choices=[AUTO],
                value=AUTO,
                label="Validation split (auto: use or carve)",
                allow_custom_value=True,
                elem_id="val-split",
            )
            test_split = gr.Dropdown(choices=[AUTO], value=AUTO, label="Test split (auto: use or carve)", allow_custom_value=True)
        trust = gr.Checkbox(
            False,
            label="Trust remote code: allow datasets that need a loading script "
            "(loaded through the Hub's Parquet export; off by default)",
        )
    with gr.Group(visible=default.source == "upload") as upload_box:
        upload = gr.File(
            label="CSV, TSV, Excel (.xlsx), JSON/JSONL or Parquet file (loads as soon as it is chosen)",
            file_types=[".csv", ".tsv", ".xlsx", ".json", ".jsonl", ".parquet"],
            type="filepath",
            elem_id="data-upload",
        )
    with gr.Group(visible=default.source == "local") as local_box:
        local_path = gr.Textbox(
            label="File or folder path (a data file, a save_to_disk folder, or train/validation/test files)",
            elem_id="data-local-path",
        )
    with gr.Row():
        text_cols = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            max_choices=2,
            allow_custom_value=True,
            label="Text column(s) (empty: detect; two for sentence pairs)",
        )
        label_col = gr.Dropdown(choices=[], value=None, allow_custom_value=True, label="Label column (empty: detect)")
        max_train = gr.Number(value=0, precision=0, label="Max training examples (0 = all; stratified)", elem_id="max-train")
    with gr.Row():
        shape = gr.Dropdown(
            choices=list(SHAPE_LABELS.values()), value=SHAPE_LABELS["auto"], label="Label shape", elem_id="label-shape"
        )
        label_cols = gr.Dropdown(
            choices=[],
            value=[],
            multiselect=True,
            allow_custom_value=True,
            label="…or several 0/1 label columns, one per label (multi-label; leave the label column empty)",
            elem_id="label-cols",
        )
    load_btn = gr.Button("Load dataset", variant="primary", elem_id="load-data")
    status = gr.Markdown("Pick a source and press **Load dataset** to preview it.", elem_id="data-status")
    preview = gr.Dataframe(label="First training rows", interactive=False, wrap=True, elem_id="data-preview")
    with gr.Row():
        dist_plot = gr.Plot(label="Labels")
        len_plot = gr.Plot(label="Lengths", elem_id="len-plot")

    inputs = [
        source,
        dataset_id,
        config,
        train_split,
        val_split,
        test_split,
        upload,
        local_path,
        text_cols,
        label_col,
        max_train,
        trust,
        shape,
        label_cols,
    ]

    def on_source(shown: str) -> tuple[Any, ...]:
        src = key_for(DATA_SOURCE_LABELS, shown, "demo")
        # A new source: the status and column lists must not keep describing the previous dataset.
        return (
            gr.update(visible=src == "hub"),
            gr.update(visible=src == "upload"),
            gr.update(visible=src == "local"),
            SOURCE_PROMPTS[src],
            gr.update(choices=[], value=[]),
            gr.update(choices=[], value=None),
            gr.update(choices=[], value=[]),
        )

    source.change(on_source, source, [hub_box, upload_box, local_box, status, text_cols, label_col, label_cols],
                  api_visibility="private")  # fmt: skip

    on_search = search_handler(engine.search_datasets, "text-classification datasets")
    search_btn.click(on_search, [query, token_box], [dataset_id, status], api_visibility="private")
    query.submit(on_search, [query, token_box], [dataset_id, status], api_visibility="private")

    def on_dataset(ds: str | None, token: str) -> tuple[Any, str]:
        if not ds:
            return gr.update(choices=[], value=None), gr.skip()
        try:
            configs = engine.dataset_configs(ds, token_of(token))
        except FtuiError as exc:
            return gr.update(choices=[], value=None), "Looking up configs: " + error_md(exc)
        if not configs:
            return gr.update(choices=[], value=None), f"'{escape_md(ds)}' has a single config. Press **Load dataset**."
        return gr.update(choices=configs, value=configs[0] if len(configs) == 1 else None), (
            f"'{escape_md(ds)}' has {len(configs)} configs: pick one, then press **Load dataset**."
            if len(configs) > 1
            else gr.skip()
        )

    # change: a picked result, a typed id once committed (Enter/blur), or a search filling the box
    dataset_id.change(on_dataset, [dataset_id, token_box], [config, status], api_visibility="private")

    def on_config(ds: str | None, cfg_name: str | None, token: str) -> tuple[Any, ...]:
        if not ds:
            return gr.skip(), gr.skip(), gr.skip()
        try:
            splits = engine.dataset_splits(ds, optional(cfg_name), token_of(token))
        except FtuiError:
            return gr.skip(), gr.skip(), gr.skip()  # Load dataset reports the problem in full
        return (
            gr.update(choices=splits, value="train" if "train" in splits else (splits[0] if splits else "train")),
            gr.update(choices=[AUTO, *splits], value=AUTO),
            gr.update(choices=[AUTO, *splits], value=AUTO),
        )

    config.change(on_config, [dataset_id, config, token_box], [train_split, val_split, test_split], api_visibility="private")

    def on_load(*values: Any) -> tuple[Any, ...]:
        *widget_values, token = values
        try:
            cfg = DataUI.to_config(*widget_values)
            bundle = engine.load_data(cfg, token_of(token))
        except FtuiError as exc:
            return error_md(exc), None, None, gr.skip(), gr.skip(), gr.skip(), ""  # no stale preview of the previous data
        sizes = " · ".join(f"{escape_md(k)}: **{v}**" for k, v in bundle.sizes.items())
        lines = [
            ok_md(f"Loaded. Splits: {sizes}."),
            f"Text: {', '.join(map(code_md, bundle.text_columns))} · label: {code_md(bundle.label_column)} · "
            + shape_line(bundle),
        ]
        lines += [f"- {escape_md(n)}" for n in bundle.notes]  # notes and warnings quote labels and column names
        lines += [f"- {WARN} {escape_md(w)}" for w in sanity_report(bundle)]
        return (
            "\n\n".join(lines),
            preview_frame(bundle),
            label_distribution_figure(label_counts(bundle)),
            gr.update(choices=bundle.columns),
            gr.update(choices=bundle.columns),
            gr.update(choices=bundle.columns),
            bundle.task.value,
        )

    load_inputs = [*inputs, token_box]
    task = gr.State("")
    load_outputs = [status, preview, dist_plot, text_cols, label_col, label_cols, task]
    loaded = [load_btn.click(on_load, load_inputs, load_outputs, api_visibility="private")]

    def on_upload(*values: Any) -> tuple[Any, ...]:
        """A file chosen is a file loaded: the status must never keep describing the previous dataset."""
        if values[inputs.index(upload)]:
            return on_load(*values)
        cleared = gr.update(choices=[], value=None)
        return (SOURCE_PROMPTS["upload"], None, None, gr.update(choices=[], value=[]), cleared,
                gr.update(choices=[], value=[]), "")  # fmt: skip

    loaded.append(upload.change(on_upload, load_inputs, load_outputs, api_visibility="private"))
    return DataUI(
        inputs=inputs,
        status=status,
        len_plot=len_plot,
        autoload=(on_load, load_inputs, load_outputs),
        loaded=loaded,
        task=task,
    )
