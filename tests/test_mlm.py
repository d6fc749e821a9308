"""Masked-LM building blocks: masking statistics, block packing, a WordPiece tokenizer from scratch, preset sizes."""

import numpy as np
import pytest
import torch

from ftui.mlm import IGNORE, SPECIALS, mask_tokens, pack_blocks, preset_parameters, train_wordpiece

TEXTS = [f"the film number {i} was {'wonderful' if i % 2 else 'dreadful'} and the acting was fine" for i in range(200)]


@pytest.fixture(scope="module")
def tokenizer():
    return train_wordpiece(TEXTS, vocab_size=300, min_frequency=1, lowercase=True)


def test_masking_rate_and_80_10_10_and_specials_never_masked():
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, 1000, (400, 128), generator=gen)
    special = torch.zeros_like(ids, dtype=torch.bool)
    special[:, 0] = special[:, -1] = True  # [CLS] ... [SEP]
    inputs, labels = mask_tokens(ids, special, mask_id=3, vocab_size=1000, rate=0.15, generator=torch.Generator().manual_seed(1))
    chosen = labels != IGNORE
    assert not chosen[special].any()  # specials are never chosen
    assert (labels[chosen] == ids[chosen]).all() and (inputs[~chosen] == ids[~chosen]).all()
    rate = chosen.sum().item() / (~special).sum().item()
    assert rate == pytest.approx(0.15, abs=0.01)
    masked = (inputs == 3) & chosen
    kept = (inputs == ids) & chosen
    n = chosen.sum().item()
    assert masked.sum().item() / n == pytest.approx(0.8, abs=0.02)
    assert kept.sum().item() / n == pytest.approx(0.1, abs=0.02)  # ~10% left as they were (a few random draws hit the same)
    assert (chosen & ~masked & ~kept).sum().item() / n == pytest.approx(0.1, abs=0.02)  # ~10% a random token
    again, _ = mask_tokens(ids, special, 3, 1000, 0.15, torch.Generator().manual_seed(1))
    assert torch.equal(again, inputs)  # same seed, same masks


def test_whole_word_masking_masks_every_piece_of_a_word(tokenizer):
    blocks = pack_blocks(["unbelievably wonderful filmmaking"] * 50, tokenizer, 64)
    ids, special, start = map(torch.from_numpy, (blocks.ids, blocks.special, blocks.word_start))
    _, labels = mask_tokens(ids, special, tokenizer.mask_token_id, len(tokenizer), 0.3, torch.Generator().manual_seed(2), start)
    chosen = (labels != IGNORE).numpy()
    word_start = blocks.word_start
    for b in range(len(blocks)):
        for k in range(1, blocks.lengths[b]):
            if not word_start[b, k] and not blocks.special[b, k]:  # a continuation piece follows its word's choice
                assert chosen[b, k] == chosen[b, k - 1]


def test_block_packing_keeps_every_token_once(tokenizer):
    blocks = pack_blocks(TEXTS[:37], tokenizer, 32)
    flat = np.concatenate([blocks.ids[b, : blocks.lengths[b]] for b in range(len(blocks))])
    expected = np.concatenate([np.asarray(r) for r in tokenizer(TEXTS[:37])["input_ids"]])
    assert np.array_equal(flat, expected)
    assert (blocks.lengths[:-1] == 32).all() and 0 < blocks.lengths[-1] <= 32  # only the last block is short
    assert blocks.special[-1, blocks.lengths[-1] :].all()  # its padding is never masked


def test_tokenizer_from_scratch_round_trips_specials_and_splits_unseen_words(tokenizer):
    assert [tokenizer.convert_ids_to_tokens(tokenizer.convert_tokens_to_ids(t)) for t in SPECIALS] == list(SPECIALS)
    enc = tokenizer("The film was wonderful")
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    assert pieces[0] == "[CLS]" and pieces[-1] == "[SEP]" and "wonderful" in pieces
    unseen = tokenizer.tokenize("filmacting")  # never in the corpus; its letters are
    assert len(unseen) > 1 and any(p.startswith("##") for p in unseen)  # an unseen word in known pieces
    assert len(tokenizer) <= 300


def test_preset_sizes_grow():
    tiny, small, base = (preset_parameters(p, 8000) for p in ("tiny", "small", "base"))
    assert tiny < small < base and 1e6 < tiny < 3e6 and 90e6 < base < 120e6
