"""Headless entry point: `python -m ftui train ...` prints a run's metrics as JSON lines; `runs list|show` reads the store."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ftui.advice import warnings_of
from ftui.cli_flags import (
    adapt_args,
    adapt_config,
    baseline_args,
    baseline_config,
    data_config,
    given_fields,
    model_config,
    run_args,
    train_args,
    train_config,
)
from ftui.config import SWEEP_METRICS, RunConfig, TrainConfig
from ftui.events import EventType, of_type
from ftui.jobs_cli import add_job_args, config_from_json, jobs_command, linger_after_stop
from ftui.recommend import Recommendation
from ftui.runs import Run
from ftui.significance import result_interval


def build_parser() -> argparse.ArgumentParser:
    """Arguments of `python -m ftui`."""
    fmt = argparse.ArgumentDefaultsHelpFormatter  # --help shows every default
    p = argparse.ArgumentParser(prog="ftui", description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(dest="command", required=True)
    a = sub.add_parser("app", help="serve the dashboard in the browser", formatter_class=fmt)
    a.add_argument("--host", default=None, help="address to listen on (None: 127.0.0.1 or $GRADIO_SERVER_NAME)")
    a.add_argument("--port", type=int, default=None, help="port (None: 7860 or $GRADIO_SERVER_PORT)")
    a.add_argument("--runs-dir", default=None, help="where runs are kept (None: ./runs or $FTUI_RUNS_DIR)")
    t = sub.add_parser(
        "train", help="train one run and stream its metrics as JSON lines", formatter_class=fmt,
        description="Runs unchanged under `torchrun --nproc_per_node N -m ftui train ...` or `accelerate launch "
        "--num_processes N -m ftui train ...`: N data-parallel processes (DDP), rank 0 writes the run.",
    )  # fmt: skip
    train_args(t)
    run_args(t)
    add_job_args(t)
    t.add_argument(
        "--estimate", action="store_true", help="time a few steps first, print how long the run will take (JSON: 'estimate')"
    )
    sw = sub.add_parser(
        "sweep",
        help="queue one run per point of a grid (or random draws) and print each finished run's end line",
        formatter_class=fmt,
        description="Every `train` flag sets the fixed part; --grid/--range vary learning_rate (lr), freeze_depth, "
        "checkpoint, epochs, batch_size, max_length or schedule. Example: --grid lr=1e-5,3e-5,1e-4 --grid freeze_depth=0,3",
    )
    train_args(sw)
    add_job_args(sw)
    sw.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2", help="values of one swept setting")
    sw.add_argument("--range", action="append", default=[], metavar="KEY=LO:HI", help="random mode: a range to draw from")
    sw.add_argument("--random", type=int, default=0, metavar="N", help="draw N random points instead of the full grid")
    sw.add_argument("--sweep-seed", type=int, default=0, help="seed of the random draws")
    sw.add_argument("--metric", choices=list(SWEEP_METRICS), default="accuracy", help="validation metric to rank and prune by")
    sw.add_argument(
        "--prune", action="store_true", help="stop points whose first evaluation is below the median of completed ones"
    )
    sw.add_argument("--minutes-per-run", type=float, default=0.0, help="training budget per point; 0 = none")
    b = sub.add_parser(
        "baseline", help="fit a baseline as a run; the last line is JSON with its test scores", formatter_class=fmt
    )
    baseline_args(b)
    ad = sub.add_parser("adapt", help="masked-LM pre-training; last line: JSON with the adapted model_dir", formatter_class=fmt)
    adapt_args(ad)
    r = sub.add_parser("runs", help="read the experiment store", formatter_class=fmt)
    rsub = r.add_subparsers(dest="runs_command", required=True)
    ls = rsub.add_parser("list", help="every run, oldest first", formatter_class=fmt)
    show = rsub.add_parser("show", help="one run with its config, result and every logged metric", formatter_class=fmt)
    show.add_argument("run", help="run id (or a unique name)")
    for q in (ls, show):
        q.add_argument("--json", action="store_true", help="machine-readable output")
        q.add_argument("--runs-dir", default=None, help="runs folder (None: ./runs or $FTUI_RUNS_DIR)")
    return p


def runs_command(args: argparse.Namespace) -> int:
    """`runs list` / `runs show`: read the store directly (no Hub check, no engine)."""
    import os

    from ftui.experiments import run_row
    from ftui.settings import Settings
    from ftui.store import Store

    runs_dir = Path(args.runs_dir or os.environ.get("FTUI_RUNS_DIR") or Path.cwd() / "runs").resolve()
    store = Store(runs_dir, network=Settings.from_env().network_storage)
    store.mark_interrupted()
    records = store.runs()
    if args.runs_command == "list":
        rows = [run_row(r.to_json()) for r in records]
        if args.json:
            print(json.dumps(rows))
        else:
            for row in rows:
                acc = "-" if row["test_acc"] is None else f"{row['test_acc']:.4f}"
                print(f"{row['run_id']}  {row['status']:<11} test_acc={acc:<7} {row['name']}")
        return 0
    matches = [r for r in records if args.run in (r.run_id, r.name)]
    if len(matches) != 1:
        print(json.dumps({"error": f"{len(matches)} runs match {args.run!r}"}) if args.json else f"{len(matches)} runs match")
        return 2
    rec = {**asdict(matches[0]), "events": store.events(matches[0].run_id)}  # the row as stored, with who wrote it
    print(json.dumps(rec, default=str) if args.json else json.dumps(rec, indent=1, default=str))
    return 0


def app_command(args: argparse.Namespace) -> int:
    """`ftui app`: the same app as `python app.py`, from any folder."""
    from ftui.engine import Engine
    from ftui.ui import create_app, launch_kwargs

    app = create_app(Engine(runs_dir=args.runs_dir, adopt_queue=True))
    app.queue().launch(server_name=args.host, server_port=args.port, **launch_kwargs())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; exit code 0 when the run completed, 1 otherwise."""
    args = build_parser().parse_args(argv)
    from ftui import distributed
    from ftui.guard import guard_from_env

    if distributed.launched():
        guard_from_env()  # a rank of the app's torchrun child dies with it (no orphan trains on)

    if distributed.launched() and args.command != "train":
        print(json.dumps({"type": "error", "message": f"only `train` runs under torchrun, not `{args.command}`"}))
        return 2
    if args.command == "runs":
        return runs_command(args)
    if args.command == "app":
        return app_command(args)
    if args.command in ("train", "sweep") and args.on == "hf-jobs":
        sweep = _sweep_of(args) if args.command == "sweep" else None
        if isinstance(sweep, str):
            print(json.dumps({"type": "error", "message": sweep}), flush=True)
            return 2
        return jobs_command(args, _flags_config(args, for_jobs=True), sweep)
    dist = distributed.from_env()
    try:
        if dist.enabled and not dist.is_main:
            return follow_command(dist)
        return _main(args, dist)
    finally:
        dist.close()


