"""The main path on one screen and nothing stale (issue 23): measured with bounding boxes at 1024x768 and 1400x900."""

from __future__ import annotations

from typing import Any

import pytest
from helpers import md, open_page, tab

pytestmark = pytest.mark.browser

SCREENS = [(1024, 768), (1400, 900)]


@pytest.fixture(scope="module")
def trained(app_server: tuple[str, Any], tiny_bert_dir: Any) -> Any:
    """A completed run of the tiny BERT on the demo data (fast): Predict and Explain answer with it."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    _, engine = app_server
    cfg = RunConfig(
        DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1, run_name="screen")
    )
    run = engine.start_run(cfg)
    assert run.done.wait(180) and engine.join(30) and run.status.value == "completed"
    return run


def box(page: Any, selector: str) -> dict[str, float]:
    """The element's box in viewport coordinates, with the page scrolled to the top (the first screen)."""
    got = page.locator(selector).first.bounding_box()
    assert got is not None, f"{selector} is not rendered"
    return got


def on_first_screen(page: Any, selector: str, height: int) -> None:
    """Wholly inside the first screen: no scrolling needed to see it."""
    assert page.evaluate("() => window.scrollY") == 0
    b = box(page, selector)
    assert b["y"] >= 0 and b["y"] + b["height"] <= height, (selector, b, height)


@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_start_and_the_first_chart_are_on_the_first_screen(browser, app_server, trained, width, height):
    """Case: 16-20 settings stood before Start; at 1400x900 Start was below the fold and the curves needed scrolling."""
    url, _ = app_server
    ctx, page = open_page(browser, url, width, height)
    try:
        tab(page, "4. Train")
        page.wait_for_selector("#loss-plot .js-plotly-plot")  # the finished run's curves, drawn on page load
        on_first_screen(page, "#start", height)
        on_first_screen(page, "#loss-plot", height)
        # The settings that the demo does not need wait, collapsed, below the curves.
        assert not page.locator("#class-weights").is_visible() and not page.locator("#long-text").is_visible()
        assert box(page, "#train-advanced")["y"] > box(page, "#loss-plot")["y"]
    finally:
        ctx.close()


@pytest.mark.parametrize(("width", "height"), SCREENS)
def test_predicts_answer_appears_on_the_first_screen(browser, app_server, trained, width, height):
    """Case: at 1024x768 the answer appeared below the fold, so clicking Predict seemed to do nothing."""
    url, _ = app_server
    ctx, page = open_page(browser, url, width, height)
    try:
        tab(page, "5. Predict")
        page.wait_for_function("() => document.querySelector('#predict-model input').value.startsWith('screen')")
        page.locator("#predict-text textarea").fill("A warm, funny film with a terrific cast.")
        page.click("#predict-btn")
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.match(/positive|negative/)")
        on_first_screen(page, "#predict-btn", height)
        on_first_screen(page, "#predict-label", height)
    finally:
        ctx.close()


def test_multi_label_controls_show_only_for_multi_label_data(browser, app_server, tmp_path):
    """Controls that do not apply to the data's label shape are hidden: the threshold on single-label data."""
    import pandas as pd
    from helpers import upload

    url, _ = app_server
    ctx, page = open_page(browser, url, 1400, 900)
    try:
        tab(page, "4. Train")
        page.locator("#train-advanced").get_by_text("Advanced").first.click()
        page.wait_for_selector("#long-text", state="visible")
        assert not page.locator("#threshold").is_visible()  # the demo data is single-label
        rows = [{"text": f"text number {i}", "labels": ["a", "b", "a|b"][i % 3].split("|")} for i in range(60)]
        path = tmp_path / "multi.jsonl"
        pd.DataFrame(rows).to_json(path, orient="records", lines=True)
        tab(page, "1. Data")
        assert "multi-label" in upload(page, path)
        tab(page, "4. Train")
        page.wait_for_selector("#threshold", state="visible")
    finally:
        ctx.close()


