"""Pure functions over stored run records: the runs table, config diffs and the curves of several runs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from ftui.config import RunConfig
from ftui.escaping import escape_md
from ftui.icons import WARN
from ftui.recipes import recipe_of
from ftui.reference import baseline_of, best_baselines, difference, measure_of, score_on_test
from ftui.significance import Paired, interval_cell_of, paired_text, wilson_cell

TABLE_COLUMNS = [
    "run_id",
    "name",
    "method",
    "delta_vs_baseline",
    "dataset",
    "checkpoint",
    "freeze",
    "lr",
    "batch",
    "epochs",
    "max_len",
    "status",
    "best_eval_acc",
    "test_acc",
    "test_f1",
    "duration_s",
    "note",
    "test_ci",
    "vs_base_noise",
    "vs_base_metric",
]


def _dataset(data: dict[str, Any]) -> str:
    source = data.get("source", "demo")
    if source == "demo":
        return "demo"
    ident = str(data.get("dataset_id", ""))
    if source != "hub":
        ident = ident.rstrip("/").rsplit("/", 1)[-1]  # a local path: its last part is enough for the table
    return ident + (f" / {data['config_name']}" if data.get("config_name") else "")


def _checkpoint(model: dict[str, Any]) -> str:
    if model.get("source", "packaged") == "packaged":
        return "all-MiniLM-L6-v2 (packaged)"
    ident = str(model.get("checkpoint", ""))
    return ident.rstrip("/").rsplit("/", 1)[-1] if model.get("source") == "local" else ident


def method_of(cfg: dict[str, Any]) -> str:
    """What a run trains, in a word or two: fine-tune, head→fine-tune (two phases), TF-IDF or embeddings (baselines)."""
    return recipe_of(cfg).method(RunConfig.from_dict(cfg))


def _helps(cfg: dict[str, Any]) -> str:
    """What tends to lift a fine-tuned model above a bag-of-words baseline (the settings it already uses left out)."""
    t = cfg.get("train", {})
    tips = ["more epochs (--epochs)"]
    if t.get("long_text", "truncate") != "chunks":
        tips.append("reading long texts whole (Long texts: head + tail or chunks; --long-text chunks)")
    if t.get("schedule") != "two-phase":
        tips.append("the head-first schedule (Schedule: head first, then fine-tune; --schedule two-phase)")
    tips += ["a larger checkpoint", "a GPU via Hugging Face Jobs (train --on hf-jobs) to afford those"]
    return "What tends to help: " + ", ".join(tips[:-1]) + ", or " + tips[-1] + "."


def baseline_verdict(rec: dict[str, Any], records: Sequence[dict[str, Any]], markdown: bool = True,
                     paired: Callable[[str, str], list[Paired] | None] | None = None) -> str:  # fmt: skip
    """One sentence comparing a completed fine-tuned run with the best baseline on its test split and label shape, in
    the shape's score (accuracy, micro-F1, RMSE), '' without one; Markdown with the name escaped, or (markdown=False)
    plain text for an event, escaped only where it is shown. paired(run_id, baseline_id): the paired tests on their
    test predictions; a difference within noise is said so. Below the baseline, it says what tends to help."""
    base = baseline_of(rec, records)
    diff = difference(rec, base) if base is not None else None
    if base is None or diff is None:
        return ""
    m = measure_of(rec.get("result"))
    score, b_score = float(score_on_test(rec.get("result")) or 0.0), float(score_on_test(base.get("result")) or 0.0)
    unit = "" if m.key == "accuracy" else f"{m.words} "  # accuracy is the plain case: its name is left out
    mine, theirs = f"{unit}{m.shown(score)}", f"{unit}{m.shown(b_score)}"
    name = str(base.get("name", "baseline"))
    b_name = f"**{escape_md(name)}**" if markdown else f"'{name}'"
    worse = diff < 0 if m.higher_is_better else diff > 0
    helps = _helps(rec.get("config", {}))
    tests = paired(str(rec.get("run_id")), str(base.get("run_id"))) if paired and rec.get("run_id") else None
    test = next((p for p in tests or [] if p.metric == m.words), None)  # the paired test of the shape's own score
    if test is not None:
        said = paired_text(test) if markdown else paired_text(test).replace("**", "")
        if test.noise and worse:  # not worse by more than noise, but not better either: still worth a warning
            return (f"{WARN} This fine-tuned model ({mine}) does not beat the baseline {b_name} ({theirs}) on the same "
                    f"{test.n:,} test texts: {said}. {helps}")  # fmt: skip
        if test.noise:
            return (f"Within noise of the best baseline {b_name} ({theirs} vs {mine} on the same {test.n:,} test texts): "
                    f"{said}.")  # fmt: skip
        what = f"on the same {test.n:,} test texts: {said}"
        if worse:
            return f"{WARN} The baseline {b_name} ({theirs}) beats this fine-tuned model ({mine}) {what}. {helps}"
        return f"This fine-tuned model beats the best baseline {b_name} ({theirs}) {what}."
    if worse:
        return (f"{WARN} The baseline {b_name} ({theirs}) beats this fine-tuned model ({mine}) by {m.gap(diff)} on the "
                f"same test set. {helps}")  # fmt: skip
    return f"This fine-tuned model beats the best baseline {b_name} ({theirs}) by {m.gap(diff)} on the same test set."


def run_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One line of the runs table from a stored record (header fields; events not needed)."""
    cfg = rec.get("config", {})
    t, res = cfg.get("train", {}), rec.get("result", {}) or {}
    best = (res.get("best_eval") or {}).get("accuracy") if recipe_of(cfg).classifies else None
    ended, started = rec.get("ended_at"), rec.get("started_at")
    return {
        "run_id": rec["run_id"],
        "name": rec.get("name", ""),
        "method": method_of(cfg) + SHAPE_SUFFIX.get(str(res.get("task", "")), ""),
        "delta_vs_baseline": None,  # filled by runs_frame, which sees the other runs
        "dataset": _dataset(cfg.get("data", {})),
        "checkpoint": _checkpoint(cfg.get("model", {})),
        "freeze": cfg.get("model", {}).get("freeze_depth", 0),
        "lr": t.get("learning_rate"),
        "batch": t.get("batch_size"),
        "epochs": t.get("epochs"),
        "max_len": t.get("max_length"),
        "status": rec.get("status", ""),
        "best_eval_acc": round(best, 4) if isinstance(best, (int, float)) else None,
        "test_acc": round(res["test_accuracy"], 4) if isinstance(res.get("test_accuracy"), (int, float)) else None,
        "test_f1": round(res["test_macro_f1"], 4) if isinstance(res.get("test_macro_f1"), (int, float)) else None,
        "duration_s": round(ended - started, 1) if ended and started else None,
        "note": rec.get("note", ""),
        "test_ci": interval_cell_of(res) or wilson_cell(res.get("test_accuracy"), res.get("test_size")),
        "vs_base_noise": None,  # filled by runs_frame when it can pair the run with its baseline
        "vs_base_metric": None,  # the score "vs base" is a difference of (accuracy, micro-F1, RMSE)
    }


