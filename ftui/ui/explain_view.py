"""How an explanation is shown: words coloured by contribution (scaled to -1..1) and a one-paragraph summary."""

from __future__ import annotations

from ftui.escaping import escape_md
from ftui.explain import METHODS, Explanation
from ftui.icons import WARN


def spans(ex: Explanation) -> list[tuple[str, float]]:
    """(word, score in -1..1) for a HighlightedText: the strongest word is ±1, the rest in proportion."""
    words = ex.words()
    peak = max((abs(s) for _, s in words), default=0.0) or 1.0
    return [(w + " ", round(s / peak, 3)) for w, s in words]


def summary(ex: Explanation, n: int = 3) -> str:
    """What the colours mean and how far to trust them, in plain words."""
    top = ", ".join(f"**{escape_md(w)}**" for w, s in ex.top(n) if s > 0) or "none"
    against = ", ".join(f"**{escape_md(w)}**" for w, s in sorted(ex.words(), key=lambda w: w[1])[:n] if s < 0) or "none"
    parts = [
        f"Why **{escape_md(ex.label)}** ({ex.probability:.3f}): red words pushed towards it, purple words against it "
        f"({METHODS[ex.method]}).",
        f"Strongest for: {top}. Strongest against: {against}.",
    ]
    if ex.delta is not None:
        gap = ex.logit - ex.baseline_logit
        parts.append(
            f"The contributions add up to {sum(ex.scores):+.3f} of the {gap:+.3f} logit gap from an empty input "
            f"(convergence delta {ex.delta:+.4f})."
        )
    else:
        parts.append("Fast estimate: one gradient, no guarantee the contributions add up; use integrated gradients to check.")
    if ex.truncated:
        parts.append(f"{WARN} The text is longer than the model reads: only its first {len(ex.tokens)} tokens are explained.")
    return " ".join(parts)
