"""User strings come out of ftui.escaping (and every formatter that shows them) as inert text: no tag, link or image."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pandas as pd
import pytest

from ftui.errors import FtuiError
from ftui.escaping import code_block_md, code_md, escape_html, escape_md, escape_md_block, escape_plot
from ftui.runs import RunSnapshot, RunStatus

markdown_it = pytest.importorskip("markdown_it")

IMG = "<img src=http://127.0.0.1:9/x.png>"
COVER = "<a href=http://evil.test style=position:fixed;inset:0>cover</a>"
LINK = "[click](http://evil.test)"
BOLD = "**bold**"
HOSTILE = [
    IMG,
    COVER,
    LINK,
    BOLD,
    "![](http://127.0.0.1:9/y.png)",
    "[x](javascript:alert(1))",
    "<script>alert(1)</script>",
    "`code` _em_ ~~gone~~ $$x$$",
    "a | b",
    "# heading",
    "- item",
    "1. first",
    "see http://evil.test or www.evil.test or me@evil.test",
    "&lt;img src=x&gt;",
    'say "hi" & <b>bye</b>',
    "two\nlines\n\n# and a heading",
]


def render(markdown: str) -> str:
    """CommonMark with raw HTML on and GFM tables and strike-through: what an unescaped string would turn into."""
    return markdown_it.MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def tags(rendered: str) -> set[str]:
    return set(re.findall(r"<([a-z0-9]+)", rendered))


def test_the_renderer_turns_the_hostile_strings_into_elements_when_unescaped():
    """The check below could fail: unescaped, these strings do become links, images, emphasis and code."""
    assert {"img", "a", "strong", "code", "script"} <= tags(render(" ".join(HOSTILE)))


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_markdown_renders_as_one_paragraph_of_literal_text(text):
    out = render(escape_md(text))
    assert tags(out) == {"p"}, out
    shown = html.unescape(re.sub(r"</?p>", "", out)).strip()
    assert shown == " ".join(text.split())  # the text itself, literally (line breaks shown as spaces)


@pytest.mark.parametrize("text", HOSTILE)
def test_escaped_markdown_has_no_link_syntax_and_no_bare_urls(text):
    out = escape_md(text)
    assert "](" not in out.replace("\\](", "") and "<" not in out and ">" not in out
    assert "://" not in out and "www." not in out.lower() and "@" not in out  # GFM would link these by itself


@pytest.mark.parametrize("text", [*HOSTILE, "``a`b``", "`"])
def test_code_span_shows_the_text_as_typed(text):
    out = render(f"x {code_md(text)} y")
    assert tags(out) == {"p", "code"}, out
    code = re.search(r"<code>(.*)</code>", out, re.S)
    assert code and html.unescape(code.group(1)) == " ".join(text.split())


def test_a_whole_document_is_one_code_block():
    card = "# Card\n\n```\nx\n```\n\n" + COVER + "\n\n````\n" + IMG
    out = render(code_block_md(card))
    assert tags(out) == {"pre", "code"}, out
    assert html.unescape(re.search(r"<code[^>]*>(.*)</code>", out, re.S).group(1)).strip() == card


def test_paragraphs_stay_paragraphs_and_inert():
    out = render(escape_md_block(f"{COVER}\n\n- {LINK}\n\n\n{BOLD}"))
    assert tags(out) == {"p"} and out.count("<p>") == 3, out


@pytest.mark.parametrize("text", HOSTILE)
def test_plot_text_has_no_tag_and_decodes_back(text):
    out = escape_plot(text)
    assert "<" not in out and ">" not in out
    assert html.unescape(out) == text  # plotly decodes &lt; &gt; &amp; into the literal characters


def test_html_escape_for_toasts():
    assert escape_html(COVER).startswith("&lt;a href=http://evil.test") and "<" not in escape_html(IMG)
    assert escape_html('"&') == "&quot;&amp;"


# ------------------------------------------------------------------------------ every formatter that takes a user string
def strings_of(obj: Any) -> list[str]:
    """Every string in a plotly figure's JSON (titles, tick texts, category names, legend names, annotations)."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, str):
            found.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)

    walk(json.loads(obj.to_json()))
    return found


def assert_inert_figure(fig: Any) -> None:
    texts = strings_of(fig)
    joined = "\n".join(texts)
    assert "<img" not in joined and "<a " not in joined and "<script" not in joined, joined
    assert any("&lt;img src=http://127.0.0.1:9/x.png&gt;" in t for t in texts), joined  # shown, as text


NAMES = [IMG, COVER, LINK]


def plot_cases() -> dict[str, Any]:
    from ftui import plots

    events = [{"type": "train", "step": 1, "epoch": 0.5, "loss": 0.7}, {"type": "eval", "step": 1, "epoch": 0.5,
              "eval_loss": 0.6, "eval_accuracy": 0.5, "eval_macro_f1": 0.4}]  # fmt: skip
    counts = pd.DataFrame({"split": ["train"] * 3, "label": NAMES, "count": [3, 2, 1]})
    sweep_rows = [
        {"name": IMG, "point": {"checkpoint": COVER, "learning_rate": 1e-4}, "val_score": 0.7, "completed": True},
        {"name": COVER, "point": {"checkpoint": LINK, "learning_rate": 2e-4}, "val_score": 0.6, "completed": True},
    ]
    return {
        "confusion_figure": lambda: plots.confusion_figure([[1, 0, 0], [0, 1, 0], [0, 0, 1]], NAMES),
        "per_label_figure": lambda: plots.per_label_figure([{"label": n, "tp": 1, "fn": 0, "fp": 0} for n in NAMES]),
        "compare_figure": lambda: plots.compare_figure([(IMG, events), (COVER, events)], "eval accuracy"),
        "sweep_figure": lambda: plots.sweep_figure(sweep_rows, "accuracy"),
        "label_distribution_figure": lambda: plots.label_distribution_figure(counts),
    }


