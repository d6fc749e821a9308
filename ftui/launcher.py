"""Launching runs: a config checked against the deployment's rules and the checkpoint, then trained at once or
queued; a queued run's turn; resume; sweeps (planned, checked whole, queued) and their median pruning rule."""

from __future__ import annotations

import logging
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ftui import auto_baseline, jobs_data, scaleout, sweeps
from ftui.batching import TokenCache
from ftui.config import LOWER_IS_BETTER, RunConfig, validate_run
from ftui.data import DataBundle
from ftui.distributed import SOLO, Dist
from ftui.errors import ConfigError, FtuiError
from ftui.events import EventType, PrunedEvent
from ftui.modeling import display_name
from ftui.recipes import recipe_of
from ftui.run_layout import snapshot_path
from ftui.run_queue import QueuedRun, QueueFull
from ftui.runner import RunManager
from ftui.runs import Run, RunStatus
from ftui.settings import Settings
from ftui.sweeps import SweepConfig, first_score, prune_verdict
from ftui.workspace import run_folder

log = logging.getLogger(__name__)


def _slug(text: str, n: int = 24) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.split(" (")[0].split("/")[-1]).strip("-")[:n] or "x"


class Launcher:
    """Starts, queues and resumes runs for one runs folder (the slot and the queue are RunManager's)."""

    def __init__(
        self,
        manager: RunManager,
        settings: Settings,
        runs_dir: Path,
        token_cache: TokenCache,
        load_data: Callable[[Any, str | None], DataBundle],
        check_model: Callable[[RunConfig, str | None], None],
        dist: Dist = SOLO,
        offline: bool = False,
        sees: Callable[[str, Any], bool] = lambda user, run: True,
    ) -> None:
        self.manager = manager
        self.sees = sees  # sees(user, run): whether a run's owner can see another run (its baselines are those)
        self.dist = dist  # this process's place in a torchrun run (rank 0 launches here); SOLO in the app
        self.offline = offline  # the Hub is out of reach: a torchrun child is told so
        self.settings = settings
        self.store = manager.store
        self.runs_dir = runs_dir
        self.token_cache = token_cache
        self.load_data = load_data  # the engine's cached loader (the deployment's dataset rules included)
        self.check_model = check_model  # the checkpoint loads and the freeze depth, length, schedule fit it
        manager.start_item = self.start_queued

    def start_run(self, cfg: RunConfig, token: str | None = None, user_cap: int = 0) -> Run | QueuedRun:
        """Validate (settings' caps and the checkpoint included), then train in a background thread, or queue the run
        when one is training (QueueFull past the queue cap, or past `user_cap` runs of its owner waiting). A baseline
        config fits its baseline instead."""
        return self._start_checked(self.check(cfg, token), token, user_cap)

    def _start_checked(self, cfg: RunConfig, token: str | None, user_cap: int = 0) -> Run | QueuedRun:
        got = self.manager.start_or_queue(lambda: self._new_run(cfg), cfg, token, user_cap)
        if isinstance(got, Run):
            self._launch(got, token)
        return got

    def check(self, cfg: RunConfig, token: str | None) -> RunConfig:
        """The config as it will run (caps applied), or ConfigError/ModelError/DataError saying what to change."""
        if not isinstance(cfg, RunConfig):
            raise ConfigError(["no run settings were given"])
        recipe = recipe_of(cfg)
        cfg = recipe.as_run(cfg)  # an adapt run's corpus is its data: the deployment's dataset rules apply to it
        # The allowlists first, before any check that looks at the disk: a refused path gets the same message whether
        # it exists or not, so a visitor cannot map the server's files.
        refused = self.settings.admit_training(recipe.gpu_free(cfg))  # before anything is read or started
        refused = refused or self.settings.admit_model(cfg.model) + self.settings.admit_data(cfg.data)
        if refused:
            raise ConfigError(refused)
        problems = validate_run(cfg)
        if not problems:
            cfg, problems = self.settings.apply(cfg)
        if not problems and not self.dist.enabled and cfg.train.processes > 1:
            offered = scaleout.available_processes(self.settings.cpu_processes)
            if cfg.train.processes > offered:
                where = "GPUs" if torch.cuda.is_available() else "processes on CPU (FTUI_CPU_PROCESSES)"
                problems = [f"this machine offers {offered} {where}; {cfg.train.processes} processes were asked for"]
        if problems:
            raise ConfigError(problems)
        if recipe.reads_checkpoint(cfg):  # bag-of-words baselines and a from-scratch model never touch it
            self.check_model(cfg, token)
        return cfg

    def _new_run(self, cfg: RunConfig) -> Run:
        """A fresh run record for a checked config, with a generated name unless the config gives one."""
        run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
        model_part, data_part = _slug(display_name(cfg.model)), _slug(cfg.data.dataset_id or "demo")
        generated = recipe_of(cfg).name(cfg, model_part, data_part, run_id[9:15])
        folder = run_folder(self.runs_dir, run_id, cfg.user)  # a signed-in user's runs live in their own folder
        return Run(run_id, cfg.train.run_name.strip() or generated, cfg, folder, store=self.store)

    def _launch(self, run: Run, token: str | None) -> None:
        """Start the worker of a run that holds the slot."""
        cfg = run.config
        run.save_header()
        if cfg.sweep.prune:
            run.listeners.append(self.pruner(run))
        self._reference_beside(run, token)  # first: its end is in run.awaits before the run can reach its verdict
        recipe = recipe_of(cfg)
        if recipe.parallel and cfg.train.processes > 1 and not self.dist.enabled:
            self._launch_processes(run, token, cfg.train.processes, resume=False)
            return
        self._fit(run, token, resume=False)

    def _reference_beside(self, run: Run, token: str | None) -> None:
        """On data with no baseline yet, fit the TF-IDF baseline beside the run that just started (ftui.auto_baseline):
        outside the slot, so the run is not delayed; its verdict waits for it at the end. Refused (a deployment rule):
        the run goes on without one."""
        cfg = run.config
        if self.dist.enabled or not self.settings.auto_baseline or not recipe_of(cfg).auto_reference:
            return  # before reading the runs: most starts need nothing more
        seen = [r.header() for r in self.manager.runs() if r is not run and self.sees(cfg.user, r)]
        if not auto_baseline.wanted(cfg, self.settings.auto_baseline, seen):
            return
        try:
            base_cfg = self.check(auto_baseline.config_for(cfg), token)
        except FtuiError as exc:
            log.info("no automatic baseline for run %s: %s", run.run_id, exc)
            return
        except Exception:  # noqa: BLE001 - a bonus beside the run: whatever goes wrong here must not stop the run
            log.warning("no automatic baseline for run %s", run.run_id, exc_info=True)
            return
        base = self._new_run(base_cfg)
        base.note = auto_baseline.note_for(run.name)
        base.save_header()
        run.awaits.append(base.done)
        load = lambda: self.load_data(base.config.data, token)  # noqa: E731 - its own thread loads (cached: shared)
        args = (base, load, token, self.token_cache, False, self.dist, self.settings.read_limits())
        self.manager.launch_beside(base, recipe_of(base_cfg).fit, args, f"ftui-baseline-{base.run_id}")

    def _fit(self, run: Run, token: str | None, resume: bool) -> None:
        """Run the recipe's worker for a run in this process (a thread the manager supervises)."""
        load = lambda: self.load_data(run.config.data, token)  # noqa: E731 - the worker loads, so Start answers at once
        args = (run, load, token, self.token_cache, resume, self.dist, self.settings.read_limits())
        name = f"ftui-{'resume' if resume else 'run'}-{run.run_id}"
        self.manager.launch(run, recipe_of(run.config).fit, args, name)

    def _launch_processes(self, run: Run, token: str | None, processes: int, resume: bool) -> None:
        """Train a run the app holds as a torchrun child of `processes` ranks, supervised by the worker thread."""
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "FTUI_RUNS_DIR": str(self.runs_dir)}
        # The ranks import this very ftui, wherever the app was started from.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(Path(__file__).resolve().parent.parent), env.get("PYTHONPATH")) if p)
        if token:
            env["HF_TOKEN"] = token  # the child's environment only: tokens never enter the store
        command = scaleout.torchrun_command(run.run_id, self.runs_dir, processes, resume, self.offline)
        has_snapshot = snapshot_path(run.out_dir).exists
        args = (run, self.store, command, env, has_snapshot)
        self.manager.launch(run, scaleout.supervise, args, f"ftui-torchrun-{run.run_id}", beat=False)

    def adopt_run(self, run_id: str, token: str | None, resume: bool) -> Run:
        """Rank 0 of a torchrun child takes over the run the app created for it (still queued, the app's), checks it
        against today's rules, and trains it here (from its snapshot when the app is resuming it)."""
        row = self.store.header(run_id)
        if row is None or row.status != RunStatus.QUEUED:
            state = "no such run" if row is None else f"it is {row.status.value}"
            raise FtuiError(f"Run '{run_id}' cannot be taken over ({state}).", "Start it from the app or the CLI.")
        cfg = self.check(RunConfig.from_dict(row.config), token)

        def make() -> Run:
            run = Run.from_record(row, self.store.events(run_id), Path(row.out_dir), self.store, live=True)
            run.remote, run.config = False, cfg  # ours from now on
            return run

        run = self.manager.reserve(make)
        run.save_header()  # the store's owner is this process from here on; the app stops beating for it
        self._fit(run, token, resume)
        return run

    def start_queued(self, item: QueuedRun, token: str | None) -> bool:
        """Start a run whose turn in the queue came; one that is refused now (its data, checkpoint or the rules
        changed while it waited) becomes a failed run with the reason, and the queue goes on."""
        try:
            if self.settings.demo or self.store.read_only:
                raise FtuiError("This deployment no longer trains.", "Run ftui with a writable runs folder.")
            if item.token_lost:
                raise FtuiError(
                    "It was queued with a Hub token, which ftui keeps in memory only, and the app restarted before its "
                    "turn, so the token is gone.",
                    "Queue it again with your token.",
                )
            cfg = self.check(item.config, token)
        except FtuiError as exc:
            run = self._new_run(item.config)
            run.finish(RunStatus.FAILED, f"{exc} (checked when its turn in the queue came)")
            self.manager.record(run)
            log.info("queued run %s refused at its turn: %s", run.run_id, exc)
            return False
        run = self.manager.reserve(lambda: self._new_run(cfg))
        self._launch(run, token)
        return True

    def pruner(self, run: Run) -> Callable[[dict[str, Any] | None], None]:
        """A listener that stops a sweep's run after its first evaluation when it scores below the median of the
        sweep's completed runs at their first evaluation (the median stopping rule)."""
        ref, judged = run.config.sweep, [False]

        def listen(event: dict[str, Any] | None) -> None:
            if event is None or judged[0] or event.get("type") != EventType.EVAL.value:
                return
            judged[0] = True
            score = event.get(f"eval_{ref.metric}")
            if not isinstance(score, (int, float)):
                return
            completed = [
                s
                for r in self.manager.runs()
                if r.config.sweep.sweep_id == ref.sweep_id and r is not run and r.status == RunStatus.COMPLETED
                for s in [first_score(r.events(), ref.metric)]
                if s is not None
            ]
            lower = ref.metric in LOWER_IS_BETTER
            median = prune_verdict(float(score), completed, lower_is_better=lower)
            if median is not None:
                run.log(PrunedEvent(step=int(event.get("step") or 0), metric=ref.metric, score=float(score),
                                    median=median, completed=len(completed)))  # fmt: skip
                worse = ">" if lower else "<"
                run.set_progress(pruned=f"pruned: {ref.metric} {score:.3f} {worse} median {median:.3f} of {len(completed)}")
                run.request_stop()

        return listen

    # ------------------------------------------------------------------------------------------------- sweeps
    def plan_sweep(self, base: RunConfig, sweep: SweepConfig, token: str | None = None) -> list[RunConfig]:
        """Every point of a sweep as a checked run config; ConfigError lists every problem (each field or point named)."""
        if not isinstance(sweep, SweepConfig) or not isinstance(base, RunConfig):
            raise ConfigError(["no sweep settings were given"])
        parsed, problems = sweeps.parse(sweep)
        if problems:
            raise ConfigError(problems)
        allowed = self.settings.allowed_checkpoints
        refused = [f"checkpoint '{v}' is not allowed here; choose one of: {', '.join(allowed)}"
                   for v in parsed.get("checkpoint", []) if allowed and v not in allowed]  # fmt: skip
        if refused:  # before a point is built: building one asks the disk whether the value is a folder
            raise ConfigError(refused)
        n = sweeps.size(parsed, sweep)
        waiting, cap = len(self.manager.queued()), self.manager.max_queue
        if n > sweeps.MAX_POINTS or (cap and n + waiting > cap):
            raise QueueFull(waiting, n, cap or sweeps.MAX_POINTS)
        sweep_id = sweep.sweep_id or time.strftime("sweep-%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
        configs, problems = [], []
        for i, point in enumerate(sweeps.points(parsed, sweep)):
            cfg = sweeps.apply_point(base, point, sweep, sweep_id, i)
            try:
                configs.append(self.check(cfg, token))
            except FtuiError as exc:
                what = sweeps.swept_text(cfg.sweep.point)
                problems.append(f"point {i + 1} ({what}): {getattr(exc, 'messages', [exc.problem])[0]}")
        if problems:
            raise ConfigError(list(dict.fromkeys(problems))[:10])
        return configs

    def start_sweep(self, base: RunConfig, sweep: SweepConfig, token: str | None = None, user_cap: int = 0) -> list[QueuedRun]:
        """Queue one run per point of the sweep (all or none); the first starts at once when nothing trains."""
        return self.manager.enqueue(self.plan_sweep(base, sweep, token), token, user_cap)

    def sweep_ids(self, visible: Callable[[Any], bool] = lambda _: True) -> list[str]:
        """Sweep ids of the stored runs and the queue (those `visible` lets through), newest first."""
        ids = sweeps.sweep_ids([r.header() for r in self.manager.runs() if visible(r)])
        waiting = [q.sweep_id for q in self.manager.queued() if q.sweep_id and q.sweep_id not in ids and visible(q)]
        return list(dict.fromkeys(waiting[::-1])) + ids

    def sweep_table(
        self, sweep_id: str, metric: str = "accuracy", visible: Callable[[Any], bool] = lambda _: True
    ) -> list[dict[str, Any]]:
        """One sweep's runs (those `visible` lets through), best validation score first, plus its points still queued."""
        # Only this sweep's runs are copied with their events (the view refreshes every few seconds).
        records = [r.to_json() for r in self.manager.runs() if r.config.sweep.sweep_id == sweep_id and visible(r)]
        waiting = [(q.config.train.run_name, q.position, q.config.sweep.point) for q in self.manager.queued()
                   if q.sweep_id == sweep_id and visible(q)]  # fmt: skip
        return sweeps.sweep_table(records, sweep_id, metric, waiting)

    def start_baselines(self, cfg: RunConfig, token: str | None = None, user_cap: int = 0) -> list[Run | QueuedRun]:
        """ "Run baselines": TF-IDF, NBSVM (single-label classes only), then frozen embeddings, each under the label
        shape's estimator, as runs (each queued behind the one before)."""
        embeddings = replace(cfg, kind="baseline", baseline="embeddings", train=replace(cfg.train, run_name=""))
        tfidf = replace(cfg, kind="baseline", baseline="tfidf", train=replace(cfg.train, run_name=""))
        nbsvm = replace(tfidf, baseline="nbsvm")
        checked = [self.check(tfidf, token), self.check(nbsvm, token), self.check(embeddings, token)]  # all or none
        shape = cfg.data.task if cfg.data.task != "auto" else self.load_data(checked[0].data, token).task.value
        if shape != "single_label":  # NB log-count ratios need classes; the others fit label sets and numbers too
            checked.pop(1)
        return [self._start_checked(c, token, user_cap) for c in checked]

    def resume_run(self, run_id: str, token: str | None = None, placed: RunConfig | None = None) -> Run:
        """Continue a stopped or interrupted run from its last snapshot, in the same record. `placed`: a job resuming
        it hands the run's config as the job reads it (data copied to the bucket, the job's time cap and processes)."""
        run = self.manager.require(run_id)
        moved = jobs_data.resumed_as(run.config, placed) if placed is not None else None
        _, problems = self.settings.apply(moved or run.config)  # the rules of today, not of the day it started
        problems = self.settings.admit_training(recipe_of(run.config).gpu_free(run.config)) + problems
        if problems:
            raise ConfigError(problems)

        def reopen(r: Run) -> None:
            snap = torch.load(snapshot_path(r.out_dir), map_location="cpu", weights_only=True,
                              mmap=not self.store.network)  # fmt: skip  # no mmap on a network mount
            if moved is not None:
                r.config = moved  # saved with the header by reopen: the record says where it trained from now
            r.reopen(int(snap["step"]))

        run = self.manager.resume(run_id, reopen)
        wanted = run.config.train.processes if recipe_of(run.config).parallel and not self.dist.enabled else 1
        processes = min(wanted, scaleout.available_processes(self.settings.cpu_processes))
        if processes > 1:
            self._launch_processes(run, token, processes, resume=True)
            return run
        self._fit(run, token, resume=True)
        return run
