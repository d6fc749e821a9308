"""A run's schedule: its phases (one, or head then fine-tuning), and time-capped planning, where a run with a
wall-clock cap plans its learning-rate schedule for the steps that fit (measured speed × time left), so the rate decays
to zero by the cap instead of being cut mid-schedule."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ftui.config import RunConfig
from ftui.events import ScheduleEvent

MEASURE_STEPS = 20  # optimizer steps timed before the first plan; re-planned at 2×, 4×, ... (evaluations then counted)
MEASURE_SHARE = 0.05  # ... or fewer steps (at least MIN_MEASURED) once this share of the cap has passed (slow steps)
MIN_MEASURED = 3
TOLERANCE = 0.02  # a new plan within this share of the current one is not applied
SAFETY = 0.97  # share of the time left the plan fills: the last steps and the final evaluation fit under the cap


@dataclass(frozen=True)
class Phase:
    """One stretch of training with its own trainable set, learning rate and warmup (and a fresh optimizer)."""

    name: str  # "train" (one phase), "head" (transfer learning), "finetune"
    epochs: float
    learning_rate: float
    warmup_ratio: float
    freeze_depth: int  # bottom layers frozen; the encoder's depth = only the head trains


def build_schedule(cfg: RunConfig, num_layers: int) -> list[Phase]:
    """The phases of a run: one, or the head on a frozen encoder first and then fine-tuning down to the freeze depth."""
    t, depth = cfg.train, cfg.model.freeze_depth
    if t.schedule != "two-phase":
        return [Phase("train", t.epochs, t.learning_rate, t.warmup_ratio, depth)]
    return [
        Phase("head", t.head_epochs, t.head_learning_rate, t.warmup_ratio, num_layers),
        Phase("finetune", t.epochs, t.learning_rate, t.warmup_ratio, depth),
    ]


def steps_that_fit(seconds_left: float, seconds_per_step: float, share: float = 1.0) -> int:
    """Whole optimizer steps that fit in `share` of the time left at the measured speed."""
    if seconds_per_step <= 0:
        return 0
    return max(0, math.floor(max(0.0, seconds_left) * share * SAFETY / seconds_per_step))


def planned_total(phase_step: int, fit: int, original: int) -> int:
    """The phase's new length: what fits, never past what the phase was set to train, never before the next step."""
    return max(phase_step + 1, min(original, phase_step + fit))


def plan_message(minutes: float, steps: int, epochs: float, planned_epochs: float) -> str:
    """What the page and the CLI say about a re-planned schedule."""
    return (
        f"Time limit {minutes:g} min: the schedule is planned for the {steps:,} steps that fit at the measured speed, "
        f"{epochs:.2f} of the {planned_epochs:g} epochs set (the learning rate reaches 0 at the cap)."
    )


@dataclass
class TimeCapPlanner:
    """Re-plans the current phase of a TrainingCore under a time cap; a no-op without one (or under DDP, where every
    rank would have to agree on one measured speed)."""

    deadline: float  # time.monotonic() at the cap; 0 = no cap
    minutes: float
    original: list[int] = field(default_factory=list)  # each phase's steps as set (epochs, max_steps)
    _start: dict[int, tuple[float, int]] = field(default_factory=dict)  # phase -> (clock, phase_step) when timing began
    _next: dict[int, int] = field(default_factory=dict)  # phase -> measured steps at which it is planned again
    _last: dict[int, tuple[float, int]] = field(default_factory=dict)  # phase -> (clock, phase_step) at its last plan
    clock: Callable[[], float] = time.monotonic  # the core's clock (a test's fake one makes the cap deterministic)

    def step(self, core: Any, state: Any) -> int:
        """Call after each optimizer step: returns the phase's (possibly new) number of steps."""
        index = state.phase
        total = core.phase_steps[index]
        if not self.deadline or core.dist.enabled:
            return total
        if not self.original:
            self.original = list(core.phase_steps)
        now = self.clock()
        if index not in self._start:  # timing starts after the phase's first step (warm-up costs stay out)
            self._start[index] = (now, state.phase_step)
            return total
        t0, s0 = self._start[index]
        measured = state.phase_step - s0
        early = index not in self._next and measured >= MIN_MEASURED and now - t0 >= MEASURE_SHARE * 60 * self.minutes
        if measured < self._next.get(index, MEASURE_STEPS) and not early:
            return total
        # The speed since the last plan (the first steps of a run are often slow; evaluations are among these steps).
        tl, sl = self._last.get(index, (t0, s0))
        per_step = (now - tl) / (state.phase_step - sl) if state.phase_step - sl >= MIN_MEASURED else (now - t0) / measured
        self._last[index] = (now, state.phase_step)
        later, left = sum(self.original[index + 1 :]), max(0, self.original[index] - state.phase_step)
        # A phase before the last gets its share of the time left by planned steps (per-step speeds unknown yet).
        share = left / (left + later) if later else 1.0
        new = planned_total(state.phase_step, steps_that_fit(self.deadline - now, per_step, share), self.original[index])
        # Planned again at twice the steps timed, and at the latest halfway through what is left.
        self._next[index] = min(2 * measured, measured + max(MIN_MEASURED, (new - state.phase_step) // 2))
        if abs(new - total) <= max(1, TOLERANCE * total):
            return total  # a step or two either way: not worth a new schedule (and an event)
        self._apply(core, state, new, per_step)
        return new

    def _apply(self, core: Any, state: Any, new: int, per_step: float) -> None:
        """The phase's schedule for `new` steps from the step it is at; logged and shown on the page."""
        from transformers import get_linear_schedule_with_warmup

        index, phase = state.phase, core.phases[state.phase]
        core.phase_steps[index] = new
        core.total_steps = sum(core.phase_steps)
        # The same linear warm-up and decay, stretched to the new length, continuing from the step it is at.
        core.sched = get_linear_schedule_with_warmup(
            core.opt, int(phase.warmup_ratio * new), new, last_epoch=state.phase_step - 1
        )
        epochs = new / core.steps_per_epoch
        core.run.log(
            ScheduleEvent(
                step=state.step,
                phase=phase.name,
                steps=new,
                epochs=round(epochs, 4),
                planned_epochs=phase.epochs,
                seconds_per_step=round(per_step, 4),
                minutes=self.minutes,
            )
        )
        core.run.set_progress(plan=plan_message(self.minutes, new, epochs, phase.epochs), total_steps=core.total_steps)
