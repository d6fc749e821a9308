"""The app in a real browser (Playwright + Debian Chromium): the main path and the bad-input messages."""

import pytest
from helpers import BROKEN_WORDS_JS, TIMEOUT_MS, fill_number, md, tab, upload

pytestmark = pytest.mark.browser


@pytest.fixture()
def page(app_server, browser):
    url, _ = app_server
    ctx = browser.new_context(viewport={"width": 1300, "height": 1300})
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.goto(url)
    pg.wait_for_selector("#load-data")
    # the page previews the local defaults by itself; let that settle so later messages are ours
    pg.wait_for_selector("#data-status:has-text('Loaded')")  # chained after the model summary: both done
    yield pg
    ctx.close()


def plot_points(page, elem_id: str, trace: int = 0) -> int:
    """Points in one trace of a rendered plotly chart (0 when not drawn yet)."""
    return page.evaluate(
        """([id, t]) => { const el = document.querySelector(`#${id} .js-plotly-plot`);
                          return el && el.data && el.data[t] ? el.data[t].x.length : 0; }""",
        [elem_id, trace],
    )


def data_status(page) -> str:
    """Press Load dataset and return the new message (each step in these tests expects a different one)."""
    before = md(page, "data-status")
    page.click("#load-data")
    page.wait_for_function(
        """(before) => { const t = document.querySelector('#data-status [data-testid=markdown]').innerText;
                         return t !== before && (t.includes('✓') || t.includes('✗')); }""",
        arg=before,
    )
    return md(page, "data-status")


@pytest.mark.slow  # trains in the served app: in the slow set, which CI runs after the default suite
def test_main_path_demo_data_train_stop_predict(page, app_server, browser, tmp_path):
    url, engine = app_server
    # 1. Data: the bundled demo
    assert "Offline:" in md(page, "hub-status") and "Error" not in md(page, "hub-status")
    status = md(page, "data-status")  # previewed on page load
    assert "Loaded" in status and "negative, positive" in status
    # the length histogram is in the packaged checkpoint's tokens, the max length marked with the share it cuts
    page.wait_for_function(
        "() => { const el = document.querySelector('#len-plot .js-plotly-plot');"
        " return el && el.layout && el.layout.title.text.includes('tokens') && el.layout.title.text.includes('128'); }"
    )
    max_len = page.locator("#max-len input")  # the Train tab's max length moves the mark
    tab(page, "4. Train")
    max_len.fill("8")
    max_len.press("Tab")
    tab(page, "1. Data")
    page.wait_for_function(
        "() => document.querySelector('#len-plot .js-plotly-plot').layout.title.text.includes('longer than 8 tokens')"
    )
    tab(page, "4. Train")
    max_len.fill("128")
    max_len.press("Tab")
    tab(page, "1. Data")
    # 2. Model: the packaged MiniLM summary (also loaded with the page), the freeze-depth slider
    tab(page, "2. Model")
    page.wait_for_selector("#model-status:has-text('6 layers')")
    assert "everything trains" in md(page, "trainable")
    slider = page.locator("#freeze-depth input[type=number]")
    slider.fill("6")
    slider.press("Enter")
    page.wait_for_selector("#trainable:has-text('only the head trains')")
    slider.fill("0")
    slider.press("Enter")
    page.wait_for_selector("#trainable:has-text('everything trains')")
    # 3. Train: long enough to stop it mid-run
    tab(page, "4. Train")
    fill_number(page, "epochs", "30")
    page.click("#start")
    page.wait_for_selector("#run-status:has-text('running')")
    page.wait_for_function(
        "() => { const el = document.querySelector('#loss-plot .js-plotly-plot');"
        " return el && el.data && el.data[0].x.length >= 2; }"
    )
    first = plot_points(page, "loss-plot")
    page.wait_for_function(f"() => document.querySelector('#loss-plot .js-plotly-plot').data[0].x.length > {first}")
    assert plot_points(page, "loss-plot") > first  # the chart gains points while training
    page.wait_for_function(
        "() => { const el = document.querySelector('#acc-plot .js-plotly-plot');"
        " return el && el.data && el.data[0].x.length >= 3; }"  # a few evaluations: a curve, not a dot
    )
    # While the run goes on, Start says that it queues (case: a second click read as if one's own start failed)
    page.wait_for_function("() => document.querySelector('#start').innerText.includes('Add to queue')")
    # a second browser sees the same running job and its curves so far
    other = browser.new_context(viewport={"width": 1300, "height": 1300})
    second = other.new_page()
    second.goto(url)
    second.wait_for_selector("#load-data")
    tab(second, "4. Train")
    second.wait_for_selector("#run-status:has-text('running')", timeout=TIMEOUT_MS)
    second.wait_for_function(
        "() => { const el = document.querySelector('#loss-plot .js-plotly-plot');"
        " return el && el.data && el.data[0].x.length >= 2; }",
        timeout=TIMEOUT_MS,
    )
    other.close()
    # a reload re-attaches to the same running job and its curves so far
    page.reload()
    page.wait_for_selector("#load-data")
    tab(page, "4. Train")
    page.wait_for_function(
        "() => { const el = document.querySelector('#loss-plot .js-plotly-plot');"
        " return el && el.data && el.data[0].x.length >= 2; }"
    )
    # Predict after a reload during the run: no completed run yet, so the live run is offered, labelled for what it is
    tab(page, "5. Predict")
    choice = page.locator("#predict-model input").input_value()
    assert "training now: best checkpoint so far" in choice
    tab(page, "4. Train")
    page.click("#stop")
    page.wait_for_selector("#run-status:has-text('stopped')")
    run = engine.current_run()
    assert run is not None and run.status.value == "stopped"
    page.wait_for_function("() => document.querySelector('#start').innerText.includes('Start training')")  # idle again
    # 4. Predict with the stopped run's best checkpoint
    tab(page, "5. Predict")
    page.wait_for_function("() => document.querySelector('#predict-model input').value.includes('stopped early')")
    page.fill("#predict-text textarea", "The staff were rude and the room was filthy.")
    page.click("#predict-btn")
    page.wait_for_function(
        "() => { const t = document.querySelector('#predict-label').innerText;"
        " return t.includes('negative') && t.includes('positive'); }"
    )
    text = page.inner_text("#predict-label")
    assert "%" in text


