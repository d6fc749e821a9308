"""The training loop: tokenize once, length-grouped batches, AdamW with warmup, periodic evaluation, best checkpoint."""

from __future__ import annotations

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

from ftui.config import RunConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.errors import FtuiError, StopRequested
from ftui.metrics import compute_metrics
from ftui.modeling import apply_freeze, build_model, frozen_prefix, load_classifier, load_tokenizer, save_classifier
from ftui.runs import Run, RunStatus

MODEL_DIR = "model"
PAD_MULTIPLE = 8  # tensor cores and oneDNN kernels like multiples of 8
GROUP_FACTOR = 50  # batches per length-sorted chunk: similar lengths without losing shuffling


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


# ---------------------------------------------------------------------------------------------------- batching
def tokenize(bundle: DataBundle, tokenizer: Any, max_length: int, stop: Callable[[], bool]) -> dict[str, dict[str, list]]:
    """Token ids per split, no padding; checks for Stop between chunks."""
    out: dict[str, dict[str, list]] = {}
    for split, ds in bundle.splits.items():
        enc: dict[str, list] = {}
        for start in range(0, len(ds), 2048):
            if stop():
                raise StopRequested
            chunk = ds[start : start + 2048]
            pair = chunk.get(TEXT_PAIR)
            toks = tokenizer(chunk[TEXT], pair, truncation=True, max_length=max_length)
            for k in ("input_ids", "token_type_ids"):
                if k in toks:
                    enc.setdefault(k, []).extend(toks[k])
            enc.setdefault("labels", []).extend(chunk[LABEL])
        out[split] = enc
    return out


