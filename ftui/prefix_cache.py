"""Frozen-prefix cache: the outputs of the frozen embeddings + bottom k layers, computed once per example and reused."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from ftui.batching import Tokenized, gather_positions
from ftui.modeling import AFTER_FIRST_LAYER, encoder_layers, input_module_name, pass_through_modules

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

    def __init__(self, model: nn.Module, depth: int, device: str) -> None:
        base = model.base_model
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
        self.stores: dict[str, tuple[torch.Tensor, np.ndarray]] = {}  # split -> (flat states, filled rows)
        self.disabled: dict[str, str] = {}  # split -> why no cache
        self.tuple_len = 0  # what a frozen layer returns: 0 = a tensor, n = a tuple of n with the states first
        self._stub = _Embed()
        self._args = [_Arg(i) for _, _, i in self.through]
        self._passes: list[_Pass] | None = None
        self.verified: set[str] = set()  # splits whose first reuse matched a full forward
        self.off_reason: str | None = None  # set when the self-check failed: the cache is off for the rest of the run
        self.on_off: Callable[[str], None] = lambda reason: None  # told once, when the cache switches itself off

    # ----------------------------------------------------------------------------------------------- storage
    def _store(self, split: str, tok: Tokenized, sample: torch.Tensor) -> tuple[torch.Tensor, np.ndarray] | None:
        if split in self.stores:
            return self.stores[split]
        if split in self.disabled:
            return None
        need = tok.n_tokens * sample.shape[-1] * sample.element_size()
        where = "cpu"
        if self.device == "cuda":
            free, _ = torch.cuda.mem_get_info()
            if need < GPU_SHARE * free:
                where = "cuda"
        if where == "cpu" and need > HOST_SHARE * host_available_bytes():
            self.disabled[split] = f"needs {need / 2**20:.0f} MB, more than the memory this run may use for it"
            return None
        flat = torch.empty((tok.n_tokens, sample.shape[-1]), dtype=sample.dtype, device=where)
        if where == "cpu" and self.device == "cuda":
            flat = flat.pin_memory()
        self.stores[split] = (flat, np.zeros(len(tok), dtype=bool))
        return self.stores[split]

    def size_mb(self) -> float:
        """Memory the cache holds."""
        return sum(f.numel() * f.element_size() for f, _ in self.stores.values()) / 2**20

    def ready(self, split: str, idx: np.ndarray) -> bool:
        """True when every row of the batch has its prefix output stored."""
        entry = self.stores.get(split)
        return entry is not None and bool(entry[1][idx].all())

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
        flat, filled = entry
        pos, mask, width = gather_positions(tok, idx)
        states = states[:, :width]
        keep = torch.from_numpy(mask).to(states.device)
        target = torch.from_numpy(pos[mask]).to(flat.device)
        flat.index_copy_(0, target, states[keep].to(flat.device, non_blocking=True))
        filled[idx] = True

    # ------------------------------------------------------------------------------------------------ reuse
    def states(self, split: str, tok: Tokenized, idx: np.ndarray) -> torch.Tensor:
        """The batch's cached prefix outputs, padded with zeros to the batch width."""
        flat, _ = self.stores[split]
        pos, mask, width = gather_positions(tok, idx)
        out = torch.zeros((len(idx), width, flat.shape[-1]), dtype=flat.dtype, device=self.device)
        src = flat[torch.from_numpy(pos[mask]).to(flat.device)]
        out[torch.from_numpy(mask).to(self.device)] = src.to(self.device, non_blocking=True)
        return out

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
        try:
            with torch.no_grad():
                full = _logits(model(**batch)).float()
                with self.reuse(split, tok, idx):
                    cached = _logits(model(**batch)).float()
        finally:
            for m, mode in modes.items():
                m.training = mode
        stored = self.stores[split][0].dtype
        tol = 1e-3 if stored == torch.float32 else 5e-2  # half-precision states round differently than fp32 compute
        diff = float((cached - full).abs().max()) if cached.shape == full.shape else float("inf")
        if not diff <= tol * (1.0 + float(full.abs().max())):
            raise ValueError(f"cached logits differ from recomputed ones by {diff:.2g}")
        log.info("frozen-prefix cache self-check passed on %s (max difference %.2g)", split, diff)

    def turn_off(self, reason: str) -> None:
        """Stop caching for this run (memory freed); the caller's notice says why."""
        if self.off_reason is not None:
            return
        self.off_reason = reason
        self.stores.clear()
        log.warning("frozen-prefix cache switched off: %s", reason)
        self.on_off(reason)


def _logits(out: Any) -> torch.Tensor:
    return out.logits if hasattr(out, "logits") else out[0]