def test_an_old_explanation_never_stays_under_a_new_answer(browser, app_server, trained):
    """Case: "negative 90%" stood above "Why positive (0.919)" from the previous text, also after an error."""
    url, _ = app_server
    ctx, page = open_page(browser, url, 1400, 900)
    try:
        tab(page, "5. Predict")
        page.wait_for_function("() => document.querySelector('#predict-model input').value.startsWith('screen')")
        page.locator("#predict-text textarea").fill("The battery died after two days.")
        page.click("#predict-btn")
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.match(/positive|negative/)")
        page.locator("#explain-method").get_by_text("fast", exact=False).click()
        page.click("#explain-btn")
        page.wait_for_selector("#explain-note:has-text('Why')")
        page.wait_for_selector("#explain-view", state="visible")

        page.locator("#predict-text textarea").fill("Best pasta I have had in years.")
        page.click("#predict-btn")
        # The new answer arrives with no explanation of the old text under it.
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.match(/positive|negative/)")
        page.wait_for_selector("#explain-view", state="hidden")
        assert "Why" not in md(page, "explain-note")

        page.click("#explain-btn")  # explained again, then a request that fails: nothing of the old one stays
        page.wait_for_selector("#explain-note:has-text('Why')")
        page.locator("#predict-text textarea").fill("")
        page.click("#predict-btn")
        page.wait_for_selector("[data-testid=toast-body]", state="visible")  # the error says what is wrong
        page.wait_for_selector("#explain-view", state="hidden")
        assert "Why" not in md(page, "explain-note")
        assert not page.inner_text("#predict-label").strip().startswith(("positive", "negative"))
    finally:
        ctx.close()


def test_empty_tables_show_real_headers_and_sweep_headers_keep_whole_words(browser, app_server):
    """Case: the config diff, per-class scores and mistakes tables showed placeholder headers "1 | 2 | 3" before any
    content; the sweep table's headers broke mid-word ("ra nk")."""
    from helpers import BROKEN_WORDS_JS

    url, _ = app_server
    ctx, page = open_page(browser, url, 1400, 900)
    try:
        tab(page, "6. Runs")
        expected = {
            "config-diff": ["field"],
            "per-class": ["class", "precision", "recall", "f1", "support"],
            "mistakes": ["text", "label", "predicted", "confidence"],
        }
        for elem_id, headers in expected.items():
            page.wait_for_selector(f"#{elem_id} th")
            shown = [h.strip() for h in page.locator(f"#{elem_id} thead th").all_inner_texts() if h.strip()]
            assert shown == headers, (elem_id, shown)
        tab(page, "7. Sweeps")
        page.wait_for_selector("#sweep-table th")
        shown = [h.strip() for h in page.locator("#sweep-table thead th").all_inner_texts() if h.strip()]
        assert shown[:3] == ["rank", "name", "status"], shown
        assert page.evaluate(BROKEN_WORDS_JS, "#sweep-table th") == []
    finally:
        ctx.close()


def test_a_finished_run_leaves_no_started_message_and_no_so_far(browser, app_server, tiny_bert_dir):
    """Case: "Started X" and "Best validation accuracy so far" stayed after the run had ended."""
    url, engine = app_server
    ctx, page = open_page(browser, url, 1400, 900)
    try:
        tab(page, "2. Model")
        page.locator("#model-source").get_by_text("Local folder").click()
        page.locator("#model-local textarea, #model-local input").first.fill(str(tiny_bert_dir))
        tab(page, "4. Train")
        box = page.locator("#epochs input")
        box.fill("1")
        box.press("Tab")
        page.click("#start")
        page.wait_for_selector("#train-message:has-text('Started')")
        page.wait_for_selector("#run-status:has-text('completed')", timeout=180_000)
        page.wait_for_function("() => !document.querySelector('#train-message').innerText.includes('Started')")
        status = md(page, "run-status")
        assert "Best validation accuracy: " in status and "so far" not in status
    finally:
        ctx.close()