def follow_command(dist: Any) -> int:
    """A rank other than 0 under torchrun: wait for rank 0 to name the run, then train its share; prints nothing
    (rank 0 prints the run's events)."""
    import os
    import signal

    from ftui import hub
    from ftui.data import load_data
    from ftui.distributed import Assignment
    from ftui.finetune import follow_run
    from ftui.settings import Settings

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches rank 0, which stops every rank at the same step
    got = dist.broadcast(None)
    if got is None:
        return 2  # rank 0 refused the run and said why
    assignment = Assignment(**got)
    if assignment.offline:
        hub.go_offline()
    cfg = RunConfig.from_dict(assignment.config)
    token = os.environ.get("HF_TOKEN")
    limits = Settings.from_env().read_limits()
    return follow_run(assignment, dist, lambda: load_data(cfg.data, token, limits), token)


def _main(args: argparse.Namespace, dist: Any) -> int:
    """`train`, `sweep`, `baseline`, `adapt` (rank 0 under torchrun)."""
    import os

    from ftui.accel import pick_device
    from ftui.engine import Engine
    from ftui.errors import FtuiError
    from ftui.hub import HubStatus
    from ftui.settings import Settings
    from ftui.worker import iter_events

    hub_status = HubStatus(False, "offline (--offline)") if args.offline else None
    # The command line is the operator's: sign-in (a workspace per visitor) rules the app's visitors, not this shell.
    settings = replace(Settings.from_env(), oauth=False)
    engine = Engine(runs_dir=args.runs_dir, hub_status=hub_status, settings=settings, dist=dist)
    if args.command == "adapt":
        cfg = adapt_config(args)
    elif args.command == "baseline":
        cfg = baseline_config(args)
    elif getattr(args, "run_config", None):  # a Jobs run: the app's whole config, validated again by start_run
        try:
            given = config_from_json(args.run_config)
        except FtuiError as exc:
            print(json.dumps({"type": "error", "message": str(exc)}), flush=True)
            return 2
        cfg = replace(given, train=replace(given.train, processes=dist.world))
    else:
        cfg = _flags_config(args, device=pick_device(), processes=dist.world)
    if args.command == "sweep":
        return sweep_command(engine, cfg, args)
    token = os.environ.get("HF_TOKEN")
    applied: list[Recommendation] | None = None  # what the data's recommendations changed (a fresh run from flags)
    try:
        if getattr(args, "run_id", None):
            got: Any = engine.adopt_run(args.run_id, token, resume=args.from_snapshot)
        elif getattr(args, "resume", None):
            got = engine.resume_run(args.resume, token, placed=cfg if getattr(args, "run_config", None) else None)
        else:
            if args.command == "train" and not getattr(args, "run_config", None):  # a Jobs run's config is final
                cfg, applied = engine.with_recommendations(cfg, given_fields(args), token)
                for r in applied:  # as warnings are: what the page would show, one line each on stderr
                    print(f"ftui: recommended: {r.setting} {r.value}: {r.reason}", file=sys.stderr, flush=True)
            if getattr(args, "estimate", False) and not dist.enabled:
                print(json.dumps(estimate_line(engine.estimate_run(cfg, token, measure=True))), flush=True)
            got = engine.start_run(cfg, token)
        if not isinstance(got, Run):  # this process trains nothing else, so this cannot queue; say so if it ever does
            raise FtuiError("The run was queued behind another in this process.")
    except FtuiError as exc:
        dist.broadcast(None)  # the other ranks wait for a run: there is none
        print(json.dumps({"type": "error", "message": str(exc)}), flush=True)
        return 2
    run = got
    stop_on_signals(run, force_quit=not dist.enabled and not getattr(args, "run_config", None))
    for event in iter_events(run, timeout=7 * 24 * 3600):
        if event.get("type") == EventType.START.value and applied is not None:  # the start line says what was set
            event = {**event, **recommended_fields(run.config.train, applied)}
        print(json.dumps(event), flush=True)
        if event.get("type") == EventType.WARNING.value:  # what the page warns about, one line on stderr
            print(f"ftui: warning: {event.get('message', '')}", file=sys.stderr, flush=True)
    engine.join(60)
    print(json.dumps(end_line(run, applied)), flush=True)
    asked = bool(getattr(args, "run_config", None)) and linger_after_stop(run)  # a Jobs run the app stopped
    return 0 if run.status.value == "completed" or asked else 1


