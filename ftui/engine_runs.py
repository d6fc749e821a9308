"""The engine's runs facade (mixed into Engine): who asks, starting runs, the queue, sweeps, the run list, and
renaming, annotating, deleting and exporting runs; every call checked against the viewer (see ftui.workspace)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from ftui import export, hub
from ftui.adapt import adapted_checkpoints
from ftui.config import RunConfig
from ftui.errors import ConfigError, FtuiError, HubError
from ftui.launcher import Launcher
from ftui.run_layout import PREDICTIONS_FILE
from ftui.run_queue import QueuedRun
from ftui.runner import RunManager
from ftui.runs import Run
from ftui.settings import Settings
from ftui.store import Store
from ftui.sweeps import SweepConfig
from ftui.workspace import Viewer, Workspaces

log = logging.getLogger(__name__)

MAX_NOTE_CHARS = 2000


class RunsFacade:
    """Runs for the UI and the CLI. Engine provides the state below and the deployment rules (_writable, _full_mode,
    model_summary)."""

    settings: Settings
    store: Store
    manager: RunManager
    launcher: Launcher
    workspaces: Workspaces
    hub: Any
    runs_dir: Path

    # ---------------------------------------------------------------------------------------------------- runs
    @property
    def sign_in(self) -> bool:
        """Sign-in is on: a workspace per Hugging Face user (the page shows the Sign-in button and whose runs it lists)."""
        return self.workspaces.enabled

    def waiting_here(self) -> int:
        """How many queued runs this app will start (every user's)."""
        return self.manager.waiting_here()

    def viewer(self, user: str | None) -> Viewer:
        """Who a request comes from (the UI passes the signed-in username): see ftui.workspace."""
        return self.workspaces.viewer(user)

    def _who(self, viewer: Viewer | None) -> Viewer:
        return viewer if isinstance(viewer, Viewer) else self.workspaces.default()

    def _seen(self, run_id: str, viewer: Viewer | None) -> Run:
        """A run the viewer may see (the same refusal as for an unknown id otherwise)."""
        run = self.manager.require(run_id)
        return self.workspaces.require_see(self._who(viewer), run)

    def _managed(self, run_id: str, viewer: Viewer | None, action: str) -> Run:
        """A run the viewer may change."""
        return self.workspaces.require_manage(self._who(viewer), self.manager.require(run_id), action)

    def _owned(self, cfg: RunConfig, viewer: Viewer | None, action: str) -> tuple[RunConfig, int]:
        """The config stamped with its owner, and how many waiting runs that owner may have."""
        who = self._who(viewer)
        self.workspaces.require_user(who, action)
        if not isinstance(cfg, RunConfig):
            raise ConfigError(["no run settings were given"])
        if who.scoped and not who.admin and cfg.model.source == "local" and cfg.model.checkpoint:
            # another user's run folder is theirs: its model is not a checkpoint for somebody else's run
            self.workspaces.require_own_folder(who, self.runs_dir, Path(cfg.model.checkpoint))
        return self.workspaces.stamp(who, cfg), self.workspaces.queue_cap(who)

    def start_run(self, cfg: RunConfig, token: str | None = None, viewer: Viewer | None = None) -> Run | QueuedRun:
        """Validate (settings' caps and the checkpoint included), then train in a background thread, or queue the run
        when one is training (QueueFull past the queue cap). A baseline config fits its baseline instead."""
        self._writable()
        cfg, cap = self._owned(cfg, viewer, "train")
        return self.launcher.start_run(cfg, token, cap)

    def start_baselines(self, cfg: RunConfig, token: str | None = None, viewer: Viewer | None = None) -> list[Run | QueuedRun]:
        """ "Run baselines": TF-IDF + logistic regression, NBSVM, then frozen embeddings + logistic regression, as runs
        (each queued behind the one before)."""
        self._writable()
        cfg, cap = self._owned(cfg, viewer, "run baselines")
        return self.launcher.start_baselines(cfg, token, cap)

    def resume_run(
        self, run_id: str, token: str | None = None, viewer: Viewer | None = None, placed: RunConfig | None = None
    ) -> Run:
        """Continue a stopped or interrupted run from its last snapshot, in the same record (`placed`: inside a job,
        the run's config as the job reads it)."""
        self._writable()
        self._managed(run_id, viewer, "resume")
        return self.launcher.resume_run(run_id, token, placed)

    def adopt_run(self, run_id: str, token: str | None = None, resume: bool = False) -> Run:
        """Train here a run another process created and handed over (the app's torchrun child does, as rank 0)."""
        self._writable()
        return self.launcher.adopt_run(run_id, token, resume)

    def max_processes(self) -> int:
        """How many data-parallel processes a run may use here (1 = only the app's own thread)."""
        from ftui.scaleout import available_processes

        return max(1, available_processes(self.settings.cpu_processes))

    # ------------------------------------------------------------------------------------------------- queue
    def queued(self, viewer: Viewer | None = None) -> list[QueuedRun]:
        """Runs waiting for the training slot, in the order they start (with sign-in: the viewer's own)."""
        who = self._who(viewer)
        return [q for q in self.manager.queued() if self.workspaces.can_manage(who, q)]

    def _queued_item(self, item_id: str, viewer: Viewer | None) -> None:
        """Refuse a queue action on another user's item as if it were not there."""
        who = self._who(viewer)
        item = next((q for q in self.manager.queued() if q.item_id == item_id), None)
        if item is not None and not self.workspaces.can_manage(who, item):
            raise FtuiError("That run is no longer in the queue (it started, or was cancelled).", "Refresh the queue.")

    def cancel_queued(self, item_id: str, viewer: Viewer | None = None) -> QueuedRun:
        """Take a waiting run off the queue."""
        self._writable()
        self._queued_item(item_id, viewer)
        return self.manager.cancel(item_id)

    def move_queued(self, item_id: str, delta: int, viewer: Viewer | None = None) -> bool:
        """Move a waiting run up (-1) or down (+1)."""
        self._writable()
        if delta not in (-1, 1):
            raise FtuiError(f"A queued run moves one place up or down (got {delta!r}).", "Use Up or Down.")
        self._queued_item(item_id, viewer)
        return self.manager.move(item_id, delta)

    def clear_queue(self, viewer: Viewer | None = None) -> int:
        """Take every run this app queued off the queue (with sign-in: the viewer's own); the training run goes on."""
        self._writable()
        who = self._who(viewer)
        if who.admin:
            return self.manager.clear()
        self.workspaces.require_user(who, "change the queue")
        return self.manager.clear(who.user)

    # ------------------------------------------------------------------------------------------------- sweeps
    def plan_sweep(self, base: RunConfig, sweep: SweepConfig, token: str | None = None) -> list[RunConfig]:
        """Every point of a sweep as a checked run config; ConfigError lists every problem (each field or point named)."""
        return self.launcher.plan_sweep(base, sweep, token)

    def start_sweep(
        self, base: RunConfig, sweep: SweepConfig, token: str | None = None, viewer: Viewer | None = None
    ) -> list[QueuedRun]:
        """Queue one run per point of the sweep (all or none); the first starts at once when nothing trains."""
        self._writable()
        base, cap = self._owned(base, viewer, "run a sweep")
        return self.launcher.start_sweep(base, sweep, token, cap)

    def sweep_ids(self, viewer: Viewer | None = None) -> list[str]:
        """Sweep ids of the stored runs and the queue (those the viewer may see), newest first."""
        who = self._who(viewer)
        return self.launcher.sweep_ids(lambda r: self.workspaces.can_see(who, r))

    def sweep_table(self, sweep_id: str, metric: str = "accuracy", viewer: Viewer | None = None) -> list[dict[str, Any]]:
        """One sweep's runs, best validation score first, plus its points still queued (those the viewer may see)."""
        who = self._who(viewer)
        return self.launcher.sweep_table(sweep_id, metric, lambda r: self.workspaces.can_see(who, r))

    def adapted_checkpoints(self, viewer: Viewer | None = None) -> list[tuple[str, str]]:
        """(label, folder) of completed masked-LM runs: checkpoints a classifier run can start from."""
        return adapted_checkpoints(self.runs(viewer))

    def stop_run(self, viewer: Viewer | None = None) -> Run | None:
        """Ask the current run to stop; returns it (None when nothing runs)."""
        run = self.manager.current()
        if run is not None and not run.status.finished:
            self.workspaces.require_manage(self._who(viewer), run, "stop")
        return self.manager.stop()

    def join(self, timeout: float) -> bool:
        """Wait for the worker thread; True when it has ended."""
        return self.manager.join(timeout)

    def current_run(self) -> Run | None:
        """The latest run started in this process (running or not)."""
        return self.manager.current()

    def current_run_for(self, viewer: Viewer | None = None) -> Run | None:
        """The current run when the viewer may see it (another user's training shows as 'the slot is busy')."""
        run = self.manager.current()
        return run if run is not None and self.workspaces.can_see(self._who(viewer), run) else None

    def runs(self, viewer: Viewer | None = None) -> list[Run]:
        """All known runs the viewer may see, oldest first (other processes' runs included, from the store)."""
        return self.workspaces.visible(self._who(viewer), self.manager.runs())

    def get_run(self, run_id: str, viewer: Viewer | None = None) -> Run | None:
        """A run by id (None when unknown or not the viewer's to see)."""
        run = self.manager.get(run_id) if isinstance(run_id, str) else None
        return run if run is not None and self.workspaces.can_see(self._who(viewer), run) else None

    # --------------------------------------------------------------------------------------------- experiments
    def rename_run(self, run_id: str, name: str, viewer: Viewer | None = None) -> Run:
        """Give a run a new display name."""
        name = (name or "").strip() if isinstance(name, str) else ""
        if not name or len(name) > 100 or any(c in name for c in "/\\\0"):
            raise FtuiError("A run name needs 1 to 100 characters and no slashes.", "Type another name.")
        self._writable()
        self._managed(run_id, viewer, "rename")
        return self.manager.set_meta(run_id, name=name)

    def set_showcase(self, run_id: str, on: bool, viewer: Viewer | None = None) -> Run:
        """An admin shows a run to every visitor (read-only: Predict, Explain, its evaluation), or stops showing it."""
        self._writable()
        who = self._who(viewer)
        self.workspaces.require_admin(who, "show runs to every visitor")
        return self.manager.set_meta(self._seen(run_id, who).run_id, showcase=bool(on))

    def set_note(self, run_id: str, note: str, viewer: Viewer | None = None) -> Run:
        """Attach a free-text note to a run."""
        note = note if isinstance(note, str) else ""
        if len(note) > MAX_NOTE_CHARS:
            raise FtuiError(
                f"A note holds up to {MAX_NOTE_CHARS:,} characters (this one has {len(note):,}).",
                "Shorten it; keep long write-ups in a file beside the run.",
            )
        self._writable()
        self._managed(run_id, viewer, "annotate")
        return self.manager.set_meta(run_id, note=note)

    def delete_run(self, run_id: str, viewer: Viewer | None = None) -> None:
        """Remove a finished run: its record, events and files (refused while it trains here or elsewhere)."""
        self._writable()
        self._managed(run_id, viewer, "delete")
        run = self.manager.delete(run_id)
        self.predictor.forget_prefix(f"run:{run.run_id}")
        self.predictor.forget_prefix(f"base:{run.run_id}")
        self.predictor.forget_prefix(f"onnx:{run.run_id}#")

    def run_headers(self, viewer: Viewer | None = None) -> list[dict[str, Any]]:
        """Every visible run's record without events (what the runs table needs), oldest first, including live ones."""
        return [r.header() for r in self.runs(viewer)]

    def run_record(self, run_id: str, viewer: Viewer | None = None) -> dict[str, Any]:
        """One run's record."""
        return self._seen(run_id, viewer).to_json()

    def per_class(self, run_id: str, viewer: Viewer | None = None) -> list[dict[str, Any]]:
        """Per-class (or per-label) test scores of a finished run, from its saved predictions."""
        run = self._seen(run_id, viewer)
        return export.per_class_table(run.out_dir, list(run.label_names))

    def test_predictions(self, run_id: str, viewer: Viewer | None = None) -> pd.DataFrame:
        """The run's saved test-set predictions (text, label, predicted, confidence, class probabilities)."""
        run = self._seen(run_id, viewer)
        path = run.out_dir / PREDICTIONS_FILE
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise FtuiError(f"Run '{run.name}' has no test predictions.", "Only runs that completed have them.") from exc

    def export_zip(self, run_id: str, viewer: Viewer | None = None) -> Path:
        """A zip of the run's model, tokenizer, labels, config, metrics and model card."""
        self._writable()
        run = self._managed(run_id, viewer, "export")
        with self.manager.hold(run.run_id, "an export"):
            if self.manager.get(run.run_id) is None:
                raise FtuiError(f"Run '{run.name}' was just deleted.", "Pick another run.")
            rec = run.to_json()
            try:
                return export.export_zip(rec, run.out_dir, run.out_dir / "export", self._base_limitations(run))
            except OSError as exc:
                raise FtuiError(
                    f"The zip of '{run.name}' could not be written ({exc.strerror or exc}).",
                    "Check that the run still exists and the disk has space, then try again.",
                ) from exc

    def push_to_hub(
        self, run_id: str, repo_id: str, token: str | None, private: bool = True, viewer: Viewer | None = None
    ) -> str:
        """Upload the run's model with a generated card; the token is used for this call only."""
        self._full_mode()
        run = self._managed(run_id, viewer, "push")
        if not self.hub.online:
            raise HubError(f"{hub.OFFLINE_MESSAGE}, so nothing can be pushed.", "Download the zip instead and upload it later.")
        with self.manager.hold(run.run_id, "a push to the Hub"):
            return export.push_to_hub(run.to_json(), run.out_dir, repo_id, token or "", private, self._base_limitations(run))

    def _base_limitations(self, run: Run) -> str:
        try:
            return self.model_summary(run.config.model).card_limitations
        except Exception as exc:  # noqa: BLE001 - the card is optional; an offline Hub model has none
            log.info("no base card for %s: %s", run.run_id, exc)
            return ""
