"""Timing a few training steps of the real model on this machine: the speeds the time estimate scales by
(ftui.estimate), kept per machine, checkpoint, device, max length and batch size in memory and in the runs folder."""

from __future__ import annotations

import gc
import json
import logging
import os
import platform
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftui import tasks
from ftui.accel import autocast, autocast_dtype
from ftui.architecture import apply_freeze
from ftui.config import ModelConfig
from ftui.errors import ModelError
from ftui.estimate import Load, ModelShape, Speeds, padded
from ftui.files import replace_dir
from ftui.lru import LRU
from ftui.modeling import build_model, load_tokenizer, save_classifier
from ftui.tasks import Task, TaskInfo

log = logging.getLogger(__name__)

# Seconds spent timing (after one untimed warm-up step): training steps at the run's mean width, then at a second width
# (to tell a step's fixed cost from its compute), then with the embeddings and the first layer frozen (what any freeze
# depth saves beyond the layers: the embeddings' gradient), then evaluation batches. Each takes at least MIN_STEPS
# and at most MAX_STEPS: a slow model's few steps are its speed; a fast one's many average out a busy machine.
BUDGET_S = {"train": 1.5, "second": 0.75, "frozen": 0.75, "eval": 0.5}
MIN_STEPS, MAX_STEPS = 2, 50
TOKENIZE_SAMPLE = 500  # texts tokenized to time the tokenizer
FILE = "calibration.json"  # in the runs folder: measured speeds, kept across restarts
KEPT = 64  # entries the file keeps (the most recent)
CLOCK = time.perf_counter  # what the timings read: wall time (a test reads CPU time, which other work cannot move)


def machine() -> str:
    """This machine as a calibration is valid for: its CPU (or GPU) model, cores and torch's threads."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()} | {cpu} x{os.cpu_count()} | {torch.get_num_threads()} threads | {gpu}"


def speeds_key(model: ModelConfig, device: str, precision: str, max_length: int, batch_size: int) -> str:
    """What a calibration is measured for: the machine, the checkpoint (and its head), the device, the precision, the max
    length and the batch size."""
    parts = [machine(), model.source, model.checkpoint, model.head, model.mlp_hidden, device, precision, max_length, batch_size]
    return json.dumps(parts)


def fit_step(t1: float, g1: float, t2: float, g2: float) -> tuple[float, float]:
    """(seconds per step, seconds per GFLOP) through two timed widths, neither below 0: a step slower at the narrower
    width (noise, or a tiny model whose step is all fixed cost) is all fixed cost at their mean; a line crossing below
    zero at no tokens is all compute, through the origin (least squares)."""
    slope = (t1 - t2) / (g1 - g2) if g1 != g2 else 0.0
    if slope <= 0:
        return (t1 + t2) / 2, 0.0
    if t1 - slope * g1 < 0:
        return 0.0, (t1 * g1 + t2 * g2) / (g1 * g1 + g2 * g2)
    return t1 - slope * g1, slope


def _repeat(fn: Callable[[], tuple[float, float]], budget: float) -> list[tuple[float, float]]:
    """fn's timings, repeated until `budget` seconds have passed (MIN_STEPS to MAX_STEPS times)."""
    out: list[tuple[float, float]] = []
    started = time.perf_counter()
    while len(out) < MAX_STEPS and (len(out) < MIN_STEPS or time.perf_counter() - started < budget):
        out.append(fn())
    return out


def _second_width(width: int) -> int:
    """A width far enough from the main one to separate per-step from per-token costs, and cheaper where possible."""
    return padded(width / 2) if width >= 32 else width + 16


def _gflop(shape: ModelShape, rows: int, width: int) -> float:
    """Every layer's forward over one batch of `rows` rows padded to `width`."""
    return shape.num_layers * Load(1.0, rows, rows * width, rows * width**2).gflop(shape)


class _Timer:
    """Wall time of a call, waiting for the GPU's queued work before reading the clock."""

    def __init__(self, device: str) -> None:
        self.device = device

    def __call__(self, fn: Callable[[], Any]) -> float:
        self._sync()
        t0 = CLOCK()
        fn()
        self._sync()
        return CLOCK() - t0

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


