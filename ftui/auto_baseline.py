"""Baselines first, by themselves: when a model run starts on data (test split and label shape) that has no baseline
yet, the TF-IDF baseline is fitted beside it, so every run on that data has a score to beat on its chart and in "vs
base". Beside, not before: it takes seconds on the CPU, and the run it accompanies should not wait for it; only that
run's final verdict waits (briefly) for it to end."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from ftui.config import RunConfig, SweepRef
from ftui.recipes import recipe_of
from ftui.reference import has_baseline

KIND = "tfidf"  # the baseline that runs by itself: words only, no checkpoint, no GPU, seconds
VERDICT_WAIT_S = 60.0  # how long a finished run's verdict waits for the baseline started beside it
SETTING = "Auto baseline (Train tab, Advanced; CLI: --no-auto-baseline; a deployment: FTUI_AUTO_BASELINE=0)"


def wanted(cfg: RunConfig, enabled: bool, records: Sequence[dict[str, Any]]) -> bool:
    """Whether a run starting now should get a baseline beside it: a kind that is measured against one (not a baseline
    or a masked-LM run), the run's setting and the deployment's on, and no baseline on its data yet (queued, running or
    completed; `records`: the runs its owner can see)."""
    return (
        enabled and recipe_of(cfg).auto_reference and cfg.train.auto_baseline is True and not has_baseline(cfg.to_dict(), records)
    )


def config_for(cfg: RunConfig) -> RunConfig:
    """The baseline's config: the run's data (the same test split and label shape, so "vs base" matches it), the TF-IDF
    kind, one process, no name of its own, no sweep (it is not one of the sweep's points), no extra metric sinks."""
    train = replace(cfg.train, run_name="", processes=1, report_to="")
    return replace(cfg, kind="baseline", baseline=KIND, train=train, sweep=SweepRef())


def note_for(run_name: str) -> str:
    """The baseline run's note: why it is there and how to turn it off."""
    return f"Started by itself beside '{run_name}' (no baseline on this data yet): the score to beat. Turn off: {SETTING}."
