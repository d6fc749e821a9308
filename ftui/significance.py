"""Is a difference noise? Test-score intervals (Wilson, bootstrap), paired tests on the same test texts (exact McNemar,
paired bootstrap), the validation size a checkpoint pick needs, and ties within noise: pure functions and their wording."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from ftui.escaping import escape_md

CONFIDENCE = 0.95  # every interval shown is a 95% one
Z = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # 1.959963984540054
NOISE_P = 0.05  # the rule: a paired test with p >= this says "within noise" (no difference claimed)
RESAMPLES = 1000  # bootstrap resamples: the interval ends move by about a tenth of a point between seeds at n = 200
SEED = 0  # bootstrap resamples are seeded, so the page shows the same interval every time
VAL_HALF_WIDTH = 0.05  # a validation split whose 95% interval is wider than +-5 points cannot rank checkpoints reliably
PREDICTIONS_FILE = "test_predictions.parquet"  # as training.PREDICTIONS_FILE (not imported: training imports torch)
TEXT_COLUMNS = ("text", "text_pair")  # what makes two runs' test rows "the same test texts" (with the label)
THRESHOLD_COLUMN = "threshold"  # multi-label predictions files: the decision threshold each row was scored at
PLANNING_ACCURACY = 0.8  # before any run, the accuracy a validation split is sized for (a typical fine-tuned score)


@dataclass(frozen=True)
class Interval:
    """A test score with its 95% interval, how it was computed and on how many texts."""

    metric: str  # "accuracy", "macro-F1", "subset accuracy", "RMSE"
    value: float
    low: float
    high: float
    n: int
    method: str  # "Wilson" (a share of right answers) or "bootstrap" (any other score)

    @property
    def half_width(self) -> float:
        """Half the interval's width (Wilson intervals are not symmetric around the value)."""
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Paired:
    """Two runs' score on the same test texts: the difference (a minus b), its interval and the paired test's p."""

    metric: str
    a: float
    b: float
    low: float  # 95% interval of a - b
    high: float
    p: float
    n: int
    test: str  # "exact McNemar" or "paired bootstrap"
    only_a: int = 0  # McNemar: texts only run a gets right
    only_b: int = 0  # ... and only run b

    @property
    def diff(self) -> float:
        """a - b."""
        return self.a - self.b

    @property
    def noise(self) -> bool:
        """The rule: p >= NOISE_P means the runs cannot be told apart on these texts."""
        return self.p >= NOISE_P


# ------------------------------------------------------------------------------------------------ statistics
def wilson(successes: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a proportion (successes out of n); (0, 1) when n is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval(correct: Sequence[bool] | np.ndarray, metric: str = "accuracy") -> Interval:
    """A share of right answers with its Wilson interval."""
    flags = np.asarray(correct, dtype=bool)
    n, k = len(flags), int(flags.sum())
    low, high = wilson(k, n)
    return Interval(metric, k / n if n else 0.0, low, high, n, "Wilson")


def bootstrap_interval(score: Callable[[np.ndarray], float], n: int, metric: str, resamples: int = RESAMPLES,
                       seed: int = SEED) -> Interval:  # fmt: skip
    """Percentile bootstrap interval of score(indices) over the n test rows (resampled with replacement)."""
    value = score(np.arange(n))
    rng = np.random.default_rng(seed)
    draws = np.array([score(rng.integers(0, n, n)) for _ in range(resamples)]) if n else np.array([value])
    low, high = np.quantile(draws, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    return Interval(metric, float(value), float(low), float(high), n, "bootstrap")


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p: the binomial test of min(b, c) out of the b + c discordant texts at one half."""
    m = only_a + only_b
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**m)  # exact integers: no overflow however many texts disagree


def paired_accuracy(correct_a: np.ndarray, correct_b: np.ndarray, metric: str = "accuracy") -> Paired:
    """Accuracy a minus b on the same texts: exact McNemar p on the texts only one run gets right, and the paired
    (Wald) interval of the difference."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    n = len(a)
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    diff = (only_a - only_b) / n if n else 0.0
    se = math.sqrt(max(0.0, only_a + only_b - n * diff * diff)) / n if n else 0.0
    return Paired(metric, float(a.mean()) if n else 0.0, float(b.mean()) if n else 0.0, diff - Z * se, diff + Z * se,
                  mcnemar_exact(only_a, only_b), n, "exact McNemar", only_a, only_b)  # fmt: skip


def paired_bootstrap(score_a: Callable[[np.ndarray], float], score_b: Callable[[np.ndarray], float], n: int, metric: str,
                     resamples: int = RESAMPLES, seed: int = SEED) -> Paired:  # fmt: skip
    """Score a minus b, both on the same resampled texts each time: percentile interval of the difference and the
    two-sided p (twice the share of resamples on the far side of zero, at most 1)."""
    idx = np.arange(n)
    a, b = score_a(idx), score_b(idx)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for i in range(resamples):
        draw = rng.integers(0, n, n)
        diffs[i] = score_a(draw) - score_b(draw)
    low, high = np.quantile(diffs, [(1 - CONFIDENCE) / 2, (1 + CONFIDENCE) / 2])
    p = min(1.0, 2 * min(float((diffs <= 0).mean()), float((diffs >= 0).mean()))) if n else 1.0
    return Paired(metric, float(a), float(b), float(low), float(high), p, n, "paired bootstrap")


def macro_f1_of(gold: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], float]:
    """score(indices): macro-F1 over the classes seen in those rows' labels or predictions (scikit-learn's rule)."""
    k = int(max(gold.max(initial=0), pred.max(initial=0))) + 1

    def score(idx: np.ndarray) -> float:
        g, p = gold[idx], pred[idx]
        tp = np.bincount(g[g == p], minlength=k).astype(float)
        fp = np.bincount(p, minlength=k) - tp
        fn = np.bincount(g, minlength=k) - tp
        seen = (tp + fp + fn) > 0
        denom = 2 * tp + fp + fn
        f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
        return float(f1[seen].mean()) if seen.any() else 0.0

    return score


def rmse_of(gold: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], float]:
    """score(indices): root mean squared error of those rows."""
    sq = (np.asarray(pred, dtype=float) - np.asarray(gold, dtype=float)) ** 2
    return lambda idx: float(np.sqrt(sq[idx].mean())) if len(idx) else 0.0


