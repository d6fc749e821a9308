"""The one training core (steps, evaluation, best checkpoint, early stop, Stop, resume) and the schedules and
objectives that plug into it; tokenize once, length-grouped batches, AdamW with warmup per phase."""

from __future__ import annotations

import contextlib
import errno
import gc
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ftui import accel, advice, sinks, tasks
from ftui.batching import (
    TokenCache,
    Tokenized,
    collate,
    eval_batches,
    length_grouped_batches,
    pool_windows,
    tokenize_split,
)
from ftui.config import RunConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.distributed import SOLO, Assignment, Dist, PeerLost, unwrap
from ftui.errors import Diverged, FtuiError, StopRequested
from ftui.events import (
    EarlyStopEvent,
    EpochEvent,
    EvalEvent,
    Event,
    NoticeEvent,
    PhaseEvent,
    ResumeEvent,
    StartEvent,
    TestEvent,
    TimeLimitEvent,
    TrainEvent,
)
from ftui.files import replace_dir
from ftui.modeling import (
    apply_freeze,
    build_model,
    encoder_layers,
    frozen_prefix,
    load_classifier,
    load_tokenizer,
    save_classifier,
)
from ftui.prefix_cache import PrefixCache, weakly
from ftui.runs import Run, RunStatus
from ftui.scaleout import note_pid
from ftui.schedule import TimeCapPlanner
from ftui.tasks import Task, TaskInfo, save_task

log = logging.getLogger(__name__)

MODEL_DIR = "model"
RESUME_DIR = "resume"
RESUME_EVERY_S = 30.0  # at most one resume snapshot (weights + optimizer) per this many seconds, and one at Stop
PREDICTIONS_FILE = "test_predictions.parquet"


def pick_device() -> str:
    """'cuda' when a GPU is visible (fp32 matmuls then allowed TF32), else 'cpu'."""
    if torch.cuda.is_available():
        accel.enable_tf32()
        return "cuda"
    return "cpu"


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """Autocast dtype for a precision choice; None means fp32. CPU 'auto' stays fp32 (bf16 is slow there)."""
    if precision == "fp32" or (precision == "auto" and device == "cpu"):
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        return torch.float16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def seed_everything(seed: int) -> None:
    """Same seed, same head init, order and dropout."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def memory_mb(device: str) -> float:
    """Peak GPU memory on CUDA, resident memory of this process on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def peak_memory_mb(device: str) -> float:
    """Peak GPU memory on CUDA, peak resident memory of this process on CPU."""
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------------------------------- tokenizing
def tokenize(
    bundle: DataBundle, tokenizer: Any, max_length: int, stop: Callable[[], bool], long_text: str = "truncate"
) -> dict[str, Tokenized]:
    """Every split of a bundle as flat token arrays."""
    return {split: tokenize_split(ds, tokenizer, max_length, stop, long_text) for split, ds in bundle.splits.items()}


def _token_key(run: Run, token: str | None) -> tuple[Any, ...]:
    m, t = run.config.model, run.config.train
    return (*run.config.data.key(), m.source, m.checkpoint, t.max_length, t.long_text, hash(token or ""))


# --------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: nn.Module,
    tok: Tokenized,
    batch_size: int,
    pad_id: int,
    device: str,
    amp: torch.dtype | None,
    stop: Callable[[], bool] = lambda: False,
    cache: PrefixCache | None = None,
    split: str = "validation",
    probs_out: list[np.ndarray] | None = None,
    task: Task = Task.SINGLE,
    threshold: float = 0.5,
    dist: Dist = SOLO,
) -> dict[str, float]:
    """Mean loss and the task's metrics (see ftui.tasks.metrics) on one tokenized split; outputs stay on the device
    until the end.

    With probs_out, the scores of every row (class or label probabilities, or the predicted value; in the split's
    order) are appended to it. Under DDP each rank computes every world-th batch (the same batches one process would,
    padding included) and the logits are gathered, so every rank gets the metrics of exactly the whole split.
    """
    was_training = model.training
    model.eval()
    outs: list[torch.Tensor] = []
    order: list[np.ndarray] = []
    batches = eval_batches(tok.lengths, batch_size)
    for r in range(0, len(batches), dist.world):
        if dist.agree(stop()):
            raise StopRequested
        if r + dist.rank >= len(batches):
            continue
        idx = batches[r + dist.rank]
        batch = collate(tok, idx, pad_id, device)
        batch.pop("labels")
        ctx = cache.guarded(model, batch, split, tok, idx) if cache else contextlib.nullcontext()
        with ctx, torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
            outs.append(model(**batch).logits.float())  # stays on the device until the end: no sync per batch
        order.append(idx)
    model.train(was_training)
    if dist.enabled:  # every rank's logits and row numbers, so each rank scores the whole split
        parts = dist.gather((torch.cat(outs).cpu() if outs else None, np.concatenate(order) if order else None))
        outs = [p[0] for p in parts if p[0] is not None]
        order = [p[1] for p in parts if p[1] is not None]
    if not outs:
        return {"loss": 0.0, **tasks.metrics(task, np.zeros((0, 1), dtype=np.float32), tok.labels[:0], threshold)}
    flat = torch.cat(outs).cpu()
    logits = torch.empty_like(flat)
    logits[torch.from_numpy(np.concatenate(order))] = flat
    labels = tok.labels
    if tok.doc is not None:  # chunked long texts: a document's logits are the mean of its windows'
        logits = pool_windows(logits, torch.from_numpy(tok.doc), tok.n_docs)
        labels = tok.doc_labels
    loss = float(tasks.loss(task, logits, torch.from_numpy(labels))) if len(labels) else 0.0
    scores = tasks.scores(task, logits).numpy()
    if probs_out is not None:
        probs_out.append(scores)
    return {"loss": loss, **tasks.metrics(task, scores, labels, threshold)}


def _set_train_mode(model: nn.Module, depth: int) -> None:
    model.train()
    for m in frozen_prefix(model, depth):
        m.eval()  # frozen layers run without dropout: same outputs every epoch


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _save_best(model: nn.Module, tokenizer: Any, run: Run) -> Path:
    """Write the checkpoint beside the old one, then swap (recoverable at startup if killed in between)."""
    return replace_dir(run.out_dir / MODEL_DIR, lambda tmp: save_classifier(model, tokenizer, tmp, run.label_names))


