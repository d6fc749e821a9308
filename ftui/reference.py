"""The score to beat: per test split and label shape, the best completed baseline, the score each shape is compared by
(accuracy, micro-F1, RMSE), a run's difference to it, and the line the charts draw for it. Pure functions over stored
run records (the runs table, the verdicts, the charts and the automatic baseline all match baselines here)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftui.escaping import escape_plot
from ftui.recipes import BASELINE_NAMES, recipe_of

SINGLE, MULTI, REGRESSION = "single_label", "multi_label", "regression"  # ftui.tasks.Task values (not imported: torch)
LIVE = ("queued", "running", "completed")  # a baseline in one of these states is there, or soon will be


@dataclass(frozen=True)
class Measure:
    """The score runs of one label shape are compared by (their best checkpoint is chosen by it too: ftui.tasks)."""

    key: str  # in results ('test_' + key) and in best_eval
    words: str  # as the page says it; also the paired test's metric name (ftui.significance)
    higher_is_better: bool

    def shown(self, value: float) -> str:
        """A score as the verdicts and the chart write it: 0.812, or an RMSE to four significant digits."""
        return f"{value:.3f}" if self.higher_is_better else f"{value:.4g}"

    def gap(self, diff: float) -> str:
        """A difference in words: '3.1 points' of a score, '0.052' of an error."""
        return f"{100 * abs(diff):.1f} points" if self.higher_is_better else f"{abs(diff):.4g}"


MEASURES = {
    SINGLE: Measure("accuracy", "accuracy", True),
    MULTI: Measure("micro_f1", "micro-F1", True),
    REGRESSION: Measure("rmse", "RMSE", False),
}


def shape_of(result: dict[str, Any] | None) -> str:
    """A result's label shape; results from before label shapes (and every old baseline) are single-label."""
    shape = str((result or {}).get("task") or SINGLE)
    return shape if shape in MEASURES else SINGLE


def measure_of(result: dict[str, Any] | None) -> Measure:
    """How a result is compared with its baseline."""
    return MEASURES[shape_of(result)]


def score_on_test(result: dict[str, Any] | None) -> float | None:
    """The result's test score in its shape's measure (None when it has none)."""
    value = (result or {}).get(f"test_{measure_of(result).key}")
    return float(value) if isinstance(value, (int, float)) and value == value else None


def score_on_validation(result: dict[str, Any] | None) -> float | None:
    """The result's best validation score in its shape's measure (what the validation charts plot)."""
    value = ((result or {}).get("best_eval") or {}).get(measure_of(result).key)
    return float(value) if isinstance(value, (int, float)) and value == value else None


def split_key(cfg: dict[str, Any]) -> str:
    """Runs with equal keys were tested on the same rows with the same label shape (the data config says both; the
    training-row cap does not change the test split)."""
    data = {k: v for k, v in cfg.get("data", {}).items() if k not in ("max_train_examples", "trust_remote_code")}
    return json.dumps(data, sort_keys=True, default=str)


def best_baselines(records: Sequence[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """Per (test split, label shape), the completed baseline with the best test score."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in records:
        cfg, res = rec.get("config", {}), rec.get("result", {}) or {}
        score = score_on_test(res)
        if not recipe_of(cfg).reference or score is None:
            continue
        key, sign = (split_key(cfg), shape_of(res)), 1.0 if measure_of(res).higher_is_better else -1.0
        if key not in best or sign * score > sign * float(score_on_test(best[key]["result"]) or 0.0):
            best[key] = rec
    return best


def baseline_of(rec: dict[str, Any], records: Sequence[dict[str, Any]], shape: str | None = None,
                best: dict[tuple[str, str], dict[str, Any]] | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The best completed baseline on a record's test split and label shape (`shape`: a running run's, from its
    events; else its result's); None for a baseline itself or when there is none. `best`: best_baselines, when known."""
    cfg = rec.get("config", {})
    if recipe_of(cfg).reference:
        return None
    best = best_baselines(records) if best is None else best
    return best.get((split_key(cfg), shape or shape_of(rec.get("result"))))


def difference(rec: dict[str, Any], base: dict[str, Any]) -> float | None:
    """A run's test score minus its baseline's, in their measure (None when either is missing)."""
    a, b = score_on_test(rec.get("result")), score_on_test(base.get("result"))
    return None if a is None or b is None else a - b


def has_baseline(cfg: dict[str, Any], records: Sequence[dict[str, Any]]) -> bool:
    """A baseline on this config's test split (any label shape: the data config decides it) is queued, running or
    completed: the automatic one is not needed."""
    key = split_key(cfg)
    return any(recipe_of(r.get("config", {})).reference and r.get("status") in LIVE
               and split_key(r.get("config", {})) == key for r in records)  # fmt: skip


@dataclass(frozen=True)
class Line:
    """A baseline as a horizontal dashed line on a validation chart."""

    value: float  # the baseline's validation score, in the chart's units
    label: str  # "TF-IDF baseline 0.81 (accuracy)" (escaped for the chart)
    shape: str  # the label shape whose chart it belongs on


def chart_line(rec: dict[str, Any], records: Sequence[dict[str, Any]], shape: str | None = None) -> Line | None:
    """The line a run's validation chart draws for its baseline: the best baseline's validation score (the charts plot
    validation), labelled with its method; None without one."""
    base = baseline_of(rec, records, shape)
    value = score_on_validation(base.get("result")) if base else None
    if base is None or value is None:
        return None
    m = measure_of(base["result"])
    method = BASELINE_NAMES.get(str(base.get("config", {}).get("baseline", "")), "best")
    shown = f"{value:.2f}" if m.higher_is_better else f"{value:.3g}"  # a chart label: two decimals are enough
    return Line(value, escape_plot(f"{method} baseline {shown} ({m.words})"), shape_of(base["result"]))