def micro_f1_of(gold: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], float]:
    """score(indices): micro-F1 of those rows' label sets (boolean texts x labels matrices), from per-text counts so a
    resample costs one pass over the texts, not over every label decision."""
    g, p = np.asarray(gold, dtype=bool), np.asarray(pred, dtype=bool)
    tp = (g & p).sum(1).astype(float)
    wrong = (g ^ p).sum(1).astype(float)  # false positives plus false negatives

    def score(idx: np.ndarray) -> float:
        right = 2 * tp[idx].sum()
        denom = right + wrong[idx].sum()
        return float(right / denom) if denom else 0.0

    return score


def half_width_at(p: float, n: int) -> float:
    """Half-width of the Wilson interval of an accuracy p measured on n texts."""
    low, high = wilson(round(p * n), n) if n else (0.0, 1.0)
    return (high - low) / 2


def needed_size(p: float, half_width: float = VAL_HALF_WIDTH) -> int:
    """The fewest texts whose Wilson interval at accuracy p is at most +-half_width wide (binary search: the width
    shrinks as n grows)."""
    lo, hi = 1, 10_000_000
    while lo < hi:
        mid = (lo + hi) // 2
        low, high = wilson(p * mid, mid)  # a fractional count: the width at exactly p, not at a rounded one
        if (high - low) / 2 <= half_width:
            hi = mid
        else:
            lo = mid + 1
    return lo


def two_proportion_p(p1: float, n1: int, p2: float, n2: int) -> float:
    """Two-sided p of the pooled two-proportion z-test (unpaired: used where per-text answers are not kept)."""
    if n1 <= 0 or n2 <= 0:
        return 1.0
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0 if p1 == p2 else 0.0
    return 2 * (1 - NormalDist().cdf(abs(p1 - p2) / se))


# ------------------------------------------------------------------------------------------ predictions files
def _probability_columns(frame: pd.DataFrame) -> bool:
    return any(str(c).startswith("y(") for c in frame.columns)


