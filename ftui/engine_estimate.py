"""The engine's time-estimate facade (mixed into Engine): how long a run or a sweep will take, before Start, from the
data's token lengths, the checkpoint's size and speeds timed on this machine (ftui.estimate, ftui.calibrate)."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftui import calibrate
from ftui.batching import special_tokens
from ftui.config import DataConfig, ModelConfig, RunConfig
from ftui.data import TEXT, TEXT_PAIR, DataBundle
from ftui.data_report import text_lengths
from ftui.errors import FtuiError
from ftui.estimate import DataShape, Estimate, ModelShape, Speeds, describe, duration, estimate, loads, warnings
from ftui.launcher import Launcher
from ftui.lru import LRU
from ftui.model_card import ModelSummary
from ftui.recipes import recipe_of
from ftui.sweeps import SweepConfig, swept_text
from ftui.tasks import Task
from ftui.workspace import Viewer

if TYPE_CHECKING:  # the runs facade's checks (_owned, _writable, current_run) come from Engine's other bases
    from ftui.engine_runs import RunsFacade as _Base
else:
    _Base = object

log = logging.getLogger(__name__)

LENGTH_SAMPLE = 2000  # train texts measured (the Data tab's histogram measures as many)
SWEEP_MEASURES = 4  # calibrations one sweep estimate may time (a shoot-out of many checkpoints takes several clicks)


@dataclass(frozen=True)
class TimeEstimate:
    """A run's estimate as the page and the CLI say it."""

    estimate: Estimate = field(metadata={"help": "the numbers, in seconds"})
    line: str = field(metadata={"help": "one sentence: per epoch, for the run, where, on what it rests"})
    warnings: tuple[str, ...] = field(metadata={"help": "what the time limit will do to the run"})


@dataclass(frozen=True)
class SweepTimes:
    """A sweep's estimate: each point's run, and all of them one after another."""

    runs: tuple[tuple[str, float], ...] = field(metadata={"help": "(the point's swept settings, seconds) per timed point"})
    untimed: int = field(metadata={"help": "points whose checkpoint, length or batch size is not timed yet"})
    line: str = field(metadata={"help": "one sentence for the Sweeps tab"})
    warnings: tuple[str, ...] = field(metadata={"help": "what the minutes per run will do to the runs"})


class EstimateState:
    """What estimates keep: measured speeds (memory and the runs folder) and the train texts' token lengths."""

    def __init__(self, folder: Path | None) -> None:
        self.book = calibrate.SpeedBook(folder)
        self.scratch = folder  # a timed save writes where the runs save
        self.lengths: LRU[tuple[Any, ...], tuple[tuple[int, ...], int]] = LRU(8)


def model_shape(summary: ModelSummary) -> ModelShape:
    """The summary's sizes as the cost model reads them."""
    layers = max(1, summary.num_layers)
    per_layer = sum(summary.layer_params) / len(summary.layer_params) if summary.layer_params else 0.0
    if not per_layer:  # no per-layer stack found: the encoder's parameters spread over its layers
        per_layer = max(0.0, summary.total_params - summary.top_params) / layers
    return ModelShape(layers, summary.hidden_size, int(per_layer), summary.total_params, summary.top_params)


def _token_key(token: str | None) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


def _basis(speeds: Speeds, fresh: bool) -> str:
    """What the estimate rests on: how many steps were timed, when, and how busy the machine was then."""
    if fresh:
        said = f"timed {speeds.steps} steps just now"
    else:
        when = time.localtime(speeds.measured_at)
        day = "" if time.strftime("%Y%m%d", when) == time.strftime("%Y%m%d") else time.strftime(" on %d %b", when)
        said = f"timed {speeds.steps} steps at {time.strftime('%H:%M', when)}{day}"
    cores = os.cpu_count() or 1
    if speeds.device == "cpu" and speeds.load > cores:  # other work shared the cores: its share moves the speed
        said += f"; load {speeds.load:.1f} on {cores} cores"
    return said


