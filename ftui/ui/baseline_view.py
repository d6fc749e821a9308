"""The baseline as the Train and Runs tabs show it: the automatic-baseline checkbox, the best baseline's dashed line on a
run's validation chart and on the Compare charts, and what the Start and Run-baselines messages say about them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gradio as gr
import plotly.graph_objects as go

from ftui.plots import COMPARE_BY_SHAPE, add_baseline_line, compare_figure, compare_metrics, label_shape
from ftui.reference import Line, chart_line
from ftui.runs import Run, RunSnapshot

QUEUED_NAMES = {"tfidf": "TF-IDF", "nbsvm": "NBSVM", "embeddings": "frozen embeddings"}  # as the Train tab says them
AUTO_LABEL = "Auto baseline: TF-IDF beside the run on data without one (seconds)"


def auto_baseline_box(default: bool) -> gr.Checkbox:
    """The Train tab's switch for TrainConfig.auto_baseline (the CLI's --no-auto-baseline)."""
    return gr.Checkbox(value=default, label=AUTO_LABEL, elem_id="auto-baseline", scale=2)


def run_line(run: Run, snap: RunSnapshot, records: Sequence[dict[str, Any]]) -> Line | None:
    """The dashed line of a run's validation chart: its best baseline among `records` (what the viewer sees), for the
    label shape the run trains (known from its progress before its first evaluation)."""
    shape = snap.progress.task or label_shape(snap.events)
    return chart_line(run.header(), records, str(shape))


def compare_charts(series: list[tuple[str, Any]], recs: Sequence[dict[str, Any]],
                   everyone: Sequence[dict[str, Any]]) -> list[go.Figure]:  # fmt: skip
    """The Compare charts, with each compared run's best baseline as a dashed line on the chart of the main score."""
    metrics = compare_metrics(series)
    shape = next((s for s, names in COMPARE_BY_SHAPE.items() if names == metrics), "single_label")
    lines = {line for rec in recs if (line := chart_line(rec, everyone)) is not None}  # one per baseline, however many runs
    figs = []
    for i, metric in enumerate(metrics):
        fig = compare_figure(series, metric)
        if i == 2:  # the label shape's main score (accuracy, micro-F1, RMSE): the one baselines are compared by
            for line in sorted(lines, key=lambda ln: ln.label):
                add_baseline_line(fig, line, shape)
        figs.append(fig)
    return figs


def started_text(run: Run, said: str) -> str:
    """The Start message, telling when the TF-IDF baseline was started beside the run (it has no baseline yet)."""
    if not run.awaits:
        return said
    return (f"{said} The TF-IDF baseline runs beside it (seconds): its score will be the dashed line on the chart and "
            "the run's 'vs base' in the Runs tab.")  # fmt: skip


def queued_after(rest: Sequence[Any]) -> str:
    """What "Run baselines" queued after the first (NBSVM only for single-label classes)."""
    names = [QUEUED_NAMES.get(q.config.baseline, q.config.baseline) for q in rest]
    return f"{' and '.join(names)} {'is' if len(names) == 1 else 'are'} queued after it" if names else "nothing else is queued"