class _Probe:
    """A freshly built model with an optimizer, stepped on random token ids of a given shape (the cost depends on the
    shape, not on the words)."""

    def __init__(self, model: nn.Module, task: Task, n_out: int, device: str, precision: str, batch_size: int) -> None:
        self.model, self.task, self.n_out, self.device, self.batch_size = model, task, n_out, device, batch_size
        self.timer = _Timer(device)
        self.amp = autocast_dtype(precision, device)
        self.gen = torch.Generator().manual_seed(0)
        self.vocab = int(getattr(getattr(model, "config", None), "vocab_size", 0) or 1000)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(self.params, lr=1e-7, fused=device == "cuda")

    def inputs(self, width: int) -> dict[str, torch.Tensor]:
        ids = torch.randint(min(1000, self.vocab - 1), self.vocab, (self.batch_size, width), generator=self.gen)
        return {"input_ids": ids.to(self.device), "attention_mask": torch.ones_like(ids).to(self.device)}

    def labels(self) -> torch.Tensor:
        rows = self.batch_size
        if self.task is Task.MULTI:
            y = torch.randint(0, 2, (rows, self.n_out), generator=self.gen).float()
        elif self.task is Task.REGRESSION:
            y = torch.randn(rows, generator=self.gen)
        else:
            y = torch.randint(0, self.n_out, (rows,), generator=self.gen)
        return y.to(self.device)

    def step(self, width: int, update: bool = True) -> tuple[float, float]:
        """Seconds of one training step at `width`: (forward + backward, clipping + optimizer step); without `update`
        the gradients are only cleared (the optimizer's time does not depend on the width)."""
        inputs, y = self.inputs(width), self.labels()
        self.model.train()

        def forward_backward() -> None:
            with autocast(self.device, self.amp):
                logits = self.model(**inputs).logits
            tasks.loss(self.task, logits, y).backward()

        def optimizer_step() -> None:
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)

        seconds = self.timer(forward_backward)
        if not update:
            self.opt.zero_grad(set_to_none=True)
            return seconds, 0.0
        return seconds, self.timer(optimizer_step)

    @torch.no_grad()
    def forward(self, width: int) -> float:
        """Seconds of one forward pass without gradients (evaluation) at `width`."""
        inputs = self.inputs(width)
        self.model.eval()

        def run() -> None:
            with autocast(self.device, self.amp):
                self.model(**inputs)

        return self.timer(run)


def _in_fresh_thread(fn: Callable[[], Speeds]) -> Speeds:
    """fn() in a new thread, as a run trains in one. On a CPU shared with other work, a thread's speed depends on its
    OpenMP team: with two torch threads on this loaded 2-core machine, MiniLM's steps took 5-20x longer in a team
    whose waiting thread spins (libgomp's default while it manages no more threads than cores) than in one whose
    waiting thread sleeps (OMP_WAIT_POLICY=PASSIVE, or a new thread once the main thread has a team), so the
    calibration times where runs train, not in the caller's thread."""
    got: list[Speeds] = []
    failed: list[BaseException] = []

    def body() -> None:
        try:
            got.append(fn())
        except BaseException as exc:  # noqa: BLE001 - raised again in the caller's thread
            failed.append(exc)

    worker = threading.Thread(target=body, name="ftui-calibrate", daemon=True)
    worker.start()
    worker.join()
    if failed:
        raise failed[0]
    return got[0]


def measure(
    model_cfg: ModelConfig,
    label_names: list[str],
    task: Task,
    tokenizer: Any,
    texts: list[str],
    shape: ModelShape,
    device: str,
    precision: str,
    batch_size: int,
    width: int,
    token: str | None = None,
    scratch: Path | None = None,
) -> Speeds:
    """Load the tokenizer and build the model (timed), then time training steps (forward, backward, optimizer) at the
    batch size and two widths, an evaluation batch, one save and the tokenizer. shape: the checkpoint's size, for the
    FLOP count. Takes a few seconds, in a fresh thread (see _in_fresh_thread)."""
    speeds = _in_fresh_thread(
        lambda: _timed(model_cfg, label_names, task, tokenizer, texts, shape, device, precision, batch_size, width, token,
                       scratch)
    )  # fmt: skip
    gc.collect()  # the probe's model and optimizer state go before a run needs the memory
    if device == "cuda":
        torch.cuda.empty_cache()
    return speeds


