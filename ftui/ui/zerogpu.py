"""ZeroGPU: the handlers that need a GPU (Predict, Explain, batch prediction, base-checkpoint scoring) run inside
`spaces.GPU` with a duration sized to the call; off ZeroGPU (or without the `spaces` package) the handler is returned
as it is, which is what the `spaces` decorator itself does there."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
MAX_SECONDS = 120  # the longest a visitor's call may hold the GPU; a larger batch is split by the caller


def gpu(handler: F, duration: int | Callable[..., int]) -> F:
    """The handler wrapped by spaces.GPU(duration=...); unchanged where the package is missing."""
    try:
        import spaces
    except ImportError:
        return handler
    return spaces.GPU(handler, duration=duration)  # type: ignore[return-value]


def predict_seconds(*_: Any) -> int:
    """One text: load the model (first call) and one forward pass."""
    return 20


def explain_seconds(_text: Any = None, _model: Any = None, method: Any = "ig", *_: Any) -> int:
    """Integrated gradients runs 32 forward/backward passes; gradient x input one."""
    return 40 if method == "ig" else 20


def batch_seconds(lines: Any = None, file: Any = None, *_: Any) -> int:
    """Grows with the texts of the call: about 200 texts a second on a ZeroGPU slice, plus loading."""
    n = len([line for line in str(lines or "").splitlines() if line.strip()])
    if file:
        n = max(n, 10_000)  # a file's rows are unknown until it is read: size for the largest batch allowed
    return min(MAX_SECONDS, 20 + n // 200)


def score_seconds(*_: Any) -> int:
    """A checkpoint scored on a run's whole test split."""
    return MAX_SECONDS
