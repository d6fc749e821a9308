"""Frozen-prefix cache: the outputs of the frozen embeddings + bottom k layers, computed once per example and reused."""

from __future__ import annotations

import contextlib
import logging
import os
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ftui import accel
from ftui.architecture import AFTER_FIRST_LAYER, encoder_layers, input_module_name, pass_through_modules
from ftui.batching import Tokenized, eval_batches, gather_positions
from ftui.distributed import SOLO, Dist

log = logging.getLogger(__name__)

GPU_SHARE = 0.4  # of free GPU memory the cache may take; the rest stays for activations
HOST_SHARE = 0.25  # of available host memory the cache may take


class _Embed(nn.Module):
    """Stands in for the embeddings: returns the cached hidden states of the current batch."""

    def __init__(self) -> None:
        super().__init__()
        self.states: torch.Tensor | None = None

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        assert self.states is not None
        return self.states


class _Pass(nn.Module):
    """Stands in for a frozen layer: its input already is the cached output. It returns what the layer returned (a
    tensor, or a tuple of the same length with the states first: DeBERTa layers return (states, attention)) and carries
    the layer's plain attributes, which some encoders read from each layer (ModernBERT's attention_type)."""

    def __init__(self, tuple_len: int, layer: nn.Module) -> None:
        super().__init__()
        self.tuple_len = tuple_len
        for key, value in vars(layer).items():
            if not key.startswith("_") and isinstance(value, (str, int, float, bool)) and key != "training":
                setattr(self, key, value)

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if not self.tuple_len:
            return hidden_states
        return (hidden_states, *([None] * (self.tuple_len - 1)))


class _Arg(nn.Module):
    """Stands in for a module between the input and the layers: returns the argument that carries the states."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self.index = index

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return args[self.index]


@dataclass
class _Store:
    """One split's cached states: only the rows this process sees, packed (under DDP each rank sees its share)."""

    flat: torch.Tensor  # (tokens of the rows kept, hidden): one row per real token
    filled: np.ndarray  # per row of the split: its states are stored
    starts: np.ndarray  # per row of the split: where its tokens begin in flat; -1 for a row this process never sees


