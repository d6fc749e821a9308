"""Settings chosen from the data: what the Data tab measured (texts cut at the max length, the label shape, sparse
labels) turned into typed recommendations, each with a one-line reason that quotes the measured number. The Train tab
starts on them and the CLI applies them where a flag was not given (the measurements behind each rule are the defaults
table in docs/performance.md)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ftui.advice import CUT_SHARE
from ftui.config import TrainConfig
from ftui.tasks import Task

SPARSE_LABELS = 0.25  # multi-label: labels carried by this share of train rows or fewer on average are "sparse"
RECOMMENDED = ("long_text", "schedule", "class_weights")  # the TrainConfig fields a recommendation may set


@dataclass(frozen=True)
class DataFacts:
    """What was measured on the train split, as the rules read it."""

    task: Task
    max_length: int  # the max length the lengths were compared with
    measured: int  # train texts whose length was measured (a sample of at most advice.LENGTH_SAMPLE)
    over: int  # of them, longer than max_length
    unit: str  # "tokens" (the checkpoint's tokenizer) or "words" (no tokenizer could be loaded)
    label_share: tuple[float, ...]  # share of train rows per class (single-label) or carrying each label (multi-label)
    two_phase_ok: bool  # the checkpoint can train its head alone first (per-layer encoder, freeze depth below its depth)

    @property
    def cut_share(self) -> float:
        """Share of the measured train texts longer than the max length."""
        return self.over / self.measured if self.measured else 0.0

    @property
    def labels_per_row(self) -> float:
        """Multi-label: labels a train row carries on average."""
        return float(sum(self.label_share))


@dataclass(frozen=True)
class Recommendation:
    """One setting the data calls for: the TrainConfig field, its value, and why in one line with the number."""

    setting: str
    value: Any
    reason: str

    def to_json(self) -> dict[str, Any]:
        """What the CLI prints."""
        return {"setting": self.setting, "value": self.value, "reason": self.reason}


def measure(
    task: Task, label_share: Sequence[float], lengths: Sequence[int], unit: str, max_length: int, two_phase_ok: bool
) -> DataFacts:
    """The facts the rules read, from the measured lengths and label shares."""
    return DataFacts(
        task=task,
        max_length=int(max_length),
        measured=len(lengths),
        over=sum(n > max_length for n in lengths),
        unit=unit,
        label_share=tuple(float(s) for s in label_share),
        two_phase_ok=two_phase_ok,
    )


def label_shares(task: Task, labels: np.ndarray, n_labels: int) -> tuple[float, ...]:
    """Share of train rows per class (single-label) or carrying each label (multi-label); () for regression."""
    if task is Task.REGRESSION or not len(labels):
        return ()
    if task is Task.MULTI:
        return tuple(float(x) for x in np.asarray(labels, dtype=np.float64).reshape(len(labels), -1).mean(0))
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_labels)
    return tuple(float(x) for x in counts / counts.sum())


# ------------------------------------------------------------------------------------------------ the rules
def _long_text(f: DataFacts) -> Recommendation | None:
    # Measured: head + tail never lost to cutting, at no extra cost; chunks won more on spread-out evidence but cost
    # 3-6x the time, so they stay a choice the length chart offers, not a default.
    if f.cut_share < CUT_SHARE:
        return None
    return Recommendation(
        "long_text",
        "head_tail",
        f"{f.cut_share:.0%} of train texts are cut at {f.max_length} {f.unit}: head + tail keeps their endings",
    )


def _schedule(f: DataFacts) -> Recommendation | None:
    # Measured: the head phase helped where texts are long (the new head settles before the encoder moves); on short
    # texts it was within noise, so the one-phase default stays there.
    if not f.two_phase_ok or f.cut_share < CUT_SHARE:
        return None
    return Recommendation(
        "schedule",
        "two-phase",
        f"long texts ({f.cut_share:.0%} past {f.max_length} {f.unit}): training the head first, then fine-tuning, "
        "scored higher on long documents",
    )


def _class_weights(f: DataFacts) -> Recommendation | None:
    # Sparse multi-label data trains into "no label" without weights (every label is mostly negative); balanced
    # weights count each label's positives by its rarity.
    if f.task is not Task.MULTI or not f.label_share:
        return None
    mean_share = f.labels_per_row / len(f.label_share)
    if mean_share > SPARSE_LABELS:
        return None
    return Recommendation(
        "class_weights",
        "balanced",
        f"sparse labels (a text carries {f.labels_per_row:.1f} of {len(f.label_share)} labels on average): balanced weights "
        "keep the model from predicting no label",
    )


RULES = (_long_text, _schedule, _class_weights)


def recommend(facts: DataFacts) -> list[Recommendation]:
    """Every recommendation the facts call for, in a fixed order."""
    return [r for r in (rule(facts) for rule in RULES) if r is not None]


def apply(
    train: TrainConfig, recommendations: Sequence[Recommendation], given: Collection[str] = ()
) -> tuple[TrainConfig, list[Recommendation]]:
    """The config with each recommendation applied unless its setting was given or recommendations are off
    (train.recommend false); also the ones that changed a value."""
    if not train.recommend:
        return train, []
    applied = [r for r in recommendations if r.setting not in given and getattr(train, r.setting) != r.value]
    return replace(train, **{r.setting: r.value for r in applied}), applied
