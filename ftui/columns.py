"""Which column holds the label: a pure heuristic over facts about each column, checked against the layouts of
common review datasets (tests/test_columns.py), so a user's obviously meant column wins over a star rating."""

from __future__ import annotations

import re
from dataclasses import dataclass

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
