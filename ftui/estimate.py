"""How long a fine-tuning run will take, before Start: its batches simulated from the data's token lengths, costed in
model FLOPs and scaled by speeds measured on this machine (ftui.calibrate)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ftui.batching import CHUNK_OVERLAP, GROUP_FACTOR, PAD_MULTIPLE
from ftui.config import RunConfig
from ftui.training_core import RESUME_EVERY_S

SIM_TEXTS = 50_000  # texts simulated per split at most; a larger split's cost is scaled (batches form within chunks)
SNAPSHOT_SAVES = 3.0  # a resume snapshot writes the weights and AdamW's two moments: about three model saves
SPECIALS = 2  # tokens a tokenizer adds around one text ([CLS] … [SEP], <s> … </s>)


@dataclass(frozen=True)
class DataShape:
    """What the estimate needs of the data: a sample of train texts' lengths in the checkpoint's tokens (special tokens
    included, uncut: the Data tab's measure) and each split's size in texts."""

    lengths: tuple[int, ...]
    train_texts: int
    validation_texts: int
    test_texts: int
    specials: int = SPECIALS


@dataclass(frozen=True)
class ModelShape:
    """The checkpoint's size as the cost model reads it (from the Model tab's summary: no weights read)."""

    num_layers: int
    hidden: int
    layer_params: int  # one encoder layer (their mean)
    total_params: int
    top_params: int  # head and pooler: parameters that train at every depth

    def trainable(self, depth: int) -> int:
        """Parameters the optimizer updates at a freeze depth (embeddings and the bottom `depth` layers frozen)."""
        if depth <= 0:
            return self.total_params
        return self.top_params + self.layer_params * max(0, self.num_layers - depth)


@dataclass(frozen=True)
class Speeds:
    """One checkpoint's speed on this machine and device, from a few timed steps (ftui.calibrate). Compute is counted in
    GFLOPs of one encoder layer's forward pass (the cost model's unit); the rest is per step or per run."""

    step_s: float  # per training micro-batch, apart from its compute (calls, the embeddings' gradient, launches)
    train_s_per_gflop: float  # forward + backward of a trainable layer
    eval_s_per_gflop: float  # forward without gradients: evaluation, and frozen layers while training
    optimizer_s: float  # clipping and one AdamW step over every parameter (scaled by the trainable share)
    save_s: float  # writing the model once (each better evaluation does)
    load_s: float  # building the model from the checkpoint (a run's start, and the test's load of the best one)
    tokenize_s_per_text: float  # tokenizing one text (a run tokenizes every split once)
    steps: int  # training steps timed
    width: int  # the timed batch's width in tokens
    batch_size: int
    device: str
    measured_at: float  # time.time() of the measurement
    load: float = 0.0  # the machine's 1-minute load average then (other work shares the CPU: the speed moves with it)
    frozen_step_s: float | None = None  # step_s once the embeddings are frozen (any freeze depth); None: as step_s

    def fixed_s(self, depth: int) -> float:
        """A micro-batch's fixed cost at a freeze depth: frozen embeddings have no gradient to build."""
        return self.step_s if depth <= 0 or self.frozen_step_s is None else self.frozen_step_s


@dataclass(frozen=True)
class Load:
    """One pass over a split as the estimate costs it: its batches, rows, padded tokens and Σ rows × width²."""

    batches: float
    rows: float
    tokens: float
    square: float

    def gflop(self, model: ModelShape) -> float:
        """One encoder layer's forward over the whole pass: 2 FLOPs per weight per token, plus attention's 4·W·H per
        token (queries × keys and weights × values) that grows with the padded width W."""
        return (2.0 * model.layer_params * self.tokens + 4.0 * model.hidden * self.square) / 1e9

    @property
    def width(self) -> int:
        """Mean padded width per row, to the nearest multiple of PAD_MULTIPLE (the width calibration times)."""
        mean = self.tokens / self.rows if self.rows else 0.0
        return max(PAD_MULTIPLE, round(mean / PAD_MULTIPLE) * PAD_MULTIPLE)


