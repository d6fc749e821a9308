#!/usr/bin/env python3
"""ftui device check: one call of <= ~8 minutes on one GPU (written for an H200), no network.

Adapted from the reference kit in ../shared/gpu-kit (its verdicts now expect the fixes of issue 26: the cache stays on
under bf16, host and GPU stores agree, memory is freed before the test phase, a resume reproduces on CUDA).
Run through bench/gpu_check.sh (it installs the carried wheels and sets the environment). Each stage appends one JSON line
per check to OUT/results.jsonl and prints it; `--table` prints the summary table (the shell script calls it last).
Stages skip themselves when the deadline is near. `--device cpu` is a dry run with a tiny model (no GPU needed).

Verdicts: PASS (works as intended), FAIL (a defect shows), BUG? (a suspected defect did NOT show: read the numbers),
INFO (a measurement), SKIP, ERROR (the check itself broke: traceback tail in the detail).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import math
import os
import subprocess
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


LOSS_TOL = 0.1  # |final training loss (bf16 or fp16) - fp32's| after the same steps on the same batches

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
    """One fine-tuning run through ftui.training.train_run (the engine's worker body), in this process and thread.
    Returns the run's outcome plus: GPU memory before/after, memory at the test phase and what gc.collect() freed
    there, epoch times, notices."""
    import torch

    import ftui.training as T
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
    notices = [e["message"] for e in ev if e["type"] == "notice"] + list(progress.get("notices", []))
    out = {
        "name": name,
        "status": run.status.value,
        "error": (run.error or "")[:300],
        "wall_s": round(wall, 1),
        "device": r.get("device"),
        "steps": r.get("steps", progress.get("step")),
        "spe": spe,
        "samples_per_s": round(r["train_samples"] / r["train_loop_seconds"], 1) if r.get("train_loop_seconds") else None,
        "peak_mb": r.get("peak_memory_mb"),
        "test_acc": r.get("test_accuracy"),
        "epochs_s": epochs_s,
        "loss_first": losses[0][1] if losses else None,
        "loss_last": losses[-1][1] if losses else None,
        "losses": losses,
        "notices": sorted(set(notices)),
        "cache_mb": progress.get("prefix_cache_mb"),
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


# ------------------------------------------------------------------------------------------------------- stages
@stage("env", 5)
def s_env() -> None:
    import importlib.util

    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__}
    for m in ("transformers", "datasets", "huggingface_hub", "pyarrow", "accelerate", "captum", "onnxruntime", "tokenizers"):
        try:
            info[m] = __import__(m).__version__
        except Exception as exc:  # noqa: BLE001
            info[m] = f"missing ({type(exc).__name__})"
    if cuda():
        p = torch.cuda.get_device_properties(0)
        info.update(
            gpu=p.name, gpu_gb=round(p.total_memory / 2**30, 1), bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda
        )
    absent = [m for m in ("gradio", "plotly", "evaluate") if importlib.util.find_spec(m) is None]
    record("env", "versions", "INFO", json.dumps(info), **info)
    record("env", "ftui source", "INFO", f"{ARGS.src} (git {ARGS.git or '?'})")
    code = (
        "import sys, ftui.cli, ftui.engine, ftui.training, ftui.serving; "
        "print([m for m in ('gradio', 'plotly', 'evaluate', 'captum') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ARGS.src)
    loaded = proc.stdout.strip() or f"import failed: {proc.stderr[-300:]}"
    bad = proc.returncode != 0 or "gradio" in loaded or "plotly" in loaded
    record(
        "env",
        "CLI/engine imports w/o UI deps",
        "FAIL" if bad else "PASS",
        f"not installed here: {absent or 'none'}; UI/optional modules imported by ftui.cli+engine+training+serving: {loaded}",
    )


@stage("cli", 60)
def s_cli() -> dict[str, Any] | None:
    """`python -m ftui train` end to end (a fresh process, no gradio), precision auto, then its JSON lines."""
    sz = SIZES[ARGS.device]
    runs = WORK / "runs_cli"
    cmd = [sys.executable, "-m", "ftui", "train", "--dataset", str(DATA), "--checkpoint", str(MODEL),
           "--max-train-examples", str(sz["n"][0] * 2 // 3), "--epochs", "1", "--batch-size", str(sz["batch"]),
           "--max-length", str(sz["max_len"]), "--evals-per-epoch", "2", "--lr", "1e-4", "--offline",
           "--runs-dir", str(runs), "--run-name", "cli-auto"]  # fmt: skip
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, min(150, left() - 200)), cwd=ARGS.src)
    except subprocess.TimeoutExpired as exc:
        record(
            "cli",
            "python -m ftui train",
            "FAIL",
            f"timed out after {time.time() - t0:.0f} s; stdout tail: {(exc.stdout or b'')[-300:]!r}",
        )
        return None
    lines = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    end = next((x for x in lines if x.get("type") == "end"), None)
    notices = [x["message"] for x in lines if x.get("type") == "notice"]
    if end is None:
        record("cli", "python -m ftui train", "FAIL", f"exit {proc.returncode}; stderr: {proc.stderr[-600:]}")
        return None
    sps = round(end["train_samples"] / end["train_loop_seconds"], 1) if end.get("train_loop_seconds") else None
    ok = end["status"] == "completed" and end.get("device") == ARGS.device
    record(
        "cli",
        "python -m ftui train (auto precision)",
        "PASS" if ok else "FAIL",
        f"status={end['status']} device={end.get('device')} {sps} samples/s, peak {end.get('peak_memory_mb')} MB, "
        f"test acc {end.get('test_accuracy')}, wall {time.time() - t0:.0f} s; notices={notices or 'none'}; "
        f"error={end.get('error')}",
        samples_per_s=sps,
        peak_mb=end.get("peak_memory_mb"),
    )
    return end


@stage("predict", 25)
def s_predict(end: dict[str, Any] | None) -> None:
    """Predict/base/explain through the engine's PredictionService on the CLI run (device = the engine's), and the
    same model on CPU for comparison."""
    import threading as th

    import pandas as pd
    import torch

    from ftui.engine import Engine
    from ftui.hub import HubStatus
    from ftui.modeling import load_classifier
    from ftui.predict import TransformerScorer

    if not end or end.get("status") != "completed":
        record("predict", "-", "SKIP", "no completed CLI run to predict with")
        return
    eng = Engine(runs_dir=WORK / "runs_cli", hub_status=HubStatus(False, "offline (gpu check)"))
    rid = Path(end["run_dir"]).name
    texts = pd.read_parquet(DATA / "test.parquet")["text"].tolist()
    n = min(len(texts), 2000)
    eng.serving.predict_many(texts[:8], f"run:{rid}")  # load + warm-up
    if cuda():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    gpu = eng.serving.predict_many(texts[:n], f"run:{rid}")
    dt = time.perf_counter() - t0
    key = next(iter(eng.serving.predictor.keys()))
    scorer = eng.serving.predictor.get(key, lambda: None).scorer
    dev = str(next(scorer.model.parameters()).device)
    record(
        "predict",
        "PredictionService on the engine device",
        "PASS" if dev.startswith(ARGS.device) else "FAIL",
        f"model on {dev}; {n} texts in {dt:.2f} s = {n / dt:.0f} texts/s (batch 64)",
        texts_per_s=round(n / dt),
    )
    kept = len(eng.serving.predictor.keys())
    record(
        "predict",
        "models kept on the device",
        "PASS" if kept <= eng.serving.predictor.capacity else "FAIL",
        f"{kept} kept, capacity {eng.serving.predictor.capacity}; autocast {getattr(scorer, 'amp', None)}",
    )
    model_dir = Path(end["model_dir"])
    cpu_model, tok, names = load_classifier(model_dir, "cpu")
    m = min(n, 128)
    cpu = TransformerScorer(cpu_model, tok, names).probabilities(texts[:m], SIZES[ARGS.device]["max_len"], 64, th.Lock())
    g = torch.tensor([[row[k] for k in names] for row in gpu[:m]])
    diff = float((g - cpu).abs().max())
    tol = 3e-2 if cuda() else 2e-3  # bf16 autocast on the GPU vs fp32 on the CPU
    record(
        "predict",
        f"{ARGS.device} vs cpu probabilities",
        "PASS" if diff < tol else "FAIL",
        f"max |diff| {diff:.2e} on {m} texts (tolerance {tol})",
    )
    base = eng.serving.predict_many(texts[:16], f"base:{rid}")
    record("predict", "base checkpoint on device", "PASS" if len(base) == 16 else "FAIL", f"{len(base)} predictions")
    for method in ("ig", "fast"):
        try:
            t0 = time.perf_counter()
            ex = eng.serving.explain(texts[0][:600], f"run:{rid}", method)
            dt = time.perf_counter() - t0
            ok = len(ex.scores) == len(ex.tokens) and all(math.isfinite(s) for s in ex.scores)
            gap = ex.logit - ex.baseline_logit
            record(
                "explain",
                f"explain {method} on device",
                "PASS" if ok else "FAIL",
                f"{len(ex.tokens)} tokens in {dt * 1000:.0f} ms; delta={ex.delta}, logit gap={gap:.3f}",
            )
        except Exception as exc:  # noqa: BLE001
            record(
                "explain",
                f"explain {method} on device",
                "FAIL" if "captum" not in str(exc) else "SKIP",
                f"{type(exc).__name__}: {str(exc)[:300]}",
            )
    del eng, scorer, cpu_model


@stage("precision", 70)
def s_precision() -> None:
    """Same short run at each precision (batch 64): speed, memory, loss; fp16 exercises GradScaler + fused AdamW."""
    import torch

    sz = SIZES[ARGS.device]
    rows = sz["n"][0] * 2 // 3
    if cuda():
        train_case("warmup", precision="bf16", max_steps=10, rows=rows)  # kernels, autotune, token cache
    res = {}
    for prec in ("fp32", "bf16", "fp16"):
        if left() < 40:
            record("precision", prec, "SKIP", "time")
            continue
        r = train_case(f"prec-{prec}", precision=prec, max_steps=sz["steps"], rows=rows)
        res[prec] = r
        finite = r["loss_last"] is not None and math.isfinite(r["loss_last"])
        ok = r["status"] == "completed" and finite
        record(
            "precision",
            prec,
            "PASS" if ok else "FAIL",
            f"{r['status']} {r['samples_per_s']} samples/s, peak {r['peak_mb']} MB, loss {r['loss_first']:.3f}->"
            f"{r['loss_last']:.3f}, test acc {r['test_acc']}, {r['error']}"
            if finite
            else f"{r['status']} loss={r['loss_last']} {r['error']}",
            samples_per_s=r["samples_per_s"],
            peak_mb=r["peak_mb"],
        )
    base = res.get("fp32")
    for prec in ("bf16", "fp16"):
        r = res.get(prec)
        if base is None or r is None or base["loss_last"] is None or r["loss_last"] is None:
            continue
        gap = abs(r["loss_last"] - base["loss_last"])
        fell = r["loss_last"] < r["loss_first"]
        record(
            "precision",
            f"{prec} vs fp32 final loss",
            "PASS" if fell and gap <= LOSS_TOL else "FAIL",
            f"|{r['loss_last']:.3f} - {base['loss_last']:.3f}| = {gap:.3f} (tolerance {LOSS_TOL}); loss fell: {fell}",
        )
    tf32 = torch.backends.cuda.matmul.allow_tf32
    record("precision", "TF32 for fp32 matmuls", ("PASS" if tf32 else "FAIL") if cuda() else "INFO", f"allowed: {tf32}")


@stage("freeze", 60)
def s_freeze() -> None:
    """Freeze depth 5 of 6 (GPU) with the frozen-layer cache over 2 epochs: the cache survives its self-check under bf16
    autocast (precision auto on GPU) and stores bf16 states; epoch 2 gets faster; the test phase holds nothing more."""
    from ftui import prefix_cache as pc

    sz = SIZES[ARGS.device]
    rows = sz["freeze_rows"]
    auto = "bf16"  # what precision auto means on this GPU (and forced on CPU, where auto would be fp32)
    cases = [
        ("bf16+cache", dict(precision=auto)),
        ("bf16 no cache", dict(precision=auto, cache=False)),
        ("fp32+cache", dict(precision="fp32")),
    ]
    runs = {}
    where: dict[str, list[str]] = {}
    orig_store = pc.PrefixCache._store

    def store(self: Any, split: str, tok: Any, sample: Any) -> Any:
        fresh = split not in self.stores and split not in self.disabled
        out = orig_store(self, split, tok, sample)
        if fresh:
            kept = f"{out.flat.device}/{out.flat.dtype}" if out else f"disabled/{sample.dtype}"
            where.setdefault(CURRENT[0], []).append(f"{split}:{kept}".replace("torch.", ""))
        return out

    CURRENT = [""]
    stack = contextlib.ExitStack()
    stack.enter_context(patched(pc.PrefixCache, "_store", store))
    for label, kw in cases:
        if left() < 30:
            record("freeze", label, "SKIP", "time")
            continue
        CURRENT[0] = label
        runs[label] = train_case(
            f"freeze-{label.replace(' ', '-').replace('+', '-')}", freeze=sz["depth"], epochs=2, rows=rows, **kw
        )
    stack.close()
    for label, r in runs.items():
        off = cache_off(r)
        e = r["epochs_s"]
        speed = f"epochs {e} s" + (f" (epoch2/epoch1 {e[1] / e[0]:.2f})" if len(e) >= 2 and e[0] else "")
        if "no cache" in label:
            verdict, what = "INFO", "reference"
        else:
            verdict = "PASS" if not off else "FAIL"
            what = "cache stayed on" if not off else f"cache OFF: {off[:160]}"
        record(
            "freeze",
            label,
            verdict,
            f"{r['status']}; {what}; {speed}; cache {r['cache_mb']} MB {where.get(label, [])}; test acc {r['test_acc']}",
            epochs_s=e,
            cache_mb=r["cache_mb"],
        )
    leak = [(k, r.get("freed_by_gc_at_test_mb")) for k, r in runs.items() if r.get("freed_by_gc_at_test_mb") is not None]
    if leak:
        worst = max(leak, key=lambda x: x[1])
        record(
            "freeze",
            "memory held into the test phase",
            "FAIL" if worst[1] > 50 else "PASS",
            f"GPU MB that only gc.collect() freed when the best checkpoint was loaded for testing "
            f"(core<->cache reference cycle): {dict(leak)}",
        )
    after = {k: (r["mem_before_mb"], r["mem_after_mb"]) for k, r in runs.items()}
    bad = {k: v for k, v in after.items() if v[1] - v[0] > 64}
    if cuda():
        record("freeze", "GPU memory returned after each run", "PASS" if not bad else "FAIL", f"before->after MB: {after}")


@stage("host-cache race", 25)
def s_host_race() -> None:
    """The frozen-layer cache in host memory (what a split gets when it does not fit 40% of free GPU memory): its
    device->host copies must land before they are read. Fill the same split into a GPU store and a host store and
    compare row by row. (On CPU every store is on the host: plumbing only.)"""
    import torch

    from ftui import prefix_cache as pc
    from ftui.batching import collate, length_grouped_batches, tokenize_split
    from ftui.config import ModelConfig
    from ftui.modeling import apply_freeze, build_model, load_tokenizer
    from ftui.training import _set_train_mode

    sz = SIZES[ARGS.device]
    dev = ARGS.device
    bundle = bundle_for(0)
    tok = load_tokenizer(ModelConfig(source="local", checkpoint=str(MODEL)))
    ds = bundle.splits["train"].select(range(min(sz["race_rows"], len(bundle.splits["train"]))))
    enc = tokenize_split(ds, tok, sz["max_len"])
    model = build_model(
        ModelConfig(source="local", checkpoint=str(MODEL)), list(bundle.label_names), generator=torch.Generator().manual_seed(0)
    ).to(dev)
    depth = sz["depth"]
    apply_freeze(model, depth)
    _set_train_mode(model, depth)
    batches = length_grouped_batches(enc.lengths, sz["batch"], torch.Generator().manual_seed(0))
    amp = torch.bfloat16 if cuda() else None

    def fill(share: float) -> tuple[Any, str]:
        cache = pc.PrefixCache(model, depth, dev, amp)
        with patched(pc, "GPU_SHARE", share):
            with torch.no_grad():
                for idx in batches:
                    batch = collate(enc, idx, tok.pad_token_id or 0, dev)
                    batch.pop("labels")
                    with cache.context("train", enc, idx), torch.autocast(dev, dtype=amp):
                        model(**batch)
        if cuda():
            torch.cuda.synchronize()
        if "train" not in cache.stores:
            return None, cache.disabled.get("train", "no store")
        store = cache.stores["train"]
        return (store.flat.detach().to("cpu").float().clone(), store.starts), str(store.flat.device)

    ref, where_ref = fill(1.0)
    host, where_h = fill(0.0)
    if ref is None or host is None:
        record("host-cache race", "fill", "SKIP", f"no store: ref={where_ref} host={where_h}")
        return
    (a, starts), (b, _) = ref, host
    lens = enc.lengths
    bad = sum(
        1 for i in range(len(enc)) if not torch.equal(a[starts[i] : starts[i] + lens[i]], b[starts[i] : starts[i] + lens[i]])
    )
    record(
        "host-cache race",
        "host store vs GPU store",
        "PASS" if bad == 0 else "FAIL",
        f"{bad}/{len(enc)} rows differ (max |diff| {float((a - b).abs().max()):.3g}); stores on {where_h} and {where_ref}",
        bad_rows=bad,
    )


@stage("stop", 30)
def s_stop() -> None:
    """Stop mid-run (as the app's Stop button does, between steps) with the frozen-layer cache allocated: status,
    kept checkpoint, resume snapshot, and the GPU memory given back."""
    sz = SIZES[ARGS.device]
    r = train_case(
        "stop", precision="auto", freeze=sz["depth"], epochs=3, rows=sz["freeze_rows"], stop_at_step=25 if cuda() else 6
    )
    res = r["result"]
    run = r["run"]
    snap = (run.out_dir / "resume" / "state.pt").exists()
    freed = r["mem_after_mb"] - r["mem_before_mb"]
    ok = r["status"] == "stopped" and snap and (not cuda() or freed < 64)
    record(
        "stop",
        "Stop between steps",
        "PASS" if ok else "FAIL",
        f"status={r['status']} kept={res.get('kept')}@{res.get('kept_step')} snapshot={snap}; GPU MB before/after "
        f"{r['mem_before_mb']}/{r['mem_after_mb']}",
    )


@stage("oom", 30)
def s_oom() -> None:
    """A run that cannot fit (GPU capped with set_per_process_memory_fraction): failed with the advice, memory back,
    and the next run in the same process trains. (On CPU an OutOfMemoryError is raised by a patch: plumbing only.)"""
    import torch

    import ftui.training as T

    if cuda():
        total = torch.cuda.get_device_properties(0).total_memory
        frac = min(1.0, 4 * 2**30 / total)
        torch.cuda.set_per_process_memory_fraction(frac)
        cap = f"cap {frac * total / 2**30:.1f} GiB"
        ctx = contextlib.nullcontext()
    else:

        def boom(*a: Any, **k: Any) -> Any:
            raise torch.OutOfMemoryError("simulated: out of memory")

        ctx = patched(T.ClassificationObjective, "train_loss", boom)
        cap = "simulated"
    try:
        with ctx:
            r = train_case("oom", precision="auto", batch=512, max_len=512, max_steps=5, rows=4000 if cuda() else 0)
    finally:
        if cuda():
            torch.cuda.set_per_process_memory_fraction(1.0)
    advice = ("Out of GPU memory" if cuda() else "Out of host memory") in (r["error"] or "")
    ok = r["status"] == "failed" and advice and r["mem_after_mb"] - r["mem_before_mb"] < 64
    record(
        "oom",
        "out of memory -> failed run with advice",
        "PASS" if ok else "FAIL",
        f"{cap}; status={r['status']} error='{r['error'][:120]}'; GPU MB before/after {r['mem_before_mb']}/{r['mem_after_mb']}",
    )
    r2 = train_case("after-oom", precision="auto", max_steps=10, rows=2000 if cuda() else 0)
    record(
        "oom",
        "next run in the same process",
        "PASS" if r2["status"] == "completed" else "FAIL",
        f"status={r2['status']} {r2['error']}",
    )


@stage("syncs", 25)
def s_syncs() -> None:
    """Host-device synchronisations per training step, by source line (torch.cuda.set_sync_debug_mode)."""
    rows = SIZES[ARGS.device]["batch"] * 12
    for label, kw in (("bf16 depth 0", dict(precision="bf16")), ("fp32 depth 3 + cache", dict(precision="fp32", freeze=3))):
        with SyncCounter() as sc:
            r = train_case(f"syncs-{label.replace(' ', '-').replace('+', '')}", epochs=2, rows=rows, syncs=sc, **kw)
        spe = r["spe"] or max(1, len(sc.per_step) // 2)
        e1, e2 = sc.per_step[1:spe], sc.per_step[spe:]  # step 1 also carries the set-up's syncs
        top = ", ".join(f"{k} x{v}" for k, v in sc.by_loc.most_common(5))
        avg = lambda xs: round(sum(xs) / len(xs), 2) if xs else None  # noqa: E731
        record(
            "syncs",
            label,
            "INFO",
            f"syncs/step epoch1 {avg(e1)}, epoch2 {avg(e2)} ({r['status']}); top: {top}",
            per_step_e1=avg(e1),
            per_step_e2=avg(e2),
        )


@stage("resume", 40)
def s_resume() -> None:
    """Stop at step 20, resume, compare the training losses after the resume with an uninterrupted run (dropout on):
    the snapshot keeps the CPU RNG only, so on CUDA the resumed run draws other dropout masks. A second pair stashes the
    CUDA RNG state beside the snapshot (a patch) to show that is the cause; a repeat of the whole run gives the noise floor."""
    import torch

    import ftui.training as T

    batch, max_len = (32, 128) if cuda() else (16, 32)
    rows, kw = (
        (20 if cuda() else 10) * batch,
        dict(precision="fp32", batch=batch, epochs=2, model=TINY, evals_per_epoch=1, max_len=max_len),
    )
    STOP_AT = 13 if cuda() else 6  # mid-epoch (20 steps per epoch on the GPU, 10 on CPU; every step logged)
    whole = train_case("resume-whole", rows=rows, **kw)
    again = train_case("resume-whole-again", rows=rows, **kw)

    def after(r: dict[str, Any], start: int) -> dict[int, float]:
        return {s: v for s, v in r["losses"] if s > start}

    def gap(a: dict[int, float], b: dict[int, float]) -> float:
        common = sorted(set(a) & set(b))
        return max((abs(a[s] - b[s]) for s in common), default=float("nan"))

    def stop_and_resume(tag: str, stash_cuda_rng: bool) -> float:
        out = WORK / "runs" / f"resume-{tag}"
        stack = contextlib.ExitStack()
        if stash_cuda_rng and cuda():
            orig_save, orig_load = T.TrainingCore.save_snapshot, T.TrainingCore.load_snapshot

            def save(self: Any) -> None:
                torch.save(torch.cuda.get_rng_state(), self.run.out_dir / "cuda_rng.pt")
                orig_save(self)

            def load(self: Any) -> Any:
                state = orig_load(self)
                torch.cuda.set_rng_state(torch.load(self.run.out_dir / "cuda_rng.pt"))
                return state

            stack.enter_context(patched(T.TrainingCore, "save_snapshot", save))
            stack.enter_context(patched(T.TrainingCore, "load_snapshot", load))
        with stack:
            first = train_case(f"resume-{tag}-stopped", rows=rows, out_dir=out, stop_at_step=STOP_AT, **kw)
            stopped_at = first["result"].get("kept_step") or STOP_AT
            resumed = train_case(f"resume-{tag}-resumed", rows=rows, out_dir=out, resume=True, **kw)
        return gap(after(whole, STOP_AT), after(resumed, STOP_AT)), first["status"], resumed["status"], stopped_at

    floor = gap(after(whole, STOP_AT), after(again, STOP_AT))
    limit = max(1e-4, 10 * floor)
    g, s1, s2, at = stop_and_resume("plain", False)
    record(
        "resume",
        "resumed losses vs uninterrupted",
        "PASS" if g <= limit else "FAIL",
        f"max |loss diff| after step {STOP_AT}: {g:.2e} (noise floor, same run twice: {floor:.2e}); {s1}->{s2}",
    )


@stage("bench", 100)
def s_bench() -> None:
    """The project's own GPU workload: bench/train_speed.py (tutorial Trainer, tuned Trainer, ftui engine)."""
    budget = int(min(280, left() - 55))
    n = 25000 if budget >= 220 else (12000 if budget >= 130 else 5000)
    if not cuda():
        n = 96
    cmd = [
        sys.executable,
        "bench/train_speed.py",
        "--device",
        ARGS.device,
        "--synthetic",
        str(n),
        "--model",
        "distilbert-random" if cuda() else str(TINY),
        "--tutorial-max-steps",
        "30" if cuda() else "1",
    ]
    if not cuda():
        cmd += ["--max-length", "64", "--batch-size", "16", "--max-steps", "4"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=ARGS.src)
    except subprocess.TimeoutExpired as exc:
        record(
            "bench",
            "train_speed.py",
            "SKIP",
            f"timed out after {budget} s (synthetic={n}); stderr tail: {(exc.stderr or b'')[-400:]!r}",
        )
        return
    last = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("{")), None)
    if proc.returncode != 0 or last is None:
        record("bench", "train_speed.py", "FAIL", f"exit {proc.returncode}: {proc.stderr[-700:]}")
        return
    s = json.loads(last)
    parts = [f"{k}: {v['samples_per_s']} samples/s, peak {v['peak_mem_mb']:.0f} MB" for k, v in s["recipes"].items()]
    ftui = s["recipes"].get("ftui", {}).get("samples_per_s") or 0
    record(
        "bench",
        f"train_speed.py synthetic={n}",
        "INFO",
        "; ".join(parts) + f" | ftui/tuned={s['ratio_vs_tuned_trainer']} "
        f"ftui/tutorial={s['ratio_vs_tutorial']} ({time.time() - t0:.0f} s)",
        **{f"sps_{k}": v["samples_per_s"] for k, v in s["recipes"].items()},
    )
    if cuda():
        ratio = s["ratio_vs_tuned_trainer"] or 0
        record(
            "bench",
            "README GPU targets (>=4000 samples/s, >=3x tuned Trainer)",
            "PASS" if ftui >= 4000 and ratio >= 3 else "FAIL",
            f"ftui {ftui} samples/s, {ratio}x tuned Trainer",
        )
    print(proc.stderr[-1500:], flush=True)


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
    p.add_argument("--stages", default="env,cli,predict,precision,freeze,host-cache race,stop,oom,bench,syncs,resume")
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
    end = None
    if "env" in want:
        s_env()
    if "cli" in want:
        end = s_cli()
    if "predict" in want:
        s_predict(end)
    for name, fn in (
        ("precision", s_precision),
        ("freeze", s_freeze),
        ("host-cache race", s_host_race),
        ("stop", s_stop),
        ("oom", s_oom),
        ("bench", s_bench),
        ("syncs", s_syncs),
        ("resume", s_resume),
    ):
        if name in want:
            fn()


if __name__ == "__main__":
    main()
