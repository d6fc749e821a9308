"""A run's progress line as one typed value: what the status line shows while it trains, shared through the store."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShownWarning:
    """A warning the status line shows under the run (the event log keeps the same one as a WarningEvent)."""

    kind: str  # a WarningKind value; a plain string so a kind added by a newer version still reads
    message: str  # may quote label names: escaped where shown


@dataclass(frozen=True)
class Progress:
    """Where a run stands now. Every field has a default: a run starts with `Progress()` and its writers replace the
    fields they know (`Run.set_progress(step=3)`); an unknown field is a TypeError, never a silent new key."""

    phase: str = ""  # what the run does now ("loading model", "training", …); its status once it has finished
    device: str = ""  # where it trains ("cpu", "cuda:0"), for the status line
    processes: str = ""  # data-parallel processes, described ("2 processes (gloo)"); "" for one
    task: str = ""  # the label shape it trains (a Task value): the status line's best-score wording follows it
    step: int = 0  # optimizer steps done
    total_steps: int = 0  # optimizer steps planned (0 until the schedule is known: no progress bits shown)
    epoch: float = 0.0  # epochs done, fractional
    samples_per_s: float | None = None  # training speed over the last logging window
    eta_s: float | None = None  # seconds left at the measured speed
    memory_mb: float | None = None  # accelerator (or process) memory in use
    train_phase: str = ""  # the schedule's phase ("head", "finetune", "train"): two-phase runs say which
    prefix_cache_mb: float | None = None  # size of the frozen-layer cache, when one is used
    class_weights: tuple[float, ...] = ()  # the loss's class weights, when the run weighs classes
    notices: tuple[str, ...] = ()  # how the run trains differently from its settings (a cache switched off); last 3
    plan: str = ""  # a time cap re-planned the schedule: what it now trains
    warnings: tuple[ShownWarning, ...] = ()  # what the user should act on about the result (ftui.advice)
    best_eval_accuracy: float | None = None  # single-label: the best validation accuracy so far
    best_eval_micro_f1: float | None = None  # multi-label: the best validation micro-F1 so far
    best_eval_rmse: float | None = None  # regression: the best validation RMSE so far
    best_perplexity: float | None = None  # masked-LM adaptation: the best held-out perplexity so far
    pruned: str = ""  # a sweep's median rule stopped it: the verdict in words
    store_error: str = ""  # the store refused a write (disk full, taken over): this process only, never shared
    owner: str = ""  # a run another process trains: which one ("process 12 on host"), for "training in …" messages
    launcher_pid: int | None = None  # a torchrun run: the launcher's PID, so the app can end it if it is left behind

    def __post_init__(self) -> None:
        # Writers pass lists (JSON habits): stored as tuples so a frozen progress cannot change under a reader.
        for name in ("class_weights", "notices", "warnings"):
            value = getattr(self, name)
            if not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def merged(self, **changes: Any) -> Progress:
        """This progress with some fields replaced (TypeError on a name that is no field)."""
        return dataclasses.replace(self, **changes)

    def to_json(self, shared: bool = False) -> dict[str, Any]:
        """The fields that differ from their defaults, JSON-able (what older versions wrote and read: only the keys
        set). shared: for the store, without what belongs to this process only (store_error)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default or (shared and f.name == "store_error"):
                continue
            if f.name == "warnings":
                value = [dataclasses.asdict(w) for w in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Progress:
        """Progress from the store's JSON; rows from other versions read: unknown keys are dropped (logged), missing
        ones keep their defaults, a malformed warning is skipped."""
        if not isinstance(data, Mapping):
            return cls()
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.info("progress fields from another version ignored: %s", ", ".join(map(str, unknown)))
        values = {k: v for k, v in data.items() if k in known}
        for name in ("class_weights", "notices"):
            if name in values and not isinstance(values[name], (list, tuple)):
                log.info("progress field %s ignored: not a list (%r)", name, values[name])
                del values[name]
        if "warnings" in values:
            values["warnings"] = tuple(_warnings(values["warnings"]))
        return cls(**values)


def _warnings(items: Any) -> list[ShownWarning]:
    """Shown warnings from JSON ([{kind, message}]); anything else is skipped with a log line."""
    out = []
    for item in items if isinstance(items, (list, tuple)) else []:
        if isinstance(item, Mapping) and isinstance(item.get("message"), str):
            out.append(ShownWarning(str(item.get("kind", "")), item["message"]))
        else:
            log.info("a stored progress warning was skipped: %r", item)
    return out