def length_grouped_batches(lengths: list[int], batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """Shuffled batches whose members have similar lengths (sorted within chunks of GROUP_FACTOR batches)."""
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    chunk = batch_size * GROUP_FACTOR
    batches: list[list[int]] = []
    for i in range(0, len(perm), chunk):
        part = sorted(perm[i : i + chunk], key=lambda j: -lengths[j])
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def eval_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Batches sorted by length, for padding-light evaluation."""
    order = sorted(range(len(lengths)), key=lambda j: -lengths[j])
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def collate(enc: dict[str, list], idx: list[int], pad_id: int, device: str) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member, rounded up to a multiple of 8."""
    ids = [enc["input_ids"][i] for i in idx]
    width = max(len(x) for x in ids)
    width = int(math.ceil(width / PAD_MULTIPLE) * PAD_MULTIPLE)
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for r, x in enumerate(ids):
        input_ids[r, : len(x)] = torch.tensor(x)
        mask[r, : len(x)] = 1
    batch = {"input_ids": input_ids, "attention_mask": mask}
    if "token_type_ids" in enc:
        tt = torch.zeros((len(ids), width), dtype=torch.long)
        for r, i in enumerate(idx):
            x = enc["token_type_ids"][i]
            tt[r, : len(x)] = torch.tensor(x)
        batch["token_type_ids"] = tt
    batch["labels"] = torch.tensor([enc["labels"][i] for i in idx], dtype=torch.long)
    non_blocking = device == "cuda"
    return {k: v.to(device, non_blocking=non_blocking) for k, v in batch.items()}


# --------------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(
    model: nn.Module,
    enc: dict[str, list],
    batch_size: int,
    pad_id: int,
    device: str,
    amp: torch.dtype | None,
    stop: Callable[[], bool] = lambda: False,
) -> dict[str, float]:
    """Mean loss, accuracy and macro-F1 on one tokenized split."""
    was_training = model.training
    model.eval()
    preds: list[int] = []
    labels: list[int] = []
    total_loss = torch.zeros((), device=device)
    lengths = [len(x) for x in enc["input_ids"]]
    for idx in eval_batches(lengths, batch_size):
        if stop():
            raise StopRequested
        batch = collate(enc, idx, pad_id, device)
        y = batch.pop("labels")
        with torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(**batch).logits.float()
        total_loss += nn.functional.cross_entropy(logits, y, reduction="sum")
        preds.extend(logits.argmax(-1).tolist())
        labels.extend(y.tolist())
    model.train(was_training)
    metrics = compute_metrics(preds, labels)
    return {"loss": float(total_loss) / max(1, len(labels)), **metrics}


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
    """Write the checkpoint beside the old one, then swap, so a crash never leaves half a model."""
    final = run.out_dir / MODEL_DIR
    tmp = run.out_dir / f".{MODEL_DIR}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_classifier(model, tokenizer, tmp, run.label_names)
    old = run.out_dir / f".{MODEL_DIR}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


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
def train_run(run: Run, load_bundle: Callable[[], DataBundle], token: str | None = None) -> None:
    """Worker body: never raises; the outcome lands in run.finish(...) and run.json."""
    device = pick_device()
    state: dict[str, Any] = {}
    try:
        run.set_status(RunStatus.RUNNING)
        run.set_progress(phase="loading data", device=device)
        run.save()
        _train(run, load_bundle, token, device, state)
    except StopRequested:
        _finish_stopped(run, state)
    except FtuiError as exc:
        run.finish(RunStatus.FAILED, str(exc))
    except Exception as exc:  # the app must survive any failure of one run
        if _is_oom(exc):
            run.finish(RunStatus.FAILED, _oom_advice(run.config, device))
        else:
            run.finish(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
    finally:
        state.clear()
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()


def _finish_stopped(run: Run, state: dict[str, Any]) -> None:
    """Keep the best checkpoint so far; with none yet, save the current weights so nothing is lost."""
    result: dict[str, Any] = {}
    if not (run.out_dir / MODEL_DIR).exists() and "model" in state:
        _save_best(state["model"], state["tokenizer"], run)
    if (run.out_dir / MODEL_DIR).exists():
        result["model_dir"] = str(run.out_dir / MODEL_DIR)
    if "best" in state:
        result["best_eval"] = state["best"]
    run.finish(RunStatus.STOPPED, None, result)


def _train(run: Run, load_bundle: Callable[[], DataBundle], token: str | None, device: str, state: dict[str, Any]) -> None:
    cfg, t = run.config, run.config.train
    stop = run.stop_event.is_set
    bundle = load_bundle()
    run.label_names = list(bundle.label_names)
    if stop():
        raise StopRequested
    run.set_progress(phase="loading model")
    seed_everything(t.seed)
    tokenizer = load_tokenizer(cfg.model, token)
    model = build_model(cfg.model, bundle.label_names, token)
    apply_freeze(model, cfg.model.freeze_depth)
    model.to(device)
    state.update(model=model, tokenizer=tokenizer)
    if stop():
        raise StopRequested

    run.set_progress(phase="tokenizing")
    enc = tokenize(bundle, tokenizer, t.max_length, stop)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    amp = autocast_dtype(t.precision, device)
    scaler = torch.amp.GradScaler("cuda") if amp == torch.float16 and device == "cuda" else None
    train_lengths = [len(x) for x in enc["train"]["input_ids"]]
    micro_per_epoch = math.ceil(len(train_lengths) / t.batch_size)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / t.grad_accum))
    total_steps = max(1, math.ceil(steps_per_epoch * t.epochs))
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    log_every = max(1, min(eval_every, 10, steps_per_epoch // 20 or 1))

    from transformers import get_linear_schedule_with_warmup

    opt = torch.optim.AdamW(_param_groups(model, t.weight_decay), lr=t.learning_rate, fused=device == "cuda")
    sched = get_linear_schedule_with_warmup(opt, int(t.warmup_ratio * total_steps), total_steps)
    state["opt"] = opt
    gen = torch.Generator().manual_seed(t.seed)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    run.log(
        {
            "type": "start",
            "total_steps": total_steps,
            "steps_per_epoch": steps_per_epoch,
            "device": device,
            "train_size": len(train_lengths),
            "trainable_params": n_trainable,
        }
    )
    run.set_progress(phase="training", step=0, total_steps=total_steps, epoch=0.0)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    step, micro, evals_since_best = 0, 0, 0
    best: dict[str, float] | None = None
    running_loss = torch.zeros((), device=device)
    running_n, window_samples = 0, 0
    t0 = window_t0 = time.perf_counter()
    _set_train_mode(model, cfg.model.freeze_depth)
    done = False
    while not done:
        for idx in length_grouped_batches(train_lengths, t.batch_size, gen):
            if stop():
                raise StopRequested
            batch = collate(enc["train"], idx, pad_id, device)
            y = batch.pop("labels")
            with torch.autocast(device_type=device, dtype=amp or torch.float32, enabled=amp is not None):
                logits = model(**batch).logits
            loss = nn.functional.cross_entropy(logits.float(), y)
            (scaler.scale(loss / t.grad_accum) if scaler else loss / t.grad_accum).backward()
            running_loss += loss.detach()
            running_n += 1
            window_samples += len(idx)
            micro += 1
            if micro % t.grad_accum and micro % micro_per_epoch:
                continue
            if scaler:
                scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
            if scaler:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            epoch = step / steps_per_epoch
            if step % log_every == 0 or step == total_steps:
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
                eta = (now - t0) / step * (total_steps - step)
                run.set_progress(
                    step=step,
                    epoch=round(epoch, 3),
                    samples_per_s=round(sps, 1),
                    eta_s=round(eta, 1),
                    memory_mb=round(memory_mb(device), 1),
                )
                running_loss.zero_()
                running_n, window_samples, window_t0 = 0, 0, now
            if step % eval_every == 0 or step == total_steps:
                run.set_progress(phase="evaluating")
                m = evaluate(model, enc["validation"], t.batch_size * 2, pad_id, device, amp, stop)
                _set_train_mode(model, cfg.model.freeze_depth)
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
                if t.early_stopping_patience and evals_since_best >= t.early_stopping_patience:
                    run.log({"type": "early_stop", "step": step})
                    done = True
                    break
            if step >= total_steps:
                done = True
                break

    # Test the best checkpoint, not the last weights.
    run.set_progress(phase="testing")
    best_model, _, _ = load_classifier(run.out_dir / MODEL_DIR, device)
    state["model"] = best_model
    del model
    test = evaluate(best_model, enc["test"], t.batch_size * 2, pad_id, device, amp)
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
            "steps": step,
            "device": device,
            "train_size": len(train_lengths),
        },
    )


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
