"""The training core's lifecycle driven by a toy objective (a linear model on random tensors: no tokenizer, no BERT, no
engine threads): gradient accumulation, early stop, the time limit on an injected clock, Stop from a control flag,
and resume from a snapshot, each ending asserted as the typed Outcome fit() returns."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from ftui.config import RunConfig, TrainConfig
from ftui.events import EvalEvent, EventType, of_type
from ftui.run_layout import MODEL_DIR, snapshot_path
from ftui.runs import Run, RunStatus
from ftui.schedule import Phase
from ftui.train_state import Control, Ending, Holdings, Outcome, TrainState
from ftui.training_core import TrainingCore
from ftui.worker import finish_run

ROWS, FEATURES = 32, 4
TRUE_W = torch.tensor([1.0, -2.0, 0.5, 3.0])


class Toy(nn.Module):
    """y = x · w + b, initialised from its own seed (two cores with the same seed start from the same weights)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.lin = nn.Linear(FEATURES, 1)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(1, FEATURES, generator=gen))
            self.lin.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x).squeeze(-1)


class ToyObjective:
    """Least squares on fixed random rows; optionally scripted validation losses (to steer early stopping)."""

    def __init__(self, batch_size: int, scripted: list[float] | None = None, rows: int = ROWS) -> None:
        gen = torch.Generator().manual_seed(1)
        self.x = torch.randn(rows, FEATURES, generator=gen)
        self.y = self.x @ TRUE_W
        self.train_rows, self.batch_size = rows, batch_size
        self.scripted = list(scripted) if scripted is not None else None
        self.micro_batches: list[list[int]] = []  # every micro-batch's rows, in the order trained
        self.evaluations = 0

    def epoch_batches(self, gen: torch.Generator) -> list[np.ndarray]:
        order = torch.randperm(self.train_rows, generator=gen).numpy()
        return [order[i : i + self.batch_size] for i in range(0, self.train_rows, self.batch_size)]

    def row_weights(self, idx: np.ndarray) -> None:
        return None

    def train_loss(self, model: nn.Module, idx: np.ndarray, cache: Any, amp: Any) -> torch.Tensor:
        self.micro_batches.append(idx.tolist())
        rows = torch.from_numpy(idx)
        return ((model(self.x[rows]) - self.y[rows]) ** 2).mean()

    def evaluate(self, model: nn.Module, amp: Any, stop: Callable[[], bool], cache: Any) -> dict[str, float]:
        self.evaluations += 1
        if self.scripted is not None:
            return {"loss": self.scripted.pop(0)}
        with torch.no_grad():
            return {"loss": float(((model(self.x) - self.y) ** 2).mean())}

    def better(self, metrics: dict[str, float], best: dict[str, Any] | None) -> bool:
        return best is None or metrics["loss"] < best["loss"]

    def eval_event(self, step: int, epoch: float, metrics: dict[str, float], phase: str) -> EvalEvent:
        return EvalEvent(step=step, epoch=round(epoch, 4), eval_loss=metrics["loss"], phase=phase)

    def progress(self, best: dict[str, Any]) -> dict[str, Any]:
        return {}  # a loss-only objective: no best score on the status line (an unknown Progress field is a TypeError)

    def save(self, model: nn.Module, tokenizer: Any, folder: Path) -> None:
        torch.save(model.state_dict(), folder / "weights.pt")


def make_core(
    out: Path,
    *,
    phases: list[Phase] | None = None,
    objective: ToyObjective | None = None,
    seed: int = 0,
    clock: Callable[[], float] | None = None,
    callbacks: tuple[Callable[[TrainingCore, TrainState, Control], None], ...] = (),
    holdings: Holdings | None = None,
    **train: Any,
) -> TrainingCore:
    t = {"epochs": 2, "batch_size": 4, "learning_rate": 0.2, "warmup_ratio": 0.0, "evals_per_epoch": 2, "seed": 3, **train}
    cfg = RunConfig(train=TrainConfig(**t))
    run = Run("r-" + out.name, out.name, cfg, out)
    objective = objective or ToyObjective(t["batch_size"])
    phases = phases or [Phase("train", t["epochs"], t["learning_rate"], 0.0, 0)]
    extra = {"clock": clock} if clock is not None else {}
    return TrainingCore(run, Toy(seed), None, phases, objective, "cpu", holdings, callbacks=callbacks, **extra)


def types(run: Run) -> list[str]:
    return [e["type"] for e in run.events()]


def weights(core: TrainingCore) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in core.model.parameters()])


def stop_at(step: int) -> Callable[[TrainingCore, TrainState, Control], None]:
    def callback(core: TrainingCore, state: TrainState, control: Control) -> None:
        if state.step == step:
            control.should_stop = True

    return callback


