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


LONG = " ".join(f"word{i}" for i in range(60))  # many tokens, each position distinguishable


def test_head_tail_keeps_the_start_and_the_end(tokenizer):
    from ftui.batching import HEAD_SHARE, head_tail_rows, special_tokens

    body = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    before, after = special_tokens(tokenizer)
    assert (before, after) == ([tokenizer.cls_token_id], [tokenizer.sep_token_id])
    row, short = head_tail_rows(tokenizer, [LONG, "ok"], max_length=34)
    budget = 34 - 2
    head = int(budget * HEAD_SHARE)
    assert len(row) == 34 and row == [*before, *body[:head], *body[-(budget - head) :], *after]
    assert short == tokenizer("ok")["input_ids"]  # a text that fits is read whole, as truncation would


def test_chunks_cover_every_token_with_overlapping_windows(tokenizer):
    from ftui.batching import CHUNK_OVERLAP, chunk_rows

    body = tokenizer(LONG, add_special_tokens=False)["input_ids"]
    rows, owner = chunk_rows(tokenizer, [LONG, "ok"], max_length=32)
    assert owner[-1] == 1 and owner.count(0) == len(rows) - 1 and all(len(r) <= 32 for r in rows)
    inner = [r[1:-1] for r in rows[:-1]]
    overlap = int(32 * CHUNK_OVERLAP)
    rebuilt = inner[0] + [t for w in inner[1:] for t in w[overlap:]]
    assert rebuilt == body  # in order, nothing lost; consecutive windows share `overlap` tokens
    assert all(a[-overlap:] == b[:overlap] for a, b in zip(inner, inner[1:], strict=False))


def test_chunked_split_ties_windows_to_their_documents(tokenizer):
    ds = Dataset.from_dict({"text": ["ok", LONG, "fine"], "label": [0, 1, 0]})
    tok = tokenize_split(ds, tokenizer, max_length=32, long_text="chunks")
    assert tok.n_docs == 3 and tok.doc[0] == 0 and tok.doc[-1] == 2 and (tok.doc == 1).sum() >= 3
    assert tok.labels[tok.doc == 1].tolist() == [1] * int((tok.doc == 1).sum()) and tok.doc_labels.tolist() == [0, 1, 0]
    pairs = Dataset.from_dict({"text": ["a"], "text_pair": ["b"], "label": [0]})
    with pytest.raises(Exception, match="sentence pairs"):
        tokenize_split(pairs, tokenizer, max_length=32, long_text="head_tail")
