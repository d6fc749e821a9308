"""The engine's Hugging Face Jobs facade (mixed into Engine): hardware and who pays, plan and submit for a viewer, follow
the viewer's job and its run, stop (a snapshot, then cancel), cancel.

A Jobs run is a place, not a recipe: the job's own `python -m ftui train` creates and trains the run in the runs
folder on the user's bucket, and this app follows it there as it follows any other process's run (the store's
cross-host heartbeat). So RunConfig gains nothing, and nothing here holds this machine's training slot."""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftui import jobs, jobs_data
from ftui.config import RunConfig
from ftui.errors import ConfigError, FtuiError
from ftui.jobs_account import Payer
from ftui.run_layout import ask_to_stop, can_resume
from ftui.runs import Run
from ftui.settings import Settings
from ftui.sweeps import SweepConfig
from ftui.workspace import Viewer, Workspaces

if TYPE_CHECKING:  # the runs facade's checks (_who, _owned, _writable, runs) come from Engine's other bases
    from ftui.engine_runs import RunsFacade as _Base
else:
    _Base = object

log = logging.getLogger(__name__)

TERMINAL = ("COMPLETED", "ERROR", "CANCELED", "DELETED")
HARDWARE_TTL_S = 3600.0  # the live price list is asked again after an hour; a failed ask after a minute
STAGE_TTL_S = 3.0  # a job's stage is asked of the Hub at most this often (every open page polls)
NOTES_TTL_S = 2.0  # the job notes on the bucket are listed at most this often
PAYER_TTL_S = 600.0  # whoami is rate-limited: one answer per token for ten minutes
STOP_GRACE_S = 300.0  # Stop waits this long for the run to stop and keep its snapshot, then cancels the job anyway
DEFAULT_TIMEOUT_S = 24 * 3600.0  # a note without its plan: how long its job may still be alive


@dataclass(frozen=True)
class JobView:
    """A noted job as a page shows it: its stage now and its run, once the job has created it."""

    note: jobs.JobNote = field(metadata={"help": "what was submitted"})
    stage: str = field(metadata={"help": "SCHEDULING, RUNNING, COMPLETED, ERROR, CANCELED, or 'unknown' (no answer)"})
    run: Run | None = field(metadata={"help": "the job's run in the shared runs folder; None until it starts"})
    message: str = field(default="", metadata={"help": "the Hub's message with the stage (why it failed)"})
    logs: tuple[str, ...] = field(default=(), metadata={"help": "the end of a failed job's logs"})

    @property
    def ended(self) -> bool:
        """The job is over (its run may still read 'running' until its heartbeat goes stale)."""
        return self.stage in TERMINAL


