#!/usr/bin/env python3
"""ftui device check: one call of <= ~8 minutes on one GPU (written for an H200), no network.

Adapted from the reference kit in ../shared/gpu-kit (its verdicts now expect the fixes of issue 26: the cache stays on
under bf16, host and GPU stores agree, memory is freed before the test phase, a resume reproduces on CUDA).
Run through bench/gpu_check.sh (it installs the carried wheels and sets the environment). Each stage appends one JSON line
per check to OUT/results.jsonl and prints it; `--table` prints the summary table (the shell script calls it last).
Stages skip themselves when the deadline is near. `--device cpu` is a dry run with a tiny model (no GPU needed).

Verdicts: PASS (works as intended), FAIL (a defect shows), INFO (a measurement), SKIP, ERROR (the check itself broke:
traceback tail in the detail). The stages are in gpu_check_stages.py; this file holds the plumbing, the inputs, one
training run as the engine runs it (train_case), the table and the entry point.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import sys
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

ARGS: argparse.Namespace
RESULTS: Path
T_START = time.time()


# ------------------------------------------------------------------------------------------------------ plumbing
def left() -> float:
    return ARGS.deadline - time.time()


def record(stage: str, check: str, verdict: str, detail: str = "", **nums: Any) -> None:
    row = {"stage": stage, "check": check, "verdict": verdict, "detail": detail, **nums, "t": round(time.time() - T_START, 1)}
    with open(RESULTS, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
    print(f"[{row['t']:>6.1f}s] {verdict:<5} {stage}/{check}: {detail}", flush=True)


def stage(name: str, need_s: float, cpu_ok: bool = True):
    """Run a stage if the deadline allows; an exception becomes an ERROR row, never the end of the check."""

    def wrap(fn):
        def run(*a, **k):
            if ARGS.device == "cpu" and not cpu_ok:
                record(name, "-", "SKIP", "needs CUDA")
                return None
            if left() < need_s:
                record(name, "-", "SKIP", f"{left():.0f} s left, stage needs ~{need_s:.0f} s")
                return None
            t0 = time.time()
            print(f"\n===== {name} ({left():.0f} s left)", flush=True)
            try:
                return fn(*a, **k)
            except Exception as exc:  # noqa: BLE001
                tb = traceback.format_exc().strip().splitlines()
                record(name, "-", "ERROR", f"{type(exc).__name__}: {str(exc)[:300]} | {' | '.join(tb[-4:])[:600]}")
                return None
            finally:
                print(f"===== {name} took {time.time() - t0:.1f} s", flush=True)
                release()

        return run

    return wrap


def cuda() -> bool:
    return ARGS.device == "cuda"


def release() -> None:
    import torch

    gc.collect()
    if cuda():
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def mem_mb() -> float:
    import torch

    return torch.cuda.memory_allocated() / 2**20 if cuda() else 0.0


# ---------------------------------------------------------------------------------------------------- the inputs
SIZES = {
    # model config, train/val/test rows, tokens, batch, steps, rows for the freeze runs
    "cuda": dict(
        model={},
        n=(12000, 1000, 1000),
        max_len=256,
        batch=64,
        steps=120,
        freeze_rows=3000,
        race_rows=1000,
        depth=5,
        tiny=dict(dim=256, n_layers=4, n_heads=4, hidden_dim=1024),
    ),
    "cpu": dict(  # the dry run: plumbing only, small enough for a few minutes on 2 shared cores
        model=dict(dim=32, n_layers=4, n_heads=2, hidden_dim=64),
        n=(256, 64, 64),
        max_len=32,
        batch=16,
        steps=6,
        freeze_rows=128,
        race_rows=64,
        depth=3,
        tiny=dict(dim=32, n_layers=2, n_heads=2, hidden_dim=64),
    ),
}


def make_data(work: Path, n: tuple[int, int, int], seed: int = 0) -> Path:
    """Review-like data with a learnable signal: sentences of the bundled demo reviews of the row's label (plus a few of
    the other label and filler words), IMDB-like spread of lengths, 3% label noise. Parquet train/validation/test."""
    import numpy as np
    import pandas as pd

    demo = pd.read_csv(Path(ARGS.src) / "assets" / "demo_reviews.csv")
    by_label = {lab: demo.loc[demo["label"] == lab, "text"].astype(str).tolist() for lab in ("negative", "positive")}
    vocab = [w.strip() for w in (Path(ARGS.kit) / "tok" / "vocab.txt").read_text().splitlines()]
    filler = np.array([w for w in vocab if w.isalpha() and w.isascii() and len(w) >= 3])
    rng = np.random.default_rng(seed)
    out = work / "data"
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in zip(("train", "validation", "test"), n, strict=True):
        texts, labels = [], []
        for _ in range(rows):
            lab = ("negative", "positive")[int(rng.integers(2))]
            other = "positive" if lab == "negative" else "negative"
            k = int(np.clip(rng.lognormal(math.log(6), 0.8), 1, 60))  # sentences: ~6 median (~70 words), tail past 512 tokens
            parts = []
            for _ in range(k):
                pool = by_label[other] if rng.random() < 0.15 else by_label[lab]
                parts.append(pool[int(rng.integers(len(pool)))])
                if rng.random() < 0.5:
                    parts.append(" ".join(filler[rng.integers(0, len(filler), size=int(rng.integers(3, 15)))]) + ".")
            if rng.random() < 0.03:
                lab = other
            texts.append(" ".join(parts))
            labels.append(lab)
        pd.DataFrame({"text": texts, "label": labels}).to_parquet(out / f"{split}.parquet")
    return out


def make_model(work: Path, name: str, overrides: dict[str, Any]) -> Path:
    """A random-weight DistilBERT (library defaults = 66 M parameters unless overridden) with the carried tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    path = work / name
    torch.manual_seed(0)
    AutoModel.from_config(AutoConfig.for_model("distilbert", **overrides)).save_pretrained(path)
    AutoTokenizer.from_pretrained(Path(ARGS.kit) / "tok").save_pretrained(path)
    return path