class EstimateFacade(_Base):
    """Time estimates for the UI and the CLI. Engine provides the state below, the data and model caches and the
    runs facade's checks."""

    estimates: EstimateState
    device: str
    launcher: Launcher
    load_data: Callable[[DataConfig, str | None], DataBundle]  # Engine's cached loaders and checks
    loaded_data: Callable[[DataConfig, str | None], DataBundle | None]
    tokenizer: Callable[[ModelConfig, str | None], Any]
    model_summary: Callable[[ModelConfig, str | None], ModelSummary]
    _admit_model: Callable[[ModelConfig], None]
    _admit_data: Callable[[DataConfig], None]

    def estimate_run(
        self, cfg: RunConfig, token: str | None = None, viewer: Viewer | None = None, measure: bool = False
    ) -> TimeEstimate | None:
        """How long `cfg` will take here: per epoch, for the run, and what its time limit will do. measure: time a few
        steps now (a few seconds; refused while a run trains); otherwise a measurement kept for this machine, checkpoint,
        device, max length and batch size is used, and None says there is none yet."""
        self._writable()
        cfg, _ = self._owned(cfg, viewer, "estimate a run")
        self._admit_model(cfg.model)  # the deployment's rules before anything, even a look at what was timed
        self._admit_data(cfg.data)
        if not (recipe_of(cfg).layered and recipe_of(cfg).classifies):  # the cost model is the fine-tuning loop's
            raise FtuiError("Time estimates cover fine-tuning runs.", "Baselines take seconds to a few minutes.")
        if not measure and (self._speeds_of(cfg) is None or self.loaded_data(cfg.data, token) is None):
            return None  # nothing to say without timing, loading data or asking the Hub (a passing change)
        cfg = self.launcher.check(cfg, token)  # as it will run: the deployment's caps applied, the checkpoint checked
        if not measure and self.loaded_data(cfg.data, token) is None:
            return None  # the caps changed the data (fewer examples): not loaded either
        return self._estimate_checked(cfg, token, measure)

    def estimate_sweep(
        self, base: RunConfig, sweep: SweepConfig, token: str | None = None, viewer: Viewer | None = None, measure: bool = False
    ) -> SweepTimes:
        """Every point's run (as the sweep would queue it) and their sum. measure: time the points' checkpoints, max
        lengths and batch sizes not timed yet (at most SWEEP_MEASURES per call)."""
        self._writable()
        base, _ = self._owned(base, viewer, "estimate a sweep")
        configs = self.launcher.plan_sweep(base, sweep, token)
        runs: list[tuple[str, float]] = []
        measured, untimed, short, cap = 0, 0, 0, 0.0
        for cfg in configs:
            fresh = measure and measured < SWEEP_MEASURES and self._speeds_of(cfg) is None
            got = self._estimate_checked(cfg, token, fresh)
            measured += fresh
            if got is None:
                untimed += 1
                continue
            runs.append((swept_text(cfg.sweep.point), got.estimate.total_s))
            if got.estimate.cap_before_epoch:
                short, cap = short + 1, got.estimate.cap_s
        line = self._sweep_line(runs, untimed, measured)
        notes = []
        if short:
            notes.append(
                f"The time limit per run ({duration(cap)}) ends {short} of the {len(runs)} timed runs before one epoch: "
                "raise it (minutes per run, or the Train tab's time limit), or lower the training examples per run or "
                "the max length."
            )
        return SweepTimes(tuple(runs), untimed, line, tuple(notes))

    # ------------------------------------------------------------------------------------------------ internals
    def _where(self) -> str:
        return "on this GPU" if self.device == "cuda" else "on this CPU"

    def _sweep_line(self, runs: list[tuple[str, float]], untimed: int, measured: int) -> str:
        if not runs:
            return ""
        seconds = [s for _, s in runs]
        spread = f" ({duration(min(seconds))} to {duration(max(seconds))})" if max(seconds) > 1.2 * min(seconds) else ""
        mean = sum(seconds) / len(seconds)
        basis = "timed just now" if measured else "from timings kept for this machine"
        line = (
            f"About {duration(mean)} per run{spread}, {duration(sum(seconds))} for the {len(runs)} runs one after another "
            f"{self._where()} ({basis})."
        )
        if untimed:
            line += f" {untimed} more point(s) use a checkpoint, max length or batch size not timed yet: estimate again."
        return line

    def _speeds_of(self, cfg: RunConfig) -> Speeds | None:
        t = cfg.train
        return self.estimates.book.get(calibrate.speeds_key(cfg.model, self.device, t.precision, t.max_length, t.batch_size))

    def _estimate_checked(self, cfg: RunConfig, token: str | None, measure: bool) -> TimeEstimate | None:
        """The estimate of a checked config (see estimate_run)."""
        t = cfg.train
        key = calibrate.speeds_key(cfg.model, self.device, t.precision, t.max_length, t.batch_size)
        speeds = None if measure else self.estimates.book.get(key)
        if speeds is None and not measure:
            return None  # not timed yet
        bundle = self.load_data(cfg.data, token)
        tokenizer = self.tokenizer(cfg.model, token)
        summary = self.model_summary(cfg.model, token)
        data = self._data_shape(cfg, bundle, tokenizer, token)
        shape = model_shape(summary)
        if speeds is None:
            speeds = self._measure(cfg, key, bundle, tokenizer, data, shape, token)
        est = estimate(data, shape, speeds, cfg, multi_label=bundle.task is Task.MULTI)
        line = describe(est, self._where(), _basis(speeds, fresh=measure))
        return TimeEstimate(est, line, tuple(warnings(est)))

    def _measure(
        self, cfg: RunConfig, key: str, bundle: DataBundle, tokenizer: Any, data: DataShape, shape: ModelShape,
        token: str | None,
    ) -> Speeds:  # fmt: skip
        running = self.current_run()
        if running is not None and not running.status.finished:
            raise FtuiError(
                "A run is training: timing steps now would time a shared machine (and slow the run).",
                "Estimate when it ends; estimates already measured still show.",
            )
        width = loads(data, cfg).train.width  # the width the run's batches have on average
        texts = list(bundle.splits["train"].select(range(min(calibrate.TOKENIZE_SAMPLE, len(bundle.splits["train"]))))[TEXT])
        with self.estimates.book.lock:  # one measurement at a time on this machine
            speeds = calibrate.measure(
                cfg.model, list(bundle.label_names), bundle.task, tokenizer, texts, shape, self.device,
                cfg.train.precision, cfg.train.batch_size, width, token, self.estimates.scratch,
            )  # fmt: skip
        log.info("calibrated %s: %s", key, speeds)
        return self.estimates.book.put(key, speeds)

    def _data_shape(self, cfg: RunConfig, bundle: DataBundle, tokenizer: Any, token: str | None) -> DataShape:
        """The splits' sizes and a sample of train lengths in the checkpoint's tokens (sentence pairs measured as pairs)."""
        key = (*cfg.data.key(), cfg.model.source, cfg.model.checkpoint, _token_key(token))

        def measure() -> tuple[tuple[int, ...], int]:
            before, after = special_tokens(tokenizer)
            train = bundle.splits["train"]
            if TEXT_PAIR in train.column_names:
                rows = train.select(range(min(LENGTH_SAMPLE, len(train))))
                enc = tokenizer(rows[TEXT], rows[TEXT_PAIR], truncation=False)
                return tuple(len(ids) for ids in enc["input_ids"]), len(before) + len(after)
            lengths, _ = text_lengths(bundle, tokenizer, LENGTH_SAMPLE)
            return tuple(lengths), len(before) + len(after)

        lengths, specials = self.estimates.lengths.get_or_load(key, measure)
        sizes = {name: len(split) for name, split in bundle.splits.items()}
        return DataShape(lengths, sizes.get("train", 0), sizes.get("validation", 0), sizes.get("test", 0), specials)