def stop_on_signals(run: Run, force_quit: bool) -> None:
    """Ctrl-C (SIGINT) and SIGTERM ask the run to stop at its next step, keeping a snapshot to resume from: the ending
    a Stop in the app has, and the only thing the handler does (no exception lands in the middle of the event loop).
    torchrun passes Ctrl-C and its own shutdown on as signals, and cancelling a Jobs run sends SIGTERM, so there every
    signal asks again; at a terminal (force_quit) a second Ctrl-C quits at once, as the first line says."""
    import os
    import signal

    def ask(signum: int, _frame: Any) -> None:
        if force_quit and run.stop_event.is_set() and signum == signal.SIGINT:
            os.write(2, b"ftui: quit before the run stopped (it shows as interrupted)\n")
            os._exit(130)
        if not run.stop_event.is_set() and force_quit:  # os.write: a handler must not re-enter sys.stderr's buffer
            os.write(2, b"ftui: stopping at the next step and keeping a snapshot (Ctrl-C again quits at once)\n")
        run.request_stop()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, ask)


def recommended_fields(train: TrainConfig, applied: list[Recommendation]) -> dict[str, Any]:
    """What a fresh run's start line adds: each setting the data's recommendations changed, with its reason, and
    whether they were turned off (--no-recommend)."""
    return {"recommended": [r.to_json() for r in applied], "recommend": train.recommend}


def _flags_config(args: argparse.Namespace, device: str = "", processes: int = 1, for_jobs: bool = False) -> RunConfig:
    """The RunConfig of `train`'s flags; for_jobs: the Jobs flavor's GPUs set the default batch size and processes."""
    from ftui.accel import default_batch_size
    from ftui.modeling import default_learning_rate

    if for_jobs:
        from ftui.jobs import Flavor

        gpus = Flavor(args.flavor or "cpu-basic", 0.0).gpus
        device, processes = ("cuda" if gpus else "cpu"), max(gpus, 1)
    model_cfg = model_config(args)
    return RunConfig(
        data=data_config(args),
        model=model_cfg,
        train=train_config(
            args,
            learning_rate=args.lr if args.lr is not None else default_learning_rate(model_cfg),
            batch_size=args.batch_size or default_batch_size(device),
            processes=processes,
        ),
    )


def estimate_line(got: Any) -> dict[str, Any]:
    """What `train --estimate` prints before the run starts (got: the engine's TimeEstimate)."""
    est = got.estimate
    return {"type": "estimate", "epoch_s": round(est.epoch_s, 1), "run_s": round(est.total_s, 1), "steps": est.steps,
            "epochs": round(est.epochs_reached, 3), "line": got.line, "warnings": list(got.warnings)}  # fmt: skip


