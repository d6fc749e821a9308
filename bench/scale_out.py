"""One run, 1 process vs N data-parallel processes (torchrun, DDP; gloo on CPU, NCCL on GPUs), same global batch.

Each configuration is the real CLI (`python -m ftui train`, under `torchrun --standalone --nproc_per_node N` for N > 1)
on the same data, checkpoint and settings, in a fresh runs folder; the wall time covers the whole command (start-up,
loading, tokenizing, training, evaluation, test). The last line is JSON: per process count the wall time, the training
loop's time and speed, test accuracy, and the ratios to 1 process.

    python bench/scale_out.py --data ../shared/data/rotten_tomatoes --train 2000 --processes 1 2

On CPU, torchrun gives each process one thread (OMP_NUM_THREADS=1) while one process alone uses every core, so
N processes on N cores compare N single-threaded ranks with one N-threaded process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common
import torch


def train_once(processes: int, args: argparse.Namespace, runs: Path) -> dict[str, Any]:
    """One run of the CLI; its end line plus the wall time."""
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"] if processes > 1 else []
    cmd = [
        sys.executable, *launcher, "-m", "ftui", "train", "--dataset", args.data, "--checkpoint", args.checkpoint,
        "--max-train-examples", str(args.train), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
        "--max-length", str(args.max_length), "--lr", str(args.lr), "--evals-per-epoch", "1", "--runs-dir", str(runs),
        "--offline",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(common.ROOT), "TOKENIZERS_PARALLELISM": "false"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    lines = [json.loads(x) for x in done.stdout.splitlines() if x.startswith("{")]
    end = lines[-1] if lines else {"status": "failed", "error": done.stderr[-800:]}
    return {
        "processes": processes,
        "status": end.get("status"),
        "error": end.get("error"),
        "wall_s": round(wall, 1),
        "train_loop_s": end.get("train_loop_seconds"),
        "samples_per_s": round(end["train_samples"] / end["train_loop_seconds"], 1) if end.get("train_loop_seconds") else None,
        "steps": end.get("steps"),
        "test_accuracy": end.get("test_accuracy"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="a dataset ftui reads: a folder of train/validation/test files")
    p.add_argument("--checkpoint", default="packaged")
    p.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    p.add_argument("--train", type=int, default=2000, help="train rows (stratified cap)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=32, help="the global batch (split between the processes)")
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--timeout", type=int, default=3600)
    args = p.parse_args(argv)
    rows = []
    for n in args.processes:
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(train_once(n, args, Path(tmp) / "runs"))
        print(json.dumps(rows[-1]), flush=True)
    base = next((r for r in rows if r["processes"] == 1 and r["status"] == "completed"), None)
    ratios = []
    for r in rows:
        if base is None or r is base or r["status"] != "completed":
            continue
        ratios.append({
            "processes": r["processes"],
            "wall_speedup": round(base["wall_s"] / r["wall_s"], 2),
            "train_loop_speedup": round(base["train_loop_s"] / r["train_loop_s"], 2),
            "test_accuracy_delta": round(r["test_accuracy"] - base["test_accuracy"], 4),
        })  # fmt: skip
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores, {platform.machine()})"
    out = {"device": device, "train_rows": args.train, "global_batch": args.batch_size, "runs": rows, "ratios": ratios}
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
