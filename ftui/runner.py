"""Run management: every run of the runs folder (from the store, whichever process trains it), the one training
slot of this process, the queue of runs waiting for it, its worker and heartbeat threads, Stop, resume claims, and the
guards on delete and edit."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftui.errors import FtuiError, RunInProgress
from ftui.files import recover_dir
from ftui.rows import RunRow
from ftui.run_layout import MODEL_DIR, RESUME_DIR, can_resume, clear_stop, stop_asked
from ftui.run_queue import QueuedRun, QueueMixin
from ftui.runs import RUN_FILE, Run
from ftui.store import HEARTBEAT_S, Store, StoreUnavailable
from ftui.workspace import USERS_DIR, run_folder

log = logging.getLogger(__name__)

RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}|[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
SYNC_MIN_S = 0.5  # the runs list re-reads the store at most this often (many tabs may ask at once)
MAX_QUEUE = 20  # runs waiting at once, unless the deployment says otherwise (FTUI_MAX_QUEUE)


def check_run_id(run_id: Any) -> str:
    """A run id as the store writes them; anything else (paths, URLs, non-strings) is refused."""
    if not isinstance(run_id, str) or not RUN_ID_RE.fullmatch(run_id):
        raise FtuiError(f"'{str(run_id)[:100]}' is not a run id.", "Pick a run from the table.")
    return run_id


class RunManager(QueueMixin):
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
        self._beside: list[threading.Thread] = []  # runs fitted outside the slot (automatic baselines)
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
                live = not rec.status.finished and self.store.alive(rec)
                found[rec.run_id] = Run.from_record(rec, self.store.events(rec.run_id), self._folder(rec), self.store, live)
            except Exception as exc:  # noqa: BLE001 - one unreadable record must not hide the others
                log.warning("skipping unreadable run record %s: %s", rec.run_id, exc)
        for path in sorted([*self.runs_dir.glob(f"*/{RUN_FILE}"), *self.runs_dir.glob(f"{USERS_DIR}/*/*/{RUN_FILE}")]):
            if path.parent.name in found:
                continue
            try:
                run = Run.load(path.parent)
                if self.store.writable:
                    self.store.save_run(run.row())  # import it, so the store is complete again
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

    def _folder(self, rec: RunRow) -> Path:
        """A stored run's folder under this runs folder (never the stored path: the bucket may mount elsewhere now)."""
        return run_folder(self.runs_dir, check_run_id(rec.run_id), rec.user)

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
            records = {r.run_id: r for r in self.store.runs()}
        except Exception as exc:  # noqa: BLE001 - a busy or failing store: show what we have
            log.warning("could not read the run store: %s", exc)
            return
        with self._lock:
            known = dict(self._runs)
        for run_id, rec in records.items():
            run = known.get(run_id)
            try:
                resumed = (run is not None and run.status.finished and not run.remote and rec.status != run.status
                           and rec.owner != self.store.identity)  # fmt: skip
                if run is None or resumed:  # new here, or a finished run another process resumed (a Jobs run, a CLI)
                    live = not rec.status.finished and self.store.alive(rec)
                    fresh = Run.from_record(rec, self.store.events(run_id), self._folder(rec), self.store, live)
                    with self._lock:
                        if run is None:
                            self._runs.setdefault(run_id, fresh)
                        elif self._runs.get(run_id) is run and run.status.finished:
                            # checked under the lock resume() claims and reopens under: never a run this process resumes
                            # (this process's last run stays its `current`, finished, so its training slot stays free)
                            self._runs[run_id] = fresh
                elif run.remote:
                    run.apply_record(rec, self.store.events(run_id, len(run.events())), self.store.progress(run_id))
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
            where = run.snapshot(events=False).progress.owner or "another process"
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

        try:
            clear_stop(run.out_dir)  # a stop asked of an earlier launch (before a resume) is not this launch's
        except OSError as exc:
            log.warning("could not clear the stop request of run %s: %s", run.run_id, exc)
        self._thread = threading.Thread(target=body, name=name, daemon=True)
        self._thread.start()
        if beat:
            threading.Thread(target=self._beat, args=(run,), name=f"ftui-heartbeat-{run.run_id}", daemon=True).start()

    def launch_beside(self, run: Run, target: Callable[..., None], args: tuple[Any, ...], name: str) -> None:
        """Run `target(*args)` in a thread of its own, outside the training slot (a baseline fitted beside the run that
        holds it: seconds on the CPU), with its heartbeat; it starts no queued run when it ends, and join() waits for
        it too."""
        with self._lock:
            self._runs[run.run_id] = run
            self._beside = [t for t in self._beside if t.is_alive()]
            thread = threading.Thread(target=target, args=args, name=name, daemon=True)
            self._beside.append(thread)
        thread.start()
        threading.Thread(target=self._beat, args=(run,), name=f"ftui-heartbeat-{run.run_id}", daemon=True).start()

    def _beat(self, run: Run) -> None:
        """Keep the store's heartbeat fresh while the run lives; a run taken over elsewhere is stopped here."""
        while not run.done.wait(self.heartbeat_s):
            try:
                if not self.store.beat(run.run_id) and not run.status.finished:
                    log.warning("run %s was taken over by another process; stopping it here", run.run_id)
                    run.set_progress(store_error="another process has taken this run over; it stops here")
                    run.request_stop()
                if stop_asked(run.out_dir) and not run.status.finished:  # asked from another host (a Jobs run's app)
                    run.request_stop()
            except Exception as exc:  # noqa: BLE001 - a locked or full store: the run goes on, the UI says why
                run.set_progress(store_error=f"could not write the heartbeat: {exc}")

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
        """Wait for the worker thread and the runs fitted beside it (within `timeout` in all); True when all ended."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = [t for t in (self._thread, *self._beside) if t is not None]
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)

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
        if target == run_folder(self.runs_dir, run.run_id, run.config.user).resolve() and target.exists():
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
