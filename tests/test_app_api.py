"""The app's API through gradio_client: the public `predict` endpoint, and what stays private."""

import re
from dataclasses import replace
from pathlib import Path

import pytest
from gradio_client import Client

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.runs import RunStatus


@pytest.fixture(scope="module")
def trained(app_server, tiny_bert_dir):
    url, engine = app_server
    cfg = RunConfig(
        data=DataConfig(),
        model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
        train=TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3),
    )
    run = engine.start_run(cfg)
    assert run.done.wait(120) and run.status == RunStatus.COMPLETED
    engine.join(30)
    return url, engine, run


def test_predict_endpoint(trained):
    url, _, run = trained
    client = Client(url, verbose=False)
    out = client.predict("The battery died after a day.", f"run:{run.run_id}", api_name="/predict")
    assert out["label"] in ("negative", "positive")
    probs = {c["label"]: c["confidence"] for c in out["confidences"]}
    assert set(probs) == {"negative", "positive"} and abs(sum(probs.values()) - 1) < 1e-4


def test_predict_defaults_to_the_newest_run(trained):
    url, _, _ = trained
    out = Client(url, verbose=False).predict("Lovely hotel.", None, api_name="/predict")
    assert out["label"] in ("negative", "positive")


def test_predict_base_checkpoint(trained):
    url, _, run = trained
    out = Client(url, verbose=False).predict("Lovely hotel.", f"base:{run.run_id}", api_name="/predict")
    assert out["label"] in ("negative", "positive")


def test_predict_errors_are_clear(trained):
    url, _, _ = trained
    client = Client(url, verbose=False)
    with pytest.raises(Exception, match="no text to classify"):
        client.predict("   ", None, api_name="/predict")
    with pytest.raises(Exception, match="Unknown model"):
        client.predict("hello", "run:../../etc", api_name="/predict")


def test_a_user_mistake_logs_one_line_not_a_traceback(trained, capfd, caplog):
    """Case: an empty text or an unknown model printed a ~40-line traceback in the server log."""
    import logging

    url, _, _ = trained
    client = Client(url, verbose=False)
    capfd.readouterr()  # what earlier tests printed
    with caplog.at_level(logging.INFO, logger="ftui.ui.predict_tab"):
        for text, model in (("   ", None), ("hello", "run:nope")):
            with pytest.raises(Exception, match="no text to classify|Unknown model"):
                client.predict(text, model, api_name="/predict")
    printed = capfd.readouterr()
    assert "Traceback" not in printed.err + printed.out
    said = [r.getMessage() for r in caplog.records if r.name == "ftui.ui.predict_tab"]
    assert len(said) == 2 and all("\n" not in line for line in said), said
    assert "no text to classify" in said[0] and "Unknown model" in said[1]


def test_batch_predict_endpoint(trained, tmp_path):
    url, engine, run = trained
    client = Client(url, verbose=False)
    msg, table, csv_path = client.predict(
        "Great.\n\nAwful service.\nFine.", None, f"run:{run.run_id}", False, api_name="/predict_batch"
    )
    assert "3 reviews scored" in msg
    # the CSV was written where the download sweep reaches, not left in a /tmp folder of its own forever
    assert any(p.name == "predictions.csv" for p in engine.serving.downloads.root.rglob("*"))
    frame = __import__("pandas").read_csv(csv_path)
    assert frame["text"].tolist() == ["Great.", "Awful service.", "Fine."]
    assert set(frame["label"]) <= {"negative", "positive"}
    single = engine.predict("Awful service.", f"run:{run.run_id}")
    assert frame.loc[1, "positive"] == pytest.approx(single["positive"], abs=1e-3)
    msg, _, _ = client.predict("", None, f"run:{run.run_id}", True, api_name="/predict_batch")
    assert "no text to classify" in msg


def _server_copies(engine) -> set:
    """Every predictions CSV on the server side: ftui's downloads folder and Gradio's file cache."""
    from gradio.utils import get_upload_folder

    roots = (Path(get_upload_folder()), engine.serving.downloads.root)
    return {p.resolve() for root in roots if root.exists() for p in root.rglob("predictions.csv")}


def test_one_huge_batch_text_is_cut_in_the_csv_and_downloads_stay_within_their_budget(trained, tmp_path):
    """Case: one 4.9 M-character text (within the batch cap) wrote a 4.7 MB CSV holding it whole, kept an hour, and
    Gradio kept a second copy of every download (a day) outside the downloads' budget."""
    from gradio.utils import get_upload_folder

    from ftui.serving import CSV_TEXT_CHARS

    url, engine, run = trained
    assert engine.serving.downloads.root.resolve().is_relative_to(Path(get_upload_folder()).resolve())
    before = _server_copies(engine)
    huge = "a fine film " * 400_000  # 4.8 M characters, one line
    # The client downloads its copy elsewhere: by default it would land in the same temp folder as the server's cache
    # (this process is both), and be counted as a server copy on a machine whose cache does not hold it already.
    client = Client(url, verbose=False, download_files=str(tmp_path / "client"))
    msg, _, csv_path = client.predict(huge, None, f"run:{run.run_id}", False, api_name="/predict_batch")
    assert "1 reviews scored" in msg
    frame = __import__("pandas").read_csv(csv_path)
    assert len(frame.loc[0, "text"]) <= CSV_TEXT_CHARS + 2 and frame.loc[0, "text"].endswith("…")
    written = [p for p in engine.serving.downloads.root.rglob("predictions.csv")]
    assert max(p.stat().st_size for p in written) < 10_000
    # Other xdist workers' apps share Gradio's temp folder: count the new copies of this download only (its text).
    mine = [p for p in _server_copies(engine) - before if "a fine film a fine film" in p.read_text(errors="replace")]
    assert len(mine) == 1  # one copy on the server, the budgeted one (Gradio serves it in place)
    assert engine.serving.downloads.max_bytes == int(engine.settings.max_downloads_mb * 2**20)


