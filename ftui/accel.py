"""GPU specifics in one place: TF32, inference autocast, the CUDA random state, and the default batch by device."""

from __future__ import annotations

import contextlib
import logging

import torch

log = logging.getLogger(__name__)

CPU_BATCH = 16  # TrainConfig's default: a small encoder on a CPU demo
GPU_BATCH = 64  # a GPU at batch 16 spends its time launching kernels; 64 at 256 tokens fits a 16 GB card for a base model


def enable_tf32() -> None:
    """Let fp32 matmuls and convolutions use TF32 tensor cores on CUDA (Ampere and later): about 10 bits of mantissa in
    the products, fp32 accumulation, several times the fp32 speed; training under bf16/fp16 autocast is unaffected."""
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


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
