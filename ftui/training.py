"""The training loop: tokenize once, length-grouped batches, AdamW with warmup, periodic evaluation, best checkpoint."""

from __future__ import annotations

import contextlib
import errno
import functools
import gc
import math
import os
import random
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ftui import sinks
from ftui.batching import TokenCache, Tokenized, collate, eval_batches, length_grouped_batches, tokenize_split
from ftui.config import RunConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.errors import FtuiError, StopRequested
from ftui.files import replace_dir
from ftui.metrics import compute_metrics
from ftui.modeling import apply_freeze, build_model, frozen_prefix, load_classifier, load_tokenizer, save_classifier
from ftui.prefix_cache import PrefixCache
from ftui.runs import Run, RunStatus

MODEL_DIR = "model"
RESUME_DIR = "resume"
RESUME_EVERY_S = 30.0  # at most one resume snapshot (weights + optimizer) per this many seconds, and one at Stop
PREDICTIONS_FILE = "test_predictions.parquet"


def pick_device() -> str:
    """'cuda' when a GPU is visible, else 'cpu'."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
def tokenize(bundle: DataBundle, tokenizer: Any, max_length: int, stop: Callable[[], bool]) -> dict[str, Tokenized]:
    """Every split of a bundle as flat token arrays."""
    return {split: tokenize_split(ds, tokenizer, max_length, stop) for split, ds in bundle.splits.items()}


def _token_key(run: Run, token: str | None) -> tuple[Any, ...]:
    m = run.config.model
    return (*run.config.data.key(), m.source, m.checkpoint, run.config.train.max_length, hash(token or ""))


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
) -> dict[str, float]:
    """Mean loss, accuracy and macro-F1 on one tokenized split (predictions stay on the device until the end).

    With probs_out, the class probabilities of every row (in the split's order) are appended to it.
    """
    was_training = model.training
    model.eval()
    preds: list[torch.Tensor] = []
    labels: list[torch.Tensor] = []
    probs: list[torch.Tensor] = []
    order: list[np.ndarray] = []
    total_loss = torch.zeros((), device=device)
    for idx in eval_batches(tok.lengths, batch_size):
        if stop():
            raise StopRequested
        batch = collate(tok, idx, pad_id, device)
        y = batch.pop("labels")
        ctx = cache.context(split, tok, idx) if cache else contextlib.nullcontext()
        with ctx, torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(**batch).logits.float()
        total_loss += nn.functional.cross_entropy(logits, y, reduction="sum")
        preds.append(logits.argmax(-1))
        labels.append(y)
        if probs_out is not None:
            probs.append(torch.softmax(logits, -1))
            order.append(idx)
    model.train(was_training)
    if probs_out is not None and probs:
        flat = torch.cat(probs).cpu().numpy()
        out = np.empty_like(flat)
        out[np.concatenate(order)] = flat
        probs_out.append(out)
    p = torch.cat(preds).tolist() if preds else []
    y_all = torch.cat(labels).tolist() if labels else []
    metrics = compute_metrics(p, y_all)
    return {"loss": float(total_loss) / max(1, len(y_all)), **metrics}


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


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower() or "can't allocate memory" in str(exc)


# -------------------------------------------------------------------------------------------------------- loop
def train_run(
    run: Run,
    load_bundle: Callable[[], DataBundle],
    token: str | None = None,
    token_cache: TokenCache | None = None,
    resume: bool = False,
) -> None:
    """Worker body: never raises; the outcome lands in run.finish(...) and run.json."""
    device = pick_device()
    state: dict[str, Any] = {}
    try:
        run.set_status(RunStatus.RUNNING)
        run.set_progress(phase="loading data", device=device)
        run.save()
        run.listeners = sinks.open_sinks(sinks.parse(run.config.train.report_to), run.name, run.out_dir, run.config.to_dict())
        _train(run, load_bundle, token, device, state, token_cache, resume)
    except StopRequested:
        _finish_stopped(run, state)
    except FtuiError as exc:
        run.finish(RunStatus.FAILED, str(exc))
    except Exception as exc:  # the app must survive any failure of one run
        if _is_oom(exc):
            run.finish(RunStatus.FAILED, _oom_advice(run.config, device))
        elif isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            kept = (run.out_dir / MODEL_DIR).exists()
            run.finish(
                RunStatus.FAILED,
                f"The disk is full ({exc.filename or run.out_dir}): the checkpoint could not be saved. "
                + ("The best checkpoint saved before is kept. " if kept else "")
                + "Free some space (delete old runs in the Runs tab) and start again.",
                {"model_dir": str(run.out_dir / MODEL_DIR)} if kept else {},
            )
        else:
            run.finish(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        for close in run.listeners:
            with contextlib.suppress(Exception):
                close(None)
        run.listeners = []
        state.clear()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def _finish_stopped(run: Run, state: dict[str, Any]) -> None:
    """Keep the best checkpoint so far; with none yet but some training done, the current weights, so nothing is
    lost; before the first optimizer step there is nothing worth keeping (an untrained head is not a model)."""
    result: dict[str, Any] = {}
    if "resume" in state:
        with contextlib.suppress(Exception):  # resuming is a convenience; the stop must land regardless
            state["resume"]()
    has_model = (run.out_dir / MODEL_DIR / "labels.json").exists()
    steps = int(state.get("steps", 0))
    if not has_model and "model" in state and steps > 0:
        with contextlib.suppress(Exception):  # a half-built model may not save; the stop itself must still land
            _save_best(state["model"], state["tokenizer"], run)
            result["kept"], result["kept_step"] = "last", steps
            has_model = True
    elif has_model:
        result["kept"] = "best"
        result["kept_step"] = (state.get("best") or {}).get("step")
    if has_model:
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if state.get("best"):
        result["best_eval"] = state["best"]
    run.finish(RunStatus.STOPPED, None, result)


def _tokenized(
    run: Run, bundle: DataBundle, tokenizer: Any, token: str | None, cache: TokenCache | None, stop: Callable[[], bool]
) -> dict[str, Tokenized]:
    key = _token_key(run, token)
    enc = cache.get(key) if cache else None
    if enc is None:
        enc = tokenize(bundle, tokenizer, run.config.train.max_length, stop)
        if cache:
            cache.put(key, enc)
    return enc


def _train(
    run: Run,
    load_bundle: Callable[[], DataBundle],
    token: str | None,
    device: str,
    state: dict[str, Any],
    token_cache: TokenCache | None = None,
    resume: bool = False,
) -> None:
    cfg, t = run.config, run.config.train
    depth = cfg.model.freeze_depth
    stop = run.stop_event.is_set
    bundle = load_bundle()
    run.label_names = list(bundle.label_names)
    if stop():
        raise StopRequested
    run.set_progress(phase="loading model")
    seed_everything(t.seed)
    tokenizer = load_tokenizer(cfg.model, token)
    # The head's start comes from its own generator: a prediction on a base checkpoint in another thread cannot shift it.
    model = build_model(cfg.model, bundle.label_names, token, generator=torch.Generator().manual_seed(t.seed))
    apply_freeze(model, depth)
    model.to(device)
    state.update(model=model, tokenizer=tokenizer)
    if stop():
        raise StopRequested

    run.set_progress(phase="tokenizing")
    enc = _tokenized(run, bundle, tokenizer, token, token_cache, stop)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    amp = autocast_dtype(t.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 and device == "cuda" else None
    train_lengths = enc["train"].lengths
    micro_per_epoch = math.ceil(len(train_lengths) / t.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / t.grad_accum))
    total_steps = max(1, math.ceil(steps_per_epoch * t.epochs))
    if t.max_steps:
        total_steps = min(total_steps, t.max_steps)
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    log_every = max(1, min(eval_every, 10, steps_per_epoch // 20 or 1))
    cache = PrefixCache(model, depth, device) if depth and t.frozen_cache else None

    from transformers import get_linear_schedule_with_warmup

    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.learning_rate, fused=device == "cuda")
    sched = get_linear_schedule_with_warmup(opt, int(t.warmup_ratio * total_steps), total_steps)
    state["opt"] = opt
    gen = torch.Generator().manual_seed(t.seed)
    run.log(
        {
            "type": "start",
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "device": device,
            "train_size": len(train_lengths),
            "trainable_params": sum(p.numel() for p in trainable),
        }
    )
    run.set_progress(phase="training", step=0, total_steps=total_steps, epoch=0.0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    step, micro, evals_since_best = 0, 0, 0
    best: dict[str, float] | None = None
    running_loss = torch.zeros((), device=device)
    running_n, window_samples, samples_seen = 0, 0, 0
    t0 = window_t0 = epoch_t0 = time.perf_counter()
    aside = epoch_aside = 0.0  # seconds spent evaluating and saving, kept out of the training speed
    epoch_no, skip = 0, 0
    if resume:
        r = _load_resume(run, model, opt, sched, scaler, gen)
        step, micro, epoch_no, skip = r["step"], r["micro"], r["epoch_no"], r["batch_in_epoch"]
        best, evals_since_best, samples_seen = r["best"], r["evals_since_best"], r["samples_seen"]
        if skip >= micro_per_epoch:  # saved at the last step of an epoch: that epoch is complete
            epoch_no += 1
        if best is not None and not (run.out_dir / MODEL_DIR / "labels.json").exists():
            best, evals_since_best = None, 0  # the saved best is gone: the next evaluation saves a new one
        state["best"], state["steps"] = best, step
        run.log({"type": "resume", "step": step})
    first_step = step
    deadline = time.monotonic() + 60 * t.max_minutes if t.max_minutes else 0.0
    resume_point: dict[str, Any] = {}
    state["resume"] = functools.partial(_save_resume, run, model, opt, sched, scaler, resume_point)
    last_resume_save = time.monotonic()
    _set_train_mode(model, depth)
    done = step >= total_steps
    while not done:
        epoch_gen_state = gen.get_state()
        batches = length_grouped_batches(train_lengths, t.batch_size, gen)
        for bi in range(skip, len(batches)):
            idx = batches[bi]
            if stop():
                raise StopRequested
            batch = collate(enc["train"], idx, pad_id, device)
            y = batch.pop("labels")
            ctx = cache.context("train", enc["train"], idx) if cache else contextlib.nullcontext()
            with ctx, torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(**batch).logits
            loss = nn.functional.cross_entropy(logits.float(), y)
            (scaler.scale(loss / t.grad_accum) if scaler else loss / t.grad_accum).backward()
            running_loss += loss.detach()  # stays on the device: no host sync per step
            running_n += 1
            window_samples += len(idx)
            samples_seen += len(idx)
            micro += 1
            if micro % t.grad_accum and micro % micro_per_epoch:
                continue
            if scaler:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            state["steps"] = step
            epoch = step / steps_per_epoch
            resume_point.update(
                step=step,
                micro=micro,
                epoch_no=epoch_no,
                batch_in_epoch=bi + 1,
                epoch_gen_state=epoch_gen_state,
                best=best,
                evals_since_best=evals_since_best,
                samples_seen=samples_seen,
            )
            # The first step is logged at once so the chart shows a point within seconds of Start.
            if step % log_every == 0 or step == total_steps or step == 1:
                now = time.perf_counter()
                sps = window_samples / max(now - window_t0, 1e-9)
                run.log(
                    {
                        "type": "train",
                        "step": step,
                        "epoch": round(epoch, 4),
                        "loss": float(running_loss) / max(1, running_n),
                        "lr": sched.get_last_lr()[0],
                    }
                )
                eta = (now - t0 - aside) / max(1, step - first_step) * (total_steps - step)
                run.set_progress(
                    step=step,
                    epoch=round(epoch, 3),
                    samples_per_s=round(sps, 1),
                    eta_s=round(eta, 1),
                    memory_mb=round(memory_mb(device), 1),
                    **({"prefix_cache_mb": round(cache.size_mb(), 1)} if cache else {}),
                )
                running_loss.zero_()
                running_n, window_samples, window_t0 = 0, 0, now
            over_time = bool(deadline) and time.monotonic() > deadline
            if step % eval_every == 0 or step == total_steps or over_time:
                t_eval = time.perf_counter()
                run.set_progress(phase="evaluating")
                m = evaluate(model, enc["validation"], t.batch_size * 2, pad_id, device, amp, stop, cache)
                _set_train_mode(model, depth)
                run.log(
                    {
                        "type": "eval",
                        "step": step,
                        "epoch": round(epoch, 4),
                        "eval_loss": m["loss"],
                        "eval_accuracy": m["accuracy"],
                        "eval_macro_f1": m["macro_f1"],
                    }
                )
                if best is None or (m["accuracy"], -m["loss"]) > (best["accuracy"], -best["loss"]):
                    best = {**m, "step": step}
                    state["best"] = best
                    evals_since_best = 0
                    _save_best(model, tokenizer, run)
                else:
                    evals_since_best += 1
                run.set_progress(phase="training", best_eval_accuracy=best["accuracy"])
                resume_point.update(best=best, evals_since_best=evals_since_best)
                if time.monotonic() - last_resume_save >= RESUME_EVERY_S and step < total_steps:
                    _save_resume(run, model, opt, sched, scaler, resume_point)
                    last_resume_save = time.monotonic()
                spent = time.perf_counter() - t_eval
                aside += spent
                epoch_aside += spent
                window_t0 += spent
                if t.early_stopping_patience and evals_since_best >= t.early_stopping_patience:
                    run.log({"type": "early_stop", "step": step})
                    done = True
            if step >= total_steps:
                done = True
            elif over_time:
                run.log({"type": "time_limit", "step": step, "minutes": t.max_minutes})
                done = True  # like early stopping: the best checkpoint so far is tested and kept
            if step % steps_per_epoch == 0 or done:
                epoch_no += 1
                now = time.perf_counter()
                seconds = round(now - epoch_t0 - epoch_aside, 3)
                run.log({"type": "epoch", "epoch": epoch_no, "step": step, "train_seconds": seconds})
                epoch_t0, epoch_aside = now, 0.0
            if done:
                break
        skip = 0

    train_loop_s = time.perf_counter() - t0 - aside
    state.pop("resume", None)
    # Test the best checkpoint, not the last weights.
    run.set_progress(phase="testing")
    state.pop("model", None)
    del model, opt, cache
    state.pop("opt", None)
    best_model, _, _ = load_classifier(run.out_dir / MODEL_DIR, device)
    state["model"] = best_model
    test_probs: list[np.ndarray] = []
    test = evaluate(best_model, enc["test"], t.batch_size * 2, pad_id, device, amp, probs_out=test_probs)
    # Only now, with the best model loaded and tested, is the resume snapshot that protected the run not needed.
    shutil.rmtree(run.out_dir / RESUME_DIR, ignore_errors=True)
    with contextlib.suppress(Exception):  # the analysis file is a bonus; the run's metrics stand without it
        save_predictions(run.out_dir / PREDICTIONS_FILE, bundle.splits["test"], test_probs[0], run.label_names)
    run.log(
        {
            "type": "test",
            "step": step,
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "test_macro_f1": test["macro_f1"],
        }
    )
    elapsed = time.perf_counter() - t0
    run.finish(
        RunStatus.COMPLETED,
        None,
        {
            "test_accuracy": test["accuracy"],
            "test_macro_f1": test["macro_f1"],
            "test_loss": test["loss"],
            "best_eval": best,
            "model_dir": str(run.out_dir / MODEL_DIR),
            "train_seconds": round(elapsed, 2),
            "train_loop_seconds": round(train_loop_s, 3),
            "train_samples": samples_seen,
            "steps": step,
            "device": device,
            "train_size": len(train_lengths),
            "peak_memory_mb": round(peak_memory_mb(device), 1),
        },
    )


def _save_resume(run: Run, model: nn.Module, opt: Any, sched: Any, scaler: Any, point: dict[str, Any]) -> None:
    """Everything needed to continue from the last optimizer step: weights, optimizer, schedule, data order, RNG."""
    if not point:
        return  # no step yet: a resume would start from scratch anyway
    state = {
        **point,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "scaler": scaler.state_dict() if scaler else None,
        "rng": torch.get_rng_state(),
    }
    replace_dir(run.out_dir / RESUME_DIR, lambda tmp: torch.save(state, tmp / "state.pt"))


def can_resume(run: Run) -> bool:
    """True when a stopped or interrupted run left a resume snapshot."""
    return run.status.value in ("stopped", "interrupted") and (run.out_dir / RESUME_DIR / "state.pt").exists()


def _load_resume(run: Run, model: nn.Module, opt: Any, sched: Any, scaler: Any, gen: torch.Generator) -> dict[str, Any]:
    state = torch.load(run.out_dir / RESUME_DIR / "state.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if scaler and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    gen.set_state(state["epoch_gen_state"])
    torch.set_rng_state(state["rng"])
    return state


def save_predictions(path: Path, ds: Any, probs: np.ndarray, names: list[str]) -> None:
    """Every test row with its true and predicted label and the class probabilities, for error analysis."""
    import pandas as pd

    pred = probs.argmax(-1)
    frame = pd.DataFrame({"text": ds[TEXT]})
    if TEXT_PAIR in ds.column_names:
        frame["text_pair"] = ds[TEXT_PAIR]
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
