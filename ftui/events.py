"""The typed schema of run events: what a run logs, as the store keeps it and the plots, CLI and tests read it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from typing import Any

log = logging.getLogger(__name__)


class EventType(str, Enum):
    """Kinds of run events; the string value is what the store and run.json hold."""

    START = "start"  # the run's shape: steps, phases, sizes
    PHASE = "phase"  # a phase of the schedule begins (its trainable set and learning rate)
    TRAIN = "train"  # training loss and learning rate at a step
    EVAL = "eval"  # validation metrics at a step
    EPOCH = "epoch"  # an epoch ended: its training time
    EARLY_STOP = "early_stop"  # no improvement for `patience` evaluations: the phase ends
    TIME_LIMIT = "time_limit"  # the wall-clock cap ended training
    RESUME = "resume"  # training continues from a snapshot at this step
    PRUNED = "pruned"  # a sweep stopped this run early: its first evaluation was below the median of completed points
    NOTICE = "notice"  # something the user should know that changed how the run trains (a cache switched off)
    TEST = "test"  # test metrics of the best checkpoint
    SCHEDULE = "schedule"  # a time cap re-planned the schedule for the steps that fit
    WARNING = "warning"  # something about the run's result the user should act on (ftui.advice)


class WarningKind(str, Enum):
    """What a warning event is about (its string value is what the store, the page and the CLI's JSON hold)."""

    BELOW_BASELINE = "below_baseline"  # a baseline beats the fine-tuned model on the same test set
    TRUNCATION = "truncation"  # a large share of the texts is longer than the max length
    TIME_LIMIT = "time_limit"  # the time cap cut the epochs the run was set to train
    NO_LABELS = "no_labels"  # multi-label: micro-F1 about 0, (almost) no label predicted, or one label set for all
    ONE_CLASS = "one_class"  # single-label: (almost) every test text gets the same class


@dataclass(frozen=True)
class Event:
    """Base of every event: its type and the optimizer step it belongs to."""

    type: EventType
    step: int = 0
    time: float | None = None  # seconds since the run started: the run stamps it when logged (None before)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (the type as its string value); fields left None are dropped."""
        d = {k: v for k, v in asdict(self).items() if v is not None}
        d["type"] = self.type.value
        return d

    def scores(self, prefix: str) -> dict[str, float]:
        """The numeric fields named `prefix`… with the prefix cut ('eval_' → {'loss': …, 'accuracy': …})."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith(prefix) and isinstance(value, (int, float)) and not isinstance(value, bool):
                out[f.name[len(prefix) :]] = float(value)
        return out


def _t(kind: EventType) -> Any:
    return field(default=kind, init=False)


@dataclass(frozen=True)
class StartEvent(Event):
    """The run's shape as planned when training starts."""

    type: EventType = _t(EventType.START)
    total_steps: int = 0
    steps_per_epoch: int = 0
    device: str = "cpu"
    processes: int = 1  # data-parallel processes (DDP ranks) training together
    train_size: int = 0
    trainable_params: int = 0
    phases: list[dict[str, Any]] | None = None


@dataclass(frozen=True)
class PhaseEvent(Event):
    """A phase of the schedule begins."""

    type: EventType = _t(EventType.PHASE)
    phase: str = "train"
    index: int = 0
    learning_rate: float = 0.0
    epochs: float = 0.0
    freeze_depth: int = 0
    trainable_params: int = 0


@dataclass(frozen=True)
class TrainEvent(Event):
    """Mean training loss since the previous one, and the learning rate."""

    type: EventType = _t(EventType.TRAIN)
    epoch: float = 0.0
    loss: float = 0.0
    lr: float = 0.0
    phase: str | None = None


@dataclass(frozen=True)
class EvalEvent(Event):
    """Validation metrics."""

    type: EventType = _t(EventType.EVAL)
    epoch: float = 0.0
    eval_loss: float = 0.0
    eval_accuracy: float | None = None  # multi-label: subset accuracy; None for regression
    eval_macro_f1: float | None = None
    phase: str | None = None
    eval_micro_f1: float | None = None  # multi-label
    eval_rmse: float | None = None  # regression
    eval_mae: float | None = None
    eval_pearson: float | None = None
    eval_spearman: float | None = None


@dataclass(frozen=True)
class MLMEvalEvent(Event):
    """Held-out metrics of a masked-language-model run (an 'eval' event with perplexity, not class metrics)."""

    type: EventType = _t(EventType.EVAL)
    epoch: float = 0.0
    eval_loss: float = 0.0
    eval_perplexity: float = 0.0
    eval_masked_accuracy: float = 0.0
    phase: str | None = None


@dataclass(frozen=True)
class EpochEvent(Event):
    """An epoch ended (numbered within its phase)."""

    type: EventType = _t(EventType.EPOCH)
    epoch: float = 0  # a whole number; an epoch cut short (time limit, early stop) is the fraction it reached
    train_seconds: float = 0.0
    phase: str | None = None


@dataclass(frozen=True)
class EarlyStopEvent(Event):
    """Patience ran out: the current phase ends."""

    type: EventType = _t(EventType.EARLY_STOP)
    phase: str | None = None


@dataclass(frozen=True)
class TimeLimitEvent(Event):
    """The wall-clock cap ended training."""

    type: EventType = _t(EventType.TIME_LIMIT)
    minutes: float = 0.0


@dataclass(frozen=True)
class ResumeEvent(Event):
    """Training continues from a snapshot."""

    type: EventType = _t(EventType.RESUME)
    phase: str | None = None
    processes: int = 1  # data-parallel processes training from here on (may differ from before the stop)


@dataclass(frozen=True)
class NoticeEvent(Event):
    """A message for the user about how the run trains."""

    type: EventType = _t(EventType.NOTICE)
    message: str = ""


@dataclass(frozen=True)
class ScheduleEvent(Event):
    """A time cap re-planned the current phase for the steps that fit (measured speed × the time left)."""

    type: EventType = _t(EventType.SCHEDULE)
    phase: str | None = None
    steps: int = 0  # optimizer steps the phase is now planned for
    epochs: float = 0.0  # what those steps are in epochs of this phase
    planned_epochs: float = 0.0  # the epochs the phase was set to train
    seconds_per_step: float = 0.0  # measured on this run's first steps (evaluations included)
    minutes: float = 0.0  # the cap


@dataclass(frozen=True)
class WarningEvent(Event):
    """A warning shown on the page and printed by the CLI (one stderr line; the end line's `warnings`)."""

    type: EventType = _t(EventType.WARNING)
    kind: WarningKind = WarningKind.TRUNCATION
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """As Event.to_dict, with the kind as its string value."""
        return {**super().to_dict(), "kind": self.kind.value}


@dataclass(frozen=True)
class PrunedEvent(Event):
    """A sweep's median rule stopped the run after its first evaluation."""

    type: EventType = _t(EventType.PRUNED)
    metric: str = "accuracy"
    score: float = 0.0
    median: float = 0.0
    completed: int = 0  # completed points the median was taken over


@dataclass(frozen=True)
class TestEvent(Event):
    """Test metrics of the best checkpoint."""

    type: EventType = _t(EventType.TEST)
    test_loss: float = 0.0
    test_accuracy: float | None = None  # multi-label: subset accuracy; None for regression
    test_macro_f1: float | None = None
    test_micro_f1: float | None = None  # multi-label
    threshold: float | None = None  # multi-label: the decision threshold the test used
    test_rmse: float | None = None  # regression
    test_mae: float | None = None
    test_pearson: float | None = None
    test_spearman: float | None = None


def of_type(events: list[dict[str, Any]] | tuple[dict[str, Any], ...], kind: EventType) -> list[dict[str, Any]]:
    """The stored events of one type, in order."""
    return [e for e in events if e.get("type") == kind.value]


@dataclass(frozen=True)
class UnknownEvent(Event):
    """A stored event this version cannot read as its own (a newer version's type or warning kind): kept, with its
    stored fields, so a log from another version shows what it can instead of failing."""

    type: Any = ""  # the stored type string (no EventType of this version names it)
    data: dict[str, Any] = field(default_factory=dict)  # every stored field, as stored

    def to_dict(self) -> dict[str, Any]:
        """The stored dict again."""
        return dict(self.data)


# One class per stored type; an evaluation with a perplexity is a masked-LM run's (see decode).
_CLASSES: dict[str, type[Event]] = {
    EventType.START.value: StartEvent,
    EventType.PHASE.value: PhaseEvent,
    EventType.TRAIN.value: TrainEvent,
    EventType.EVAL.value: EvalEvent,
    EventType.EPOCH.value: EpochEvent,
    EventType.EARLY_STOP.value: EarlyStopEvent,
    EventType.TIME_LIMIT.value: TimeLimitEvent,
    EventType.RESUME.value: ResumeEvent,
    EventType.PRUNED.value: PrunedEvent,
    EventType.NOTICE.value: NoticeEvent,
    EventType.TEST.value: TestEvent,
    EventType.SCHEDULE.value: ScheduleEvent,
    EventType.WARNING.value: WarningEvent,
}
# Each class's fields and their defaults (every event field has a plain default; `type` is fixed per class).
_DEFAULTS = {cls: {f.name: f.default for f in fields(cls)} for cls in {*_CLASSES.values(), MLMEvalEvent}}


def decode(row: Mapping[str, Any] | Event) -> Event:
    """The typed event of a stored one (run.json, the store, a live run's log). Keys this version does not know are
    dropped, missing or null ones take their defaults; an unknown type (or warning kind) is an UnknownEvent."""
    if isinstance(row, Event):
        return row
    kind = str(row.get("type", ""))
    cls = _CLASSES.get(kind)
    if cls is EvalEvent and "eval_perplexity" in row:
        cls = MLMEvalEvent
    if cls is None:
        return UnknownEvent(step=_step(row.get("step")), type=kind, data=dict(row))
    defaults = _DEFAULTS[cls]
    values = {k: v for k, v in row.items() if k in defaults and v is not None and k != "type"}
    if "step" in values:
        values["step"] = _step(values["step"])
    if cls is WarningEvent and "kind" in values:
        try:
            values["kind"] = WarningKind(values["kind"])
        except ValueError:
            log.debug("a warning of a kind this version does not know: %r", values["kind"])
            return UnknownEvent(step=values.get("step", 0), type=kind, data=dict(row))
    # Built without the frozen __init__ (its per-field object.__setattr__ made the charts of a long run 1.5x slower):
    # the same fields, each default or stored value, as __init__ would set them (no event has a __post_init__).
    event = object.__new__(cls)
    event.__dict__.update(defaults)
    event.__dict__.update(values)
    return event


class EventLog(list[Event]):
    """A decoded event log: what decode_all returns, and passes through unchanged (a chart decodes a log once)."""


def decode_all(rows: Iterable[Mapping[str, Any] | Event]) -> EventLog:
    """decode() of each event, in order."""
    return rows if isinstance(rows, EventLog) else EventLog(decode(r) for r in rows)


def _step(value: Any) -> int:
    """A stored step as an int (null in logs from before every event had one: 0)."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return 0
    return int(value)
