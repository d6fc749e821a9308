"""The Train tab's recommendation panel, without a browser: which widget values it sets, what it puts back, and the
lines it shows (the browser test clicks it: tests/test_browser_recommend.py)."""

from ftui.ui.recommend_panel import RecommendPanel, _apply, _undo, lines_md

SCHEDULE = {"one-phase": "One phase", "two-phase": "Head first, then fine-tune"}
RECS = [["long_text", "head_tail", "64% of train texts are cut at 256 tokens"], ["schedule", "two-phase", "long texts"]]
DEFAULTS = {"long_text": "truncate", "schedule": "One phase", "class_weights": "none"}


def panel() -> RecommendPanel:
    return RecommendPanel(row=None, use=None, lines=None, state=None, shown={"schedule": SCHEDULE})


def test_recommendations_set_the_widgets_still_on_their_defaults_and_undo_puts_them_back() -> None:
    values, applied = _apply(RECS, dict(DEFAULTS), DEFAULTS, panel())
    assert values == {"long_text": "head_tail", "schedule": "Head first, then fine-tune", "class_weights": "none"}
    assert applied == {"long_text": ["truncate", "head_tail"], "schedule": ["One phase", "Head first, then fine-tune"]}
    assert _undo(applied, values) == DEFAULTS
    # A value the user picked afterwards is theirs: undo leaves it.
    assert _undo(applied, {**values, "long_text": "chunks"})["long_text"] == "chunks"


def test_a_setting_the_user_chose_is_kept_and_the_line_says_so() -> None:
    values, applied = _apply(RECS, {**DEFAULTS, "long_text": "chunks"}, DEFAULTS, panel())
    assert values["long_text"] == "chunks" and set(applied) == {"schedule"}
    text = lines_md(RECS, applied, True)
    assert "Long texts: **head + tail** (your own choice is kept)" in text
    assert "Schedule: **head first, then fine-tune** — long texts" in text


def test_the_lines_say_whether_the_recommendations_are_on() -> None:
    on = lines_md(RECS, {"long_text": [], "schedule": []}, True)
    assert on.startswith("**Recommended for this data**") and "64% of train texts are cut at 256 tokens" in on
    assert lines_md(RECS, {}, False).startswith("**Recommendations off:**")
    assert lines_md([], {}, True) == ""  # nothing to recommend: the row is hidden
