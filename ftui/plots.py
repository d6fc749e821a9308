"""Pure functions from run events and data summaries to plotly figures and status text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from ftui.config import LOWER_IS_BETTER
from ftui.escaping import code_md, escape_md, escape_plot
from ftui.events import Event, EventType, PhaseEvent, decode_all
from ftui.experiments import short_number
from ftui.icons import ERR, OK, WAIT, WARN
from ftui.progress import Progress
from ftui.runs import RunSnapshot, RunStatus

_LAYOUT = {
    "height": 320,
    "margin": {"l": 50, "r": 20, "t": 60, "b": 45},
    "template": "plotly_white",
    # above the plot area, right-aligned under the title: never on top of the x-axis title
    "legend": {"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
}
FEW_POINTS = 40  # below this many points a line also shows its markers (a single point would draw nothing)


def _mode(n: int) -> str:
    return "lines+markers" if n < FEW_POINTS else "lines"


# A run's events as the figures take them: stored dicts (a snapshot's) or typed events; decoded once per figure.
Events = Sequence[dict[str, Any]] | Sequence[Event]


def mark_phases(fig: go.Figure, events: Events) -> None:
    """A dashed line where each later phase of the schedule begins (head first, then fine-tune), labelled."""
    for e in decode_all(events):
        if isinstance(e, PhaseEvent) and e.index > 0:
            fig.add_vline(
                x=e.step + 0.5,
                line_dash="dot",
                line_color="gray",
                annotation_text=f"{escape_plot(e.phase)} begins",
            )


def _step_axis(xs: Sequence[float]) -> dict[str, Any]:
    """Whole steps on the x axis: plotly would put ticks at 0.5, 1.5 on a short run."""
    top = max(xs, default=0)
    return {"xaxis_tickformat": "d", **({"xaxis_dtick": 1} if top <= 10 else {})}


def _value(e: Event, key: str) -> Any:
    """A field of an event, None when its type has no such field (or left it unset)."""
    return getattr(e, key, None)


def _series(events: Sequence[Event], kind: EventType, key: str) -> tuple[list[int], list[float]]:
    pts = [(e.step, _value(e, key)) for e in events if e.type == kind and _value(e, key) is not None]
    return [p[0] for p in pts], [float(p[1]) for p in pts]


def loss_figure(events: Events, revision: str = "") -> go.Figure:
    """Train and eval loss against optimizer step; `revision` keeps the user's zoom across updates."""
    events = decode_all(events)
    fig = go.Figure()
    x, y = _series(events, EventType.TRAIN, "loss")
    fig.add_trace(go.Scatter(x=x, y=y, mode=_mode(len(x)), name="train loss"))
    steps = list(x)
    x, y = _series(events, EventType.EVAL, "eval_loss")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="eval loss"))
    shape = label_shape(events)
    what = {"regression": "squared error", "multi_label": "binary cross-entropy"}.get(shape, "cross-entropy")
    fig.update_layout(title="Loss", xaxis_title="step", yaxis_title=what, uirevision=revision, **_step_axis(steps + x), **_LAYOUT)
    mark_phases(fig, events)
    return fig


def label_shape(events: Events) -> str:
    """The label shape a run's evaluations report: 'regression', 'multi_label' or 'single_label'."""
    for e in decode_all(events):
        if e.type == EventType.EVAL:
            if _value(e, "eval_rmse") is not None:
                return "regression"
            if _value(e, "eval_micro_f1") is not None:
                return "multi_label"
    return "single_label"


