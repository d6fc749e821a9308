"""Baselines first, in a real browser (1400x900): Start on new data fits the TF-IDF baseline beside the run; its score is
the labelled dashed line on the run's accuracy chart, and a run that ends below it is told so, with what tends to help."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import FILLER, TIMEOUT_MS, choose, fill_number, md, open_advanced, tab, upload, wind_down

pytestmark = [pytest.mark.browser, pytest.mark.slow]  # the packaged MiniLM trains: about a minute on the 2-core machine

SHOTS = Path("/tmp/ftui-shots")  # looked at with an image viewer when the page changes


def obvious_reviews(path: Path, n: int = 300) -> Path:
    """Reviews whose class is one word pair among filler: words alone (TF-IDF) get every test text right."""
    rng = np.random.default_rng(0)
    rows = [{"text": " ".join([*rng.choice(FILLER, 6), *(("great", "wonderful") if i % 2 else ("awful", "boring"))]),
             "label": "pos" if i % 2 else "neg"} for i in range(n)]  # fmt: skip
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_the_baseline_is_a_labelled_line_on_the_chart_and_a_run_below_it_is_told_what_helps(browser, tmp_path):
    from helpers import serve

    from ftui.settings import Settings

    demo, engine = serve(tmp_path / "runs", Settings())  # a deployment's default: the automatic baseline is on
    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(demo.local_url)
        page.wait_for_selector("#data-status:has-text('Loaded')")
        assert "2 classes" in upload(page, obvious_reviews(tmp_path / "obvious.csv"))
        tab(page, "4. Train")
        open_advanced(page, "train-advanced")
        assert page.locator("#auto-baseline input[type=checkbox]").is_checked()  # on unless the user turns it off
        fill_number(page, "lr", "1e-7")  # a run that cannot learn in time: it must end below the baseline
        fill_number(page, "epochs", "0.2")
        page.click("#start")
        page.wait_for_selector("#train-message:has-text('The TF-IDF baseline runs beside it')")
        page.wait_for_selector("#run-status:has-text('completed')", timeout=300_000)
        label = page.locator("#acc-plot .annotation-text", has_text="TF-IDF baseline")
        label.wait_for()
        assert label.text_content() == "TF-IDF baseline 1.00 (accuracy)"  # its validation score: every text right
        dashed = page.evaluate(
            "() => document.querySelector('#acc-plot .js-plotly-plot').layout.shapes.map(s => [s.line.dash, s.y0])"
        )
        assert dashed == [["dash", 1.0]]
        status = md(page, "run-status")
        assert "beats this fine-tuned model" in status or "does not beat the baseline" in status, status
        for tip in ("What tends to help", "more epochs", "--long-text chunks", "--schedule two-phase",
                    "a larger checkpoint", "Hugging Face Jobs"):  # fmt: skip
            assert tip in status, tip
        SHOTS.mkdir(exist_ok=True)
        page.locator("#acc-plot").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "baseline-line-1400x900.png"))

        tab(page, "6. Runs")  # the Runs tab: "vs base" in the table, the same line on the Compare chart of accuracy
        page.click("#runs-refresh")
        page.wait_for_selector("#runs-table:has-text('baseline-tfidf-obvious')")
        assert "pts" in page.inner_text("#runs-table")
        choose(page, "runs-select", "all-MiniLM")
        page.click("#compare-btn")
        compared = page.locator("#compare-2 .annotation-text", has_text="TF-IDF baseline")
        compared.wait_for()
        assert compared.text_content() == "TF-IDF baseline 1.00 (accuracy)"
        page.locator("#compare-2").scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / "baseline-compare-1400x900.png"))
        ctx.close()
    finally:
        wind_down(engine, demo, 120)