BASELINE_BLANKS = ("lr", "batch", "epochs", "freeze")  # settings a baseline run does not use


def runs_frame(records: Sequence[dict[str, Any]], query: str = "", status: str = "all",
               paired: Callable[[str, str], list[Paired] | None] | None = None) -> pd.DataFrame:  # fmt: skip
    """The runs table, newest first, filtered by a free-text query (any column) and a status; with paired(run_id,
    baseline_id) (the paired tests of their test predictions), a difference to the baseline within noise says so."""
    records = list(records)
    best = best_baselines(records)
    adapted = {str(Path(r.get("out_dir", "")) / "model"): r.get("name", "") for r in records
               if recipe_of(r.get("config", {})).adapts}  # fmt: skip
    rows = []
    for rec in reversed(records):
        row = run_row(rec)
        start = str(rec.get("config", {}).get("model", {}).get("checkpoint", ""))
        if start in adapted:  # a classifier that started from an adapted checkpoint names the run that made it
            row["checkpoint"] = f"adapted: {adapted[start]}"
        cfg = rec.get("config", {})
        recipe = recipe_of(cfg)
        if recipe.reference:  # a logistic regression: no optimiser settings, and TF-IDF reads no model
            row.update(dict.fromkeys(BASELINE_BLANKS, None))
            if not recipe.reads_checkpoint(RunConfig.from_dict(cfg)):  # bag-of-words: no checkpoint, no max length
                row.update(checkpoint=None, max_len=None)
        base = baseline_of(rec, records, best=best)
        diff = difference(rec, base) if base is not None else None
        if base is not None and diff is not None:
            m = measure_of(rec.get("result"))
            row["delta_vs_baseline"], row["vs_base_metric"] = round(diff, 4), m.words
            tests = paired(rec["run_id"], base["run_id"]) if paired else None
            test = next((p for p in tests or [] if p.metric == m.words), None)
            row["vs_base_noise"] = test.noise if test else None
        rows.append(row)
    frame = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    if status and status != "all":
        frame = frame[frame["status"] == status]
    q = (query or "").strip().lower()
    if q and not frame.empty:
        hay = frame.apply(lambda r: " ".join(map(str, r)).lower(), axis=1)
        frame = frame[hay.str.contains(q, regex=False)]
    return frame.reset_index(drop=True)


# The runs table as shown: scores first, short one-word-ish headers, widths that fit them (no mid-word wrap).
DISPLAY_COLUMNS: list[tuple[str, str, int]] = [
    ("name", "run", 200),
    ("status", "status", 96),
    ("test_acc", "test acc", 84),
    ("test_f1", "test F1", 84),
    ("delta_vs_baseline", "vs base", 84),
    ("test_ci", "test acc 95% CI", 150),
    ("best_eval_acc", "best val", 84),
    ("method", "method", 124),
    ("dataset", "dataset", 150),
    ("checkpoint", "model", 190),
    ("freeze", "frozen", 76),
    ("lr", "lr", 80),
    ("batch", "batch", 72),
    ("epochs", "epochs", 80),
    ("max_len", "max len", 84),
    ("duration_s", "time (s)", 84),
    ("note", "note", 160),
    ("run_id", "id", 200),
]
SHAPE_SUFFIX = {  # the method column names a label shape other than single-label classes (its scores differ)
    "multi_label": " · multi-label",
    "regression": " · regression",
}

