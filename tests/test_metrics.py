"""ftui's one metrics implementation equals scikit-learn's and a hand computation."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from ftui import metrics


def test_hand_computed_example():
    preds = [0, 0, 1, 1, 2, 2]
    labels = [0, 1, 1, 1, 2, 0]
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp0 fn1 -> 0.8; class 2: tp1 fp1 fn0 -> 2/3
    assert metrics.accuracy(preds, labels) == pytest.approx(4 / 6)
    assert metrics.macro_f1(preds, labels) == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)


@pytest.mark.parametrize("seed", range(5))
def test_matches_sklearn_on_random_predictions(seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 6))
    labels = rng.integers(0, k, 200)
    preds = rng.integers(0, k - 1, 200)  # one class never predicted: zero-division path
    assert metrics.accuracy(preds, labels) == pytest.approx(accuracy_score(labels, preds))
    assert metrics.macro_f1(preds, labels) == pytest.approx(f1_score(labels, preds, average="macro", zero_division=0))


def test_compute_metrics_is_the_one_local_implementation():
    out = metrics.compute_metrics([1, 0, 1], [1, 1, 1])
    assert not hasattr(metrics, "backend")  # no second implementation fetched from the Hub
    assert out == {"accuracy": pytest.approx(2 / 3), "macro_f1": pytest.approx(f1_score([1, 1, 1], [1, 0, 1], average="macro"))}


@pytest.mark.parametrize("seed", range(3))
def test_per_class_and_confusion_match_sklearn(seed):
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, 300)
    preds = np.where(rng.random(300) < 0.7, labels, rng.integers(0, 3, 300))
    preds[preds == 2] = 1  # class 2 never predicted: precision undefined -> 0
    names = ["a", "b", "c"]
    assert (metrics.confusion(preds, labels, 3) == confusion_matrix(labels, preds, labels=[0, 1, 2])).all()
    p, r, f, s = precision_recall_fscore_support(labels, preds, labels=[0, 1, 2], zero_division=0)
    rows = metrics.per_class(preds, labels, names)
    assert [row["class"] for row in rows] == names
    assert [row["precision"] for row in rows] == pytest.approx(p)
    assert [row["recall"] for row in rows] == pytest.approx(r)
    assert [row["f1"] for row in rows] == pytest.approx(f)
    assert [row["support"] for row in rows] == s.tolist()


@pytest.mark.parametrize("seed", range(5))
def test_multilabel_metrics_match_sklearn(seed):
    from sklearn.metrics import precision_recall_fscore_support

    rng = np.random.default_rng(seed)
    k = int(rng.integers(2, 7))
    gold = rng.random((150, k)) < 0.3
    pred = rng.random((150, k)) < 0.35
    pred[:, 0] = False  # one label never predicted: the zero-division path
    got = metrics.multilabel_metrics(pred, gold)
    assert got["micro_f1"] == pytest.approx(f1_score(gold, pred, average="micro", zero_division=0))
    assert got["macro_f1"] == pytest.approx(f1_score(gold, pred, average="macro", zero_division=0))
    assert got["accuracy"] == pytest.approx(accuracy_score(gold, pred))  # subset accuracy
    p, r, f, s = precision_recall_fscore_support(gold, pred, zero_division=0)
    rows = metrics.per_label(pred, gold, [f"l{i}" for i in range(k)])
    assert [x["precision"] for x in rows] == pytest.approx(p)
    assert [x["recall"] for x in rows] == pytest.approx(r)
    assert [x["f1"] for x in rows] == pytest.approx(f)
    assert [x["support"] for x in rows] == s.tolist()


def test_regression_metrics_match_scipy_and_sklearn():
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error

    rng = np.random.default_rng(0)
    gold = rng.integers(0, 6, 300).astype(float)  # ties: Spearman must average ranks
    pred = gold + rng.normal(0, 1.5, 300)
    got = metrics.regression_metrics(pred, gold)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(gold, pred)))
    assert got["mae"] == pytest.approx(mean_absolute_error(gold, pred))
    assert got["pearson"] == pytest.approx(pearsonr(pred, gold)[0])
    assert got["spearman"] == pytest.approx(spearmanr(pred, gold)[0])
    assert metrics.regression_metrics(np.full(5, 2.0), np.arange(5.0))["pearson"] == 0.0  # constant: no correlation