@pytest.mark.parametrize("name", list(plot_cases()))
def test_every_chart_that_shows_a_user_string_escapes_it(name):
    assert_inert_figure(plot_cases()[name]())


def assert_inert_markdown(text: str, allowed: set[str] = frozenset({"p", "strong", "code", "ul", "li"})) -> None:
    out = render(text)
    assert tags(out) <= set(allowed), out
    assert "evil.test" in html.unescape(out)  # the hostile text is still there, as text


def test_status_markdown_escapes_the_run_name_notices_error_and_folder():
    from ftui.plots import status_markdown
    from ftui.progress import Progress

    snap = RunSnapshot("r1", COVER, 1, RunStatus.STOPPED, (), Progress(notices=(f"label {IMG} is rare",)),
                       f"bad label {LINK}", {"kept": "best", "kept_step": 3, "model_dir": f"/runs/{IMG}"}, 0.0, 1.0)  # fmt: skip
    assert_inert_markdown(status_markdown(snap))  # the folder is a code span: shown as typed, never as a tag


def test_error_messages_escape_what_they_quote():
    from ftui.ui.common import error_md

    assert_inert_markdown(error_md(FtuiError(f"Run '{COVER}' has no saved model.", f"Pick {LINK} or {IMG}.")))
    assert_inert_markdown(error_md(RuntimeError(COVER)))


def test_explanation_summary_escapes_the_label_and_the_words():
    from ftui.explain import Explanation
    from ftui.ui.explain_view import summary

    ex = Explanation(["[CLS]", "evil.test", COVER, "[SEP]"], [0.0, 0.5, -0.3, 0.0], IMG, 0.9, "fast", None, 1.0, 0.0,
                     False, [True, False, False, True])  # fmt: skip
    assert_inert_markdown(summary(ex))


def test_prediction_lines_escape_label_names():
    from ftui.predict import batch_summary, describe, predictions_frame
    from ftui.tasks import Task, TaskInfo

    multi = TaskInfo(task=Task.MULTI)
    assert_inert_markdown(describe(multi, {COVER: 0.9, IMG: 0.8}))
    assert_inert_markdown(describe(TaskInfo(task=Task.REGRESSION), {COVER: 1.5}))
    frame = predictions_frame(["a", "b"], [{COVER: 0.9, IMG: 0.1}, {COVER: 0.2, IMG: 0.8}])
    assert_inert_markdown(batch_summary(frame, TaskInfo()))


def test_baseline_verdict_escapes_the_baseline_name():
    from ftui.config import RunConfig
    from ftui.experiments import baseline_verdict

    cfg = RunConfig().to_dict()
    base = {"name": COVER, "config": {**cfg, "kind": "baseline"}, "result": {"test_accuracy": 0.9}}
    tuned = {"name": "tuned", "config": cfg, "result": {"test_accuracy": 0.8}}
    assert_inert_markdown(baseline_verdict(tuned, [base, tuned]))


def test_data_tab_label_line_escapes_label_names():
    from ftui.data import DataBundle
    from ftui.ui.data_tab import shape_line

    bundle = DataBundle(splits={}, text_columns=("text",), label_column="label", label_names=[COVER, IMG], columns=[])
    assert_inert_markdown(shape_line(bundle))


def test_model_card_escapes_the_run_name_labels_and_settings():
    from ftui.config import RunConfig, TrainConfig
    from ftui.export import model_card

    cfg = RunConfig(train=TrainConfig(run_name="x")).to_dict()
    rec = {"run_id": "r", "name": f"{COVER}\nbase_model: evil", "label_names": [IMG, LINK], "config": cfg,
           "result": {"test_accuracy": 0.9, "test_macro_f1": 0.9}}  # fmt: skip
    card = model_card(rec, base_limitations=f"{COVER}\n\n{IMG}")
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert "\nbase_model: evil" not in front  # the name is one quoted YAML string, not a new key
    out = render(body)
    assert "<img" not in out and "<a " not in out and "<strong>bold" not in out, out


def test_model_tab_lines_escape_checkpoint_names_and_config_fields():
    from ftui.model_card import ModelSummary
    from ftui.ui.model_tab import summary_md, trainable_md

    s = ModelSummary(f"/models/{COVER}", IMG, LINK, 2, 32, 1000, (400, 400), 100, True, "", "", 128, (BOLD,), (COVER,))
    assert_inert_markdown(summary_md(s))
    assert_inert_markdown(trainable_md(s, 1))
    assert_inert_markdown(trainable_md(ModelSummary("m", "A", COVER, 2, 32, 1000, (400, 400), 100, False, "", ""), 0))