def _timed(
    model_cfg: ModelConfig,
    label_names: list[str],
    task: Task,
    tokenizer: Any,
    texts: list[str],
    shape: ModelShape,
    device: str,
    precision: str,
    batch_size: int,
    width: int,
    token: str | None,
    scratch: Path | None,
) -> Speeds:
    t0 = CLOCK()
    load_tokenizer(model_cfg, token)  # a run loads its own tokenizer and model: both count
    model = build_model(model_cfg, label_names, token, generator=torch.Generator().manual_seed(0), task=task)
    model.to(device)
    load_s = CLOCK() - t0
    probe = _Probe(model, task, tasks.n_outputs(task, label_names), device, precision, batch_size)
    probe.step(width)  # warm-up: first-call allocations, the optimizer's state
    timed = _repeat(lambda: probe.step(width), BUDGET_S["train"])
    other = _second_width(width)
    second = _repeat(lambda: probe.step(other, update=False), BUDGET_S["second"])
    frozen = _frozen_steps(probe, model, width)
    probe.forward(width)  # warm-up: evaluation's own first call
    evals = _repeat(lambda: (probe.forward(width), 0.0), BUDGET_S["eval"])
    save_s = _time_save(model, tokenizer, label_names, task, scratch)
    tokenize_s = _time_tokenizer(tokenizer, texts)
    g1, g2 = _gflop(shape, batch_size, width), _gflop(shape, batch_size, other)
    t1, t2 = statistics.fmean(fb for fb, _ in timed), statistics.fmean(fb for fb, _ in second)
    fixed, per_gflop = fit_step(t1, g1, t2, g2)
    eval_per_gflop = statistics.fmean(e for e, _ in evals) / g1
    frozen_fixed = None
    if frozen:  # depth 1: one layer forward only, the rest as before; what is left is the step's fixed cost
        layer = g1 / shape.num_layers
        rest = statistics.fmean(frozen) - per_gflop * (shape.num_layers - 1) * layer - eval_per_gflop * layer
        frozen_fixed = min(fixed, max(0.0, rest))
    return Speeds(
        step_s=fixed,
        train_s_per_gflop=per_gflop,
        eval_s_per_gflop=eval_per_gflop,
        optimizer_s=statistics.fmean(o for _, o in timed),
        save_s=save_s,
        load_s=load_s,
        tokenize_s_per_text=tokenize_s,
        steps=len(timed) + len(second),
        width=width,
        batch_size=batch_size,
        device=device,
        measured_at=time.time(),
        load=os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0,
        frozen_step_s=frozen_fixed,
    )


def _frozen_steps(probe: _Probe, model: nn.Module, width: int) -> list[float]:
    """Forward + backward seconds at freeze depth 1 (nothing for a model without a layer stack to freeze)."""
    try:
        apply_freeze(model, 1)
    except ModelError:
        return []
    try:
        probe.step(width, update=False)  # warm-up: the graph without the embeddings' gradient
        return [fb for fb, _ in _repeat(lambda: probe.step(width, update=False), BUDGET_S["frozen"])]
    finally:
        apply_freeze(model, 0)


def _time_save(model: nn.Module, tokenizer: Any, label_names: list[str], task: Task, scratch: Path | None) -> float:
    """One save as a run's better evaluation makes it (the folder swapped in), where the run folder is."""
    where = Path(tempfile.mkdtemp(prefix=".calibrate-", dir=scratch))
    try:
        t0 = CLOCK()
        replace_dir(where / "model", lambda tmp: save_classifier(model, tokenizer, tmp, label_names, TaskInfo(task)))
        return CLOCK() - t0
    finally:
        shutil.rmtree(where, ignore_errors=True)


def _time_tokenizer(tokenizer: Any, texts: list[str]) -> float:
    """Seconds per text of the tokenizer (uncut: the long-text modes tokenize whole texts)."""
    sample = texts[:TOKENIZE_SAMPLE]
    if not sample:
        return 0.0
    t0 = CLOCK()
    tokenizer(sample, truncation=False)
    return (CLOCK() - t0) / len(sample)


class SpeedBook:
    """Measured speeds by calibration key: an LRU in memory, backed by a JSON file in the runs folder (when writable),
    so a restart or the command line finds what the app measured on this machine."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / FILE if folder is not None else None
        self.memory: LRU[str, Speeds] = LRU(KEPT)
        self.lock = threading.Lock()  # one measurement at a time: two at once would each time a shared machine

    def get(self, key: str) -> Speeds | None:
        """The speeds measured for `key`, from memory or the file."""
        found = self.memory.get(key)
        if found is None:
            entry = self._read().get(key)
            if entry is not None:
                found = self.memory.put(key, entry)
        return found

    def put(self, key: str, speeds: Speeds) -> Speeds:
        """Keep a measurement (in the file too, best effort: a read-only folder keeps it in memory only)."""
        self.memory.put(key, speeds)
        if self.path is None:
            return speeds
        entries = {**self._read(), key: speeds}
        newest = sorted(entries.items(), key=lambda kv: kv[1].measured_at)[-KEPT:]
        try:
            tmp = self.path.with_name(f".{FILE}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps({k: asdict(v) for k, v in newest}, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:
            log.info("calibration kept in memory only (%s)", exc)
        return speeds

    def _read(self) -> dict[str, Speeds]:
        if self.path is None or not self.path.exists():
            return {}
        try:
            raw = json.loads(self.path.read_text())
            return {k: Speeds(**v) for k, v in raw.items()}
        except (OSError, ValueError, TypeError) as exc:  # a damaged or older file: measured again when needed
            log.info("ignoring %s (%s)", self.path, exc)
            return {}
