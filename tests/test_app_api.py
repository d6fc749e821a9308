"""The app's API through gradio_client: the public `predict` endpoint, and what stays private."""

import pytest
from gradio_client import Client

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.runs import RunStatus


@pytest.fixture(scope="module")
def trained(app_server, tiny_bert_dir):
    url, engine = app_server
    cfg = RunConfig(
        data=DataConfig(),
        model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
        train=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
    )
    run = engine.start_run(cfg)
    assert run.done.wait(120) and run.status == RunStatus.COMPLETED
    engine.join(30)
    return url, engine, run


def test_predict_endpoint(trained):
    url, _, run = trained
    client = Client(url, verbose=False)
    out = client.predict("The battery died after a day.", f"run:{run.run_id}", api_name="/predict")
    assert out["label"] in ("negative", "positive")
    probs = {c["label"]: c["confidence"] for c in out["confidences"]}
    assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-4


def test_predict_defaults_to_the_newest_run(trained):
    url, _, _ = trained
    out = Client(url, verbose=False).predict("Lovely hotel.", None, api_name="/predict")
    assert out["label"] in ("negative", "positive")


def test_predict_base_checkpoint(trained):
    url, _, run = trained
    out = Client(url, verbose=False).predict("Lovely hotel.", f"base:{run.run_id}", api_name="/predict")
    assert out["label"] in ("negative", "positive")


def test_predict_errors_are_clear(trained):
    url, _, _ = trained
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="no text to classify"):
        client.predict("   ", None, api_name="/predict")
    with pytest.raises(Exception, match="Unknown model"):
        client.predict("hello", "run:../../etc", api_name="/predict")


def test_batch_predict_endpoint(trained, tmp_path):
    url, engine, run = trained
    client = Client(url, verbose=False)
    msg, table, csv_path = client.predict(
        "Great.\n\nAwful service.\nFine.", None, f"run:{run.run_id}", False, api_name="/predict_batch"
    )
    assert "3 reviews scored" in msg
    frame = __import__("pandas").read_csv(csv_path)
    assert frame["text"].tolist() == ["Great.", "Awful service.", "Fine."]
    assert set(frame["label"]) <= {"negative", "positive"}
    single = engine.predict("Awful service.", f"run:{run.run_id}")
    assert frame.loc[1, "positive"] == pytest.approx(single["positive"], abs=1e-3)
    msg, _, _ = client.predict("", None, f"run:{run.run_id}", True, api_name="/predict_batch")
    assert "no text to classify" in msg


def test_only_predict_endpoints_are_public(trained):
    url, _, _ = trained
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == ["/predict", "/predict_batch"]
