"""Progress: typed fields replaced by keyword, JSON that older and newer versions' rows read from."""

import json
import logging

import pytest

from ftui.config import RunConfig
from ftui.progress import Progress, ShownWarning
from ftui.runs import Run, RunStatus
from ftui.store import Store


def test_set_progress_replaces_the_named_fields_and_keeps_the_others(tmp_path):
    run = Run("r1", "one", RunConfig(), tmp_path / "r1")
    run.set_progress(phase="training", step=3, total_steps=10)
    run.set_progress(step=4, notices=["cache off"])
    p = run.snapshot(events=False).progress
    assert (p.phase, p.step, p.total_steps, p.notices) == ("training", 4, 10, ("cache off",))  # a list is kept as a tuple


def test_an_unknown_progress_field_is_a_type_error_not_a_new_key(tmp_path):
    run = Run("r1", "one", RunConfig(), tmp_path / "r1")
    version = run.version
    with pytest.raises(TypeError, match="no_such_field"):
        run.set_progress(no_such_field=1)
    assert run.version == version and run.snapshot(events=False).progress == Progress()


def test_json_holds_only_what_was_set_and_reads_back_equal():
    p = Progress(phase="training", step=7, class_weights=(0.5, 2.0), warnings=(ShownWarning("one_class", "all *pos*"),))
    data = p.to_json()
    assert data == {"phase": "training", "step": 7, "class_weights": [0.5, 2.0],
                    "warnings": [{"kind": "one_class", "message": "all *pos*"}]}  # fmt: skip
    assert Progress.from_json(json.loads(json.dumps(data))) == p


def test_the_shared_json_leaves_this_processs_store_error_out():
    p = Progress(step=2, store_error="disk full")
    assert p.to_json() == {"step": 2, "store_error": "disk full"}
    assert p.to_json(shared=True) == {"step": 2}


def test_a_row_from_another_version_reads_unknown_keys_dropped_and_logged(caplog):
    older = {"phase": "training", "step": 5, "gpu_temperature": 71, "warnings": [{"kind": "new_kind", "message": "m"}, 3]}
    with caplog.at_level(logging.INFO, logger="ftui.progress"):
        p = Progress.from_json(older)
    assert (p.phase, p.step, p.total_steps, p.eta_s) == ("training", 5, 0, None)  # missing fields keep their defaults
    assert p.warnings == (ShownWarning("new_kind", "m"),)  # a kind this version lacks still reads; the 3 is skipped
    assert "gpu_temperature" in caplog.text and "skipped: 3" in caplog.text
    assert Progress.from_json(None) == Progress() and Progress.from_json({"notices": "not a list"}) == Progress()


def test_the_store_shares_progress_and_reads_what_an_older_version_wrote(tmp_path):
    store = Store(tmp_path)
    run = Run("r1", "one", RunConfig(), tmp_path / "r1", store=store)
    run.save_header()
    assert store.progress("r1") is None  # nothing shared yet
    run.set_progress(phase="training", step=3, eta_s=12.5)
    assert store.progress("r1") == Progress(phase="training", step=3, eta_s=12.5)
    with store._tx() as c:  # as an older version wrote it: every key it knew, one this version does not
        c.execute("UPDATE runs SET progress=? WHERE run_id='r1'", (json.dumps({"phase": "x", "step": 9, "old": 1}),))
    assert store.progress("r1") == Progress(phase="x", step=9)
    run.finish(RunStatus.COMPLETED)
    assert run.snapshot(events=False).progress.phase == "completed"
