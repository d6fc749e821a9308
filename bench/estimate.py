"""Time estimate against the real run: for each config, Estimate time (a few timed steps) then train it through the
engine, and compare the first epoch (its evaluations included) and the run (Start to the end) with the estimate.

    python bench/estimate.py --data ../shared/data/rotten_tomatoes --train-examples 2000

Configs: the bundled demo with the Train tab's defaults; then, on --data, one epoch with the defaults, two epochs at
freeze depth 3 (frozen-layer cache) and max length 64, and three epochs under a 2-minute time limit. Prints one JSON
line per config, then a Markdown table with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import replace
from typing import Any

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def configs(data: str | None, examples: int, default: TrainConfig) -> list[tuple[str, RunConfig]]:
    """(label, config) pairs: the demo, then the given data's three configs."""
    out = [("demo, defaults (3 epochs)", RunConfig(DataConfig(), ModelConfig(), default))]
    if data:
        d = DataConfig(source="local", dataset_id=data, max_train_examples=examples)
        out += [
            (f"{examples} texts, 1 epoch", RunConfig(d, ModelConfig(), replace(default, epochs=1.0))),
            (f"{examples} texts, depth 3 cached, 2 epochs, max length 64",
             RunConfig(d, ModelConfig(freeze_depth=3), replace(default, epochs=2.0, max_length=64))),
            (f"{examples} texts, 3 epochs, 2-minute limit", RunConfig(d, ModelConfig(), replace(default, max_minutes=2.0))),
        ]  # fmt: skip
    return out


def measure(engine: Any, label: str, cfg: RunConfig) -> dict[str, Any]:
    """Estimate, train, compare."""
    t0 = time.perf_counter()
    got = engine.estimate_run(cfg, measure=True)
    timing_s = time.perf_counter() - t0
    est = got.estimate
    t0 = time.perf_counter()
    run = engine.start_run(cfg)
    run.done.wait(24 * 3600)
    wall = time.perf_counter() - t0
    engine.join(60)
    events = run.snapshot().events
    start = next(e["time"] for e in events if e["type"] == "start")
    first = next((e for e in events if e["type"] == "epoch"), None)  # logged after the epoch's last evaluation
    first_epoch = first["time"] - start if first is not None else None
    return {
        "config": label,
        "status": run.status.value,
        "timing_s": round(timing_s, 1),
        "line": got.line,
        "warnings": list(got.warnings),
        "epoch_est_s": round(est.epoch_s, 1),
        "epoch_s": round(first_epoch, 1) if first_epoch is not None else None,
        "run_est_s": round(est.total_s, 1),
        "run_s": round(wall, 1),
        "ratio": round(wall / est.total_s, 2),
        "epochs_est": round(est.epochs_reached, 2),
        "epochs": run.result.get("epoch") if run.result else None,
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="a folder with train/validation/test files (e.g. ../shared/data/rotten_tomatoes)")
    p.add_argument("--train-examples", type=int, default=2000)
    p.add_argument("--only", type=int, nargs="*", help="the configs to run, by position (0 = the demo)")
    a = p.parse_args(argv)
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    engine = Engine(runs_dir=tempfile.mkdtemp(prefix="ftui-estimate-"), hub_status=HubStatus(False, "bench"))
    load_before = os.getloadavg()
    rows = []
    for i, (label, cfg) in enumerate(configs(a.data, a.train_examples, engine.default_train())):
        if a.only and i not in a.only:
            continue
        row = measure(engine, label, cfg)
        print(json.dumps(row), flush=True)
        rows.append(row)
    load_after = os.getloadavg()
    print(f"\nload average before {load_before[0]:.1f} / {load_before[1]:.1f} / {load_before[2]:.1f}, "
          f"after {load_after[0]:.1f} / {load_after[1]:.1f} / {load_after[2]:.1f}; {os.cpu_count()} cores\n")  # fmt: skip
    print("| config | first epoch: estimated / measured | run: estimated / measured | measured / estimated |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['config']} | {r['epoch_est_s']} s / {r['epoch_s']} s | {r['run_est_s']} s / {r['run_s']} s | "
              f"{r['ratio']} |")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
