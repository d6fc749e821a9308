"""Data parallelism across processes (PyTorch DDP under `torchrun` or `accelerate launch`): who this process is, how a
global batch is split between ranks, and the few collectives the training core needs (a lost peer becomes PeerLost)."""

from __future__ import annotations

import datetime
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from ftui.errors import FtuiError

log = logging.getLogger(__name__)

T = TypeVar("T")
TIMEOUT = datetime.timedelta(minutes=30)  # a rank still alive but silent this long (a hung disk) fails the run
# NCCL does not raise when a peer dies: its collectives wait for the timeout. A shorter wait (still over the longest a
# rank spends alone: rank 0 writing a checkpoint or a snapshot), after which the watchdog thread aborts the
# communicators and the failure is raised in this process (mode 2) instead of killing it (mode 1, torchrun's default).
# Blocking wait stays off, on purpose: with TORCH_NCCL_BLOCKING_WAIT=1 PyTorch turns async error handling off (the
# watchdog aborts nothing), and a blocking wait only times out collectives the CPU itself waits on, not DDP's gradient
# all-reduce queued on the GPU stream, so a lost peer hung every later device copy with no timeout at all. (From
# PyTorch's documented behaviour of ProcessGroupNCCL, C++ not readable here; only a GPU run can confirm it.)
NCCL_TIMEOUT = datetime.timedelta(minutes=5)
NCCL_ENV = {
    "TORCH_NCCL_ASYNC_ERROR_HANDLING": "2",  # on a timeout or error: abort the communicators, do not kill the process
    "TORCH_NCCL_BLOCKING_WAIT": "0",  # set by a user or a launcher it would switch the watchdog's abort off (above)
}
ERROR_FILE = ".rank-{rank}.error"  # a rank other than 0 leaves its failure here, for rank 0's message


class PeerLost(FtuiError):
    """A collective failed: another rank of the run ended (it failed, was killed, or rank 0 finished the run).
    `backend` says what the device may still hold: under NCCL a collective may be half done on the GPU stream."""

    def __init__(self, problem: str, fix: str = "", backend: str = "gloo") -> None:
        super().__init__(problem, fix)
        self.backend = backend


@dataclass(frozen=True)
class Assignment:
    """What rank 0 tells the other ranks before training: which run (its checked config) and whether it resumes."""

    run_id: str
    name: str
    out_dir: str
    config: dict[str, Any]  # RunConfig.to_dict() after the deployment's caps were applied
    resume: bool
    offline: bool  # rank 0 does not contact the Hub: neither do the others

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for the broadcast."""
        return asdict(self)


class Dist:
    """This process's place in a data-parallel run; world 1 (the default) is an ordinary single-process run and every
    collective is a no-op."""

    def __init__(self, rank: int = 0, world: int = 1, local_rank: int = 0, backend: str = "", control: Any = None) -> None:
        self.rank, self.world, self.local_rank, self.backend = rank, world, local_rank, backend
        # A gloo group for the per-step flags (Stop, the time limit): agreeing over NCCL meant a GPU tensor read back
        # with .item(), a host sync every step; over gloo the flag never leaves the host. None: the default group.
        self.control = control
        self.error_dir: Path | None = None  # the run's folder, once known: where other ranks leave their failures

    @property
    def enabled(self) -> bool:
        """True when several processes train together."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes events, checkpoints, snapshots and the store."""
        return self.rank == 0

    def describe(self) -> str:
        """For events and the status line: '2 processes (gloo)'."""
        return f"{self.world} processes ({self.backend})" if self.enabled else "1 process"

    # ------------------------------------------------------------------------------------------- batches
    def shard(self, idx: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        """This rank's rows of a global batch, and the factor that makes the ranks' averaged gradients equal the
        global batch's mean-loss gradient (`weights`: each row's weight in a weighted mean, as class-weighted
        cross-entropy; None = rows count alike). A row always goes to the same rank (row % world), so each rank's
        frozen-layer cache fills with its own rows and is reused from the second epoch on. A rank left with no row
        computes the batch's first row with factor 0 (DDP needs every rank's backward)."""
        if not self.enabled:
            return idx, 1.0
        keep = idx % self.world == self.rank
        if not keep.any():
            return idx[:1], 0.0
        w = np.ones(len(idx)) if weights is None else np.asarray(weights, dtype=np.float64)
        return idx[keep], float(w[keep].sum() * self.world / w.sum())

    def owned(self, n: int) -> np.ndarray:
        """Which of n rows this rank trains on (the rule of shard): row % world == rank."""
        return np.arange(n) % self.world == self.rank

    # ----------------------------------------------------------------------------------------- collectives
    def _device(self) -> str:
        return "cuda" if self.backend == "nccl" else "cpu"

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except FtuiError:
            raise
        except Exception as exc:  # noqa: BLE001 - gloo/NCCL raise RuntimeError subclasses when a peer is gone
            log.info("rank %d: %s failed: %s", self.rank, what, exc)
            raise self._lost(exc) from exc

    def guard(self, fn: Callable[[], T]) -> T:
        """Run `fn` (a rank's whole training) with a failed collective anywhere in it told as PeerLost: under NCCL the
        lost peer shows where the process waits for it, often inside backward (DDP's gradient all-reduce), not only
        in this class's own collectives."""
        try:
            return fn()
        except FtuiError:
            raise
        except Exception as exc:
            if not lost_peer_error(exc):
                raise  # a failure of this rank's own: the run fails with it as usual
            log.info("rank %d: a collective failed: %s", self.rank, exc)
            raise self._lost(exc) from exc

    def _lost(self, exc: BaseException) -> PeerLost:
        return PeerLost(self.lost_message(exc), "The run's last resume snapshot is kept: Resume continues from it.", self.backend)

    def lost_message(self, exc: BaseException) -> str:
        """Why the run cannot go on: another rank's own failure when it left one, else what the collective said."""
        said = []
        if self.error_dir is not None:
            for r in range(1, self.world):
                path = self.error_dir / ERROR_FILE.format(rank=r)
                if path.exists():
                    said.append(f"rank {r}: {path.read_text()[:500]}")
        if said:
            return f"Another process of this {self.world}-process run failed ({'; '.join(said)})."
        return (
            f"Another process of this {self.world}-process run ended unexpectedly (killed, or out of memory): "
            f"{type(exc).__name__}: {str(exc)[:200]}."
        )

    def agree(self, flag: bool) -> bool:
        """True on every rank when it is true on any (Stop, the time limit): all ranks leave the loop together."""
        if not self.enabled:
            return flag
        t = torch.tensor([1 if flag else 0], dtype=torch.int32, device="cpu" if self.control else self._device())
        self._call("agree", lambda: torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX, group=self.control))
        return bool(t.item())

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """Sum a tensor over the ranks, in place."""
        if self.enabled:
            moved = t.to(self._device())
            self._call("sum", lambda: torch.distributed.all_reduce(moved))
            t.copy_(moved)
        return t

    def gather(self, obj: T) -> list[T]:
        """Every rank's object, in rank order, on every rank."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world
        self._call("gather", lambda: torch.distributed.all_gather_object(out, obj))
        return out

    def broadcast(self, obj: T | None) -> T | None:
        """Rank 0's object on every rank."""
        if not self.enabled:
            return obj
        box: list[Any] = [obj]
        self._call("broadcast", lambda: torch.distributed.broadcast_object_list(box, src=0))
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank (rank 0 has written the best checkpoint before the others read it)."""
        if self.enabled:
            self._call("barrier", lambda: torch.distributed.barrier())

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model under DistributedDataParallel (its trainable parameters as they are now); the model itself when
        alone. Built per phase: what trains changes between the head phase and fine-tuning."""
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.local_rank] if self.backend == "nccl" else None
        # Buffers (position ids) are the same on every rank: no broadcast per forward. Newer torch renamed the flag.
        quiet = "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
        flag = {"forward_sync_buffers": False} if quiet else {"broadcast_buffers": False}
        return self._call("wrap", lambda: DistributedDataParallel(model, device_ids=ids, **flag))

    def record_failure(self, message: str) -> None:
        """A rank other than 0 leaves its failure for rank 0's message."""
        if self.error_dir is None or self.is_main:
            return
        try:
            self.error_dir.mkdir(parents=True, exist_ok=True)
            (self.error_dir / ERROR_FILE.format(rank=self.rank)).write_text(message)
        except OSError as exc:
            log.warning("could not leave rank %d's failure: %s", self.rank, exc)

    def close(self) -> None:
        """Leave the process group."""
        if self.enabled and torch.distributed.is_initialized():
            try:
                torch.distributed.destroy_process_group()
            except Exception as exc:  # noqa: BLE001 - leaving a group whose peers are gone may fail; nothing to keep
                log.info("process group not destroyed cleanly: %s", exc)


