"""Start-up and Runs-tab time against the number of runs in the folder, local disk (SQLite WAL) beside network
storage (a rollback journal, as on a Space's bucket) and, where bindfs can mount one here, network storage on a FUSE
mount. Each cell is a fresh process: open the engine on a folder of N finished runs (each with its curve), list
the runs table. Prints one JSON line per cell and a summary line with the ratios against local disk.

    python bench/startup.py --runs 0 50 500 --events 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT  # first: sets the environment (offline, tokenizers), makes ftui importable

CELL = """
import sys, time, json
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
from pathlib import Path
from ftui.engine import Engine
from ftui.experiments import runs_frame
from ftui.hub import HubStatus
from ftui.settings import Settings
t1 = time.perf_counter()
eng = Engine(runs_dir=Path({runs!r}), hub_status=HubStatus(False, "offline"), settings=Settings(network_storage={network}))
t2 = time.perf_counter()
frame = runs_frame(eng.run_headers())
t3 = time.perf_counter()
print(json.dumps({{"imports_s": round(t1 - t0, 3), "engine_s": round(t2 - t1, 3), "runs_table_s": round(t3 - t2, 3),
                  "rows": len(frame)}}))
"""


def make_runs(folder: Path, n: int, events: int, network: bool) -> None:
    """N completed runs, each with a train/eval curve of `events` events and a test event, written in bulk."""
    from ftui.config import RunConfig
    from ftui.rows import RunRow, RunStatus
    from ftui.store import Store

    store = Store(folder, network=network)
    cfg = RunConfig().to_dict()
    for i in range(n):
        run_id = f"20261129-{i:06d}-bench0"
        (folder / run_id).mkdir(parents=True, exist_ok=True)
        store.save_run(RunRow(run_id=run_id, name=f"bench-{i}", status=RunStatus.COMPLETED, config=cfg, started_at=1e9 + i,
                              ended_at=1e9 + i + 60, out_dir=str(folder / run_id), label_names=("negative", "positive"),
                              result={"test_accuracy": 0.8, "test_macro_f1": 0.79,
                                      "best_eval": {"accuracy": 0.81, "loss": 0.4}}))  # fmt: skip
        curve = [{"type": "train" if k % 3 else "eval", "step": k, "loss": 1.0 / (k + 1), "eval_loss": 0.5, "eval_accuracy": 0.8}
                 for k in range(events)]  # fmt: skip
        store.replace_events(run_id, [*curve, {"type": "test", "step": events, "test_accuracy": 0.8}])
    store.close()


def cell(folder: Path, network: bool) -> dict[str, float]:
    code = CELL.format(root=str(ROOT), runs=str(folder), network=network)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, nargs="+", default=[0, 50, 500])
    ap.add_argument("--events", type=int, default=60, help="events per run (its curve)")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ftui-startup-"))
    fuse = None
    if shutil.which("bindfs"):
        (base / "bucket").mkdir()
        (base / "mnt").mkdir()
        if subprocess.run(["bindfs", str(base / "bucket"), str(base / "mnt")], capture_output=True).returncode == 0:
            fuse = base / "mnt"
    wheres = {"local (WAL)": (base / "local", False), "network mode, local disk": (base / "net", True)}
    if fuse is not None:
        wheres["network mode, FUSE mount"] = (fuse / "runs", True)
    rows = []
    try:
        for n in args.runs:
            for name, (root, network) in wheres.items():
                folder = root / f"n{n}"
                t = time.perf_counter()
                make_runs(folder, n, args.events, network)
                made = time.perf_counter() - t
                got = cell(folder, network)
                row = {"runs": n, "where": name, **got, "made_s": round(made, 2)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if fuse is not None:
            subprocess.run(["fusermount", "-u", str(fuse)], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)
    local = {r["runs"]: r for r in rows if r["where"] == "local (WAL)"}
    ratios = [{"runs": r["runs"], "where": r["where"],
               "engine_vs_local": round(r["engine_s"] / max(local[r["runs"]]["engine_s"], 1e-9), 2),
               "table_vs_local": round(r["runs_table_s"] / max(local[r["runs"]]["runs_table_s"], 1e-9), 2)}
              for r in rows if r["where"] != "local (WAL)"]  # fmt: skip
    print(json.dumps({"summary": rows, "ratios": ratios}))


if __name__ == "__main__":
    main()
