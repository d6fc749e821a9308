"""Baselines as runs: TF-IDF + LR equals a hand-built scikit-learn pipeline, embedding features equal the model's
mean-pooled states, and a baseline run is stored, predicted with, compared and exported like any run."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO, assert_scores_match_predictions, baseline_cfg, finish, offline_engine

from ftui.baselines import C_GRID, META_FILE, PIPELINE_FILE, embed, texts_of
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.errors import FtuiError
from ftui.run_queue import QueuedRun
from ftui.runs import Run, RunStatus


def test_tfidf_baseline_equals_a_hand_built_pipeline(engine):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    run = finish(engine, engine.start_run(baseline_cfg("tfidf")))
    c = run.result["C"]
    assert c in C_GRID and len(run.result["c_scores"]) == len(C_GRID)
    bundle = engine.load_data(DataConfig())
    by_hand = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(C=c, max_iter=2000,
                            random_state=42))  # fmt: skip
    by_hand.fit(texts_of(bundle.splits["train"]), bundle.splits["train"]["label"])
    expected = by_hand.predict(texts_of(bundle.splits["test"]))
    preds = engine.test_predictions(run.run_id)
    names = bundle.label_names
    assert preds["predicted"].tolist() == [names[i] for i in expected]
    assert run.result["test_accuracy"] == pytest.approx(float(np.mean(expected == np.array(bundle.splits["test"]["label"]))))
    best_c = max(run.result["c_scores"], key=lambda r: (r["accuracy"], r["macro_f1"]))  # chosen on validation
    assert best_c["C"] == c or (best_c["accuracy"], best_c["macro_f1"]) == next(
        (r["accuracy"], r["macro_f1"]) for r in run.result["c_scores"] if r["C"] == c
    )
    kinds = [e["type"] for e in run.events()]
    assert kinds == ["start", "eval", "test"] and run.config.kind == "baseline"


def test_nbsvm_baseline_equals_hand_computed_log_count_ratios(engine):
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    run = finish(engine, engine.start_run(baseline_cfg("nbsvm")))
    assert run.name.startswith("baseline-nbsvm-") and run.result["C"] in C_GRID
    bundle = engine.load_data(DataConfig())
    train, test = bundle.splits["train"], bundle.splits["test"]
    vec = CountVectorizer(ngram_range=(1, 2), binary=True)
    x = vec.fit_transform(texts_of(train)).toarray().astype(np.float64)
    y = np.asarray(train["label"])
    p, q = 1 + x[y == 1].sum(0), 1 + x[y == 0].sum(0)
    r = np.log((p / p.sum()) / (q / q.sum()))  # Wang & Manning's log-count ratio, dense, by hand
    clf = LogisticRegression(C=run.result["C"], max_iter=2000, random_state=42).fit(x * r, y)
    expected = clf.predict(vec.transform(texts_of(test)).toarray() * r)
    names = bundle.label_names
    assert engine.test_predictions(run.run_id)["predicted"].tolist() == [names[i] for i in expected]
    probs = engine.predict("The hotel was lovely.", f"run:{run.run_id}")  # Predict loads the saved pipeline
    assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-6


def test_nbsvm_multiclass_is_one_vs_rest_with_a_ratio_per_class():
    from sklearn.feature_extraction.text import CountVectorizer

    from ftui.nbsvm import NBLogistic

    texts = ["red apple", "red cherry", "green leaf", "green grass", "blue sky", "blue sea"] * 5
    y = np.array([0, 0, 1, 1, 2, 2] * 5)
    x = CountVectorizer(binary=True).fit_transform(texts)
    clf = NBLogistic(10.0).fit(x, y)
    assert len(clf.ratios_) == 3 and list(clf.classes_) == [0, 1, 2]
    probs = clf.predict_proba(x)
    assert np.allclose(probs.sum(1), 1) and (clf.predict(x) == y).all()


def test_embedding_features_are_the_models_mean_pooled_states(tiny_bert_dir):
    from transformers import AutoModel, AutoTokenizer

    from ftui.batching import tokenize_split
    from ftui.data import load_data

    bundle = load_data(DataConfig(max_train_examples=40))
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    model = AutoModel.from_pretrained(tiny_bert_dir).eval()
    split = bundle.splits["validation"]
    feats = embed(model, tokenize_split(split, tok, 32), tok.pad_token_id, "cpu", lambda: False)
    for i in range(len(split)):  # one text at a time, no padding at all
        ids = tok(split[i]["text"], truncation=True, max_length=32, return_tensors="pt")
        with torch.no_grad():
            alone = model(**ids).last_hidden_state[0].mean(0).numpy()
        assert np.allclose(feats[i], alone, atol=1e-5)


def test_a_baseline_run_is_predicted_with_compared_and_exported(engine, tiny_bert_dir):
    from ftui.experiments import baseline_verdict, runs_frame

    base = finish(engine, engine.start_run(baseline_cfg("embeddings", tiny_bert_dir)))
    assert (base.out_dir / "model" / PIPELINE_FILE).exists() and (base.out_dir / "model" / META_FILE).exists()
    probs = engine.predict("The hotel was lovely.", f"run:{base.run_id}")
    assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-6
    labels = dict((k, v) for v, k in engine.predict_choices())
    assert "baseline: frozen embeddings" in labels[f"run:{base.run_id}"] and f"base:{base.run_id}" not in labels
    with pytest.raises(FtuiError, match="is a baseline"):
        engine.predict("x", f"base:{base.run_id}")
    tuned_cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
                          TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=32))  # fmt: skip
    tuned = finish(engine, engine.start_run(tuned_cfg))
    frame = runs_frame(engine.run_headers())
    row = frame[frame["run_id"] == tuned.run_id].iloc[0]
    assert row["method"] == "fine-tune" and row["delta_vs_baseline"] == pytest.approx(
        round(tuned.result["test_accuracy"] - base.result["test_accuracy"], 4)
    )
    assert frame[frame["run_id"] == base.run_id].iloc[0]["method"] == "embeddings"
    verdict = baseline_verdict(tuned.header(), engine.run_headers())
    assert base.name in verdict and ("beats this fine-tuned" in verdict or "beats the best baseline" in verdict)
    path = engine.export_zip(base.run_id)
    with zipfile.ZipFile(path) as z:
        assert f"model/{PIPELINE_FILE}" in z.namelist()
        card = z.read("model/README.md").decode()
    assert "library_name: sklearn" in card and "**baseline**" in card and "joblib" in card


@pytest.mark.slow  # a CLI process / three baseline runs with the embedding model: slow set
def test_run_baselines_runs_all_three_one_after_the_other(engine):
    first, waiting, last = engine.start_baselines(RunConfig(DataConfig(), ModelConfig(), TrainConfig(max_length=32)))
    assert isinstance(first, Run) and isinstance(waiting, QueuedRun) and waiting.position == 1 and last.position == 2
    worker = engine.manager.worker
    assert first.done.wait(180) and first.status == RunStatus.COMPLETED, first.error
    worker.join(60)  # the first's worker starts the queued second before it ends
    second = engine.current_run()
    assert second is not first and second.done.wait(180), "the NBSVM baseline did not start after TF-IDF"
    assert second.status == RunStatus.COMPLETED, second.error
    worker = engine.manager.worker
    worker.join(60)
    third = engine.current_run()
    assert third is not second and third.done.wait(180), "the embeddings baseline did not start after NBSVM"
    assert third.status == RunStatus.COMPLETED, third.error
    runs = [r for r in engine.runs() if r.config.kind == "baseline"]
    assert [r.config.baseline for r in runs] == ["tfidf", "nbsvm", "embeddings"] and not engine.queued()


@pytest.mark.slow  # a CLI process / three baseline runs with the embedding model: slow set
def test_cli_baseline_prints_its_scores_last(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "ftui", "baseline", "--offline", "--dataset", "demo", "--kind", "tfidf",
         "--runs-dir", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    end = json.loads(out.stdout.strip().splitlines()[-1])
    assert end["status"] == "completed", out.stderr[-2000:]
    assert_scores_match_predictions(offline_engine(tmp_path / "runs"), Path(end["run_dir"]).name, end)


def test_a_run_ending_while_the_train_tab_renders_it_still_gets_its_verdict(engine, tiny_bert_dir, monkeypatch):
    """Case (flaky browser test): the run ended between the Train tab's reads of its status and its snapshot; the
    status said "completed" under a version drawn as not finished, so the verdict against the baseline never came."""
    import gradio as gr
    from helpers import finished_tiny_run

    from ftui.ui import data_tab, model_tab, train_tab

    finish(engine, engine.start_run(baseline_cfg("tfidf")))
    run = finished_tiny_run(engine, tiny_bert_dir, "racing")

    class EndingMidRender:
        """The run as a render that started just before its end sees it: running, one version back."""

        def __getattr__(self, name: str):
            return getattr(run, name)

        @property
        def status(self) -> RunStatus:
            return RunStatus.RUNNING

        @property
        def version(self) -> int:
            return run.version - 1

    with gr.Blocks():
        token = gr.Textbox()
        train_ui = train_tab.build(engine, token, data_tab.build(engine, token), model_tab.build(engine, token))
    monkeypatch.setattr(engine, "current_run", EndingMidRender)
    status = train_ui.render("")[0]
    assert "completed" in status and "baseline" in status, status
