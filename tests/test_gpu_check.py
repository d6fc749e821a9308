"""The device check's CPU dry run (bench/gpu_check.sh --device cpu): its plumbing runs in CI, so it cannot rot before
a GPU is at hand."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
KIT_HERE, KIT_SHARED = REPO / ".gpucheck" / "tok", REPO.parent / "shared" / "gpu-kit" / "tok"
BUDGET_S = 420  # the stages' own deadline; the dry run took 185-269 s on this project's 2-core CPU machine
STAGES = {"env", "cli", "predict", "precision", "freeze", "host-cache race", "stop", "oom", "bench", "syncs", "resume"}


@pytest.mark.slow
@pytest.mark.skipif(not (KIT_HERE.is_dir() or KIT_SHARED.is_dir()), reason="no device-check kit (../shared/gpu-kit)")
def test_the_device_check_dry_run_prints_one_table_last_with_no_errors(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_BUDGET_S": str(BUDGET_S),
           "GPU_CHECK_WORK": str(tmp_path / "work"), "OUT": str(tmp_path / "out")}  # fmt: skip
    proc = subprocess.run(["bash", "bench/gpu_check.sh", "--device", "cpu"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=BUDGET_S + 120)  # fmt: skip
    table = (tmp_path / "out" / "table.txt").read_text()
    assert proc.stdout.rstrip().endswith(table.rstrip()), proc.stdout[-2000:]  # the table is the last thing printed
    rows = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    errors = [r for r in rows if r["verdict"] in ("ERROR", "FAIL")]
    assert errors == [], errors
    assert {r["stage"] for r in rows if r["verdict"] != "SKIP"} >= STAGES, table  # every stage ran within the budget
    # tests/test_gpu.py ran under pytest with the check's PYTHONPATH: one row, every test skipped without CUDA
    ((verdict, detail),) = [(r["verdict"], r["detail"]) for r in rows if r["stage"] == "gpu-tests"]
    assert verdict == "SKIP" and detail.startswith("all ") and detail.endswith(" skipped (no CUDA)"), detail
    assert "totals:" in table and "ERROR" not in table.split("totals:")[1]
