"""Fine-tuning a classifier on the training core: tokenizing a run's splits, the classification objective and its
evaluation, the run's setup, and the test of the best checkpoint that completes it."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftui import accel, advice, tasks
from ftui.accel import autocast_dtype, peak_memory_mb, pick_device, seed_everything
from ftui.architecture import encoder_layers
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
from ftui.data import DataBundle
from ftui.data_report import label_matrix
from ftui.distributed import SOLO, Assignment, Dist, PeerLost, unwrap
from ftui.errors import StopRequested
from ftui.events import EvalEvent, ResumeEvent, TestEvent
from ftui.modeling import build_model, load_classifier, load_tokenizer, save_classifier
from ftui.predictions_file import save_predictions
from ftui.prefix_cache import PrefixCache
from ftui.run_layout import MODEL_DIR, PREDICTIONS_FILE, RESUME_DIR, has_classifier
from ftui.runs import Run
from ftui.scaleout import note_pid
from ftui.schedule import build_schedule
from ftui.significance import micro_f1_result
from ftui.tasks import Task, TaskInfo, class_weight_vector, save_task
from ftui.train_state import Ending, Holdings, Outcome
from ftui.training_core import TrainingCore
from ftui.worker import failure_text, run_worker

log = logging.getLogger(__name__)


def tokenize(
    bundle: DataBundle, tokenizer: Any, max_length: int, stop: Callable[[], bool], long_text: str = "truncate"
) -> dict[str, Tokenized]:
    """Every split of a bundle as flat token arrays."""
    return {split: tokenize_split(ds, tokenizer, max_length, stop, long_text) for split, ds in bundle.splits.items()}


def _token_key(run: Run, token: str | None) -> tuple[Any, ...]:
    m, t = run.config.model, run.config.train
    return (*run.config.data.key(), m.source, m.checkpoint, t.max_length, t.long_text, hash(token or ""))


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


def _train(
    run: Run,
    load_bundle: Callable[[], DataBundle],
    token: str | None,
    device: str,
    holdings: Holdings,
    token_cache: TokenCache | None = None,
    resume: bool = False,
    dist: Dist = SOLO,
) -> Outcome:
    """Set up, fit and test a fine-tuning run; its outcome (the completed run's result in it) for the worker to land."""
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
    holdings.model, holdings.tokenizer = model, tokenizer
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
        run.set_progress(class_weights=tuple(round(w, 4) for w in weights.tolist()))
    objective = ClassificationObjective(enc, pad_id, device, t.batch_size, run.label_names, weights, task, t.threshold,
                                        t.long_text, dist)  # fmt: skip
    core = TrainingCore(run, model, tokenizer, phases, objective, device, holdings, dist)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    if resume:
        state = core.load_snapshot()
        if state.best is not None and not has_classifier(run.out_dir):
            state.best, state.evals_since_best = None, 0  # the saved best is gone: the next evaluation saves a new one
        core.begin(state)
        run.log(ResumeEvent(step=state.step, phase=phases[state.phase].name, processes=dist.world))
    else:
        core.begin(None)
    run.set_progress(phase="training", step=core.state.step, total_steps=core.total_steps, epoch=core._epoch_of(core.state))
    if dist.is_main:  # after the start event: the share of texts cut at the max length, warned before training
        advice.check_lengths(run, bundle, tokenizer)
    outcome = core.fit()
    if outcome.ending is Ending.STOPPED:
        return outcome  # the worker keeps what Stop keeps: the holdings still have the snapshot and the model
    state = outcome.state
    assert state is not None  # fit always says where it ended
    holdings.release()  # the snapshot (it holds the core) and the trained model: the test reads the best checkpoint
    # Test the best checkpoint, not the last weights.
    run.set_progress(phase="testing")
    del model, core
    if device == "cuda":  # other cycles (a failed metric download's traceback) can hold the first evaluation's frames
        gc.collect()
        torch.cuda.empty_cache()
        accel.empty_host_cache()  # the cache's pinned host store, freed with the core, leaves PyTorch's host cache too
    dist.barrier()  # rank 0 has written the best checkpoint before any rank reads it
    best_model, _, _ = load_classifier(run.out_dir / MODEL_DIR, device, run.config.model.trust_remote_code)
    holdings.model = best_model
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
        return outcome  # rank 0 writes the predictions and the outcome
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
    advice.after_test(run, task, test_probs[0], bundle.splits["test"], test_metrics, outcome.epochs, state.step)
    run.log(TestEvent(step=state.step, **test_metrics))
    gold = label_matrix(bundle.splits["test"]) >= 0.5 if task is Task.MULTI else None
    interval = micro_f1_result(gold, test_probs[0] >= threshold) if gold is not None else {}
    return replace(
        outcome,
        result={
            **test_metrics,
            "task": task.value,
            "epoch": round(outcome.epochs, 4),
            "best_eval": state.best,
            "model_dir": str(run.out_dir / MODEL_DIR),
            "train_seconds": round(time.perf_counter() - outcome.t0, 2),
            "train_loop_seconds": round(outcome.train_loop_seconds, 3),
            "train_samples": state.samples_seen,
            "steps": state.step,
            "device": device,
            "train_size": len(enc["train"]),
            "val_size": len(enc["validation"]),
            "test_size": len(enc["test"]),  # the intervals' n (ftui.significance)
            **interval,  # multi-label: micro-F1's bootstrap interval (the table and the CLI show it)
            "peak_memory_mb": round(peak_memory_mb(device), 1),
        },
    )


def retag_model(model_dir: Path, info: TaskInfo) -> None:
    """Rewrite a saved model's task.json (the tuned threshold), then touch labels.json: its time is the model's
    version, so a copy cached by Predict with the old threshold is not served again."""
    save_task(model_dir, info)
    os.utime(model_dir / "labels.json")


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
    body = lambda holdings: dist.guard(lambda: _train(run, load_bundle, token, device, holdings, token_cache, resume, dist))  # noqa: E731
    run_worker(run, body, device)


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
        dist.guard(lambda: _train(run, load_bundle, token, device, Holdings(), None, assignment.resume, dist))
        return 0
    except (StopRequested, PeerLost) as exc:
        log.info("rank %d: the run ended on another rank (%s)", dist.rank, type(exc).__name__)
        return 0
    except Exception as exc:  # noqa: BLE001 - said to rank 0, which fails the run with it
        log.warning("rank %d failed", dist.rank, exc_info=True)
        dist.record_failure(failure_text(exc, cfg, device))
        return 1
