"""Issue 25's done-when path in a real browser against the fake Hub (tests/fake_jobs_hub.py): Start with "Hugging Face
Jobs" chosen → the job is created → the curves stream from the shared runs folder → Stop → the job is cancelled and
the run stopped with a snapshot → Resume → Predict answers with the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import choose, fill_number, md, open_page, tab

from ftui.recipes import recipe_of
from ftui.run_layout import snapshot_path
from tests.fake_jobs_hub import BUCKET, TOKEN, serving

pytestmark = [pytest.mark.browser, pytest.mark.slow]
JOB_MS = 240_000  # a job's process starts Python, imports torch and loads the model on a shared 2-core machine


def _serve(bucket: Path) -> tuple[Any, Any]:
    from ftui.config import DataConfig, ModelConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings
    from ftui.ui import create_app, launch_kwargs

    env = {"FTUI_BUCKET": BUCKET, "FTUI_BUCKET_DIR": str(bucket), "FTUI_RUNS_STORAGE": "network"}
    engine = Engine(runs_dir=bucket / "runs", hub_status=HubStatus(True, "the fake Hub"), settings=Settings.from_env(env),
                    adopt_queue=True)  # fmt: skip
    # Online, the page would start on Hub data and a Hub checkpoint, which the fake Hub does not serve: the bundled
    # demo and the packaged MiniLM instead (what a user picks in the Data and Model tabs).
    engine.default_data = DataConfig  # type: ignore[method-assign]
    engine.default_model = ModelConfig  # type: ignore[method-assign]
    demo = create_app(engine)
    demo.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=None, quiet=True, **launch_kwargs())
    return demo, engine


def _until(condition: Any, seconds: float = 60.0) -> None:
    """Poll a condition of the job's process (another process: nothing to join) until it holds."""
    import time

    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def _points(page: Any, elem_id: str) -> int:
    return page.evaluate(
        "(id) => { const el = document.querySelector(`#${id} .js-plotly-plot`);"
        " return el && el.data && el.data.length ? el.data[0].x.length : 0; }",
        elem_id,
    )


def test_start_on_jobs_streams_curves_stop_cancels_with_a_snapshot_resume_and_predict(
    browser: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with serving(tmp_path, monkeypatch) as hub:
        monkeypatch.delenv("HF_TOKEN")  # the page's token pays, nothing from this process's environment
        demo, engine = _serve(hub.bucket)
        try:
            ctx, page = open_page(browser, demo.local_url)
            page.locator("#token-box").get_by_text("Hub token").click()
            token_box = page.locator("#token-box input[type=password]")
            token_box.fill(TOKEN)
            token_box.press("Tab")
            tab(page, "4. Train")
            fill_number(page, "epochs", "50")  # far more than the time cap allows: the run is still going at Stop
            choose(page, "train-where", "Hugging Face Jobs")
            page.wait_for_selector("#train-estimate:has-text('Pays:')")
            fill_number(page, "train-minutes", "1")
            page.wait_for_selector("#train-estimate:has-text('Up to $0.27')")  # a10g-small, $1.00/h x (1 + 15) min
            estimate = md(page, "train-estimate")
            assert "live from Hugging Face" in estimate and "alice (the token you pasted)" in estimate, estimate

            page.click("#start")
            page.wait_for_selector("#train-message:has-text('Submitted job')")
            (job,) = hub.jobs.values()
            assert job.spec["flavor"] == "a10g-small" and job.spec["timeoutSeconds"] == 16 * 60
            page.wait_for_selector("#run-status:has-text('Hugging Face Jobs')")
            page.wait_for_function("() => document.querySelector('#run-status').innerText.includes('running')", timeout=JOB_MS)
            page.wait_for_function(
                "() => { const el = document.querySelector('#loss-plot .js-plotly-plot');"
                " return el && el.data && el.data.length && el.data[0].x.length >= 1; }",
                timeout=JOB_MS,
            )  # the curves stream from the job's run on the bucket
            first = _points(page, "loss-plot")

            page.click("#stop")
            page.wait_for_selector("#train-message:has-text('Stopping')")
            page.wait_for_function("() => document.querySelector('#run-status').innerText.includes('cancelled')", timeout=JOB_MS)
            assert job.stage == "CANCELED"
            _until(lambda: job.proc is not None and job.proc.poll() is not None)  # SIGTERM ended the job's process
            # the job's train fits the TF-IDF baseline beside the model on new data: the model's run is the other one
            (run,) = [r for r in engine.runs() if not recipe_of(r.config).reference]
            assert run.status.value == "stopped" and snapshot_path(run.out_dir).is_file()
            assert "stopped" in md(page, "run-status") and _points(page, "loss-plot") >= first

            tab(page, "6. Runs")
            page.click("#runs-refresh")
            choose(page, "run-pick", run.name)
            page.get_by_role("tab", name="Manage").click()
            page.click("#resume-run")
            page.wait_for_selector("#manage-status:has-text('Resum')")
            tab(page, "4. Train")
            page.wait_for_function("() => document.querySelector('#run-status').innerText.includes('completed')", timeout=JOB_MS)
            assert engine.manager.get(run.run_id).status.value == "completed"

            tab(page, "5. Predict")
            choose(page, "predict-model", run.name)  # the model's run (the baseline beside it is newer)
            page.wait_for_function("(name) => document.querySelector('#predict-model input').value.includes(name)", arg=run.name)
            page.fill("#predict-text textarea", "The staff were rude and the room was filthy.")
            page.click("#predict-btn")
            page.wait_for_function(
                "() => { const t = document.querySelector('#predict-label').innerText;"
                " return t.includes('negative') && t.includes('positive'); }"
            )
            ctx.close()
        finally:
            engine.stop_run()
            engine.join(60)
            demo.close()
