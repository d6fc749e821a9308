"""Flat tokenized splits, length-grouped batches and padding: same tensors as the tokenizer's own padding."""

import numpy as np
import pytest
import torch
from datasets import Dataset

from ftui.batching import TokenCache, collate, eval_batches, length_grouped_batches, padded_width, tokenize_split
from ftui.errors import StopRequested


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    return AutoTokenizer.from_pretrained(packaged_checkpoint())


TEXTS = ["short one", "a somewhat longer review of a film that went on", "ok", "mid length text here", "fine " * 40]


def test_flat_arrays_match_the_tokenizer(tokenizer):
    ds = Dataset.from_dict({"text": TEXTS, "label": [0, 1, 0, 1, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=16)
    ref = tokenizer(TEXTS, truncation=True, max_length=16)["input_ids"]
    assert len(tok) == 5 and tok.lengths.tolist() == [len(r) for r in ref]
    for i, row in enumerate(ref):
        assert tok.ids[tok.offsets[i] : tok.offsets[i + 1]].tolist() == row
    assert tok.labels.tolist() == [0, 1, 0, 1, 1]


def test_collate_equals_tokenizer_padding(tokenizer):
    pairs_a, pairs_b = TEXTS, list(reversed(TEXTS))
    ds = Dataset.from_dict({"text": pairs_a, "text_pair": pairs_b, "label": [1, 0, 1, 0, 1]})
    tok = tokenize_split(ds, tokenizer, max_length=40)
    idx = np.array([4, 0, 2])
    batch = collate(tok, idx, tokenizer.pad_token_id, "cpu")
    ref = tokenizer(
        [pairs_a[i] for i in idx],
        [pairs_b[i] for i in idx],
        truncation=True,
        max_length=40,
        padding=True,
        pad_to_multiple_of=8,
        return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert torch.equal(batch[key], ref[key]), key
    assert batch["labels"].tolist() == [1, 1, 1]
    assert batch["input_ids"].shape[1] % 8 == 0


def test_tokenizing_checks_stop(tokenizer):
    ds = Dataset.from_dict({"text": ["x"] * 10, "label": [0] * 10})
    with pytest.raises(StopRequested):
        tokenize_split(ds, tokenizer, 8, stop=lambda: True)


def test_length_grouped_batches_cover_every_example_once():
    lengths = np.array([(i * 37) % 100 for i in range(1000)])
    batches = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(0))
    flat = sorted(int(i) for b in batches for i in b)
    assert flat == list(range(1000))
    spread = sum(lengths[b].max() - lengths[b].min() for b in batches) / len(batches)
    assert spread < 10  # similar lengths together: little padding
    again = length_grouped_batches(lengths, 16, torch.Generator().manual_seed(0))
    assert all(np.array_equal(a, b) for a, b in zip(batches, again, strict=True))  # seeded


def test_eval_batches_sorted_and_complete():
    lengths = np.array([5, 50, 7, 30, 1])
    batches = eval_batches(lengths, 2)
    assert [b.tolist() for b in batches] == [[1, 3], [2, 0], [4]]
    assert padded_width(lengths[batches[0]]) == 56


def test_token_cache_keeps_the_most_recent():
    cache = TokenCache(capacity=2)
    for k in "abc":
        cache.put((k,), {"train": k})
    assert cache.get(("a",)) is None and cache.get(("c",)) == {"train": "c"}