PUBLIC = ["/compare_runs", "/delete_run", "/evaluate_run", "/explain", "/export_onnx", "/export_zip", "/predict",
          "/predict_batch", "/queue_cancel", "/queue_clear", "/queue_down", "/queue_up", "/update_run"]  # fmt: skip


@pytest.mark.slow  # the ONNX exporter traces the model: slow set
def test_explain_export_onnx_and_predict_with_it_over_the_api(trained):
    url, engine, run = trained
    client = Client(url, verbose=False)
    spans, note = client.predict("A warm and funny film.", f"run:{run.run_id}", "ig", api_name="/explain")
    words = [s["token"].strip() for s in spans["value"]]
    assert words[:3] == ["a", "warm", "and"] and "convergence delta" in note
    assert all(-1 <= s["class_or_confidence"] <= 1 for s in spans["value"])
    status = client.predict(run.run_id, True, api_name="/export_onnx")
    assert "ONNX export ready" in status and "labels equal to PyTorch" in status
    out = client.predict("A warm and funny film.", f"run:{run.run_id}", "onnx", api_name="/predict")
    torch_out = engine.predict("A warm and funny film.", f"run:{run.run_id}")
    assert out["label"] == max(torch_out, key=torch_out.__getitem__)
    with pytest.raises(Exception, match=r"Value: tensorrt is not in the list of choices: \['pytorch', 'pytorch-int8', 'onnx'"):
        client.predict("fine", f"run:{run.run_id}", "tensorrt", api_name="/predict")  # Gradio's dropdown refuses it
    from ftui.errors import FtuiError

    with pytest.raises(FtuiError, match="Unknown runtime 'tensorrt'"):  # and the engine too, for a caller past Gradio
        engine.predict("fine", f"run:{run.run_id}", runtime="tensorrt")
    msg, _, _ = client.predict("Great.\nAwful.", None, f"run:{run.run_id}", False, "onnx-int8", api_name="/predict_batch")
    assert "2 reviews scored" in msg


def test_only_the_documented_endpoints_are_public(trained):
    url, _, _ = trained
    api = Client(url, verbose=False).view_api(print_info=False, return_format="dict")
    assert sorted(api["named_endpoints"]) == PUBLIC


def test_runs_endpoints_compare_diff_evaluate_export_delete(trained, tiny_bert_dir):
    import zipfile

    url, engine, first = trained
    cfg = RunConfig(
        data=DataConfig(),
        model=ModelConfig(source="local", checkpoint=str(tiny_bert_dir), freeze_depth=1),
        train=TrainConfig(epochs=1, batch_size=32, learning_rate=5e-4),
    )
    second = engine.start_run(cfg)
    assert second.done.wait(120) and engine.join(30) and second.status == RunStatus.COMPLETED
    client = Client(url, verbose=False)
    msg, *figs, diff = client.predict([first.run_id, second.run_id], api_name="/compare_runs")
    assert "2 runs" in msg and len(figs) == 4
    fields = [row[0] for row in diff["data"]]
    assert sorted(fields) == ["model.freeze_depth", "train.learning_rate"]
    summary, per_class, _cm, mistakes, name, note = client.predict(second.run_id, api_name="/evaluate_run")[:6]
    assert "Test accuracy" in summary and name == second.name
    assert [row[0] for row in per_class["data"]] == ["negative", "positive"]
    confidences = [row[mistakes["headers"].index("confidence")] for row in mistakes["data"]]
    assert confidences == sorted(confidences, reverse=True)  # most confidently wrong first
    assert all(len(repr(c).split(".")[-1]) <= 3 for c in confidences)  # case: float32 printed as 0.5184000134468079
    out = client.predict(second.run_id, "second-run", "froze one layer", "", "all", [], api_name="/update_run")
    assert "Saved" in out[0] and engine.get_run(second.run_id).name == "second-run"
    status, zip_path = client.predict(second.run_id, api_name="/export_zip")
    assert "Zip ready" in status and "model/labels.json" in zipfile.ZipFile(zip_path).namelist()
    out = client.predict(second.run_id, "", "all", [], api_name="/delete_run")
    assert "Deleted second-run" in out[0]
    assert engine.get_run(second.run_id) is None and not second.out_dir.exists()
    out = client.predict("../../etc", "", "all", [], api_name="/delete_run")
    assert out[0].startswith("✗ **'../../etc' is not a run id.**"), out[0]


