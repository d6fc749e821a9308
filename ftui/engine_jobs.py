"""The engine's Hugging Face Jobs facade (mixed into Engine): plan, submit, list and cancel Jobs runs for a viewer.

A Jobs run is a place, not a recipe: the job's own `python -m ftui train` creates and trains the run in the runs
folder on the user's bucket, and this app follows it there as it follows any other process's run (the store's
cross-host heartbeat). So RunConfig gains nothing, and nothing here holds this machine's training slot."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftui import jobs
from ftui.config import RunConfig
from ftui.errors import ConfigError, FtuiError
from ftui.runs import Run
from ftui.settings import Settings
from ftui.workspace import Viewer, Workspaces

if TYPE_CHECKING:  # the runs facade's checks (_who, _owned, _writable, runs) come from Engine's other bases
    from ftui.engine_runs import RunsFacade as _Base
else:
    _Base = object


@dataclass(frozen=True)
class JobView:
    """A noted job as a page shows it: its stage now and its run, once the job has created it."""

    note: jobs.JobNote = field(metadata={"help": "what was submitted"})
    stage: str = field(metadata={"help": "SCHEDULING, RUNNING, COMPLETED, ERROR, CANCELED, or 'unknown' (no answer)"})
    run: Run | None = field(metadata={"help": "the job's run in the shared runs folder; None until it starts"})


class JobsFacade(_Base):
    """Jobs runs for the UI and the CLI. Engine provides the state below and _who/_owned/_writable."""

    settings: Settings
    workspaces: Workspaces
    hub: Any
    runs_dir: Path

    def job_target(self, bucket: str, bucket_dir: str | Path) -> jobs.JobTarget:
        """The user's bucket: its id, and where this machine mounts it (the runs folder must be inside)."""
        return jobs.JobTarget(bucket=bucket, local_dir=Path(bucket_dir).resolve(), runs_dir=self.runs_dir)

    def plan_job(
        self, cfg: RunConfig, flavor: str, target: jobs.JobTarget, token: str | None, viewer: Viewer | None = None
    ) -> jobs.JobPlan:
        """The job that would train `cfg`: the owner stamped, the deployment's model and data allowlists applied (its
        CPU caps are not: the job runs on the user's own bill and hardware), a unique run name so the run is found."""
        self._writable()
        cfg, _ = self._owned(cfg, viewer, "train on Jobs")
        self._admit_job(cfg)
        gpus = jobs.Flavor(flavor, 0.0).gpus
        name = cfg.train.run_name.strip() or f"job-{flavor}-{uuid.uuid4().hex[:6]}"
        cfg = replace(cfg, train=replace(cfg.train, run_name=name, processes=max(gpus, 1)))
        return jobs.plan_job(cfg, flavor, target, jobs.list_hardware(token, offline=not self.hub.online))

    def _admit_job(self, cfg: RunConfig) -> None:
        """The deployment's model and data allowlists (its CPU caps do not apply: the job runs on the user's bill)."""
        refused = self.settings.admit_model(cfg.model) + self.settings.admit_data(cfg.data) if isinstance(cfg, RunConfig) else []
        if refused:
            raise ConfigError(refused)

    def submit_job(
        self, cfg: RunConfig, flavor: str, target: jobs.JobTarget, token: str | None, viewer: Viewer | None = None
    ) -> jobs.JobNote:
        """Plan and submit; `token` pays. It is the one the user gave (on a Space: the visitor's OAuth token), never
        HF_TOKEN from this process's environment, which on a Space is the owner's."""
        self._admit_job(cfg)  # the allowlists first, as at every entry point: a refused path is never probed
        if not token:
            raise FtuiError("Jobs need your Hugging Face token: the run is billed to its account.",
                            "Sign in (with the jobs scope) or paste a token.")  # fmt: skip
        plan = self.plan_job(cfg, flavor, target, token, viewer)
        job = jobs.submit(plan, target, token)
        return next(n for n in jobs.read_notes(target) if n.job_id == job.id)

    def jobs(self, target: jobs.JobTarget, token: str | None, viewer: Viewer | None = None) -> list[JobView]:
        """The viewer's noted jobs, newest first, each with its stage now (asked of the Hub) and its run."""
        who = self._who(viewer)
        runs = {r.name: r for r in self.runs(viewer)}
        views = []
        for note in jobs.read_notes(target):
            if who.scoped and not who.admin and note.user != who.user:
                continue
            try:
                stage = jobs.stage(note.job_id, note.namespace, token) if token else "unknown"
            except Exception:  # the Hub unreachable or the token refused: the run in the folder still shows
                stage = "unknown"
            views.append(JobView(note, stage, runs.get(note.run_name) if note.run_name else None))
        return views

    def cancel_job(self, note: jobs.JobNote, token: str | None, viewer: Viewer | None = None) -> None:
        """Cancel a job: Jobs sends its container SIGTERM, which the job's `train` turns into a Stop at the next step
        (the run keeps a snapshot and can be resumed)."""
        who = self._who(viewer)
        if who.scoped and not who.admin and note.user != who.user:
            raise FtuiError("That job is someone else's.", "")
        if not token:
            raise FtuiError("Cancelling a job needs the token of the account it runs under.", "Sign in or paste it.")
        jobs.cancel(note.job_id, note.namespace, token)
