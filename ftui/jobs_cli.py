"""`train|sweep --on hf-jobs`: plan, print (--dry-run) or submit a Hugging Face Jobs run, and follow its stage; inside the
job, the wait for the app's cancel after a stop it asked for."""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ftui.config import RunConfig
from ftui.errors import FtuiError
from ftui.run_layout import stop_asked
from ftui.runs import Run
from ftui.sweeps import SweepConfig

# After a run stopped because the app asked (through the run folder), the job waits this long for the app's cancel, so
# the job reads CANCELED, not failed; an app that went away meanwhile costs at most this much more.
LINGER_S = 20.0


def add_job_args(t: argparse.ArgumentParser) -> None:
    """Where a `train` or `sweep` runs; the Jobs flags are not training settings, so they stay out of TrainConfig."""
    t.add_argument(
        "--on",
        choices=["this-machine", "hf-jobs"],
        default="this-machine",
        help="train here, or on Hugging Face Jobs (billed per minute; needs --flavor and --max-minutes)",
    )
    t.add_argument("--flavor", default="", help="Jobs hardware, e.g. t4-small, a10g-small, a100-large, h200")
    t.add_argument(
        "--bucket",
        default=os.environ.get("FTUI_BUCKET", ""),
        help="Jobs: the Storage Bucket 'user/name' mounted in the job (None: $FTUI_BUCKET)",
    )
    t.add_argument(
        "--bucket-dir",
        default=os.environ.get("FTUI_BUCKET_DIR", ""),
        help="Jobs: where this machine mounts that bucket; --runs-dir must be inside it (None: $FTUI_BUCKET_DIR)",
    )
    t.add_argument("--dry-run", action="store_true", help="Jobs: print the job as one JSON line and submit nothing")
    t.add_argument("--detach", action="store_true", help="Jobs: return once submitted instead of following the job")
    # The job's own `train` gets the whole RunConfig as JSON (validated again there): flags cannot say every field.
    t.add_argument("--run-config", default=None, help=argparse.SUPPRESS)
    t.add_argument("--sweep-config", default=None, help=argparse.SUPPRESS)  # a sweep job's SweepConfig, as JSON
    t.add_argument("--poll-seconds", type=float, default=5.0, help=argparse.SUPPRESS)  # tests follow faster


def config_from_json(text: str) -> RunConfig:
    """The RunConfig a job was handed; a clear error when it is not JSON."""
    try:
        return RunConfig.from_dict(json.loads(text))
    except (ValueError, TypeError) as exc:
        raise FtuiError(f"--run-config is not a run configuration: {exc}") from None


def _say(obj: dict[str, Any]) -> None:
    print(json.dumps(obj), flush=True)


def linger_after_stop(run: Run) -> bool:
    """Inside a job: when the run stopped because the app asked, wait (at most LINGER_S) for the app's cancel. True when
    the run stopped on request, which is a success for the job."""
    if run.status.value != "stopped" or not stop_asked(run.out_dir):
        return False
    cancelled = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancelled.set())
    cancelled.wait(LINGER_S)
    return True


def _resumed(args: argparse.Namespace, target: Any) -> RunConfig:
    """`train --resume RUN_ID --on hf-jobs`: the run's config as the job resumes it (the engine's checks; its time cap is
    --max-minutes when given, else its own)."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.settings import Settings

    # Reading a run asks the Hub nothing (--dry-run calls nothing); the operator's shell, so no sign-in rules.
    engine = Engine(runs_dir=target.runs_dir, hub_status=HubStatus(True, "not asked"),
                    settings=replace(Settings.from_env(), oauth=False))  # fmt: skip
    return engine.resume_job_config(args.resume, target, max_minutes=args.max_minutes or 0.0)


def jobs_command(args: argparse.Namespace, cfg: RunConfig, sweep: SweepConfig | None = None) -> int:
    """Plan the job (a `train`, with `sweep` a whole sweep, with --resume the continuation of a stopped run); print it
    (--dry-run) or submit it and follow its stage until it ends (or --detach)."""
    from ftui import jobs

    runs_dir = Path(args.runs_dir or os.environ.get("FTUI_RUNS_DIR") or Path.cwd() / "runs").resolve()
    target = jobs.JobTarget(bucket=args.bucket, local_dir=Path(args.bucket_dir or runs_dir).resolve(), runs_dir=runs_dir)
    token = None if args.dry_run else jobs.find_token()
    resume = getattr(args, "resume", None) or ""
    try:
        if resume:
            cfg = _resumed(args, target)
        if not args.flavor:
            raise FtuiError("A Jobs run needs hardware.", "Pass --flavor (e.g. a10g-small).")
        if not args.dry_run and not token:
            raise FtuiError("Jobs need a Hugging Face token: the run is billed to its account.",
                            "Set HF_TOKEN or run `hf auth login`.")  # fmt: skip
        # --dry-run calls nothing, not even the free hardware list: it prices with the dated table (and says so).
        hardware = jobs.fallback_hardware("--dry-run calls nothing") if args.dry_run else jobs.list_hardware(token, args.offline)
        points = 1
        if sweep is not None:
            sweep, points = jobs.sweep_points(cfg, sweep)
            if sweep.max_minutes:  # the per-point budget is the time cap each run takes
                cfg = replace(cfg, train=replace(cfg.train, max_minutes=sweep.max_minutes))
        plan = jobs.plan_job(cfg, args.flavor, target, hardware, sweep, points, resume)
        if args.dry_run:
            _say({"type": "job_plan", **plan.to_json()})
            return 0
        assert token is not None
        job = jobs.submit(plan, target, token)
    except FtuiError as exc:
        _say({"type": "error", "message": str(exc)})
        return 2
    namespace = job.owner.name
    _say({"type": "job", "job_id": job.id, "namespace": namespace, "url": job.url, "flavor": plan.flavor,
          "estimated_cost_usd": plan.estimated_cost_usd, **({"sweep_id": plan.sweep_id} if plan.sweep_id else {})})  # fmt: skip
    if args.detach:
        return 0
    last, message = "", ""
    try:
        while True:
            now, message = jobs.status(job.id, namespace, token)
            if now != last:
                _say({"type": "job_stage", "job_id": job.id, "stage": now})
                last = now
            if now in ("COMPLETED", "ERROR", "CANCELED", "DELETED"):
                break
            time.sleep(args.poll_seconds)
    except KeyboardInterrupt:
        _say({"type": "job_detached", "job_id": job.id,
              "message": f"the job keeps running; cancel it with `hf jobs cancel {job.id}`"})  # fmt: skip
        return 1
    if last != "COMPLETED":
        _say({"type": "error", "job_id": job.id, "stage": last, "message": jobs.ending(last, message)})
        _say({"type": "job_logs", "job_id": job.id, "tail": jobs.log_tail(job.id, namespace, token)})
    return 0 if last == "COMPLETED" else 1
