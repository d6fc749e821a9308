"""Tokenized splits as flat arrays, length-grouped batch orders and vectorised padding to the batch's longest row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ftui.data import LABEL, TEXT, TEXT_PAIR
from ftui.errors import FtuiError, StopRequested
from ftui.lru import LRU

PAD_MULTIPLE = 8  # tensor cores and oneDNN kernels like multiples of 8
GROUP_FACTOR = 50  # batches per length-sorted chunk: similar lengths without losing shuffling
TOKENIZE_CHUNK = 2048  # rows per tokenizer call: big enough to be fast, small enough to notice Stop


@dataclass(frozen=True)
class Tokenized:
    """One split's token ids, concatenated, with row offsets: ~4 bytes per token instead of a Python int each."""

    ids: np.ndarray  # int32, all rows back to back
    offsets: np.ndarray  # int64, len(rows) + 1; row i is ids[offsets[i]:offsets[i + 1]]
    labels: np.ndarray  # int64 class ids; float32 (rows, labels) 0/1 for multi-label; float32 targets for regression
    type_ids: np.ndarray | None = None  # int8 segment ids for models that use them (BERT pairs)
    doc: np.ndarray | None = None  # chunked long texts: the document (split row) each window row belongs to

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_docs(self) -> int:
        """Documents (the split's rows): the window rows' documents when chunked, else the rows."""
        return int(self.doc[-1]) + 1 if self.doc is not None and len(self.doc) else len(self)

    @property
    def doc_labels(self) -> np.ndarray:
        """One label per document (a chunked document's windows all carry its label)."""
        if self.doc is None:
            return self.labels
        first = np.unique(self.doc, return_index=True)[1]
        return self.labels[first]

    @property
    def lengths(self) -> np.ndarray:
        """Tokens per row."""
        return np.diff(self.offsets)

    @property
    def n_tokens(self) -> int:
        """Tokens in the whole split (no padding)."""
        return int(self.offsets[-1])


HEAD_SHARE = 0.25  # head + tail keeps this share of the budget from the start, the rest from the end (Sun et al. 2019)
CHUNK_OVERLAP = 0.25  # chunks: consecutive windows share this share of max_length, so no sentence is only ever cut


def special_tokens(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after one text's tokens ([CLS] and [SEP] for BERT, <s> and </s> for
    RoBERTa), found by encoding a word with and without them."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i : i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare) :])
    return [], []  # no specials found around the word: the text stands alone


def head_tail_rows(tokenizer: Any, texts: list[str], max_length: int) -> list[list[int]]:
    """Each text as its first and last tokens within max_length (specials included): a long review's opening and its
    verdict, where plain truncation keeps only the opening."""
    before, after = special_tokens(tokenizer)
    budget = max(1, max_length - len(before) - len(after))
    head = max(1, int(budget * HEAD_SHARE))
    rows = []
    for ids in tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]:
        if len(ids) > budget:
            ids = ids[:head] + ids[len(ids) - (budget - head) :]
        rows.append([*before, *ids, *after])
    return rows


def chunk_rows(tokenizer: Any, texts: list[str], max_length: int) -> tuple[list[list[int]], list[int]]:
    """Overlapping windows of max_length covering each whole text (the fast tokenizer's overflow), and the text each
    window comes from."""
    enc = tokenizer(texts, truncation=True, max_length=max_length, stride=int(max_length * CHUNK_OVERLAP),
                    return_overflowing_tokens=True)  # fmt: skip
    return enc["input_ids"], list(enc["overflow_to_sample_mapping"])


def pool_windows(logits: torch.Tensor, doc: torch.Tensor, n_docs: int) -> torch.Tensor:
    """Chunked long texts: each text's logits are the mean of its windows' (doc = the text of each window row)."""
    summed = torch.zeros((n_docs, logits.shape[1]), dtype=logits.dtype).index_add_(0, doc, logits)
    return summed / torch.bincount(doc, minlength=n_docs).clamp(min=1)[:, None]


