"""The store's queue table (mixed into Store): runs waiting for the training slot, shared by every process of a runs
folder; each item belongs to the process that queued it (or adopted it after a restart), which starts it."""

from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from ftui.rows import QueueRow, config_user

log = logging.getLogger(__name__)

# token_kept: 1 when the run was queued with a Hub token, which lives in the queuing process's memory only (never here)
QUEUE_COLUMNS = ("item_id", "position", "config", "created_at", "sweep_id", "host", "pid", "owner", "token_kept")


def pid_alive(pid: int | None) -> bool:
    """A process with this PID runs here (a zombie does not)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (killed, not yet reaped by its new parent) works on nothing any more
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def user_of(config_json: str | None) -> str:
    """The owner in a stored config ('' = none or unreadable)."""
    try:
        return config_user(json.loads(config_json or "{}"))
    except ValueError:
        return ""


class QueueTable:
    """Queue operations on the store's database (Store provides the connection, its identity and clock)."""

    identity: str
    clock: Callable[[], float]

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError  # Store's

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError  # Store's

    def enqueue(self, items: list[tuple[str, dict[str, Any], str]], cap: int, token_kept: bool = False, user_cap: int = 0) -> int:
        """Append (item_id, config, sweep_id) items behind every queued one, all or none: 0 when the queue would pass
        `cap` items (the folder's whole queue, every process's), or their owner would have more than `user_cap`
        waiting; else how many items the queue holds now.
        token_kept: they were queued with a Hub token (held by the queuing process, not here)."""
        with self._tx() as c:
            count, last = c.execute("SELECT COUNT(*), MAX(position) FROM queue").fetchone()
            if cap and count + len(items) > cap:
                return 0
            if user_cap and items:
                user = str(items[0][1].get("user") or "")
                mine = sum(user_of(r[0]) == user for r in c.execute("SELECT config FROM queue"))
                if mine + len(items) > user_cap:
                    return 0
            now, position = self.clock(), float(last or 0.0)
            rows = []
            for item_id, config, sweep_id in items:
                position += 1.0
                rows.append((item_id, position, json.dumps(config), now, sweep_id, socket.gethostname(), os.getpid(),
                             self.identity, int(token_kept)))  # fmt: skip
            c.executemany(f"INSERT INTO queue ({', '.join(QUEUE_COLUMNS)}) VALUES (?,?,?,?,?,?,?,?,?)", rows)  # noqa: S608
            return count + len(items)

    def queue(self) -> list[QueueRow]:
        """Queued items in the order they will start."""
        try:
            rows = self._query(f"SELECT {', '.join(QUEUE_COLUMNS)} FROM queue ORDER BY position")  # noqa: S608
        except sqlite3.OperationalError as exc:  # a read-only database from before the queue: nothing is queued
            log.info("no queue in the store: %s", exc)
            return []
        return [QueueRow.from_db(dict(zip(QUEUE_COLUMNS, r, strict=True))) for r in rows]

    def queued_here(self) -> int:
        """How many queued items this process owns (no configs decoded: the Train tab asks every second)."""
        try:
            return int(self._query("SELECT COUNT(*) FROM queue WHERE owner=?", (self.identity,))[0][0])
        except sqlite3.OperationalError as exc:  # a read-only database from before the queue
            log.info("no queue in the store: %s", exc)
            return 0

    def pop_queued(self, pick: Callable[[list[tuple[str, str]]], str | None] | None = None) -> QueueRow | None:
        """Take the first item this process owns off the queue (atomically: no other dispatcher gets it); `pick`
        chooses another from the (item_id, user) pairs in queue order (a round robin over users)."""
        with self._tx() as c:
            rows = c.execute(
                f"SELECT {', '.join(QUEUE_COLUMNS)} FROM queue WHERE owner=? ORDER BY position",  # noqa: S608
                (self.identity,),
            ).fetchall()
            if not rows:
                return None
            chosen = pick([(r[0], user_of(r[2])) for r in rows]) if pick is not None else rows[0][0]
            row = next((r for r in rows if r[0] == chosen), rows[0])
            c.execute("DELETE FROM queue WHERE item_id=?", (row[0],))
        return QueueRow.from_db(dict(zip(QUEUE_COLUMNS, row, strict=True)))

    def cancel_queued(self, item_ids: list[str] | None = None) -> int:
        """Remove the given items (None: every item this process owns); how many went."""
        with self._tx() as c:
            if item_ids is None:
                return c.execute("DELETE FROM queue WHERE owner=?", (self.identity,)).rowcount
            return sum(c.execute("DELETE FROM queue WHERE item_id=?", (i,)).rowcount for i in item_ids)

    def move_queued(self, item_id: str, delta: int) -> bool:
        """Swap an item with its neighbour `delta` places away (-1 up, +1 down); False at either end or when gone."""
        with self._tx() as c:
            order = [r[0] for r in c.execute("SELECT item_id FROM queue ORDER BY position")]
            if item_id not in order:
                return False
            i = order.index(item_id)
            j = i + (1 if delta > 0 else -1)
            if not 0 <= j < len(order):
                return False
            order[i], order[j] = order[j], order[i]
            c.executemany("UPDATE queue SET position=? WHERE item_id=?", [(float(k + 1), x) for k, x in enumerate(order)])
            return True

    def adopt_queue(self) -> int:
        """Take over queued items whose process has ended (the app restarted): they start here, in their order."""
        with self._tx() as c:
            rows = c.execute("SELECT item_id, host, pid, owner FROM queue WHERE owner<>?", (self.identity,)).fetchall()
            here = socket.gethostname()
            dead = [r[0] for r in rows if r[1] == here and (r[2] == os.getpid() or not pid_alive(r[2]))]
            c.executemany(
                "UPDATE queue SET owner=?, host=?, pid=? WHERE item_id=?",
                [(self.identity, here, os.getpid(), i) for i in dead],
            )
        return len(dead)
