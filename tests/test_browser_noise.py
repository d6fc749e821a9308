"""Noise in a real browser: two tiny runs of one config compared on the same test texts read "within noise"; the
evaluation shows the test intervals and the small-validation flag, and the table the intervals column."""

import pytest
from helpers import choose, finished_tiny_run, md, open_page, serve, tab

from ftui import significance as sig

pytestmark = pytest.mark.browser


@pytest.mark.slow  # two runs trained through the browser: slow set
def test_compare_two_runs_says_within_noise_and_the_evaluation_shows_intervals(browser, tmp_path, tiny_bert_dir):
    demo, engine = serve(tmp_path / "runs")
    try:
        a = finished_tiny_run(engine, tiny_bert_dir, "noise-a")
        b = finished_tiny_run(engine, tiny_bert_dir, "noise-b")  # the same config and seed: a twin of a
        pa, pb = engine.test_predictions(a.run_id), engine.test_predictions(b.run_id)
        pairs = sig.compare_runs(pb, pa)
        assert pairs is not None and pairs[0].noise, pairs  # what the page must then say
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "6. Runs")
        page.click("#runs-refresh")
        page.wait_for_selector("#runs-table:has-text('noise-b')")
        headers = [h.strip() for h in page.locator("#runs-table th").all_inner_texts() if h.strip()]
        assert "test acc 95% CI" in headers, headers
        n = len(pa)
        cell = "{:.3f}–{:.3f} (n={:,})".format(*sig.wilson(int(pa["correct"].sum()), n), n)
        page.wait_for_selector(f"#runs-table:has-text('{cell}')")

        choose(page, "runs-select", "noise-a")
        choose(page, "runs-select", "noise-b")
        page.click("#compare-btn")
        page.wait_for_selector(":text('paired on the same test texts')")
        text = page.inner_text("body")
        line = next(t for t in text.splitlines() if t.startswith("noise-b vs noise-a"))
        assert f"on the same {n} test texts: accuracy {100 * pairs[0].diff:+.1f} pts: within noise" in line, line
        assert f"exact McNemar p = {pairs[0].p:.2g}" in line, line

        choose(page, "run-pick", "noise-a")
        page.wait_for_selector("#eval-summary:has-text('95% intervals')")
        summary = md(page, "eval-summary")
        assert sig.interval_text(sig.test_intervals(pa)[0]) in summary, summary
        flag = sig.result_flag(a.result)  # the demo's validation split is a few dozen texts: far too few
        assert a.result["val_size"] < 100 and flag and flag in summary, summary
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()
