"""Statistics of ftui.significance against known values, its wording, and the pairing of two runs' test predictions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from ftui import significance as sig


def wilson_by_hand(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """statsmodels' proportion_confint(method='wilson') formula, written out."""
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return centre - half, centre + half


@pytest.mark.parametrize(("k", "n"), [(181, 200), (184, 200), (0, 10), (10, 10), (7, 13), (4500, 5000)])
def test_wilson_matches_the_formula(k: int, n: int) -> None:
    low, high = sig.wilson(k, n)
    exp_low, exp_high = wilson_by_hand(k, n)
    assert low == pytest.approx(max(0.0, exp_low), abs=1e-12) and high == pytest.approx(min(1.0, exp_high), abs=1e-12)


def test_wilson_known_values_of_the_issue() -> None:
    # 200 test reviews at 0.905 and 0.920 (issue 28): about +-4 points each, overlapping widely
    assert sig.wilson(181, 200) == pytest.approx((0.8564, 0.9383), abs=1e-4)
    assert sig.wilson(184, 200) == pytest.approx((0.8740, 0.9502), abs=1e-4)
    assert sig.Z == pytest.approx(1.959964, abs=1e-6)


@pytest.mark.parametrize(("b", "c"), [(3, 10), (10, 3), (0, 5), (7, 7), (1, 0), (40, 61), (250, 300)])
def test_mcnemar_exact_is_scipys_binomial_test(b: int, c: int) -> None:
    expected = binomtest(min(b, c), b + c, 0.5).pvalue
    assert sig.mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9)


def test_mcnemar_without_discordant_texts_is_one() -> None:
    assert sig.mcnemar_exact(0, 0) == 1.0


def test_paired_accuracy_counts_discordant_texts() -> None:
    a = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=bool)
    p = sig.paired_accuracy(a, b)
    assert (p.only_a, p.only_b, p.n) == (2, 1, 10)
    assert p.diff == pytest.approx(0.1) and p.a == pytest.approx(0.8) and p.b == pytest.approx(0.7)
    assert p.p == pytest.approx(binomtest(1, 3, 0.5).pvalue) and p.noise
    # paired Wald interval: se = sqrt(b + c - n d^2) / n
    se = math.sqrt(3 - 10 * 0.01) / 10
    assert (p.low, p.high) == pytest.approx((0.1 - sig.Z * se, 0.1 + sig.Z * se))


def test_a_large_paired_difference_is_not_noise() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(1000) < 0.9
    b = a.copy()
    b[np.flatnonzero(a)[:80]] = False  # b gets 80 of a's right answers wrong, nothing else differs
    p = sig.paired_accuracy(a, b)
    assert (p.only_a, p.only_b) == (80, 0) and p.p < 1e-20 and not p.noise and p.low > 0


def test_macro_f1_matches_scikit_learn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 4, 300), rng.integers(0, 3, 300)
    idx = rng.integers(0, 300, 300)
    score = sig.macro_f1_of(gold, pred)
    assert score(idx) == pytest.approx(f1_score(gold[idx], pred[idx], average="macro"))


def test_bootstrap_interval_brackets_the_value_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, gold, 1 - gold)
    iv = sig.bootstrap_interval(sig.macro_f1_of(gold, pred), 400, "macro-F1")
    assert iv.low < iv.value < iv.high and iv.method == "bootstrap" and iv.n == 400
    assert 0.03 < iv.half_width < 0.06  # about the binomial +-1.96 sqrt(.8 .2 / 400) = 0.039
    assert sig.bootstrap_interval(sig.macro_f1_of(gold, pred), 400, "macro-F1") == iv


def test_paired_bootstrap_of_a_model_against_itself_is_noise() -> None:
    rng = np.random.default_rng(0)
    gold, pred = rng.integers(0, 3, 200), rng.integers(0, 3, 200)
    f = sig.macro_f1_of(gold, pred)
    p = sig.paired_bootstrap(f, f, 200, "macro-F1")
    assert p.diff == 0 and p.p == 1.0 and p.noise and p.low == p.high == 0