def regression_figure(events: Events, revision: str = "") -> go.Figure:
    """Validation RMSE (left axis, in the target's units) and Pearson/Spearman correlation (right axis)."""
    from plotly.subplots import make_subplots

    events = decode_all(events)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x, y = _series(events, EventType.EVAL, "eval_rmse")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="eval RMSE"), secondary_y=False)
    for key, name in (("eval_spearman", "eval Spearman"), ("eval_pearson", "eval Pearson")):
        x2, y2 = _series(events, EventType.EVAL, key)
        fig.add_trace(go.Scatter(x=x2, y=y2, mode="lines+markers", name=name), secondary_y=True)
    fig.update_yaxes(title_text="RMSE", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(range=[-1.02, 1.02], title_text="correlation", secondary_y=True)
    fig.update_layout(title="Validation RMSE and correlation", xaxis_title="step", uirevision=revision, **_step_axis(x),
                      **_LAYOUT)  # fmt: skip
    mark_phases(fig, events)
    return fig


def accuracy_figure(events: Events, revision: str = "") -> go.Figure:
    """Eval accuracy and macro-F1 against optimizer step (multi-label: micro/macro-F1 and subset accuracy; regression:
    RMSE and correlations)."""
    events = decode_all(events)
    shape = label_shape(events)
    if shape == "regression":
        return regression_figure(events, revision)
    fig = go.Figure()
    steps: list[int] = []
    keys = (("eval_accuracy", "eval accuracy"), ("eval_macro_f1", "eval macro-F1"))
    title = "Validation accuracy and macro-F1"
    if shape == "multi_label":
        keys = (("eval_micro_f1", "eval micro-F1"), ("eval_macro_f1", "eval macro-F1"),
                ("eval_accuracy", "eval subset accuracy"))  # fmt: skip
        title = "Validation micro/macro-F1 and subset accuracy"
    for key, name in keys:
        x, y = _series(events, EventType.EVAL, key)
        steps += x
        fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name=name))
    fig.update_layout(
        title=title,
        xaxis_title="step",
        yaxis_range=[0, 1.02],
        uirevision=revision,
        **_step_axis(steps),
        **_LAYOUT,
    )
    mark_phases(fig, events)
    return fig


def add_baseline_line(fig: go.Figure, line: Any, shape: str | None = None) -> go.Figure:
    """The baseline's score as a horizontal dashed line, labelled ("TF-IDF baseline 0.81 (accuracy)"), on a validation
    chart of its label shape (`line`: ftui.reference.Line or None; `shape`: the chart's, when it is not the line's the
    line is left off). The regression chart draws it against its RMSE axis."""
    if line is None or (shape is not None and shape != line.shape):
        return fig
    fig.add_hline(y=line.value, line_dash="dash", line_color="dimgray", annotation_text=line.label,
                  annotation_position="bottom right", annotation_font_color="dimgray")  # fmt: skip
    return fig


def perplexity_figure(events: Events, revision: str = "") -> go.Figure:
    """Held-out perplexity (log scale: it falls by orders of magnitude from scratch) and masked-token accuracy."""
    from plotly.subplots import make_subplots

    events = decode_all(events)
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x, y = _series(events, EventType.EVAL, "eval_perplexity")
    fig.add_trace(go.Scatter(x=x, y=y, mode="lines+markers", name="held-out perplexity"), secondary_y=False)
    x2, y2 = _series(events, EventType.EVAL, "eval_masked_accuracy")
    fig.add_trace(go.Scatter(x=x2, y=y2, mode="lines+markers", name="masked-token accuracy"), secondary_y=True)
    fig.update_yaxes(type="log", title_text="perplexity", secondary_y=False)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", secondary_y=True)
    fig.update_layout(title="Held-out perplexity", xaxis_title="step", uirevision=revision, **_step_axis(x), **_LAYOUT)
    return fig


COMPARE_METRICS = {
    "train loss": (EventType.TRAIN, "loss"),
    "eval loss": (EventType.EVAL, "eval_loss"),
    "eval accuracy": (EventType.EVAL, "eval_accuracy"),
    "eval macro-F1": (EventType.EVAL, "eval_macro_f1"),
    "eval micro-F1": (EventType.EVAL, "eval_micro_f1"),
    "eval RMSE": (EventType.EVAL, "eval_rmse"),
    "eval Spearman": (EventType.EVAL, "eval_spearman"),
}


COMPARE_BY_SHAPE = {  # the four comparison charts: the two losses, then the label shape's two main scores
    "single_label": ("train loss", "eval loss", "eval accuracy", "eval macro-F1"),
    "multi_label": ("train loss", "eval loss", "eval micro-F1", "eval macro-F1"),
    "regression": ("train loss", "eval loss", "eval RMSE", "eval Spearman"),
}


def compare_metrics(runs: Sequence[tuple[str, Events]]) -> tuple[str, ...]:
    """Which metrics the comparison charts show: the shape all the runs share, else the single-label ones."""
    shapes = {label_shape(events) for _, events in runs}
    return COMPARE_BY_SHAPE[shapes.pop() if len(shapes) == 1 else "single_label"]