def label_sets(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """A multi-label predictions file's true and predicted label sets (boolean texts x labels), or None when it does
    not say the threshold it was scored at (files written before the threshold column)."""
    gold_cols = [c for c in frame.columns if str(c).startswith("y(")]
    if not gold_cols or THRESHOLD_COLUMN not in frame.columns:
        return None
    prob_cols = [f"p({str(c)[2:]}" for c in gold_cols]  # 'y(name)' -> 'p(name)': the same label, in the same order
    if any(c not in frame.columns for c in prob_cols):
        return None
    gold = frame[gold_cols].to_numpy(dtype=bool)
    pred = frame[prob_cols].to_numpy(dtype=float) >= frame[THRESHOLD_COLUMN].to_numpy(dtype=float)[:, None]
    return gold, pred


def micro_f1_interval(gold: np.ndarray, pred: np.ndarray) -> Interval:
    """Multi-label micro-F1 with its percentile bootstrap interval over the test texts."""
    return bootstrap_interval(micro_f1_of(gold, pred), len(gold), "micro-F1")


def test_intervals(frame: pd.DataFrame) -> list[Interval]:
    """The intervals of a run's test scores from its saved test predictions (save_predictions' columns)."""
    n = len(frame)
    if n == 0 or "correct" not in frame.columns:
        return []
    if "error" in frame.columns:  # regression
        return [bootstrap_interval(rmse_of(frame["label"].to_numpy(), frame["predicted"].to_numpy()), n, "RMSE")]
    if _probability_columns(frame):  # multi-label: micro-F1 (the score it is judged by), then whole label sets right
        sets = label_sets(frame)
        subset = wilson_interval(frame["correct"].to_numpy(), "subset accuracy")
        return [subset] if sets is None else [micro_f1_interval(*sets), subset]
    gold, pred = _codes(frame)
    return [wilson_interval(frame["correct"].to_numpy()), bootstrap_interval(macro_f1_of(gold, pred), n, "macro-F1")]


def _codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions as integer codes over the classes either holds."""
    names = {v: i for i, v in enumerate(sorted(set(frame["label"].astype(str)) | set(frame["predicted"].astype(str))))}
    return (frame["label"].astype(str).map(names).to_numpy(dtype=int),
            frame["predicted"].astype(str).map(names).to_numpy(dtype=int))  # fmt: skip


def _keys(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in (*TEXT_COLUMNS, "label") if c in frame.columns]
    return frame[cols].astype(str).agg("\x1f".join, axis=1)


def align(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """Both runs' test rows in one order when they hold the same texts with the same labels, else None (they cannot
    be paired). Rows in the same order pair as they are; otherwise both are sorted by text, text pair and label."""
    if len(a) != len(b) or len(a) == 0 or set(a.columns) & {"text", "label"} != {"text", "label"}:
        return None
    if {"text", "label"} - set(b.columns) or ("text_pair" in a.columns) != ("text_pair" in b.columns):
        return None
    ka, kb = _keys(a), _keys(b)
    if (ka.to_numpy() == kb.to_numpy()).all():
        return a.reset_index(drop=True), b.reset_index(drop=True)
    oa, ob = np.argsort(ka.to_numpy(), kind="stable"), np.argsort(kb.to_numpy(), kind="stable")
    if not (ka.to_numpy()[oa] == kb.to_numpy()[ob]).all():
        return None
    return a.iloc[oa].reset_index(drop=True), b.iloc[ob].reset_index(drop=True)


def compare_runs(a: pd.DataFrame, b: pd.DataFrame, accuracy_only: bool = False) -> list[Paired] | None:
    """Run a against run b on the same test texts, the label shape's main score first: accuracy (exact McNemar) and,
    for classes, macro-F1 (paired bootstrap); micro-F1 (paired bootstrap) and subset accuracy (McNemar) for label sets;
    RMSE (paired bootstrap) for numbers. accuracy_only keeps the first test only. None when they were not tested on
    the same texts."""
    pair = align(a, b)
    if pair is None or "correct" not in a.columns or "correct" not in b.columns:
        return None
    a, b = pair
    if ("error" in a.columns) != ("error" in b.columns) or _probability_columns(a) != _probability_columns(b):
        return None  # different label shapes: their scores do not compare
    n = len(a)
    if "error" in a.columns:
        gold = a["label"].to_numpy()
        return [paired_bootstrap(rmse_of(gold, a["predicted"].to_numpy()), rmse_of(gold, b["predicted"].to_numpy()), n,
                                 "RMSE")]  # fmt: skip
    if _probability_columns(a):  # micro-F1 first (the score label sets are judged by), when both files can say it
        subset = paired_accuracy(a["correct"].to_numpy(), b["correct"].to_numpy(), "subset accuracy")
        sa, sb = label_sets(a), label_sets(b)
        if sa is None or sb is None or sa[0].shape != sb[0].shape:
            return [subset]
        micro = paired_bootstrap(micro_f1_of(*sa), micro_f1_of(*sb), n, "micro-F1")
        return [micro] if accuracy_only else [micro, subset]
    if accuracy_only:
        return [paired_accuracy(a["correct"].to_numpy(), b["correct"].to_numpy())]
    columns = [a["label"], a["predicted"], b["predicted"]]  # the labels are equal row for row (align checked them)
    names = {v: i for i, v in enumerate(sorted(set().union(*(set(c.astype(str)) for c in columns))))}
    gold, pa, pb = (c.astype(str).map(names).to_numpy(dtype=int) for c in columns)
    return [
        paired_accuracy(a["correct"].to_numpy(), b["correct"].to_numpy()),
        paired_bootstrap(macro_f1_of(gold, pa), macro_f1_of(gold, pb), n, "macro-F1"),
    ]


# ------------------------------------------------------------------------------------------------ wording
def interval_text(iv: Interval) -> str:
    """'accuracy 0.905 (95% CI 0.857–0.938, Wilson, n = 200)'."""
    return f"{iv.metric} {iv.value:.3f} (95% CI {iv.low:.3f}–{iv.high:.3f}, {iv.method}, n = {iv.n:,})"


def interval_cell(iv: Interval) -> str:
    """The short form for a table cell: '0.857–0.938 (n=200)'."""
    return f"{iv.low:.3f}–{iv.high:.3f} (n={iv.n:,})"


def result_interval(result: dict[str, Any]) -> dict[str, Any]:
    """{'test_accuracy_95ci': [low, high]} (Wilson, on the recorded test size) for the CLI's end line; {} without sizes."""
    acc, n = result.get("test_accuracy"), result.get("test_size")
    if not isinstance(acc, (int, float)) or not isinstance(n, int) or n <= 0 or acc != acc:
        return {}
    return {"test_accuracy_95ci": [round(x, 4) for x in wilson(round(acc * n), n)]}


