"""Typed store rows: run.json's header keeps its format, and databases and records of older versions still read."""

import json
import sqlite3
from dataclasses import replace

from ftui.config import RunConfig
from ftui.rows import QueueRow, RunRow, RunStatus
from ftui.runs import RUN_FILE, Run
from ftui.store import Store

# run.json's header as every version before typed rows wrote it: these keys, in this order.
RUN_JSON_KEYS = ["run_id", "name", "note", "showcase", "out_dir", "status", "error", "config", "label_names", "result",
                 "started_at", "ended_at", "events"]  # fmt: skip


def test_run_json_keeps_its_keys_and_reads_back_the_same_row(tmp_path):
    run = Run("r1", "one", RunConfig(user="alice"), tmp_path / "r1", ["neg", "pos"])
    run.note = "lr?"
    run.log({"type": "train", "step": 1, "loss": 0.5})
    run.finish(RunStatus.COMPLETED, None, {"test_accuracy": 0.75})
    saved = json.loads((tmp_path / "r1" / RUN_FILE).read_text())
    assert list(saved) == RUN_JSON_KEYS and saved["status"] == "completed" and saved["label_names"] == ["neg", "pos"]
    row = RunRow.from_json(saved)
    assert RunConfig.from_dict(row.config) == run.config  # the config as JSON holds lists where it had tuples
    assert replace(row, config=run.config.to_dict()) == run.row() and row.user == "alice" and row.label_names == ("neg", "pos")
    assert Run.load(tmp_path / "r1").row() == run.row()


def test_a_run_json_from_an_older_version_reads_with_defaults():
    old = {"run_id": "r0", "name": "legacy", "status": "completed", "config": {}, "started_at": 5.0}  # no note, no result…
    row = RunRow.from_json(old)
    assert (row.note, row.showcase, row.label_names, row.result, row.ended_at, row.error) == ("", False, (), {}, None, None)
    assert row.status is RunStatus.COMPLETED and row.user == "" and row.owner is None


OLD_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, name TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
    error TEXT, config TEXT NOT NULL, label_names TEXT NOT NULL DEFAULT '[]', result TEXT NOT NULL DEFAULT '{}',
    started_at REAL NOT NULL, ended_at REAL, out_dir TEXT NOT NULL, host TEXT, pid INTEGER);
CREATE TABLE events (run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE, seq INTEGER NOT NULL,
    type TEXT NOT NULL, step INTEGER, data TEXT NOT NULL, PRIMARY KEY (run_id, seq));
CREATE TABLE queue (item_id TEXT PRIMARY KEY, position REAL NOT NULL, config TEXT NOT NULL, created_at REAL NOT NULL,
    sweep_id TEXT NOT NULL DEFAULT '', host TEXT, pid INTEGER, owner TEXT NOT NULL);
"""


def test_a_database_from_before_heartbeats_progress_showcase_and_kept_tokens_reads_as_typed_rows(tmp_path):
    conn = sqlite3.connect(tmp_path / "ftui.db")
    conn.executescript(OLD_SCHEMA)
    config = json.dumps(RunConfig(user="bob").to_dict())
    conn.execute("INSERT INTO runs VALUES ('r1', 'old run', '', 'completed', NULL, ?, '[\"a\", \"b\"]', "
                 "'{\"test_accuracy\": 0.5}', 10.0, 20.0, '/elsewhere/r1', 'h', 1)", (config,))  # fmt: skip
    event = json.dumps({"type": "train", "step": 1, "loss": 0.9})
    conn.execute("INSERT INTO events VALUES ('r1', 0, 'train', 1, ?)", (event,))
    conn.execute("INSERT INTO queue VALUES ('q1', 1.0, ?, 30.0, '', 'h', 1, 'h:1:x')", (config,))
    conn.commit()
    conn.close()
    store = Store(tmp_path)
    (row,) = store.runs()
    assert row == RunRow(run_id="r1", name="old run", status=RunStatus.COMPLETED, config=json.loads(config), started_at=10.0,
                         out_dir="/elsewhere/r1", label_names=("a", "b"), result={"test_accuracy": 0.5}, ended_at=20.0,
                         host="h", pid=1)  # fmt: skip
    assert row.owner is None and row.heartbeat is None and row.showcase is False and row.user == "bob"
    assert store.progress("r1") is None and store.events("r1")[0]["loss"] == 0.9
    (item,) = store.queue()
    assert item == QueueRow("q1", 1.0, json.loads(config), 30.0, "", "h", 1, "h:1:x", token_kept=False)
    assert item.user == "bob"
