"""The store's rows as typed values: a run's status and header (RunRow, also run.json's header) and a queued item."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class RunStatus(str, Enum):
    """Lifecycle of a run; the last four are final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        """True once the run will change no more."""
        return self not in (RunStatus.QUEUED, RunStatus.RUNNING)


def config_user(config: Any) -> str:
    """The owner named in a stored config ('' = none, or not a config)."""
    user = config.get("user") if isinstance(config, Mapping) else ""
    return user if isinstance(user, str) else ""


@dataclass(frozen=True)
class RunRow:
    """A run's header: everything but its events. The store's `runs` row (with who holds it), and run.json's header."""

    run_id: str  # the run's folder name and key everywhere
    name: str  # shown in the tables; the user may rename it
    status: RunStatus
    config: dict[str, Any]  # RunConfig.to_dict(): kept as stored, so listing many runs parses no configs
    started_at: float  # epoch seconds
    out_dir: str  # where the process that wrote it kept the files (readers use their own runs folder)
    note: str = ""  # the user's free-text note
    error: str | None = None  # why it failed, was interrupted or could not be written
    label_names: tuple[str, ...] = ()  # class names in model order (empty for regression)
    result: dict[str, Any] = field(default_factory=dict)  # final metrics and paths (keys vary by run kind)
    ended_at: float | None = None  # epoch seconds, once finished
    showcase: bool = False  # an admin showed it to every visitor (read-only)
    host: str | None = None  # the host of the process that last wrote it (None: not read from the store)
    pid: int | None = None  # that process's PID
    owner: str | None = None  # that process's identity (host:pid:nonce); None in a database from before heartbeats
    heartbeat: float | None = None  # when its owner last said it works on it (epoch seconds)

    @property
    def user(self) -> str:
        """The signed-in user who owns the run ('' = none)."""
        return config_user(self.config)

    def to_json(self) -> dict[str, Any]:
        """run.json's header (the keys and order every version wrote; the store's ownership columns left out)."""
        return {
            "run_id": self.run_id,
            "name": self.name,
            "note": self.note,
            "showcase": self.showcase,
            "out_dir": self.out_dir,
            "status": self.status.value,
            "error": self.error,
            "config": self.config,
            "label_names": list(self.label_names),
            "result": self.result,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunRow:
        """The header of a run.json (any version: missing keys take their defaults; KeyError without an id or name)."""
        return cls(
            run_id=str(d["run_id"]),
            name=str(d["name"]),
            status=RunStatus(d.get("status") or "failed"),  # a record without a status never finished well
            config=dict(d.get("config") or {}),
            started_at=float(d.get("started_at") or time.time()),  # as good a guess as any for a record without one
            out_dir=str(d.get("out_dir") or ""),
            note=str(d.get("note") or ""),
            error=d.get("error"),
            label_names=tuple(d.get("label_names") or ()),
            result=dict(d.get("result") or {}),
            ended_at=d.get("ended_at"),
            showcase=bool(d.get("showcase")),
        )

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> RunRow:
        """A row of the store's `runs` table, by column name (JSON columns decoded)."""
        return cls(
            run_id=row["run_id"],
            name=row["name"],
            status=RunStatus(row["status"]),
            config=json.loads(row["config"]) if row["config"] else {},
            started_at=float(row["started_at"]),
            out_dir=row["out_dir"],
            note=row["note"] or "",
            error=row["error"],
            label_names=tuple(json.loads(row["label_names"])) if row["label_names"] else (),
            result=json.loads(row["result"]) if row["result"] else {},
            ended_at=row["ended_at"],
            showcase=bool(row["showcase"]),
            host=row["host"],
            pid=row["pid"],
            owner=row["owner"],
            heartbeat=row["heartbeat"],
        )


@dataclass(frozen=True)
class QueueRow:
    """A run waiting in the store's queue for the training slot."""

    item_id: str  # the queue's key (the run gets its own id when it starts)
    position: float  # order in the queue (lower starts first)
    config: dict[str, Any]  # RunConfig.to_dict() of the run to start
    created_at: float  # when it was queued (epoch seconds)
    sweep_id: str  # the sweep it belongs to ('' = none)
    host: str | None  # the host of the process that starts it
    pid: int | None  # that process's PID
    owner: str  # that process's identity: only it starts the item (or one that adopts it after a restart)
    token_kept: bool  # queued with a Hub token, held in the queuing process's memory only (never in the store)

    @property
    def user(self) -> str:
        """The signed-in user who queued it ('' = none)."""
        return config_user(self.config)

    @classmethod
    def from_db(cls, row: Mapping[str, Any]) -> QueueRow:
        """A row of the store's `queue` table, by column name (the config decoded)."""
        return cls(
            item_id=row["item_id"],
            position=float(row["position"]),
            config=json.loads(row["config"]),
            created_at=float(row["created_at"]),
            sweep_id=row["sweep_id"] or "",
            host=row["host"],
            pid=row["pid"],
            owner=row["owner"],
            token_kept=bool(row["token_kept"]),
        )
