"""The experiment store: every run and every metric event in one SQLite database inside the runs folder.

The store is the truth about runs shared by several processes (the app, the CLI): each live run's owner writes a
heartbeat, so any process can tell a run that is training elsewhere from one whose process died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ftui.progress import Progress
from ftui.rows import RunRow
from ftui.store_queue import QueueTable, pid_alive, user_of

log = logging.getLogger(__name__)

DB_FILE = "ftui.db"
FINAL = ("completed", "stopped", "failed", "interrupted")
HEARTBEAT_S = 5.0  # a live run's owner refreshes its heartbeat this often
STALE_S = 60.0  # a run whose heartbeat is older than this is dead (its process hung, died or lost the disk)
_IDENTITY: dict[int, str] = {}


def process_identity() -> str:
    """host:pid:nonce of this process; the nonce tells a new process apart from a dead one with the same PID
    (a restarted container runs as PID 1 again)."""
    pid = os.getpid()  # per PID, so a forked child gets its own identity
    if pid not in _IDENTITY:
        _IDENTITY[pid] = f"{socket.gethostname()}:{pid}:{uuid.uuid4().hex[:12]}"
    return _IDENTITY[pid]


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
    pid         INTEGER,
    owner       TEXT,
    heartbeat   REAL,
    showcase    INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    type   TEXT NOT NULL,
    step   INTEGER,
    data   TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE IF NOT EXISTS queue (
    item_id    TEXT PRIMARY KEY,
    position   REAL NOT NULL,
    config     TEXT NOT NULL,
    created_at REAL NOT NULL,
    sweep_id   TEXT NOT NULL DEFAULT '',
    host       TEXT,
    pid        INTEGER,
    owner      TEXT NOT NULL,
    token_kept INTEGER NOT NULL DEFAULT 0
);
"""
HEADER = (
    "run_id", "name", "note", "status", "error", "config", "label_names", "result", "started_at", "ended_at", "out_dir",
    "host", "pid", "owner", "heartbeat", "showcase",
)  # fmt: skip


def _probe_writable(folder: Path) -> None:
    """OSError when nothing can be created in `folder` (a read-only mount, permissions, an immutable folder)."""
    probe = folder / f".ftui-write-probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    probe.write_bytes(b"")
    probe.unlink()


class StoreUnavailable(Exception):
    """The runs folder cannot be written (read-only disk or permissions); `reason` says which."""


