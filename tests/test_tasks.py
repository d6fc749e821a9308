"""Label shapes: losses by hand (class weights, per-label positive weights), scores, the best-checkpoint rule,
threshold tuning, task.json, and the words a prediction reads as."""

import numpy as np
import pytest
import torch

from ftui import tasks
from ftui.tasks import Task, TaskInfo, class_weight_vector


def test_multi_label_loss_with_positive_weights_by_hand():
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w = torch.tensor([1.0, 3.0])

    def bce(z, t, pw):  # -[pw * t * log s(z) + (1 - t) * log(1 - s(z))]
        s = 1 / (1 + np.exp(-z))
        return -(pw * t * np.log(s) + (1 - t) * np.log(1 - s))

    by_hand = np.mean([np.mean([bce(2.0, 1, 1), bce(-1.0, 0, 3)]), np.mean([bce(0.5, 0, 1), bce(0.0, 1, 3)])])
    assert float(tasks.loss(Task.MULTI, logits, y, w)) == pytest.approx(by_hand, rel=1e-6)
    summed = float(tasks.loss(Task.MULTI, logits, y, reduction="sum"))
    assert summed == pytest.approx(2 * float(tasks.loss(Task.MULTI, logits, y)), rel=1e-6)  # 'sum' counts texts


def test_regression_loss_and_scores():
    logits = torch.tensor([[1.5], [-0.5]])
    y = torch.tensor([1.0, 0.5])
    assert float(tasks.loss(Task.REGRESSION, logits, y)) == pytest.approx(((0.5**2) + 1.0) / 2)
    assert tasks.scores(Task.REGRESSION, logits).tolist() == [[1.5], [-0.5]]
    assert tasks.scores(Task.MULTI, torch.zeros(1, 3)).tolist() == [[0.5, 0.5, 0.5]]  # independent, not summing to 1
    assert float(tasks.scores(Task.SINGLE, torch.zeros(1, 4)).sum()) == pytest.approx(1.0)


def test_balanced_weights_per_shape():
    single = class_weight_vector("balanced", np.array([0, 0, 0, 1]), ["a", "b"])
    assert single.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])
    y = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], dtype=np.float32)
    multi = class_weight_vector("balanced", y, ["a", "b"], Task.MULTI)
    assert multi.tolist() == pytest.approx([1 / 3, 3.0])  # negatives / positives per label
    assert class_weight_vector("2, 5", y, ["a", "b"], Task.MULTI).tolist() == [2.0, 5.0]
    with pytest.raises(Exception, match="regression"):
        class_weight_vector("balanced", np.array([0.5, 1.5]), ["y"], Task.REGRESSION)


def test_better_uses_the_primary_metric_then_loss():
    assert tasks.better(Task.REGRESSION, {"rmse": 0.4, "loss": 0.2}, {"rmse": 0.5, "loss": 0.1})
    assert not tasks.better(Task.REGRESSION, {"rmse": 0.6, "loss": 0.01}, {"rmse": 0.5, "loss": 0.1})
    assert tasks.better(Task.MULTI, {"micro_f1": 0.7, "loss": 0.3}, {"micro_f1": 0.7, "loss": 0.4})
    assert tasks.better(Task.SINGLE, {"accuracy": 0.1, "loss": 9.0}, None)


def test_threshold_tuning_finds_the_separating_threshold():
    rng = np.random.default_rng(0)
    y = rng.random((400, 3)) < 0.4
    probs = np.where(y, rng.uniform(0.25, 0.45, y.shape), rng.uniform(0.0, 0.2, y.shape))  # a low-scoring model
    t, f1 = tasks.tune_threshold(probs, y.astype(np.float32))
    assert 0.2 <= t <= 0.25 and f1 == pytest.approx(1.0)
    flat, _ = tasks.tune_threshold(np.full((10, 2), 0.9), np.ones((10, 2)))
    assert flat == 0.5  # every threshold up to 0.9 scores the same: the default stays


def test_task_file_round_trip_and_words(tmp_path):
    assert tasks.read_task(tmp_path) == TaskInfo()  # a model saved before task.json is single-label
    info = TaskInfo(Task.MULTI, 0.35, True)
    tasks.save_task(tmp_path, info)
    assert tasks.read_task(tmp_path) == info
    assert tasks.predicted(info, {"plot": 0.9, "music": 0.2, "acting": 0.4}) == "plot, acting"
    assert tasks.predicted(info, {"plot": 0.1}) == "none"
    assert tasks.predicted(TaskInfo(Task.REGRESSION), {"score": 3.14159}) == "3.142"
    (tmp_path / tasks.TASK_FILE).write_text('{"task": "ranking"}')
    with pytest.raises(ValueError, match="not a task file"):
        tasks.read_task(tmp_path)