def compare_figure(runs: Sequence[tuple[str, Events]], metric: str) -> go.Figure:
    """One metric of several runs overlaid against epoch (runs differ in steps per epoch, so epochs line up)."""
    kind, key = COMPARE_METRICS[metric]
    fig = go.Figure()
    for name, events in runs:
        pts = [(_value(e, "epoch"), _value(e, key)) for e in decode_all(events) if e.type == kind and _value(e, key) is not None]
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=escape_plot(name)))
    extra = {"yaxis_range": [0, 1.02]} if "accuracy" in metric or "F1" in metric else {}
    extra = {"yaxis_range": [-1.02, 1.02]} if "Spearman" in metric else extra
    fig.update_layout(title=metric, xaxis_title="epoch", **extra, **_LAYOUT)
    return fig


def test_summary(r: dict[str, Any]) -> str:
    """A run result's test metrics in one phrase, for its label shape."""
    if "test_rmse" in r:
        return (f"Test RMSE {r['test_rmse']:.4g} · Pearson {r.get('test_pearson', 0.0):.3f} · "
                f"Spearman {r.get('test_spearman', 0.0):.3f}")  # fmt: skip
    if "test_micro_f1" in r:
        return (f"Test micro-F1 {r['test_micro_f1']:.3f} · macro-F1 {r.get('test_macro_f1', 0.0):.3f} · "
                f"subset accuracy {r.get('test_accuracy', 0.0):.3f} (threshold {r.get('threshold', 0.5):.2f})")  # fmt: skip
    return f"Test accuracy {r['test_accuracy']:.3f} · test macro-F1 {r.get('test_macro_f1', 0.0):.3f}"


def confusion_figure(matrix: Sequence[Sequence[int]], names: Sequence[str]) -> go.Figure:
    """Heatmap of counts, true class down, predicted class across, each cell labelled."""
    fig = go.Figure(
        go.Heatmap(
            z=[list(r) for r in matrix],
            x=[f"pred: {escape_plot(n)}" for n in names],
            y=[f"true: {escape_plot(n)}" for n in names],
            text=[[str(v) for v in r] for r in matrix],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
        )
    )
    fig.update_layout(title="Confusion matrix (test)", yaxis_autorange="reversed", **{**_LAYOUT, "height": 360})
    return fig


def per_label_figure(rows: Sequence[dict[str, Any]]) -> go.Figure:
    """Multi-label's confusion view: per label, texts rightly flagged (TP), missed (FN) and wrongly flagged (FP)."""
    names = [escape_plot(r["label"]) for r in rows]
    fig = go.Figure()
    for key, name in (("tp", "right (TP)"), ("fn", "missed (FN)"), ("fp", "wrongly flagged (FP)")):
        fig.add_trace(go.Bar(x=names, y=[r[key] for r in rows], name=name))
    fig.update_layout(title="Per label (test)", barmode="group", yaxis_title="texts", **{**_LAYOUT, "height": 360})
    return fig


def regression_scatter(gold: Sequence[float], pred: Sequence[float]) -> go.Figure:
    """Regression's confusion view: predicted against true values, with the line where they are equal."""
    lo = float(min([*gold, *pred], default=0.0))
    hi = float(max([*gold, *pred], default=1.0))
    fig = go.Figure(go.Scatter(x=list(gold), y=list(pred), mode="markers", name="test texts", opacity=0.6))
    fig.add_trace(go.Scatter(x=[lo, hi], y=[lo, hi], mode="lines", name="predicted = true", line={"dash": "dot"}))
    fig.update_layout(title="Predicted vs true (test)", xaxis_title="true", yaxis_title="predicted",
                      **{**_LAYOUT, "height": 360})  # fmt: skip
    return fig