@pytest.mark.slow  # trains in the served app: in the slow set, which CI runs after the default suite
def test_the_default_demo_run_learns_within_a_minute(page, app_server, tmp_path):
    """What a stakeholder sees: Start with the defaults on the bundled demo; the accuracy curve rises, the run ends in
    about a minute on 2 CPU cores (the README's pictures come from tests/test_demo.py, the walk-through)."""
    import time

    _, engine = app_server
    tab(page, "4. Train")
    assert page.locator("#lr input").input_value() == "0.0001"  # the packaged MiniLM's default
    t0 = time.perf_counter()
    page.click("#start")
    page.wait_for_selector("#run-status:has-text('completed')", timeout=120_000)
    seconds = time.perf_counter() - t0
    acc = page.evaluate("() => document.querySelector('#acc-plot .js-plotly-plot').data[0].y")
    assert len(acc) >= 8 and acc[-1] >= acc[0] + 0.15 and max(acc) >= 0.75, acc
    assert seconds < 90, seconds
    run = engine.current_run()
    print(f"default demo run: {seconds:.1f} s Start -> completed, accuracy {acc}, test {run.result['test_accuracy']}")


def test_bad_inputs_get_clear_messages(page, tmp_path):
    # not UTF-8
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("text,label\ncaf\xe9 tr\xe8s bon,pos\nmauvais,neg\n".encode("latin-1"))
    assert "not UTF-8" in upload(page, latin)
    # not a table
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"\x00not parquet at all")
    assert "could not be read as a table" in upload(page, junk)
    # a single class
    one = tmp_path / "one_class.csv"
    one.write_text("text,label\n" + "\n".join(f"review {i},pos" for i in range(30)))
    msg = upload(page, one)
    assert "single class" in msg and "What to do" in msg
    # float labels: regression
    reg = tmp_path / "scores.csv"
    reg.write_text("text,label\n" + "\n".join(f"review {i},{i / 7:.3f}" for i in range(30)))
    assert "Regression: predicting the number in 'label'" in upload(page, reg)  # a number per text: regression
    # no text column
    nums = tmp_path / "numbers.csv"
    nums.write_text("a,label\n" + "\n".join(f"{i},{i % 2}" for i in range(30)))
    assert "No text column" in upload(page, nums)
    # empty texts are dropped with the count shown
    gaps = tmp_path / "gaps.csv"
    gaps.write_text("text,label\n" + "\n".join(f"review {i},{'pos' if i % 2 else 'neg'}" for i in range(40)) + "\n,pos\n  ,neg\n")
    assert "Dropped 2 rows with empty or missing text" in upload(page, gaps)
    # a local path that does not exist
    page.locator("#data-source").get_by_text("Local path").click()
    page.fill("#data-local-path textarea, #data-local-path input", "/nope/missing.csv")
    assert "no file or folder" in data_status(page)
    # Hub ids that are URLs or unknown, with the Hub unreachable
    page.locator("#data-source").get_by_text("Hugging Face Hub").click()
    hub_id = page.get_by_label("Dataset id (pick a result or type owner/name)")
    hub_id.fill("http://169.254.169.254/latest")
    hub_id.press("Enter")
    assert "not a Hub dataset id" in data_status(page)
    hub_id.fill("someone/unknown-dataset")
    hub_id.press("Enter")
    assert "cannot be reached" in data_status(page)
    # trust-remote-code is off by default
    assert not page.get_by_label("Trust remote code: allow datasets", exact=False).is_checked()
    # Hub search offline says so instead of failing
    page.get_by_role("button", name="Search").first.click()
    page.wait_for_selector("#data-status:has-text('cannot be reached')")
    # unknown checkpoint on the Hub (offline)
    tab(page, "2. Model")
    page.locator("#model-source").get_by_text("Hugging Face Hub").click()
    ck = page.get_by_label("Checkpoint id (pick a result or type owner/name)")
    ck.fill("nobody/no-such-model")
    ck.press("Enter")
    page.click("#load-model")
    page.wait_for_selector("#model-status:has-text('✗')")
    assert "no-such-model" in md(page, "model-status")
    page.locator("#model-source").get_by_text("Packaged MiniLM (offline)").click()
    # out-of-range hyperparameters
    tab(page, "1. Data")
    page.locator("#data-source").get_by_text("Bundled demo").click()
    tab(page, "4. Train")
    fill_number(page, "lr", "-1")
    fill_number(page, "batch-size", "0")
    # Both boxes must still hold what was typed when Start is clicked: under load a box filled while the tab was
    # still settling was seen back at its default (the message then named only the batch size).
    page.wait_for_function(
        "() => document.querySelector('#lr input').value === '-1' && document.querySelector('#batch-size input').value === '0'"
    )
    page.click("#start")
    page.wait_for_selector("#train-message:has-text('✗')")
    msg = md(page, "train-message")
    assert "learning rate must be" in msg and "batch size must be" in msg


