"""Run management: every run of the runs folder (from the store, whichever process trains it), the one training
slot of this process, the queue of runs waiting for it, its worker and heartbeat threads, Stop, resume claims, and the
guards on delete and edit."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftui.config import RunConfig
from ftui.errors import FtuiError, RunInProgress
from ftui.files import recover_dir
from ftui.run_layout import MODEL_DIR, RESUME_DIR, can_resume
from ftui.runs import RUN_FILE, Run
from ftui.store import HEARTBEAT_S, Store, StoreUnavailable

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}|[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
SYNC_MIN_S = 0.5  # the runs list re-reads the store at most this often (many tabs may ask at once)
MAX_QUEUE = 20  # runs waiting at once, unless the deployment says otherwise (FTUI_MAX_QUEUE)


@dataclass(frozen=True)
class QueuedRun:
    """A run waiting for the training slot, as the store keeps it (so a restart keeps the queue)."""

    item_id: str
    position: int  # 1 = starts next
    config: RunConfig
    created_at: float
    here: bool  # queued by this process, which will start it; other processes' items are shown, not started here
    token_lost: bool = False  # queued with a Hub token that a restart took (tokens live in memory only)
    with_token: bool = False  # queued with a Hub token: it lives in this process's memory only, lost on a restart

    @property
    def sweep_id(self) -> str:
        """The sweep it is a point of ('' = none)."""
        return self.config.sweep.sweep_id


class QueueFull(FtuiError):
    """More runs were asked for than the queue may hold."""

    def __init__(self, waiting: int, asked: int, cap: int) -> None:
        super().__init__(
            f"The queue holds at most {cap} runs; {waiting} are waiting and {asked} more were asked for.",
            "Wait for queued runs to finish, cancel some in the Train tab's queue, or ask for fewer "
            "(the operator can raise FTUI_MAX_QUEUE).",
        )


def check_run_id(run_id: Any) -> str:
    """A run id as the store writes them; anything else (paths, URLs, non-strings) is refused."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise FtuiError(f"'{str(run_id)[:100]}' is not a run id.", "Pick a run from the table.")
    return run_id


