"""In the browser: the length chart says what the chosen long-text mode reads, and a run's warning is on the page."""

import pytest
from helpers import open_advanced

pytestmark = pytest.mark.browser


@pytest.mark.slow  # 48 s with the app start, run by CI after the default suite
def test_length_chart_follows_the_long_text_mode_and_a_run_warns_on_the_page(browser, app_server):
    url, engine = app_server
    ctx = browser.new_context(viewport={"width": 1300, "height": 1300})
    page = ctx.new_page()
    page.set_default_timeout(60_000)
    try:
        page.goto(url)
        page.wait_for_selector("#data-status:has-text('Loaded')")
        title = "document.querySelector('#len-plot .js-plotly-plot').layout.title.text"
        page.wait_for_function(f"() => {{ const el = document.querySelector('#len-plot .js-plotly-plot');"
                               f" return el && el.layout && {title}.includes('will be cut'); }}")  # fmt: skip
        page.get_by_role("tab", name="4. Train").click()
        open_advanced(page, "train-advanced")  # long texts are an advanced setting
        page.click("#long-text input")
        page.locator("ul[role=listbox] li", has_text="head + tail").first.click()
        max_len = page.locator("#max-len input")
        max_len.fill("8")
        max_len.press("Tab")
        page.get_by_role("tab", name="1. Data").click()
        page.wait_for_function(f"() => {title}.includes('longer than 8 tokens') && {title}.includes('first and last')")
        assert "will be cut" not in page.evaluate(f"() => {title}")
        page.get_by_role("tab", name="4. Train").click()
        box = page.locator("#epochs input")
        box.fill("30")
        box.press("Tab")
        page.click("#start")
        # The warning is logged before the first step: on the page while the run trains.
        page.wait_for_selector("#run-status:has-text('longer than the max length (8 tokens)')")
        assert "head + tail" in page.inner_text("#run-status")
        page.click("#stop")
        page.wait_for_selector("#run-status:has-text('stopped')")
        run = engine.runs()[-1]
        assert [e["kind"] for e in run.events() if e["type"] == "warning"] == ["truncation"]
    finally:
        engine.stop_run()
        engine.join(60)
        ctx.close()