@dataclass
class JobsMemory:
    """What an engine remembers of Jobs: caches, and the tokens of the jobs it submitted (memory only, never written:
    they follow and stop those jobs; after a restart the page's token or sign-in does)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tokens: dict[str, str] = field(default_factory=dict)  # job id -> the token that pays for it
    here: set[str] = field(default_factory=set)  # ids of the jobs this engine submitted
    stages: dict[str, tuple[float, str, str, tuple[str, ...]]] = field(default_factory=dict)  # id -> (at, stage, msg, logs)
    payers: dict[str, tuple[float, Payer]] = field(default_factory=dict)  # sha256 of a token -> (at, whoami's answer)
    hardware: tuple[float, jobs.HardwareList] | None = None  # (at, the list)
    notes: tuple[float, list[jobs.JobNote]] = (0.0, [])  # (at, the notes on the bucket)


class JobsFacade(_Base):
    """Jobs runs for the UI and the CLI. Engine provides the state below and _who/_owned/_writable."""

    settings: Settings
    workspaces: Workspaces
    hub: Any
    runs_dir: Path
    manager: Any

    def _jobs_state(self) -> JobsMemory:
        """This engine's Jobs memory, made on first use (dict.setdefault: one even when two threads ask at once)."""
        return self.__dict__.get("_jobs_memory") or self.__dict__.setdefault("_jobs_memory", JobsMemory())

    # ------------------------------------------------------------------------------------------ where and who
    def job_target(self, bucket: str, bucket_dir: str | Path) -> jobs.JobTarget:
        """The user's bucket: its id, and where this machine mounts it (the runs folder must be inside)."""
        return jobs.JobTarget(bucket=bucket, local_dir=Path(bucket_dir).resolve(), runs_dir=self.runs_dir)

    def jobs_target(self) -> jobs.JobTarget | None:
        """The deployment's bucket (FTUI_BUCKET, mounted at FTUI_BUCKET_DIR), or None when Jobs are not set up."""
        s = self.settings
        return self.job_target(s.jobs_bucket, s.jobs_bucket_dir) if s.jobs_bucket and s.jobs_bucket_dir else None

    def jobs_problem(self) -> str:
        """Why this app cannot start Jobs runs ('' when it can), in words for the page."""
        target = self.jobs_target()
        if not self.hub.online:
            return "This app is offline, and Jobs are started on the Hugging Face Hub."
        if target is None:
            return ("Jobs are not set up on this app: its operator sets FTUI_BUCKET (a Storage Bucket 'user/name') and "
                    "FTUI_BUCKET_DIR (where this machine mounts it), with the runs folder inside.")  # fmt: skip
        try:
            jobs.check_target(target)
        except FtuiError as exc:
            return f"{exc.problem} {exc.fix}".strip()
        return ""

    def jobs_hardware(self, token: str | None = None) -> jobs.HardwareList:
        """Flavors with their price per hour: the live list (cached for an hour), or the dated table (and why)."""
        if self.jobs_target() is None:  # no Jobs here: the page shows the table, and nothing asks the Hub
            return jobs.fallback_hardware("Jobs are not set up here")
        state, now = self._jobs_state(), time.monotonic()
        cached = state.hardware
        if cached is not None:
            at, got = cached
            live = got.source == "list_jobs_hardware"
            if now - at < (HARDWARE_TTL_S if live else 60.0):
                return got
        got = jobs.list_hardware(token, offline=not self.hub.online)
        state.hardware = (now, got)
        return got

    def paying_token(self, pasted: str | None, signed_in: str | None) -> tuple[str | None, str]:
        """The token that pays and where it came from: the one pasted on the page, else the signed-in user's own
        (OAuth), else, only on a private machine (no Space, no sign-in, no login), this machine's (HF_TOKEN or
        `hf auth login`). Never the environment's token on a Space: there it is the owner's, not the visitor's."""
        if pasted:
            return pasted, "the token you pasted"
        if signed_in:
            return signed_in, "your Hugging Face sign-in"
        if not self.settings.space_id and not self.workspaces.enabled and not self.settings.auth:
            own = jobs.find_token()
            if own:
                return own, "this machine's token (HF_TOKEN or hf auth login)"
        return None, ""

    def job_payer(self, token: str) -> Payer:
        """The account a token bills and what whoami says of it (cached per token: whoami is rate-limited)."""
        state, key = self._jobs_state(), hashlib.sha256(token.encode()).hexdigest()
        hit = state.payers.get(key)
        if hit is not None and time.monotonic() - hit[0] < PAYER_TTL_S:
            return hit[1]
        payer = jobs.whoami(jobs.hub_api(token))
        state.payers[key] = (time.monotonic(), payer)
        return payer

    # ------------------------------------------------------------------------------------------------ submit
    def plan_job(
        self,
        cfg: RunConfig,
        flavor: str,
        target: jobs.JobTarget,
        token: str | None,
        viewer: Viewer | None = None,
        sweep: SweepConfig | None = None,
    ) -> jobs.JobPlan:
        """The job that would train `cfg` (or sweep it): the owner stamped, the deployment's model and data allowlists
        applied (its CPU caps are not: the job runs on the user's own bill and hardware), a unique run name (or sweep
        id) so the run is found."""
        self._writable()
        cfg, _ = self._owned(cfg, viewer, "train on Jobs")
        self._admit_job(cfg)
        gpus = jobs.Flavor(flavor, 0.0).gpus
        name = cfg.train.run_name.strip() or f"job-{flavor}-{uuid.uuid4().hex[:6]}"
        cfg = replace(cfg, train=replace(cfg.train, run_name=name if sweep is None else cfg.train.run_name,
                                         processes=max(gpus, 1)))  # fmt: skip
        points = 1
        if sweep is not None:
            sweep, points = jobs.sweep_points(cfg, sweep)
            if sweep.max_minutes:  # the per-point budget is each run's time cap
                cfg = replace(cfg, train=replace(cfg.train, max_minutes=sweep.max_minutes))
        return jobs.plan_job(cfg, flavor, target, self.jobs_hardware(token), sweep, points)

    # ------------------------------------------------------------------------------------------------ resume
    def resume_job_config(
        self, run_id: str, target: jobs.JobTarget, viewer: Viewer | None = None, max_minutes: float = 0.0
    ) -> RunConfig:
        """The config a job resumes `run_id` with, once the viewer may manage it and it can resume (stopped or
        interrupted, a snapshot kept). Any stopped run of the runs folder on the bucket can: one that trained here, or
        on Jobs. Its time cap is `max_minutes` when given, else its own (a Jobs run must have one)."""
        self._writable()
        run = self._managed(run_id, viewer, "resume")
        if not can_resume(run):
            raise FtuiError(f"Run '{run.name}' cannot be resumed ({run.status.value}).",
                            "Only stopped or interrupted runs that reached a saved step can be resumed.")  # fmt: skip
        jobs.check_target(target)  # its folder is on the bucket, so the job reads the snapshot and writes the run
        cfg = run.config
        data = jobs_data.on_this_machine(cfg.data, jobs.MOUNT, target.local_dir)  # validated here, then copied if local
        return replace(cfg, data=data, train=replace(cfg.train, max_minutes=max_minutes or cfg.train.max_minutes))

    def resume_on_job(
        self,
        run_id: str,
        flavor: str,
        target: jobs.JobTarget,
        token: str | None,
        viewer: Viewer | None = None,
        max_minutes: float = 0.0,
    ) -> jobs.JobNote:
        """Resume a stopped run on Jobs: the job continues it from its snapshot in the shared runs folder (same id,
        same folder), with the checks, estimate and payer of a new Jobs run."""
        if not token:
            raise FtuiError("Jobs need your Hugging Face token: the run is billed to its account.",
                            "Sign in (with the jobs scope) or paste a token.")  # fmt: skip
        cfg = self.resume_job_config(run_id, target, viewer, max_minutes)
        self._admit_job(cfg)
        return self._submitted(jobs.plan_job(cfg, flavor, target, self.jobs_hardware(token), resume=run_id), target, token)

    def _admit_job(self, cfg: RunConfig) -> None:
        """The deployment's model and data allowlists (its CPU caps do not apply: the job runs on the user's bill)."""
        refused = self.settings.admit_model(cfg.model) + self.settings.admit_data(cfg.data) if isinstance(cfg, RunConfig) else []
        if refused:
            raise ConfigError(refused)

    def submit_job(
        self,
        cfg: RunConfig,
        flavor: str,
        target: jobs.JobTarget,
        token: str | None,
        viewer: Viewer | None = None,
        sweep: SweepConfig | None = None,
    ) -> jobs.JobNote:
        """Plan and submit; `token` pays. It is the one the user gave (on a Space: the visitor's OAuth token), never
        HF_TOKEN from this process's environment, which on a Space is the owner's. The token stays in memory, to
        follow and stop the job; it is written nowhere."""
        self._admit_job(cfg)  # the allowlists first, as at every entry point: a refused path is never probed
        if not token:
            raise FtuiError("Jobs need your Hugging Face token: the run is billed to its account.",
                            "Sign in (with the jobs scope) or paste a token.")  # fmt: skip
        return self._submitted(self.plan_job(cfg, flavor, target, token, viewer, sweep), target, token)

    def _submitted(self, plan: jobs.JobPlan, target: jobs.JobTarget, token: str) -> jobs.JobNote:
        """Submit a plan; the token that pays stays in memory (to follow and stop the job), the note is on the bucket."""
        job = jobs.submit(plan, target, token)
        state = self._jobs_state()
        with state.lock:
            state.tokens[job.id] = token
            state.here.add(job.id)
            state.notes = (0.0, [])  # list the notes again: this one is new
        return next(n for n in jobs.read_notes(target) if n.job_id == job.id)

    # ------------------------------------------------------------------------------------------------ follow
    def _notes(self, target: jobs.JobTarget) -> list[jobs.JobNote]:
        state = self._jobs_state()
        at, notes = state.notes
        if time.monotonic() - at >= NOTES_TTL_S:
            notes = jobs.read_notes(target)
            state.notes = (time.monotonic(), notes)
        return notes

    def _job_run(self, note: jobs.JobNote) -> Run | None:
        """The job's run in the shared folder: by its name, or a sweep job's newest run (an unfinished one first)."""
        runs = self.manager.runs()  # synced with the store: the job's process may have created or resumed the run
        if note.resume:
            return next((r for r in runs if r.run_id == note.resume), None)
        if note.sweep_id:
            mine = [r for r in runs if r.config.sweep.sweep_id == note.sweep_id]
            live = [r for r in mine if not r.status.finished]
            return (live or mine or [None])[-1]
        return next((r for r in reversed(runs) if r.name == note.run_name), None) if note.run_name else None

    def _stage(self, note: jobs.JobNote, token: str | None) -> tuple[str, str, tuple[str, ...]]:
        """The job's stage and message (cached a few seconds; an ended job's for good), and a failed job's log tail."""
        state = self._jobs_state()
        token = state.tokens.get(note.job_id) or token
        hit = state.stages.get(note.job_id)
        if hit is not None and (hit[1] in TERMINAL or time.monotonic() - hit[0] < STAGE_TTL_S):
            return hit[1], hit[2], hit[3]
        if not token:
            return "unknown", "", ()
        try:
            stage, message = jobs.status(note.job_id, note.namespace, token)
            logs = tuple(jobs.log_tail(note.job_id, note.namespace, token)) if stage == "ERROR" else ()
        except Exception as exc:  # the Hub unreachable or the token refused: the run in the folder still shows
            log.info("no stage for job %s: %s", note.job_id, type(exc).__name__)
            return "unknown", "", ()
        state.stages[note.job_id] = (time.monotonic(), stage, message, logs)
        return stage, message, logs

    def _mine(self, note: jobs.JobNote, who: Viewer) -> bool:
        return note.user == who.user if who.scoped else True

    def jobs(self, target: jobs.JobTarget, token: str | None, viewer: Viewer | None = None) -> list[JobView]:
        """The viewer's noted jobs, newest first, each with its stage now (asked of the Hub) and its run."""
        who = self._who(viewer)
        views = []
        for note in jobs.read_notes(target):
            if who.scoped and not who.admin and note.user != who.user:
                continue
            stage, message, logs = self._stage(note, token)
            views.append(JobView(note, stage, self._job_run(note), message, logs))
        return views

    def followed_job(self, viewer: Viewer | None = None, token: str | None = None) -> JobView | None:
        """The job the viewer's Train tab follows: their newest job on this app's bucket, unless a run started here
        since. An app that comes back finds a job that may still be alive (within its timeout, its run unfinished)."""
        target = self.jobs_target()
        if target is None:
            return None
        who = self._who(viewer)
        note = next((n for n in self._notes(target) if self._mine(n, who)), None)
        if note is None:
            return None
        current = self.manager.current()
        if current is not None and current.started_at >= note.submitted_at:
            return None  # a run started (or resumed) here since: the Train tab follows it
        run = self._job_run(note)
        if note.job_id not in self._jobs_state().here:  # submitted before this app started
            alive = time.time() < note.submitted_at + self._timeout_of(note, target)
            if (run is not None and run.status.finished) or (run is None and not alive):
                return None
        stage, message, logs = self._stage(note, token)
        return JobView(note, stage, run, message, logs)

    def latest_run_for(self, viewer: Viewer | None = None) -> Run | None:
        """The run the viewer's Train tab shows: their followed job's run, else this app's current run."""
        view = self.followed_job(viewer)
        return view.run if view is not None else self.manager.current()

    @staticmethod
    def _timeout_of(note: jobs.JobNote, target: jobs.JobTarget) -> float:
        try:
            plan = json.loads((target.local_dir / jobs.JOBS_DIR / f"{note.job_id}.json").read_text()).get("plan", {})
            return float(plan.get("timeout") or DEFAULT_TIMEOUT_S)
        except (OSError, ValueError, TypeError):
            return DEFAULT_TIMEOUT_S

    # -------------------------------------------------------------------------------------------- stop, cancel
    def stop_job(self, view: JobView, token: str | None, viewer: Viewer | None = None) -> str:
        """Stop a job's run and keep its snapshot, then cancel the job: the run is asked through its folder to stop at
        its next step; once it has stopped (or after STOP_GRACE_S) the job is cancelled. Returns what happens, in words."""
        note = view.note
        who = self._who(viewer)
        if who.scoped and not who.admin and note.user != who.user:
            raise FtuiError("That job is someone else's.", "")
        token = self._jobs_state().tokens.get(note.job_id) or token
        if not token:
            raise FtuiError("Stopping a job needs the token of the account it runs under.", "Sign in or paste it, then Stop.")
        run = view.run
        if run is None or run.status.finished:
            self.cancel_job(note, token, viewer)
            return "cancelled"
        ask_to_stop(run.out_dir)
        threading.Thread(target=self._cancel_when_stopped, args=(note, run.run_id, token, viewer), daemon=True,
                         name=f"ftui-job-stop-{note.job_id}").start()  # fmt: skip
        return "stopping"

    def _cancel_when_stopped(self, note: jobs.JobNote, run_id: str, token: str, viewer: Viewer | None) -> None:
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline:
            run = self.manager.get(run_id)
            if run is None or run.status.finished:
                break
            time.sleep(0.5)
        try:
            self.cancel_job(note, token, viewer)
        except Exception as exc:  # the job may have ended meanwhile; the page shows its stage either way
            log.warning("could not cancel job %s: %s", note.job_id, type(exc).__name__)

    def cancel_job(self, note: jobs.JobNote, token: str | None, viewer: Viewer | None = None) -> None:
        """Cancel a job: Jobs sends its container SIGTERM, which the job's `train` turns into a Stop at the next step
        (the run keeps a snapshot and can be resumed)."""
        who = self._who(viewer)
        if who.scoped and not who.admin and note.user != who.user:
            raise FtuiError("That job is someone else's.", "")
        token = self._jobs_state().tokens.get(note.job_id) or token
        if not token:
            raise FtuiError("Cancelling a job needs the token of the account it runs under.", "Sign in or paste it.")
        jobs.cancel(note.job_id, note.namespace, token)
        self._jobs_state().stages.pop(note.job_id, None)  # ask again: CANCELED now