MICRO_F1_CI = "test_micro_f1_95ci"  # a multi-label result's micro-F1 interval, bootstrapped when the run was tested


def micro_f1_result(gold: np.ndarray, pred: np.ndarray) -> dict[str, list[float]]:
    """{MICRO_F1_CI: [low, high]} for a run's result (the table and the CLI read it without the predictions file)."""
    iv = micro_f1_interval(gold, pred)
    return {MICRO_F1_CI: [round(iv.low, 4), round(iv.high, 4)]}


def interval_cell_of(result: dict[str, Any]) -> str:
    """A multi-label result's micro-F1 interval as a table cell ('micro-F1 0.712–0.768 (n=500)'; '' without one)."""
    ci, n = result.get(MICRO_F1_CI), result.get("test_size")
    if not isinstance(ci, list) or len(ci) != 2 or not isinstance(n, int) or n <= 0:
        return ""
    return f"micro-F1 {ci[0]:.3f}–{ci[1]:.3f} (n={n:,})"


def wilson_cell(accuracy: Any, n: Any) -> str:
    """A stored accuracy and its test size as a table cell ('' when either is missing)."""
    if not isinstance(accuracy, (int, float)) or not isinstance(n, int) or n <= 0 or accuracy != accuracy:
        return ""
    low, high = wilson(round(accuracy * n), n)
    return f"{low:.3f}–{high:.3f} (n={n:,})"


def _pts(x: float, metric: str) -> str:
    return f"{x:+.4g}" if metric == "RMSE" else f"{100 * x:+.1f} pts"


def paired_text(p: Paired) -> str:
    """One comparison in words: 'within noise (…)' when p >= NOISE_P, else the difference and its interval."""
    shown = f"< {1 / RESAMPLES:g}" if p.test == "paired bootstrap" and p.p < 1 / RESAMPLES else f"= {p.p:.2g}"
    how = f"{p.test} p {shown}"  # a bootstrap cannot see a p below one resample in RESAMPLES
    if p.only_a or p.only_b or p.test == "exact McNemar":
        how += f"; {p.only_a} vs {p.only_b} texts only one of them gets right"
    if p.noise:
        return f"{p.metric} {_pts(p.diff, p.metric)}: **within noise** ({how})"
    return f"{p.metric} {_pts(p.diff, p.metric)} (95% CI {_pts(p.low, p.metric)} to {_pts(p.high, p.metric)}; {how})"


def paired_md(name_a: str, name_b: str, pairs: list[Paired] | None) -> str:
    """Markdown line comparing run a with run b (names escaped); says when they cannot be paired."""
    a, b = f"**{escape_md(name_a)}**", f"**{escape_md(name_b)}**"
    if pairs is None:
        return f"{a} vs {b}: not tested on the same test texts, so they cannot be paired (no difference is claimed)."
    return f"{a} vs {b} on the same {pairs[0].n:,} test texts: " + "; ".join(paired_text(p) for p in pairs) + "."


def _too_small(accuracy: Any, n: Any, half_width: float) -> tuple[float, int] | None:
    """The rule: (half-width, texts needed) when n texts at this accuracy give a 95% interval wider than ±half_width;
    None when they do not, or either is unknown."""
    if not isinstance(accuracy, (int, float)) or not isinstance(n, int) or n <= 0 or accuracy != accuracy:
        return None
    width = half_width_at(float(accuracy), n)
    return None if width <= half_width else (width, needed_size(float(accuracy), half_width))


