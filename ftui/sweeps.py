"""Sweeps: a grid or random draws over learning rate, freeze depth, checkpoint and friends, expanded into run configs
that the run queue trains one after another; the median pruning rule; the sweep's table of results."""

from __future__ import annotations

import itertools
import math
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ftui.config import LOWER_IS_BETTER, SCHEDULES, SWEEP_METRICS, ModelConfig, RunConfig, SweepRef
from ftui.events import EventType, decode_all, of_type
from ftui.significance import ties_with_best, wilson_cell

MODES = ("grid", "random")
MAX_POINTS = 10_000  # a plan larger than this is refused before it is expanded (the queue cap refuses far fewer)
MIN_COMPLETED = 2  # the median rule needs this many completed points before it prunes anything


@dataclass(frozen=True)
class SweepField:
    """One setting a sweep can vary: where it lives in RunConfig, its type and its valid range."""

    name: str
    label: str
    kind: type
    lo: float = 0.0
    hi: float = 0.0
    log: bool = False  # random ranges are drawn log-uniformly (learning rates span decades)
    choices: tuple[str, ...] = ()


FIELDS: dict[str, SweepField] = {
    f.name: f
    for f in (
        SweepField("learning_rate", "learning rate", float, 1e-7, 1.0, log=True),
        SweepField("freeze_depth", "freeze depth", int, 0, 128),
        SweepField("checkpoint", "checkpoint", str),
        SweepField("epochs", "epochs", float, 0.01, 100.0),
        SweepField("batch_size", "batch size", int, 1, 1024),
        SweepField("max_length", "max length", int, 8, 8192),
        SweepField("schedule", "schedule", str, choices=SCHEDULES),
    )
}
ALIASES = {"lr": "learning_rate", "depth": "freeze_depth", "freeze": "freeze_depth", "model": "checkpoint",
           "batch": "batch_size", "max_len": "max_length"}  # fmt: skip

SWEEP_ID_RE = re.compile(r"sweep-[A-Za-z0-9-]{1,40}")


@dataclass(frozen=True)
class SweepConfig:
    """What a sweep varies and how; the fixed part is an ordinary RunConfig."""

    values: tuple[tuple[str, str], ...] = field(
        default=(),
        metadata={"help": "field -> values as typed: '1e-5, 3e-5' (a list) or, in random mode, '1e-5:1e-3' (a range)"},
    )
    mode: str = field(default="grid", metadata={"help": "grid: every combination | random: `draws` points"})
    draws: int = field(default=8, metadata={"help": "random mode: how many points are drawn"})
    seed: int = field(default=0, metadata={"help": "seed of the random draws, so a sweep can be planned again"})
    metric: str = field(default="accuracy", metadata={"help": "accuracy | macro_f1 on validation: ranks and prunes"})
    prune: bool = field(default=False, metadata={"help": "stop points whose first evaluation is below the median"})
    max_train_examples: int = field(default=0, metadata={"help": "train rows per point (a quick sweep); 0 = the fixed config's"})
    max_minutes: float = field(default=0.0, metadata={"help": "training budget per point in minutes; 0 = none"})
    sweep_id: str = field(
        default="", metadata={"help": "the sweep's id when chosen beforehand (a Jobs sweep: the app follows it); '' = new"}
    )


def _canonical(name: str) -> str:
    key = name.strip().lower().replace("-", "_")
    return ALIASES.get(key, key)


def _number(f: SweepField, text: str, problems: list[str]) -> float | int | None:
    try:
        value = float(text)
    except ValueError:
        problems.append(f"{f.label}: '{text[:40]}' is not a number")
        return None
    if f.kind is int and value != int(value):
        problems.append(f"{f.label}: {text} is not a whole number")
        return None
    if not (math.isfinite(value) and f.lo <= value <= f.hi) or (f.log and value <= 0):
        problems.append(f"{f.label}: {text} is out of range ({f.lo:g} to {f.hi:g})")
        return None
    return int(value) if f.kind is int else value


