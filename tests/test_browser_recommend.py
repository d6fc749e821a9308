"""In the browser: after long-text data is loaded, the Train tab starts on the recommended settings with one line
each saying why, and one click on "Use recommended settings" puts the defaults back (and another re-applies them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from helpers import TIMEOUT_MS, md, open_advanced, tab, upload

pytestmark = pytest.mark.browser

SCREENS = [(1400, 900), (1024, 768)]


def long_reviews(path: Path) -> Path:
    """Reviews of about 200 words, the verdict last: every one is longer than the default max length (128 tokens)."""
    rows = [{"text": " ".join(["the plot goes on"] * 50 + [["awful", "great"][i % 2]]), "label": ["neg", "pos"][i % 2]}
            for i in range(40)]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def schedule(page: Any) -> str:
    return page.locator("#schedule input:checked").first.get_attribute("value") or ""


def long_text(page: Any) -> str:
    return page.locator("#long-text input").input_value()


@pytest.mark.slow  # about 40 s with the app start and two screens
@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_long_texts_start_the_train_tab_on_the_recommendations_and_one_click_turns_them_off(
    browser, app_server, tmp_path, width, height
):
    url, _ = app_server
    ctx = browser.new_context(viewport={"width": width, "height": height})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(url)
        page.wait_for_selector("#data-status:has-text('Loaded')")
        tab(page, "4. Train")
        assert not page.locator("#recommended").is_visible()  # the short demo reviews call for nothing
        tab(page, "1. Data")
        assert "✓" in upload(page, long_reviews(tmp_path / "long.csv"))
        tab(page, "4. Train")
        page.wait_for_selector("#recommended:has-text('100% of train texts are cut at 128 tokens')")
        said = md(page, "recommended")
        assert "Long texts: head + tail" in said and "Schedule" not in said  # head first did not win on long texts
        assert schedule(page) == "One phase"
        shot = os.environ.get("FTUI_RECOMMEND_SHOT")  # the first screen, to look at
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=shot.format(width=width) if shot else str(tmp_path / "recommended.png"))
        for selector in ("#recommended", "#use-recommended", "#start"):  # what was set, and why, seen before Start
            b = page.locator(selector).first.bounding_box()
            assert b is not None and 0 <= b["y"] and b["y"] + b["height"] <= height, (selector, b)
        open_advanced(page, "train-advanced")
        assert long_text(page) == "head + tail (the start and the end)"
        # One click: every recommendation is undone, and the lines say so.
        page.get_by_label("Use recommended settings").uncheck()
        page.wait_for_selector("#recommended:has-text('Recommendations off')")
        assert long_text(page) == "cut at the max length"
        page.get_by_label("Use recommended settings").check()  # and back
        page.wait_for_selector("#recommended:has-text('Recommended for this data')")
        assert long_text(page) == "head + tail (the start and the end)" and schedule(page) == "One phase"
    finally:
        ctx.close()
