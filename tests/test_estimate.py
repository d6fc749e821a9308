"""The time estimate's arithmetic (ftui/estimate.py) against the batching and the loop it models, the kept
calibrations (ftui/calibrate.py), and the words the page shows."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from ftui import calibrate
from ftui.batching import eval_batches, length_grouped_batches, padded_width, tokenize_split
from ftui.config import ModelConfig, RunConfig, TrainConfig
from ftui.estimate import (
    DataShape,
    Load,
    ModelShape,
    Speeds,
    _evals_in,
    describe,
    duration,
    estimate,
    eval_load,
    row_lengths,
    train_load,
    warnings,
)

MINILM = ModelShape(num_layers=6, hidden=384, layer_params=1_774_464, total_params=22_713_986, top_params=148_610)


def speeds(**kw: float) -> Speeds:
    """Speeds with every cost 0 unless given: each test switches on the cost it checks."""
    base = {"step_s": 0.0, "train_s_per_gflop": 0.0, "eval_s_per_gflop": 0.0, "optimizer_s": 0.0, "save_s": 0.0,
            "load_s": 0.0, "tokenize_s_per_text": 0.0}  # fmt: skip
    return Speeds(**{**base, **kw}, steps=5, width=32, batch_size=16, device="cpu", measured_at=0.0)


def data(n_train: int = 640, n_val: int = 64, n_test: int = 64, length: int = 20) -> DataShape:
    return DataShape(tuple([length] * 200), n_train, n_val, n_test)


def run(**train: object) -> RunConfig:
    depth = int(train.pop("freeze_depth", 0))  # type: ignore[call-overload]
    return RunConfig(model=ModelConfig(freeze_depth=depth), train=TrainConfig(**train))  # type: ignore[arg-type]


# ------------------------------------------------------------------------------- the rows and batches, as ftui makes them
@pytest.fixture(scope="module")
def tokenizer():
    from ftui.modeling import load_tokenizer

    return load_tokenizer(ModelConfig())


@pytest.mark.parametrize("mode", ["truncate", "head_tail", "chunks"])
def test_row_lengths_are_the_rows_tokenize_split_makes(tokenizer, mode: str) -> None:
    import datasets

    rng = np.random.default_rng(0)
    texts = [" ".join(f"word{i}" for i in range(int(n))) for n in rng.integers(1, 120, size=60)]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]  # the Data tab's measure
    ds = datasets.Dataset.from_dict({"text": texts, "label": [0] * len(texts)})
    made = tokenize_split(ds, tokenizer, 32, long_text=mode)
    assert sorted(row_lengths(np.array(lengths), 32, mode).tolist()) == sorted(made.lengths.tolist())
    if mode == "chunks":
        assert len(made) > len(texts)  # long texts did make several windows: the check above covered them


def test_one_chunk_of_batches_is_padded_exactly_as_length_grouped_batches() -> None:
    """Fewer rows than one sorting chunk (GROUP_FACTOR batches): the batches are the same whatever the shuffle."""
    lengths = np.random.default_rng(1).integers(3, 90, size=500)
    real = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(0))
    load = train_load(lengths, 16, np.random.default_rng(5))
    assert load.batches == len(real)
    assert load.tokens == sum(len(b) * padded_width(lengths[b]) for b in real)
    assert load.square == sum(len(b) * padded_width(lengths[b]) ** 2 for b in real)


def test_many_chunks_pad_about_as_much_as_length_grouped_batches() -> None:
    lengths = np.random.default_rng(2).integers(3, 300, size=20_000)
    real = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(0))
    tokens = sum(len(b) * padded_width(lengths[b]) for b in real)
    load = train_load(lengths, 16, np.random.default_rng(0))
    assert load.batches == len(real)
    assert abs(load.tokens - tokens) / tokens < 0.01  # the shuffles differ, the padding they leave hardly does
    assert load.tokens > lengths.sum() * 1.01  # and it is there: batches pad to their longest row


def test_evaluation_batches_are_padded_exactly_as_eval_batches() -> None:
    lengths = np.random.default_rng(3).integers(3, 200, size=777)
    real = eval_batches(lengths, 32)
    load = eval_load(lengths, 32)
    assert load.batches == len(real)
    assert load.tokens == sum(len(b) * padded_width(lengths[b]) for b in real)


@pytest.mark.parametrize(("total", "every"), [(16, 4), (17, 4), (10, 3), (5, 7), (1, 1), (40, 10)])
def test_evaluations_counted_as_the_loop_makes_them(total: int, every: int) -> None:
    """The loop evaluates at every `every`-th step of a phase and at its last step; any split into epochs adds up."""
    loop = [s for s in range(1, total + 1) if s % every == 0 or s == total]
    per_epoch = 6
    counted = [_evals_in(a, min(a + per_epoch, total), every, total) for a in range(0, total, per_epoch)]
    assert sum(counted) == len(loop)
    assert _evals_in(0, total, every, total) == len(loop)


# ------------------------------------------------------------------------------------------------- the costs
def test_the_optimizer_costs_once_per_step_for_the_trainable_share() -> None:
    cfg = run(batch_size=16, epochs=3)  # 640 texts: 40 steps an epoch
    est = estimate(data(), MINILM, speeds(optimizer_s=0.5), cfg)
    assert est.steps == 120
    assert est.train_s == pytest.approx(120 * 0.5)
    frozen = estimate(data(), MINILM, speeds(optimizer_s=0.5), run(batch_size=16, epochs=3, freeze_depth=3))
    assert frozen.train_s == pytest.approx(120 * 0.5 * MINILM.trainable(3) / MINILM.total_params)


def test_a_frozen_embedding_has_no_gradient_to_build_each_step() -> None:
    s = speeds(step_s=0.3, frozen_step_s=0.1)
    assert estimate(data(), MINILM, s, run(epochs=1)).train_s == pytest.approx(40 * 0.3)
    assert estimate(data(), MINILM, s, run(epochs=1, freeze_depth=2)).train_s == pytest.approx(40 * 0.1)
    assert estimate(data(), MINILM, speeds(step_s=0.3), run(epochs=1, freeze_depth=2)).train_s == pytest.approx(12.0)


def test_grad_accum_and_max_steps_count_optimizer_steps() -> None:
    est = estimate(data(), MINILM, speeds(optimizer_s=1.0, step_s=0.1), run(batch_size=16, epochs=2, grad_accum=4))
    assert est.steps == 20  # 40 micro-batches an epoch, 10 steps
    assert est.train_s == pytest.approx(20 * 1.0 + 80 * 0.1)
    capped = estimate(data(), MINILM, speeds(optimizer_s=1.0), run(batch_size=16, epochs=2, max_steps=7))
    assert capped.steps == 7 and capped.train_s == pytest.approx(7.0)


def test_compute_follows_the_padded_tokens_and_attention() -> None:
    """Twice the tokens per text costs more than twice: attention grows with the width."""
    short = estimate(data(length=22), MINILM, speeds(train_s_per_gflop=1.0), run(epochs=1, max_length=128))
    long = estimate(data(length=48), MINILM, speeds(train_s_per_gflop=1.0), run(epochs=1, max_length=128))
    assert 2.0 < long.train_s / short.train_s < 2.2
    gflop = 6 * 640 * 24 * (2 * MINILM.layer_params + 4 * MINILM.hidden * 24) / 1e9  # 22 tokens pad to 24
    assert short.train_s == pytest.approx(gflop)


def test_the_max_length_cuts_the_rows_but_chunks_read_all_of_them() -> None:
    cut = estimate(data(length=300), MINILM, speeds(train_s_per_gflop=1.0), run(epochs=1, max_length=64))
    chunks = estimate(data(length=300), MINILM, speeds(train_s_per_gflop=1.0), run(epochs=1, max_length=64,
                                                                                  long_text="chunks"))  # fmt: skip
    assert chunks.steps > 5 * cut.steps  # 300 tokens in windows of 64 overlapping by 16: 6 windows a text
    assert chunks.train_s > 5 * cut.train_s


def test_frozen_layers_cost_a_forward_pass_and_the_cache_drops_them_after_the_first_epoch() -> None:
    s, d = speeds(train_s_per_gflop=3.0, eval_s_per_gflop=1.0), data(n_val=0)  # no validation: training alone
    full = estimate(d, MINILM, s, run(epochs=3))
    cached = estimate(d, MINILM, s, run(epochs=3, freeze_depth=3))
    uncached = estimate(d, MINILM, s, run(epochs=3, freeze_depth=3, frozen_cache=False))
    g = full.epoch_s / (3.0 * 6)  # one layer's forward over an epoch (trained: 3 s per GFLOP, 6 layers)
    assert uncached.epoch_s == pytest.approx(uncached.later_epoch_s)
    assert cached.epoch_s == pytest.approx(uncached.epoch_s)  # the first epoch fills the cache
    assert cached.later_epoch_s == pytest.approx(cached.epoch_s - 3 * g, rel=0.02)  # ... later ones skip 3 layers
    assert cached.later_epoch_s < uncached.later_epoch_s < full.epoch_s


def test_evaluations_saves_setup_and_test_are_counted() -> None:
    cfg = run(batch_size=16, epochs=2, evals_per_epoch=4)  # 40 steps an epoch: an evaluation every 10
    est = estimate(data(), MINILM, speeds(save_s=0.5, load_s=2.0, tokenize_s_per_text=0.01), cfg)
    assert est.train_s == pytest.approx(8 * 0.5)  # every evaluation counted as saving (an upper bound)
    assert est.setup_s == pytest.approx(2.0 + 0.01 * (640 + 64 + 64))
    assert est.test_s == pytest.approx(2.0)
    assert est.total_s == pytest.approx(est.setup_s + est.train_s + est.test_s)


def test_resume_snapshots_every_thirty_seconds_are_counted() -> None:
    cfg = run(batch_size=16, epochs=1, evals_per_epoch=10)  # 10 evaluations over a 100 s epoch
    est = estimate(data(), MINILM, speeds(optimizer_s=2.5, save_s=0.1), cfg)
    assert est.train_s == pytest.approx(40 * 2.5 + 10 * 0.1 + 3 * 3 * 0.1)  # 3 snapshots, each about 3 saves


def test_two_phases_time_the_head_phase_apart() -> None:
    s, d = speeds(train_s_per_gflop=3.0, eval_s_per_gflop=1.0), data(n_val=0)
    one = estimate(d, MINILM, s, run(epochs=2))
    two = estimate(d, MINILM, s, run(epochs=2, schedule="two-phase", head_epochs=2.0))
    assert two.epoch_s == pytest.approx(one.epoch_s)
    assert two.total_s == pytest.approx(one.total_s + two.head_phase_s)
    # The first head epoch runs the frozen encoder forward (1 s per GFLOP against 3 trained); the second reads the cache.
    assert two.head_phase_s == pytest.approx(one.epoch_s / 3)


def test_a_time_limit_shorter_than_an_epoch_ends_the_run_and_says_so() -> None:
    cfg = run(batch_size=16, epochs=3, max_minutes=1.0)
    est = estimate(data(), MINILM, speeds(optimizer_s=3.0), cfg)  # 120 s an epoch
    assert est.capped and est.cap_before_epoch
    assert est.epochs_reached == pytest.approx(0.5)
    assert est.train_s == pytest.approx(60.0)
    (said,) = warnings(est)
    assert "ends the run before one epoch (2 min)" in said and "about 50%" in said


def test_a_time_limit_after_some_epochs_says_how_many() -> None:
    est = estimate(data(), MINILM, speeds(optimizer_s=1.0), run(batch_size=16, epochs=3, max_minutes=1.5))
    assert est.capped and not est.cap_before_epoch
    assert est.epochs_reached == pytest.approx(90 / 40)
    (said,) = warnings(est)
    assert "after about 2.2 of the 3 epochs" in said


def test_no_warning_when_the_limit_leaves_room() -> None:
    est = estimate(data(), MINILM, speeds(optimizer_s=1.0), run(batch_size=16, epochs=1, max_minutes=5))
    assert not est.capped and warnings(est) == []


# ------------------------------------------------------------------------------------------------- the words
@pytest.mark.parametrize(
    ("seconds", "said"),
    [(0.2, "1 s"), (42, "42 s"), (90, "1.5 min"), (180, "3 min"), (1500, "25 min"), (7800, "2 h 10 min"), (7200, "2 h")],
)
def test_durations_read_at_a_glance(seconds: float, said: str) -> None:
    assert duration(seconds) == said


def test_the_line_says_per_epoch_for_the_run_where_and_on_what() -> None:
    est = estimate(data(), MINILM, speeds(optimizer_s=4.5), run(batch_size=16, epochs=2))
    assert describe(est, "on this CPU", "timed 5 steps just now") == (
        "About 3 min per epoch, 6 min for the run on this CPU (timed 5 steps just now)."
    )
    s = speeds(train_s_per_gflop=30.0, eval_s_per_gflop=10.0)
    cached = estimate(data(), MINILM, s, run(epochs=3, freeze_depth=4))
    assert "min for the first epoch, then " in describe(cached, "on this CPU", "x")


# --------------------------------------------------------------------------------------------- kept calibrations
def test_measurements_are_kept_in_the_runs_folder_for_the_next_process(tmp_path) -> None:
    key = calibrate.speeds_key(ModelConfig(), "cpu", "auto", 128, 16)
    first = calibrate.SpeedBook(tmp_path)
    assert first.get(key) is None
    first.put(key, speeds(optimizer_s=0.25))
    again = calibrate.SpeedBook(tmp_path)  # a restart: memory is empty, the file is read
    assert again.get(key) == speeds(optimizer_s=0.25)
    assert again.get(calibrate.speeds_key(ModelConfig(), "cpu", "auto", 256, 16)) is None  # another max length


def test_a_damaged_calibration_file_is_measured_again_not_fatal(tmp_path) -> None:
    (tmp_path / calibrate.FILE).write_text("{not json")
    book = calibrate.SpeedBook(tmp_path)
    key = calibrate.speeds_key(ModelConfig(), "cpu", "auto", 128, 16)
    assert book.get(key) is None
    book.put(key, speeds(save_s=1.0))
    assert json.loads((tmp_path / calibrate.FILE).read_text())[key]["save_s"] == 1.0


def test_the_key_names_the_machine_checkpoint_device_length_and_batch() -> None:
    parts = json.loads(calibrate.speeds_key(ModelConfig(source="hub", checkpoint="a/b"), "cuda", "bf16", 256, 64))
    assert parts[0] == calibrate.machine()
    assert parts[1:3] == ["hub", "a/b"] and parts[-4:] == ["cuda", "bf16", 256, 64]


def test_measure_times_a_tiny_model(tiny_bert_dir, tmp_path) -> None:
    from ftui.modeling import load_tokenizer
    from ftui.tasks import Task

    cfg = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    shape = ModelShape(num_layers=2, hidden=32, layer_params=12_000, total_params=1_000_000, top_params=1_100)
    got = calibrate.measure(cfg, ["a", "b"], Task.SINGLE, load_tokenizer(cfg), ["a text"] * 20, shape, "cpu", "auto",
                            8, 24, scratch=tmp_path)  # fmt: skip
    assert 2 * calibrate.MIN_STEPS <= got.steps <= 2 * calibrate.MAX_STEPS  # at two widths
    one_batch = shape.num_layers * Load(1, 8, 8 * 24, 8 * 24**2).gflop(shape)
    assert got.step_s + got.train_s_per_gflop * one_batch > 0  # a tiny model's step may be all fixed cost (no slope)
    assert got.train_s_per_gflop >= 0 and got.eval_s_per_gflop > 0 and got.optimizer_s > 0
    assert 0 <= got.step_s and got.save_s > 0 and got.load_s > 0 and got.tokenize_s_per_text > 0
    assert got.frozen_step_s is not None and 0 <= got.frozen_step_s <= got.step_s  # timed at depth 1 as well
    assert list(tmp_path.iterdir()) == []  # the timed save left nothing behind
    assert math.isfinite(estimate(data(), shape, got, replace(run(), model=cfg)).total_s)


@pytest.mark.parametrize(
    ("t1", "g1", "t2", "g2", "fixed", "per"),
    [
        (3.0, 2.0, 2.0, 1.0, 1.0, 1.0),  # a line through both points
        (1.0, 2.0, 1.2, 1.0, 1.1, 0.0),  # slower at the narrower width: a step of fixed cost (a tiny model)
        (2.0, 2.0, 0.5, 1.0, 0.0, 0.9),  # the line would cross below zero: all compute, through the origin
    ],
)
def test_two_timed_widths_split_a_step_into_fixed_cost_and_compute(t1, g1, t2, g2, fixed, per) -> None:
    assert calibrate.fit_step(t1, g1, t2, g2) == pytest.approx((fixed, per))


def test_calibration_times_the_mean_padded_width() -> None:
    lengths = np.array([10] * 90 + [30] * 10)  # one batch pads to 32 (the ten long texts), the others to 16
    load = train_load(lengths, 16, np.random.default_rng(0))
    assert load.tokens / load.rows == pytest.approx((16 * 32 + 84 * 16) / 100)  # 18.56 tokens a row
    assert load.width == 16  # the nearest multiple of 8, not the next one up (24 would time a third too much)