@dataclass(frozen=True)
class Estimate:
    """A run's expected time in seconds, before it starts."""

    epoch_s: float  # the first epoch of training (of the fine-tune phase), its evaluations included
    later_epoch_s: float  # an epoch after it (less when frozen layers are cached); epoch_s when there is none
    head_phase_s: float  # two-phase schedule: the head-only phase before it (0 for one phase)
    train_s: float  # the training loop as it will run: stopped by the time limit when there is one
    uncapped_train_s: float  # ... as planned, without the limit
    setup_s: float  # loading the model and tokenizing the splits
    test_s: float  # loading the best checkpoint and scoring the test split
    total_s: float  # Start to the end of the run
    epochs: float  # planned (fine-tune phase)
    epochs_reached: float  # within the time limit
    steps: int  # optimizer steps planned
    cap_s: float  # the time limit in seconds; 0 = none
    cached: bool  # frozen layers are computed once, then read from the cache
    speeds: Speeds

    @property
    def capped(self) -> bool:
        """The time limit ends training before its planned epochs."""
        return bool(self.cap_s) and self.uncapped_train_s > self.cap_s

    @property
    def cap_before_epoch(self) -> bool:
        """The time limit ends the run before one whole epoch of (fine-tune) training."""
        return self.capped and self.epochs_reached < min(1.0, self.epochs)