def test_a_run_that_trains_its_planned_steps_completes(tmp_path: Path) -> None:
    core = make_core(tmp_path / "plain")
    core.begin(None)
    outcome = core.fit()
    assert isinstance(outcome, Outcome) and outcome.ending is Ending.COMPLETED and outcome.ending.trained
    assert outcome.state is not None and outcome.state.step == 16 == core.total_steps  # 32 rows / 4, 2 epochs
    assert outcome.epochs == 2.0 and outcome.early_stopped == ()
    kinds = types(core.run)
    assert kinds[:2] == ["start", "phase"] and kinds.count("phase") == 1 and kinds.count("eval") == 4
    assert "early_stop" not in kinds and "time_limit" not in kinds
    assert outcome.state.best is not None and (tmp_path / "plain" / MODEL_DIR / "weights.pt").exists()
    before = ToyObjective(4).evaluate(Toy(0), None, lambda: False, None)["loss"]
    assert outcome.state.best["loss"] < before / 4  # it learns: the toy problem has an exact solution


def test_gradient_accumulation_steps_once_per_accumulated_batch_and_matches_the_big_batch(tmp_path: Path) -> None:
    """Two micro-batches of 4 accumulated are one optimizer step on the same 8 rows: the weights match a batch of 8."""
    small = make_core(tmp_path / "accum", batch_size=4, grad_accum=2, epochs=1)
    big = make_core(tmp_path / "big", batch_size=8, grad_accum=1, epochs=1)
    for core in (small, big):
        core.begin(None)
    a, b = small.fit(), big.fit()
    assert a.ending is b.ending is Ending.COMPLETED
    assert a.state is not None and b.state is not None
    assert (a.state.step, a.state.micro, b.state.step, b.state.micro) == (4, 8, 4, 4)
    assert [sorted(r) for pair in zip(small.objective.micro_batches[::2], small.objective.micro_batches[1::2], strict=True)
            for r in [pair[0] + pair[1]]] == [sorted(r) for r in big.objective.micro_batches]  # fmt: skip
    assert torch.allclose(weights(small), weights(big), atol=1e-6)
    assert not torch.allclose(weights(small), torch.cat([p.detach().reshape(-1) for p in Toy(0).parameters()]))  # it trained


def test_the_last_micro_batches_of_an_epoch_make_a_step_even_short_of_the_accumulation(tmp_path: Path) -> None:
    core = make_core(tmp_path / "tail", batch_size=4, grad_accum=3, epochs=1)  # 8 micro-batches: steps at 3, 6, 8
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.COMPLETED and outcome.state is not None
    assert (core.steps_per_epoch, outcome.state.step, outcome.state.micro) == (3, 3, 8)
    assert [e["step"] for e in of_type(core.run.events(), EventType.EPOCH)] == [3]


def test_early_stop_ends_the_run_after_patience_evaluations_without_improvement(tmp_path: Path) -> None:
    losses = [1.0, 0.5, 0.6, 0.7, 0.1, 0.1, 0.1, 0.1]  # best at the second evaluation, then two worse ones
    core = make_core(tmp_path / "early", objective=ToyObjective(4, losses), evals_per_epoch=8, early_stopping_patience=2)
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.EARLY_STOP and outcome.ending.trained
    assert outcome.state is not None and outcome.state.step == 4 and outcome.early_stopped == ("train",)
    assert outcome.state.best == {"loss": 0.5, "step": 2} and core.holdings.best == outcome.state.best
    assert [e["step"] for e in of_type(core.run.events(), EventType.EARLY_STOP)] == [4]
    assert core.objective.evaluations == 4 and len(core.objective.micro_batches) == 4


def test_early_stop_in_the_first_phase_goes_on_to_the_next(tmp_path: Path) -> None:
    phases = [Phase("head", 1, 0.05, 0.0, 0), Phase("finetune", 1, 0.01, 0.0, 0)]
    losses = [1.0, 2.0, 3.0] + [0.9 - 0.01 * i for i in range(8)]  # the head stops after 2 worse evaluations
    core = make_core(tmp_path / "two", phases=phases, objective=ToyObjective(4, losses), evals_per_epoch=8,
                     early_stopping_patience=2)  # fmt: skip
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.COMPLETED and outcome.early_stopped == ("head",)
    assert outcome.state is not None and outcome.state.step == 3 + 8 and outcome.state.phase == 1
    assert [e["phase"] for e in of_type(core.run.events(), EventType.PHASE)] == ["head", "finetune"]