def _parse(f: SweepField, spec: str, mode: str, problems: list[str]) -> list[Any] | tuple[float, float] | None:
    """A list of values, or (random mode, numbers only) a (low, high) range."""
    spec = spec.strip()
    if ":" in spec and f.kind is not str:
        if mode != "random":
            problems.append(f"{f.label}: a range like '{spec[:30]}' needs random mode (a grid needs a list of values)")
            return None
        lo_text, _, hi_text = spec.partition(":")
        lo, hi = _number(f, lo_text.strip(), problems), _number(f, hi_text.strip(), problems)
        if lo is None or hi is None:
            return None
        if lo >= hi:
            problems.append(f"{f.label}: the range {spec} must go from low to high")
            return None
        return (lo, hi)
    items = [x.strip() for x in spec.replace("\n", ",").split(",") if x.strip()]
    if not items:
        return None
    out: list[Any] = []
    for item in items:
        if f.kind is str:
            if f.choices and item not in f.choices:
                problems.append(f"{f.label}: '{item[:40]}' is not one of {', '.join(f.choices)}")
                continue
            out.append(item)
        else:
            value = _number(f, item, problems)
            if value is not None:
                out.append(value)
    return list(dict.fromkeys(out))  # a value typed twice is one point, not two


def parse(sweep: SweepConfig) -> tuple[dict[str, list[Any] | tuple[float, float]], list[str]]:
    """The swept fields with their parsed values, and a message for every problem (each field named)."""
    problems: list[str] = []
    if sweep.mode not in MODES:
        problems.append(f"sweep mode must be one of {', '.join(MODES)} (got {sweep.mode!r})")
    if sweep.metric not in SWEEP_METRICS:
        problems.append(f"sweep metric must be one of {', '.join(SWEEP_METRICS)} (got {sweep.metric!r})")
    if sweep.mode == "random" and not (isinstance(sweep.draws, int) and 1 <= sweep.draws <= MAX_POINTS):
        problems.append(f"random draws must be a whole number from 1 to {MAX_POINTS} (got {sweep.draws!r})")
    if not (isinstance(sweep.max_train_examples, int) and sweep.max_train_examples >= 0):
        problems.append(f"training examples per point must be 0 (all) or more (got {sweep.max_train_examples!r})")
    if not (isinstance(sweep.max_minutes, (int, float)) and math.isfinite(sweep.max_minutes) and sweep.max_minutes >= 0):
        problems.append(f"minutes per point must be 0 (no budget) or more (got {sweep.max_minutes!r})")
    if sweep.sweep_id and not (isinstance(sweep.sweep_id, str) and SWEEP_ID_RE.fullmatch(sweep.sweep_id)):
        problems.append(f"a sweep id is 'sweep-' and up to 40 letters, digits or '-' (got {str(sweep.sweep_id)[:60]!r})")
    parsed: dict[str, list[Any] | tuple[float, float]] = {}
    for name, spec in sweep.values:
        key = _canonical(name)
        if key not in FIELDS:
            problems.append(f"'{name}' cannot be swept; choose from {', '.join(FIELDS)}")
            continue
        values = _parse(FIELDS[key], str(spec), sweep.mode, problems)
        if values:
            parsed[key] = values
    if not parsed and not problems:
        problems.append("give at least one setting to sweep, e.g. learning rate '1e-5, 3e-5, 1e-4'")
    return parsed, problems


def size(parsed: dict[str, list[Any] | tuple[float, float]], sweep: SweepConfig) -> int:
    """How many points the plan has (without expanding it)."""
    if sweep.mode == "random":
        return sweep.draws
    return math.prod(len(v) for v in parsed.values())