# ---------------------------------------------------------------------------------------------------- the rows
def padded(width: float) -> int:
    """A batch's width as collate pads it: its longest row rounded up to a multiple of PAD_MULTIPLE."""
    return max(PAD_MULTIPLE, -(-math.ceil(width) // PAD_MULTIPLE) * PAD_MULTIPLE)


def row_lengths(lengths: np.ndarray, max_length: int, long_text: str, specials: int = SPECIALS) -> np.ndarray:
    """Each text's rows in tokens as ftui.batching makes them: cut (truncate, head_tail: the same length, different
    tokens) or, for chunks, windows of max_length overlapping by a quarter of it (the fast tokenizer's overflow)."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if long_text != "chunks":
        return np.minimum(lengths, max_length)
    budget = max(1, max_length - specials)
    step = max(1, budget - int(max_length * CHUNK_OVERLAP))
    content = np.maximum(lengths - specials, 0)
    extra = np.maximum(content - budget, 0)
    windows = 1 + -(-extra // step)  # ceil
    last = content - (windows - 1) * step  # the last window's content (the others are full)
    full = np.repeat(np.full(len(lengths), budget + specials), windows - 1)
    return np.concatenate([full, last + specials])


def _texts(lengths: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """n texts drawn like the sample (the sample itself when it is the whole split), at most SIM_TEXTS of them, and the
    factor that scales their cost to n."""
    if n <= 0 or not len(lengths):
        return np.zeros(0, dtype=np.int64), 1.0
    if n == len(lengths):
        return lengths, 1.0
    if n < len(lengths):
        return rng.choice(lengths, size=n, replace=False), 1.0
    drawn = min(n, SIM_TEXTS)
    return rng.choice(lengths, size=drawn, replace=True), n / drawn


def _load(widths: np.ndarray, sizes: np.ndarray, scale: float) -> Load:
    return Load(
        batches=len(widths) * scale,
        rows=float(sizes.sum()) * scale,
        tokens=float((sizes * widths).sum()) * scale,
        square=float((sizes * widths.astype(np.float64) ** 2).sum()) * scale,
    )


def train_load(rows: np.ndarray, batch_size: int, rng: np.random.Generator, scale: float = 1.0) -> Load:
    """An epoch's batches as length_grouped_batches forms them: shuffled, sorted by length within chunks of
    GROUP_FACTOR batches, each padded to its longest row."""
    rows = rng.permutation(np.asarray(rows, dtype=np.int64))
    chunk = batch_size * GROUP_FACTOR
    widths, sizes = [], []
    for i in range(0, len(rows), chunk):
        part = np.sort(rows[i : i + chunk])[::-1]
        widths.append(part[::batch_size])  # sorted longest first: each batch's first row is its longest
        sizes.append(np.minimum(batch_size, len(part) - np.arange(0, len(part), batch_size)))
    if not widths:
        return Load(0.0, 0.0, 0.0, 0.0)
    w = np.concatenate(widths)
    return _load(-(-np.maximum(w, 1) // PAD_MULTIPLE) * PAD_MULTIPLE, np.concatenate(sizes), scale)


def eval_load(rows: np.ndarray, batch_size: int, scale: float = 1.0) -> Load:
    """An evaluation's batches as eval_batches forms them: the whole split sorted by length."""
    part = np.sort(np.asarray(rows, dtype=np.int64))[::-1]
    if not len(part):
        return Load(0.0, 0.0, 0.0, 0.0)
    w = part[::batch_size]
    sizes = np.minimum(batch_size, len(part) - np.arange(0, len(part), batch_size))
    return _load(-(-np.maximum(w, 1) // PAD_MULTIPLE) * PAD_MULTIPLE, sizes, scale)


@dataclass(frozen=True)
class Loads:
    """The three splits of a run, as rows and batches."""

    train: Load
    validation: Load
    test: Load


def loads(data: DataShape, cfg: RunConfig, seed: int = 0) -> Loads:
    """Train (one epoch, at the batch size), validation and test (at twice it, as evaluate runs) for a config."""
    t, rng = cfg.train, np.random.default_rng(seed)
    sample = np.asarray(data.lengths, dtype=np.int64)

    def split(n: int) -> tuple[np.ndarray, float]:
        texts, scale = _texts(sample, n, rng)
        return row_lengths(texts, t.max_length, t.long_text, data.specials), scale

    train_rows, train_scale = split(data.train_texts)
    val_rows, val_scale = split(data.validation_texts)
    test_rows, test_scale = split(data.test_texts)
    return Loads(
        train=train_load(train_rows, t.batch_size, rng, train_scale),
        validation=eval_load(val_rows, 2 * t.batch_size, val_scale),
        test=eval_load(test_rows, 2 * t.batch_size, test_scale),
    )


# ---------------------------------------------------------------------------------------------------- the costs
@dataclass(frozen=True)
class _Phase:
    epochs: float
    depth: int
    steps: int


def _phases(cfg: RunConfig, num_layers: int, steps_per_epoch: int) -> list[_Phase]:
    """The schedule's phases and their steps, as build_schedule and TrainingCore plan them (max_steps cuts the later
    phases first)."""
    t, depth = cfg.train, min(cfg.model.freeze_depth, num_layers)
    planned = [(t.head_epochs, num_layers), (t.epochs, depth)] if t.schedule == "two-phase" else [(t.epochs, depth)]
    out, left = [], t.max_steps or None
    for epochs, d in planned:
        steps = max(1, math.ceil(steps_per_epoch * epochs))
        if left is not None:
            steps = min(steps, left)
            left -= steps
        out.append(_Phase(epochs, d, steps))
    return out


def _evals_in(first: int, last: int, every: int, total: int) -> int:
    """Evaluations at steps first+1 … last of a phase of `total` steps: every `every` steps, and at its last step."""
    n = last // every - first // every
    return n + (1 if first < total <= last and total % every else 0)


@dataclass(frozen=True)
class _Epoch:
    phase: int
    seconds: float
    fraction: float  # of a whole epoch (the last one of a phase may be cut)
    evals: int


def _timeline(cfg: RunConfig, model: ModelShape, speeds: Speeds, loads_: Loads) -> tuple[list[_Epoch], int, float]:
    """Every epoch of every phase with its seconds (evaluations and saves included); the planned steps; one
    evaluation's seconds (the cap's last one)."""
    t, n = cfg.train, model.num_layers
    micro = max(1, math.ceil(loads_.train.batches))
    steps_per_epoch = max(1, math.ceil(micro / t.grad_accum))
    eval_every = max(1, steps_per_epoch // t.evals_per_epoch)
    g_train, g_val = loads_.train.gflop(model), loads_.validation.gflop(model)
    phases = _phases(cfg, n, steps_per_epoch)
    out: list[_Epoch] = []
    for index, phase in enumerate(phases):
        cache = t.frozen_cache and phase.depth > 0
        optimizer = speeds.optimizer_s * model.trainable(phase.depth) / max(1, model.total_params)
        done, epoch = 0, 0
        while done < phase.steps:
            steps = min(steps_per_epoch, phase.steps - done)
            fraction = steps / steps_per_epoch
            cached = cache and epoch > 0  # the first pass fills the cache (frozen layers run forward), later ones skip
            compute = speeds.train_s_per_gflop * (n - phase.depth) * g_train
            compute += 0.0 if cached else speeds.eval_s_per_gflop * phase.depth * g_train
            seconds = fraction * (micro * speeds.fixed_s(phase.depth) + compute) + steps * optimizer
            evals = _evals_in(done, done + steps, eval_every, phase.steps)
            if evals:  # validation is cached too, from the phase's second evaluation on
                per_eval = speeds.eval_s_per_gflop * (n - phase.depth if cache else n) * g_val + speeds.save_s
                first = speeds.eval_s_per_gflop * n * g_val + speeds.save_s
                seconds += (first + (evals - 1) * per_eval) if done == 0 else evals * per_eval
            out.append(_Epoch(index, seconds, fraction, evals))
            done, epoch = done + steps, epoch + 1
    one_eval = speeds.eval_s_per_gflop * n * g_val + speeds.save_s
    return out, sum(p.steps for p in phases), one_eval


def _reached(epochs: list[_Epoch], last_phase: int, seconds: float) -> float:
    """Epochs of the last phase trained when `seconds` of the loop have passed."""
    clock, reached = 0.0, 0.0
    for e in epochs:
        if clock + e.seconds > seconds:
            if e.phase == last_phase:
                reached += e.fraction * max(0.0, seconds - clock) / e.seconds
            return reached
        clock += e.seconds
        reached += e.fraction if e.phase == last_phase else 0.0
    return reached


def estimate(data: DataShape, model: ModelShape, speeds: Speeds, cfg: RunConfig, multi_label: bool = False) -> Estimate:
    """The run's time: each epoch's batches costed at the measured speeds, evaluations, saves and resume snapshots
    included; then the time limit (max_minutes), which ends training at the first step after it (and one last
    evaluation); setup before, the test after."""
    t = cfg.train
    loads_ = loads(data, cfg)
    epochs, steps, one_eval = _timeline(cfg, model, speeds, loads_)
    last_phase = epochs[-1].phase if epochs else 0
    loop = sum(e.seconds for e in epochs)
    cap = 60.0 * t.max_minutes
    # A resume snapshot at an evaluation when RESUME_EVERY_S have passed since the last one (none after the last step).
    evals = sum(e.evals for e in epochs)
    snapshots = max(0, min(evals - 1, int(min(loop, cap or loop) // RESUME_EVERY_S)))
    loop += SNAPSHOT_SAVES * speeds.save_s * snapshots
    train = min(loop, cap + one_eval) if cap else loop
    main = [e for e in epochs if e.phase == last_phase]
    head = sum(e.seconds for e in epochs if e.phase != last_phase)
    texts = data.train_texts + data.validation_texts + data.test_texts
    setup = speeds.load_s + speeds.tokenize_s_per_text * texts
    n = model.num_layers
    test = speeds.load_s + speeds.eval_s_per_gflop * n * loads_.test.gflop(model)
    if multi_label and t.tune_threshold:  # the best model scores validation again to pick the threshold
        test += speeds.eval_s_per_gflop * n * loads_.validation.gflop(model)
    planned = sum(e.fraction for e in main)
    return Estimate(
        epoch_s=main[0].seconds / main[0].fraction if main else 0.0,
        later_epoch_s=(main[1].seconds / main[1].fraction) if len(main) > 1 else (main[0].seconds if main else 0.0),
        head_phase_s=head,
        train_s=train,
        uncapped_train_s=loop,
        setup_s=setup,
        test_s=test,
        total_s=setup + train + test,
        epochs=planned,
        epochs_reached=_reached(epochs, last_phase, cap) if cap and loop > cap else planned,
        steps=steps,
        cap_s=cap,
        cached=t.frozen_cache and cfg.model.freeze_depth > 0,
        speeds=speeds,
    )


# ---------------------------------------------------------------------------------------------------- the words
def duration(seconds: float) -> str:
    """Seconds in the words a person reads at a glance: 40 s, 2.5 min, 25 min, 2 h 10 min."""
    s = max(0.0, seconds)
    if s < 59.5:
        return f"{max(1, round(s))} s"
    if s < 600:
        return f"{round(s / 60, 1):g} min"
    if s < 5400:
        return f"{round(s / 60)} min"
    hours, minutes = divmod(round(s / 60), 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def describe(est: Estimate, where: str, basis: str) -> str:
    """One line: per epoch and for the run, where, and what it rests on ("about 3 min per epoch, 7 min for the run on
    this CPU (timed 5 steps just now)")."""
    if est.cached and est.epochs > 1 and abs(est.later_epoch_s - est.epoch_s) > 0.1 * est.epoch_s:
        epoch = f"{duration(est.epoch_s)} for the first epoch, then {duration(est.later_epoch_s)} each"
    else:
        epoch = f"{duration(est.epoch_s)} per epoch"
    head = f"{duration(est.head_phase_s)} for the head phase, then " if est.head_phase_s else ""
    run = f"{duration(est.total_s)} for the run"
    return f"About {head}{epoch}, {run} {where} ({basis})."


def warnings(est: Estimate) -> list[str]:
    """What the time limit will do to the run, when it ends it early."""
    if not est.capped:
        return []
    limit = duration(est.cap_s)
    if est.cap_before_epoch:
        seen = max(0.0, min(1.0, est.epochs_reached))
        head = " with the head phase" if est.head_phase_s else ""
        return [
            f"The time limit ({limit}) ends the run before one epoch ({duration(est.head_phase_s + est.epoch_s)}{head}): "
            f"the model sees about {seen:.0%} of the training texts once. Raise the limit, or lower the max length or "
            "the training examples."
        ]
    return [
        f"The time limit ({limit}) ends training after about {est.epochs_reached:.1f} of the {est.epochs:g} epochs "
        "set (the learning-rate schedule is planned for the steps that fit)."
    ]
