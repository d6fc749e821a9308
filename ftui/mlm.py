"""Masked-language-model building blocks: packing texts into blocks, BERT-style masking, a WordPiece tokenizer
trained from scratch, and small BERT configs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

IGNORE = -100  # label of positions that are not predicted (cross_entropy's ignore_index)
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
PRESETS: dict[str, dict[str, int]] = {
    "tiny": {"num_hidden_layers": 2, "hidden_size": 128, "num_attention_heads": 2, "intermediate_size": 512},
    "small": {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4, "intermediate_size": 1024},
    "base": {"num_hidden_layers": 12, "hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}


@dataclass(frozen=True)
class Blocks:
    """Token blocks of one length (the last may be shorter), every token of the texts exactly once, in order."""

    ids: np.ndarray  # int64 (n_blocks, block), padded with pad_id after `lengths`
    lengths: np.ndarray  # int64 real tokens per block
    special: np.ndarray  # bool (n_blocks, block): [CLS], [SEP], padding: never masked
    word_start: np.ndarray  # bool (n_blocks, block): the token begins a word (for whole-word masking)

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def n_tokens(self) -> int:
        """Real tokens in all blocks."""
        return int(self.lengths.sum())


def pack_blocks(
    texts: Sequence[str], tokenizer: Any, block: int, stop: Callable[[], bool] = lambda: False, chunk: int = 1024
) -> Blocks:
    """Tokenize each text with its special tokens, concatenate them all, cut into blocks of `block` tokens: no padding
    except in the last block (the datasets 'group_texts' recipe, with nothing dropped)."""
    from ftui.errors import StopRequested

    ids: list[np.ndarray] = []
    specials: list[np.ndarray] = []
    starts: list[np.ndarray] = []
    for i in range(0, len(texts), chunk):
        if stop():
            raise StopRequested
        enc = tokenizer(list(texts[i : i + chunk]), add_special_tokens=True, return_special_tokens_mask=True)
        for j, row in enumerate(enc["input_ids"]):
            ids.append(np.asarray(row, dtype=np.int64))
            specials.append(np.asarray(enc["special_tokens_mask"][j], dtype=bool))
            words = enc.word_ids(j) if hasattr(enc, "word_ids") else [None] * len(row)
            starts.append(np.array([w is not None and (k == 0 or words[k - 1] != w) for k, w in enumerate(words)], bool))
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    spec = np.concatenate(specials) if specials else np.zeros(0, bool)
    start = np.concatenate(starts) if starts else np.zeros(0, bool)
    n = max(1, -(-len(flat) // block))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = np.full((n, block), pad_id, dtype=np.int64)
    out_spec = np.ones((n, block), dtype=bool)
    out_start = np.zeros((n, block), dtype=bool)
    lengths = np.zeros(n, dtype=np.int64)
    for b in range(n):
        part = slice(b * block, min((b + 1) * block, len(flat)))
        m = part.stop - part.start
        out[b, :m], out_spec[b, :m], out_start[b, :m], lengths[b] = flat[part], spec[part], start[part], m
    return Blocks(out, lengths, out_spec, out_start)


def mask_tokens(
    ids: torch.Tensor,
    special: torch.Tensor,
    mask_id: int,
    vocab_size: int,
    rate: float,
    generator: torch.Generator,
    word_start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking (DataCollatorForLanguageModeling's recipe): choose `rate` of the non-special tokens; of those,
    80% become [MASK], 10% a random token, 10% stay. Returns (inputs, labels) with labels IGNORE where not chosen.

    word_start: with it, whole words are chosen (a word's pieces are masked together).
    """
    probs = torch.full(ids.shape, rate)
    if word_start is not None:
        # choose per word: draw at word starts, then spread each choice over the word's following pieces
        draw = torch.bernoulli(probs, generator=generator).bool() & word_start
        chosen = torch.zeros_like(draw)
        current = torch.zeros(ids.shape[0], dtype=torch.bool)
        for k in range(ids.shape[1]):
            current = torch.where(word_start[:, k], draw[:, k], current)
            chosen[:, k] = current
        chosen &= ~special
    else:
        chosen = torch.bernoulli(probs, generator=generator).bool() & ~special
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    inputs = ids.clone()
    replace = torch.bernoulli(torch.full(ids.shape, 0.8), generator=generator).bool() & chosen
    inputs[replace] = mask_id
    randomize = torch.bernoulli(torch.full(ids.shape, 0.5), generator=generator).bool() & chosen & ~replace
    inputs[randomize] = torch.randint(vocab_size, ids.shape, generator=generator)[randomize]
    return inputs, labels


def train_wordpiece(texts: Sequence[str], vocab_size: int, min_frequency: int, lowercase: bool, max_length: int = 512) -> Any:
    """A BERT WordPiece tokenizer trained on `texts` (tokenizers library), as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=list(SPECIALS))
    tok.train_from_iterator(texts, trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    tok.decoder = decoders.WordPiece(prefix="##")
    return BertTokenizerFast(
        tokenizer_object=tok,
        do_lower_case=lowercase,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_length,
    )


def scratch_config(preset: str, vocab_size: int, max_positions: int) -> Any:
    """A BERT config of a preset size for a vocabulary."""
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, max_position_embeddings=max(512, max_positions), **PRESETS[preset])


def preset_parameters(preset: str, vocab_size: int, max_positions: int = 512) -> int:
    """Parameters of a from-scratch model of a preset (counted on meta tensors: nothing is allocated)."""
    from transformers import BertForMaskedLM

    with torch.device("meta"):
        model = BertForMaskedLM(scratch_config(preset, vocab_size, max_positions))
    return sum(p.numel() for p in model.parameters())