class RunManager:
    """Runs of one folder: this process trains at most one at a time; the store says what the others do."""

    def __init__(
        self,
        runs_dir: Path,
        store: Store,
        heartbeat_s: float = HEARTBEAT_S,
        max_queue: int = MAX_QUEUE,
        wait_for_others: bool = False,
    ) -> None:
        self.runs_dir = runs_dir
        # The app's rule: one run trains at a time in the folder, so its next run waits while another process's
        # trains (a CLI run, another app's, an orphan). A CLI `train` is an explicit ask and trains at once.
        self.wait_for_others = wait_for_others
        self.store = store
        self.heartbeat_s = heartbeat_s
        self.max_queue = max_queue
        # The engine's way to start a run taken off the queue (checks, then reserve + launch); True when one started.
        self.start_item: Callable[[QueuedRun, str | None], bool] | None = None
        self._dispatching = False  # a queued run is being started: a Start meanwhile queues behind it
        self._tokens: dict[str, str | None] = {}  # Hub tokens of queued runs: memory only, never in the store
        self._lock = threading.Lock()
        self._current: Run | None = None
        self._thread: threading.Thread | None = None
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._busy: dict[str, list[str]] = {}  # run_id -> what reads its files now (exports), so a delete waits
        self._synced_at = 0.0
        self._watcher: threading.Thread | None = None  # waits for other processes' runs to end, then dispatches
        self._wake = threading.Event()  # never set: the watcher's interruptible wait
        self._load()

    # ---------------------------------------------------------------------------------------------- registry
    def _load(self) -> None:
        """Runs from the store (dead owners' runs become interrupted), half-done file swaps recovered, plus run.json
        folders the store does not know (from before the store, or after a damaged store was rebuilt)."""
        self.store.mark_interrupted()
        found: dict[str, Run] = {}
        for rec in self.store.runs():
            try:
                live = rec["status"] in ("queued", "running") and self.store.alive(rec)
                rec["events"] = self.store.events(rec["run_id"])
                found[rec["run_id"]] = Run.from_record(rec, self.runs_dir / check_run_id(rec["run_id"]), self.store, live)
            except Exception as exc:  # noqa: BLE001 - one unreadable record must not hide the others
                log.warning("skipping unreadable run record %s: %s", rec.get("run_id"), exc)
        for path in sorted(self.runs_dir.glob(f"*/{RUN_FILE}")):
            if path.parent.name in found:
                continue
            try:
                run = Run.load(path.parent)
                if self.store.writable:
                    self.store.save_run(run.header())  # import it, so the store is complete again
                    self.store.replace_events(run.run_id, run.events())
                run.store = self.store
            except Exception as exc:  # noqa: BLE001
                log.warning("skipping unreadable run folder %s: %s", path.parent, exc)
                continue
            found[run.run_id] = run
        if not self.store.read_only:
            for run in found.values():
                if not run.remote:  # a live run's folders belong to its own process
                    self._recover_files(run)
        for run in sorted(found.values(), key=lambda r: (r.started_at, r.run_id)):
            self._runs[run.run_id] = run
        self._synced_at = time.monotonic()

    @staticmethod
    def _recover_files(run: Run) -> None:
        for name in (MODEL_DIR, RESUME_DIR):
            try:
                recover_dir(run.out_dir / name)
            except OSError as exc:
                log.warning("could not recover %s of run %s: %s", name, run.run_id, exc)

    def sync(self, force: bool = False) -> None:
        """Pick up runs other processes started, and the progress and outcome of those they train."""
        now = time.monotonic()
        if not force and now - self._synced_at < SYNC_MIN_S:
            return
        self._synced_at = now
        try:
            self.store.mark_interrupted()
            records = {r["run_id"]: r for r in self.store.runs()}
        except Exception as exc:  # noqa: BLE001 - a busy or failing store: show what we have
            log.warning("could not read the run store: %s", exc)
            return
        with self._lock:
            known = dict(self._runs)
        for run_id, rec in records.items():
            run = known.get(run_id)
            try:
                if run is None:
                    live = rec["status"] in ("queued", "running") and self.store.alive(rec)
                    rec["events"] = self.store.events(run_id)
                    fresh = Run.from_record(rec, self.runs_dir / check_run_id(run_id), self.store, live)
                    with self._lock:
                        self._runs.setdefault(run_id, fresh)
                elif run.remote:
                    rec["progress"] = self.store.progress(run_id)
                    run.apply_record(rec, self.store.events(run_id, len(run.events())))
                    if run.status.finished:
                        run.remote = False  # its owner is done with it: from now on it is an ordinary finished run
            except Exception as exc:  # noqa: BLE001
                log.warning("could not sync run %s: %s", run_id, exc)
        with self._lock:
            for run_id in [r for r, run in self._runs.items() if r not in records and run is not self._current]:
                del self._runs[run_id]  # deleted by another process
            self._runs = OrderedDict(sorted(self._runs.items(), key=lambda kv: (kv[1].started_at, kv[0])))

    def runs(self) -> list[Run]:
        """All runs of the folder, oldest first, including live ones of other processes."""
        self.sync()
        with self._lock:
            return list(self._runs.values())

    def get(self, run_id: str) -> Run | None:
        """A run by id (looked up in the store when this process has not seen it yet)."""
        with self._lock:
            run = self._runs.get(run_id)
        if run is None or run.remote:
            self.sync(force=run is None)
            with self._lock:
                run = self._runs.get(run_id)
        return run

    def require(self, run_id: Any) -> Run:
        """The run, or a message that it does not exist."""
        run = self.get(check_run_id(run_id))
        if run is None:
            raise FtuiError(f"No run '{run_id}'.", "Pick a run from the table (press Refresh if it was just deleted).")
        return run

    def require_idle(self, run_id: Any, action: str) -> Run:
        """The run, when nothing trains it (here or in another process): deleting or resuming a live run is refused."""
        run = self.require(run_id)
        if run.remote and not run.status.finished:
            where = run.snapshot().progress.get("owner", "another process")
            raise FtuiError(
                f"Run '{run.name}' is training in {where}.", f"Wait for it to end or stop it there, then {action} it."
            )
        if not run.status.finished:
            raise FtuiError(f"Run '{run.name}' is still going.", f"Stop it first, then {action} it.")
        return run

    # -------------------------------------------------------------------------------------------- the slot
    def current(self) -> Run | None:
        """The latest run started in this process (running or not)."""
        with self._lock:
            return self._current

    def training(self) -> bool:
        """True while this process's slot holds an unfinished run."""
        with self._lock:
            return self._current is not None and not self._current.status.finished

    def reserve(self, make_run: Callable[[], Run]) -> Run:
        """Take the slot for a run (the one `dispatch` is starting; a plain Start goes through start_or_queue);
        RunInProgress when it is taken."""
        with self._lock:
            if self._current is not None and not self._current.status.finished:
                raise RunInProgress(self._current.name)
            run = make_run()
            self._current = run
            self._runs[run.run_id] = run
        return run

    def record(self, run: Run) -> None:
        """Add a run that never took the slot (a queued run refused when its turn came) to the registry."""
        with self._lock:
            self._runs[run.run_id] = run

    def launch(self, run: Run, target: Callable[..., None], args: tuple[Any, ...], name: str, beat: bool = True) -> None:
        """Run `target(*args)` in the worker thread, with a heartbeat for the run until it is done (beat=False: the
        target keeps it, as the supervisor of a torchrun child does until the child takes over); then the next queued
        run starts (whether this one completed, stopped or failed)."""

        def body() -> None:
            try:
                target(*args)
            finally:
                self.dispatch()

        self._thread = threading.Thread(target=body, name=name, daemon=True)
        self._thread.start()
        if beat:
            threading.Thread(target=self._beat, args=(run,), name=f"ftui-heartbeat-{run.run_id}", daemon=True).start()

    def _beat(self, run: Run) -> None:
        """Keep the store's heartbeat fresh while the run lives; a run taken over elsewhere is stopped here."""
        while not run.done.wait(self.heartbeat_s):
            try:
                if not self.store.beat(run.run_id) and not run.status.finished:
                    log.warning("run %s was taken over by another process; stopping it here", run.run_id)
                    run.set_progress(store_error="another process has taken this run over; it stops here")
                    run.request_stop()
            except Exception as exc:  # noqa: BLE001 - a locked or full store: the run goes on, the UI says why
                run.set_progress(store_error=f"could not write the heartbeat: {exc}")

    # ------------------------------------------------------------------------------------------------- queue
    def _slot_busy(self) -> bool:
        """Under the lock: a run holds the slot, a queued one is being started, or this process's runs are waiting
        (a new Start goes behind them, so the queue keeps arrival order)."""
        if self._current is not None and not self._current.status.finished:
            return True
        return self._dispatching or self.store.queued_here() > 0 or bool(self._live_elsewhere())

    def _live_elsewhere(self) -> list[str]:
        """Runs another live process trains in this folder (a CLI run, another app's, an orphan not yet ended): one
        run trains at a time per folder, so this process's next run waits for them."""
        if not self.wait_for_others:
            return []
        mine = self._current.run_id if self._current is not None else None
        try:
            return [r for r in self.store.live_elsewhere() if r != mine]  # our own torchrun child's rank 0 is ours
        except Exception as exc:  # noqa: BLE001 - a busy store: do not start on a guess
            log.warning("could not read the live runs from the store: %s", exc)
            return ["?"]

    def _await_elsewhere(self) -> None:
        """Start (once) a watcher that dispatches this process's queue when the runs of other processes have ended."""
        with self._lock:
            if self._watcher is not None and self._watcher.is_alive():
                return
            self._watcher = threading.Thread(target=self._watch_elsewhere, name="ftui-queue-watch", daemon=True)
            self._watcher.start()

    def _watch_elsewhere(self) -> None:
        while self.store.queued_here() > 0:
            if not self._live_elsewhere():
                self.dispatch()
                return
            self._wake.wait(self.heartbeat_s)  # the store's heartbeat period: a dead owner shows within a beat

    def start_or_queue(self, make_run: Callable[[], Run], config: RunConfig, token: str | None) -> Run | QueuedRun:
        """Take the slot for a new run at once (the caller launches it), or queue it when the slot is taken; one
        locked step, so under any number of concurrent Starts exactly one trains and the rest queue in arrival
        order (QueueFull past the cap)."""
        with self._lock:
            if not self._slot_busy():
                run = make_run()
                self._current = run
                self._runs[run.run_id] = run
                return run
            item = self._enqueue_locked([config], token)[0]
        self._await_elsewhere()  # the slot may be taken by another process's run, which ends without telling us
        return item

    def enqueue(self, configs: list[RunConfig], token: str | None) -> list[QueuedRun]:
        """Queue several runs behind the others, all or none (a sweep); the first starts now when the slot is free
        (before this returns, so a caller that waits for the sweep finds it training or queued, never in between)."""
        with self._lock:
            items = self._enqueue_locked(configs, token)
        self.dispatch()
        return items

    def _enqueue_locked(self, configs: list[RunConfig], token: str | None) -> list[QueuedRun]:
        ids = [uuid.uuid4().hex[:12] for _ in configs]
        if not self.store.writable:
            raise FtuiError(f"Nothing can be queued: {self.store.read_only}.", "Set FTUI_RUNS_DIR to a writable folder.")
        rows = [(i, c.to_dict(), c.sweep.sweep_id) for i, c in zip(ids, configs, strict=True)]
        total = self.store.enqueue(rows, self.max_queue, token_kept=bool(token))
        if not total:
            raise QueueFull(len(self.store.queue()), len(configs), self.max_queue)
        for i in ids:
            self._tokens[i] = token
        now = time.time()
        first = total - len(configs) + 1
        return [QueuedRun(i, first + k, c, now, True, with_token=bool(token))
                for k, (i, c) in enumerate(zip(ids, configs, strict=True))]  # fmt: skip

    def queued(self) -> list[QueuedRun]:
        """Every run waiting in this runs folder, in the order they start (this process's and others')."""
        out = []
        for k, rec in enumerate(self.store.queue(), start=1):
            try:
                cfg = RunConfig.from_dict(rec["config"])
            except Exception as exc:  # noqa: BLE001 - an unreadable item is shown as failing when its turn comes
                log.warning("unreadable queued run %s: %s", rec["item_id"], exc)
                cfg = RunConfig()
            out.append(QueuedRun(rec["item_id"], k, cfg, rec["created_at"], rec["owner"] == self.store.identity))
        return out

    def waiting_here(self) -> int:
        """How many queued runs this process will start."""
        return self.store.queued_here()

    def _own(self, item_id: Any) -> QueuedRun:
        item = next((q for q in self.queued() if q.item_id == item_id), None)
        if item is None:
            raise FtuiError("That run is no longer in the queue (it started, or was cancelled).", "Refresh the queue.")
        if not item.here:
            raise FtuiError("That run was queued by another process.", "Change it where it was queued.")
        return item

    def cancel(self, item_id: Any) -> QueuedRun:
        """Take one waiting run off the queue."""
        item = self._own(item_id)
        self.store.cancel_queued([item.item_id])
        self._tokens.pop(item.item_id, None)
        return item

    def move(self, item_id: Any, delta: int) -> bool:
        """Move a waiting run up (-1) or down (+1) one place; False when it is already first/last."""
        return self.store.move_queued(self._own(item_id).item_id, delta)

    def clear(self) -> int:
        """Empty this process's queue; how many runs were taken off."""
        n = self.store.cancel_queued(None)
        self._tokens.clear()
        return n

    def adopt(self) -> int:
        """Take over runs queued by a process that has ended (after a restart) and start the first (before this
        returns: the app comes up with it training)."""
        n = self.store.adopt_queue() if self.store.writable else 0
        if n:
            self.dispatch()
        return n

    def dispatch(self) -> None:
        """While the slot is free, start this process's next queued run; one refused when its turn comes (its data or
        checkpoint gone) is recorded as failed by `start_item`, and the next is tried."""
        while True:
            elsewhere = self._live_elsewhere()
            with self._lock:
                if self._dispatching or (self._current is not None and not self._current.status.finished):
                    return
                if not elsewhere:
                    self._dispatching = True
            if elsewhere:
                log.info("queued runs wait: run %s trains in another process", elsewhere[0])
                self._await_elsewhere()
                return
            started = False
            try:
                rec = self.store.pop_queued()
                if rec is not None and self.start_item is not None:
                    lost = bool(rec.get("token_kept")) and rec["item_id"] not in self._tokens  # adopted after a restart
                    item = QueuedRun(rec["item_id"], 1, RunConfig.from_dict(rec["config"]), rec["created_at"], True, lost)
                    started = self.start_item(item, self._tokens.pop(item.item_id, None))
            except Exception as exc:  # noqa: BLE001 - a broken item must not stall the queue behind it
                log.warning("a queued run could not be started: %s", exc, exc_info=True)
            finally:
                with self._lock:
                    self._dispatching = False
                    more = not started and self.store.queued_here() > 0
            if not more:
                return

    def resume(self, run_id: Any, reopen: Callable[[Run], None]) -> Run:
        """Claim a stopped or interrupted run in the store (atomically, so two processes cannot both resume it) and
        take the slot; `reopen(run)` prepares it under the slot lock."""
        run = self.require_idle(run_id, "resume")
        if not can_resume(run):
            raise FtuiError(
                f"Run '{run.name}' cannot be resumed ({run.status.value}).",
                "Only stopped or interrupted runs that reached a saved step can be resumed.",
            )
        with self._lock:
            if (self._current is not None and not self._current.status.finished) or self._dispatching:
                raise RunInProgress(self._current.name if self._current else "a queued run is starting")
            if not self.store.claim(run.run_id):
                raise FtuiError(f"Run '{run.name}' was just resumed elsewhere.", "Refresh the runs table.")
            self._recover_files(run)
            reopen(run)
            self._current = run
        return run

    def stop(self) -> Run | None:
        """Ask this process's current run to stop; returns it (None when nothing runs)."""
        with self._lock:
            run = self._current
        if run is not None and not run.status.finished:
            run.request_stop()
            return run
        return None

    @property
    def worker(self) -> threading.Thread | None:
        """The latest worker thread (it starts the next queued run before it ends): join it to wait for both."""
        return self._thread

    def join(self, timeout: float) -> bool:
        """Wait for the worker thread; True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    # ------------------------------------------------------------------------------------------ edit, delete
    def set_meta(self, run_id: Any, **fields: str) -> Run:
        """Rename or annotate a run (live ones too: the fields are the store's, not the worker's)."""
        run = self.require(run_id)
        for key, value in fields.items():
            setattr(run, key, value)
        self.store.update(run.run_id, **fields)
        if run.status.finished and not run.remote:
            run.save()  # run.json travels with the folder (zip export), so it follows too
        return run

    def hold(self, run_id: str, what: str) -> _Hold:
        """Mark a run's files as in use (an export reading them) for the length of a `with` block."""
        return _Hold(self, run_id, what)

    def delete(self, run_id: Any) -> Run:
        """Remove a finished run's record, events and files; refused while it trains anywhere or its files are read."""
        run = self.require_idle(run_id, "delete")
        with self._lock:
            if self._busy.get(run.run_id):
                raise FtuiError(f"Run '{run.name}' is being read ({self._busy[run.run_id][0]}).", "Try again in a moment.")
            self._runs.pop(run.run_id, None)
            if self._current is run:
                self._current = None
        try:
            self.store.delete(run.run_id)
        except StoreUnavailable as exc:
            with self._lock:
                self._runs[run.run_id] = run
            raise FtuiError(f"Nothing can be deleted: {exc}.", "Point FTUI_RUNS_DIR at a writable folder.") from exc
        target = run.out_dir.resolve()
        if target.parent == self.runs_dir and target.exists():
            shutil.rmtree(target, ignore_errors=True)
        return run


class _Hold:
    def __init__(self, manager: RunManager, run_id: str, what: str) -> None:
        self.manager, self.run_id, self.what = manager, run_id, what

    def __enter__(self) -> None:
        with self.manager._lock:
            self.manager._busy.setdefault(self.run_id, []).append(self.what)

    def __exit__(self, *exc: object) -> None:
        with self.manager._lock:
            users = self.manager._busy.get(self.run_id, [])
            users.remove(self.what)
            if not users:
                self.manager._busy.pop(self.run_id, None)
