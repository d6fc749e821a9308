"""The runs folder's queue, as RunManager does it (mixed in): take the training slot or queue, the all-or-none queue of
a sweep, each user's share, what this process starts next (round robin over users), and waiting for other processes."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ftui.config import RunConfig
from ftui.errors import FtuiError
from ftui.runs import Run
from ftui.store import Store
from ftui.workspace import round_robin

log = logging.getLogger(__name__)


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


class QueueMixin:
    """RunManager's queue (RunManager provides the state below and start_item, the launcher's starter)."""

    store: Store
    max_queue: int
    heartbeat_s: float
    start_item: Callable[[QueuedRun, str | None], bool] | None
    _lock: threading.Lock
    _current: Run | None
    _runs: Any
    _tokens: dict[str, str | None]
    _dispatching: bool
    _watcher: threading.Thread | None
    _wake: threading.Event
    wait_for_others: bool

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

    def start_or_queue(
        self, make_run: Callable[[], Run], config: RunConfig, token: str | None, user_cap: int = 0
    ) -> Run | QueuedRun:
        """Take the slot for a new run at once (the caller launches it), or queue it when the slot is taken; one
        locked step, so under any number of concurrent Starts exactly one trains and the rest queue in arrival
        order (QueueFull past the cap)."""
        with self._lock:
            if not self._slot_busy():
                run = make_run()
                self._current = run
                self._runs[run.run_id] = run
                return run
            item = self._enqueue_locked([config], token, user_cap)[0]
        self._await_elsewhere()  # the slot may be taken by another process's run, which ends without telling us
        return item

    def enqueue(self, configs: list[RunConfig], token: str | None, user_cap: int = 0) -> list[QueuedRun]:
        """Queue several runs behind the others, all or none (a sweep); the first starts now when the slot is free
        (before this returns, so a caller that waits for the sweep finds it training or queued, never in between)."""
        with self._lock:
            items = self._enqueue_locked(configs, token, user_cap)
        self.dispatch()
        return items

    def _enqueue_locked(self, configs: list[RunConfig], token: str | None, user_cap: int = 0) -> list[QueuedRun]:
        ids = [uuid.uuid4().hex[:12] for _ in configs]
        if not self.store.writable:
            raise FtuiError(f"Nothing can be queued: {self.store.read_only}.", "Set FTUI_RUNS_DIR to a writable folder.")
        rows = [(i, c.to_dict(), c.sweep.sweep_id) for i, c in zip(ids, configs, strict=True)]
        total = self.store.enqueue(rows, self.max_queue, token_kept=bool(token), user_cap=user_cap)
        if not total:
            queue = self.store.queue()
            user = configs[0].user if configs else ""
            mine = sum(rec.user == user for rec in queue)
            if user_cap and mine + len(configs) > user_cap:
                raise FtuiError(
                    f"You have {mine} run{'s' if mine != 1 else ''} waiting; one user may have at most {user_cap} "
                    f"(this asked for {len(configs)} more).",
                    "Wait for one of yours to start, or cancel one in the Train tab's queue.",
                )
            raise QueueFull(len(queue), len(configs), self.max_queue)
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
                cfg = RunConfig.from_dict(rec.config)
            except Exception as exc:  # noqa: BLE001 - an unreadable item is shown as failing when its turn comes
                log.warning("unreadable queued run %s: %s", rec.item_id, exc)
                cfg = RunConfig()
            out.append(QueuedRun(rec.item_id, k, cfg, rec.created_at, rec.owner == self.store.identity))
        return out

    def waiting_here(self) -> int:
        """How many queued runs this process will start, one being started right now included (off the store's queue,
        not yet the current run). Read in this order, a run moving from the queue to the slot is counted in one of
        the two places, so a poller never sees 'nothing more to come' in between."""
        queued = self.store.queued_here()
        with self._lock:
            return queued + int(self._dispatching)

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

    def clear(self, user: str | None = None) -> int:
        """Empty this process's queue (only `user`'s items when given); how many runs were taken off."""
        if user is not None:
            ids = [q.item_id for q in self.queued() if q.here and q.config.user == user]
            for item_id in ids:
                self._tokens.pop(item_id, None)
            return self.store.cancel_queued(ids)
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
                rec = self.store.pop_queued(self._next_item)
                if rec is not None and self.start_item is not None:
                    lost = rec.token_kept and rec.item_id not in self._tokens  # adopted after a restart
                    item = QueuedRun(rec.item_id, 1, RunConfig.from_dict(rec.config), rec.created_at, True, lost)
                    started = self.start_item(item, self._tokens.pop(item.item_id, None))
            except Exception as exc:  # noqa: BLE001 - a broken item must not stall the queue behind it
                log.warning("a queued run could not be started: %s", exc, exc_info=True)
            finally:
                with self._lock:
                    self._dispatching = False
                    more = not started and self.store.queued_here() > 0
            if not more:
                return

    def _next_item(self, items: list[tuple[str, str]]) -> str | None:
        """Round robin over the users with runs waiting (one user, or none, keeps the queue's order)."""
        with self._lock:
            runs = list(self._runs.values())
        last: dict[str, float] = {}
        for run in runs:
            last[run.config.user] = max(last.get(run.config.user, float("-inf")), run.started_at)
        return round_robin(items, last)