def test_the_time_limit_on_an_injected_clock_ends_the_run_and_its_later_phases(tmp_path: Path) -> None:
    now = [0.0]

    def minute_passes_at_step_3(core: TrainingCore, state: TrainState, control: Control) -> None:
        if state.step == 3:
            now[0] += 61.0  # the cap (1 minute) is past: seen at the next step's check

    phases = [Phase("head", 2, 0.05, 0.0, 0), Phase("finetune", 2, 0.01, 0.0, 0)]
    core = make_core(tmp_path / "cap", phases=phases, max_minutes=1.0, clock=lambda: now[0],
                     callbacks=(minute_passes_at_step_3,))  # fmt: skip
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.TIME_LIMIT and outcome.ending.trained
    assert outcome.state is not None and outcome.state.step == 4 and outcome.state.phase == 0
    events = core.run.events()
    assert [e["step"] for e in of_type(events, EventType.TIME_LIMIT)] == [4]
    assert [e["phase"] for e in of_type(events, EventType.PHASE)] == ["head"]  # no further phase
    assert of_type(events, EventType.EVAL)[-1]["step"] == 4  # the cap's step is evaluated: its best is kept
    assert [e["epoch"] for e in of_type(events, EventType.EPOCH)] == [0.5]  # the cut epoch, as the fraction reached


def test_no_clock_no_cap(tmp_path: Path) -> None:
    now = [0.0]

    def hours_pass(core: TrainingCore, state: TrainState, control: Control) -> None:
        now[0] += 3600.0

    core = make_core(tmp_path / "nocap", clock=lambda: now[0], callbacks=(hours_pass,))
    core.begin(None)
    assert core.fit().ending is Ending.COMPLETED


def test_stop_from_a_control_flag_ends_before_the_next_micro_batch_and_keeps_the_last_weights(tmp_path: Path) -> None:
    holdings = Holdings()
    core = make_core(tmp_path / "stop", callbacks=(stop_at(3),), holdings=holdings, evals_per_epoch=1)
    holdings.model = core.model
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.STOPPED and not outcome.ending.trained
    assert outcome.state is not None and outcome.state.step == 3 and len(core.objective.micro_batches) == 3
    assert holdings.steps == 3 and holdings.best is None and holdings.snapshot is not None
    finish_run(core.run, outcome, holdings)  # the one place every ending lands
    run = core.run
    assert run.status == RunStatus.STOPPED and run.result["kept"] == "last" and run.result["kept_step"] == 3
    assert (tmp_path / "stop" / MODEL_DIR / "weights.pt").exists()
    snap = torch.load(snapshot_path(tmp_path / "stop"), weights_only=True)
    assert snap["step"] == 3 and snap["micro"] == 3


def test_a_stop_requested_on_the_run_is_the_same_outcome(tmp_path: Path) -> None:
    def press_stop(core: TrainingCore, state: TrainState, control: Control) -> None:
        if state.step == 2:
            core.run.request_stop()

    core = make_core(tmp_path / "press", callbacks=(press_stop,))
    core.begin(None)
    outcome = core.fit()
    assert outcome.ending is Ending.STOPPED and outcome.state is not None and outcome.state.step == 2
    assert core.control.should_stop


def test_a_completed_outcome_lands_its_result(tmp_path: Path) -> None:
    core = make_core(tmp_path / "done", epochs=1)
    core.begin(None)
    outcome = core.fit()
    finish_run(core.run, Outcome(outcome.ending, outcome.state, result={"steps": 8}), Holdings())
    assert core.run.status == RunStatus.COMPLETED and core.run.result["steps"] == 8


@pytest.mark.parametrize("stop_step", [3, 8])  # mid-epoch, and the last step of the first epoch (8 steps per epoch)
def test_resuming_from_a_snapshot_trains_exactly_as_the_uninterrupted_run(tmp_path: Path, stop_step: int) -> None:
    whole = make_core(tmp_path / "whole")
    whole.begin(None)
    assert whole.fit().ending is Ending.COMPLETED

    holdings = Holdings()
    first = make_core(tmp_path / "parted", callbacks=(stop_at(stop_step),), holdings=holdings)
    first.begin(None)
    stopped = first.fit()
    assert stopped.ending is Ending.STOPPED
    finish_run(first.run, stopped, holdings)
    assert snapshot_path(tmp_path / "parted").exists()

    again = make_core(tmp_path / "parted", seed=99)  # other starting weights: the snapshot's must replace them
    state = again.load_snapshot()
    assert state.step == stop_step
    again.begin(state)
    assert again.holdings.steps == stop_step and again.holdings.snapshot_step == stop_step
    resumed = again.fit()
    assert resumed.ending is Ending.COMPLETED and resumed.state is not None and resumed.state.step == 16
    assert "phase" not in [e["type"] for e in again.run.events()]  # the resumed phase is entered, not begun again
    assert torch.equal(weights(again), weights(whole))
    later = [(e["step"], e["eval_loss"]) for e in of_type(whole.run.events(), EventType.EVAL) if e["step"] > stop_step]
    assert [(e["step"], e["eval_loss"]) for e in of_type(again.run.events(), EventType.EVAL)] == later
    trained = first.objective.micro_batches + again.objective.micro_batches
    assert trained == whole.objective.micro_batches  # the same data order, no batch skipped or repeated
