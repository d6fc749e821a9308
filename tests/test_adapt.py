"""Masked-LM runs on the training core: loss falls, Stop/resume reproduces, the adapted checkpoint fine-tunes, the CLI,
and bad corpora or checkpoints get clear messages."""

import json
import subprocess
import sys

import pytest
from helpers import REPO, assert_scores_match_predictions, tiny_config

from ftui.adapt import load_corpus
from ftui.config import AdaptConfig, DataConfig, ModelConfig, ReadLimits, RunConfig, TrainConfig
from ftui.errors import DataError, FtuiError
from ftui.events import EventType, of_type
from ftui.runs import RunStatus


def mlm_cfg(mode="scratch", checkpoint=None, corpus=None, **train) -> RunConfig:
    t = {"epochs": 8, "batch_size": 16, "learning_rate": 1e-3, "max_length": 64, "evals_per_epoch": 2, **train}
    model = ModelConfig(source="local", checkpoint=str(checkpoint)) if checkpoint else ModelConfig()
    adapt = AdaptConfig(mode=mode, vocab_size=1500, preset="tiny", **({"corpus_source": "file", "corpus": str(corpus)}
                        if corpus else {}))  # fmt: skip
    return RunConfig(model=model, train=TrainConfig(**t), kind="mlm", adapt=adapt)


def done(engine, run, status=RunStatus.COMPLETED):
    assert run.done.wait(300) and engine.join(30)
    assert run.status == status, run.error
    return run


@pytest.mark.slow  # several masked-LM runs: slow set (CI runs it)
def test_a_tiny_model_from_scratch_learns_and_becomes_a_classifier(engine):
    from ftui.experiments import runs_frame

    run = done(engine, engine.start_run(mlm_cfg()))
    r = run.result
    assert r["perplexity_after"] < 0.8 * r["perplexity_before"]  # held-out perplexity falls
    notices = [e["message"] for e in of_type(run.events(), EventType.NOTICE)]
    assert any("supports a vocabulary of" in m and "fewer than the 1,500" in m for m in notices)  # said, not hidden
    evals = of_type(run.events(), EventType.EVAL)
    assert evals[0]["step"] == 0 and all("eval_perplexity" in e for e in evals)
    train = [e["loss"] for e in of_type(run.events(), EventType.TRAIN)]
    assert train[-1] < train[0]
    folder = run.out_dir / "model"
    assert (folder / "config.json").exists() and (folder / "README.md").read_text().count("bundled demo reviews") == 1
    assert engine.adapted_checkpoints()[0][1] == str(folder)
    # The adapted checkpoint: summary in the Model tab, then a classifier fine-tuned from it.
    model = ModelConfig(source="local", checkpoint=str(folder))
    assert engine.model_summary(model).num_layers == 2
    clf = done(engine, engine.start_run(RunConfig(DataConfig(), model, TrainConfig(epochs=1, batch_size=32, max_length=64))))
    assert_scores_match_predictions(engine, clf.run_id, clf.result)
    frame = runs_frame(engine.run_headers())
    assert frame[frame["run_id"] == clf.run_id].iloc[0]["checkpoint"] == f"adapted: {run.name}"
    assert frame[frame["run_id"] == run.run_id].iloc[0]["method"] == "MLM from scratch"


@pytest.mark.slow  # several masked-LM runs: slow set (CI runs it)
def test_continuing_a_checkpoint_and_resuming_reproduces_the_uninterrupted_run(engine, tiny_bert_dir):
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    cfg = mlm_cfg("continue", tiny_bert_dir, epochs=4)
    whole = done(engine, engine.start_run(cfg))
    run = engine.start_run(cfg)
    version = 0
    while len(of_type(run.events(), EventType.EVAL)) < 3:  # the starting point and two evaluations
        version = run.wait_for_change(version, timeout=30)
    engine.stop_run()
    done(engine, run, RunStatus.STOPPED)
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline"))
    again = done(fresh, fresh.resume_run(run.run_id))
    ours = [(e["step"], round(e["eval_loss"], 5)) for e in of_type(again.events(), EventType.EVAL)]
    assert ours == [(e["step"], round(e["eval_loss"], 5)) for e in of_type(whole.events(), EventType.EVAL)]
    assert again.result["perplexity_after"] == pytest.approx(whole.result["perplexity_after"])