class Store(QueueTable):
    """Runs and their events in SQLite (WAL; a rollback journal on network storage): each write is one transaction,
    so a killed process loses nothing already logged; several processes (the app and the CLI) may share one runs
    folder.

    A damaged database file is moved aside and a fresh one started (`notice` says so; the engine re-imports the run
    folders). A read-only runs folder opens read-only (`read_only` holds the reason) and every write raises.
    """

    def __init__(
        self, runs_dir: Path, stale_after: float = STALE_S, clock: Callable[[], float] = time.time, network: bool = False
    ) -> None:
        self.path = runs_dir / DB_FILE
        # On a network mount (a Space's bucket volume) SQLite's WAL index (-shm) is memory-mapped and unreliable: a
        # rollback journal, full syncs and no mmap there (the choice trackio made after SIGBUS crashes on buckets).
        self.network = network
        self.stale_after = stale_after
        self.clock = clock
        self.identity = process_identity()
        self.notice = ""
        self.read_only = ""
        self._lock = threading.Lock()
        self._columns = ", ".join(HEADER)  # what a header SELECT reads (an older read-only database substitutes some)
        try:
            runs_dir.mkdir(parents=True, exist_ok=True)
            _probe_writable(runs_dir)
            self._conn = self._open_checked()
        except (OSError, sqlite3.OperationalError) as exc:
            if isinstance(exc, sqlite3.OperationalError) and "readonly" not in str(exc) and "unable to open" not in str(exc):
                raise
            self.read_only = f"the runs folder {runs_dir} cannot be written ({exc})"
            log.warning("opening the store read-only: %s", self.read_only)
            self._conn = self._open_read_only()

        # Writes land somewhere: the database, or the in-memory index standing in for an unreadable read-only one.
        self.writable = not self.read_only or self._conn.execute("PRAGMA database_list").fetchone()[2] == ""

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")  # first: switching the journal mode waits for other connections
        if self.network:
            conn.execute("PRAGMA mmap_size=0")
            conn.execute("PRAGMA journal_mode=DELETE")
            conn.execute("PRAGMA synchronous=FULL")  # a rollback journal needs full syncs to survive a kill
        else:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process kills
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
        # databases from before heartbeats, and before live progress was shared
        for column, kind in (("owner", "TEXT"), ("heartbeat", "REAL"), ("progress", "TEXT"),
                             ("showcase", "INTEGER NOT NULL DEFAULT 0")):  # fmt: skip
            if column not in have:
                conn.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
        if "token_kept" not in {row[1] for row in conn.execute("PRAGMA table_info(queue)")}:  # queues from before it
            conn.execute("ALTER TABLE queue ADD COLUMN token_kept INTEGER NOT NULL DEFAULT 0")
        return conn

    def _open_checked(self) -> sqlite3.Connection:
        """Open the database; a damaged file (truncated, overwritten) is moved aside and a fresh one created."""
        try:
            conn = self._open()
            problems = conn.execute("PRAGMA quick_check").fetchall()
            if problems != [("ok",)]:
                conn.close()
                raise sqlite3.DatabaseError(f"integrity check: {problems[0][0]}")
            return conn
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and any(
                word in str(exc) for word in ("readonly", "unable to open", "locked", "busy")
            ):
                raise  # not damage: another process holds it, or the disk refuses writes (never move a sound file aside)
            aside = self.path.with_name(f"{DB_FILE}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("", "-wal", "-shm", "-journal"):
                part = Path(f"{self.path}{suffix}")
                if part.exists():
                    os.replace(part, f"{aside}{suffix}")
            self.notice = (
                f"The experiment store {self.path.name} was damaged ({exc}); it was moved to {aside.name} and rebuilt "
                "from the run folders (runs and their final metrics are back; live curves of unfinished runs may be missing)."
            )
            log.warning(self.notice)
            return self._open()

    def _open_read_only(self) -> sqlite3.Connection:
        if self.path.exists():
            # mode=ro reads a WAL database when its -wal/-shm files are there; immutable (no side files at all) when not
            for query in ("mode=ro", "mode=ro&immutable=1"):
                try:
                    conn = sqlite3.connect(f"file:{self.path}?{query}", uri=True, check_same_thread=False)
                except sqlite3.Error as exc:
                    log.info("read-only open (%s) failed: %s", query, exc)
                    continue
                try:
                    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
                    if {"owner", "heartbeat"} <= have:
                        # columns added since (read-only: no upgrade) read as their defaults
                        self._columns = ", ".join(c if c in have else f"0 AS {c}" for c in HEADER)
                        return conn
                except sqlite3.DatabaseError as exc:
                    log.info("read-only store unreadable (%s): %s", query, exc)
                conn.close()
        # Nothing readable (or an older schema that cannot be upgraded here): an in-memory index of the run folders.
        conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        conn.executescript(SCHEMA)
        return conn

    def _write_guard(self) -> None:
        if not self.writable:
            raise StoreUnavailable(self.read_only)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._write_guard()
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
    def save_run(self, rec: RunRow) -> None:
        """Insert or update a run's header (everything but its events); this process becomes its owner."""
        row = (
            rec.run_id,
            rec.name,
            rec.note,
            rec.status.value,
            rec.error,
            json.dumps(rec.config),
            json.dumps(list(rec.label_names)),
            json.dumps(rec.result, default=str),
            rec.started_at,
            rec.ended_at,
            rec.out_dir,
            socket.gethostname(),
            os.getpid(),
            self.identity,
            self.clock(),
            int(rec.showcase),
        )
        with self._tx() as c:
            # showcase is an admin's mark, changed by update() only: a worker re-saving its header never clears it
            c.execute(
                "INSERT INTO runs (run_id, name, note, status, error, config, label_names, result, started_at, ended_at,"
                " out_dir, host, pid, owner, heartbeat, showcase) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(run_id) DO UPDATE"
                " SET name=excluded.name, note=excluded.note, status=excluded.status, error=excluded.error,"
                " config=excluded.config, label_names=excluded.label_names, result=excluded.result,"
                " started_at=excluded.started_at, ended_at=excluded.ended_at, out_dir=excluded.out_dir,"
                " host=excluded.host, pid=excluded.pid, owner=excluded.owner, heartbeat=excluded.heartbeat",
                row,
            )

    def beat(self, run_id: str) -> bool:
        """Refresh the heartbeat of a run this process owns; False when another process has taken it over.

        A run marked interrupted while its process was only slow (a long stall past STALE_S) is running again.
        """
        with self._tx() as c:
            cur = c.execute(
                "UPDATE runs SET heartbeat=?, status=CASE WHEN status='interrupted' THEN 'running' ELSE status END,"
                " error=CASE WHEN status='interrupted' THEN NULL ELSE error END WHERE run_id=? AND owner=?",
                (self.clock(), run_id, self.identity),
            )
            return cur.rowcount == 1

    def set_progress(self, run_id: str, progress: Progress) -> None:
        """Share a live run's progress line (step, ETA, speed) with other processes' views of it."""
        with self._tx() as c:
            c.execute(
                "UPDATE runs SET progress=? WHERE run_id=? AND owner=?",
                (json.dumps(progress.to_json(shared=True), default=str), run_id, self.identity),
            )

    def progress(self, run_id: str) -> Progress | None:
        """A run's last shared progress (None when none, or in a database from before it was shared)."""
        try:
            rows = self._query("SELECT progress FROM runs WHERE run_id=?", (run_id,))
        except sqlite3.OperationalError as exc:
            log.info("no progress in the store: %s", exc)
            return None
        if not rows or not rows[0][0]:
            return None
        try:
            return Progress.from_json(json.loads(rows[0][0]))
        except (ValueError, TypeError) as exc:  # a damaged or foreign value: the run shows no progress line
            log.info("unreadable progress of run %s: %s", run_id, exc)
            return None

    def header(self, run_id: str) -> RunRow | None:
        """One run's header (no events), or None."""
        rows = self._query(f"SELECT {self._columns} FROM runs WHERE run_id=?", (run_id,))  # noqa: S608
        return self._decode(rows[0]) if rows else None

    def claim(self, run_id: str) -> bool:
        """Take a stopped or interrupted run for a resume, atomically: False when it is live or was just claimed."""
        with self._tx() as c:
            row = c.execute("SELECT status, host, pid, owner, heartbeat FROM runs WHERE run_id=?", (run_id,)).fetchone()
            # failed: by a lost rank, which left a snapshot (the caller checked)
            if row is None or row[0] not in ("stopped", "interrupted", "failed"):
                return False
            c.execute(
                "UPDATE runs SET status='queued', error=NULL, owner=?, heartbeat=?, host=?, pid=? WHERE run_id=?",
                (self.identity, self.clock(), socket.gethostname(), os.getpid(), run_id),
            )
            return True

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
        """Change name, note and/or the showcase mark."""
        allowed = {k: v for k, v in fields.items() if k in ("name", "note", "showcase")}
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

    def alive(self, rec: RunRow) -> bool:
        """Whether the process that owns a queued/running record still works on it."""
        host, pid, owner, beat = rec.host, rec.pid, rec.owner, rec.heartbeat
        fresh = beat is not None and self.clock() - float(beat) < self.stale_after
        if owner is None:  # a database from before heartbeats: the PID is all there is
            return host == socket.gethostname() and pid != os.getpid() and pid_alive(pid)
        if owner == self.identity:
            return fresh  # this process: alive while something here keeps beating for it
        if host == socket.gethostname():
            if pid == os.getpid():
                return False  # an earlier process that had our PID (a restarted container is PID 1 again)
            if not pid_alive(pid):
                return False
        return fresh

    def mark_interrupted(self) -> list[str]:
        """Queued/running runs whose owner is dead (no process, a reused PID, or a stale heartbeat) become interrupted."""
        if self.read_only:
            return []
        with self._tx() as c:  # one transaction: a heartbeat or a finish cannot slip between the check and the update
            rows = c.execute(f"SELECT {self._columns} FROM runs WHERE status IN ('queued', 'running')").fetchall()  # noqa: S608
            dead = [rec.run_id for rec in map(self._decode, rows) if not self.alive(rec)]
            c.executemany(
                "UPDATE runs SET status='interrupted', error=COALESCE(error, ?) WHERE run_id=?",
                [("The process running it ended before the run finished.", r) for r in dead],
            )
        return dead

    # ----------------------------------------------------------------------------------------------------- reads
    def unfinished_ids(self) -> list[str]:
        """Ids of the runs still queued or running in the store (live or left so by a process that died)."""
        return [run_id for run_id, _ in self.unfinished()]

    def unfinished(self) -> list[tuple[str, str]]:
        """(run id, owner) of the runs still queued or running in the store (the owner names the run's folder)."""
        rows = self._query("SELECT run_id, config FROM runs WHERE status IN ('queued', 'running')")
        return [(r[0], user_of(r[1])) for r in rows]

    def live_elsewhere(self) -> list[str]:
        """Ids of the runs another live process trains (or is starting) in this folder, by the heartbeat rule."""
        rows = self._query(f"SELECT {self._columns} FROM runs WHERE status IN ('queued', 'running')")  # noqa: S608
        return [rec.run_id for rec in map(self._decode, rows) if rec.owner != self.identity and self.alive(rec)]

    def runs(self) -> list[RunRow]:
        """Every run's header, oldest first."""
        rows = self._query(f"SELECT {self._columns} FROM runs ORDER BY started_at, run_id")  # noqa: S608
        return [self._decode(r) for r in rows]

    def events(self, run_id: str, since: int = 0) -> list[dict[str, Any]]:
        """A run's events in order, from index `since` on."""
        rows = self._query("SELECT data FROM events WHERE run_id=? AND seq>=? ORDER BY seq", (run_id, since))
        return [json.loads(d) for (d,) in rows]

    @staticmethod
    def _decode(row: tuple[Any, ...]) -> RunRow:
        return RunRow.from_db(dict(zip(HEADER, row, strict=True)))
