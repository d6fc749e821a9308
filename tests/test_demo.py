"""The 3-minute stakeholder demo of docs/demo.md, clicked through in Chromium at 1400x900 on a fresh runs folder: data,
baselines, a training run, the best model answering with its explanation, every model compared. With
FTUI_SCREENSHOT=1 it refreshes the pictures docs/demo.md and the README show, so script and pictures never drift."""

import os
import shutil

import pytest
from helpers import REPO, choose, md, tab, wind_down

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_the_three_minute_demo_walk_through(browser, tmp_path):
    from ftui.engine import Engine
    from ftui.hub import check_hub
    from ftui.ui import create_app, launch_kwargs

    engine = Engine(runs_dir=tmp_path / "runs", hub_status=check_hub())  # FTUI_OFFLINE: the line a user offline sees
    demo = create_app(engine)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **launch_kwargs())
    shots = []

    def shot(name: str) -> None:  # the first screen only: what the audience sees without scrolling
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path))
        shots.append(path)

    try:
        ctx = browser.new_context(viewport={"width": 1400, "height": 900})
        page = ctx.new_page()
        page.set_default_timeout(60_000)
        page.goto(demo.local_url)
        # 1. The data: the bundled demo reviews, previewed on page load
        page.wait_for_selector("#data-status:has-text('Loaded')")
        assert "negative, positive" in md(page, "data-status")
        shot("demo-1-data")
        # 2. The number to beat, then 3. a training run with the defaults (queued behind the baselines)
        tab(page, "4. Train")
        page.click("#baselines")
        page.wait_for_selector("#train-message:has-text('NBSVM and frozen embeddings are queued after it')")
        page.click("#start")
        page.wait_for_function(
            "() => { const t = document.querySelector('#run-status').innerText;"
            " return t.includes('-f0-') && t.includes('completed'); }",
            timeout=300_000,
        )
        status = md(page, "run-status")
        assert "baseline" in status  # the verdict against the best baseline on the same test set
        tuned = next(r for r in engine.runs() if r.config.kind == "finetune")
        assert tuned.status.value == "completed" and tuned.result["test_accuracy"] >= 0.75, tuned.result
        page.evaluate("() => window.scrollTo(0, 0)")
        shot("demo-2-train")
        # 4. Predict and why: the best model on this data answers
        tab(page, "5. Predict")
        page.wait_for_function("() => document.querySelector('#predict-model input').value.includes('best on this data')")
        page.fill("#predict-text textarea", "The staff were lovely and the room was spotless.")
        page.click("#predict-btn")
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.includes('positive')")
        page.click("#explain-btn")
        page.wait_for_selector("#explain-note:has-text('Why')", timeout=120_000)
        page.wait_for_selector("#explain-view", state="visible")
        shot("demo-3-predict")
        # 5. Compare: every model on one test set, then the fine-tuned run's evaluation
        tab(page, "6. Runs")
        page.wait_for_function("(name) => document.querySelector('#runs-table').innerText.includes(name)", arg=tuned.name[:20])
        assert page.inner_text("#runs-table").count("completed") == 4  # three baselines and the fine-tuned run
        assert "pts" in page.inner_text("#runs-table")  # the fine-tuned run against the best baseline
        page.evaluate("() => window.scrollTo(0, 0)")
        shot("demo-4-runs")
        choose(page, "run-pick", tuned.name)
        page.wait_for_selector("#eval-summary:has-text('Test accuracy')")
        ctx.close()
    finally:
        wind_down(engine, demo)
    if os.environ.get("FTUI_SCREENSHOT"):
        for path in shots:
            shutil.copy(path, REPO / "assets" / path.name)
        shutil.copy(tmp_path / "demo-2-train.png", REPO / "assets" / "screenshot.png")
