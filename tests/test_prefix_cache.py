"""Frozen-prefix cache: identical logits and losses with and without it, for each supported encoder family."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from ftui.batching import collate, tokenize_split
from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.modeling import apply_freeze, encoder_layers
from ftui.prefix_cache import PrefixCache
from ftui.runs import RunStatus
from ftui.training import _set_train_mode
from tests.conftest import tiny_config

TEXTS = [
    "great film",
    "the plot was thin and the acting wooden, a long two hours",
    "fine",
    "I would watch it again tomorrow",
    "not for me at all, sadly",
    "a triumph of style over substance that still somehow works",
]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    return AutoTokenizer.from_pretrained(packaged_checkpoint())


def tiny_classifier(model_type: str):
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    cfg = tiny_config(model_type, layers=3)
    cfg.num_labels = 2
    return AutoModelForSequenceClassification.from_config(cfg)


@pytest.mark.parametrize("model_type", ["bert", "distilbert", "roberta", "electra"])
@pytest.mark.parametrize("depth", [1, 3])
def test_cached_prefix_gives_identical_logits(model_type, depth, tokenizer):
    model = tiny_classifier(model_type)
    apply_freeze(model, depth)
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    cache = PrefixCache(model, depth, "cpu")
    model.eval()
    first, second = np.array([1, 2, 0]), np.array([3, 4, 5])
    with torch.no_grad():
        recomputed = {}
        for idx in (first, second):
            batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
            batch.pop("labels")
            assert not cache.ready("train", idx)
            with cache.context("train", tok, idx):  # first pass: computes and stores
                recomputed[tuple(idx)] = model(**batch).logits
        # Reuse in a different grouping, so rows meet other widths and neighbours than when stored.
        for idx in (np.array([1, 2, 0]), np.array([5, 4, 3])):
            assert cache.ready("train", idx)
            batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
            batch.pop("labels")
            full = model(**batch).logits
            calls: list[int] = []
            hooks = [m.register_forward_hook(lambda *_, c=calls: c.append(1)) for m in encoder_layers(model.base_model)[:depth]]
            with cache.reuse("train", tok, idx):
                cached = model(**batch).logits
            for h in hooks:
                h.remove()
            assert calls == []  # the frozen layers did not run
            assert torch.equal(cached, full), (cached - full).abs().max()
    # Everything is back in place after reuse.
    assert all(type(m).__name__ != "_Pass" for m in encoder_layers(model.base_model))
    assert cache.size_mb() > 0


def test_dropout_above_the_prefix_still_trains(tokenizer):
    model = tiny_classifier("bert")
    apply_freeze(model, 1)
    _set_train_mode(model, 1)
    ds = Dataset.from_dict({"text": TEXTS, "label": [1, 0, 1, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=32)
    cache = PrefixCache(model, 1, "cpu")
    idx = np.arange(6)
    batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
    y = batch.pop("labels")
    with cache.context("train", tok, idx):
        model(**batch)
    with cache.context("train", tok, idx):
        loss = torch.nn.functional.cross_entropy(model(**batch).logits, y)
    loss.backward()
    layers = encoder_layers(model.base_model)
    assert layers[1].attention.self.query.weight.grad is not None
    assert layers[0].attention.self.query.weight.grad is None


def test_training_with_and_without_the_cache_matches(engine, tiny_bert_dir):
    """Two epochs at freeze depth 1: same losses and accuracy whether the prefix is cached or recomputed."""

    def run_with(frozen_cache: bool):
        cfg = RunConfig(
            data=DataConfig(),
            model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=1),
            train=TrainConfig(
                epochs=2, batch_size=32, learning_rate=1e-3, evals_per_epoch=2, max_length=32, frozen_cache=frozen_cache
            ),
        )
        run = engine.start_run(cfg)
        assert run.done.wait(120) and engine.join(30)
        assert run.status == RunStatus.COMPLETED, run.error
        return run

    cached, plain = run_with(True), run_with(False)
    losses = [[e["loss"] for e in r.events() if e["type"] == "train"] for r in (cached, plain)]
    evals = [[e["eval_accuracy"] for e in r.events() if e["type"] == "eval"] for r in (cached, plain)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-6)
    assert evals[0] == evals[1]
    assert [e["epoch"] for e in cached.events() if e["type"] == "epoch"] == [1, 2]
    assert cached.snapshot().progress.get("prefix_cache_mb", 0) > 0
    assert "prefix_cache_mb" not in plain.snapshot().progress


FAMILY_SIZES = {  # a tiny random config of a family the cache cannot stand in for (ModernBERT, DeBERTa, EuroBERT and
    # ALBERT now can: tests/test_architectures.py runs their cache without a notice)
    "fnet": dict(hidden_size=32, num_hidden_layers=3, intermediate_size=64, max_position_embeddings=128),
}  # fmt: skip


def cached_and_plain(engine, checkpoint) -> dict[bool, tuple]:
    results = {}
    for cache in (True, False):
        cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(checkpoint), freeze_depth=1),
                        TrainConfig(epochs=2, batch_size=32, learning_rate=1e-3, max_length=64, frozen_cache=cache))  # fmt: skip
        run = engine.start_run(cfg)
        assert run.done.wait(300) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
        notices = [e["message"] for e in run.events() if e["type"] == "notice"]
        results[cache] = (run.result["test_loss"], notices, run.snapshot().progress.get("notices", []))
    return results


def test_a_cache_that_gives_wrong_logits_switches_itself_off_and_the_run_goes_on(engine, tokenizer, tmp_path):
    """Case: FNet's cache gave wrong logits (padding mixes into real tokens in its Fourier layers). The first reuse is
    checked against a full forward; on a mismatch the cache is switched off with a notice, and the run ends exactly as
    a run without the cache."""
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model("fnet", vocab_size=30522, **FAMILY_SIZES["fnet"])).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    results = cached_and_plain(engine, tmp_path)
    loss, notices, shown = results[True]
    assert len(notices) == 1 and "cached logits differ" in notices[0] and "switched off" in notices[0]
    assert shown == notices  # the Train tab's status shows it
    assert results[False][1] == []
    assert loss == pytest.approx(results[False][0], abs=1e-6)  # the same run as without the cache


def test_a_stand_in_that_raises_switches_the_cache_off_and_the_run_goes_on(engine, tiny_bert_dir, monkeypatch):
    """Case: ModernBERT's and DeBERTa's layers once crashed the cache at its first reuse (after training time was
    spent). Any exception of a stand-in now costs speed, never the run."""
    from ftui import prefix_cache

    def broken(self, hidden_states, *args, **kwargs):
        raise AttributeError("'_Pass' object has no attribute 'attention_type'")

    monkeypatch.setattr(prefix_cache._Pass, "forward", broken)
    results = cached_and_plain(engine, tiny_bert_dir)
    loss, notices, _ = results[True]
    assert len(notices) == 1 and "attention_type" in notices[0] and "switched off" in notices[0]
    assert loss == pytest.approx(results[False][0], abs=1e-6)


def test_status_line_shows_the_notice():
    from ftui.plots import status_markdown
    from ftui.runs import RunSnapshot

    snap = RunSnapshot("r1", "r", 3, RunStatus.RUNNING, (), {"notices": ["cache off (x)"]}, None, {}, 0.0, None)
    assert "⚠ cache off (x)" in status_markdown(snap)