def sweep_figure(rows: Sequence[dict[str, Any]], metric: str) -> go.Figure:
    """Parallel coordinates of a sweep: one line per scored run across its swept settings to its validation score
    (colour = score); text settings (checkpoint, schedule) become numbered axes. The best run is named in the title."""
    scored = [r for r in rows if r.get("val_score") is not None]
    fig = go.Figure()
    if not scored:
        fig.update_layout(**_LAYOUT, title="Sweep: no run has a validation score yet")
        return fig
    names = list(dict.fromkeys(k for r in scored for k in r["point"]))
    dims = []
    for name in names:
        raw = [r["point"].get(name, "") for r in scored]
        if len(set(map(str, raw))) < 2:
            continue  # a setting that did not vary among the scored runs explains nothing: no axis for it
        try:
            values = [float(v) for v in raw]
            levels = sorted(set(values))
            # Ticks at the values tried, written as typed (3e-4), never plotly's SI prefixes (300µ).
            dims.append({"label": escape_plot(name), "values": values, "tickvals": levels,
                         "ticktext": [short_number(v) for v in levels]})  # fmt: skip
        except ValueError:
            levels = list(dict.fromkeys(raw))
            ticks = [escape_plot(str(v)[-24:]) for v in levels]
            dims.append({"label": escape_plot(name), "values": [levels.index(v) for v in raw],
                         "tickvals": list(range(len(levels))), "ticktext": ticks})  # fmt: skip
    scores = [r["val_score"] for r in scored]
    dims.append({"label": f"val {metric}", "values": scores})
    fig.add_trace(go.Parcoords(line={"color": scores, "colorscale": "Viridis", "showscale": True}, dimensions=dims))
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    best = max(scored, key=lambda r: (r.get("completed", False), sign * r["val_score"]))
    fig.update_layout(
        **{**_LAYOUT, "height": 360}, title=f"Best: {escape_plot(best['name'])} (val {metric} {best['val_score']:.3f})"
    )
    return fig


def label_distribution_figure(counts: pd.DataFrame) -> go.Figure:
    """Bars of rows per label, grouped by split (from data_report.label_counts)."""
    fig = go.Figure()
    for split, part in counts.groupby("split", sort=False):
        fig.add_trace(go.Bar(x=[escape_plot(n) for n in part["label"]], y=part["count"], name=escape_plot(split)))
    fig.update_layout(title="Label distribution", barmode="group", yaxis_title="rows", **_LAYOUT)
    return fig


def cut_share(lengths: Sequence[int], max_length: int) -> float:
    """Share of texts longer than max_length tokens: the part the model never reads is cut away."""
    return sum(n > max_length for n in lengths) / len(lengths) if lengths else 0.0


LONG_TEXT_READS = {  # what each long-text mode (TrainConfig.long_text) does with a text past the max length
    "truncate": "and will be cut there (the rest is never read)",
    "head_tail": "and will be read as their first and last tokens (head + tail; the middle is skipped)",
    "chunks": "and will be read whole, in overlapping windows of {n} tokens (chunks)",
}


def length_histogram(lengths: Sequence[int], unit: str, max_length: int | None = None, long_text: str = "truncate") -> go.Figure:
    """Histogram of text lengths; in tokens with the max length marked and, in the title, the share of texts longer
    than it and what the long-text mode will read of them."""
    fig = go.Figure(go.Histogram(x=list(lengths), nbinsx=40, name=unit))
    title = f"Text length ({unit}, {len(lengths):,} train texts)"
    if max_length and unit == "tokens":
        fig.add_vline(x=max_length, line_dash="dash", line_color="firebrick", annotation_text=f"max length {max_length}")
        reads = LONG_TEXT_READS.get(long_text, LONG_TEXT_READS["truncate"]).format(n=max_length)
        title += f"<br><sup>{cut_share(lengths, max_length):.0%} are longer than {max_length} tokens {reads}</sup>"
    fig.update_layout(title=title, xaxis_title=unit, yaxis_title="rows", **_LAYOUT)
    return fig


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


STATUS_ICON = {
    RunStatus.QUEUED: WAIT,
    RunStatus.RUNNING: "▶",  # U+25B6 without the emoji selector: text in every font
    RunStatus.COMPLETED: OK,
    RunStatus.STOPPED: "■",
    RunStatus.FAILED: ERR,
    RunStatus.INTERRUPTED: WARN,
}


PHASE_WORDS = {"head": "phase 1 of 2: only the new head trains", "finetune": "phase 2 of 2: fine-tuning"}


def _phase_words(progress: Progress) -> str:
    phase = progress.phase
    if phase == "training" and progress.train_phase in PHASE_WORDS:
        return f"training, {PHASE_WORDS[progress.train_phase]}"
    return phase


