"""Hostile label names, run name and note in a real browser: shown as text everywhere, never turned into elements."""

from urllib.parse import urlparse

import pandas as pd
import pytest
from helpers import choose, md, open_page, raw_call, serve, tab, upload

pytestmark = pytest.mark.browser

IMG = "<img src=http://127.0.0.1:9/x.png>"
COVER = "<a href=http://evil.test style=position:fixed;inset:0>cover</a>"
LINK = "[click](http://evil.test)"
BOLD = "**bold**"
LABELS = [IMG, COVER, LINK, BOLD]
# A run name has no slashes; browsers still read these as a link to evil.test and an image from 127.0.0.1:9.
NAME = "<a href=https:evil.test style=position:fixed;inset:0>cover-run <img src=http:127.0.0.1:9>"
NOTE = f"note {COVER} {IMG} {LINK} {BOLD} $$x^2$$"  # $$: Gradio's Markdown renders LaTeX between them


def no_elements_from_hostile_strings(page) -> None:
    """No link to evil.test, no image from 127.0.0.1:9, no bold 'bold' and no LaTeX anywhere in the page (charts too)."""
    found = page.evaluate(
        """() => ({
            links: document.querySelectorAll('a[href*="evil.test"]').length,
            images: [...document.querySelectorAll('img')].filter(i => i.src.includes('127.0.0.1:9/')).length,
            bold: [...document.querySelectorAll('strong, b, em')].filter(e => e.textContent.trim() === 'bold').length,
            math: document.querySelectorAll('.katex').length,
        })"""
    )
    assert found == {"links": 0, "images": 0, "bold": 0, "math": 0}


def tick_texts(page, elem_id: str) -> list[str]:
    return page.evaluate(
        "(id) => [...document.querySelectorAll(`#${id} .xtick text, #${id} .ytick text`)].map(t => t.textContent)", elem_id
    )


@pytest.mark.slow  # a run trained through the browser: slow set
def test_hostile_labels_run_name_and_note_are_text_everywhere(browser, tmp_path, tiny_bert_dir):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    rows = [{"review": f"review {i} about {['food', 'rooms', 'staff', 'price'][i % 4]}", "label": LABELS[i % 4]}
            for i in range(80)]  # fmt: skip
    csv = tmp_path / "hostile.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    demo, engine = serve(tmp_path / "runs")
    try:
        data = DataConfig(source="upload", dataset_id=str(csv))
        model = ModelConfig(source="local", checkpoint=str(tiny_bert_dir))
        run = engine.start_run(RunConfig(data, model, TrainConfig(epochs=1, batch_size=32, run_name="plain")))
        assert run.done.wait(120) and engine.join(30) and run.status.value == "completed"
        # the name and note arrive the way an anonymous client can set them: the /update_run endpoint
        msg = raw_call(demo.local_url.rstrip("/"), demo, "save_meta", {"run-pick": run.run_id, "run-name-edit": NAME,
                       "run-note": NOTE})  # fmt: skip
        assert msg.get("success"), msg
        assert engine.run_record(run.run_id)["name"] == NAME

        ctx, page = open_page(browser, demo.local_url)
        outside: list[str] = []  # any request to port 9: an image a hostile string made the browser fetch
        page.on("request", lambda r: outside.append(r.url) if urlparse(r.url).port == 9 else None)

        # Data: the labels in the status line and the label distribution chart
        status = upload(page, csv)
        assert "4 classes: " + ", ".join(sorted(LABELS)) in status
        no_elements_from_hostile_strings(page)

        # Predict, Explain, Predict all
        tab(page, "5. Predict")
        page.locator("#predict-text textarea").fill("review about food")
        page.click("#predict-btn")
        page.wait_for_function("() => document.querySelector('#predict-label').innerText.includes('cover')")
        page.click("#explain-btn")
        page.wait_for_selector("#explain-note:has-text('Why')")
        top = engine.explain("review about food", f"run:{run.run_id}").label
        assert f"Why {top} (" in md(page, "explain-note")
        no_elements_from_hostile_strings(page)
        page.get_by_text("Many reviews at once").click()
        lines = ["review about rooms", "review about staff", "review about price"]
        page.locator("#batch-text textarea").fill("\n".join(lines))
        page.click("#batch-btn")
        page.wait_for_selector("#batch-status:has-text('3 reviews scored')")
        predicted = [max(p, key=p.__getitem__) for p in engine.predict_many(lines, f"run:{run.run_id}", int8=True)]
        assert f"{predicted[0]}: " in md(page, "batch-status")
        no_elements_from_hostile_strings(page)

        # A model key nobody offers (the dropdown takes typed values): its error toast quotes it, as text
        box = page.locator("#predict-model input")
        box.fill(IMG)
        box.press("Enter")
        page.click("#predict-btn")
        page.wait_for_selector("[data-testid=toast-body]:has-text('Unknown model')")
        assert f"Unknown model '{IMG}'" in page.inner_text("[data-testid=toast-body]")
        no_elements_from_hostile_strings(page)

        # Runs: the evaluation summary (name, note) and the confusion matrix's axis labels
        tab(page, "6. Runs")
        choose(page, "run-pick", "cover-run")
        page.wait_for_selector("#eval-summary:has-text('Test accuracy')")
        page.wait_for_function("() => document.querySelectorAll('#confusion .xtick text').length === 4")
        summary = md(page, "eval-summary")
        assert NAME in summary and f"Note: {NOTE}" in summary
        ticks = tick_texts(page, "confusion")
        assert all(f"pred: {n}" in ticks and f"true: {n}" in ticks for n in LABELS), ticks
        no_elements_from_hostile_strings(page)
        assert not outside, outside
        ctx.close()
    finally:
        engine.stop_run()
        engine.join(60)
        demo.close()