TABLE_LEGEND = (
    "**test acc / test F1**: accuracy and macro-F1 of the best checkpoint on the test split (multi-label: subset accuracy "
    "and macro-F1; regression: none, see the run's evaluation) · **vs base**: test accuracy "
    "minus the best baseline's on the same test split and label shape, in percentage points (multi-label: micro-F1; "
    "regression: RMSE, where minus is better); (noise) when a paired test on the same test texts (exact McNemar; a "
    "paired bootstrap for micro-F1 and RMSE) gives p ≥ 0.05 · **test acc 95% CI**: Wilson interval of the test "
    "accuracy (multi-label: bootstrap interval of micro-F1), with the number of test texts · **best val**: best "
    "validation accuracy · **frozen**: freeze depth (bottom layers frozen) · **lr**: learning rate · **max len**: "
    "max sequence length in tokens · **time**: wall clock of the run"
)


def short_number(x: Any) -> str:
    """A learning rate as people write it: 3e-4, 2.5e-5, 0.01 (not 0.0003, 300µ or 0.00 in a narrow column)."""
    if not isinstance(x, (int, float)) or x != x:  # None, text, NaN
        return ""
    if x == 0 or 1e-3 <= abs(x) < 1e4:
        return f"{x:g}"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def points(delta: Any, metric: Any = "accuracy") -> str:
    """A difference to the baseline as people read it: accuracy in signed percentage points (-0.3438 -> "-34.4 pts"),
    micro-F1 likewise and named ("+2.0 pts micro-F1"), an RMSE in its own units ("-0.052 RMSE")."""
    if not isinstance(delta, (int, float)) or delta != delta:
        return ""
    if metric == "RMSE":
        return f"{delta:+.3g} RMSE"
    return f"{100 * delta:+.1f} pts" + (f" {metric}" if isinstance(metric, str) and metric != "accuracy" else "")


def display_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The runs table with the display order and headers of DISPLAY_COLUMNS (an empty table keeps its headers); the
    learning rate and the difference to the baseline written as people read them."""
    keys = [k for k, _, _ in DISPLAY_COLUMNS]
    shown = frame.reindex(columns=keys)
    shown["lr"] = [short_number(x) for x in shown["lr"]]
    blank = pd.Series([None] * len(frame), dtype=object)
    noise = frame["vs_base_noise"] if "vs_base_noise" in frame else blank
    metric = frame["vs_base_metric"] if "vs_base_metric" in frame else blank
    shown["delta_vs_baseline"] = [points(x, m) + (" (noise)" if n is True else "")
                                  for x, n, m in zip(shown["delta_vs_baseline"], noise, metric, strict=True)]  # fmt: skip
    return shown.rename(columns={k: h for k, h, _ in DISPLAY_COLUMNS})


def display_widths() -> list[str]:
    """Column widths for the table, in DISPLAY_COLUMNS order."""
    return [f"{w}px" for _, _, w in DISPLAY_COLUMNS]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1}} -> {'train.lr': 1}; lists become tuples so they compare."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = tuple(v) if isinstance(v, list) else v
    return out


def config_diff(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Only the config fields whose values differ between the runs: one row per field, one column per run."""
    flat = [flatten(r.get("config", {})) for r in records]
    keys = sorted({k for f in flat for k in f})
    names = [f"{r.get('name', r['run_id'])}" for r in records]
    names = [n if names.count(n) == 1 else f"{n} ({r['run_id']})" for n, r in zip(names, records, strict=True)]
    rows = []
    for k in keys:
        values = [f.get(k) for f in flat]
        if len({repr(v) for v in values}) > 1:
            rows.append({"field": k, **{n: ("" if v is None else str(v)) for n, v in zip(names, values, strict=True)}})
    return pd.DataFrame(rows, columns=["field", *names])


QUEUE_COLUMNS = [
    "#", "name", "method", "checkpoint", "dataset", "freeze", "lr", "epochs", "batch", "max_len", "sweep", "queued by",
]  # fmt: skip


def queue_frame(items: Sequence[Any]) -> pd.DataFrame:
    """The queue panel's table: waiting runs in the order they start (items are runner.QueuedRun)."""
    rows = []
    for q in items:
        cfg = q.config.to_dict()
        t = cfg["train"]
        rows.append({
            "#": q.position,
            "name": t.get("run_name") or "(generated at start)",
            "method": method_of(cfg),
            "checkpoint": _checkpoint(cfg["model"]),
            "dataset": _dataset(cfg["data"]),
            "freeze": cfg["model"].get("freeze_depth", 0),
            "lr": t.get("learning_rate"),
            "epochs": t.get("epochs"),
            "batch": t.get("batch_size"),
            "max_len": t.get("max_length"),
            "sweep": q.sweep_id,
            "queued by": "this app" if q.here else "another process",
        })  # fmt: skip
    return pd.DataFrame(rows, columns=QUEUE_COLUMNS)