def test_paired_bootstrap_p_of_a_clear_gain() -> None:
    rng = np.random.default_rng(0)
    gold = rng.integers(0, 2, 500)
    good = np.where(rng.random(500) < 0.95, gold, 1 - gold)
    bad = np.where(rng.random(500) < 0.6, gold, 1 - gold)
    p = sig.paired_bootstrap(sig.macro_f1_of(gold, good), sig.macro_f1_of(gold, bad), 500, "macro-F1")
    assert p.p == 0.0 and p.low > 0.25 and not p.noise
    assert "paired bootstrap p < 0.001" in sig.paired_text(p)  # not "p = 0": 1,000 resamples see no further


def test_needed_size_is_the_smallest_n_within_the_width() -> None:
    n = sig.needed_size(0.75, 0.05)
    assert sig.half_width_at(0.75, n) <= 0.05 + 0.002  # at a rounded count of right answers
    low, high = sig.wilson(0.75 * (n - 1), n - 1)
    assert (high - low) / 2 > 0.05
    assert n == 286  # 1.96^2 * .75 * .25 / .05^2 = 288 by the normal rule; Wilson's is a little narrower


def test_validation_flag_says_the_size_needed() -> None:
    text = sig.validation_flag(0.8, 50)
    low, high = wilson_by_hand(40, 50)
    assert f"±{100 * (high - low) / 2:.1f} points" == "±10.9 points"
    assert "50 texts" in text and "±10.9 points" in text and f"{sig.needed_size(0.8):,} validation texts" in text
    assert sig.validation_flag(0.9, 2000) == ""
    assert sig.validation_flag(None, 50) == "" and sig.validation_flag(0.8, None) == ""


def test_two_proportion_p_against_scipy() -> None:
    from scipy.stats import norm

    z = (0.92 - 0.905) / math.sqrt(0.9125 * 0.0875 * (2 / 200))
    assert sig.two_proportion_p(0.905, 200, 0.92, 200) == pytest.approx(2 * norm.sf(z))


def test_ties_with_best_use_validation_size() -> None:
    rows = [
        {"run_id": "a", "completed": True, "val_acc": 0.92, "val_size": 200},
        {"run_id": "b", "completed": True, "val_acc": 0.905, "val_size": 200},
        {"run_id": "c", "completed": True, "val_acc": 0.70, "val_size": 200},
        {"run_id": "d", "completed": False, "val_acc": 0.92, "val_size": 200},
        {"run_id": "e", "completed": True, "val_acc": 0.91, "val_size": None},
    ]
    assert sig.ties_with_best(rows, rows[0]) == {"a", "b"}
    assert sig.ties_with_best(rows, {**rows[0], "val_size": None}) == {"a"}


# --------------------------------------------------------------------------------------------- predictions
def frame(correct: list[bool], texts: list[str] | None = None) -> pd.DataFrame:
    texts = texts or [f"text {i}" for i in range(len(correct))]
    labels = ["pos" if i % 2 else "neg" for i in range(len(correct))]
    flip = {"pos": "neg", "neg": "pos"}
    return pd.DataFrame({
        "text": texts, "label": labels, "predicted": [lab if ok else flip[lab] for lab, ok in zip(labels, correct, strict=True)],
        "confidence": 0.9, "correct": correct,
    })  # fmt: skip