_BUNDLES: dict[int, Any] = {}
_TOKCACHE: Any = None


def bundle_for(rows: int) -> Any:
    from ftui.config import DataConfig
    from ftui.data import load_data

    if rows not in _BUNDLES:
        _BUNDLES[rows] = load_data(DataConfig(source="local", dataset_id=str(DATA), max_train_examples=rows))
    return _BUNDLES[rows]


# ----------------------------------------------------------------------------------------------- instrumentation
class SyncCounter:
    """Host-device synchronisations (torch.cuda.set_sync_debug_mode('warn')), counted by the Python line that caused
    them; paused around evaluation and checkpoint saving so a step's count is the step's own."""

    def __init__(self) -> None:
        self.by_loc: Counter[str] = Counter()
        self.per_step: list[int] = []
        self.pending = 0  # counted before an evaluation paused the counter: belongs to the step in progress

    def __enter__(self) -> SyncCounter:
        self._cm = warnings.catch_warnings(record=True)
        self._rec = self._cm.__enter__()
        warnings.simplefilter("always")
        self.mode("warn")
        return self

    @staticmethod
    def mode(m: Any) -> None:
        import torch

        if cuda():  # on CPU (dry run) nothing synchronises: the plumbing runs, the counts stay 0
            torch.cuda.set_sync_debug_mode(m)

    def drain(self) -> int:
        """Syncs recorded since the last drain; their source lines are tallied once the first step is done (the first
        drain also holds the set-up: loading the model, the first evaluation's absence, ...)."""
        n = 0
        for w in self._rec:
            if "synchroniz" in str(w.message):
                parts = Path(w.filename).parts
                short = (
                    "/".join(parts[-2:])
                    if "site-packages" not in parts
                    else "/".join(parts[parts.index("site-packages") + 1 :][-2:])
                )
                if self.per_step:
                    self.by_loc[f"{short}:{w.lineno}"] += 1
                n += 1
        self._rec.clear()
        return n

    def __exit__(self, *exc: Any) -> None:
        self.mode(0)
        self._cm.__exit__(*exc)


@contextlib.contextmanager
def patched(obj: Any, name: str, new: Any):
    old = getattr(obj, name)
    setattr(obj, name, new)
    try:
        yield old
    finally:
        setattr(obj, name, old)


