"""The one training loop (TrainingCore): steps, accumulation, evaluation cadence, best checkpoint, early stop,
wall-clock cap, Stop and resume snapshots over the phases of a schedule, with a typed control and a public lifecycle:
begin(state | None), then fit() -> Outcome."""

from __future__ import annotations

import contextlib
import gc
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ftui import accel
from ftui.accel import autocast_dtype, memory_mb
from ftui.architecture import apply_freeze, frozen_prefix
from ftui.distributed import SOLO, Dist
from ftui.errors import Diverged, StopRequested
from ftui.events import (
    EarlyStopEvent,
    EpochEvent,
    NoticeEvent,
    PhaseEvent,
    StartEvent,
    TimeLimitEvent,
    TrainEvent,
)
from ftui.files import replace_dir
from ftui.objective import Objective
from ftui.prefix_cache import PrefixCache, weakly
from ftui.run_layout import MODEL_DIR, RESUME_DIR, SNAPSHOT_FILE, snapshot_path
from ftui.runs import Run
from ftui.schedule import Phase, TimeCapPlanner
from ftui.train_state import Control, Ending, Holdings, Outcome, TrainState

RESUME_EVERY_S = 30.0  # at most one resume snapshot (weights + optimizer) per this many seconds, and one at Stop

StepCallback = Callable[["TrainingCore", TrainState, Control], None]  # after each optimizer step; may set control flags


