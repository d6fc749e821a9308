"""Which columns hold the text and the label: facts about each column, then a pure heuristic over them, checked
against the layouts of common review datasets (tests/test_columns.py), so a user's obviously meant column wins over a
star rating."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ftui.label_shapes import as_items, is_classlabel, is_string

TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "body", "tweet", "utterance", "sms")
PAIR_NAMES = (
    ("sentence1", "sentence2"),
    ("question", "sentence"),
    ("premise", "hypothesis"),
    ("question1", "question2"),
    ("sentence_a", "sentence_b"),
    ("text_a", "text_b"),
)

# Exact names that mean "the label" (a rating is weaker: a file often has a rating beside the label it means).
LABEL_NAMES = ("label", "labels", "target", "class", "category", "sentiment", "polarity", "y")
RATING_NAMES = ("stars", "star", "rating", "ratings", "score", "overall")
# Words that, inside a longer column name ("Sentiment Label", "airline_sentiment"), say it is the label.
LABEL_WORDS = frozenset({"label", "labels", "sentiment", "polarity", "verdict", "emotion", "intent", "target", "gold"})
# Values that read as class names: a short text column holding mostly these is a label whatever it is called.
LABEL_VALUES = frozenset({
    "positive", "negative", "neutral", "pos", "neg", "neu", "mixed", "good", "bad", "spam", "ham", "true", "false",
    "yes", "no", "fake", "real", "toxic", "relevant", "irrelevant", "like", "dislike", "recommended", "happy", "sad",
    "angry", "joy", "fear", "anger", "surprise", "sadness", "disgust", "love",
})  # fmt: skip
MAX_CLASSES = 50  # a text column with more distinct values in the sample is free text, not a label
IDS = ("id", "idx", "index")


@dataclass(frozen=True)
class ColumnFacts:
    """What the heuristic needs to know of one column (from its feature type and a sample of rows)."""

    name: str
    classlabel: bool = False  # a datasets ClassLabel: the dataset says it is the label
    kind: str = "other"  # "int", "string", "list" (a list column, or JSON lists in text cells), "other"
    distinct: int = 0  # distinct values in the sample
    values: tuple[str, ...] = ()  # up to 60 distinct values, lower-cased (string columns)


def _words(name: str) -> set[str]:
    """'Sentiment Label' / 'airline_sentiment' / 'reviewLabel' -> their lower-case words."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return {w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w}


def pick_label_column(columns: list[ColumnFacts], text_column: str | None = None) -> str | None:
    """The label column, by the first rule that finds one: a ClassLabel; a conventional name; a name containing a
    label word (low cardinality); a short text column whose values read as class names; a rating column; a
    low-cardinality integer column; a list column (multi-label). None when nothing fits."""
    lower = {c.name.lower(): c for c in columns}
    label_like = [c for c in columns if c.name != text_column and c.kind in ("string", "int") and 0 < c.distinct <= MAX_CLASSES]
    rules = (
        lambda: next((c for c in columns if c.classlabel), None),
        lambda: next((lower[n] for n in LABEL_NAMES if n in lower), None),
        lambda: next((c for c in label_like if _words(c.name) & LABEL_WORDS), None),
        lambda: next((c for c in label_like if c.kind == "string" and _reads_as_classes(c.values)), None),
        lambda: next((lower[n] for n in RATING_NAMES if n in lower), None),
        lambda: next((c for c in label_like if c.kind == "int" and c.distinct <= 20 and c.name.lower() not in IDS), None),
        lambda: next((c for c in columns if c.kind == "list"), None),
    )
    for rule in rules:
        found = rule()
        if found is not None:
            return found.name
    return None


def _reads_as_classes(values: tuple[str, ...]) -> bool:
    """Most distinct values are words such as positive/negative/spam (two or more of them)."""
    known = [v for v in values if v.strip() in LABEL_VALUES]
    return len(known) >= 2 and len(known) >= 0.6 * len(values)


def detect_label_column(features: dict[str, Any], sample: pd.DataFrame) -> str | None:
    """The label column (ftui.columns' rules over what each column holds)."""
    return pick_label_column([_facts(n, f, sample[n]) for n, f in features.items()])


def _facts(name: str, feature: Any, values: pd.Series) -> ColumnFacts:
    if is_classlabel(feature):
        return ColumnFacts(name, classlabel=True)
    if _is_list_column(feature, values):
        return ColumnFacts(name, kind="list")
    present = values.dropna()
    distinct = present.astype(str).str.strip().str.lower().unique() if is_string(feature) else present.unique()
    kind = "int" if getattr(feature, "dtype", "").startswith("int") else "string" if is_string(feature) else "other"
    shown = tuple(str(v) for v in distinct[:60]) if kind == "string" else ()
    return ColumnFacts(name, kind=kind, distinct=len(distinct), values=shown)


def _is_list_column(feature: Any, values: pd.Series) -> bool:
    """A multi-label candidate: an Arrow list, or strings that are JSON lists ('["food", "price"]' in a CSV cell)."""
    if type(feature).__name__ in ("Sequence", "List", "LargeList"):
        return True
    present = values.dropna().iloc[:50]
    return (
        is_string(feature)
        and not present.empty
        and all(
            isinstance(v, str) and v.strip().startswith("[") and as_items(v, split_strings=False) is not None for v in present
        )
    )


def detect_text_columns(features: dict[str, Any], sample: pd.DataFrame, label: str | None) -> tuple[str, ...]:
    """One text column, or two for sentence-pair tasks; empty when none is a string column."""
    strings = [n for n, f in features.items() if is_string(f) and n != label]
    if not strings:
        return ()
    lower = {c.lower(): c for c in strings}
    for a, b in PAIR_NAMES:
        if a in lower and b in lower:
            return (lower[a], lower[b])
    for cand in TEXT_NAMES:
        if cand in lower:
            return (lower[cand],)
    mean_len = {n: sample[n].astype(str).str.len().mean() for n in strings}
    return (max(strings, key=lambda n: mean_len[n]),)
