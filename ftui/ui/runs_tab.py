"""Runs tab: every stored run in a table; compare curves and configs; evaluate, rename, note, delete, export one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from ftui.advice import warnings_of
from ftui.data_report import PREVIEW_CHARS
from ftui.engine import Engine
from ftui.errors import FtuiError
from ftui.escaping import code_md, escape_md, escape_md_block
from ftui.events import decode_all
from ftui.experiments import TABLE_LEGEND, baseline_verdict, config_diff, display_frame, display_widths, runs_frame
from ftui.icons import WARN
from ftui.metrics import confusion
from ftui.onnx_export import OnnxReport
from ftui.plots import COMPARE_BY_SHAPE, confusion_figure, per_label_figure, regression_scatter, test_summary
from ftui.runs import RunStatus
from ftui.significance import compare_md, intervals_md, pairer, result_flag
from ftui.ui import jobs_panel
from ftui.ui.baseline_view import compare_charts
from ftui.ui.common import error_md, explanation_view, ok_md, predictions_loader, show_explanation, token_of, viewer_of
from ftui.ui.zerogpu import explain_seconds, gpu, score_seconds
from ftui.workspace import Viewer

STATUSES = ["all", *[s.value for s in RunStatus]]
MISTAKES_SHOWN = 100
# Empty tables keep real headers: a Dataframe without columns shows Gradio's placeholder headers "1 | 2 | 3".
EMPTY_DIFF = pd.DataFrame(columns=["field"])
EMPTY_PER_CLASS = pd.DataFrame(columns=["class", "precision", "recall", "f1", "support"])
EMPTY_MISTAKES = pd.DataFrame(columns=["text", "label", "predicted", "confidence"])


def or_empty(frame: pd.DataFrame, empty: pd.DataFrame) -> pd.DataFrame:
    """The frame, or the empty one with real headers when it has no columns (a run without saved predictions)."""
    return frame if len(frame.columns) else empty


@dataclass
class RunsUI:
    """What the app wires after building the tab: a refresh of the table and pickers."""

    refresh: Any
    outputs: list[Any]
    resumed: Any  # the Resume click's event, so the app can wake the Train tab's timer


def mistakes_view(frame: pd.DataFrame) -> pd.DataFrame:
    """Mistakes as shown: confidence as a float64 with 3 decimals (float32 from Parquet printed 0.5184000134468079),
    long texts cut for the table."""
    out = frame.copy()
    if "confidence" in out:
        out["confidence"] = out["confidence"].astype("float64").round(3)
    for col in ("text", "text_pair"):
        if col in out:
            out[col] = [t if len(t) <= PREVIEW_CHARS else t[:PREVIEW_CHARS] + " …" for t in out[col].astype(str)]
    return out


def wrong_first(preds: pd.DataFrame) -> pd.DataFrame:
    """The misclassified test rows, most confidently wrong first (the order the mistakes table shows); for regression
    the rows predicted worse than the mean would be, largest error first."""
    wrong = preds[~preds["correct"]]
    if "error" in preds.columns:
        return wrong.iloc[wrong["error"].abs().argsort(kind="stable")[::-1]]
    return wrong.sort_values("confidence", ascending=False, kind="stable")


def onnx_md(report: OnnxReport) -> str:
    """An export's check as a table: agreement with the torch model and accuracy, per runtime."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    rows = [
        "| runtime | labels equal to PyTorch | test accuracy |",
        "| --- | --- | --- |",
        f"| PyTorch fp32 | - | {pct(report.torch_accuracy)} |",
        f"| ONNX Runtime fp32 | {pct(report.fp32_agreement)} | {pct(report.fp32_accuracy)} |",
    ]
    if report.int8_agreement is not None:
        rows.append(f"| ONNX Runtime int8 | {pct(report.int8_agreement)} | {pct(report.int8_accuracy)} |")
    return (
        f"Checked on {report.examples:,} test examples (largest probability difference in fp32: "
        f"{report.fp32_max_abs_diff:.1e}; export took {report.export_s:.1f} s).\n\n"
        + "\n".join(rows)
        + "\n\nPick the ONNX runtime in the Predict tab to serve it; the zip and the Hub push include it."
    )