SOLO = Dist()
# What a failed or timed-out collective raises (NCCL, once the watchdog aborted it: DistBackendError); absent where torch was
# built without distributed support, and then nothing to catch.
_DIST_ERRORS: tuple[type[BaseException], ...] = (
    (torch.distributed.DistError,) if torch.distributed.is_available() and hasattr(torch.distributed, "DistError") else ()
)


# What gloo's transport says when the peer's socket closes under a collective that DDP runs inside backward: a plain
# RuntimeError, not a DistError (seen in the killed-rank test: "gloo/transport/tcp/pair.cc ... Read error ... Connection
# closed by peer").
_TRANSPORT_WORDS = ("gloo/transport", "Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL error")


def lost_peer_error(exc: BaseException) -> bool:
    """Whether an exception says a collective failed because another rank is gone (not a bug of this rank)."""
    if _DIST_ERRORS and isinstance(exc, _DIST_ERRORS):
        return True
    return isinstance(exc, RuntimeError) and any(word in str(exc) for word in _TRANSPORT_WORDS)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (or the model)."""
    from torch.nn.parallel import DistributedDataParallel

    return model.module if isinstance(model, DistributedDataParallel) else model


def launched() -> bool:
    """True when this process was started by torchrun or accelerate launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


def from_env() -> Dist:
    """Join the process group torchrun / accelerate launch describe in the environment (RANK, WORLD_SIZE,
    LOCAL_RANK, MASTER_ADDR/PORT): NCCL with one GPU per process when there are GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SOLO
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_gpu = torch.cuda.is_available() and os.environ.get("FTUI_DDP_BACKEND", "").lower() != "gloo"
    backend = "nccl" if use_gpu else "gloo"
    if use_gpu:
        torch.cuda.set_device(local_rank)  # "cuda" means this process's own GPU from here on
        os.environ.update(NCCL_ENV)  # read when the process group is made; torchrun sets the abort mode (1) otherwise
    timeout = NCCL_TIMEOUT if use_gpu else TIMEOUT
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend, timeout=timeout)
    control = torch.distributed.new_group(backend="gloo", timeout=timeout)  # every rank makes it, in the same order
    return Dist(rank, world, local_rank, backend, control)
