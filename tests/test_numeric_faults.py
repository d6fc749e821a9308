"""Non-finite numbers never pass silently: huge regression targets refused at load, a NaN loss fails the run, and a
NaN score is never the best checkpoint (issue 22, case 3; best_eval_of by the label shape's own rule)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.data import load_data
from ftui.errors import DataError, FtuiError
from ftui.label_shapes import TARGET_LIMIT
from ftui.runs import RunStatus, best_eval_of
from ftui.tasks import Task, better

NAN = float("nan")


def test_a_nan_score_is_never_better_and_a_finite_one_replaces_a_nan_best():
    good = {"accuracy": 0.6, "loss": 0.7}
    assert not better(Task.SINGLE, {"accuracy": NAN, "loss": 0.5}, None)
    assert not better(Task.SINGLE, {"accuracy": 0.9, "loss": NAN}, good)
    assert better(Task.SINGLE, good, {"accuracy": NAN, "loss": NAN})
    assert not better(Task.REGRESSION, {"rmse": NAN, "loss": NAN}, {"rmse": 3.0, "loss": 9.0})
    assert better(Task.REGRESSION, {"rmse": 2.0, "loss": 4.0}, {"rmse": 3.0, "loss": 9.0})


def _eval(step: int, loss: float, **metrics: float) -> dict:
    return {"type": "eval", "step": step, "eval_loss": loss, **{f"eval_{k}": v for k, v in metrics.items()}}


def test_best_eval_of_ranks_each_shape_by_its_own_metric_and_skips_nan():
    regression = [_eval(1, 9.0, rmse=3.0, mae=2.0), _eval(2, 1.0, rmse=1.0, mae=0.8), _eval(3, NAN, rmse=NAN)]
    assert best_eval_of(regression)["step"] == 2  # the lowest RMSE, not a missing accuracy
    assert best_eval_of(regression)["rmse"] == 1.0
    multi = [_eval(1, 0.3, accuracy=0.5, micro_f1=0.4), _eval(2, 0.4, accuracy=0.4, micro_f1=0.7)]
    assert best_eval_of(multi)["step"] == 2  # micro-F1 decides, though subset accuracy fell
    single = [_eval(1, NAN, accuracy=NAN, macro_f1=NAN), _eval(2, 0.6, accuracy=0.7, macro_f1=0.6)]
    assert best_eval_of(single) == {"loss": 0.6, "accuracy": 0.7, "macro_f1": 0.6, "step": 2}
    mlm = [{"type": "eval", "step": s, "eval_loss": v, "eval_perplexity": math.exp(v)} for s, v in ((1, 4.0), (2, 3.0))]
    assert best_eval_of(mlm)["step"] == 2
    assert best_eval_of([]) is None


def test_targets_too_large_for_float32_are_refused_with_their_rows(tmp_path):
    texts = [f"review {i} is {'good' if i % 2 else 'bad'}" for i in range(40)]
    scores = [float(i % 5) for i in range(40)]
    scores[6], scores[21] = 1e308, -3e20  # finite in float64, beyond what float32 training survives
    path = tmp_path / "scores.csv"
    pd.DataFrame({"text": texts, "score": scores}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row\(s\) 7, 22 \(counting data rows from 1\)") as err:
        load_data(DataConfig(source="local", dataset_id=str(path), label_column="score", task="regression"))
    assert "rescale" in err.value.fix
    scores[6], scores[21] = TARGET_LIMIT / 10, 1.0  # large but safe: loads
    pd.DataFrame({"text": texts, "score": scores}).to_csv(path, index=False)
    assert load_data(DataConfig(source="local", dataset_id=str(path), label_column="score", task="regression"))


def _cfg(tiny_bert_dir) -> RunConfig:
    model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
    return RunConfig(DataConfig(), model, TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=32))


def test_a_nan_training_loss_fails_the_run_naming_the_step(engine, tiny_bert_dir, monkeypatch):
    from ftui import finetune as training

    real, calls = training.ClassificationObjective.train_loss, [0]

    def poisoned(self, *args, **kwargs):  # the third batch's loss is NaN, as an overflow in training would make it
        calls[0] += 1
        out = real(self, *args, **kwargs)
        return out * NAN if calls[0] == 3 else out

    monkeypatch.setattr(training.ClassificationObjective, "train_loss", poisoned)
    run = engine.start_run(_cfg(tiny_bert_dir))
    assert run.done.wait(120) and engine.join(30)
    assert run.status == RunStatus.FAILED, run.status
    assert "Training diverged: the training loss became nan at step 3" in run.error
    assert "Lower the learning rate" in run.error
    assert not any(isinstance(v, float) and math.isnan(v) for v in run.result.values())


def test_a_nan_validation_score_fails_the_run_and_is_never_kept_as_best(engine, tiny_bert_dir, monkeypatch):
    from ftui import finetune as training

    real = training.ClassificationObjective.evaluate

    def nan_eval(self, *args, **kwargs):
        return {**real(self, *args, **kwargs), "loss": NAN, "accuracy": NAN}

    monkeypatch.setattr(training.ClassificationObjective, "evaluate", nan_eval)
    run = engine.start_run(_cfg(tiny_bert_dir))
    assert run.done.wait(120) and engine.join(30)
    assert run.status == RunStatus.FAILED and "validation loss became nan" in run.error, run.error
    assert not (run.out_dir / training.MODEL_DIR).exists()  # no NaN checkpoint saved as the best
    with pytest.raises(FtuiError, match="has no saved model"):  # Predict never answers "nan"
        engine.predict("I loved it", f"run:{run.run_id}")
