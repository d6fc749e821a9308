"""The one escaping helper for user strings shown as Markdown, HTML or plotly text: they come out as inert text."""

from __future__ import annotations

import re
from collections.abc import Iterable

# Gradio's Markdown sanitiser keeps styled links and external images, so nothing a user typed may reach it as syntax.
_HTML = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})
# Markdown punctuation that opens links, images, emphasis, code, strike-through, tables, headings and Gradio's LaTeX.
_MD_PUNCT = re.compile(r"([\\`*_\[\]~|$#!])")
# GFM turns bare URLs and e-mail addresses into links by themselves: break the patterns with entities (shown literally).
_AUTOLINK = ((re.compile(r":(?=//)"), "&#58;"), (re.compile(r"(?i)(?<=www)\."), "&#46;"), (re.compile("@"), "&#64;"))
# What makes a list item or a setext heading underline at the start of a line.
_BULLET = re.compile(r"^([-+=])")
_NUMBERED = re.compile(r"^(\d{1,9})([.)])(?=\s|$)")
_PLOT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


def escape_md(value: object) -> str:
    """A user string as literal text inside Markdown (or HTML): no tag, link, image, emphasis or code comes out of it.

    Line breaks become spaces: a label, name or note is shown inline, where a new line could start a heading or list.
    """
    text = " ".join(str(value).split()).translate(_HTML)
    text = _MD_PUNCT.sub(r"\\\1", text)
    for pattern, entity in _AUTOLINK:
        text = pattern.sub(entity, text)
    return _NUMBERED.sub(r"\1\\\2", _BULLET.sub(r"\\\1", text))


def escape_md_all(values: Iterable[object], sep: str = ", ") -> str:
    """Several user strings (labels, columns) escaped and joined."""
    return sep.join(escape_md(v) for v in values)


def escape_md_block(value: object) -> str:
    """A user's multi-paragraph text (a note, a model card section) escaped paragraph by paragraph."""
    return "\n\n".join(escape_md(p) for p in re.split(r"\n\s*\n", str(value)) if p.strip())


def code_md(value: object) -> str:
    """A user string as a Markdown code span: its text is shown as typed; a backtick in it cannot close the span."""
    text = " ".join(str(value).split())
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def code_block_md(value: object) -> str:
    """A user's whole document (a model card) as a fenced code block: readable as typed, nothing in it rendered."""
    text = str(value)
    longest = max((len(run) for run in re.findall(r"`{3,}|~{3,}", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def escape_html(value: object) -> str:
    """A user string as literal text inside HTML that is not Markdown (Gradio's toasts render their message as HTML)."""
    return str(value).translate(_HTML)


def escape_plot(value: object) -> str:
    """A user string for plotly text (titles, tick labels, hover text, legend names, annotations).

    Plotly draws a subset of HTML in text (<a href>, <b>, <br>, <span style>) and decodes entities; escaping < > &
    shows the string literally.
    """
    return str(value).translate(_PLOT)
