"""The event decoder: every stored event reads back as its dataclass; other versions' events read without a crash."""

import dataclasses
import json

from ftui.events import (
    EarlyStopEvent,
    EpochEvent,
    EvalEvent,
    EventType,
    MLMEvalEvent,
    NoticeEvent,
    PhaseEvent,
    PrunedEvent,
    ResumeEvent,
    ScheduleEvent,
    StartEvent,
    TimeLimitEvent,
    TrainEvent,
    UnknownEvent,
    WarningEvent,
    WarningKind,
    decode,
    decode_all,
)
from ftui.events import (
    TestEvent as ScoredEvent,  # aliased: pytest collects classes named Test*
)
from ftui.plots import accuracy_figure, loss_figure
from ftui.sweeps import first_score

EVERY_KIND = [
    StartEvent(total_steps=8, steps_per_epoch=4, phases=[{"name": "train"}]),
    PhaseEvent(step=0, phase="head", index=0, learning_rate=1e-3),
    TrainEvent(step=1, epoch=0.25, loss=0.7, lr=1e-3, phase="head"),
    EvalEvent(step=2, epoch=0.5, eval_loss=0.6, eval_accuracy=0.7, eval_macro_f1=0.65),
    MLMEvalEvent(step=2, eval_loss=3.0, eval_perplexity=20.1, eval_masked_accuracy=0.3),
    EpochEvent(step=4, epoch=1, train_seconds=2.5),
    EarlyStopEvent(step=6, phase="finetune"),
    TimeLimitEvent(step=6, minutes=0.5),
    ResumeEvent(step=4, phase="head", processes=2),
    PrunedEvent(step=2, score=0.7, median=0.8, completed=3),
    NoticeEvent(step=1, message="cache off"),
    ScoredEvent(step=8, test_loss=0.5, test_accuracy=0.8),
    ScheduleEvent(step=3, steps=6, epochs=1.5, planned_epochs=3),
    WarningEvent(step=8, kind=WarningKind.ONE_CLASS, message="all 'pos'"),
]


def test_every_event_reads_back_as_the_dataclass_it_was_written_as():
    for event in EVERY_KIND:
        stored = json.loads(json.dumps({**event.to_dict(), "time": 1.5}))  # as the run logs it: stamped with its time
        back = decode(stored)
        assert type(back) is type(event) and back == dataclasses.replace(event, time=1.5), type(event).__name__


def test_unknown_types_and_kinds_are_kept_as_generic_events():
    newer = {"type": "gradient_norm", "step": 5, "norm": 1.2}
    e = decode(newer)
    assert isinstance(e, UnknownEvent) and e.type == "gradient_norm" and e.step == 5 and e.data == newer
    assert e.to_dict() == newer  # written back unchanged
    w = decode({"type": "warning", "step": 3, "kind": "from_the_future", "message": "m"})
    assert isinstance(w, UnknownEvent) and w.data["kind"] == "from_the_future"


def test_unknown_keys_are_dropped_and_missing_or_null_ones_defaulted():
    e = decode({"type": "eval", "step": None, "eval_loss": 0.4, "eval_accuracy": 0.9, "eval_bleu": 3.0, "phase": None})
    assert e == EvalEvent(step=0, eval_loss=0.4, eval_accuracy=0.9)
    assert decode({"type": "train", "step": 7.0}).step == 7 and decode({"type": "train", "step": "x"}).step == 0
    assert decode(e) is e  # an event already typed passes through
    assert [x.type for x in decode_all([{"type": "test"}, {"type": "phase"}])] == [EventType.TEST, EventType.PHASE]


def test_scores_are_the_numeric_fields_of_a_prefix():
    e = EvalEvent(step=2, eval_loss=0.6, eval_accuracy=0.7)
    assert e.scores("eval_") == {"loss": 0.6, "accuracy": 0.7}  # fields left None are no score
    assert ScoredEvent(test_loss=0.5, test_rmse=1.5).scores("test_") == {"loss": 0.5, "rmse": 1.5}


def test_readers_skip_an_event_type_they_do_not_know():
    log = [
        {"type": "train", "step": 1, "loss": 0.7, "epoch": 0.1},
        {"type": "gradient_norm", "step": 1, "eval_accuracy": 9.0},  # a newer version's: not an evaluation
        {"type": "eval", "step": 2, "eval_loss": 0.6, "eval_accuracy": 0.7, "eval_macro_f1": 0.6},
    ]
    assert list(accuracy_figure(log).data[0].y) == [0.7]
    assert [list(t.y) for t in loss_figure(log).data] == [[0.7], [0.6]]
    assert first_score(log, "accuracy") == 0.7