def test_compare_runs_pairs_the_same_texts_in_any_order() -> None:
    rng = np.random.default_rng(3)
    ca, cb = list(rng.random(200) < 0.905), list(rng.random(200) < 0.92)
    a, b = frame(ca), frame(cb)
    pairs = sig.compare_runs(a, b)
    shuffled = sig.compare_runs(a, b.sample(frac=1.0, random_state=0))
    assert pairs is not None and shuffled is not None
    assert [p.metric for p in pairs] == ["accuracy", "macro-F1"]
    assert pairs[0] == shuffled[0]  # McNemar counts do not depend on the order (the bootstrap's draws do)
    assert (pairs[1].a, pairs[1].b) == pytest.approx((shuffled[1].a, shuffled[1].b))
    from sklearn.metrics import f1_score  # each run's own macro-F1, not the labels' against themselves

    assert pairs[1].a == pytest.approx(f1_score(a["label"], a["predicted"], average="macro"))
    assert pairs[1].b == pytest.approx(f1_score(b["label"], b["predicted"], average="macro"))
    only_a = sum(x and not y for x, y in zip(ca, cb, strict=True))
    only_b = sum(y and not x for x, y in zip(ca, cb, strict=True))
    assert (pairs[0].only_a, pairs[0].only_b) == (only_a, only_b)
    assert pairs[0].p == pytest.approx(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def test_compare_runs_refuses_other_texts() -> None:
    a = frame([True] * 10)
    assert sig.compare_runs(a, frame([True] * 10, [f"other {i}" for i in range(10)])) is None
    assert sig.compare_runs(a, frame([True] * 9)) is None
    line = sig.paired_md("A", "B", None)
    assert "cannot be paired" in line


def test_test_intervals_of_a_predictions_frame() -> None:
    ivs = sig.test_intervals(frame([True] * 181 + [False] * 19))
    assert [iv.metric for iv in ivs] == ["accuracy", "macro-F1"]
    assert (ivs[0].low, ivs[0].high, ivs[0].n) == pytest.approx((*sig.wilson(181, 200), 200))
    assert sig.interval_text(ivs[0]) == "accuracy 0.905 (95% CI 0.856–0.938, Wilson, n = 200)"


def test_paired_wording() -> None:
    noise = sig.Paired("accuracy", 0.92, 0.905, -0.02, 0.05, 0.42, 200, "exact McNemar", 10, 7)
    real = sig.Paired("accuracy", 0.95, 0.80, 0.10, 0.20, 0.0001, 200, "exact McNemar", 32, 2)
    assert sig.paired_text(noise) == (
        "accuracy +1.5 pts: **within noise** (exact McNemar p = 0.42; 10 vs 7 texts only one of them gets right)"
    )
    assert sig.paired_text(real).startswith("accuracy +15.0 pts (95% CI +10.0 pts to +20.0 pts; exact McNemar p = 0.0001")
    line = sig.paired_md("**bold** [x](http://e.vil)", "b", [noise])
    assert "\\*\\*bold\\*\\*" in line and "\\[x\\]" in line and "on the same 200 test texts" in line


def test_table_cells() -> None:
    assert sig.wilson_cell(0.905, 200) == "0.856–0.938 (n=200)"
    assert sig.wilson_cell(None, 200) == "" and sig.wilson_cell(0.9, None) == ""


def test_baseline_verdict_says_noise_both_ways() -> None:
    from ftui.experiments import baseline_verdict

    data = {"data": {"source": "demo"}}
    base = {"run_id": "b", "name": "tf*idf", "config": {**data, "kind": "baseline"}, "result": {"test_accuracy": 0.905}}
    up = {"run_id": "u", "name": "up", "config": data, "result": {"test_accuracy": 0.92}}
    down = {"run_id": "d", "name": "down", "config": data, "result": {"test_accuracy": 0.89}}
    records = [base, up, down]

    def paired(p: float):
        return lambda run_id, base_id: [sig.Paired("accuracy", 0.0, 0.0, -0.01, 0.04, p, 200, "exact McNemar", 9, 6)]

    noisy_up = baseline_verdict(up, records, paired=paired(0.6))
    assert noisy_up.startswith("Within noise of the best baseline **tf\\*idf** (0.905 vs 0.920 on the same 200 test")
    noisy_down = baseline_verdict(down, records, markdown=False, paired=paired(0.6))
    assert noisy_down.startswith("⚠ This fine-tuned model (0.890) does not beat the baseline 'tf*idf' (0.905)")
    assert "within noise" in noisy_down and "**" not in noisy_down  # an event's plain text
    real = baseline_verdict(up, records, paired=paired(0.01))
    assert real.startswith("This fine-tuned model beats the best baseline") and "within noise" not in real
    assert "exact McNemar p = 0.01" in real
    assert baseline_verdict(up, records, paired=lambda a, b: None).startswith("This fine-tuned model beats")  # unpaired


def test_result_flag_reads_a_runs_result() -> None:
    assert sig.result_flag({"best_eval": {"accuracy": 0.8}, "val_size": 200}) == sig.validation_flag(0.8, 200) != ""
    assert sig.result_flag({"best_eval": {"accuracy": 0.8}}) == "" and sig.result_flag({}) == ""


# ------------------------------------------------------------------------------------------------- multi-label
def label_set_frame(probs: np.ndarray, gold: np.ndarray, threshold: float, names=("a", "b", "c")) -> pd.DataFrame:
    """A multi-label predictions file with ftui.predictions_file's columns (tests/test_baseline_shapes.py reads a real one)."""
    pred = probs >= threshold
    out = pd.DataFrame({"text": [f"t{i}" for i in range(len(gold))], "label": ["x"] * len(gold),
                        "predicted": ["y"] * len(gold), "confidence": 0.9, "correct": (pred == gold).all(1),
                        "threshold": threshold})  # fmt: skip
    for i, n in enumerate(names):
        out[f"p({n})"] = probs[:, i]
    for i, n in enumerate(names):
        out[f"y({n})"] = gold[:, i]
    return out


def test_micro_f1_of_any_resample_equals_scikit_learns() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    gold, pred = rng.random((120, 4)) < 0.3, rng.random((120, 4)) < 0.35
    score = sig.micro_f1_of(gold, pred)
    for idx in (np.arange(120), rng.integers(0, 120, 120), rng.integers(0, 120, 7)):
        assert score(idx) == pytest.approx(f1_score(gold[idx], pred[idx], average="micro", zero_division=0))


def test_multi_label_files_get_a_micro_f1_interval_and_paired_test_first() -> None:
    rng = np.random.default_rng(1)
    gold = rng.random((150, 3)) < 0.4
    good = np.where(gold, rng.uniform(0.5, 1.0, gold.shape), rng.uniform(0.0, 0.45, gold.shape))  # all right at 0.5
    noisy = np.clip(good + rng.normal(0, 0.3, gold.shape), 0, 1)
    a, b = label_set_frame(good, gold, 0.5), label_set_frame(noisy, gold, 0.3)
    ivs = sig.test_intervals(b)
    assert [iv.metric for iv in ivs] == ["micro-F1", "subset accuracy"] and ivs[0].method == "bootstrap"
    sets = sig.label_sets(b)
    assert sets is not None and (sets[1] == (noisy >= 0.3)).all()  # rebuilt at the file's own threshold
    assert ivs[0].low <= sig.micro_f1_of(*sets)(np.arange(150)) <= ivs[0].high
    pairs = sig.compare_runs(a, b)
    assert [p.metric for p in pairs] == ["micro-F1", "subset accuracy"] and pairs[0].a == 1.0 and not pairs[0].noise
    assert [p.metric for p in sig.compare_runs(a, b, accuracy_only=True)] == ["micro-F1"]
    old = b.drop(columns="threshold")  # a file written before the threshold column: subset accuracy only
    assert [iv.metric for iv in sig.test_intervals(old)] == ["subset accuracy"]
    assert [p.metric for p in sig.compare_runs(a, old)] == ["subset accuracy"]


def test_a_multi_label_result_keeps_its_micro_f1_interval_for_the_table() -> None:
    rng = np.random.default_rng(2)
    gold, pred = rng.random((200, 3)) < 0.4, rng.random((200, 3)) < 0.4
    result = {**sig.micro_f1_result(gold, pred), "test_size": 200}
    low, high = result[sig.MICRO_F1_CI]
    iv = sig.micro_f1_interval(gold, pred)
    assert (low, high) == (round(iv.low, 4), round(iv.high, 4)) and low < iv.value < high
    assert sig.interval_cell_of(result) == f"micro-F1 {low:.3f}–{high:.3f} (n=200)"
    assert sig.interval_cell_of({"test_accuracy": 0.9, "test_size": 200}) == ""


def test_the_data_tabs_flag_uses_the_same_rule_at_a_planned_accuracy() -> None:
    flag = sig.split_flag(32)
    assert flag.startswith("The validation split holds 32 texts") and f"About {sig.needed_size(0.8):,}" in flag
    assert sig.split_flag(sig.needed_size(0.8)) == "" and sig.split_flag(sig.needed_size(0.8) - 1) != ""
    assert sig.split_flag(0) == ""  # no validation split: nothing to say about its size