def _set_train_mode(model: nn.Module, depth: int) -> None:
    model.train()
    for m in frozen_prefix(model, depth):
        m.eval()  # frozen layers run without dropout: same outputs every epoch


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class TrainingCore:
    """The one training loop: steps, accumulation, evaluation cadence, best checkpoint, early stop, wall-clock cap,
    Stop and resume snapshots, over the phases of a schedule; the objective says what a loss and a better model are."""

    def __init__(
        self,
        run: Run,
        model: nn.Module,
        tokenizer: Any,
        phases: list[Phase],
        objective: Objective,
        device: str,
        holdings: Holdings | None = None,
        dist: Dist = SOLO,
        clock: Callable[[], float] = time.monotonic,
        callbacks: Sequence[StepCallback] = (),
    ) -> None:
        self.run, self.model, self.tokenizer = run, model, tokenizer
        self.dist = dist
        self.net: nn.Module = model  # what a training step calls: the model, or its DDP wrapper
        self.phases, self.objective, self.device = phases, objective, device
        self.holdings = holdings if holdings is not None else Holdings()  # what a Stop keeps, kept up to date
        self.clock = clock  # the wall clock of the time cap and of snapshot spacing (a test injects a fake one)
        self.callbacks = list(callbacks)
        self.control = Control()
        self.state = TrainState()
        self.resumed = False  # begun from a snapshot's state: its phase is entered already, without a phase event
        self._entered: int | None = None  # the phase begin() entered (fresh start): fit() logs it without entering again
        self.t = run.config.train
        self.amp = autocast_dtype(self.t.precision, device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp == torch.float16 and device == "cuda" else None
        self.train_rows = objective.train_rows
        self.micro_per_epoch = math.ceil(self.train_rows / self.t.batch_size)
        self.steps_per_epoch = max(1, math.ceil(self.micro_per_epoch / self.t.grad_accum))
        self.phase_steps = self._plan_steps()
        self.total_steps = sum(self.phase_steps)
        self.eval_every = max(1, self.steps_per_epoch // self.t.evals_per_epoch)
        self.log_every = max(1, min(self.eval_every, 10, self.steps_per_epoch // 20 or 1))
        self.gen = torch.Generator().manual_seed(self.t.seed)
        self.deadline = clock() + 60 * self.t.max_minutes if self.t.max_minutes else 0.0
        self.planner = TimeCapPlanner(self.deadline, self.t.max_minutes, clock=clock)  # plans for the steps that fit the cap
        self.opt: Any = None
        self.sched: Any = None
        self.cache: PrefixCache | None = None
        self.point: dict[str, Any] = {}  # the TrainState as of the last optimizer step: what a snapshot stores
        self.aside = 0.0  # seconds spent evaluating and saving, kept out of the training speed

    def _plan_steps(self) -> list[int]:
        steps = [max(1, math.ceil(self.steps_per_epoch * p.epochs)) for p in self.phases]
        if self.t.max_steps:  # a cap on the whole run: later phases are cut first
            left, capped = self.t.max_steps, []
            for n in steps:
                capped.append(min(n, left))
                left -= capped[-1]
            steps = capped
        return steps

    def _epoch_of(self, state: TrainState) -> float:
        """Epochs over the whole run, for the charts (phases add up)."""
        done = sum(self.phase_steps[: state.phase]) / self.steps_per_epoch
        return done + state.phase_step / self.steps_per_epoch

    def _cache_off(self, reason: str) -> None:
        """The frozen-layer cache could not stand in for this model: say so on the run and keep training without it."""
        message = (
            f"The frozen-layer cache was switched off for this run ({reason}); frozen layers are recomputed each "
            "step instead: slower, same results (the CLI's --no-frozen-cache skips the check)."
        )
        progress = self.run.snapshot(events=False).progress
        if message in progress.notices:
            return  # the same reason again (a later phase): said once
        self.run.log(NoticeEvent(step=progress.step, message=message))
        self.run.set_progress(notices=(*progress.notices, message)[-3:])

    # -------------------------------------------------------------------------------------------- phases
    def _enter_phase(self, index: int) -> None:
        """Freeze for the phase, a frozen-prefix cache at its depth, and a fresh optimizer and schedule; parameters
        that trained in the previous phase keep their optimizer state (only the newly trainable ones start fresh)."""
        phase = self.phases[index]
        if self.net is not self.model:
            self.net = self.model  # the last phase's wrapper goes first: its gradient hooks must not fire again
            gc.collect()
        apply_freeze(self.model, phase.freeze_depth)
        if self.cache is not None:
            self.cache.release()  # a cache at another depth is of no use: free it (pinned memory too) before the next
        self.cache = None
        if phase.freeze_depth and self.t.frozen_cache:
            try:
                self.cache = PrefixCache(self.model, phase.freeze_depth, self.device, self.amp, self.dist, self.t.batch_size * 2)
                self.cache.on_off = weakly(self._cache_off)  # no core<->cache cycle: both are freed before the test phase
            except Exception as exc:  # noqa: BLE001 - an architecture the cache cannot stand in for: compute instead
                self._cache_off(f"{type(exc).__name__}: {exc}")
        from transformers import get_linear_schedule_with_warmup

        previous = self.opt
        fused = self.device == "cuda"
        self.opt = torch.optim.AdamW(_param_groups(self.model, self.t.weight_decay), lr=phase.learning_rate, fused=fused)
        if previous is not None:
            for group in self.opt.param_groups:
                for p in group["params"]:
                    if p in previous.state:
                        self.opt.state[p] = previous.state[p]
        total = self.phase_steps[index]
        self.sched = get_linear_schedule_with_warmup(self.opt, int(phase.warmup_ratio * total), total)
        _set_train_mode(self.model, phase.freeze_depth)
        self.net = self.dist.wrap(self.model)  # DDP over this phase's trainable set (rank 0's weights broadcast)

    def _phase_event(self, index: int, state: TrainState) -> PhaseEvent:
        p = self.phases[index]
        trainable = sum(x.numel() for x in self.model.parameters() if x.requires_grad)
        return PhaseEvent(
            step=state.step,
            phase=p.name,
            index=index,
            learning_rate=p.learning_rate,
            epochs=p.epochs,
            freeze_depth=p.freeze_depth,
            trainable_params=trainable,
        )

    # -------------------------------------------------------------------------------------------- resume
    def save_snapshot(self) -> None:
        """Everything needed to continue from the last optimizer step: weights, optimizer, schedule, data order, RNG."""
        if not self.point or not self.dist.is_main:
            return  # no step yet (a resume would start from scratch anyway), or another rank: rank 0 writes it
        snapshot = {
            **self.point,
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "rng": torch.get_rng_state(),
            # CUDA dropout draws from the GPU's generator, not the CPU's. Single-process runs only: under DDP rank 0
            # alone writes, and its states say nothing of the other ranks' GPUs (each rank's generator draws for its
            # own shard); a resumed multi-process run keeps each rank's freshly seeded generator instead.
            "cuda_rng": None if self.dist.enabled else accel.cuda_rng_state(),
        }
        replace_dir(self.run.out_dir / RESUME_DIR, lambda tmp: torch.save(snapshot, tmp / SNAPSHOT_FILE))
        self.holdings.snapshot_step = self.point["step"]  # what a lost NCCL peer's failure message names

    def load_snapshot(self) -> TrainState:
        """The state of a resume snapshot, with the model, optimizer, schedule and random streams restored."""
        snap = torch.load(snapshot_path(self.run.out_dir), map_location="cpu", weights_only=True)
        state = TrainState.from_dict(snap)
        self.model.load_state_dict(snap["model"])
        self._enter_phase(state.phase)  # the optimizer of the phase the snapshot was taken in
        self.opt.load_state_dict(snap["optimizer"])
        self.sched.load_state_dict(snap["scheduler"])
        if self.scaler and snap.get("scaler"):
            self.scaler.load_state_dict(snap["scaler"])
        if state.epoch_gen_state is not None:
            self.gen.set_state(state.epoch_gen_state)
        torch.set_rng_state(snap["rng"])
        if not self.dist.enabled:  # a single-process snapshot's GPU states mean nothing to several ranks (save_snapshot)
            accel.restore_cuda_rng(snap.get("cuda_rng"))
        if state.batch_in_epoch >= self.micro_per_epoch:
            # Saved at the last step of an epoch: that epoch is complete. Its order is drawn again from the saved
            # generator state and every batch of it skipped, so the next epoch draws the order it would have drawn.
            state.epoch_no += 1
        return state

    # -------------------------------------------------------------------------------------------- lifecycle
    def start_event(self) -> StartEvent:
        """The run's shape as planned: steps, the train size, the trainable parameters of the entered phase."""
        return StartEvent(
            total_steps=self.total_steps,
            steps_per_epoch=self.steps_per_epoch,
            device=self.device,
            processes=self.dist.world,
            train_size=self.train_rows,
            trainable_params=sum(p.numel() for p in self.model.parameters() if p.requires_grad),
            phases=[{"phase": p.name, "epochs": p.epochs, "learning_rate": p.learning_rate,
                     "freeze_depth": p.freeze_depth, "steps": n} for p, n in zip(self.phases, self.phase_steps, strict=True)],
        )  # fmt: skip

    def begin(self, state: TrainState | None = None) -> None:
        """Get ready to fit. None: from the start (the first phase is entered, for its trainable count, and the start
        event logged). A state (from load_snapshot, which restored the weights, optimizer and phase): from there on; the
        caller announces the resume as its run kind does."""
        if state is None:
            self.state, self.resumed = TrainState(), False
            self._enter_phase(0)
            self._entered = 0
            self.run.log(self.start_event())
        else:
            self.state, self.resumed, self._entered = state, True, None
            self.point = state.to_dict()
            self.holdings.best, self.holdings.steps, self.holdings.snapshot_step = state.best, state.step, state.step

    def fit(self) -> Outcome:
        """Train every phase from where begin() left on; the best checkpoint is saved on the way. Every ending is an
        Outcome: completed, early stop, the time limit, or Stop (a requested stop, or the control's should_stop)."""
        run, state = self.run, self.state
        self.holdings.snapshot, self.holdings.save, self.holdings.steps = self.save_snapshot, self.objective.save, state.step
        self.t0 = time.perf_counter()
        self.first_step = state.step
        resumed, ending, early = self.resumed, Ending.COMPLETED, []
        try:
            for index in range(state.phase, len(self.phases)):
                if index != state.phase or not resumed:
                    if index != state.phase:  # the next phase begins
                        state.phase, state.phase_step, state.micro = index, 0, 0
                        state.epoch_no, state.batch_in_epoch, state.evals_since_best = 0, 0, 0
                    if self._entered == index:  # begin() entered it: only back to training mode (an evaluation may
                        _set_train_mode(self.model, self.phases[index].freeze_depth)  # have run since)
                    else:
                        self._enter_phase(index)
                    self._entered = None
                    run.log(self._phase_event(index, state))
                resumed = False
                ending = self._fit_phase(state)
                if ending is Ending.EARLY_STOP:
                    early.append(self.phases[index].name)
                if ending in (Ending.TIME_LIMIT, Ending.STOPPED):
                    break  # no further phases
        except StopRequested:  # Stop during an evaluation
            ending = Ending.STOPPED
        self.resumed = False
        return Outcome(
            ending,
            state,
            tuple(early),
            train_loop_seconds=time.perf_counter() - self.t0 - self.aside,
            epochs=self._epoch_of(state),
            t0=self.t0,
        )

    def _fit_phase(self, state: TrainState) -> Ending:
        """Train one phase to its end; how it ended (early stop ends the phase, the time limit and Stop the run)."""
        run, t, phase, control = self.run, self.t, self.phases[state.phase], self.control
        stop = run.stop_event.is_set
        total = self.phase_steps[state.phase]
        running_loss = torch.zeros((), device=self.device)
        running_n, window_samples = 0, 0
        window_t0 = epoch_t0 = time.perf_counter()
        epoch_aside = 0.0
        last_snapshot = self.clock()
        done = state.phase_step >= total
        ending = Ending.COMPLETED
        skip = state.batch_in_epoch
        while not done:
            epoch_gen_state = self.gen.get_state()
            batches = self.objective.epoch_batches(self.gen)
            for bi in range(skip, len(batches)):
                idx = batches[bi]
                # Under DDP every rank leaves at the same step.
                control.should_stop = self.dist.agree(control.should_stop or stop())
                if control.should_stop:
                    return Ending.STOPPED
                mine, factor = self.dist.shard(idx, self.objective.row_weights(idx) if self.dist.enabled else None)
                # Under DDP, gradients are exchanged once per optimizer step, not per accumulated micro-batch.
                syncs = (state.micro + 1) % t.grad_accum == 0 or (state.micro + 1) % self.micro_per_epoch == 0
                quiet = self.net.no_sync() if self.dist.enabled and not syncs else contextlib.nullcontext()  # type: ignore[operator]
                with quiet:
                    loss = self.objective.train_loss(self.net, mine, self.cache, self.amp) * factor
                    (self.scaler.scale(loss / t.grad_accum) if self.scaler else loss / t.grad_accum).backward()
                running_loss += loss.detach() / self.dist.world  # summed over ranks: the global batch's mean loss
                running_n += 1
                window_samples += len(idx)
                state.samples_seen += len(idx)
                state.micro += 1
                if state.micro % t.grad_accum and state.micro % self.micro_per_epoch:
                    continue
                self._optimizer_step()
                state.step += 1
                state.phase_step += 1
                state.batch_in_epoch = bi + 1
                state.epoch_gen_state = epoch_gen_state
                self.holdings.steps = state.step
                self.point = state.to_dict()
                total = self.planner.step(self, state)
                epoch = self._epoch_of(state)
                control.new_step()
                # The first step is logged at once so the chart shows a point within seconds of Start.
                control.should_log = state.phase_step % self.log_every == 0 or state.phase_step == total or state.step == 1
                if control.should_log:
                    self.dist.sum_(running_loss)
                    now = time.perf_counter()
                    mean_loss = float(running_loss) / max(1, running_n)  # the sync the log line needs anyway
                    if not math.isfinite(mean_loss):  # NaN spreads through the sum: no step goes unchecked
                        raise Diverged("training loss", state.step, mean_loss)
                    run.log(
                        TrainEvent(
                            step=state.step,
                            epoch=round(epoch, 4),
                            loss=mean_loss,
                            lr=self.sched.get_last_lr()[0],
                            phase=phase.name,
                        )
                    )
                    eta = (now - self.t0 - self.aside) / max(1, state.step - self.first_step) * (self.total_steps - state.step)
                    run.set_progress(
                        step=state.step,
                        total_steps=self.total_steps,
                        epoch=round(epoch, 3),
                        samples_per_s=round(window_samples / max(now - window_t0, 1e-9), 1),
                        eta_s=round(eta, 1),
                        memory_mb=round(memory_mb(self.device), 1),
                        train_phase=phase.name,
                        **({"prefix_cache_mb": round(self.cache.size_mb(), 1)} if self.cache else {}),
                    )
                    running_loss.zero_()
                    running_n, window_samples, window_t0 = 0, 0, now
                control.should_end_run = bool(self.deadline) and self.dist.agree(self.clock() > self.deadline)
                control.should_evaluate = (
                    state.phase_step % self.eval_every == 0 or state.phase_step == total or control.should_end_run
                )
                for callback in self.callbacks:  # may set flags: stop before the next micro-batch, evaluate now, ...
                    callback(self, state, control)
                if control.should_evaluate:
                    spent = self._evaluate(state, epoch, phase)
                    control.should_save = self.clock() - last_snapshot >= RESUME_EVERY_S and state.step < self.total_steps
                    if control.should_save:
                        t_save = time.perf_counter()
                        self.save_snapshot()
                        last_snapshot = self.clock()
                        spent += time.perf_counter() - t_save
                    self.aside += spent
                    epoch_aside += spent
                    window_t0 += spent
                    if t.early_stopping_patience and state.evals_since_best >= t.early_stopping_patience:
                        run.log(EarlyStopEvent(step=state.step, phase=phase.name))
                        control.should_end_phase = True
                if control.should_end_phase:
                    done, ending = True, Ending.EARLY_STOP
                if state.phase_step >= total:
                    done = True
                elif control.should_end_run:
                    run.log(TimeLimitEvent(step=state.step, minutes=t.max_minutes))
                    done = True  # like early stopping: the best checkpoint so far is tested and kept
                if state.phase_step % self.steps_per_epoch == 0 or done:
                    state.epoch_no += 1
                    now = time.perf_counter()
                    seconds = round(now - epoch_t0 - epoch_aside, 3)
                    # An epoch cut short (time limit, early stop, max steps) is logged as the fraction it reached.
                    whole = state.phase_step % self.steps_per_epoch == 0
                    reached = state.epoch_no if whole else round(state.phase_step / self.steps_per_epoch, 4)
                    run.log(EpochEvent(step=state.step, epoch=reached, train_seconds=seconds, phase=phase.name))
                    epoch_t0, epoch_aside = now, 0.0
                    state.batch_in_epoch = 0
                if done:
                    control.should_end_phase = False  # the next phase starts afresh
                    return Ending.TIME_LIMIT if control.should_end_run else ending  # the cap ends the run, not the phase
            skip = 0
            state.batch_in_epoch = 0
        return ending

    def _optimizer_step(self) -> None:
        trainable = [p for g in self.opt.param_groups for p in g["params"]]
        if self.scaler:
            self.scaler.unscale_(self.opt)
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        if self.scaler:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)

    def _evaluate(self, state: TrainState, epoch: float, phase: Phase) -> float:
        """Validate, log, keep the checkpoint when it is the best so far; returns the seconds it took."""
        t_eval = time.perf_counter()
        run = self.run
        run.set_progress(phase="evaluating")
        m = self.objective.evaluate(self.model, self.amp, run.stop_event.is_set, self.cache)
        if not math.isfinite(m["loss"]):
            raise Diverged("validation loss", state.step, m["loss"])
        _set_train_mode(self.model, phase.freeze_depth)
        run.log(self.objective.eval_event(state.step, epoch, m, phase.name))
        if self.objective.better(m, state.best):
            state.best = {**m, "step": state.step}
            state.evals_since_best = 0
            self.holdings.best = state.best
            if self.dist.is_main:  # every rank has the same metrics (gathered), so the same verdict
                replace_dir(run.out_dir / MODEL_DIR, lambda tmp: self.objective.save(self.model, self.tokenizer, tmp))
        else:
            state.evals_since_best += 1
        run.set_progress(phase="training", **self.objective.progress(state.best))
        self.point = state.to_dict()
        return time.perf_counter() - t_eval
