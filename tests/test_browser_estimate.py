"""In the browser: the Train tab's time estimate under Start at 1024x768 and 1400x900, its time-limit warning, and
the Sweeps tab's per-run and total line."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from helpers import fill_number, md, open_advanced, open_page, tab

pytestmark = pytest.mark.browser


@pytest.mark.slow  # the packaged MiniLM timed once (seconds), the app started once: about 40 s on the 2-core machine
def test_the_estimate_line_under_start_and_in_sweeps(browser: Any, app_server: tuple[str, Any], tmp_path: Path) -> None:
    url, _ = app_server
    shots = Path(os.environ.get("FTUI_ESTIMATE_SHOTS") or tmp_path)  # set it to keep the screenshots and look at them
    ctx, page = open_page(browser, url, 1024, 768)
    try:
        tab(page, "4. Train")
        assert "Estimate time" in md(page, "train-estimate")  # nothing timed yet: the line says how to ask
        page.click("#train-estimate-button")
        page.wait_for_selector("#train-estimate:has-text('for the run on this CPU')")
        said = md(page, "train-estimate")
        assert "per epoch" in said and "just now" in said
        start, line = page.locator("#start").bounding_box(), page.locator("#train-estimate").bounding_box()
        assert start["y"] < line["y"] and line["y"] + line["height"] <= 768  # under Start, on the first screen
        page.screenshot(path=f"{shots}/estimate-1024.png")
        # A time limit far under one epoch: the line warns at once, from the timing just made (nothing timed again).
        open_advanced(page, "train-advanced")
        fill_number(page, "max-minutes", "0.01")
        page.wait_for_selector("#train-estimate:has-text('ends the run before one epoch')")
        assert "timed" in md(page, "train-estimate")
        tab(page, "7. Sweeps")
        page.fill("#sweep-lr textarea", "1e-4, 3e-4")
        page.click("#sweep-estimate-button")
        page.wait_for_selector("#sweep-estimate:has-text('for the 2 runs one after another')")
        assert "per run" in md(page, "sweep-estimate")
        page.screenshot(path=f"{shots}/estimate-sweep-1024.png")
    finally:
        ctx.close()
    ctx, page = open_page(browser, url, 1400, 900)
    try:
        tab(page, "4. Train")
        page.click("#train-estimate-button")
        page.wait_for_selector("#train-estimate:has-text('for the run on this CPU')")
        line, plot = page.locator("#train-estimate").bounding_box(), page.locator("#loss-plot").bounding_box()
        assert line["y"] + line["height"] <= 900 and line["y"] < plot["y"]
        page.screenshot(path=f"{shots}/estimate-1400.png")
    finally:
        ctx.close()
