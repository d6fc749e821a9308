"""ONNX export: checked against PyTorch on the run's test set, served by ONNX Runtime, shipped in the zip; an exporter
failure or a disagreeing graph leaves the run untouched."""

import json
import zipfile

import pytest
from helpers import finished_tiny_run

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.errors import FtuiError
from ftui.onnx_export import ONNX_DIR, has_export
from ftui.runs import RunStatus


@pytest.fixture()
def finished(engine, tiny_bert_dir):
    return engine, finished_tiny_run(engine, tiny_bert_dir, "onnx-run")


def test_export_is_checked_served_and_shipped(finished):
    engine, run = finished
    key = f"run:{run.run_id}"
    with pytest.raises(FtuiError, match="no ONNX export"):
        engine.predict("good", key, "onnx")
    report = engine.export_onnx(run.run_id, int8=True)
    assert report.examples == len(engine.test_predictions(run.run_id))
    assert report.fp32_agreement == 1.0 and report.fp32_max_abs_diff < 1e-4
    assert report.torch_accuracy == pytest.approx(run.result["test_accuracy"], abs=1e-9)
    assert report.int8_agreement is not None and report.int8_agreement >= 0.9
    assert has_export(run.out_dir) and has_export(run.out_dir, int8=True)
    assert engine.onnx_report(run.run_id) == report

    texts = ["A warm, funny film.", "Dull and far too long, I left early.", "ok"]
    torch_p = engine.predict_many(texts, key)
    onnx_p = engine.predict_many(texts, key, runtime="onnx")
    for a, b in zip(torch_p, onnx_p, strict=True):
        assert a.keys() == b.keys() and all(abs(a[k] - b[k]) < 1e-4 for k in a)
    int8 = engine.predict("A warm, funny film.", key, "onnx-int8")
    assert abs(sum(int8.values()) - 1) < 1e-5

    with zipfile.ZipFile(engine.export_zip(run.run_id)) as z:
        assert {"onnx/model.onnx", "onnx/model.int8.onnx", "onnx/report.json"} <= set(z.namelist())
        assert json.loads(z.read("onnx/report.json"))["fp32_agreement"] == 1.0


def test_a_failing_exporter_leaves_the_run_untouched(finished, monkeypatch):
    import ftui.onnx_export as ox

    engine, run = finished
    before = engine.predict("fine film", f"run:{run.run_id}")

    def broken(*a, **k):
        raise RuntimeError("Unsupported: aten::weird_op")

    monkeypatch.setattr(ox, "export_model", broken)
    with pytest.raises(FtuiError, match="cannot handle this model.*weird_op"):
        engine.export_onnx(run.run_id)
    assert not (run.out_dir / ONNX_DIR).exists() and not (run.out_dir / (ONNX_DIR + ".tmp")).exists()
    assert engine.predict("fine film", f"run:{run.run_id}") == before
    assert engine.get_run(run.run_id).status == RunStatus.COMPLETED


def test_a_graph_that_disagrees_with_torch_is_not_kept(finished, monkeypatch):
    import ftui.onnx_export as ox

    engine, run = finished
    real = ox.OnnxScorer.logits
    monkeypatch.setattr(ox.OnnxScorer, "logits", lambda self, *a, **k: -real(self, *a, **k))  # every label flipped
    with pytest.raises(FtuiError, match="only 0.0% of the test set"):
        engine.export_onnx(run.run_id, int8=False)
    assert not has_export(run.out_dir)


def test_refusals(finished):
    engine, run = finished
    with pytest.raises(FtuiError, match="Unknown runtime"):
        engine.predict("good", f"run:{run.run_id}", "tensorrt")
    with pytest.raises(FtuiError, match="fine-tuned runs only"):
        engine.predict("good", f"base:{run.run_id}", "onnx")
    base = engine.start_run(RunConfig(DataConfig(), ModelConfig(), TrainConfig(), kind="baseline", baseline="tfidf"))
    assert base.done.wait(60) and engine.join(30)
    with pytest.raises(FtuiError, match="not a fine-tuned classifier"):
        engine.export_onnx(base.run_id)
    with pytest.raises(FtuiError, match="fine-tuned runs only"):
        engine.predict("good", f"run:{base.run_id}", "onnx")