def train_case(
    name: str,
    *,
    precision: str = "auto",
    batch: int | None = None,
    max_len: int | None = None,
    max_steps: int = 0,
    epochs: float = 1.0,
    freeze: int = 0,
    cache: bool = True,
    rows: int = 0,
    model: Path | None = None,
    lr: float = 1e-4,
    evals_per_epoch: int = 1,
    stop_at_step: int | None = None,
    syncs: SyncCounter | None = None,
    out_dir: Path | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """One fine-tuning run through ftui.finetune.train_run (the engine's worker body), in this process and thread.
    Returns the run's outcome plus: GPU memory before/after, memory at the test phase and what gc.collect() freed
    there, epoch times, notices."""
    import torch

    import ftui.finetune as T
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.runs import Run

    sz = SIZES[ARGS.device]
    cfg = RunConfig(
        DataConfig(source="local", dataset_id=str(DATA), max_train_examples=rows),
        ModelConfig(source="local", checkpoint=str(model or MODEL), freeze_depth=freeze),
        TrainConfig(
            learning_rate=lr,
            batch_size=batch or sz["batch"],
            epochs=epochs,
            max_length=max_len or sz["max_len"],
            precision=precision,
            max_steps=max_steps,
            frozen_cache=cache,
            evals_per_epoch=evals_per_epoch,
            seed=0,
            warmup_ratio=0.06,
        ),
    )
    out_dir = out_dir or WORK / "runs" / name
    run = Run(f"gc-{name}", name, cfg, out_dir)
    info: dict[str, Any] = {}
    if stop_at_step is not None:

        def stopper(ev: Any) -> None:
            if isinstance(ev, dict) and ev.get("type") == "train" and ev.get("step", 0) >= stop_at_step:
                run.request_stop()

        run.listeners = [stopper]
    orig_load = T.load_classifier

    def load(*a: Any, **k: Any) -> Any:  # the test phase starts here: what is still allocated, and what only a gc frees
        if cuda():
            torch.cuda.synchronize()
            info["mem_at_test_mb"] = round(mem_mb(), 1)
            gc.collect()
            info["freed_by_gc_at_test_mb"] = round(info["mem_at_test_mb"] - mem_mb(), 1)
        return orig_load(*a, **k)

    step_hooks = contextlib.ExitStack()
    if syncs is not None:
        orig_opt, orig_eval, orig_snap = T.TrainingCore._optimizer_step, T.TrainingCore._evaluate, T.TrainingCore.save_snapshot

        def opt_step(self: Any) -> None:
            orig_opt(self)
            syncs.per_step.append(syncs.drain() + syncs.pending)
            syncs.pending = 0

        def quiet(fn: Any) -> Any:
            def inner(self: Any, *a: Any, **k: Any) -> Any:
                syncs.pending += syncs.drain()
                syncs.mode(0)
                try:
                    return fn(self, *a, **k)
                finally:
                    syncs._rec.clear()
                    syncs.mode("warn")

            return inner

        step_hooks.enter_context(patched(T.TrainingCore, "_optimizer_step", opt_step))
        step_hooks.enter_context(patched(T.TrainingCore, "_evaluate", quiet(orig_eval)))
        step_hooks.enter_context(patched(T.TrainingCore, "save_snapshot", quiet(orig_snap)))
    bundle = bundle_for(rows)
    release()
    before = mem_mb()
    if cuda():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    with patched(T, "load_classifier", load), step_hooks:
        T.train_run(run, lambda: bundle, token_cache=_TOKCACHE, resume=resume)
    wall = time.time() - t0
    after = mem_mb()  # run_worker's finally already ran gc.collect() and empty_cache()
    r = dict(run.result)
    ev = run.events()
    progress = run.snapshot().progress
    epochs_s = [e["train_seconds"] for e in ev if e["type"] == "epoch"]
    spe = next((e["steps_per_epoch"] for e in ev if e["type"] == "start"), None)
    losses = [(e["step"], e["loss"]) for e in ev if e["type"] == "train"]
    notices = [e["message"] for e in ev if e["type"] == "notice"] + list(progress.notices)
    out = {
        "name": name,
        "status": run.status.value,
        "error": (run.error or "")[:300],
        "wall_s": round(wall, 1),
        "device": r.get("device"),
        "steps": r.get("steps", progress.step),
        "spe": spe,
        "samples_per_s": round(r["train_samples"] / r["train_loop_seconds"], 1) if r.get("train_loop_seconds") else None,
        "peak_mb": r.get("peak_memory_mb"),
        "test_acc": r.get("test_accuracy"),
        "epochs_s": epochs_s,
        "loss_first": losses[0][1] if losses else None,
        "loss_last": losses[-1][1] if losses else None,
        "losses": losses,
        "notices": sorted(set(notices)),
        "cache_mb": progress.prefix_cache_mb,
        "mem_before_mb": round(before, 1),
        "mem_after_mb": round(after, 1),
        "result": {k: v for k, v in r.items() if k != "best_eval"},
        "run": run,
        **info,
    }
    print(
        f"   {name}: {out['status']} steps={out['steps']} sps={out['samples_per_s']} peak={out['peak_mb']} "
        f"epochs_s={epochs_s} loss {out['loss_first']}->{out['loss_last']} acc={out['test_acc']} "
        f"cache_mb={out['cache_mb']} mem {before:.0f}->{after:.0f} MB {info} notices={out['notices']} err={out['error']}",
        flush=True,
    )
    return out


def cache_off(res: dict[str, Any]) -> str | None:
    return next((n for n in res["notices"] if "frozen-layer cache was switched off" in n), None)


# --------------------------------------------------------------------------------------------------------- table
def table(out: Path) -> None:
    path = out / "results.jsonl"
    rows = [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []
    env = next((r for r in rows if r["check"] == "versions"), {})
    print("\n" + "=" * 118)
    head = {k: env.get(k) for k in ("gpu", "torch", "cuda", "transformers", "datasets", "huggingface_hub", "pyarrow")}
    print(
        "ftui device check  " + "  ".join(f"{k}={v}" for k, v in head.items() if v) + f"  ({rows[-1]['t'] if rows else 0:.0f} s)"
    )
    print("-" * 118)
    print(f"{'verdict':<7} {'stage':<16} {'check':<40} detail")
    for r in rows:
        if r["check"] == "versions":
            continue
        detail = r["detail"].replace("\n", " ")
        print(f"{r['verdict']:<7} {r['stage'][:16]:<16} {r['check'][:40]:<40} {detail[:240]}")
    counts = Counter(r["verdict"] for r in rows)
    print("-" * 118)
    print("totals: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


# ---------------------------------------------------------------------------------------------------------- main
def main() -> None:
    global ARGS, RESULTS, DATA, MODEL, TINY, WORK, _TOKCACHE
    p = argparse.ArgumentParser()
    p.add_argument("--kit", default=str(Path(__file__).resolve().parent))
    p.add_argument("--src", default=os.getcwd())
    p.add_argument("--work", default="/tmp/ftui-gpu-check")
    p.add_argument("--out", default=os.environ.get("OUT") or str(Path(__file__).resolve().parent / "out"))
    p.add_argument("--deadline", type=float, default=time.time() + 450)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--stages", default="env,gpu-tests,cli,predict,precision,freeze,host-cache race,stop,oom,bench,syncs,resume")
    p.add_argument("--git", default="")
    p.add_argument("--table", action="store_true")
    ARGS = p.parse_args()
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    if ARGS.table:
        table(out)
        return
    RESULTS = out / "results.jsonl"
    RESULTS.unlink(missing_ok=True)
    if ARGS.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    sys.path.insert(0, ARGS.src)
    import torch

    if ARGS.device == "cuda" and not torch.cuda.is_available():
        record("env", "cuda", "FAIL", "torch sees no GPU (use --device cpu for a dry run)")
        return
    if ARGS.device == "cpu":
        torch.set_num_threads(min(4, os.cpu_count() or 1))
    WORK = Path(ARGS.work)
    WORK.mkdir(parents=True, exist_ok=True)
    from ftui.batching import TokenCache

    _TOKCACHE = TokenCache(capacity=4)
    sz = SIZES[ARGS.device]
    t0 = time.time()
    DATA = make_data(WORK, sz["n"])
    MODEL = make_model(WORK, "distilbert-random", sz["model"])
    TINY = make_model(WORK, "distilbert-tiny", sz["tiny"])
    print(f"inputs ready in {time.time() - t0:.1f} s: {DATA}, {MODEL}, {TINY}", flush=True)
    want = [s.strip() for s in ARGS.stages.split(",")]
    sys.modules.setdefault("gpu_check", sys.modules[__name__])  # the stages read this run's globals, not a second copy
    import gpu_check_stages as S

    end = None
    if "env" in want:
        S.s_env()
    if "gpu-tests" in want:  # early: the standing assertions run before the measurements use up the budget
        S.s_gpu_tests()
    if "cli" in want:
        end = S.s_cli()
    if "predict" in want:
        S.s_predict(end)
    for name, fn in (
        ("precision", S.s_precision),
        ("freeze", S.s_freeze),
        ("host-cache race", S.s_host_race),
        ("stop", S.s_stop),
        ("oom", S.s_oom),
        ("bench", S.s_bench),
        ("syncs", S.s_syncs),
        ("resume", S.s_resume),
    ):
        if name in want:
            fn()


if __name__ == "__main__":
    main()
