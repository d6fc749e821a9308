"""Run kinds as recipes in one table: what each kind checks, reads, trains, names, keeps, serves and exports.

Ask the table, do not branch on the kind (as `tasks.py` does for label shapes). A new kind (a Jobs backend, a new
baseline) is a new row here; the launcher, the engine, serving and the runs table read its answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from ftui.config import BASELINES, RunConfig, corpus_as_data, validate_adapt

BAG_OF_WORDS = ("tfidf", "nbsvm")  # baselines that read words, never the checkpoint (seconds on a CPU, no GPU)
BASELINE_NAMES = {"tfidf": "TF-IDF", "nbsvm": "NBSVM", "embeddings": "embeddings"}  # short, for the runs table


def _fit_finetune(run: Any, load: Callable[[], Any], token: str | None, cache: Any, resume: bool, dist: Any,
                  limits: Any) -> None:  # fmt: skip
    from ftui.finetune import train_run

    train_run(run, load, token, cache, resume, dist)


def _fit_baseline(run: Any, load: Callable[[], Any], token: str | None, cache: Any, resume: bool, dist: Any,
                  limits: Any) -> None:  # fmt: skip
    from ftui.baselines import baseline_run

    baseline_run(run, load, token, cache)


def _fit_adapt(run: Any, load: Callable[[], Any], token: str | None, cache: Any, resume: bool, dist: Any,
               limits: Any) -> None:  # fmt: skip
    from ftui.adapt import adapt_run

    adapt_run(run, token, limits, resume)


def _finetune_name(cfg: RunConfig, model: str, data: str, stamp: str) -> str:
    schedule = "-2phase" if cfg.train.schedule == "two-phase" else ""
    return f"{model}-{data}-f{cfg.model.freeze_depth}{schedule}-{stamp}"


def _baseline_name(cfg: RunConfig, model: str, data: str, stamp: str) -> str:
    what = cfg.baseline if cfg.baseline in BAG_OF_WORDS else f"embeddings-{model}"
    return f"baseline-{what}-{data}-{stamp}"


def _adapt_name(cfg: RunConfig, model: str, data: str, stamp: str) -> str:
    what = f"scratch-{cfg.adapt.preset}" if cfg.adapt.mode == "scratch" else model
    return f"mlm-{what}-{data}-{stamp}"


def _baseline_problems(cfg: RunConfig) -> list[str]:
    if cfg.baseline not in BASELINES:
        return [f"baseline must be one of {', '.join(BASELINES)} (got {cfg.baseline!r})"]
    return []


@dataclass(frozen=True)
class Recipe:
    """One kind of run, as every part of ftui needs to know it."""

    kind: str  # the config's `kind`
    method: Callable[[RunConfig], str]  # what it trains, in a word or two (runs table, compare)
    problems: Callable[[RunConfig], list[str]]  # what is wrong with a config of this kind, beyond the common checks
    as_run: Callable[[RunConfig], RunConfig]  # the config as the deployment's data rules see it (adapt: its corpus)
    reads_checkpoint: Callable[[RunConfig], bool]  # the checkpoint is loaded (and checked) before the run starts
    layered: bool  # freeze depth and the two-phase schedule apply (a per-layer encoder is trained)
    bounded_length: bool  # its max length must fit the checkpoint's position table
    parallel: bool  # may train as torchrun ranks (one per GPU, or FTUI_CPU_PROCESSES)
    gpu_free: Callable[[RunConfig], bool]  # needs no GPU at all (ZeroGPU may run it)
    name: Callable[[RunConfig, str, str, str], str]  # the generated run name from (config, model, data, stamp)
    fit: Callable[..., None]  # the worker: fit(run, load, token, token_cache, resume, dist, read_limits)
    classifies: bool  # it predicts labels: Predict serves it, the runs table shows its accuracy
    reference: bool  # a baseline: the score other runs are measured against (vs base, the table's delta), no optimiser
    serves_base: bool  # Predict also offers its base checkpoint (before training) beside it
    serves_partial: bool  # stopped early, its best checkpoint so far is still offered in Predict
    onnx: bool  # exports to ONNX and ONNX Runtime serves it
    adapts: bool  # its model is a checkpoint for later classifier runs (the Adapt tab's runs)
    auto_reference: bool = False  # on data with no baseline yet, the TF-IDF baseline is fitted beside it (ftui.auto_baseline)


RECIPES: dict[str, Recipe] = {
    r.kind: r
    for r in (
        Recipe(
            kind="finetune",
            method=lambda c: "head→fine-tune" if c.train.schedule == "two-phase" else "fine-tune",
            problems=lambda c: [],
            as_run=lambda c: c,
            reads_checkpoint=lambda c: True,
            layered=True,
            bounded_length=True,
            parallel=True,
            gpu_free=lambda c: False,
            name=_finetune_name,
            fit=_fit_finetune,
            classifies=True,
            reference=False,
            serves_base=True,
            serves_partial=True,
            onnx=True,
            adapts=False,
            auto_reference=True,
        ),
        Recipe(
            kind="baseline",
            method=lambda c: BASELINE_NAMES.get(c.baseline, "baseline"),
            problems=_baseline_problems,
            as_run=lambda c: c,
            reads_checkpoint=lambda c: c.baseline not in BAG_OF_WORDS,
            layered=False,
            bounded_length=False,
            parallel=False,
            gpu_free=lambda c: c.baseline in BAG_OF_WORDS,
            name=_baseline_name,
            fit=_fit_baseline,
            classifies=True,
            reference=True,
            serves_base=False,
            serves_partial=False,
            onnx=False,
            adapts=False,
        ),
        Recipe(
            kind="mlm",
            method=lambda c: "MLM from scratch" if c.adapt.mode == "scratch" else "MLM (adapt)",
            problems=lambda c: validate_adapt(c.adapt),
            as_run=lambda c: replace(c, data=corpus_as_data(c.adapt)),
            reads_checkpoint=lambda c: c.adapt.mode != "scratch",
            layered=False,
            bounded_length=True,
            parallel=False,
            gpu_free=lambda c: False,
            name=_adapt_name,
            fit=_fit_adapt,
            classifies=False,
            reference=False,
            serves_base=False,
            serves_partial=False,
            onnx=False,
            adapts=True,
        ),
    )
}
KINDS = tuple(RECIPES)


def recipe_of(cfg: RunConfig | dict[str, Any]) -> Recipe:
    """The recipe of a run config (or a stored config dict); an unknown kind reads as a fine-tune, like old records."""
    kind = cfg.get("kind") if isinstance(cfg, dict) else cfg.kind
    return RECIPES.get(str(kind or "finetune"), RECIPES["finetune"])


def kind_problems(cfg: RunConfig) -> list[str]:
    """What is wrong with a config for its kind (an unknown kind, or the kind's own rules)."""
    if cfg.kind not in RECIPES:
        return [f"run kind must be one of {', '.join(KINDS)} (got {cfg.kind!r})"]
    errors = RECIPES[cfg.kind].problems(cfg)
    if not RECIPES[cfg.kind].parallel and isinstance(cfg.train.processes, int) and cfg.train.processes > 1:
        errors.append("only fine-tuning runs train on several processes; baselines and masked-LM runs use one (set it to 1)")
    return errors