def points(parsed: dict[str, list[Any] | tuple[float, float]], sweep: SweepConfig) -> list[dict[str, Any]]:
    """The sweep's points in order: every combination (grid), or `draws` seeded draws (random: lists are picked from,
    ranges drawn uniformly; log-uniformly for the learning rate; whole numbers for integer fields)."""
    names = list(parsed)
    if sweep.mode == "grid":
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*(parsed[n] for n in names))]
    rng = random.Random(sweep.seed)
    out = []
    for _ in range(sweep.draws):
        point: dict[str, Any] = {}
        for n in names:
            spec, f = parsed[n], FIELDS[n]
            if isinstance(spec, tuple):
                lo, hi = spec
                if f.kind is int:
                    point[n] = rng.randint(int(lo), int(hi))
                elif f.log:
                    point[n] = float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}")
                else:
                    point[n] = round(rng.uniform(lo, hi), 4)
            else:
                point[n] = rng.choice(spec)
        out.append(point)
    return out


def checkpoint_config(base: ModelConfig, value: str) -> ModelConfig:
    """A checkpoint as typed in a sweep: 'packaged', an existing local folder, or a Hub id."""
    if value == "packaged":
        return replace(base, source="packaged", checkpoint="")
    source = "local" if Path(value).expanduser().is_dir() else "hub"
    return replace(base, source=source, checkpoint=value)


def shown(value: Any) -> str:
    """A point's value as the sweep view shows it."""
    return f"{value:g}" if isinstance(value, float) else str(value)


def apply_point(base: RunConfig, point: dict[str, Any], sweep: SweepConfig, sweep_id: str, index: int) -> RunConfig:
    """The fixed config with one point's values, the sweep's caps, and its SweepRef."""
    model, train, data = base.model, base.train, base.data
    for name, value in point.items():
        if name == "checkpoint":
            model = checkpoint_config(model, value)
        elif name == "freeze_depth":
            model = replace(model, freeze_depth=value)
        else:
            train = replace(train, **{name: value})
    if sweep.max_train_examples:
        data = replace(data, max_train_examples=sweep.max_train_examples)
    if sweep.max_minutes:
        train = replace(train, max_minutes=float(sweep.max_minutes))
    tag = sweep_id.rsplit("-", 1)[-1]
    train = replace(train, run_name=f"{base.train.run_name.strip() or 'sweep'}-{tag}-{index + 1:02d}")
    ref = SweepRef(sweep_id, tuple((n, shown(v)) for n, v in point.items()), sweep.metric, sweep.prune)
    return replace(base, model=model, train=train, data=data, sweep=ref, kind="finetune")


# ------------------------------------------------------------------------------------------------------- pruning
def first_score(events: Sequence[dict[str, Any]], metric: str) -> float | None:
    """The metric at a run's first evaluation (the point the median rule compares runs at)."""
    key = f"eval_{metric}"
    for e in decode_all(events):
        value = getattr(e, key, None) if e.type == EventType.EVAL else None
        if isinstance(value, (int, float)):
            return float(value)
    return None


def prune_verdict(
    score: float, completed: Sequence[float], min_completed: int = MIN_COMPLETED, lower_is_better: bool = False
) -> float | None:
    """The median to report when a run scoring `score` at its first evaluation should be pruned (worse than the
    median: below it, or above it for an error such as RMSE), else None."""
    if len(completed) < min_completed:
        return None
    median = statistics.median(completed)
    return median if (score > median if lower_is_better else score < median) else None


# -------------------------------------------------------------------------------------------------- the view
SWEEP_COLUMNS = ["rank", "name", "status", "swept", "val_score", "val_acc", "test_acc", "test_ci", "test_f1", "minutes",
                 "run_id"]  # fmt: skip


def sweep_ids(records: Sequence[dict[str, Any]]) -> list[str]:
    """Sweep ids of the stored runs, newest first."""
    seen: dict[str, float] = {}
    for rec in records:
        sid = (rec.get("config", {}).get("sweep") or {}).get("sweep_id")
        if sid:
            seen[sid] = max(seen.get(sid, 0.0), float(rec.get("started_at") or 0.0))
    return sorted(seen, key=lambda s: -seen[s])


