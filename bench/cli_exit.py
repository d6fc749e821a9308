"""How long `python -m ftui train` takes to end after its last line, with and without freezing the garbage collector's
objects first (what ftui/__main__.py does), side by side in one run.

    python bench/cli_exit.py --repeats 3

Each repeat trains the bundled demo for one epoch with the packaged MiniLM (max length 32, one process), once as
ftui/__main__.py does and once without `gc.freeze()`, alternating so both see the same load. The time measured runs
from the line the process prints after `main()` returned to the moment the process has ended (interpreter shutdown).
Prints one JSON line per process, then a Markdown table with the medians, their ratio and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# __main__ without its faulthandler line: main(), the marker line, then gc.freeze() or not, then exit
CHILD = """
import gc, sys, time
from ftui.cli import main
code = main(sys.argv[1:])
if {freeze}:
    gc.freeze()
print("MAIN_RETURNED", time.time(), file=sys.stderr, flush=True)
sys.exit(code)
"""


def one(freeze: bool, runs_dir: Path) -> float:
    """Seconds from main()'s return to the process's end."""
    args = ["train", "--dataset", "demo", "--epochs", "1", "--max-length", "32", "--runs-dir", str(runs_dir), "--offline",
            "--no-auto-baseline"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD.format(freeze=freeze), *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    returned = None
    for line in proc.stderr:  # type: ignore[union-attr]
        if line.startswith("MAIN_RETURNED"):
            returned = float(line.split()[1])
    proc.wait()
    ended = time.time()
    if returned is None or proc.returncode != 0:
        raise SystemExit(f"the CLI failed (exit {proc.returncode})")
    return ended - returned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    times: dict[bool, list[float]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for freeze in (False, True):
                took = one(freeze, Path(tmp) / f"runs-{i}-{freeze}")
                times[freeze].append(took)
                print(json.dumps({"repeat": i, "gc_freeze": freeze, "exit_s": round(took, 2)}), flush=True)
    load_after = os.getloadavg()
    plain, frozen = statistics.median(times[False]), statistics.median(times[True])
    print(f"\n| exit after main() returned | median of {args.repeats} | all |")
    print("| --- | --- | --- |")
    print(f"| plain interpreter shutdown | {plain:.2f} s | {', '.join(f'{t:.2f}' for t in times[False])} |")
    print(f"| gc.freeze() first (ftui/__main__.py) | {frozen:.2f} s | {', '.join(f'{t:.2f}' for t in times[True])} |")
    print(f"\nratio plain / frozen: {plain / max(frozen, 1e-3):.1f}x; load average before "
          f"{' / '.join(f'{x:.1f}' for x in load_before)}, after {' / '.join(f'{x:.1f}' for x in load_after)}")  # fmt: skip


if __name__ == "__main__":
    main()