def _pinned_empty(shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
    """Page-locked host memory (one allocation; empty().pin_memory() would allocate twice and copy)."""
    return torch.empty(shape, dtype=dtype, pin_memory=True)


def pinned_bytes(nbytes: int) -> int:
    """What a pinned allocation of nbytes really takes: PyTorch's caching host allocator rounds each block up to the
    next power of two before asking CUDA for it (torch.cuda.host_memory_stats' documentation), so a 5 GB store pins
    8 GB."""
    return 1 << max(0, nbytes - 1).bit_length()


def _landed() -> None:
    """Wait until the device-to-host copies queued so far have arrived: a non_blocking copy into pinned memory returns
    before its data does, so reading the destination at once can read stale rows."""
    done = torch.cuda.Event()
    done.record()
    done.synchronize()


def weakly(method: Callable[[str], None]) -> Callable[[str], None]:
    """A bound method held without holding its object: the training core owns the cache, so a cache holding the
    core's method back made a cycle that kept the model, the optimizer state and the cache allocated until a gc."""
    ref = weakref.WeakMethod(method)

    def call(reason: str) -> None:
        target = ref()
        if target is not None:
            target(reason)

    return call


def _indices(values: np.ndarray, device: str | torch.device) -> torch.Tensor:
    """An index array on `device`: on a GPU through pinned memory, asynchronously (a copy from pageable memory waits
    for the GPU, a host sync per call)."""
    t = torch.from_numpy(np.ascontiguousarray(values, dtype=np.int64))
    if torch.device(device).type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def host_available_bytes() -> int:
    """MemAvailable from /proc/meminfo (0 when unknown, which disables a host cache)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PrefixCache:
    """Per-split store of frozen-prefix outputs, one row per token, filled during the first pass over each example.

    Frozen layers run in eval mode (no dropout), so their outputs are the same every epoch; reusing them gives the
    same numbers as recomputing while the prefix's cost is paid once. Padding positions are never stored: the
    attention mask hides them from every real token.
    """

    def __init__(
        self,
        model: nn.Module,
        depth: int,
        device: str,
        amp: torch.dtype | None = None,
        dist: Dist = SOLO,
        eval_batch_size: int = 0,
    ) -> None:
        base = model.base_model
        self.amp = amp  # the run's autocast dtype: states are stored in it and the self-check runs under it
        self.dist = dist  # under DDP a rank stores only the rows it computes
        self.eval_batch_size = eval_batch_size  # how evaluate() batches a split (which batches are this rank's)
        self.base = base
        self.layers = encoder_layers(base)
        self.depth = depth
        self.device = device
        embed_name = input_module_name(base)
        if embed_name is None:
            raise ValueError("no embeddings module to stand in for")
        self.embed_name = embed_name
        self.through = pass_through_modules(base)  # (parent, attribute, argument) passed through during reuse
        after = [getattr(p, a) for p, a, _ in self.through if a in AFTER_FIRST_LAYER]
        # The states the trainable layers read: the last frozen layer's output, or at depth 1 what follows layer 0.
        self.source = after[0] if depth == 1 and after else self.layers[depth - 1]
        self.stores: dict[str, _Store] = {}  # split -> its states
        self.disabled: dict[str, str] = {}  # split -> why no cache
        self.tuple_len = 0  # what a frozen layer returns: 0 = a tensor, n = a tuple of n with the states first
        self._stub = _Embed()
        self._args = [_Arg(i) for _, _, i in self.through]
        self._passes: list[_Pass] | None = None
        self.verified: set[str] = set()  # splits whose first reuse matched a full forward
        self.off_reason: str | None = None  # set when the self-check failed: the cache is off for the rest of the run
        self.on_off: Callable[[str], None] = lambda reason: None  # told once, when the cache switches itself off

    # ----------------------------------------------------------------------------------------------- storage
    def rows_seen(self, split: str, tok: Tokenized) -> np.ndarray:
        """Which rows of a split this process computes (all of them alone). Under DDP: the training shard (row % world,
        see Dist.shard) and, for evaluation, every world-th batch of evaluate()'s batching from this rank's on."""
        if not self.dist.enabled:
            return np.ones(len(tok), dtype=bool)
        if split == "train" or not self.eval_batch_size:
            return self.dist.owned(len(tok))
        seen = np.zeros(len(tok), dtype=bool)
        for idx in eval_batches(tok.lengths, self.eval_batch_size)[self.dist.rank :: self.dist.world]:
            seen[idx] = True
        return seen

    def _store(self, split: str, tok: Tokenized, sample: torch.Tensor) -> _Store | None:
        if split in self.stores:
            return self.stores[split]
        if split in self.disabled:
            return None
        mine = self.rows_seen(split, tok)
        lengths = np.where(mine, tok.lengths, 0).astype(np.int64)
        starts = np.where(mine, np.cumsum(lengths) - lengths, -1)
        tokens = int(lengths.sum())
        # Half the memory under bf16/fp16: the next layer reads its input in the autocast dtype anyway.
        dtype = self.amp if self.amp is not None and sample.is_floating_point() else sample.dtype
        need = tokens * sample.shape[-1] * torch.finfo(dtype).bits // 8
        where = "cpu"
        if self.device == "cuda":
            free, _ = torch.cuda.mem_get_info()
            if need < GPU_SHARE * free:
                where = "cuda"
            else:
                need = pinned_bytes(need)  # the host store of a GPU run is pinned: it takes the rounded size
        if where == "cpu" and need > HOST_SHARE * host_available_bytes() / max(1, self.local_world()):
            self.disabled[split] = f"needs {need / 2**20:.0f} MB, more than the memory this run may use for it"
            return None
        shape = (tokens, sample.shape[-1])
        if where == "cpu" and self.device == "cuda":
            flat = _pinned_empty(shape, dtype)
        else:
            flat = torch.empty(shape, dtype=dtype, device=where)
        self.stores[split] = _Store(flat, np.zeros(len(tok), dtype=bool), starts)
        return self.stores[split]

    def local_world(self) -> int:
        """Processes of this run on this machine (they share its host memory): LOCAL_WORLD_SIZE, which torchrun and
        accelerate launch set; else a guess of one process per GPU (several machines' ranks are not all local)."""
        if not self.dist.enabled:
            return 1
        local = os.environ.get("LOCAL_WORLD_SIZE", "")
        if local.isdigit() and int(local) > 0:
            return int(local)
        return max(1, min(self.dist.world, torch.cuda.device_count() if self.device == "cuda" else self.dist.world))

    def release(self) -> None:
        """Drop every stored split; a GPU run's pinned host store goes back to the system, not to PyTorch's host cache
        (where it would stay for the life of the process)."""
        pinned = any(s.flat.device.type == "cpu" for s in self.stores.values()) and self.device == "cuda"
        self.stores.clear()
        if pinned:
            accel.empty_host_cache()

    def size_mb(self) -> float:
        """Memory the cache holds."""
        return sum(s.flat.numel() * s.flat.element_size() for s in self.stores.values()) / 2**20

    def ready(self, split: str, idx: np.ndarray) -> bool:
        """True when every row of the batch has its prefix output stored."""
        entry = self.stores.get(split)
        return entry is not None and bool(entry.filled[idx].all())

    @staticmethod
    def _places(entry: _Store, tok: Tokenized, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """For a batch: the (row, column) cells that hold real tokens as flat indices into a (B, W) grid, their places
        in the store, and the batch width. Index tensors instead of boolean masks: masking needs a host sync."""
        _, mask, width = gather_positions(tok, idx)
        rows, cols = np.nonzero(mask)
        return rows * width + cols, entry.starts[idx][rows] + cols, width

    # ----------------------------------------------------------------------------------------------- capture
    @contextlib.contextmanager
    def capture(self, split: str, tok: Tokenized, idx: np.ndarray) -> Iterator[None]:
        """Run the model normally and store the last frozen layer's output for the batch's rows."""
        if split in self.disabled:
            yield
            return
        seen: dict[str, Any] = {}

        def hook(_mod: nn.Module, _inp: Any, out: Any) -> None:
            seen["out"] = out  # a layer called several times (ALBERT's shared group): its last call counts

        def shape(_mod: nn.Module, _inp: Any, out: Any) -> None:
            seen["layer"] = out

        last = self.layers[self.depth - 1]
        handles = [self.source.register_forward_hook(hook)]
        if self.source is not last:
            handles.append(last.register_forward_hook(shape))
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
        out = seen.get("out")
        if out is None:
            return
        layer_out = seen.get("layer", out)
        self.tuple_len = len(layer_out) if isinstance(layer_out, tuple) else 0
        states = (out[0] if isinstance(out, tuple) else out).detach()
        entry = self._store(split, tok, states)
        if entry is None:
            return
        if (entry.starts[idx] < 0).any():
            return  # a row this process was not expected to see (cannot happen with Dist.shard): not stored
        cells, places, width = self._places(entry, tok, idx)
        grid = states[:, :width].reshape(-1, states.shape[-1])
        rows = grid.index_select(0, _indices(cells, states.device)).to(entry.flat.dtype)
        if self.device == "cuda" and entry.flat.device.type == "cpu":  # the host store of a GPU run
            rows = rows.to("cpu", non_blocking=True)
            _landed()  # index_copy_ below reads the host rows: they must have arrived
        else:
            rows = rows.to(entry.flat.device)
        entry.flat.index_copy_(0, _indices(places, entry.flat.device), rows)
        entry.filled[idx] = True

    # ------------------------------------------------------------------------------------------------ reuse
    def states(self, split: str, tok: Tokenized, idx: np.ndarray) -> torch.Tensor:
        """The batch's cached prefix outputs, padded with zeros to the batch width (no host sync)."""
        entry = self.stores[split]
        cells, places, width = self._places(entry, tok, idx)
        flat = entry.flat
        rows = flat.index_select(0, _indices(places, flat.device))
        if flat.device.type == "cpu" and self.device == "cuda":
            rows = rows.pin_memory()  # so the copy below is asynchronous (the host allocator keeps it until done)
        out = torch.zeros((len(idx) * width, flat.shape[-1]), dtype=flat.dtype, device=self.device)
        out.index_copy_(0, _indices(cells, self.device), rows.to(self.device, non_blocking=True))
        return out.view(len(idx), width, flat.shape[-1])

    @contextlib.contextmanager
    def reuse(self, split: str, tok: Tokenized, idx: np.ndarray) -> Iterator[None]:
        """Inside, a forward call skips the frozen prefix and starts from the cached states."""
        self._stub.states = self.states(split, tok, idx)
        originals = [self.layers[i] for i in range(self.depth)]
        embed = getattr(self.base, self.embed_name)
        setattr(self.base, self.embed_name, self._stub)
        between = [getattr(parent, attr) for parent, attr, _ in self.through]
        for (parent, attr, _), stub in zip(self.through, self._args, strict=True):
            setattr(parent, attr, stub)
        if self._passes is None or self._passes[0].tuple_len != self.tuple_len:
            self._passes = [_Pass(self.tuple_len, layer) for layer in originals]  # once, not per batch
        for i in range(self.depth):
            self.layers[i] = self._passes[i]
        try:
            yield
        finally:
            setattr(self.base, self.embed_name, embed)
            for (parent, attr, _), mod in zip(self.through, between, strict=True):
                setattr(parent, attr, mod)
            for i, layer in enumerate(originals):
                self.layers[i] = layer
            self._stub.states = None

    def context(self, split: str, tok: Tokenized, idx: np.ndarray) -> contextlib.AbstractContextManager[None]:
        """Reuse when the batch is cached, else compute and capture."""
        return self.reuse(split, tok, idx) if self.ready(split, idx) else self.capture(split, tok, idx)

    # ------------------------------------------------------------------------------------------- self-check
    def guarded(
        self, model: nn.Module, batch: dict[str, torch.Tensor], split: str, tok: Tokenized, idx: np.ndarray
    ) -> contextlib.AbstractContextManager[None]:
        """`context`, made safe: the first reuse of each split is checked against a full forward of the same batch;
        an exception or a mismatch switches the cache off for the rest of the run (through `on_off`), and the batch
        is simply computed. A cache problem costs speed, never the run."""
        if self.off_reason is not None:
            return contextlib.nullcontext()
        try:
            if self.ready(split, idx) and split not in self.verified:
                self._verify(model, batch, split, tok, idx)
                self.verified.add(split)
            return self.context(split, tok, idx)
        except Exception as exc:  # noqa: BLE001 - any failure of the stand-ins means: compute normally from now on
            self.turn_off(f"{type(exc).__name__}: {str(exc)[:200]}")
            return contextlib.nullcontext()

    def _verify(self, model: nn.Module, batch: dict[str, torch.Tensor], split: str, tok: Tokenized, idx: np.ndarray) -> None:
        """Logits through the cache must equal logits computed in full (eval mode: no dropout in either)."""
        modes = {m: m.training for m in model.modules()}  # frozen layers stay in eval; restore exactly
        model.eval()
        amp = self.amp is not None
        try:
            # Under the run's autocast, as the states were captured and as training reads them: compared with an fp32
            # forward, bf16 rounding alone differs by more than an fp32 tolerance, and the check blamed the model.
            with torch.no_grad(), torch.autocast(self.device, dtype=self.amp or torch.float32, enabled=amp):
                full = _logits(model(**batch)).float()
                with self.reuse(split, tok, idx):
                    cached = _logits(model(**batch)).float()
        finally:
            for m, mode in modes.items():
                m.training = mode
        tol = check_tolerance(self.amp or self.stores[split].flat.dtype)
        diff = float((cached - full).abs().max()) if cached.shape == full.shape else float("inf")
        if not diff <= tol * (1.0 + float(full.abs().max())):
            raise ValueError(f"cached logits differ from recomputed ones by {diff:.2g}")
        log.info("frozen-prefix cache self-check passed on %s (max difference %.2g)", split, diff)

    def turn_off(self, reason: str) -> None:
        """Stop caching for this run (memory freed); the caller's notice says why."""
        if self.off_reason is not None:
            return
        self.off_reason = reason
        self.release()
        log.warning("frozen-prefix cache switched off: %s", reason)
        self.on_off(reason)


def check_tolerance(dtype: torch.dtype) -> float:
    """How far cached logits may be from recomputed ones, relative to (1 + max |logit|): 1e-3 in fp32; in half
    precision a few units of the dtype's rounding (bf16 6 x 2^-7 = 0.047, fp16 6 x 2^-10 = 0.0059), as states stored
    in the autocast dtype round the residual stream the full forward keeps in fp32."""
    if dtype == torch.float32 or not dtype.is_floating_point:
        return 1e-3
    return 6 * torch.finfo(dtype).eps


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out[0]
