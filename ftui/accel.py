"""Device specifics in one place: picking the device, TF32, autocast, memory, seeding, the CUDA random state, and the
default batch by device."""

from __future__ import annotations

import contextlib
import logging
import os
import random

import numpy as np
import torch

log = logging.getLogger(__name__)

CPU_BATCH = 16  # TrainConfig's default: a small encoder on a CPU demo
GPU_BATCH = 64  # a GPU at batch 16 spends its time launching kernels; 64 at 256 tokens fits a 16 GB card for a base model


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions use TF32 tensor cores on CUDA (Ampere and later): about 10 bits of mantissa in
    the products, fp32 accumulation, several times the fp32 speed; training under bf16/fp16 autocast is unaffected."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


def pick_device() -> str:
    """'cuda' when a GPU is visible (fp32 matmuls then allowed TF32), else 'cpu'."""
    if torch.cuda.is_available():
        enable_tf32()
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


def default_batch_size(device: str) -> int:
    """The batch size a run gets when none is given: larger on a GPU, where batch 16 leaves it launch-bound."""
    return GPU_BATCH if device == "cuda" else CPU_BATCH


def inference_dtype(precision: str, device: str) -> torch.dtype | None:
    """Autocast dtype for Predict, Explain and the embedding baseline: the run's mixed precision on a GPU (bf16 where
    supported), None (fp32) on CPU, where bf16 is slower and the int8 copy is the speed-up."""
    if device != "cuda" or precision == "fp32":
        return None
    if precision == "fp16" or (precision == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


def autocast(device: str, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[object]:
    """torch.autocast on `device` with `dtype`, or nothing for None (fp32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def empty_host_cache() -> None:
    """Give the pinned host memory PyTorch's caching host allocator keeps back to the system. Freed pinned tensors
    stay cached in the process for reuse (torch.cuda.empty_cache() frees device memory only), so a run's host store
    would hold its share of host RAM until the app exits. Nothing where CUDA was never used, or on a CPU-only build
    (torch._C has no _host_emptyCache there)."""
    release = getattr(torch._C, "_host_emptyCache", None)
    if release is not None and torch.cuda.is_initialized():
        release()


def cuda_rng_state() -> list[torch.Tensor] | None:
    """Every GPU's random state (dropout on CUDA draws from it, not from the CPU generator); None when CUDA is unused."""
    if not torch.cuda.is_initialized():
        return None
    return torch.cuda.get_rng_state_all()


def restore_cuda_rng(states: list[torch.Tensor] | None) -> None:
    """Put back what cuda_rng_state returned (as many GPUs as both machines have); nothing without CUDA."""
    if not states or not torch.cuda.is_available():
        return
    n = min(len(states), torch.cuda.device_count())
    if n < len(states):
        log.info("resume: %d GPU random states saved, %d GPUs here; the first %d restored", len(states), n, n)
    torch.cuda.set_rng_state_all(states[:n])
