"""The lifecycle every run's worker shares (fine-tune, baseline, masked-LM adapt): status, metric sinks, and one
place that finishes the run for any outcome (completed, early stop, time limit, Stop, a lost peer, a failure)."""

from __future__ import annotations

import errno
import gc
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftui import accel, sinks
from ftui.config import RunConfig
from ftui.distributed import PeerLost
from ftui.errors import FtuiError, StopRequested
from ftui.files import replace_dir
from ftui.modeling import save_classifier
from ftui.run_layout import MODEL_DIR, has_classifier, snapshot_path
from ftui.runs import Run, RunStatus
from ftui.train_state import Ending, Holdings, Outcome

log = logging.getLogger(__name__)


def run_worker(run: Run, body: Callable[[Holdings], Outcome], device: str) -> None:
    """The lifecycle every run shares (fine-tune, baseline, adapt): status, metric sinks, and one outcome whatever
    happens.

    `body(holdings)` does the work and returns how it ended; what it leaves in `holdings` (model, tokenizer, best, the
    snapshot) is what a Stop keeps. Never raises: the outcome lands in run.finish(...) and run.json.
    """
    holdings = Holdings()
    try:
        run.set_status(RunStatus.RUNNING)
        run.set_progress(phase="loading data", device=device)
        run.save()
        sink_list = sinks.open_sinks(sinks.parse(run.config.train.report_to), run.name, run.out_dir, run.config.to_dict())
        run.listeners = [*run.listeners, *sink_list]  # the engine's own (a sweep's pruning rule) come first
        try:
            outcome = body(holdings)
        except StopRequested:  # Stop before the core trained (reading, tokenizing, loading), or while testing
            outcome = Outcome.stopped()
        finish_run(run, outcome, holdings)
    except PeerLost as exc:
        _finish_peer_lost(run, holdings, exc)
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
        holdings.clear()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
            accel.empty_host_cache()  # a stopped or failed run's pinned host store too


def finish_run(run: Run, outcome: Outcome, holdings: Holdings) -> None:
    """The one place a run that was not failed ends: Stop keeps what it keeps (finish_stopped); completed, early stop
    and the time limit complete the run with what the run kind's finish put in the outcome's result."""
    if outcome.ending is Ending.STOPPED:
        finish_stopped(run, holdings)
    else:
        run.finish(RunStatus.COMPLETED, None, outcome.result)


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


def _finish_peer_lost(run: Run, holdings: Holdings, exc: PeerLost) -> None:
    """Another rank died: the run fails with what it said, keeping the best checkpoint and a resume snapshot.

    Under gloo the collective failed on the host and the weights are those of the last step every rank completed: a
    new snapshot of that step is written. Under NCCL no new one is: the lost collective may still sit on the GPU stream
    (a state_dict copy or torch.save would wait behind it until the watchdog's abort) and the gradients it was
    reducing may be half-summed; the last periodic snapshot, written while every rank was alive, is kept instead."""
    saved = False
    snapshot = snapshot_path(run.out_dir)
    if exc.backend == "nccl":
        saved = snapshot.exists()
    elif holdings.snapshot is not None:
        try:
            holdings.snapshot()
            saved = snapshot.exists()
        except Exception as err:  # noqa: BLE001 - the failure must land regardless
            log.warning("no resume snapshot after a lost rank: %s", err)
    result: dict[str, Any] = {"resumable": saved}
    if has_classifier(run.out_dir):
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if holdings.best:
        result["best_eval"] = holdings.best
    if not saved:
        fix = "Start the run again."
    elif exc.backend == "nccl":
        at = holdings.snapshot_step
        fix = (
            f"Resume continues from the last periodic snapshot{f' (step {at})' if at is not None else ''}, not from the "
            "last step: under NCCL the weights at the failure may hold a half-finished gradient exchange, so no new "
            "snapshot was written; the steps after it are trained again."
        )
    else:
        fix = "Resume continues from the last step every process completed."
    run.finish(RunStatus.FAILED, f"{exc.problem} {fix}", result)


def finish_stopped(run: Run, holdings: Holdings) -> None:
    """Keep the best checkpoint so far; with none yet but some training done, the current weights, so nothing is
    lost; before the first optimizer step there is nothing worth keeping (an untrained head is not a model). A resume
    snapshot of the last step is written first."""
    result: dict[str, Any] = {}
    if holdings.snapshot is not None:
        try:
            holdings.snapshot()
        except Exception as exc:  # noqa: BLE001 - resuming is a convenience; the stop must land regardless
            log.warning("no resume snapshot at Stop: %s", exc)
    has_model = has_classifier(run.out_dir)
    steps = holdings.steps
    model, tokenizer = holdings.model, holdings.tokenizer
    if not has_model and model is not None and steps > 0:
        try:
            save = holdings.save  # the objective's own way of saving (a classifier, or a masked-LM checkpoint)
            if save is not None:
                replace_dir(run.out_dir / MODEL_DIR, lambda tmp: save(model, tokenizer, tmp))
            else:
                _save_best(model, tokenizer, run)
            result["kept"], result["kept_step"] = "last", steps
            has_model = True
        except Exception as exc:  # noqa: BLE001 - a half-built model may not save; the stop itself must still land
            log.warning("could not keep the weights at Stop: %s", exc)
    elif has_model:
        result["kept"] = "best"
        result["kept_step"] = (holdings.best or {}).get("step")
    if has_model:
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if holdings.best:
        result["best_eval"] = holdings.best
    run.finish(RunStatus.STOPPED, None, result)


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