def end_line(run: Run, recommended: list[Recommendation] | None = None) -> dict[str, Any]:
    """The last line `train` prints for a run (and `sweep` for each of its runs); `recommended`: the settings the
    data's recommendations changed (a fresh `train` run)."""
    return {
        "type": "end",
        "name": run.name,
        "status": run.status.value,
        "error": run.error,
        "run_dir": str(run.out_dir),
        **{k: v for k, v in run.result.items() if k != "best_eval"},
        **result_interval(run.result),  # the test accuracy's noise (ftui.significance)
        **({"swept": dict(run.config.sweep.point)} if run.config.sweep.sweep_id else {}),
        **({"pruned": True} if of_type(run.events(), EventType.PRUNED) else {}),
        "warnings": warnings_of(run.events()),
        **({"recommended": [f"{r.setting}={r.value}" for r in recommended]} if recommended is not None else {}),
    }


def _sweep_values(args: argparse.Namespace) -> tuple[tuple[str, str], ...] | str:
    """--grid/--range pairs as SweepConfig.values, or a message naming the malformed one."""
    pairs = []
    for flag, items in (("--grid", args.grid), ("--range", args.range)):
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                return f"{flag} {item!r} must look like KEY=VALUES (e.g. lr=1e-5,3e-5)"
            pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def _sweep_of(args: argparse.Namespace) -> Any:
    """The SweepConfig of `sweep`'s flags (or, inside a Jobs sweep, the one it was handed), or a message."""
    from ftui.jobs import sweep_from_json
    from ftui.sweeps import SweepConfig

    if getattr(args, "sweep_config", None):
        try:
            return sweep_from_json(args.sweep_config)
        except (ValueError, TypeError) as exc:
            return f"--sweep-config is not a sweep configuration: {exc}"
    values = _sweep_values(args)
    if isinstance(values, str):
        return values
    return SweepConfig(
        values=values, mode="random" if args.random else "grid", draws=args.random or 8, seed=args.sweep_seed,
        metric=args.metric, prune=args.prune, max_train_examples=args.max_train_examples,
        max_minutes=args.minutes_per_run,
    )  # fmt: skip


def sweep_command(engine: Any, base: RunConfig, args: argparse.Namespace) -> int:
    """`ftui sweep`: queue the points, wait for each, print its end line, then one summary line."""
    import os

    from ftui.errors import FtuiError
    from ftui.sweeps import best_run, shown_ranks, sweep_table

    sweep = _sweep_of(args)
    if isinstance(sweep, str):
        print(json.dumps({"type": "error", "message": sweep}), flush=True)
        return 2
    if getattr(args, "run_config", None):  # inside a Jobs sweep, the cancel's SIGTERM ends it as Ctrl-C does
        import signal

        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        items = engine.start_sweep(base, sweep, os.environ.get("HF_TOKEN"))
    except FtuiError as exc:
        print(json.dumps({"type": "error", "message": str(exc)}), flush=True)
        return 2
    sweep_id = items[0].sweep_id
    print(json.dumps({"type": "sweep", "sweep_id": sweep_id, "points": len(items)}), flush=True)
    printed: set[str] = set()
    try:
        while True:
            # The worker of each run starts the next queued one before it ends: joining it waits for both.
            engine.join(7 * 24 * 3600)
            for run in engine.runs():
                if run.config.sweep.sweep_id == sweep_id and run.status.finished and run.run_id not in printed:
                    printed.add(run.run_id)
                    line = end_line(run)
                    for warning in line.get("warnings", []):  # as `train` does: what the page warns about, on stderr
                        print(f"ftui: warning: {run.name}: {warning['message']}", file=sys.stderr, flush=True)
                    print(json.dumps(line), flush=True)
            current = engine.current_run()
            if len(printed) >= len(items) or (not engine.manager.waiting_here() and (current is None or current.status.finished)):
                break
    except KeyboardInterrupt:
        engine.clear_queue()
        engine.stop_run()
        engine.join(60)
    rows = sweep_table([r.to_json() for r in engine.runs()], sweep_id, args.metric)
    best = best_run(rows)
    counts = {s: sum(1 for r in rows if r["status"] == s) for s in ("completed", "pruned", "stopped", "failed")}
    summary = {"type": "sweep_end", "sweep_id": sweep_id, "points": len(items), **counts}
    if best:
        summary["best"] = {k: best[k] for k in ("name", "run_id", "swept", "val_score", "test_acc")}
        # runs within noise of the best on validation (shown as "1=" in the Sweeps tab): as good a pick, as far as n tells
        summary["tied_with_best"] = [r["name"] for r, rank in zip(rows, shown_ranks(rows), strict=True)
                                     if rank.endswith("=") and r is not best]  # fmt: skip
    print(json.dumps(summary), flush=True)
    return 0 if counts["completed"] else 1


if __name__ == "__main__":
    sys.exit(main())