def test_tick_skips_unchanged_versions_and_keeps_zoom(trained, tiny_bert_dir):
    """The timer's handler: a full draw once per version, gr.skip() for every tab already at it."""
    from ftui.ui import create_app

    _, engine, _ = trained
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
    run = engine.start_run(cfg)
    assert run.done.wait(120) and engine.join(30)
    app = create_app(engine)
    tick = next(f for f in app.fns.values() if f.name == "render")
    assert tick.concurrency_limit is None  # ticks never wait behind other events
    status, loss, acc, version, _timer, start, _baselines = tick.fn("")
    assert (
        version == f"{run.run_id}#{run.version}" and loss.layout.uirevision == run.run_id and acc.layout.uirevision == run.run_id
    )
    assert start.interactive is not False  # a finished run leaves Start usable
    again = tick.fn(version)
    assert all(part == {"__type__": "update"} for part in again[:3]) and again[3] == version
    assert app.delete_cache == (3600, 86400)  # cached uploads and downloads are cleaned up after a day


def test_a_live_run_ticks_its_elapsed_time_and_start_queues(trained, tiny_bert_dir, monkeypatch):
    """Between log points (20-40 s on a slow CPU) the status still moves every second; during a run Start says it
    queues; the queue endpoints reorder, cancel and clear over the API."""
    import threading

    from ftui import finetune as training
    from ftui.ui import create_app

    url, engine, _ = trained
    held, release = threading.Event(), threading.Event()
    real = training.collate

    def slow_step(*a, **k):  # the worker sits in one long step, as on a slow CPU
        held.set()
        release.wait(30)
        return real(*a, **k)

    monkeypatch.setattr(training, "collate", slow_step)
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)), TrainConfig(epochs=1))
    app = create_app(engine)
    tick = next(f for f in app.fns.values() if f.name == "render")
    run = engine.start_run(cfg)
    try:
        assert held.wait(60)
        _, _, _, version, _, start, baselines = tick.fn("")
        assert start.interactive is not False and "Add to queue" in start.value and baselines.interactive is not False
        status, loss, acc, same, _, start, _ = tick.fn(version)  # nothing new from the worker
        assert same == version and loss == {"__type__": "update"} and acc == {"__type__": "update"}
        assert "elapsed" in status and "(training)" in status and "Add to queue" in start.value
        a = engine.start_run(replace(cfg, train=replace(cfg.train, run_name="queued-a")))
        b = engine.start_run(replace(cfg, train=replace(cfg.train, run_name="queued-b")))
        c = engine.start_run(replace(cfg, train=replace(cfg.train, run_name="queued-c")))
        client = Client(url, verbose=False)
        msg, table, *_ = client.predict(a.item_id, api_name="/queue_down")
        assert msg == "Moved." and [row[1] for row in table["data"]] == ["queued-b", "queued-a", "queued-c"]
        msg, table, *_ = client.predict(b.item_id, api_name="/queue_cancel")
        assert "Cancelled queued run #1" in msg and [row[1] for row in table["data"]] == ["queued-a", "queued-c"]
        msg, *_ = client.predict("not-an-item", api_name="/queue_up")
        assert "no longer in the queue" in msg
        msg, table, *_ = client.predict(api_name="/queue_clear")
        assert "Took 2 run(s) off the queue" in msg and engine.queued() == [] and c.item_id
    finally:
        engine.manager.clear()
        release.set()
        engine.stop_run()
        assert run.done.wait(60) and engine.join(30)


def test_predict_needs_only_the_text(trained):
    """Case: client.predict(text, api_name='/predict') failed with 'No value provided for required argument'."""
    url, _, _ = trained
    out = Client(url, verbose=False).predict("Lovely hotel, friendly staff.", api_name="/predict")
    assert out["label"] in ("negative", "positive")


def test_compare_shows_hostile_run_names_and_warnings_as_text(trained, tiny_bert_dir):
    """Case (review of issue 22): Compare's warning lines put the run name and the warning text into Markdown raw."""
    url, engine, _ = trained
    cfg = RunConfig(DataConfig(), ModelConfig(source="local", checkpoint=str(tiny_bert_dir)),
                    TrainConfig(epochs=1, batch_size=32, learning_rate=1e-3, max_length=8))  # fmt: skip
    run = engine.start_run(cfg)  # max length 8: most demo reviews are cut, so the run carries a truncation warning
    assert run.done.wait(120) and engine.join(30) and run.status == RunStatus.COMPLETED, run.error
    hostile = "<img src=http:127.0.0.1:9> [x](http:evil.test)"
    engine.rename_run(run.run_id, hostile)
    msg, *_ = Client(url, verbose=False).predict([run.run_id], api_name="/compare_runs")
    assert "Warnings:" in msg and "longer than the max length" in msg
    assert "<img" not in msg and "&lt;img" in msg
    assert not re.search(r"(?<!\\)\]\(", msg)  # no unescaped '](': the link syntax is broken by a backslash