def status_markdown(snap: RunSnapshot | None, now: float | None = None) -> str:
    """One block of text: status, phase, progress with ETA, speed, memory, and the outcome.

    now: the current time, for the elapsed time of a live run (it ticks every second even between log points).
    """
    if snap is None:
        return "No run yet. Set up data and model, then press **Start training**."
    p = snap.progress
    elapsed = ""
    if now is not None and not snap.status.finished:
        elapsed = f" · {_duration(max(0.0, now - snap.started_at))} elapsed"
    lines = [
        f"**{STATUS_ICON[snap.status]} {escape_md(snap.name)}** — {snap.status.value}"
        + (f" ({_phase_words(p)})" if p.phase and not snap.status.finished else "")
        + elapsed
    ]
    if p.device:
        lines.append(f"Device: `{p.device}`" + (f" × {p.processes}" if p.processes else ""))
    if p.total_steps:
        pct = 100 * p.step / p.total_steps
        bits = [f"step {p.step}/{p.total_steps} ({pct:.0f}%)", f"epoch {p.epoch:.2f}"]
        if p.samples_per_s:
            bits.append(f"{p.samples_per_s:.1f} samples/s")
        if not snap.status.finished and p.eta_s is not None:
            bits.append(f"ETA {_duration(p.eta_s)}")
        if p.memory_mb:
            bits.append(f"memory {p.memory_mb:.0f} MB")
        if p.prefix_cache_mb:
            bits.append(f"frozen layers cached ({p.prefix_cache_mb:.0f} MB)")
        lines.append(" · ".join(bits))
    if p.class_weights:
        lines.append("Class weights in the loss: " + ", ".join(f"{w:g}" for w in p.class_weights))
    for notice in p.notices:
        lines.append(f"{WARN} {escape_md(notice)}")  # notices quote labels and column names
    if p.plan:
        lines.append(escape_md(p.plan))  # "Time limit …: the schedule is planned for the N steps that fit …"
    for warning in p.warnings:
        lines.append(f"{WARN} {escape_md(warning.message)}")  # warnings may quote label names
    so_far = "" if snap.status.finished else " so far"  # a finished run's best is final, not "so far"
    if p.best_eval_accuracy is not None:
        lines.append(f"Best validation accuracy{so_far}: **{p.best_eval_accuracy:.3f}**")
    if p.best_eval_micro_f1 is not None:
        lines.append(f"Best validation micro-F1{so_far}: **{p.best_eval_micro_f1:.3f}**")
    if p.best_eval_rmse is not None:
        lines.append(f"Best validation RMSE{so_far}: **{p.best_eval_rmse:.4g}**")
    if p.best_perplexity is not None:
        lines.append(f"Best held-out perplexity{so_far}: **{p.best_perplexity:.2f}**")
    r = snap.result
    if snap.status == RunStatus.COMPLETED and ("test_accuracy" in r or "test_rmse" in r):
        lines.append(
            f"**{test_summary(r)}** "
            f"(best checkpoint, step {(r.get('best_eval') or {}).get('step', '?')}; {_duration(r.get('train_seconds'))})"
        )
    if snap.status == RunStatus.COMPLETED and r.get("perplexity_after") is not None:
        before = r.get("perplexity_before")
        start = f"{before:.2f} → " if isinstance(before, (int, float)) else ""
        lines.append(
            f"**Held-out perplexity {start}{r['perplexity_after']:.2f}**: the adapted checkpoint is in the Model tab "
            "(Local folder)"
        )
    if r.get("model_dir") and snap.status == RunStatus.COMPLETED:
        lines.append(f"Model saved in {code_md(r['model_dir'])}")
    if snap.status == RunStatus.STOPPED:
        if r.get("kept") == "best":
            step = f" (step {r['kept_step']})" if r.get("kept_step") else ""
            kept = f"The best checkpoint so far{step} is kept in {code_md(r['model_dir'])}: Predict offers it."
            lines.append(f"Stopped by the user. {kept}")
        elif r.get("kept") == "last":
            lines.append(
                f"Stopped by the user after {r['kept_step']} training steps, before any evaluation: those weights are kept "
                f"in {code_md(r['model_dir'])} (not yet validated)."
            )
        else:
            lines.append("Stopped by the user before any training step: nothing was trained, so no model was kept.")
    if snap.error:
        lines.append(f"**Error:** {escape_md(snap.error)}")
    return "\n\n".join(lines)