def tokenize_split(
    ds: Any, tokenizer: Any, max_length: int, stop: Callable[[], bool] = lambda: False, long_text: str = "truncate"
) -> Tokenized:
    """Tokenize a prepared split (text[, text_pair], label) without padding; checks for Stop between chunks.

    long_text: 'truncate' cuts each text at max_length; 'head_tail' keeps its start and end; 'chunks' covers it with
    overlapping windows, one row each, tied to their text by `doc` (evaluation averages their logits)."""
    if long_text != "truncate" and TEXT_PAIR in ds.column_names:
        raise FtuiError(
            f"The long-text mode '{long_text}' reads one text per example; this dataset has sentence pairs.",
            "Set Long texts to 'truncate' in the Train tab.",
        )
    ids: list[np.ndarray] = []
    types: list[np.ndarray] = []
    lengths: list[np.ndarray] = []
    labels: list[Any] = []
    docs: list[np.ndarray] = []
    for start in range(0, len(ds), TOKENIZE_CHUNK):
        if stop():
            raise StopRequested
        chunk = ds[start : start + TOKENIZE_CHUNK]
        row_labels = chunk[LABEL]
        type_rows = None
        if long_text == "head_tail":
            rows = head_tail_rows(tokenizer, chunk[TEXT], max_length)
        elif long_text == "chunks":
            rows, owner = chunk_rows(tokenizer, chunk[TEXT], max_length)
            docs.append(np.asarray(owner, dtype=np.int64) + start)
            row_labels = [row_labels[i] for i in owner]
        else:
            toks = tokenizer(chunk[TEXT], chunk.get(TEXT_PAIR), truncation=True, max_length=max_length)
            rows, type_rows = toks["input_ids"], toks.get("token_type_ids")
        lengths.append(np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows)))
        ids.append(np.fromiter((t for r in rows for t in r), dtype=np.int32))
        if type_rows is not None:
            types.append(np.fromiter((t for r in type_rows for t in r), dtype=np.int8))
        labels.extend(row_labels)
    lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    return Tokenized(
        ids=np.concatenate(ids) if ids else np.zeros(0, dtype=np.int32),
        offsets=offsets,
        labels=np.asarray(labels, dtype=np.float32 if labels and isinstance(labels[0], (float, list)) else np.int64),
        type_ids=np.concatenate(types) if types else None,
        doc=(np.concatenate(docs) if docs else np.zeros(0, dtype=np.int64)) if long_text == "chunks" else None,
    )


def length_grouped_batches(lengths: np.ndarray, batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    """Shuffled batches whose members have similar lengths (sorted within chunks of GROUP_FACTOR batches)."""
    lengths = np.asarray(lengths)
    perm = torch.randperm(len(lengths), generator=gen).numpy()
    chunk = batch_size * GROUP_FACTOR
    batches: list[np.ndarray] = []
    for i in range(0, len(perm), chunk):
        part = perm[i : i + chunk]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[k : k + batch_size] for k in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[i] for i in order]


def eval_batches(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Batches sorted by length, for padding-light evaluation."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[k : k + batch_size] for k in range(0, len(order), batch_size)]


def padded_width(lengths: np.ndarray) -> int:
    """The batch's longest row, rounded up to a multiple of PAD_MULTIPLE."""
    longest = int(lengths.max()) if len(lengths) else 1
    return -(-longest // PAD_MULTIPLE) * PAD_MULTIPLE


def gather_positions(tok: Tokenized, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Flat source positions (B, W) for a batch, its validity mask and its width."""
    lens = tok.lengths[idx]
    width = padded_width(lens)
    cols = np.arange(width)
    mask = cols[None, :] < lens[:, None]
    pos = tok.offsets[idx][:, None] + cols[None, :]
    return np.where(mask, pos, 0), mask, width


def collate(tok: Tokenized, idx: np.ndarray, pad_id: int, device: str) -> dict[str, torch.Tensor]:
    """Pad a batch to its longest member (rounded up to a multiple of 8), as tensors on `device`."""
    pos, mask, _ = gather_positions(tok, idx)
    input_ids = np.where(mask, tok.ids[pos], pad_id).astype(np.int64)
    batch = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask.astype(np.int64))}
    if tok.type_ids is not None:
        batch["token_type_ids"] = torch.from_numpy(np.where(mask, tok.type_ids[pos], 0).astype(np.int64))
    batch["labels"] = torch.from_numpy(tok.labels[idx])
    if device == "cpu":
        return batch
    # Pinned host memory lets the copy overlap with the previous step's kernels.
    return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}


class TokenCache(LRU[tuple[Any, ...], dict[str, Tokenized]]):
    """A few tokenized datasets kept in memory, so a second run on the same data and tokenizer starts at once."""

    def __init__(self, capacity: int = 3) -> None:
        super().__init__(capacity)
