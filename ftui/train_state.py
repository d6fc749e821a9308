"""The training core's typed state: where a run is, the control flags of its loop, how it ended, what a Stop keeps."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass
class TrainState:
    """Where a run is: what the resume snapshot stores, and what Stop, early stopping and the best checkpoint read."""

    phase: int = 0  # index into the schedule
    step: int = 0  # optimizer steps over all phases (the charts' x axis)
    phase_step: int = 0  # optimizer steps within the phase (its learning-rate schedule)
    micro: int = 0  # micro-batches within the phase (gradient accumulation)
    epoch_no: int = 0  # epochs completed within the phase
    batch_in_epoch: int = 0  # batches of the current epoch already trained
    epoch_gen_state: torch.Tensor | None = None  # the data-order generator at the start of the current epoch
    best: dict[str, Any] | None = None  # the best evaluation so far (its metrics and step)
    evals_since_best: int = 0
    samples_seen: int = 0

    def to_dict(self) -> dict[str, Any]:
        """What goes into the resume snapshot (tensors stay tensors; torch.save keeps them)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        """From a snapshot; snapshots from before phases existed had one phase, so phase_step = step."""
        known = {f.name for f in fields(cls)}
        state = cls(**{k: v for k, v in d.items() if k in known})
        if "phase_step" not in d:
            state.phase_step = state.step
        return state


@dataclass
class Control:
    """What the loop does next (as transformers' TrainerControl): the core's own checks set these flags after each
    optimizer step, and so may the core's step callbacks; the loop reads them and clears the per-step ones."""

    should_stop: bool = False  # end the run before the next micro-batch, keeping what Stop keeps (set by Stop or a callback)
    should_log: bool = False  # log the training loss and progress of this step
    should_evaluate: bool = False  # evaluate (and maybe save the best checkpoint) after this step
    should_save: bool = False  # write a resume snapshot after this step's evaluation
    should_end_phase: bool = False  # early stopping: this phase ends here, the next one (if any) begins
    should_end_run: bool = False  # the time limit: the run's training ends here, no further phases

    def new_step(self) -> None:
        """Clear the flags that hold for one step only (a requested stop stays)."""
        self.should_log = self.should_evaluate = self.should_save = False


class Ending(Enum):
    """How the core's fit ended."""

    COMPLETED = "completed"  # every phase trained its planned steps
    EARLY_STOP = "early stop"  # the last phase ended by early stopping (patience); the best checkpoint is kept
    TIME_LIMIT = "time limit"  # the wall-clock cap ended the run; the best checkpoint is kept
    STOPPED = "stopped"  # Stop (the user, or a control flag): what Stop keeps is kept, and a resume snapshot

    @property
    def trained(self) -> bool:
        """True when training ended on its own terms (the best checkpoint is then tested and kept); False for Stop."""
        return self is not Ending.STOPPED


@dataclass
class Outcome:
    """What fit() returns, and what the worker finishes a run with: the ending and what it carries."""

    ending: Ending
    state: TrainState | None = None  # where training ended; None when Stop came before the core trained
    early_stopped: tuple[str, ...] = ()  # phases that early stopping ended (a two-phase run's head may, then go on)
    train_loop_seconds: float = 0.0  # the loop's time without evaluations and saves (the training speed's clock)
    epochs: float = 0.0  # epochs trained over all phases
    t0: float = 0.0  # time.perf_counter() when fit began (a run's train_seconds count from it)
    result: dict[str, Any] = field(default_factory=dict)  # what the run's record gets (a recipe's finish fills it)

    @classmethod
    def stopped(cls) -> Outcome:
        """Stop before the core trained (reading data, tokenizing, loading the model)."""
        return cls(Ending.STOPPED)


@dataclass
class Holdings:
    """What a run's worker holds while it works: what a Stop keeps and what a lost peer's failure names. The core
    fills it as it trains; the recipe drops what it no longer needs (the trained model before the test phase)."""

    model: nn.Module | None = None  # the model being trained (kept at Stop when no best checkpoint exists yet)
    tokenizer: Any = None
    save: Callable[[nn.Module, Any, Path], None] | None = None  # the objective's way of saving a model
    snapshot: Callable[[], None] | None = None  # writes a resume snapshot of the last optimizer step
    steps: int = 0  # optimizer steps done
    best: dict[str, Any] | None = None  # the best evaluation so far
    snapshot_step: int | None = None  # the step of the last resume snapshot written (a lost NCCL peer's message)

    def release(self) -> None:
        """Let go of the trained model and of the core (its snapshot method holds it): before the test phase."""
        self.model = None
        self.snapshot = None

    def clear(self) -> None:
        """Let go of everything, when the run has ended."""
        self.release()
        self.tokenizer = self.save = self.best = None