def swept_text(point: Sequence[Sequence[str]]) -> str:
    """A point as the sweep view and messages show it: "learning_rate=3e-05, freeze_depth=2"."""
    return ", ".join(f"{k}={v}" for k, v in point)


def sweep_table(
    records: Sequence[dict[str, Any]],
    sweep_id: str,
    metric: str = "accuracy",
    waiting: Sequence[tuple[str, int, Sequence[Sequence[str]]]] = (),
) -> list[dict[str, Any]]:
    """The runs of one sweep, best validation score first (the sweep's own metric; test scores are shown, never used to
    pick); pruned runs say so. `waiting`: (name, queue position, point) of its points still queued, listed last."""
    rows = []
    key = metric if metric in SWEEP_METRICS else "accuracy"
    sign = 1.0 if key in LOWER_IS_BETTER else -1.0  # sort ascending on sign * score: best first
    for rec in records:
        ref = rec.get("config", {}).get("sweep") or {}
        if ref.get("sweep_id") != sweep_id:
            continue
        res = rec.get("result") or {}
        best = res.get("best_eval") or {}
        pruned = bool(of_type(rec.get("events") or [], EventType.PRUNED)) or bool(res.get("pruned"))
        ended, started = rec.get("ended_at"), rec.get("started_at")
        score = best.get(key)
        rows.append({
            "name": rec.get("name", ""),
            "status": "pruned" if pruned else rec.get("status", ""),
            "swept": swept_text(ref.get("point") or []),
            "point": {k: v for k, v in ref.get("point") or []},
            "val_score": round(score, 4) if isinstance(score, (int, float)) and math.isfinite(score) else None,  # NaN: unranked
            "val_acc": round(best["accuracy"], 4) if isinstance(best.get("accuracy"), (int, float)) else None,
            "test_acc": round(res["test_accuracy"], 4) if isinstance(res.get("test_accuracy"), (int, float)) else None,
            "test_ci": wilson_cell(res.get("test_accuracy"), res.get("test_size")),
            "val_size": res.get("val_size"),  # the noise of val_acc: ties with the best (ftui.significance)
            "test_f1": round(res["test_macro_f1"], 4) if isinstance(res.get("test_macro_f1"), (int, float)) else None,
            "minutes": round((ended - started) / 60, 2) if ended and started else None,
            "run_id": rec["run_id"],
            "completed": rec.get("status") == "completed",
        })  # fmt: skip
    # Completed runs rank first (a pruned run's early score is not comparable), then by score.
    rows.sort(key=lambda r: (not r["completed"], r["val_score"] is None, sign * (r["val_score"] or 0.0)))
    for name, position, point in waiting:
        rows.append({"name": name, "status": f"queued #{position}", "swept": swept_text(point), "point": dict(point),
                     "val_score": None, "val_acc": None, "test_acc": None, "test_ci": "", "val_size": None, "test_f1": None,
                     "minutes": None,
                     "run_id": "", "completed": False})  # fmt: skip
    for i, r in enumerate(rows, start=1):
        r["rank"] = i
    return rows


def best_run(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The completed run with the best validation score (the one to use in Predict)."""
    done = [r for r in rows if r["completed"] and r["val_score"] is not None]
    return done[0] if done else None


def shown_ranks(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The rank column as shown: runs within noise of the best's validation accuracy share its rank, written "1="
    (ties_with_best: unpaired, as per-text validation answers are not kept); the others keep their place."""
    best = best_run(rows)
    tied = ties_with_best(rows, best) if best is not None else set()
    if len(tied) < 2:
        return [str(r["rank"]) for r in rows]
    return [f"{best['rank']}=" if r["run_id"] in tied else str(r["rank"]) for r in rows]
