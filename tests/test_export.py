"""Export: the generated model card, the zip's contents, the Hub push (against a recording fake API), offline refusal."""

import json
import zipfile

import pytest
from helpers import finished_tiny_run

from ftui.config import RunConfig, TrainConfig
from ftui.errors import FtuiError, HubError
from ftui.export import model_card, push_to_hub


@pytest.fixture()
def finished(engine, tiny_bert_dir):
    return engine, finished_tiny_run(engine, tiny_bert_dir, "card-run")


def test_model_card_has_the_facts(finished):
    engine, run = finished
    card = model_card(run.to_json(), "Random weights: predicts noise.", "me/card-run")
    assert card.startswith("---\nlibrary_name: transformers\npipeline_tag: text-classification")
    assert "# card-run" in card and "| freeze depth (bottom layers frozen) | 1 |" in card
    assert f"| test | {run.result['test_accuracy']:.4f} |" in card
    assert "## Intended use" in card and "## Limitations and bias" in card
    assert "Random weights: predicts noise." in card
    assert "`negative`, `positive`" in card


def test_model_card_numbers_are_formatted_for_what_they_are():
    """Case: the card said 'learning rate | 0.0001' for a 5e-05 run, 'epochs | 3.0000', '86.9800 s'."""
    rec = {"run_id": "r", "name": "r", "label_names": ["a", "b"], "config": RunConfig(train=TrainConfig(learning_rate=5e-5,
           epochs=3.0, weight_decay=0.01)).to_dict(), "result": {"train_seconds": 86.98, "train_size": 256,
           "test_accuracy": 0.9375, "test_macro_f1": 0.9373, "device": "cpu"}}  # fmt: skip
    card = model_card(rec)
    assert "| learning rate | 5e-05 |" in card and "| epochs | 3 |" in card and "| weight decay | 0.01 |" in card
    assert "in 87.0 s on cpu" in card and "| test | 0.9375 | 0.9373 |" in card
    assert "github.com/)" not in card


def test_zip_holds_model_tokenizer_labels_config_metrics_card(finished):
    engine, run = finished
    path = engine.export_zip(run.run_id)
    with zipfile.ZipFile(path) as z:
        names = set(z.namelist())
        assert {"model/labels.json", "model/config.json", "model/README.md", "config.json", "metrics.json"} <= names
        assert "model/model.safetensors" in names and ("model/tokenizer.json" in names or "model/vocab.txt" in names)
        assert "test_predictions.parquet" in names
        metrics = json.loads(z.read("metrics.json"))
        assert metrics["result"]["test_accuracy"] == run.result["test_accuracy"]
        assert [r["class"] for r in metrics["per_class"]] == ["negative", "positive"]
        assert json.loads(z.read("config.json"))["model"]["freeze_depth"] == 1
        assert "Limitations and bias" in z.read("model/README.md").decode()
    # The zipped model loads and predicts like the run's own folder.
    from ftui.modeling import load_classifier

    out = path.parent / "unzipped"
    zipfile.ZipFile(path).extractall(out)
    model, _, names = load_classifier(out / "model", "cpu")
    assert names == ["negative", "positive"]


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))
        return f"https://huggingface.co/{repo_id}"

    def upload_folder(self, folder_path, repo_id, **kw):
        from pathlib import Path

        self.calls.append(("upload_folder", repo_id, sorted(p.name for p in Path(folder_path).iterdir())))
        self.card = (Path(folder_path) / "README.md").read_text()


def test_push_uploads_model_and_card(finished):
    engine, run = finished
    api = FakeApi()
    url = push_to_hub(run.to_json(), run.out_dir, "me/card-run", "hf_secret", True, "", api=api)
    assert url == "https://huggingface.co/me/card-run"
    assert api.calls[0] == ("create_repo", "me/card-run", {"private": True, "exist_ok": True, "repo_type": "model"})
    kind, repo, files = api.calls[1]
    assert kind == "upload_folder" and "README.md" in files and "labels.json" in files and "model.safetensors" in files
    assert "model-index" in api.card and "me/card-run" in api.card and "hf_secret" not in api.card


def test_push_refusals(finished):
    engine, run = finished
    with pytest.raises(HubError, match="not a Hub repo id"):
        push_to_hub(run.to_json(), run.out_dir, "http://evil/x", "tok", True, api=FakeApi())
    with pytest.raises(HubError, match="write access"):
        push_to_hub(run.to_json(), run.out_dir, "me/x", "", True, api=FakeApi())
    with pytest.raises(FtuiError, match="Download the zip"):
        engine.push_to_hub(run.run_id, "me/x", "tok")  # the test engine is offline


def test_model_card_states_class_weights_only_when_used():
    def card(weights: str) -> str:
        cfg = RunConfig(train=TrainConfig(class_weights=weights)).to_dict()
        return model_card({"run_id": "r", "name": "r", "label_names": ["a", "b"], "config": cfg, "result": {}})

    assert "| class weights in the loss | balanced |" in card("balanced")
    assert "class weights" not in card("none")


def test_a_run_keeps_one_export_zip_whatever_its_names(finished):
    """Review of issue 22 case 4: each rename plus export left another zip in the run's folder, never removed."""
    engine, run = finished
    first = engine.export_zip(run.run_id)
    engine.rename_run(run.run_id, "renamed-for-export")
    second = engine.export_zip(run.run_id)
    assert second.name == "renamed-for-export.zip" and not first.exists()
    assert [p.name for p in second.parent.glob("*.zip")] == ["renamed-for-export.zip"]
