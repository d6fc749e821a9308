"""The experiments path in a real browser: three runs, an app restart, compare two, evaluate one, download it."""

import os
import re
import shutil
import zipfile

import pytest
from helpers import REPO, choose, fill_number, md, open_advanced, open_page, serve, tab, wind_down

pytestmark = pytest.mark.browser


def set_slider(page, elem_id: str, value: str, attempts: int = 5) -> None:
    """Set a Gradio slider through its range handle and wait until its number box agrees.

    Both views agree only once the component's own value is set (a number typed and Enter pressed could lose the race
    with a click that follows). On a loaded machine the first input event can land before the component listens (CI
    saw the box stay at 1 for 60 s), so the handle is set again until the box shows the value.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    handle = page.locator(f"#{elem_id} input[type=range]")
    check = f"() => document.querySelector('#{elem_id} input[type=number]').value === '{value}'"
    for _ in range(attempts):
        handle.fill(value)
        try:
            page.wait_for_function(check, timeout=10_000)
            return
        except PlaywrightTimeout:
            continue
    raise AssertionError(f"slider #{elem_id} never showed {value} after {attempts} tries")


def trace_lengths(page, elem_id: str) -> list[int]:
    return page.evaluate(
        """(id) => { const el = document.querySelector(`#${id} .js-plotly-plot`);
                     return el && el.data ? el.data.map(t => (t.x || t.z || []).length) : []; }""",
        elem_id,
    )


@pytest.mark.slow  # several runs trained through the browser: in the slow set (CI runs it)
def test_three_runs_survive_a_restart_and_are_compared_evaluated_downloaded(browser, tmp_path):
    runs_dir = tmp_path / "runs"
    demo, engine = serve(runs_dir)
    ctx, page = open_page(browser, demo.local_url)
    tab(page, "6. Runs")  # no runs yet: the table still has its real headers (case: placeholder headers "1 2 3")
    page.wait_for_selector("#runs-table th")
    headers = [h.strip() for h in page.locator("#runs-table th").all_inner_texts() if h.strip()]
    assert headers[:3] == ["run", "status", "test acc"], headers
    tab(page, "4. Train")
    fill_number(page, "epochs", "1")
    open_advanced(page, "train-advanced")  # the run name is an advanced setting
    for name, lr in (("slow-lr", "2e-5"), ("mid-lr", "5e-5"), ("fast-lr", "1e-4")):
        fill_number(page, "lr", lr)
        box = page.locator("#run-name textarea, #run-name input").first
        box.click()  # typed as a user does: a single synthetic input event was seen lost under load
        box.press("Control+a")
        box.press_sequentially(name)
        box.press("Tab")
        page.click("#start")
        page.wait_for_selector(f"#run-status:has-text('{name}')")
        page.wait_for_selector("#run-status:has-text('completed')", timeout=120_000)
    ctx.close()
    demo.close()

    # Restart: a new engine and app on the same runs folder.
    demo, engine = serve(runs_dir)
    try:
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "6. Runs")
        page.wait_for_function(
            """() => { const t = document.querySelector('#runs-table').innerText;
                       return ['slow-lr', 'mid-lr', 'fast-lr'].every(n => t.includes(n)); }"""
        )
        assert page.inner_text("#runs-table").count("completed") >= 3

        choose(page, "runs-select", "slow-lr")
        choose(page, "runs-select", "fast-lr")
        page.click("#compare-btn")
        page.wait_for_function(
            "() => { const el = document.querySelector('#compare-2 .js-plotly-plot');"
            " return el && el.data && el.data.length === 2 && el.data.every(t => t.x.length >= 1); }"
        )
        assert all(n >= 1 for n in trace_lengths(page, "compare-0"))  # train loss curves of both runs
        page.wait_for_function("() => document.querySelector('#config-diff').innerText.includes('train.learning_rate')")
        diff = page.inner_text("#config-diff")
        assert "train.run_name" in diff and "model.checkpoint" not in diff

        choose(page, "run-pick", "fast-lr")
        page.wait_for_selector("#eval-summary:has-text('Test accuracy')")
        page.wait_for_function(
            "() => { const el = document.querySelector('#confusion .js-plotly-plot');"
            " return el && el.data && el.data[0].type === 'heatmap'; }"
        )
        cells = page.evaluate("() => document.querySelector('#confusion .js-plotly-plot').data[0].z.flat()")
        run = next(r for r in engine.runs() if r.name == "fast-lr")
        preds = engine.test_predictions(run.run_id)
        assert sum(cells) == len(preds)
        assert "misclassified" in md(page, "eval-summary")
        wrong = preds[~preds["correct"]].sort_values("confidence", ascending=False)
        if len(wrong):
            page.wait_for_function(
                "(t) => document.querySelector('#mistakes').innerText.includes(t)", arg=wrong.iloc[0]["text"][:30]
            )

        page.get_by_role("tab", name="Export").click()
        page.click("#zip-btn")
        page.wait_for_selector("#export-status:has-text('Zip ready')")
        with page.expect_download() as info:
            page.locator("#zip-file a").first.click()
        saved = tmp_path / "download.zip"
        info.value.save_as(saved)
        names = zipfile.ZipFile(saved).namelist()
        assert "model/labels.json" in names and "model/README.md" in names and "metrics.json" in names
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow  # several runs trained through the browser: in the slow set (CI runs it)
def test_the_course_method_baselines_two_phase_and_one_phase_compared(browser, tmp_path):
    """Baselines first, then transfer learning followed by fine-tuning, then plain fine-tuning: all five runs in the
    Runs tab with their test scores and their difference to the best baseline."""
    demo, engine = serve(tmp_path / "runs")
    try:
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "4. Train")
        page.click("#baselines")
        page.wait_for_selector("#train-message:has-text('NBSVM and frozen embeddings are queued after it')")
        page.wait_for_function(
            "() => document.querySelector('#run-status').innerText.includes('baseline-embeddings')"
            " && document.querySelector('#run-status').innerText.includes('completed')",
            timeout=180_000,
        )
        baselines = [r for r in engine.runs() if r.config.kind == "baseline"]
        assert [r.status.value for r in baselines] == ["completed", "completed", "completed"]
        fill_number(page, "epochs", "1")
        page.locator("#schedule").get_by_text("Head first, then fine-tune").click()
        page.wait_for_selector("#head-epochs input")  # its settings appear with the choice
        page.click("#start")
        page.wait_for_function(
            "() => { const t = document.querySelector('#run-status').innerText;"
            " return t.includes('2phase') && t.includes('completed'); }",
            timeout=180_000,
        )
        page.wait_for_function(  # the phase boundary is drawn on the live chart
            "() => { const el = document.querySelector('#acc-plot .js-plotly-plot');"
            " return el && (el.layout.annotations || []).some(a => a.text.includes('finetune begins')); }"
        )
        assert "baseline" in md(page, "run-status")  # the verdict against the best baseline
        page.locator("#schedule").get_by_text("One phase", exact=True).click()
        page.click("#start")
        page.wait_for_function(
            "() => { const t = document.querySelector('#run-status').innerText;"
            " return t.includes('completed') && t.includes('-f0-') && !t.includes('2phase'); }",
            timeout=180_000,
        )
        tab(page, "6. Runs")
        page.click("#runs-refresh")
        page.wait_for_function(
            """() => { const t = document.querySelector('#runs-table').innerText;
                       return ['TF-IDF', 'embeddings', 'head→fine-tune', 'fine-tune'].every(m => t.includes(m)); }"""
        )
        frame = __import__("ftui.experiments", fromlist=["runs_frame"]).runs_frame(engine.run_headers())
        tuned = frame[frame["method"].isin(["fine-tune", "head→fine-tune"])]
        assert len(tuned) == 2 and tuned["delta_vs_baseline"].notna().all() and frame["test_acc"].notna().all()
        table = page.inner_text("#runs-table")
        for delta in tuned["delta_vs_baseline"]:
            assert f"{100 * delta:+.1f} pts" in table  # the difference to the best baseline, in points
        two_phase = next(r for r in engine.runs() if r.config.train.schedule == "two-phase")
        choose(page, "runs-select", two_phase.name)
        choose(page, "runs-select", "baseline-tfidf")
        page.click("#compare-btn")
        page.wait_for_selector(":text('Against the best baseline on the same test set')")
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow  # 37 s, run by CI after the default suite
def test_adapt_then_fine_tune_from_each_adapted_checkpoint(browser, tmp_path):
    """Adapt the packaged checkpoint on the demo texts, train a tokenizer and a tiny model from scratch, fine-tune a
    classifier from each adapted checkpoint, and compare them in the Runs tab."""
    demo, engine = serve(tmp_path / "runs")
    try:
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "3. Adapt")
        fill_number(page, "adapt-block", "64")
        page.click("#corpus-preview-btn")
        page.wait_for_selector("#corpus-preview:has-text('320 documents')")
        page.click("#adapt-start")
        page.wait_for_selector("#adapt-status:has-text('completed')", timeout=180_000)
        page.wait_for_function(
            "() => { const el = document.querySelector('#mlm-perplexity .js-plotly-plot');"
            " return el && el.data && el.data[0].x.length >= 3; }"  # the starting point and the evaluations
        )
        assert "Held-out perplexity" in md(page, "adapt-status")
        # The adapted checkpoint is selected in the Model tab at once: one click away, no Refresh (case: the list was
        # empty until its Refresh was pressed, the status said only "in the Model tab").
        page.wait_for_selector("#adapt-message:has-text('is selected in the Model tab')")
        ((label, folder),) = engine.adapted_checkpoints()
        tab(page, "2. Model")
        assert page.locator("#model-source input:checked").first.get_attribute("value") == "Local folder"
        assert page.locator("#model-local textarea, #model-local input").first.input_value() == folder
        assert page.locator("#adapted input").input_value() == label
        tab(page, "3. Adapt")
        page.locator("#adapt-mode").get_by_text("From scratch", exact=False).click()
        page.wait_for_selector("#preset-size:has-text('M parameters')")  # the preset's size is shown
        fill_number(page, "adapt-lr", "0.0005")
        fill_number(page, "adapt-epochs", "3")
        page.click("#adapt-start")
        page.wait_for_function(
            "() => { const t = document.querySelector('#adapt-status').innerText;"
            " return t.includes('scratch') && t.includes('completed'); }",
            timeout=180_000,
        )
        adapted = engine.adapted_checkpoints()
        assert len(adapted) == 2
        tab(page, "2. Model")  # the newest adapted checkpoint is selected; both are listed without a Refresh
        classifiers = []
        for label, folder in adapted:
            choose(page, "adapted", label.split(" (")[0])
            page.wait_for_function("(f) => document.querySelector('#model-local textarea, #model-local input').value === f",
                                   arg=folder)  # fmt: skip
            tab(page, "4. Train")
            fill_number(page, "epochs", "1")
            before = engine.current_run()
            page.click("#start")
            page.wait_for_function(  # a new run's name in the status, then its end
                "(old) => { const t = document.querySelector('#run-status').innerText;"
                " return !t.includes(old) && t.includes('model-demo') && t.includes('completed'); }",
                arg=before.name,
                timeout=180_000,
            )
            classifiers.append(engine.current_run())
            tab(page, "2. Model")
        assert all(r.status.value == "completed" for r in classifiers) and len({r.run_id for r in classifiers}) == 2
        tab(page, "6. Runs")
        page.click("#runs-refresh")
        page.wait_for_function("() => document.querySelector('#runs-table').innerText.split('adapted:').length >= 3")
        for run in classifiers:
            choose(page, "runs-select", run.name)
        page.click("#compare-btn")
        page.wait_for_function("() => document.querySelector('#config-diff').innerText.includes('model.checkpoint')")
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow  # several runs trained through the browser: in the slow set (CI runs it)
def test_explain_a_mistake_and_a_prediction_then_serve_the_onnx_export(browser, tmp_path):
    """Runs tab: click a misclassified example to see why; export the run to ONNX; Predict with ONNX Runtime and
    explain the answer with coloured words."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    demo, engine = serve(tmp_path / "runs")
    try:
        cfg = RunConfig(DataConfig(), ModelConfig(), TrainConfig(epochs=1, learning_rate=1e-4, run_name="why-run"))
        run = engine.start_run(cfg)
        assert run.done.wait(300) and engine.join(30) and run.status.value == "completed"
        preds = engine.test_predictions(run.run_id)
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "6. Runs")
        choose(page, "run-pick", "why-run")
        page.wait_for_selector("#eval-summary:has-text('Test accuracy')")
        wrong = preds[~preds["correct"]].sort_values("confidence", ascending=False, kind="stable")
        if len(wrong):  # the demo run misclassifies a few test reviews; click the first
            page.wait_for_function(
                "(t) => document.querySelector('#mistakes').innerText.includes(t)", arg=wrong.iloc[0]["text"][:30]
            )
            page.locator("#mistakes span.text:visible", has_text=wrong.iloc[0]["text"][:30]).first.click()
            page.wait_for_selector("#mistake-explain-note:has-text('True label')")
            assert f"True label: {wrong.iloc[0]['label']}" in md(page, "mistake-explain-note")
            assert f"Why {wrong.iloc[0]['predicted']}" in md(page, "mistake-explain-note")
            first_word = wrong.iloc[0]["text"].split()[0].lower().strip(".,!?\"'")
            assert first_word[:3] in page.inner_text("#mistake-explain").lower()

        page.get_by_role("tab", name="Export").click()
        page.click("#onnx-btn")
        page.wait_for_selector("#export-status:has-text('ONNX export ready')", timeout=180_000)
        status = md(page, "export-status")
        assert re.search(r"ONNX Runtime fp32\s+100\.0%", status), status  # fp32 labels all equal to PyTorch's

        tab(page, "5. Predict")
        choose(page, "predict-runtime", "ONNX Runtime int8")
        page.locator("#predict-text textarea").fill("A warm, funny film with a terrific cast. I loved every minute.")
        page.click("#predict-btn")
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.match(/positive|negative/)")
        label = page.inner_text("#predict-label")
        expected = engine.predict(
            "A warm, funny film with a terrific cast. I loved every minute.", f"run:{run.run_id}", "onnx-int8"
        )
        assert max(expected, key=expected.__getitem__) in label

        page.click("#explain-btn")
        page.wait_for_selector("#explain-note:has-text('convergence delta')")
        view = page.inner_text("#explain-view").lower()
        assert "terrific" in view and "loved" in view
        colours = page.evaluate(
            "() => [...document.querySelectorAll('#explain-view .score-token')].map(s => getComputedStyle(s).backgroundColor)"
        )
        assert len(set(colours)) > 2, colours  # words coloured by score, not one flat colour
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow  # several runs trained through the browser: in the slow set (CI runs it)
def test_queue_a_run_then_a_sweep_and_serve_its_best(browser, tmp_path):
    """Start while a run trains queues the next (cancel it); a sweep of two learning rates queues two runs that train
    after the Stop; the sweep view ranks them, and its best run goes to Predict."""
    demo, engine = serve(tmp_path / "runs")
    ctx, page = open_page(browser, demo.local_url)
    try:
        tab(page, "4. Train")
        fill_number(page, "epochs", "30")
        page.click("#start")
        page.wait_for_selector("#run-status:has-text('running')")
        page.wait_for_function("() => document.querySelector('#start').innerText.includes('Add to queue')")
        page.click("#start")
        page.wait_for_selector("#train-message:has-text('Queued (next)')")
        page.wait_for_selector("#queue-summary:has-text('1 run(s) waiting')")
        assert "this app" in page.inner_text("#queue-table")
        choose(page, "queue-pick", "#1")
        page.click("#queue-cancel")
        page.wait_for_selector("#queue-message:has-text('Cancelled queued run #1')")
        page.wait_for_selector("#queue-summary:has-text('empty')")
        # a sweep over two learning rates, small and short
        tab(page, "7. Sweeps")
        page.fill("#sweep-lr textarea, #sweep-lr input", "1e-4, 3e-4")
        page.fill("#sweep-epochs textarea, #sweep-epochs input", "1")
        open_advanced(page, "sweep-advanced")
        page.fill("#sweep-maxlen textarea, #sweep-maxlen input", "32")
        fill_number(page, "sweep-cap", "64")
        page.click("#sweep-start")
        page.wait_for_selector("#sweep-message:has-text('Queued 2 runs')")
        sweep_id = engine.queued()[0].sweep_id
        assert len(engine.queued()) == 2 and all(q.sweep_id == sweep_id for q in engine.queued())
        tab(page, "4. Train")
        page.wait_for_selector("#queue-summary:has-text('2 run(s) waiting')")
        assert sweep_id in page.inner_text("#queue-table")
        page.click("#stop")  # the long run stops; the sweep's runs train one after the other
        tab(page, "7. Sweeps")
        page.wait_for_function(
            "() => (document.querySelector('#sweep-table').innerText.match(/completed/g) || []).length === 2",
            timeout=300_000,
        )
        page.wait_for_function(
            "() => { const el = document.querySelector('#sweep-plot .js-plotly-plot');"
            " return el && el.layout && el.layout.title.text.startsWith('Best:'); }"
        )
        best = engine.sweep_table(sweep_id)[0]
        assert "★ " + best["name"] in page.inner_text("#sweep-table")
        page.click("#sweep-use-best")
        page.wait_for_selector("#sweep-view-message:has-text('The Predict tab now serves')")
        tab(page, "5. Predict")
        assert best["name"] in page.locator("#predict-model input").input_value()
        tab(page, "7. Sweeps")
        page.screenshot(path=str(tmp_path / "sweeps.png"), full_page=True)
        if os.environ.get("FTUI_SCREENSHOT"):  # the README's figure of the sweep view
            shutil.copy(tmp_path / "sweeps.png", REPO / "assets" / "sweeps.png")
    finally:
        ctx.close()
        wind_down(engine, demo)