def scope_text(viewer: Viewer, count: int) -> str:
    """Whose runs the table shows, with sign-in on (a visitor who sees few runs knows why)."""
    runs = f"{count} run{'s' if count != 1 else ''}"
    if viewer.admin:
        return f"Showing {runs}: every user's (you are an admin, {escape_md(viewer.user)})."
    if viewer.user:
        return f"Showing {runs}: yours and the showcase runs (signed in as {escape_md(viewer.user)})."
    return f"Showing {runs}: the showcase runs. Sign in to train and to see your own."


def _table(engine: Engine, viewer: Viewer | None = None, q: str = "", st: str = "all") -> pd.DataFrame:
    """The runs table as the viewer sees it, "vs base" tested on the same test texts."""
    paired = pairer(predictions_loader(engine, viewer), accuracy_only=True)
    return display_frame(runs_frame(engine.run_headers(viewer), q, st, paired=paired))


def _choices(engine: Engine, viewer: Viewer | None = None) -> list[tuple[str, str]]:
    return [(f"{r.name} · {r.status.value}", r.run_id) for r in reversed(engine.runs(viewer))]


def build(engine: Engine, token_box: gr.Textbox) -> RunsUI:
    """Lay out the Runs tab and wire its events."""
    gr.Markdown(
        "Every run is recorded in `runs/ftui.db` as it happens and survives restarts. Click a column header to sort; "
        "type in the filter box to narrow the table."
    )
    with gr.Row():
        query = gr.Textbox(label="Filter (any column)", scale=3, elem_id="runs-filter")
        status = gr.Dropdown(STATUSES, value="all", label="Status", scale=1)
        refresh_btn = gr.Button("Refresh", scale=1, elem_id="runs-refresh")
    table = gr.Dataframe(
        value=_table(engine),
        interactive=False,
        elem_id="runs-table",
        wrap=True,
        column_widths=display_widths(),
        pinned_columns=1,
    )
    gr.Markdown(TABLE_LEGEND, elem_id="runs-legend")
    scope = gr.Markdown(visible=engine.sign_in, elem_id="runs-scope")  # with sign-in: whose runs these are

    gr.Markdown("### Compare")
    # A multiselect that accepts ids it was not built with: runs appear after the page is built; the engine checks ids.
    selected = gr.Dropdown(
        choices=_choices(engine), multiselect=True, allow_custom_value=True, label="Runs to compare", elem_id="runs-select"
    )
    compare_btn = gr.Button("Compare selected", elem_id="compare-btn")
    compare_msg = gr.Markdown()
    metrics = list(COMPARE_BY_SHAPE["single_label"])  # the charts' titles follow the runs' label shape
    plots: list[gr.Plot] = []
    for row in (metrics[:2], metrics[2:]):  # two charts per row, each built exactly once
        with gr.Row():
            plots += [gr.Plot(label=m, elem_id=f"compare-{len(plots) + i}") for i, m in enumerate(row)]
    diff = gr.Dataframe(EMPTY_DIFF, label="Config fields that differ", interactive=False, elem_id="config-diff")

    gr.Markdown("### One run")
    pick = gr.Dropdown(choices=_choices(engine), label="Run", elem_id="run-pick", allow_custom_value=True)
    with gr.Tab("Evaluation"):
        eval_md = gr.Markdown(elem_id="eval-summary")
        with gr.Row():
            per_class = gr.Dataframe(EMPTY_PER_CLASS, label="Per-class scores (test)", interactive=False, elem_id="per-class")
            cm_plot = gr.Plot(label="Confusion matrix", elem_id="confusion")
        mistakes = gr.Dataframe(
            EMPTY_MISTAKES,
            label=f"Misclassified test examples, most confidently wrong first (up to {MISTAKES_SHOWN})",
            interactive=False,
            wrap=True,
            elem_id="mistakes",
        )
        gr.Markdown("Click a misclassified example to see which words made the model say what it said.")
        wrong_view, wrong_note = explanation_view(
            "Why was this wrong? Each word's push towards the predicted (wrong) class", "mistake-explain", "mistake-explain-note"
        )
        with gr.Row():
            hub_clf = gr.Textbox(
                label="Ready fine-tuned Hub classifier to compare (optional)",
                placeholder="e.g. textattack/bert-base-uncased-rotten-tomatoes",
                scale=3,
            )
            base_btn = gr.Button("Score base checkpoint", scale=1, elem_id="base-btn")
            hub_btn = gr.Button("Score Hub classifier", scale=1)
        baseline_md = gr.Markdown(elem_id="baseline")
    with gr.Tab("Manage"):
        with gr.Row():
            new_name = gr.Textbox(label="Name", scale=2, elem_id="run-name-edit")
            note = gr.Textbox(label="Note", scale=3, elem_id="run-note")
            save_btn = gr.Button("Save name and note", scale=1, elem_id="save-run")
        with gr.Row():
            resume_where = jobs_panel.where_choice("resume")  # here, or on Hugging Face Jobs (a runs folder on a bucket)
            resume_btn = gr.Button("Resume (stopped or interrupted runs)", elem_id="resume-run")
            delete_btn = gr.Button("Delete run…", variant="stop", elem_id="delete-run")
            confirm_btn = gr.Button("Yes, delete it and its files", variant="stop", visible=False, elem_id="confirm-delete")
            cancel_btn = gr.Button("Cancel", visible=False)
        with gr.Row(visible=engine.sign_in):
            show_btn = gr.Button("Showcase: show to every visitor (admins)", elem_id="showcase-on")
            hide_btn = gr.Button("Stop showing it", elem_id="showcase-off")
        resume_place = jobs_panel.build(engine, token_box, "resume", resume_where)
        manage_md = gr.Markdown(elem_id="manage-status")
    with gr.Tab("Export"):
        with gr.Row():
            zip_btn = gr.Button("Build zip", elem_id="zip-btn")
            zip_file = gr.File(label="Download", interactive=False, elem_id="zip-file")
        with gr.Row():
            repo = gr.Textbox(label="Hub repo id", placeholder="your-name/model-name", scale=2)
            write_token = gr.Textbox(label="Write token (used for this push only)", type="password", scale=2)
            private = gr.Checkbox(value=True, label="Private", scale=1)
            push_btn = gr.Button("Push to Hub", scale=1)
        with gr.Row():
            onnx_int8 = gr.Checkbox(value=True, label="Also an int8 copy (smaller, faster on CPU)", scale=2)
            onnx_btn = gr.Button("Export to ONNX (checked on the test set)", scale=2, elem_id="onnx-btn")
        export_md = gr.Markdown(elem_id="export-status")

    # ------------------------------------------------------------------------------------------- handlers
    def table_view(
        viewer: Viewer, q: str = "", st: str = "all", current: list[str] | None = None, one: str | None = None
    ) -> tuple:
        frame = _table(engine, viewer, q or "", st or "all")
        choices = _choices(engine, viewer)
        keys = {k for _, k in choices}
        return (
            frame,
            gr.update(choices=choices, value=[k for k in (current or []) if k in keys]),
            gr.update(choices=choices, value=one if one in keys else None),
            scope_text(viewer, len(choices)),
        )

    def render_table(
        q: str = "", st: str = "all", current: list[str] | None = None, one: str | None = None,
        profile: gr.OAuthProfile | None = None,
    ) -> tuple:  # fmt: skip
        return table_view(viewer_of(engine, profile), q, st, current, one)

    def refresh(profile: gr.OAuthProfile | None = None) -> tuple:
        """The table and pickers as the signed-in viewer sees them (page load, a run's end)."""
        return table_view(viewer_of(engine, profile))

    table_outputs = [table, selected, pick, scope]
    for trigger in (refresh_btn.click, query.submit, status.change):
        trigger(render_table, [query, status, selected, pick], table_outputs, api_visibility="private")

    def compare(run_ids: list[str], profile: gr.OAuthProfile | None = None) -> tuple:
        if not run_ids:
            return ("Tick at least one run.", *[gr.skip()] * len(plots), gr.skip())
        viewer = viewer_of(engine, profile)
        try:
            recs = [engine.run_record(r, viewer) for r in run_ids]
        except FtuiError as exc:
            return (error_md(exc), *[gr.skip()] * len(plots), gr.skip())
        series, everyone = [(r["name"], decode_all(r["events"])) for r in recs], engine.run_headers(viewer)
        figs = compare_charts(series, recs, everyone)  # decoded once for the charts; the baselines' dashed lines
        d = config_diff(recs) if len(recs) > 1 else EMPTY_DIFF
        msg = f"{len(recs)} runs; {len(d)} config field(s) differ." if len(recs) > 1 else "One run: nothing to diff."
        load = predictions_loader(engine, viewer)
        msg += "\n\n" + compare_md([(r["name"], load(r["run_id"])) for r in recs])
        paired = pairer(load)  # the best baseline may be a run that is not ticked
        verdicts = [f"- **{escape_md(r['name'])}**: {v}" for r in recs if (v := baseline_verdict(r, everyone, paired=paired))]
        if verdicts:
            msg += "\n\nAgainst the best baseline on the same test set:\n" + "\n".join(verdicts)
        warned = [f"- **{escape_md(r['name'])}**: {WARN} {escape_md(w['message'])}"
                  for r in recs for w in warnings_of(r["events"]) if w["kind"] != "below_baseline"]  # fmt: skip
        warned += [f"- **{escape_md(r['name'])}**: {WARN} {flag}" for r in recs if (flag := result_flag(r.get("result") or {}))]
        if warned:
            msg += "\n\nWarnings:\n" + "\n".join(warned)
        return (msg, *figs, d)

    compare_btn.click(compare, selected, [compare_msg, *plots, diff], api_name="compare_runs")

    def evaluation(run_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple:
        if not run_id:
            return "Pick a run.", EMPTY_PER_CLASS, None, EMPTY_MISTAKES, "", "", gr.skip()
        viewer = viewer_of(engine, profile)
        try:
            rec = engine.run_record(run_id, viewer)
        except FtuiError as exc:
            return error_md(exc), EMPTY_PER_CLASS, None, EMPTY_MISTAKES, "", "", gr.skip()
        res, names = rec.get("result", {}), rec.get("label_names", [])
        owner = rec.get("config", {}).get("user") or ""
        lines = [f"**{escape_md(rec['name'])}** · {rec['status']}" + (f" · by {escape_md(owner)}" if owner else "")
                 + (" · showcase: every visitor sees it" if rec.get("showcase") else "")]  # fmt: skip
        if isinstance(res.get("test_accuracy"), float) or isinstance(res.get("test_rmse"), float):
            lines.append(test_summary(res))
        at = len(lines)  # the test intervals follow the test scores (read with the predictions below)
        if flag := result_flag(res):
            lines.append(f"{WARN} {flag}")
        if rec.get("note"):
            lines.append(f"Note: {escape_md_block(rec['note'])}")
        try:
            preds = engine.test_predictions(run_id, viewer)
        except FtuiError as exc:
            return ("\n\n".join([*lines, error_md(exc)]), EMPTY_PER_CLASS, None, EMPTY_MISTAKES, rec["name"],
                    rec.get("note", ""), gr.skip())  # fmt: skip
        table = engine.per_class(run_id, viewer)
        shape = res.get("task", "single_label")
        if shape == "multi_label":
            figure = per_label_figure(table)
            table = [{k: v for k, v in r.items() if k not in ("tp", "fp", "fn")} for r in table]
            how = "with a wrong label set"
        elif shape == "regression":
            figure = regression_scatter(preds["label"].tolist(), preds["predicted"].tolist())
            how = "predicted worse than the mean would be"
        else:
            idx = {n: i for i, n in enumerate(names)}
            cm = confusion(preds["predicted"].map(idx), preds["label"].map(idx), len(names))
            figure, how = confusion_figure(cm.tolist(), names), "misclassified"
        if intervals := intervals_md(preds):
            lines.insert(at, f"95% intervals: {intervals}")
        rows = or_empty(pd.DataFrame(table).round(4), EMPTY_PER_CLASS)
        wrong = wrong_first(preds)
        cols = [c for c in ("text", "text_pair", "label", "predicted", "error", "confidence") if c in wrong.columns]
        if shape == "regression":
            cols.remove("confidence")
        lines.append(f"{len(wrong)} of {len(preds)} test examples {how}.")
        return (
            "\n\n".join(lines),
            rows,
            figure,
            mistakes_view(wrong[cols].head(MISTAKES_SHOWN)),
            rec["name"],
            rec.get("note", ""),
            gr.update(visible=False),
        )

    pick.change(
        evaluation,
        pick,
        [eval_md, per_class, cm_plot, mistakes, new_name, note, confirm_btn],
        api_name="evaluate_run",
    )

    def explain_mistake(run_id: str | None, evt: gr.SelectData, profile: gr.OAuthProfile | None = None) -> tuple[Any, str]:
        hidden = gr.update(value=None, visible=False)
        if not run_id:
            return hidden, "Pick a run."
        viewer = viewer_of(engine, profile)
        try:
            wrong = wrong_first(engine.test_predictions(run_id, viewer))
            row = int(evt.index[0]) if isinstance(evt.index, (list, tuple)) else int(evt.index)
            if not 0 <= row < len(wrong):
                return hidden, "That row is no longer in the table: pick the run again."
            ex = engine.explain(str(wrong.iloc[row]["text"]), f"run:{run_id}", viewer=viewer)
        except FtuiError as exc:
            return hidden, error_md(exc)
        truth = wrong.iloc[row]["label"]
        return show_explanation(ex, f"True label: **{escape_md(truth)}**. ")

    # ZeroGPU: explaining borrows the GPU (spaces.GPU keeps the signature, so the SelectData still arrives)
    mistakes.select(gpu(explain_mistake, explain_seconds), pick, [wrong_view, wrong_note], api_visibility="private")

    def baseline(run_id: str | None, hub_id: str, token: str, use_hub: bool, viewer: Viewer) -> str:
        if not run_id:
            return "Pick a run."
        try:
            if use_hub and not (hub_id or "").strip():
                return "Type a Hub classifier id first."
            score = engine.score_checkpoint(run_id, hub_id.strip() if use_hub else None, token_of(token), viewer)
            rec = engine.run_record(run_id, viewer)
        except FtuiError as exc:
            return error_md(exc)
        res = rec.get("result", {})
        tuned = (res.get("test_accuracy"), res.get("test_macro_f1"))
        rows = [
            "| model | test accuracy | test macro-F1 |",
            "| --- | --- | --- |",
            f"| {escape_md(score['model'])} | {score['accuracy']:.4f} | {score['macro_f1']:.4f} |",
        ]
        if isinstance(tuned[0], float):
            rows.append(f"| **{escape_md(rec['name'])}** (fine-tuned) | **{tuned[0]:.4f}** | **{tuned[1]:.4f}** |")
        return f"Same {score['n']} test examples:\n\n" + "\n".join(rows)

    scored = gpu(baseline, score_seconds)  # ZeroGPU: scoring a checkpoint on the test split borrows the GPU

    def score_base(run_id: str | None, hub_id: str, token: str, profile: gr.OAuthProfile | None = None) -> str:
        return scored(run_id, hub_id, token, False, viewer_of(engine, profile))

    def score_hub(run_id: str | None, hub_id: str, token: str, profile: gr.OAuthProfile | None = None) -> str:
        return scored(run_id, hub_id, token, True, viewer_of(engine, profile))

    base_btn.click(score_base, [pick, hub_clf, token_box], baseline_md, api_visibility="private")
    hub_btn.click(score_hub, [pick, hub_clf, token_box], baseline_md, api_visibility="private")

    def save_meta(
        run_id: str | None, name: str, text: str, q: str, st: str, sel: list[str], profile: gr.OAuthProfile | None = None
    ) -> tuple:
        if not run_id:
            return ("Pick a run.", *[gr.skip()] * 4)
        viewer = viewer_of(engine, profile)
        try:
            engine.rename_run(run_id, name, viewer)
            engine.set_note(run_id, text, viewer)
        except FtuiError as exc:
            return (error_md(exc), *[gr.skip()] * 4)
        return (ok_md("Saved."), *table_view(viewer, q, st, sel, run_id))

    save_btn.click(save_meta, [pick, new_name, note, query, status, selected], [manage_md, *table_outputs], api_name="update_run")

    def resume(run_id: str | None, token: str, profile: gr.OAuthProfile | None = None) -> str:
        if not run_id:
            return "Pick a run."
        try:
            run = engine.resume_run(run_id, token_of(token), viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc)
        return ok_md(f"Resuming **{escape_md(run.name)}**: follow it in the Train tab.")

    resumed = resume_btn.click(resume_place.resume(pick, resume), {pick, token_box, *resume_place.inputs}, manage_md,
                               api_visibility="private")  # fmt: skip

    def ask_delete(run_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple:
        if not run_id:
            return "Pick a run.", gr.skip(), gr.skip()
        run = engine.get_run(run_id, viewer_of(engine, profile))
        if run is None:
            return "That run is not one you can see: pick a run from the table.", gr.skip(), gr.skip()
        name = run.name
        return (
            f"Delete **{escape_md(name)}** and all its files? This cannot be undone.",
            gr.update(visible=True),
            gr.update(visible=True),
        )

    delete_btn.click(ask_delete, pick, [manage_md, confirm_btn, cancel_btn], api_visibility="private")
    cancel_btn.click(
        lambda: ("Kept.", gr.update(visible=False), gr.update(visible=False)),
        None,
        [manage_md, confirm_btn, cancel_btn],
        api_visibility="private",
    )

    def do_delete(run_id: str | None, q: str, st: str, sel: list[str], profile: gr.OAuthProfile | None = None) -> tuple:
        hidden = (gr.update(visible=False), gr.update(visible=False))
        if not run_id:
            return ("Pick a run.", *hidden, *[gr.skip()] * 4)
        viewer = viewer_of(engine, profile)
        try:
            name = engine.run_record(run_id, viewer)["name"]
            engine.delete_run(run_id, viewer)
        except FtuiError as exc:
            return (error_md(exc), *hidden, *[gr.skip()] * 4)
        kept = [s for s in sel or [] if s != run_id]
        return (ok_md(f"Deleted {escape_md(name)}."), *hidden, *table_view(viewer, q, st, kept, None))

    confirm_btn.click(
        do_delete,
        [pick, query, status, selected],
        [manage_md, confirm_btn, cancel_btn, *table_outputs],
        api_name="delete_run",
    )

    def build_zip(run_id: str | None, profile: gr.OAuthProfile | None = None) -> tuple[str, Any]:
        if not run_id:
            return "Pick a run.", None
        try:
            path = engine.export_zip(run_id, viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc), None
        return ok_md(f"Zip ready: {code_md(path.name)} ({path.stat().st_size / 2**20:.1f} MB)."), str(path)

    zip_btn.click(build_zip, pick, [export_md, zip_file], api_name="export_zip")

    def push(run_id: str | None, repo_id: str, token: str, is_private: bool, profile: gr.OAuthProfile | None = None) -> str:
        if not run_id:
            return "Pick a run."
        try:
            url = engine.push_to_hub(run_id, repo_id, token_of(token), bool(is_private), viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc)
        return ok_md(f"Pushed to {url}")

    push_btn.click(push, [pick, repo, write_token, private], export_md, api_visibility="private")

    def to_onnx(run_id: str | None, int8: bool = True, profile: gr.OAuthProfile | None = None) -> str:
        """Export the run to ONNX (and int8), checked against PyTorch on its test set."""
        if not run_id:
            return "Pick a run."
        try:
            report = engine.export_onnx(run_id, bool(int8), viewer_of(engine, profile))
        except FtuiError as exc:
            return error_md(exc)
        return ok_md("ONNX export ready. ") + onnx_md(report)

    onnx_btn.click(to_onnx, [pick, onnx_int8], export_md, api_name="export_onnx")
    if engine.sign_in:  # sign-in on: an admin shows runs to every visitor (read-only)

        def showcase(run_id: str | None, on: bool, profile: gr.OAuthProfile | None = None) -> str:
            if not run_id:
                return "Pick a run."
            try:
                run = engine.set_showcase(run_id, on, viewer_of(engine, profile))
            except FtuiError as exc:
                return error_md(exc)
            return ok_md(f"{escape_md(run.name)} is {'now shown to every visitor' if on else 'no longer shown to others'}.")

        def show(run_id: str | None, profile: gr.OAuthProfile | None = None) -> str:
            return showcase(run_id, True, profile)

        def hide(run_id: str | None, profile: gr.OAuthProfile | None = None) -> str:
            return showcase(run_id, False, profile)

        show_btn.click(show, pick, manage_md, api_name="showcase_run")
        hide_btn.click(hide, pick, manage_md, api_visibility="private")
    return RunsUI(refresh=refresh, outputs=table_outputs, resumed=resumed)