def validation_flag(accuracy: Any, n: Any, half_width: float = VAL_HALF_WIDTH) -> str:
    """A warning when validation is too small to pick a checkpoint reliably ('' when it is large enough or unknown)."""
    said = _too_small(accuracy, n, half_width)
    if said is None:
        return ""
    (width, need), limit = said, f"±{100 * half_width:.0f}"
    return (f"Validation holds {n:,} texts: at its accuracy {accuracy:.3f} the 95% interval is ±{100 * width:.1f} points, "
            f"wider than {limit}, so the best checkpoint may have been picked by chance. About {need:,} validation texts "
            f"would bring it to {limit}.")  # fmt: skip


def split_flag(n: Any, accuracy: float = PLANNING_ACCURACY, half_width: float = VAL_HALF_WIDTH) -> str:
    """validation_flag before any run (the Data tab): the same rule at a planned accuracy ('' when large enough)."""
    said = _too_small(accuracy, n, half_width)
    if said is None:
        return ""
    (width, need), limit = said, f"±{100 * half_width:.0f}"
    return (f"The validation split holds {n:,} texts: at an accuracy of {accuracy:.2f} its 95% interval is "
            f"±{100 * width:.1f} points, wider than {limit}, so the best checkpoint may be picked by chance. About "
            f"{need:,} validation texts would bring it to {limit} (a larger validation split, e.g. carved from train, "
            "or a dataset with one).")  # fmt: skip


def result_flag(result: dict[str, Any]) -> str:
    """validation_flag of a run's result: its best validation accuracy on its recorded validation size."""
    return validation_flag((result.get("best_eval") or {}).get("accuracy"), result.get("val_size"))


def ties_with_best(rows: Sequence[dict[str, Any]], best: dict[str, Any]) -> set[str]:
    """Run ids whose validation accuracy is within noise of the best run's (unpaired two-proportion test, p >= NOISE_P,
    on each run's validation size): per-text validation answers are not kept, so the test cannot be paired."""
    tied = {best["run_id"]}
    acc, n = best.get("val_acc"), best.get("val_size")
    if not isinstance(acc, (int, float)) or not isinstance(n, int):
        return tied
    for r in rows:
        if r.get("completed") and isinstance(r.get("val_acc"), (int, float)) and isinstance(r.get("val_size"), int):
            if two_proportion_p(acc, n, r["val_acc"], r["val_size"]) >= NOISE_P:
                tied.add(r["run_id"])
    return tied


def read_predictions(folder: str | Path) -> pd.DataFrame | None:
    """A run folder's saved test predictions (training.PREDICTIONS_FILE), or None when it has none."""
    try:
        return pd.read_parquet(Path(folder) / PREDICTIONS_FILE)
    except (OSError, ValueError):
        return None


def pairer(load: Callable[[str], pd.DataFrame | None], accuracy_only: bool = False) -> Callable[[str, str], list[Paired] | None]:
    """paired(run_a, run_b) over a loader of runs' test predictions (None: none saved), each file read once."""
    frames: dict[str, pd.DataFrame | None] = {}

    def paired(run_a: str, run_b: str) -> list[Paired] | None:
        for rid in (run_a, run_b):
            if rid not in frames:
                frames[rid] = load(rid)
        a, b = frames[run_a], frames[run_b]
        return None if a is None or b is None else compare_runs(a, b, accuracy_only)

    return paired


def intervals_md(frame: pd.DataFrame | None) -> str:
    """A run's test scores with their 95% intervals, as one Markdown phrase ('' without saved predictions)."""
    ivs = test_intervals(frame) if frame is not None else []
    return " · ".join(interval_text(iv) for iv in ivs)


def compare_md(runs: Sequence[tuple[str, pd.DataFrame | None]]) -> str:
    """The Compare section on noise: each run's intervals, then each later run against the first ticked one on the
    same test texts (names escaped)."""
    if not runs:
        return ""
    lines = ["Test scores with 95% intervals:"]
    for name, frame in runs:
        shown = intervals_md(frame) or "no saved test predictions"
        lines.append(f"- **{escape_md(name)}**: {shown}")
    first, first_frame = runs[0]
    if len(runs) > 1:
        lines.append(f"\nEach against **{escape_md(first)}**, paired on the same test texts (within noise: p ≥ {NOISE_P}):")
    for name, frame in runs[1:]:
        pairs = compare_runs(frame, first_frame) if frame is not None and first_frame is not None else None
        lines.append("- " + paired_md(name, first, pairs))
    return "\n".join(lines)