@pytest.mark.slow  # 31 s, run by CI after the default suite
def test_a_multi_label_upload_is_trained_and_predicted(browser, tmp_path):
    """Upload reviews whose labels are lists, train, and see every label's probability and the predicted set."""
    from helpers import aspect_reviews, upload

    demo, engine = serve(tmp_path / "runs")
    try:
        ctx, page = open_page(browser, demo.local_url)
        status = upload(page, aspect_reviews(tmp_path / "aspects.csv"))
        assert "multi-label, 3 labels: acting, music, plot" in status, status
        tab(page, "4. Train")
        fill_number(page, "epochs", "3")
        fill_number(page, "lr", "3e-4")
        fill_number(page, "max-len", "32")
        page.click("#start")
        page.wait_for_selector("#run-status:has-text('completed')", timeout=240_000)
        assert "Test micro-F1" in md(page, "run-status")
        assert "micro-F1" in page.inner_text("#acc-plot")  # the curves of a multi-label run
        tab(page, "5. Predict")
        page.locator("#predict-text textarea").fill("the soundtrack and the cast were great great great")
        page.click("#predict-btn")
        page.wait_for_selector("#predict-shape:has-text('Predicted labels')")
        shown = md(page, "predict-shape")
        assert "music" in shown and "acting" in shown and "plot" not in shown, shown
        probs = page.inner_text("#predict-label")
        assert all(name in probs for name in ("acting", "music", "plot")), probs  # every label's probability
        tab(page, "6. Runs")
        run = engine.runs()[-1]
        choose(page, "run-pick", run.name)
        page.wait_for_selector("#eval-summary:has-text('micro-F1')")
        page.wait_for_function("() => document.querySelector('#per-class').innerText.includes('music')")
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow  # about a minute of chunked training: in the slow suite, which CI runs after the default one
def test_a_long_text_run_reads_whole_reviews_in_chunks(browser, tmp_path):
    """Long texts: chunks, picked in the Train tab, on reviews whose verdict comes after the max length."""
    from helpers import upload, verdict_reviews

    demo, engine = serve(tmp_path / "runs")
    try:
        ctx, page = open_page(browser, demo.local_url)
        assert "2 classes" in upload(page, verdict_reviews(tmp_path / "long.csv"))
        tab(page, "4. Train")
        fill_number(page, "epochs", "2")
        fill_number(page, "lr", "2e-4")
        fill_number(page, "max-len", "32")
        # At 32 tokens every review is cut: the page recommends head + tail; chunks are chosen over it.
        page.wait_for_selector("#recommended:has-text('cut at 32 tokens')")
        open_advanced(page, "train-advanced")
        choose(page, "long-text", "chunks")
        page.click("#start")
        page.wait_for_selector("#run-status:has-text('completed')", timeout=240_000)
        run = engine.runs()[-1]
        assert run.config.train.long_text == "chunks" and run.result["train_size"] > 200  # windows, not reviews
        assert run.result["test_accuracy"] >= 0.9, run.result
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()


