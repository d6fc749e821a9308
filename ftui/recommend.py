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

# Multi-label: labels carried by this share of the train texts or fewer, on average, are sparse (the Data tab's rare
# labels: 1 / (1 + data_report.IMBALANCE_RATIO)).
SPARSE_LABELS = 0.25
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
# Measured in the defaults table (bench/defaults.py, docs/performance.md): which default lost by more than noise, on
# which data. Where no candidate beat a default beyond noise, the default stays and nothing is recommended.
def _long_text(f: DataFacts) -> Recommendation | None:
    # Head + tail never lost to cutting (+2.5 points on the long documents, within noise; the real reviews,
    # whose verdict is at the end: +14) at no extra cost. Chunks won more there (+36) but took 6.4x the time, and lost
    # to head + tail on the reviews under a time cap, so the line names them instead of choosing them.
    if f.cut_share < CUT_SHARE:
        return None
    return Recommendation(
        "long_text",
        "head_tail",
        f"{f.cut_share:.0%} of train texts are cut at {f.max_length} {f.unit}: head + tail keeps their endings (chunks "
        "read all of each text, at several times the cost)",
    )


def _sparse(f: DataFacts) -> bool:
    """Multi-label data whose labels are rare: each on fewer than SPARSE_LABELS of the texts on average."""
    return f.task is Task.MULTI and bool(f.label_share) and f.labels_per_row / len(f.label_share) <= SPARSE_LABELS


def _class_weights(f: DataFacts) -> Recommendation | None:
    # Without weights, sparse multi-label data trained into the same label for every text (micro-F1 0.28, macro-F1
    # 0.04); balanced weights (each label's positives weighed by its rarity): micro-F1 0.59 (+31.5 points).
    if not _sparse(f):
        return None
    return Recommendation(
        "class_weights",
        "balanced",
        f"sparse labels (a text carries {f.labels_per_row:.1f} of {len(f.label_share)} labels on average): balanced "
        "weights keep the model from predicting no label",
    )


def _schedule(f: DataFacts) -> Recommendation | None:
    # Head first won on sparse multi-label data, with balanced weights too (micro-F1 0.59 -> 0.69, +9.7 points); on
    # single labels it was within noise everywhere (short +0.0, trec +1.0, long documents -7.5), so one phase stays.
    if not f.two_phase_ok or not _sparse(f):
        return None
    return Recommendation(
        "schedule",
        "two-phase",
        f"sparse labels ({f.labels_per_row:.1f} of {len(f.label_share)} per text): the new head learns them alone first, "
        "then fine-tuning",
    )


RULES = (_long_text, _class_weights, _schedule)


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
