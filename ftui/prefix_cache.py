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
from ftui.modeling import encoder_layers

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
    """Stands in for a frozen layer: its input already is the cached output."""

    def __init__(self, returns_tuple: bool) -> None:
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return (hidden_states,) if self.returns_tuple else hidden_states


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
        self.embed_name = "embeddings"
        if not isinstance(getattr(base, "embeddings", None), nn.Module):
            raise ValueError("no embeddings module to stand in for")
        self.stores: dict[str, tuple[torch.Tensor, np.ndarray]] = {}  # split -> (flat states, filled rows)
        self.disabled: dict[str, str] = {}  # split -> why no cache
        self.returns_tuple = False
        self._stub = _Embed()
        self._project_stub = _Pass(False)
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
            seen["out"] = out

        last = self.layers[self.depth - 1]
        handle = last.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()
        out = seen.get("out")
        if out is None:
            return
        self.returns_tuple = isinstance(out, tuple)
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
        project = getattr(self.base, "embeddings_project", None)  # ELECTRA: embeddings are narrower than layers
        if isinstance(project, nn.Module):
            self.base.embeddings_project = self._project_stub
        if self._passes is None or self._passes[0].returns_tuple != self.returns_tuple:
            self._passes = [_Pass(self.returns_tuple) for _ in range(self.depth)]  # once, not per batch
        for i in range(self.depth):
            self.layers[i] = self._passes[i]
        try:
            yield
        finally:
            setattr(self.base, self.embed_name, embed)
            if isinstance(project, nn.Module):
                self.base.embeddings_project = project
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
