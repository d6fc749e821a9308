"""The Run object shared by the worker thread and the UI: status, an append-only metrics log, progress, stop."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftui.config import RunConfig
from ftui.events import Event, EventType, decode, decode_all
from ftui.progress import Progress
from ftui.rows import RunRow, RunStatus  # RunStatus is defined with the rows; imported from here as before

RUN_FILE = "run.json"
SHARE_S = 0.3  # a live run's progress reaches the store at most this often (phase changes at once)


@dataclass(frozen=True)
class RunSnapshot:
    """A consistent copy of a run at one version, for rendering without holding the lock."""

    run_id: str
    name: str
    version: int
    status: RunStatus
    events: tuple[dict[str, Any], ...]
    progress: Progress
    error: str | None
    result: dict[str, Any]
    started_at: float
    ended_at: float | None


@dataclass
class Run:
    """One training run. Writers call log/set_progress/finish; readers take snapshots or wait on versions."""

    run_id: str
    name: str
    config: RunConfig
    out_dir: Path
    label_names: list[str] = field(default_factory=list)
    started_at: float = field(default_factory=time.time)
    note: str = ""
    showcase: bool = False  # an admin showed it to every visitor (read-only) on a Space with sign-in
    store: Any = field(default=None, repr=False, compare=False)  # ftui.store.Store: every change is also written there
    remote: bool = False  # trained by another process (the CLI, another app): this object is a view of the store

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._events: list[dict[str, Any]] = []
        self._version = 0
        self._status = RunStatus.QUEUED
        self._progress = Progress()
        self._result: dict[str, Any] = {}
        self._error: str | None = None
        self.ended_at: float | None = None
        self.stop_event = threading.Event()
        self.done = threading.Event()
        self.listeners: list[Any] = []  # extra metric sinks (TensorBoard, trackio), called with each event
        self.awaits: list[threading.Event] = []  # its verdict waits for these to be set (a baseline started beside it)
        self._shared_at = 0.0  # when progress was last written to the store

    # ---- writers
    def log(self, event: Event | dict[str, Any]) -> None:
        """Append one event (ftui.events; a plain dict with a 'type' is accepted for tests and imports)."""
        if isinstance(event, Event):
            event = event.to_dict()
        with self._cond:
            ev = {**event, "time": round(time.time() - self.started_at, 3)}
            # Stored before anyone can see it: whatever a reader saw survives a kill (a WAL commit takes ~0.1 ms).
            self._persist(lambda st: st.add_event(self.run_id, len(self._events), ev))
            self._events.append(ev)
            self._bump()
        for listener in list(self.listeners):
            try:
                listener(ev)
            except Exception:  # noqa: BLE001 - a broken sink must not break the run
                self.listeners.remove(listener)

    def set_progress(self, **fields_: Any) -> None:
        """Replace some fields of the run's Progress (phase, step, total_steps, eta_s, …); an unknown name is a
        TypeError."""
        with self._cond:
            self._progress = self._progress.merged(**fields_)
            self._bump()
            now = time.monotonic()
            share = self.store is not None and not self.remote and ("phase" in fields_ or now - self._shared_at >= SHARE_S)
            if share:
                self._shared_at = now
                progress = self._progress
        if share:  # other processes (the app watching a CLI or torchrun run) show the same progress line
            self._persist(lambda st: st.set_progress(self.run_id, progress))

    def set_status(self, status: RunStatus) -> None:
        """Move to a non-final status (running)."""
        with self._cond:
            self._status = status
            self._bump()
        self._persist(lambda st: st.save_run(self.row()))

    def finish(
        self, status: RunStatus, error: str | None = None, result: dict[str, Any] | None = None, persist: bool = True
    ) -> None:
        """Enter a final status once (the first outcome wins), write run.json, then signal `done`."""
        with self._cond:
            if self._status.finished:
                return
            self._status, self._error = status, error
            self._result.update(result or {})
            self.ended_at = time.time()
            self._progress = self._progress.merged(phase=status.value)
            self._bump()
        if persist:
            self._persist(lambda st: st.save_run(self.row()))
            try:
                self.save()  # before `done`, so whoever waits on it reads a complete record
            except OSError as exc:
                with self._cond:
                    self._error = f"{error + '; ' if error else ''}could not write the run record: {exc}"
                    self._bump()
        self.done.set()

    def save_header(self) -> None:
        """Write the run's header to the store now (at creation, before any event)."""
        self._persist(lambda st: st.save_run(self.row()))

    def _persist(self, write: Any) -> None:
        """Write through to the store; a failing store (disk full) is reported but never stops training."""
        if self.store is None:
            return
        try:
            write(self.store)
        except Exception as exc:  # noqa: BLE001 - sqlite3.Error, OSError: the run goes on, the UI shows why
            with self._cond:
                self._progress = self._progress.merged(store_error=f"could not write to the experiment store: {exc}")
                self._bump()

    def _bump(self) -> None:
        self._version += 1
        self._cond.notify_all()

    def reopen(self, keep_until_step: int) -> None:
        """Make a stopped/interrupted run live again for a resume: events after the snapshot's step are dropped."""
        with self._cond:
            kept = (EventType.START, EventType.RESUME)
            self._events = [e for e in self._events if (t := decode(e)).type in kept or t.step <= keep_until_step]
            self._status, self._error, self.ended_at = RunStatus.QUEUED, None, None
            self._result = {}
            self._progress = Progress(phase="resuming")
            self.stop_event.clear()
            self.done.clear()
            events = list(self._events)
            self._bump()
        self._persist(lambda st: st.replace_events(self.run_id, events))
        self._persist(lambda st: st.save_run(self.row()))

    def request_stop(self) -> None:
        """Ask the worker to end between steps."""
        self.stop_event.set()

    # ---- readers
    @property
    def version(self) -> int:
        """Counter bumped by every change; the UI re-renders only when it moved."""
        with self._cond:
            return self._version

    @property
    def status(self) -> RunStatus:
        """Current status."""
        with self._cond:
            return self._status

    @property
    def error(self) -> str | None:
        """The captured failure message, if any."""
        with self._cond:
            return self._error

    @property
    def result(self) -> dict[str, Any]:
        """Final metrics and paths (copy)."""
        with self._cond:
            return dict(self._result)

    def events(self, since: int = 0) -> list[dict[str, Any]]:
        """Events from index `since` on (copy)."""
        with self._cond:
            return list(self._events[since:])

    def snapshot(self, events: bool = True) -> RunSnapshot:
        """Everything the UI renders, read under one lock (events=False skips copying the log, for status lines)."""
        with self._cond:
            return RunSnapshot(
                self.run_id,
                self.name,
                self._version,
                self._status,
                tuple(self._events) if events else (),
                self._progress,  # frozen: shared, not copied
                self._error,
                dict(self._result),
                self.started_at,
                self.ended_at,
            )

    def wait_for_change(self, since_version: int, timeout: float) -> int:
        """Block until the version passes `since_version` or the timeout ends; returns the version."""
        with self._cond:
            self._cond.wait_for(lambda: self._version > since_version, timeout=timeout)
            return self._version

    # ---- persistence
    def row(self) -> RunRow:
        """The run's record without its events (what the store's runs row holds); no copy of the event log."""
        with self._cond:
            status, error, result, ended = self._status, self._error, dict(self._result), self.ended_at
        return RunRow(
            run_id=self.run_id,
            name=self.name,
            status=status,
            config=self.config.to_dict(),
            started_at=self.started_at,
            out_dir=str(self.out_dir),
            note=self.note,
            error=error,
            label_names=tuple(self.label_names),
            result=result,
            ended_at=ended,
            showcase=self.showcase,
        )

    def header(self) -> dict[str, Any]:
        """run.json's header (the record the runs table and the baseline verdicts read)."""
        return self.row().to_json()

    def to_json(self) -> dict[str, Any]:
        """Record of the run for run.json (no secrets: tokens never enter a RunConfig)."""
        with self._cond:  # one lock for both, so the header and the events describe the same moment
            return {**self.header(), "events": list(self._events)}

    def save(self) -> None:
        """Write run.json atomically (temp file, then rename)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.out_dir / f".{RUN_FILE}.tmp"
        tmp.write_text(json.dumps(self.to_json(), indent=1, default=str))
        os.replace(tmp, self.out_dir / RUN_FILE)

    @classmethod
    def load(cls, out_dir: Path) -> Run:
        """A finished run read back from its folder; one left 'running' by a dead process is 'interrupted'."""
        d = json.loads((out_dir / RUN_FILE).read_text())
        return cls.from_record(RunRow.from_json(d), list(d.get("events", [])), out_dir)

    @classmethod
    def from_record(cls, row: RunRow, events: list[dict[str, Any]], out_dir: Path, store: Any = None, live: bool = False) -> Run:
        """A run rebuilt from a stored header and its events (run.json or the store).

        live: another process is training it (the store's heartbeat says so), so it stays queued/running as a remote
        view; otherwise an unfinished record means its process died and the run is 'interrupted'.
        """
        run = cls(row.run_id, row.name, RunConfig.from_dict(row.config), out_dir, list(row.label_names))
        run.note = row.note
        run.showcase = row.showcase
        run.started_at = row.started_at
        run._events = list(events)
        run.store = store
        status = row.status
        if live and not status.finished:
            run.remote = True
            run.apply_record(row, [])
            return run
        if not status.finished:
            status = RunStatus.INTERRUPTED
        result = dict(row.result)
        if not result.get("best_eval"):
            result.pop("best_eval", None)
            best = best_eval_of(run._events)  # an interrupted run's evaluations are in its events
            if best:
                result["best_eval"] = best
        run.finish(status, row.error, result, persist=False)
        run.ended_at = row.ended_at or run.ended_at
        return run

    def apply_record(self, row: RunRow, new_events: list[dict[str, Any]], shared: Progress | None = None) -> None:
        """Bring a remote run up to date with its store row, the events logged since the last sync and the progress
        its owner shared (when read)."""
        with self._cond:
            self._status = row.status
            self._error = row.error
            self._result = dict(row.result)
            self.ended_at = row.ended_at
            self.name, self.note = row.name, row.note
            self.showcase = row.showcase
            self.label_names = list(row.label_names)
            self._events.extend(new_events)
            owner = str(row.owner or "").split(":")
            where = f"process {owner[1]} on {owner[0]}" if len(owner) == 3 else "another process"
            shared = shared if shared is not None and not self._status.finished else Progress()
            self._progress = shared.merged(phase=shared.phase or self._status.value, owner=where)
            self._bump()
        if self._status.finished:
            self.done.set()


def best_eval_of(events: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The best evaluation in an event log by its label shape's own rule (tasks.better: accuracy, micro-F1 or RMSE,
    then the lower loss; a masked-LM run by its loss), as the training loop records it; NaN scores never win."""
    import math

    from ftui.tasks import Task, better

    evals = [(e.step, e.scores("eval_")) for e in decode_all(events) if e.type == EventType.EVAL]
    shape = next((t for key, t in _SHAPE_KEYS if any(key in m for _, m in evals)), None)
    best: dict[str, Any] | None = None
    for step, m in evals:
        if shape is None:  # masked-language modelling: the lower held-out loss
            wins = math.isfinite(m["loss"]) and (best is None or not math.isfinite(best["loss"]) or m["loss"] < best["loss"])
        else:
            wins = Task(shape).primary in m and better(Task(shape), m, best)
        if wins:
            best = {**m, "step": step}
    return best


# Which label shape an evaluation's scores show (regression first: its events carry no accuracy).
_SHAPE_KEYS = (("rmse", "regression"), ("micro_f1", "multi_label"), ("accuracy", "single_label"))
