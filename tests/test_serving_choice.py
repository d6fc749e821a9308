"""Predict answers with the best model on the data at hand (issue 23, point 1): ranked by validation score, never by
test and never by age; baselines are labelled as such."""

from __future__ import annotations

from dataclasses import replace

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.runs import RunStatus


def _done(engine, cfg: RunConfig):
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    return run


def test_a_newer_weaker_run_does_not_displace_the_best_one(engine, tiny_bert_dir):
    base = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
    strong = _done(engine, replace(base, kind="baseline", baseline="tfidf"))
    weak_cfg = replace(base, train=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-9, max_length=32, run_name="weak"))
    weak = _done(engine, weak_cfg)  # newer, and at chance: a learning rate of 1e-9 leaves the random head as it was
    assert weak.result["best_eval"]["accuracy"] < strong.result["best_eval"]["accuracy"]  # the case is real
    (label, key), *rest = engine.predict_choices()
    assert key == f"run:{strong.run_id}"
    assert "baseline: TF-IDF" in label and "best on this data" in label
    assert f"val acc {strong.result['best_eval']['accuracy']:.3f}" in label
    assert dict((k, v) for v, k in rest)[f"run:{weak.run_id}"].startswith("weak (fine-tuned, val acc ")
    assert engine.predict("I loved it") == engine.predict("I loved it", f"run:{strong.run_id}")  # what /predict serves


def test_runs_on_other_data_do_not_compete_with_the_data_at_hand(engine, tiny_bert_dir, csv_file):
    tfidf = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1),
                      kind="baseline", baseline="tfidf")  # fmt: skip
    demo = _done(engine, tfidf)
    other = _done(engine, replace(tfidf, data=DataConfig(source="local", dataset_id=str(csv_file))))
    keys = [k for _, k in engine.predict_choices()]
    assert keys[0] == f"run:{other.run_id}" and f"run:{demo.run_id}" in keys[1:]  # the newest run's data is at hand