def test_bad_corpora_and_checkpoints_get_clear_messages(engine, tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n\n")
    with pytest.raises(DataError, match="has no text"):
        load_corpus(AdaptConfig(corpus_source="file", corpus=str(empty)))
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9 tr\xe8s bon\n".encode("latin-1"))
    with pytest.raises(DataError, match="not UTF-8"):
        load_corpus(AdaptConfig(corpus_source="file", corpus=str(latin)))
    big = tmp_path / "big.txt"
    big.write_text("a long line of text\n" * 100_000)
    with pytest.raises(DataError, match="reads up to"):
        load_corpus(AdaptConfig(corpus_source="file", corpus=str(big)), ReadLimits(max_bytes=2**20))
    short = tmp_path / "short.txt"
    short.write_text("just a few words\nand a few more\n")
    run = done(engine, engine.start_run(mlm_cfg(corpus=short, max_length=128)), RunStatus.FAILED)
    assert "less than two blocks" in run.error and "lower the block length" in run.error
    with pytest.raises(FtuiError, match="vocabulary size"):
        engine.start_run(RunConfig(kind="mlm", adapt=AdaptConfig(mode="scratch", vocab_size=10)))


def test_a_checkpoint_without_a_masked_lm_form_is_refused_with_a_message(engine, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    folder = tmp_path / "gpt2-tiny"
    AutoModel.from_config(tiny_config("gpt2", vocab_size=30522).__class__(n_layer=1, n_embd=32, n_head=2, vocab_size=30522,
                          n_positions=128)).save_pretrained(folder)  # fmt: skip
    AutoTokenizer.from_pretrained(packaged_checkpoint()).save_pretrained(folder)
    run = engine.start_run(mlm_cfg("continue", folder))
    done(engine, run, RunStatus.FAILED)
    assert "no masked-language-model form" in run.error


@pytest.mark.slow  # 14 s
def test_cli_adapt_ends_with_the_checkpoint_train_takes(tmp_path):
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-m", "ftui", "adapt", "--offline", "--corpus", "demo", "--from-scratch", "--vocab-size", "1000",
         "--epochs", "1", "--block-length", "64", "--runs-dir", str(runs)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    end = json.loads(out.stdout.strip().splitlines()[-1])
    assert end["type"] == "end" and end["status"] == "completed", out.stderr[-2000:]
    trained = subprocess.run(
        [sys.executable, "-m", "ftui", "train", "--offline", "--checkpoint", end["model_dir"], "--max-steps", "2",
         "--max-length", "64", "--runs-dir", str(runs)],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert json.loads(trained.stdout.strip().splitlines()[-1])["status"] == "completed", trained.stderr[-2000:]


def test_an_adapt_run_cut_by_its_time_limit_says_so(engine):
    """Review of issue 29: the time cap caps masked-LM runs too, and the warning said so only for classifiers."""
    run = done(engine, engine.start_run(mlm_cfg(epochs=500, max_minutes=0.05)))  # 3 s of 500 epochs
    warned = of_type(run.events(), EventType.WARNING)
    assert [w["kind"] for w in warned] == ["time_limit"] and "of the 500 epochs set" in warned[0]["message"]


def test_a_nan_masked_lm_loss_fails_the_adapt_run(engine, monkeypatch):
    """Issue 22 case 3 through the masked-LM objective: the core's non-finite check covers every objective."""
    from ftui import adapt

    real, calls = adapt.MLMObjective.train_loss, [0]

    def poisoned(self, *args, **kwargs):
        calls[0] += 1
        out = real(self, *args, **kwargs)
        return out * float("nan") if calls[0] == 2 else out

    monkeypatch.setattr(adapt.MLMObjective, "train_loss", poisoned)
    run = done(engine, engine.start_run(mlm_cfg(epochs=2)), status=RunStatus.FAILED)
    assert "Training diverged: the training loss became nan at step 2" in run.error