@pytest.mark.slow
def test_a_two_process_run_started_in_the_browser_streams_its_curves(browser, tmp_path):
    """FTUI_CPU_PROCESSES=2 offers 2 processes on this CPU: Start launches torchrun, the charts fill as with a thread run."""
    from ftui.settings import Settings

    demo, engine = serve(tmp_path / "runs", Settings(cpu_processes=2))
    try:
        ctx, page = open_page(browser, demo.local_url)
        tab(page, "4. Train")
        open_advanced(page, "train-advanced")
        set_slider(page, "processes", "2")
        fill_number(page, "epochs", "1")
        page.click("#start")
        page.wait_for_selector("#run-status:has-text('× 2 processes')", timeout=120_000)  # rank 0's progress, live
        page.wait_for_function(
            """() => { const el = document.querySelector('#loss-plot .js-plotly-plot');
                       return el && el.data && el.data.length && el.data[0].x.length >= 2; }""",
            timeout=180_000,
        )
        assert "completed" not in md(page, "run-status")  # the curve streamed while it trained
        page.wait_for_selector("#run-status:has-text('completed')", timeout=300_000)
        assert trace_lengths(page, "acc-plot") and max(trace_lengths(page, "acc-plot")) >= 1
        run = engine.current_run()
        assert run.config.train.processes == 2 and run.status.value == "completed"
        assert next(e for e in run.events() if e["type"] == "start")["processes"] == 2
        ctx.close()
    finally:
        wind_down(engine, demo, 120)