def _hub_page(page) -> None:
    page.locator("#data-source").get_by_text("Hugging Face Hub").click()


def _load_hub_id(page, dataset_id: str) -> str:
    box = page.get_by_label("Dataset id (pick a result or type owner/name)")
    box.fill(dataset_id)
    box.press("Enter")
    return data_status(page)


def test_hub_failures_in_the_browser(page, monkeypatch):
    """Gated repo, loading-script dataset, Hub timeout: the Hub is simulated inside the app's process."""
    import datasets
    import httpx
    from huggingface_hub import errors as hf_errors

    def fake_load(path, name=None, **kw):
        if path == "org/gated":
            req = httpx.Request("GET", "https://huggingface.co/api/datasets/org/gated")
            raise hf_errors.GatedRepoError("Access to dataset org/gated is restricted", response=httpx.Response(401, request=req))
        if path == "org/slow":
            raise httpx.ReadTimeout("The read operation timed out")
        if path == "org/scripted":
            if kw.get("revision") == "refs/convert/parquet":
                return datasets.DatasetDict(
                    {
                        "train": datasets.Dataset.from_dict(
                            {"text": [f"t {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
                        )
                    }
                )
            raise RuntimeError("Dataset scripts are no longer supported, but found scripted.py")
        raise AssertionError(path)

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda *a, **k: ["default"])
    _hub_page(page)
    msg = _load_hub_id(page, "org/gated")
    assert "gated" in msg and "Hub token" in msg
    msg = _load_hub_id(page, "org/slow")
    assert "did not answer in time" in msg
    msg = _load_hub_id(page, "org/scripted")
    assert "loading script" in msg and "Trust remote code" in msg
    page.get_by_label("Trust remote code: allow datasets", exact=False).check()
    msg = data_status(page)
    assert "Loaded" in msg and "train: 32" in msg  # 40 rows from the Parquet export, 4 + 4 carved


@pytest.mark.slow  # trains in the served app: in the slow set, which CI runs after the default suite
def test_out_of_memory_in_the_browser(page, app_server, monkeypatch):
    import torch

    import ftui.finetune as training

    _, engine = app_server
    real = training.collate

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 30.00 GiB")

    monkeypatch.setattr(training, "collate", oom)
    tab(page, "4. Train")
    fill_number(page, "batch-size", "512")
    page.click("#start")
    page.wait_for_selector("#run-status:has-text('failed')")
    status = md(page, "run-status")
    assert "Out of host memory at batch size 512" in status and "try 256" in status
    assert engine.join(30)
    # the app is still usable: the next run starts
    monkeypatch.setattr(training, "collate", real)
    fill_number(page, "batch-size", "16")
    fill_number(page, "epochs", "0.25")
    page.click("#start")
    page.wait_for_selector("#run-status:has-text('completed')")


def test_hub_configs_and_splits_in_the_browser(page, monkeypatch):
    """The glue flow of the tutorials: configs fill a dropdown, splits follow, an unlabelled test split is replaced."""
    import datasets

    def fake_split(n, labels):
        return datasets.Dataset.from_dict(
            {"sentence": [f"sentence {i}" for i in range(n)], "label": [labels(i) for i in range(n)], "idx": list(range(n))}
        ).cast_column("label", datasets.ClassLabel(names=["negative", "positive"]))

    def fake_load(path, name=None, **kw):
        assert (path, name) == ("nyu-mll/glue", "sst2")
        return datasets.DatasetDict(
            {
                "train": fake_split(60, lambda i: i % 2),
                "validation": fake_split(20, lambda i: i % 2),
                "test": fake_split(20, lambda i: -1),
            }
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    monkeypatch.setattr(datasets, "get_dataset_config_names", lambda *a, **k: ["cola", "sst2"])
    monkeypatch.setattr(datasets, "get_dataset_split_names", lambda *a, **k: ["train", "validation", "test"])
    _hub_page(page)
    box = page.get_by_label("Dataset id (pick a result or type owner/name)")
    box.fill("nyu-mll/glue")
    box.press("Enter")
    page.wait_for_selector("#data-status:has-text('has 2 configs')")
    page.get_by_label("Config").click()
    page.get_by_role("option", name="sst2").click()
    msg = data_status(page)
    assert "Loaded" in msg and "validation: 20" in msg
    assert "has no labels" in msg and "sentence" in msg


def test_excel_upload_previews_with_the_label_first(page, tmp_path):
    import pandas as pd

    f = tmp_path / "reviews.xlsx"
    long = "A very long review that goes on and on about everything. " * 20
    pd.DataFrame({"review": [f"{long} {i}" for i in range(40)], "sentiment": ["pos", "neg"] * 20}).to_excel(f, index=False)
    msg = upload(page, f)
    assert "Loaded" in msg and "label: sentiment" in msg
    page.wait_for_function("() => document.querySelector('#data-preview').innerText.includes('pos')")
    first_header = page.locator("#data-preview th").first.inner_text().strip()
    assert first_header == "label"  # never pushed off-screen by the long texts


@pytest.mark.slow  # trains in the served app: in the slow set, which CI runs after the default suite
def test_predict_defaults_to_the_best_completed_run_with_its_own_examples(page, app_server):
    from ftui.serving import data_at_hand, validation_rank

    _, engine = app_server
    completed = [r for r in engine.runs() if r.status.value == "completed" and (r.out_dir / "model").exists()]
    assert completed, "the earlier tests leave a completed run"
    at_hand = [r for r in completed if data_at_hand(r.config) == data_at_hand(completed[-1].config)]
    newest = min(reversed(at_hand), key=validation_rank)  # the best by validation score on the newest run's data
    page.reload()
    page.wait_for_selector("#load-data")
    tab(page, "5. Predict")
    page.wait_for_function("(name) => document.querySelector('#predict-model input').value.startsWith(name)", arg=newest.name)
    assert "best on this data, val acc" in page.locator("#predict-model input").input_value()
    test_texts = sorted({t[:40] for t in engine.test_predictions(newest.run_id)["text"]})
    page.wait_for_function(  # examples come from the run's own test set (they follow the model choice)
        "(texts) => { const t = document.querySelector('#examples').innerText; return texts.some(x => t.includes(x)); }",
        arg=test_texts,
    )
    shown = page.locator("#examples").inner_text()
    page.locator("#examples button, #examples td").first.click()
    assert page.locator("#predict-text textarea").input_value()[:20] in shown


def test_runs_table_fits_1400px_without_breaking_words(browser, app_server):
    url, _ = app_server
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    try:
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#load-data")
        tab(page, "6. Runs")
        page.wait_for_selector("#runs-table th")
        headers = [h.strip() for h in page.locator("#runs-table th").all_inner_texts() if h.strip()]
        assert headers[:5] == ["run", "status", "test acc", "test F1", "vs base"], headers
        assert page.evaluate(BROKEN_WORDS_JS, "#runs-table th") == []
        right = page.evaluate(
            "() => Array.from(document.querySelectorAll('#runs-table th')).slice(0, 5).map(t => t.getBoundingClientRect().right)"
        )
        assert max(right) <= 1400  # the scores are on screen
    finally:
        ctx.close()


def test_screen_readers_hear_words_not_translation_keys(browser, app_server):
    """Case: after actions, screen readers announced an untranslated 'common.complete'."""
    url, _ = app_server
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = ctx.new_page()
        page.add_init_script(
            """window.__said = [];
               new MutationObserver(() => document.querySelectorAll('[aria-live]').forEach(
                   (e) => e.textContent.trim() && window.__said.push(e.textContent.trim())))
               .observe(document, {subtree: true, childList: true, characterData: true});"""
        )
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url)
        page.wait_for_selector("#data-status:has-text('Loaded')")
        page.click("#load-data")
        page.wait_for_function("() => window.__said.length > 0")
        said = page.evaluate("() => window.__said")
        assert not [s for s in said if "common." in s], said
    finally:
        ctx.close()


def test_batch_predictions_show_hostile_text_escaped(page, app_server, tiny_bert_dir):
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    url, engine = app_server
    if not any(r.status.value in ("completed", "stopped") for r in engine.runs()):
        cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
        run = engine.start_run(cfg)
        assert run.done.wait(120) and engine.join(30)
    tab(page, "5. Predict")
    page.get_by_text("Many reviews at once").click()
    hostile = '<img src=x onerror="window.__pwned=1">\n<script>window.__pwned=2</script>\nهذا رائع 😀'
    page.locator("#batch-text textarea").fill(hostile)
    page.click("#batch-btn")
    page.wait_for_selector("#batch-status:has-text('3 reviews scored')")
    page.wait_for_function("() => document.querySelector('#batch-table').innerText.includes('onerror')")
    assert page.evaluate("() => window.__pwned") is None  # shown as text, never run
    assert "<script>window.__pwned=2</script>" in page.inner_text("#batch-table")


def test_demo_mode_page_shows_only_predict_with_the_notice(browser, tmp_path):
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings
    from ftui.ui import create_app, launch_kwargs

    settings = Settings(demo=True, max_epochs=2)
    app = create_app(Engine(tmp_path, HubStatus(False, "offline (tests)"), settings))
    app.queue().launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True, **launch_kwargs(settings))
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    try:
        page = ctx.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app.local_url)
        page.wait_for_selector("#demo-notice:has-text('Duplicate this Space')")
        assert "≤ 2 epochs" in page.inner_text("#limits")
        # The tab bar renders after the notice above it: wait for it before counting tabs.
        page.get_by_role("tab").first.wait_for()
        tabs = [t.strip() for t in page.get_by_role("tab").all_inner_texts()]
        assert tabs == ["Predict"]
        assert page.locator("#start").count() == 0 and page.locator("#predict-text").count() == 1
    finally:
        ctx.close()
        app.close()