def _oom_advice(cfg: RunConfig, device: str) -> str:
    t = cfg.train
    where = "GPU" if device == "cuda" else "host"
    return (
        f"Out of {where} memory at batch size {t.batch_size} and max length {t.max_length}. "
        f"Lower the batch size (try {max(1, t.batch_size // 2)}) or the max sequence length, and raise gradient "
        f"accumulation to keep the same effective batch; a higher freeze depth also saves memory."
    )


def failure_text(exc: BaseException, cfg: RunConfig, device: str) -> str:
    """What a failed run says: an FtuiError as written, out-of-memory as advice, anything else by type and text."""
    if isinstance(exc, FtuiError):
        return str(exc)
    return _oom_advice(cfg, device) if _is_oom(exc) else f"{type(exc).__name__}: {exc}"


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc)


# ---------------------------------------------------------------------------------------------- the worker body
def run_worker(run: Run, body: Callable[[dict[str, Any]], None], device: str) -> None:
    """The lifecycle every run shares (fine-tune or baseline): status, metric sinks, and one outcome whatever happens.

    `body(scratch)` does the work; what it leaves in `scratch` (model, tokenizer, best, resume) is what a Stop keeps.
    Never raises: the outcome lands in run.finish(...) and run.json.
    """
    scratch: dict[str, Any] = {}
    try:
        run.set_status(RunStatus.RUNNING)
        run.set_progress(phase="loading data", device=device)
        run.save()
        sink_list = sinks.open_sinks(sinks.parse(run.config.train.report_to), run.name, run.out_dir, run.config.to_dict())
        run.listeners = [*run.listeners, *sink_list]  # the engine's own (a sweep's pruning rule) come first
        body(scratch)
    except StopRequested:
        _finish_stopped(run, scratch)
    except PeerLost as exc:
        _finish_peer_lost(run, scratch, exc)
    except FtuiError as exc:
        run.finish(RunStatus.FAILED, failure_text(exc, run.config, device))
    except Exception as exc:  # the app must survive any failure of one run
        log.warning("run %s failed", run.run_id, exc_info=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC and not _is_oom(exc):
            kept = (run.out_dir / MODEL_DIR).exists()
            run.finish(
                RunStatus.FAILED,
                f"The disk is full ({exc.filename or run.out_dir}): the checkpoint could not be saved. "
                + ("The best checkpoint saved before is kept. " if kept else "")
                + "Free some space (delete old runs in the Runs tab) and start again.",
                {"model_dir": str(run.out_dir / MODEL_DIR)} if kept else {},
            )
        else:
            run.finish(RunStatus.FAILED, failure_text(exc, run.config, device))
    finally:
        for close in run.listeners:
            try:
                close(None)
            except Exception as exc:  # noqa: BLE001 - a sink that fails to close must not hide the outcome
                log.info("metric sink did not close: %s", exc)
        run.listeners = []
        scratch.clear()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            accel.empty_host_cache()  # a stopped or failed run's pinned host store too


def train_run(
    run: Run,
    load_bundle: Callable[[], DataBundle],
    token: str | None = None,
    token_cache: TokenCache | None = None,
    resume: bool = False,
    dist: Dist = SOLO,
) -> None:
    """Worker body of a fine-tuning run (one phase or two); never raises. Under DDP this is rank 0: it tells the other
    ranks which run to train, then trains its share and alone writes the run's record and files."""
    device = pick_device()
    if dist.enabled:
        dist.error_dir = run.out_dir
        note_pid(run.out_dir, dist.rank)
        offline = os.environ.get("HF_HUB_OFFLINE", "") == "1"
        dist.broadcast(Assignment(run.run_id, run.name, str(run.out_dir), run.config.to_dict(), resume, offline).to_dict())
    # A failed collective anywhere in the run (NCCL: often inside backward) ends it as a lost peer, resumable.
    body = lambda scratch: dist.guard(lambda: _train(run, load_bundle, token, device, scratch, token_cache, resume, dist))  # noqa: E731
    run_worker(run, body, device)


def _finish_peer_lost(run: Run, state: dict[str, Any], exc: PeerLost) -> None:
    """Another rank died: the run fails with what it said, keeping the best checkpoint and a resume snapshot.

    Under gloo the collective failed on the host and the weights are those of the last step every rank completed: a
    new snapshot of that step is written. Under NCCL no new one is: the lost collective may still sit on the GPU stream
    (a state_dict copy or torch.save would wait behind it until the watchdog's abort) and the gradients it was
    reducing may be half-summed; the last periodic snapshot, written while every rank was alive, is kept instead."""
    saved = False
    snapshot = run.out_dir / RESUME_DIR / "state.pt"
    if exc.backend == "nccl":
        saved = snapshot.exists()
    elif "resume" in state:
        try:
            state["resume"]()
            saved = snapshot.exists()
        except Exception as err:  # noqa: BLE001 - the failure must land regardless
            log.warning("no resume snapshot after a lost rank: %s", err)
    result: dict[str, Any] = {"resumable": saved}
    if (run.out_dir / MODEL_DIR / "labels.json").exists():
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if state.get("best"):
        result["best_eval"] = state["best"]
    if not saved:
        fix = "Start the run again."
    elif exc.backend == "nccl":
        at = state.get("snapshot_step")
        fix = (
            f"Resume continues from the last periodic snapshot{f' (step {at})' if at is not None else ''}, not from the "
            "last step: under NCCL the weights at the failure may hold a half-finished gradient exchange, so no new "
            "snapshot was written; the steps after it are trained again."
        )
    else:
        fix = "Resume continues from the last step every process completed."
    run.finish(RunStatus.FAILED, f"{exc.problem} {fix}", result)


def follow_run(assignment: Assignment, dist: Dist, load_bundle: Callable[[], DataBundle], token: str | None) -> int:
    """A rank other than 0: train the run rank 0 named, computing this rank's share of every batch; nothing is written
    (rank 0 keeps the record and the files). 0 when the run ended normally here (completed, or ended by rank 0: a
    Stop, its failure), 1 when this rank failed (its message is left for rank 0)."""
    cfg = RunConfig.from_dict(assignment.config)
    run = Run(assignment.run_id, assignment.name, cfg, Path(assignment.out_dir))  # no store: a private copy
    dist.error_dir = run.out_dir
    note_pid(run.out_dir, dist.rank)
    device = pick_device()
    try:
        dist.guard(lambda: _train(run, load_bundle, token, device, {}, None, assignment.resume, dist))
        return 0
    except (StopRequested, PeerLost) as exc:
        log.info("rank %d: the run ended on another rank (%s)", dist.rank, type(exc).__name__)
        return 0
    except Exception as exc:  # noqa: BLE001 - said to rank 0, which fails the run with it
        log.warning("rank %d failed", dist.rank, exc_info=True)
        dist.record_failure(failure_text(exc, cfg, device))
        return 1


def _finish_stopped(run: Run, state: dict[str, Any]) -> None:
    """Keep the best checkpoint so far; with none yet but some training done, the current weights, so nothing is
    lost; before the first optimizer step there is nothing worth keeping (an untrained head is not a model)."""
    result: dict[str, Any] = {}
    if "resume" in state:
        try:
            state["resume"]()
        except Exception as exc:  # noqa: BLE001 - resuming is a convenience; the stop must land regardless
            log.warning("no resume snapshot at Stop: %s", exc)
    has_model = (run.out_dir / MODEL_DIR / "labels.json").exists()
    steps = int(state.get("steps", 0))
    if not has_model and "model" in state and steps > 0:
        try:
            save = state.get("save")  # the objective's own way of saving (a classifier, or a masked-LM checkpoint)
            if save is not None:
                replace_dir(run.out_dir / MODEL_DIR, lambda tmp: save(state["model"], state["tokenizer"], tmp))
            else:
                _save_best(state["model"], state["tokenizer"], run)
            result["kept"], result["kept_step"] = "last", steps
            has_model = True
        except Exception as exc:  # noqa: BLE001 - a half-built model may not save; the stop itself must still land
            log.warning("could not keep the weights at Stop: %s", exc)
    elif has_model:
        result["kept"] = "best"
        result["kept_step"] = (state.get("best") or {}).get("step")
    if has_model:
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if state.get("best"):
        result["best_eval"] = state["best"]
    run.finish(RunStatus.STOPPED, None, result)


def tokenized_splits(
    run: Run, bundle: DataBundle, tokenizer: Any, token: str | None, cache: TokenCache | None, stop: Callable[[], bool]
) -> dict[str, Tokenized]:
    """The run's splits tokenized, from the engine's cache when the same data and tokenizer were tokenized before."""
    key = _token_key(run, token)
    enc = cache.get(key) if cache else None
    if enc is None:
        enc = tokenize(bundle, tokenizer, run.config.train.max_length, stop, run.config.train.long_text)
        if cache:
            cache.put(key, enc)
    return enc


# ----------------------------------------------------------------------------------------------------- schedules
@dataclass(frozen=True)
class Phase:
    """One stretch of training with its own trainable set, learning rate and warmup (and a fresh optimizer)."""

    name: str  # "train" (one phase), "head" (transfer learning), "finetune"
    epochs: float
    learning_rate: float
    warmup_ratio: float
    freeze_depth: int  # bottom layers frozen; the encoder's depth = only the head trains


def build_schedule(cfg: RunConfig, num_layers: int) -> list[Phase]:
    """The phases of a run: one, or the head on a frozen encoder first and then fine-tuning down to the freeze depth."""
    t, depth = cfg.train, cfg.model.freeze_depth
    if t.schedule != "two-phase":
        return [Phase("train", t.epochs, t.learning_rate, t.warmup_ratio, depth)]
    return [
        Phase("head", t.head_epochs, t.head_learning_rate, t.warmup_ratio, num_layers),
        Phase("finetune", t.epochs, t.learning_rate, t.warmup_ratio, depth),
    ]


@dataclass
class TrainState:
    """Where a run is: what the resume snapshot stores, and what Stop, early stopping and the best checkpoint read."""

    phase: int = 0  # index into the schedule
    step: int = 0  # optimizer steps over all phases (the charts' x axis)
    phase_step: int = 0  # optimizer steps within the phase (its learning-rate schedule)
    micro: int = 0  # micro-batches within the phase (gradient accumulation)
    epoch_no: int = 0  # epochs completed within the phase
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    epoch_gen_state: torch.Tensor | None = None  # the data-order generator at the start of the current epoch
    best: dict[str, Any] | None = None  # the best evaluation so far (its metrics and step)
    evals_since_best: int = 0
    samples_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        """What goes into the resume snapshot (tensors stay tensors; torch.save keeps them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """From a snapshot; snapshots from before phases existed had one phase, so phase_step = step."""
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in known})
        if "phase_step" not in d:
            state.phase_step = state.step
        return state


# ---------------------------------------------------------------------------------------------------- objectives
class Objective(Protocol):
    """What the core trains for: how an epoch is batched, a batch's loss, an evaluation, which one is better, and how
    the best model is saved. Classification is one; masked-language modelling (ftui.adapt) is another."""

    train_rows: int  # examples (or blocks) in one epoch of train

    def epoch_batches(self, gen: torch.Generator) -> list[np.ndarray]:
        """One epoch's batches (row indices), in order, drawn from `gen`."""
        ...

    def row_weights(self, idx: np.ndarray) -> np.ndarray | None:
        """How much each row of a batch weighs in its mean loss; None = alike (how DDP shares a batch exactly)."""
        ...

    def train_loss(self, model: nn.Module, idx: np.ndarray, cache: PrefixCache | None, amp: torch.dtype | None) -> torch.Tensor:
        """The mean loss of one micro-batch (graph attached)."""
        ...

    def evaluate(
        self, model: nn.Module, amp: torch.dtype | None, stop: Callable[[], bool], cache: PrefixCache | None
    ) -> dict[str, float]:
        """Validation metrics, 'loss' among them."""
        ...

    def better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> bool:
        """Whether an evaluation beats the best so far."""
        ...

    def eval_event(self, step: int, epoch: float, metrics: dict[str, float], phase: str) -> Event:
        """The event an evaluation logs."""
        ...

    def progress(self, best: dict[str, Any]) -> dict[str, Any]:
        """Progress fields for the best evaluation so far."""
        ...

    def save(self, model: nn.Module, tokenizer: Any, folder: Path) -> None:
        """Write the best model into `folder` (swapped in by the core)."""
        ...


def class_weight_vector(spec: str, train_labels: np.ndarray, names: list[str], task: Task = Task.SINGLE) -> torch.Tensor | None:
    """Loss weights: None for "none". Single-label: per class, "balanced" gives n / (k * n_c) (a class 10x rarer weighs
    10x more, scikit-learn's convention). Multi-label: per label, a weight on its positives, "balanced" gives
    negatives / positives (BCEWithLogits' pos_weight). A custom list has one weight per class or label."""
    from ftui.config import parse_class_weights

    word = spec.strip().lower()
    if word in ("", "none"):
        return None
    if task is Task.REGRESSION:
        raise FtuiError("Class weights apply to classes and labels; this is a regression task.", "Set Class weights to 'none'.")
    if word == "balanced":
        if task is Task.MULTI:
            pos = train_labels.reshape(len(train_labels), -1).sum(0).astype(np.float64)
            neg = len(train_labels) - pos
            return torch.tensor(np.where(pos > 0, neg / np.maximum(pos, 1), 1.0), dtype=torch.float32)
        counts = np.bincount(train_labels, minlength=len(names)).astype(np.float64)
        weights = np.where(counts > 0, counts.sum() / (len(names) * np.maximum(counts, 1)), 1.0)
        return torch.tensor(weights, dtype=torch.float32)
    custom = parse_class_weights(spec) or []
    what = "labels" if task is Task.MULTI else "classes"
    if len(custom) != len(names):
        raise FtuiError(
            f"{len(custom)} class weights were given for {len(names)} {what} ({', '.join(names)}).",
            f"Give one weight per {what[:-1]}, in that order, or choose 'balanced'.",
        )
    return torch.tensor(custom, dtype=torch.float32)


class ClassificationObjective:
    """Supervised labels of any shape (ftui.tasks): cross-entropy on classes (optionally class-weighted), binary
    cross-entropy per label, or squared error on a number. The best checkpoint has the best validation primary
    metric (accuracy, micro-F1, RMSE), then the lowest loss. Evaluation loss stays unweighted, so runs with and without
    weights compare."""

    def __init__(
        self,
        enc: dict[str, Tokenized],
        pad_id: int,
        device: str,
        batch_size: int,
        names: list[str],
        class_weights: torch.Tensor | None = None,
        task: Task = Task.SINGLE,
        threshold: float = 0.5,
        long_text: str = "truncate",
        dist: Dist = SOLO,
    ) -> None:
        self.enc, self.pad_id, self.device, self.batch_size, self.names = enc, pad_id, device, batch_size, names
        self.dist = dist
        self.train_rows = len(enc["train"])
        self.class_weights = class_weights.to(device) if class_weights is not None else None
        self._host_weights = class_weights.numpy() if class_weights is not None else None  # no device copy per batch
        self.task, self.threshold, self.long_text = task, threshold, long_text

    def epoch_batches(self, gen: torch.Generator) -> list[np.ndarray]:
        """Shuffled batches of similar lengths."""
        return length_grouped_batches(self.enc["train"].lengths, self.batch_size, gen)

    def row_weights(self, idx: np.ndarray) -> np.ndarray | None:
        """Class-weighted cross-entropy is a weighted mean (each row weighs its class's weight); the other losses are
        plain means (multi-label weights act inside each row's term)."""
        if self.task is not Task.SINGLE or self.class_weights is None:
            return None
        return self._host_weights[self.enc["train"].labels[idx]]

    def train_loss(self, model: nn.Module, idx: np.ndarray, cache: PrefixCache | None, amp: torch.dtype | None) -> torch.Tensor:
        """The task's loss on one batch (frozen layers read from the cache when it holds the batch)."""
        batch = collate(self.enc["train"], idx, self.pad_id, self.device)
        y = batch.pop("labels")
        # The cache swaps the frozen layers of the model itself (inside a DDP wrapper, its module).
        ctx = cache.guarded(unwrap(model), batch, "train", self.enc["train"], idx) if cache else contextlib.nullcontext()
        with ctx, torch.autocast(device_type=self.device, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(**batch).logits
        return tasks.loss(self.task, logits, y, self.class_weights)

    def evaluate(
        self, model: nn.Module, amp: torch.dtype | None, stop: Callable[[], bool], cache: PrefixCache | None
    ) -> dict[str, float]:
        """Loss and the task's metrics on validation."""
        return evaluate(model, self.enc["validation"], self.batch_size * 2, self.pad_id, self.device, amp, stop, cache,
                        task=self.task, threshold=self.threshold, dist=self.dist)  # fmt: skip

    def better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> bool:
        """A better primary metric (accuracy, micro-F1, RMSE), then a lower loss."""
        return tasks.better(self.task, metrics, best)

    def eval_event(self, step: int, epoch: float, metrics: dict[str, float], phase: str) -> EvalEvent:
        """The event an evaluation logs."""
        return EvalEvent(
            step=step,
            epoch=round(epoch, 4),
            eval_loss=metrics["loss"],
            phase=phase,
            **{f"eval_{k}": v for k, v in metrics.items() if k != "loss"},
        )

    def progress(self, best: dict[str, Any]) -> dict[str, Any]:
        """The best validation primary metric, for the status line."""
        return {f"best_eval_{self.task.primary}": best[self.task.primary]}

    def info(self) -> TaskInfo:
        """What the saved model needs to read its outputs."""
        return TaskInfo(self.task, self.threshold, long_text=self.long_text)

    def save(self, model: nn.Module, tokenizer: Any, folder: Path) -> None:
        """Model, tokenizer, label names and the label shape."""
        save_classifier(model, tokenizer, folder, self.names, self.info())


# ----------------------------------------------------------------------------------------------------- the core
class TrainingCore:
    """The one training loop: steps, accumulation, evaluation cadence, best checkpoint, early stop, wall-clock cap,
    Stop and resume snapshots, over the phases of a schedule; the objective says what a loss and a better model are."""

    def __init__(
        self,
        run: Run,
        model: nn.Module,
        tokenizer: Any,
        phases: list[Phase],
        objective: Objective,
        device: str,
        scratch: dict[str, Any],
        dist: Dist = SOLO,
    ) -> None:
        self.run, self.model, self.tokenizer = run, model, tokenizer
        self.dist = dist
        self.net: nn.Module = model  # what a training step calls: the model, or its DDP wrapper
        self.phases, self.objective, self.device, self.scratch = phases, objective, device, scratch
        self.t = run.config.train
        self.amp = autocast_dtype(self.t.precision, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 and device == "cuda" else None
        self.train_rows = objective.train_rows
        self.micro_per_epoch = math.ceil(self.train_rows / self.t.batch_size)
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / self.t.grad_accum))
        self.phase_steps = self._plan_steps()
        self.total_steps = sum(self.phase_steps)
        self.eval_every = max(1, self.steps_per_epoch // self.t.evals_per_epoch)
        self.log_every = max(1, min(self.eval_every, 10, self.steps_per_epoch // 20 or 1))
        self.gen = torch.Generator().manual_seed(self.t.seed)
        self.deadline = time.monotonic() + 60 * self.t.max_minutes if self.t.max_minutes else 0.0
        self.planner = TimeCapPlanner(self.deadline, self.t.max_minutes)  # plans for the steps that fit the cap
        self.opt: Any = None
        self.sched: Any = None
        self.cache: PrefixCache | None = None
        self.point: dict[str, Any] = {}  # the TrainState as of the last optimizer step: what a snapshot stores
        self.aside = 0.0  # seconds spent evaluating and saving, kept out of the training speed

    def _plan_steps(self) -> list[int]:
        steps = [max(1, math.ceil(self.steps_per_epoch * p.epochs)) for p in self.phases]
        if self.t.max_steps:  # a cap on the whole run: later phases are cut first
            left, capped = self.t.max_steps, []
            for n in steps:
                capped.append(min(n, left))
                left -= capped[-1]
            steps = capped
        return steps

    def _epoch_of(self, state: TrainState) -> float:
        """Epochs over the whole run, for the charts (phases add up)."""
        done = sum(self.phase_steps[: state.phase]) / self.steps_per_epoch
        return done + state.phase_step / self.steps_per_epoch

    def _cache_off(self, reason: str) -> None:
        """The frozen-layer cache could not stand in for this model: say so on the run and keep training without it."""
        message = (
            f"The frozen-layer cache was switched off for this run ({reason}); frozen layers are recomputed each "
            "step instead: slower, same results (the CLI's --no-frozen-cache skips the check)."
        )
        notices = list(self.run.snapshot().progress.get("notices", []))
        if message in notices:
            return  # the same reason again (a later phase): said once
        self.run.log(NoticeEvent(step=self.run.snapshot().progress.get("step", 0), message=message))
        self.run.set_progress(notices=[*notices, message][-3:])

    # -------------------------------------------------------------------------------------------- phases
    def _enter_phase(self, index: int) -> None:
        """Freeze for the phase, a frozen-prefix cache at its depth, and a fresh optimizer and schedule; parameters
        that trained in the previous phase keep their optimizer state (only the newly trainable ones start fresh)."""
        phase = self.phases[index]
        if self.net is not self.model:
            self.net = self.model  # the last phase's wrapper goes first: its gradient hooks must not fire again
            gc.collect()
        apply_freeze(self.model, phase.freeze_depth)
        if self.cache is not None:
            self.cache.release()  # a cache at another depth is of no use: free it (pinned memory too) before the next
        self.cache = None
        if phase.freeze_depth and self.t.frozen_cache:
            try:
                self.cache = PrefixCache(self.model, phase.freeze_depth, self.device, self.amp, self.dist, self.t.batch_size * 2)
                self.cache.on_off = weakly(self._cache_off)  # no core<->cache cycle: both are freed before the test phase
            except Exception as exc:  # noqa: BLE001 - an architecture the cache cannot stand in for: compute instead
                self._cache_off(f"{type(exc).__name__}: {exc}")
        from transformers import get_linear_schedule_with_warmup

        previous = self.opt
        fused = self.device == "cuda"
        self.opt = torch.optim.AdamW(_param_groups(self.model, self.t.weight_decay), lr=phase.learning_rate, fused=fused)
        if previous is not None:
            for group in self.opt.param_groups:
                for p in group["params"]:
                    if p in previous.state:
                        self.opt.state[p] = previous.state[p]
        total = self.phase_steps[index]
        self.sched = get_linear_schedule_with_warmup(self.opt, int(phase.warmup_ratio * total), total)
        self.scratch["opt"] = self.opt
        _set_train_mode(self.model, phase.freeze_depth)
        self.net = self.dist.wrap(self.model)  # DDP over this phase's trainable set (rank 0's weights broadcast)

    def _phase_event(self, index: int, state: TrainState) -> PhaseEvent:
        p = self.phases[index]
        trainable = sum(x.numel() for x in self.model.parameters() if x.requires_grad)
        return PhaseEvent(
            step=state.step,
            phase=p.name,
            index=index,
            learning_rate=p.learning_rate,
            epochs=p.epochs,
            freeze_depth=p.freeze_depth,
            trainable_params=trainable,
        )

    # -------------------------------------------------------------------------------------------- resume
    def save_snapshot(self) -> None:
        """Everything needed to continue from the last optimizer step: weights, optimizer, schedule, data order, RNG."""
        if not self.point or not self.dist.is_main:
            return  # no step yet (a resume would start from scratch anyway), or another rank: rank 0 writes it
        snapshot = {
            **self.point,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": torch.get_rng_state(),
            # CUDA dropout draws from the GPU's generator, not the CPU's. Single-process runs only: under DDP rank 0
            # alone writes, and its states say nothing of the other ranks' GPUs (each rank's generator draws for its
            # own shard); a resumed multi-process run keeps each rank's freshly seeded generator instead.
            "cuda_rng": None if self.dist.enabled else accel.cuda_rng_state(),
        }
        replace_dir(self.run.out_dir / RESUME_DIR, lambda tmp: torch.save(snapshot, tmp / "state.pt"))
        self.scratch["snapshot_step"] = self.point["step"]  # what a lost NCCL peer's failure message names

    def load_snapshot(self) -> TrainState:
        """The state of a resume snapshot, with the model, optimizer, schedule and random streams restored."""
        snap = torch.load(self.run.out_dir / RESUME_DIR / "state.pt", map_location="cpu", weights_only=True)
        state = TrainState.from_dict(snap)
        self.model.load_state_dict(snap["model"])
        self._enter_phase(state.phase)  # the optimizer of the phase the snapshot was taken in
        self.opt.load_state_dict(snap["optimizer"])
        self.sched.load_state_dict(snap["scheduler"])
        if self.scaler and snap.get("scaler"):
            self.scaler.load_state_dict(snap["scaler"])
        if state.epoch_gen_state is not None:
            self.gen.set_state(state.epoch_gen_state)
        torch.set_rng_state(snap["rng"])
        if not self.dist.enabled:  # a single-process snapshot's GPU states mean nothing to several ranks (save_snapshot)
            accel.restore_cuda_rng(snap.get("cuda_rng"))
        if state.batch_in_epoch >= self.micro_per_epoch:
            # Saved at the last step of an epoch: that epoch is complete. Its order is drawn again from the saved
            # generator state and every batch of it skipped, so the next epoch draws the order it would have drawn.
            state.epoch_no += 1
        return state

    # ------------------------------------------------------------------------------------------------ fit
    def fit(self, state: TrainState, resumed: bool) -> TrainState:
        """Train every phase from `state` on; returns the final state (best checkpoint saved on the way)."""
        run = self.run
        self.scratch["resume"] = self.save_snapshot
        self.scratch["save"] = self.objective.save
        self.scratch["steps"] = state.step
        self.t0 = time.perf_counter()
        self.first_step = state.step
        for index in range(state.phase, len(self.phases)):
            if index != state.phase or not resumed:
                if index != state.phase:  # the next phase begins
                    state.phase, state.phase_step, state.micro = index, 0, 0
                    state.epoch_no, state.batch_in_epoch, state.evals_since_best = 0, 0, 0
                self._enter_phase(index)
                run.log(self._phase_event(index, state))
            resumed = False
            if self._fit_phase(state):
                break  # the wall-clock cap: no further phases
        return state

    def _fit_phase(self, state: TrainState) -> bool:
        """Train one phase to its end (or early stop); True when the wall-clock cap ended the whole run."""
        run, t, phase = self.run, self.t, self.phases[state.phase]
        stop = run.stop_event.is_set
        total = self.phase_steps[state.phase]
        running_loss = torch.zeros((), device=self.device)
        running_n, window_samples = 0, 0
        window_t0 = epoch_t0 = time.perf_counter()
        epoch_aside = 0.0
        last_snapshot = time.monotonic()
        done = state.phase_step >= total
        skip = state.batch_in_epoch
        while not done:
            epoch_gen_state = self.gen.get_state()
            batches = self.objective.epoch_batches(self.gen)
            for bi in range(skip, len(batches)):
                idx = batches[bi]
                if self.dist.agree(stop()):  # under DDP every rank leaves at the same step
                    raise StopRequested
                mine, factor = self.dist.shard(idx, self.objective.row_weights(idx) if self.dist.enabled else None)
                # Under DDP, gradients are exchanged once per optimizer step, not per accumulated micro-batch.
                syncs = (state.micro + 1) % t.grad_accum == 0 or (state.micro + 1) % self.micro_per_epoch == 0
                quiet = self.net.no_sync() if self.dist.enabled and not syncs else contextlib.nullcontext()  # type: ignore[operator]
                with quiet:
                    loss = self.objective.train_loss(self.net, mine, self.cache, self.amp) * factor
                    (self.scaler.scale(loss / t.grad_accum) if self.scaler else loss / t.grad_accum).backward()
                running_loss += loss.detach() / self.dist.world  # summed over ranks: the global batch's mean loss
                running_n += 1
                window_samples += len(idx)
                state.samples_seen += len(idx)
                state.micro += 1
                if state.micro % t.grad_accum and state.micro % self.micro_per_epoch:
                    continue
                self._optimizer_step()
                state.step += 1
                state.phase_step += 1
                state.batch_in_epoch = bi + 1
                state.epoch_gen_state = epoch_gen_state
                self.scratch["steps"] = state.step
                self.point = state.to_dict()
                total = self.planner.step(self, state)
                epoch = self._epoch_of(state)
                # The first step is logged at once so the chart shows a point within seconds of Start.
                if state.phase_step % self.log_every == 0 or state.phase_step == total or state.step == 1:
                    self.dist.sum_(running_loss)
                    now = time.perf_counter()
                    mean_loss = float(running_loss) / max(1, running_n)  # the sync the log line needs anyway
                    if not math.isfinite(mean_loss):  # NaN spreads through the sum: no step goes unchecked
                        raise Diverged("training loss", state.step, mean_loss)
                    run.log(
                        TrainEvent(
                            step=state.step,
                            epoch=round(epoch, 4),
                            loss=mean_loss,
                            lr=self.sched.get_last_lr()[0],
                            phase=phase.name,
                        )
                    )
                    eta = (now - self.t0 - self.aside) / max(1, state.step - self.first_step) * (self.total_steps - state.step)
                    run.set_progress(
                        step=state.step,
                        total_steps=self.total_steps,
                        epoch=round(epoch, 3),
                        samples_per_s=round(window_samples / max(now - window_t0, 1e-9), 1),
                        eta_s=round(eta, 1),
                        memory_mb=round(memory_mb(self.device), 1),
                        train_phase=phase.name,
                        **({"prefix_cache_mb": round(self.cache.size_mb(), 1)} if self.cache else {}),
                    )
                    running_loss.zero_()
                    running_n, window_samples, window_t0 = 0, 0, now
                over_time = bool(self.deadline) and self.dist.agree(time.monotonic() > self.deadline)
                if state.phase_step % self.eval_every == 0 or state.phase_step == total or over_time:
                    spent = self._evaluate(state, epoch, phase)
                    if time.monotonic() - last_snapshot >= RESUME_EVERY_S and state.step < self.total_steps:
                        t_save = time.perf_counter()
                        self.save_snapshot()
                        last_snapshot = time.monotonic()
                        spent += time.perf_counter() - t_save
                    self.aside += spent
                    epoch_aside += spent
                    window_t0 += spent
                    if t.early_stopping_patience and state.evals_since_best >= t.early_stopping_patience:
                        run.log(EarlyStopEvent(step=state.step, phase=phase.name))
                        done = True
                if state.phase_step >= total:
                    done = True
                elif over_time:
                    run.log(TimeLimitEvent(step=state.step, minutes=t.max_minutes))
                    done = True  # like early stopping: the best checkpoint so far is tested and kept
                if state.phase_step % self.steps_per_epoch == 0 or done:
                    state.epoch_no += 1
                    now = time.perf_counter()
                    seconds = round(now - epoch_t0 - epoch_aside, 3)
                    # An epoch cut short (time limit, early stop, max steps) is logged as the fraction it reached.
                    whole = state.phase_step % self.steps_per_epoch == 0
                    reached = state.epoch_no if whole else round(state.phase_step / self.steps_per_epoch, 4)
                    run.log(EpochEvent(step=state.step, epoch=reached, train_seconds=seconds, phase=phase.name))
                    epoch_t0, epoch_aside = now, 0.0
                    state.batch_in_epoch = 0
                if done:
                    return over_time  # the cap ends the run, not only this phase
            skip = 0
            state.batch_in_epoch = 0
        return False

    def _optimizer_step(self) -> None:
        trainable = [p for g in self.opt.param_groups for p in g["params"]]
        if self.scaler:
            self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    def _evaluate(self, state: TrainState, epoch: float, phase: Phase) -> float:
        """Validate, log, keep the checkpoint when it is the best so far; returns the seconds it took."""
        t_eval = time.perf_counter()
        run = self.run
        run.set_progress(phase="evaluating")
        m = self.objective.evaluate(self.model, self.amp, run.stop_event.is_set, self.cache)
        if not math.isfinite(m["loss"]):
            raise Diverged("validation loss", state.step, m["loss"])
        _set_train_mode(self.model, phase.freeze_depth)
        run.log(self.objective.eval_event(state.step, epoch, m, phase.name))
        if self.objective.better(m, state.best):
            state.best = {**m, "step": state.step}
            state.evals_since_best = 0
            self.scratch["best"] = state.best
            if self.dist.is_main:  # every rank has the same metrics (gathered), so the same verdict
                replace_dir(run.out_dir / MODEL_DIR, lambda tmp: self.objective.save(self.model, self.tokenizer, tmp))
        else:
            state.evals_since_best += 1
        run.set_progress(phase="training", **self.objective.progress(state.best))
        self.point = state.to_dict()
        return time.perf_counter() - t_eval


def _train(
    run: Run,
    load_bundle: Callable[[], DataBundle],
    token: str | None,
    device: str,
    scratch: dict[str, Any],
    token_cache: TokenCache | None = None,
    resume: bool = False,
    dist: Dist = SOLO,
) -> None:
    cfg, t = run.config, run.config.train
    stop = run.stop_event.is_set
    bundle = load_bundle()
    run.label_names = list(bundle.label_names)
    if stop():
        raise StopRequested
    run.set_progress(phase="loading model")
    seed_everything(t.seed)
    tokenizer = load_tokenizer(cfg.model, token)
    # The head's start comes from its own generator: a prediction on a base checkpoint in another thread cannot shift it.
    task = bundle.task
    run.set_progress(task=task.value, **({"processes": dist.describe()} if dist.enabled else {}))
    model = build_model(cfg.model, bundle.label_names, token, generator=torch.Generator().manual_seed(t.seed), task=task)
    model.to(device)
    scratch.update(model=model, tokenizer=tokenizer)
    if stop():
        raise StopRequested
    run.set_progress(phase="tokenizing")
    enc = tokenized_splits(run, bundle, tokenizer, token, token_cache, stop)
    num_layers = len(encoder_layers(model.base_model)) if t.schedule == "two-phase" else 0
    phases = build_schedule(cfg, num_layers)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    weights = class_weight_vector(t.class_weights, enc["train"].labels, run.label_names, task)
    if weights is not None:
        log.info("run %s: class weights %s", run.run_id, dict(zip(run.label_names, weights.tolist(), strict=True)))
        run.set_progress(class_weights=[round(w, 4) for w in weights.tolist()])
    objective = ClassificationObjective(enc, pad_id, device, t.batch_size, run.label_names, weights, task, t.threshold,
                                        t.long_text, dist)  # fmt: skip
    core = TrainingCore(run, model, tokenizer, phases, objective, device, scratch, dist)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if resume:
        state = core.load_snapshot()
        if state.best is not None and not (run.out_dir / MODEL_DIR / "labels.json").exists():
            state.best, state.evals_since_best = None, 0  # the saved best is gone: the next evaluation saves a new one
        scratch["best"], scratch["steps"], scratch["snapshot_step"] = state.best, state.step, state.step
        core.point = state.to_dict()
        run.log(ResumeEvent(step=state.step, phase=phases[state.phase].name, processes=dist.world))
    else:
        state = TrainState()
        core._enter_phase(0)  # the first phase's trainable set, for the start event's count
        run.log(
            StartEvent(
                total_steps=core.total_steps,
                steps_per_epoch=core.steps_per_epoch,
                device=device,
                processes=dist.world,
                train_size=core.train_rows,
                trainable_params=sum(p.numel() for p in model.parameters() if p.requires_grad),
                phases=[{"phase": p.name, "epochs": p.epochs, "learning_rate": p.learning_rate,
                         "freeze_depth": p.freeze_depth, "steps": n} for p, n in zip(phases, core.phase_steps, strict=True)],
            )
        )  # fmt: skip
        core.opt = None  # fit() enters phase 0 again, with a fresh optimizer and the phase event
    run.set_progress(phase="training", step=state.step, total_steps=core.total_steps, epoch=core._epoch_of(state))
    if dist.is_main:  # after the start event: the share of texts cut at the max length, warned before training
        advice.check_lengths(run, bundle, tokenizer)
    state = core.fit(state, resumed=resume)
    train_loop_s = time.perf_counter() - core.t0 - core.aside
    trained_epochs = core._epoch_of(state)
    t0 = core.t0
    scratch.pop("resume", None)
    # Test the best checkpoint, not the last weights.
    run.set_progress(phase="testing")
    scratch.pop("model", None)
    scratch.pop("opt", None)
    del model, core
    if device == "cuda":  # other cycles (a failed metric download's traceback) can hold the first evaluation's frames
        gc.collect()
        torch.cuda.empty_cache()
        accel.empty_host_cache()  # the cache's pinned host store, freed with the core, leaves PyTorch's host cache too
    dist.barrier()  # rank 0 has written the best checkpoint before any rank reads it
    best_model, _, _ = load_classifier(run.out_dir / MODEL_DIR, device, run.config.model.trust_remote_code)
    scratch["model"] = best_model
    amp = autocast_dtype(t.precision, device)
    threshold = t.threshold
    if task is Task.MULTI and t.tune_threshold:
        run.set_progress(phase="tuning the threshold")
        val_probs: list[np.ndarray] = []
        evaluate(best_model, enc["validation"], t.batch_size * 2, pad_id, device, amp, probs_out=val_probs, task=task,
                 dist=dist)  # fmt: skip
        if val_probs:
            threshold, val_f1 = tasks.tune_threshold(val_probs[0], enc["validation"].labels, t.threshold)
            log.info("run %s: threshold %.2f (validation micro-F1 %.4f)", run.run_id, threshold, val_f1)
        if dist.is_main:
            retag_model(run.out_dir / MODEL_DIR, TaskInfo(task, threshold, threshold_tuned=True, long_text=t.long_text))
    test_probs: list[np.ndarray] = []
    test = evaluate(best_model, enc["test"], t.batch_size * 2, pad_id, device, amp, probs_out=test_probs, task=task,
                    threshold=threshold, dist=dist)  # fmt: skip
    if not dist.is_main:
        return  # rank 0 writes the predictions and the outcome
    # Only now, with the best model loaded and tested, is the resume snapshot that protected the run not needed.
    shutil.rmtree(run.out_dir / RESUME_DIR, ignore_errors=True)
    try:
        save_predictions(run.out_dir / PREDICTIONS_FILE, bundle.splits["test"], test_probs[0], run.label_names,
                         TaskInfo(task, threshold, long_text=t.long_text))  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - the analysis file is a bonus; the run's metrics stand without it
        log.warning("could not save test predictions: %s", exc)
    test_metrics = {f"test_{k}": v for k, v in test.items()}
    if task is Task.MULTI:
        test_metrics["threshold"] = threshold
    # Warnings first: "test" stays the run's last event.
    advice.after_test(run, task, test_probs[0], bundle.splits["test"], test_metrics, trained_epochs, state.step)
    run.log(TestEvent(step=state.step, **test_metrics))
    run.finish(
        RunStatus.COMPLETED,
        None,
        {
            **test_metrics,
            "task": task.value,
            "epoch": round(trained_epochs, 4),
            "best_eval": state.best,
            "model_dir": str(run.out_dir / MODEL_DIR),
            "train_seconds": round(time.perf_counter() - t0, 2),
            "train_loop_seconds": round(train_loop_s, 3),
            "train_samples": state.samples_seen,
            "steps": state.step,
            "device": device,
            "train_size": len(enc["train"]),
            "val_size": len(enc["validation"]),
            "test_size": len(enc["test"]),  # the intervals' n (ftui.significance)
            "peak_memory_mb": round(peak_memory_mb(device), 1),
        },
    )


def retag_model(model_dir: Path, info: TaskInfo) -> None:
    """Rewrite a saved model's task.json (the tuned threshold), then touch labels.json: its time is the model's
    version, so a copy cached by Predict with the old threshold is not served again."""
    save_task(model_dir, info)
    os.utime(model_dir / "labels.json")


def can_resume(run: Run) -> bool:
    """True when a stopped or interrupted run (or one failed by a lost rank) left a resume snapshot."""
    resumable = run.status.value in ("stopped", "interrupted") or (run.status.value == "failed" and run.result.get("resumable"))
    return bool(resumable) and (run.out_dir / RESUME_DIR / "state.pt").exists()


def save_predictions(path: Path, ds: Any, probs: np.ndarray, names: list[str], info: TaskInfo | None = None) -> None:
    """Every test row with its true and predicted label and the scores, for error analysis: class probabilities;
    label probabilities with the predicted label set; the predicted value and its error."""
    import pandas as pd

    from ftui.data import label_matrix

    info = info or TaskInfo()
    frame = pd.DataFrame({"text": ds[TEXT]})
    if TEXT_PAIR in ds.column_names:
        frame["text_pair"] = ds[TEXT_PAIR]
    if info.task is Task.REGRESSION:
        gold = np.asarray(ds[LABEL], dtype=np.float64)
        pred = probs.reshape(-1).astype(np.float64)
        frame["label"], frame["predicted"], frame["error"] = gold, pred, pred - gold
        # A number has no confidence; "correct" means closer than predicting the mean would be on average (the
        # mean absolute deviation), so the mistakes view lists the rows the model does worse on than a constant.
        frame["confidence"] = np.nan
        frame["correct"] = np.abs(pred - gold) <= np.abs(gold - gold.mean()).mean()
    elif info.task is Task.MULTI:
        gold_m, pred_m = label_matrix(ds) >= 0.5, probs >= info.threshold

        def words(row: np.ndarray) -> str:
            on = [n for n, v in zip(names, row, strict=True) if v]
            return ", ".join(on) if on else "none"

        frame["label"] = [words(r) for r in gold_m]
        frame["predicted"] = [words(r) for r in pred_m]
        frame["confidence"] = np.where(pred_m, probs, 1 - probs).min(-1)  # the least sure of its label decisions
        frame["correct"] = (gold_m == pred_m).all(-1)
        for i, name in enumerate(names):
            frame[f"p({name})"] = probs[:, i]
        for i, name in enumerate(names):
            frame[f"y({name})"] = gold_m[:, i]  # the true label set, unambiguous whatever the label names hold
    else:
        pred = probs.argmax(-1)
        frame["label"] = [names[i] for i in ds[LABEL]]
        frame["predicted"] = [names[i] for i in pred]
        frame["confidence"] = probs.max(-1)
        frame["correct"] = frame["label"] == frame["predicted"]
        for i, name in enumerate(names):
            frame[f"p({name})"] = probs[:, i]
    tmp = path.with_suffix(".tmp")
    frame.to_parquet(tmp)
    os.replace(tmp, path)


def iter_events(run: Run, timeout: float = 3600.0) -> Iterator[dict[str, Any]]:
    """Yield the run's events as they arrive, until it finishes (for the CLI)."""
    seen, version = 0, 0
    deadline = time.monotonic() + timeout
    while True:
        version = run.wait_for_change(version, timeout=max(0.0, min(1.0, deadline - time.monotonic())))
        for ev in run.events(seen):
            seen += 1
            yield ev
        if run.done.is_set() and not run.events(seen):
            return
        if time.monotonic() > deadline:
            return
