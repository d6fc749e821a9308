"""Looking at prepared data: the preview, label counts and the label matrix, text lengths, and the sanity report
(imbalance, multi-label coverage, leakage between splits)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.significance import split_flag
from ftui.tasks import Task

PREVIEW_CHARS = 500  # characters of a text shown in the data preview


def preview_frame(bundle: DataBundle, n: int = 8) -> pd.DataFrame:
    """First rows of train with label names, for a table."""
    head = bundle.splits["train"].select(range(min(n, len(bundle.splits["train"])))).to_pandas()
    head[LABEL] = [label_text(bundle, v) for v in head[LABEL]]
    head = head[[LABEL, *(c for c in head.columns if c != LABEL)]]  # first: long texts never push it off-screen
    for col in (TEXT, TEXT_PAIR):
        if col in head:  # a 10 MB review must not travel to the browser for a preview
            head[col] = [t if len(t) <= PREVIEW_CHARS else t[:PREVIEW_CHARS] + " …" for t in head[col]]
    return head


def label_text(bundle: DataBundle, value: Any) -> str:
    """One row's label in words: the class, the labels it carries (or 'none'), the number."""
    if bundle.task is Task.SINGLE:
        return bundle.label_names[int(value)]
    if bundle.task is Task.MULTI:
        on = [n for n, v in zip(bundle.label_names, value, strict=True) if v >= 0.5]
        return ", ".join(on) if on else "none"
    return f"{float(value):.4g}"


REGRESSION_BINS = 8  # bars of the target's histogram in the label chart


def label_matrix(ds: Any) -> np.ndarray:
    """A multi-label split's 0/1 labels as a (rows, labels) array."""
    return np.asarray(ds[LABEL], dtype=np.float32).reshape(len(ds), -1)


def label_counts(bundle: DataBundle) -> pd.DataFrame:
    """Rows per (split, label), long format: per class; per label (texts carrying it, multi-label); per range of the
    target (regression, the same bins for every split)."""
    rows = []
    if bundle.task is Task.REGRESSION:
        values = {s: np.asarray(ds[LABEL], dtype=np.float64) for s, ds in bundle.splits.items()}
        edges = np.histogram_bin_edges(np.concatenate(list(values.values())), bins=REGRESSION_BINS)
        names = [f"{a:.3g}–{b:.3g}" for a, b in zip(edges[:-1], edges[1:], strict=True)]
        for split, v in values.items():
            counts, _ = np.histogram(v, bins=edges)
            rows += [{"split": split, "label": n, "count": int(c)} for n, c in zip(names, counts, strict=True)]
        return pd.DataFrame(rows)
    for split, ds in bundle.splits.items():
        if bundle.task is Task.MULTI:
            per = label_matrix(ds).sum(0) if len(ds) else np.zeros(len(bundle.label_names))
            rows += [{"split": split, "label": n, "count": int(c)} for n, c in zip(bundle.label_names, per, strict=True)]
            continue
        counts = pd.Series(ds[LABEL]).value_counts()
        for i, name in enumerate(bundle.label_names):
            rows.append({"split": split, "label": name, "count": int(counts.get(i, 0))})
    return pd.DataFrame(rows)


def text_lengths(bundle: DataBundle, tokenizer: Any = None, limit: int = 2000) -> tuple[list[int], str]:
    """Lengths of up to `limit` train texts: tokens when a tokenizer is given, else words."""
    ds = bundle.splits["train"]
    texts = list(ds.select(range(min(limit, len(ds))))[TEXT])
    if tokenizer is not None:
        enc = tokenizer(texts, add_special_tokens=True, truncation=False)
        return [len(ids) for ids in enc["input_ids"]], "tokens"
    return [len(t.split()) for t in texts], "words"


IMBALANCE_RATIO = 3.0  # largest class over smallest in train above which the Data tab warns


def sanity_report(bundle: DataBundle) -> list[str]:
    """Warnings to read before training: class imbalance, labels unseen in train, a validation split too small to pick
    a checkpoint reliably (single-label: the rule is about an accuracy), texts shared across splits."""
    out: list[str] = []
    names = bundle.label_names
    if bundle.task is Task.MULTI:
        out += _multi_label_report(bundle)
    if bundle.task is not Task.SINGLE:
        return out + _leakage(bundle)
    counts = {s: pd.Series(ds[LABEL]).value_counts() for s, ds in bundle.splits.items()}
    train = counts.get("train", pd.Series(dtype=int))
    present = train[train > 0]
    if len(present) >= 2 and present.min() * IMBALANCE_RATIO <= present.max():
        ratio = present.max() / present.min()
        share = ", ".join(f"{names[i]} {n / present.sum():.0%}" for i, n in present.sort_values(ascending=False).items())
        out.append(
            f"Class imbalance in train: the largest class is {ratio:.1f}x the smallest ({share}). Accuracy will flatter "
            "the model; watch macro-F1 and the per-class scores, and consider Class weights: balanced in the Train tab."
        )
    for split in ("validation", "test"):
        unseen = sorted(set(counts.get(split, pd.Series(dtype=int)).index) - set(present.index))
        if unseen:
            out.append(f"Labels in {split} but not in train: {', '.join(names[i] for i in unseen)}. The model cannot learn them.")
    if flag := split_flag(len(bundle.splits.get("validation", ()))):
        out.append(flag)  # the rule runs' results are flagged by, applied before any run (ftui.significance)
    return out + _leakage(bundle)


def _multi_label_report(bundle: DataBundle) -> list[str]:
    """Rare labels of a multi-label train split (the imbalance a per-label weight corrects)."""
    train = bundle.splits["train"]
    if not len(train):
        return []
    share = label_matrix(train).mean(0)
    rare = [(n, s) for n, s in zip(bundle.label_names, share, strict=True) if 0 < s < 1 / (1 + IMBALANCE_RATIO)]
    if not rare:
        return []
    listed = ", ".join(f"{n} {s:.0%}" for n, s in sorted(rare, key=lambda x: x[1])[:8])
    return [
        f"Rare labels in train (share of texts carrying them): {listed}. Watch macro-F1 and the per-label scores, and "
        "consider Class weights: balanced in the Train tab (it weighs each label's positives by its rarity)."
    ]


def _leakage(bundle: DataBundle) -> list[str]:
    out: list[str] = []
    texts = {s: set(ds[TEXT]) for s, ds in bundle.splits.items()}
    for a, b in (("train", "validation"), ("train", "test"), ("validation", "test")):
        shared = len(texts.get(a, set()) & texts.get(b, set()))
        if shared:
            out.append(
                f"{shared} text(s) appear in both {a} and {b} (leakage): scores on {b} will be optimistic. "
                "Remove the duplicates or re-split."
            )
    return out
