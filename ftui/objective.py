"""What the training core trains for: the Objective protocol (batches, a batch's loss, evaluation, the better model,
saving); classification (ftui.finetune) and masked-language modelling (ftui.adapt) implement it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from ftui.events import Event
from ftui.prefix_cache import PrefixCache


class Objective(Protocol):
    """What the core trains for: how an epoch is batched, a batch's loss, an evaluation, which one is better, and how
    the best model is saved. Classification is one; masked-language modelling (ftui.adapt) is another."""

    train_rows: int  # examples (or blocks) in one epoch of train

    def epoch_batches(self, gen: torch.Generator) -> list[np.ndarray]:
        """One epoch's batches (row indices), in order, drawn from `gen`."""
        ...

    def row_weights(self, idx: np.ndarray) -> np.ndarray | None:
        """How much each row of a batch weighs in its mean loss; None = alike (how DDP shares a batch exactly)."""
        ...

    def train_loss(self, model: nn.Module, idx: np.ndarray, cache: PrefixCache | None, amp: torch.dtype | None) -> torch.Tensor:
        """The mean loss of one micro-batch (graph attached)."""
        ...

    def evaluate(
        self, model: nn.Module, amp: torch.dtype | None, stop: Callable[[], bool], cache: PrefixCache | None
    ) -> dict[str, float]:
        """Validation metrics, 'loss' among them."""
        ...

    def better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> bool:
        """Whether an evaluation beats the best so far."""
        ...

    def eval_event(self, step: int, epoch: float, metrics: dict[str, float], phase: str) -> Event:
        """The event an evaluation logs."""
        ...

    def progress(self, best: dict[str, Any]) -> dict[str, Any]:
        """Progress fields for the best evaluation so far."""
        ...

    def save(self, model: nn.Module, tokenizer: Any, folder: Path) -> None:
        """Write the best model into `folder` (swapped in by the core)."""
        ...
