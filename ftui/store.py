"""The experiment store: every run and every metric event in one SQLite database inside the runs folder."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DB_FILE = "ftui.db"
FINAL = ("completed", "stopped", "failed", "interrupted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id      TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    note        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL,
    error       TEXT,
    config      TEXT NOT NULL,
    label_names TEXT NOT NULL DEFAULT '[]',
    result      TEXT NOT NULL DEFAULT '{}',
    started_at  REAL NOT NULL,
    ended_at    REAL,
    out_dir     TEXT NOT NULL,
    host        TEXT,
    pid         INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    type   TEXT NOT NULL,
    step   INTEGER,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""
HEADER = ("run_id", "name", "note", "status", "error", "config", "label_names", "result", "started_at", "ended_at", "out_dir")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Store:
    """Runs and their events in SQLite (WAL): each write is one transaction, so a killed process loses nothing
    already logged; several processes (the app and the CLI) may share one runs folder."""

    def __init__(self, runs_dir: Path) -> None:
        runs_dir.mkdir(parents=True, exist_ok=True)
        self.path = runs_dir / DB_FILE
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA busy_timeout=30000")
        self._conn.executescript(SCHEMA)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection (tests, shutdown)."""
        with self._lock:
            self._conn.close()

    # ---------------------------------------------------------------------------------------------------- writes
    def save_run(self, rec: dict[str, Any]) -> None:
        """Insert or update a run's header (everything but its events)."""
        row = (
            rec["run_id"],
            rec["name"],
            rec.get("note", ""),
            rec["status"],
            rec.get("error"),
            json.dumps(rec.get("config", {})),
            json.dumps(rec.get("label_names", [])),
            json.dumps(rec.get("result", {}), default=str),
            rec["started_at"],
            rec.get("ended_at"),
            str(rec["out_dir"]),
            socket.gethostname(),
            os.getpid(),
        )
        with self._tx() as c:
            c.execute(
                "INSERT INTO runs (run_id, name, note, status, error, config, label_names, result, started_at, ended_at,"
                " out_dir, host, pid) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(run_id) DO UPDATE SET"
                " name=excluded.name, note=excluded.note, status=excluded.status, error=excluded.error,"
                " config=excluded.config, label_names=excluded.label_names, result=excluded.result,"
                " started_at=excluded.started_at, ended_at=excluded.ended_at, out_dir=excluded.out_dir,"
                " host=excluded.host, pid=excluded.pid",
                row,
            )

    def add_event(self, run_id: str, seq: int, event: dict[str, Any]) -> None:
        """Append one metric event (idempotent per seq)."""
        with self._tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO events (run_id, seq, type, step, data) VALUES (?,?,?,?,?)",
                (run_id, seq, str(event.get("type", "")), event.get("step"), json.dumps(event, default=str)),
            )

    def replace_events(self, run_id: str, events: list[dict[str, Any]]) -> None:
        """Rewrite a run's events in one transaction (import of an old run.json, resume)."""
        with self._tx() as c:
            c.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            c.executemany(
                "INSERT INTO events (run_id, seq, type, step, data) VALUES (?,?,?,?,?)",
                [(run_id, i, str(e.get("type", "")), e.get("step"), json.dumps(e, default=str)) for i, e in enumerate(events)],
            )

    def update(self, run_id: str, **fields: Any) -> None:
        """Change name and/or note."""
        allowed = {k: v for k, v in fields.items() if k in ("name", "note")}
        if not allowed:
            return
        sets = ", ".join(f"{k}=?" for k in allowed)
        with self._tx() as c:
            c.execute(f"UPDATE runs SET {sets} WHERE run_id=?", (*allowed.values(), run_id))  # noqa: S608 - fixed names

    def delete(self, run_id: str) -> None:
        """Remove a run and its events."""
        with self._tx() as c:
            c.execute("DELETE FROM events WHERE run_id=?", (run_id,))
            c.execute("DELETE FROM runs WHERE run_id=?", (run_id,))

    def mark_interrupted(self) -> list[str]:
        """Runs left queued/running by a process on this host that no longer exists become 'interrupted'."""
        host = socket.gethostname()
        rows = self._query("SELECT run_id, host, pid FROM runs WHERE status IN ('queued', 'running')")
        dead = [r[0] for r in rows if r[1] != host or (r[2] != os.getpid() and not _pid_alive(r[2]))]
        # Another host's run cannot be checked; a shared folder across hosts is not supported, so treat it as dead.
        if dead:
            with self._tx() as c:
                c.executemany(
                    "UPDATE runs SET status='interrupted', error=COALESCE(error, ?) WHERE run_id=?",
                    [("The process running it ended before the run finished.", r) for r in dead],
                )
        return dead

    # ----------------------------------------------------------------------------------------------------- reads
    def runs(self) -> list[dict[str, Any]]:
        """Every run's header, oldest first."""
        rows = self._query(f"SELECT {', '.join(HEADER)} FROM runs ORDER BY started_at, run_id")  # noqa: S608
        return [self._decode(r) for r in rows]

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run's header and events, or None."""
        rows = self._query(f"SELECT {', '.join(HEADER)} FROM runs WHERE run_id=?", (run_id,))  # noqa: S608
        if not rows:
            return None
        rec = self._decode(rows[0])
        rec["events"] = self.events(run_id)
        return rec

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """A run's events in order."""
        return [json.loads(d) for (d,) in self._query("SELECT data FROM events WHERE run_id=? ORDER BY seq", (run_id,))]

    @staticmethod
    def _decode(row: tuple[Any, ...]) -> dict[str, Any]:
        rec = dict(zip(HEADER, row, strict=True))
        for key in ("config", "label_names", "result"):
            rec[key] = json.loads(rec[key]) if rec[key] else ({} if key != "label_names" else [])
        return rec
