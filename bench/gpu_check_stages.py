"""The stages of the device check (bench/gpu_check.py runs them in order): each records one row per check, and a
stage that breaks becomes an ERROR row (the `stage` decorator)."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import gpu_check as G
from gpu_check import SIZES, SyncCounter, bundle_for, cache_off, cuda, left, patched, record, stage, train_case

LOSS_TOL = 0.1  # |final training loss (bf16 or fp16) - fp32's| after the same steps on the same batches


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
    absent = [m for m in ("gradio", "plotly") if importlib.util.find_spec(m) is None]
    record("env", "versions", "INFO", json.dumps(info), **info)
    record("env", "ftui source", "INFO", f"{G.ARGS.src} (git {G.ARGS.git or '?'})")
    code = (
        "import sys, ftui.cli, ftui.engine, ftui.finetune, ftui.serving; "
        "print([m for m in ('gradio', 'plotly', 'captum') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=G.ARGS.src)
    loaded = proc.stdout.strip() or f"import failed: {proc.stderr[-300:]}"
    bad = proc.returncode != 0 or "gradio" in loaded or "plotly" in loaded
    record(
        "env",
        "CLI/engine imports w/o UI deps",
        "FAIL" if bad else "PASS",
        f"not installed here: {absent or 'none'}; UI/optional modules imported by ftui.cli+engine+finetune+serving: {loaded}",
    )


@stage("cli", 60)
def s_cli() -> dict[str, Any] | None:
    """`python -m ftui train` end to end (a fresh process, no gradio), precision auto, then its JSON lines."""
    sz = SIZES[G.ARGS.device]
    runs = G.WORK / "runs_cli"
    cmd = [sys.executable, "-m", "ftui", "train", "--dataset", str(G.DATA), "--checkpoint", str(G.MODEL),
           "--max-train-examples", str(sz["n"][0] * 2 // 3), "--epochs", "1", "--batch-size", str(sz["batch"]),
           "--max-length", str(sz["max_len"]), "--evals-per-epoch", "2", "--lr", "1e-4", "--offline",
           "--runs-dir", str(runs), "--run-name", "cli-auto"]  # fmt: skip
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(30, min(150, left() - 200)), cwd=G.ARGS.src)
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
    ok = end["status"] == "completed" and end.get("device") == G.ARGS.device
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
    eng = Engine(runs_dir=G.WORK / "runs_cli", hub_status=HubStatus(False, "offline (gpu check)"))
    rid = Path(end["run_dir"]).name
    texts = pd.read_parquet(G.DATA / "test.parquet")["text"].tolist()
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
        "PASS" if dev.startswith(G.ARGS.device) else "FAIL",
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
    cpu = TransformerScorer(cpu_model, tok, names).probabilities(texts[:m], SIZES[G.ARGS.device]["max_len"], 64, th.Lock())
    g = torch.tensor([[row[k] for k in names] for row in gpu[:m]])
    diff = float((g - cpu).abs().max())
    tol = 3e-2 if cuda() else 2e-3  # bf16 autocast on the GPU vs fp32 on the CPU
    record(
        "predict",
        f"{G.ARGS.device} vs cpu probabilities",
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

    sz = SIZES[G.ARGS.device]
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

    sz = SIZES[G.ARGS.device]
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
    from ftui.architecture import apply_freeze
    from ftui.batching import collate, length_grouped_batches, tokenize_split
    from ftui.config import ModelConfig
    from ftui.modeling import build_model, load_tokenizer
    from ftui.training_core import _set_train_mode

    sz = SIZES[G.ARGS.device]
    dev = G.ARGS.device
    bundle = bundle_for(0)
    tok = load_tokenizer(ModelConfig(source="local", checkpoint=str(G.MODEL)))
    ds = bundle.splits["train"].select(range(min(sz["race_rows"], len(bundle.splits["train"]))))
    enc = tokenize_split(ds, tok, sz["max_len"])
    model = build_model(
        ModelConfig(source="local", checkpoint=str(G.MODEL)), list(bundle.label_names), generator=torch.Generator().manual_seed(0)
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
    sz = SIZES[G.ARGS.device]
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

    import ftui.finetune as T

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
    rows = SIZES[G.ARGS.device]["batch"] * 12
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

    import ftui.finetune as T

    batch, max_len = (32, 128) if cuda() else (16, 32)
    rows, kw = (
        (20 if cuda() else 10) * batch,
        dict(precision="fp32", batch=batch, epochs=2, model=G.TINY, evals_per_epoch=1, max_len=max_len),
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
        out = G.WORK / "runs" / f"resume-{tag}"
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
        G.ARGS.device,
        "--synthetic",
        str(n),
        "--model",
        "distilbert-random" if cuda() else str(G.TINY),
        "--tutorial-max-steps",
        "30" if cuda() else "1",
    ]
    if not cuda():
        cmd += ["--max-length", "64", "--batch-size", "16", "--max-steps", "4"]
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=G.ARGS.src)
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


GPU_TESTS_CAP_S = 240  # the pytest run's own cap: the stages after it keep the rest of the 8-minute budget


@stage("gpu-tests", 60)
def s_gpu_tests() -> None:
    """`python -m pytest -m gpu tests/test_gpu.py` in a fresh process with this check's PYTHONPATH (the carried wheels,
    pytest among them, and the tokenizer stand-in): one row, PASS when every test passed, FAIL naming the failures, SKIP
    when all skipped (no CUDA: the dry run), ERROR when pytest itself could not run or ran out of time."""
    budget = max(30.0, min(GPU_TESTS_CAP_S, left() - 30))
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "tests/test_gpu.py", "-v", "-p", "no:cacheprovider", "--tb=short",
           f"--basetemp={G.WORK / 'pytest'}"]  # fmt: skip
    timed_out = False
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=budget, cwd=G.ARGS.src)
        out, code = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        timed_out, code = True, None
        out = "".join(x.decode() if isinstance(x, bytes) else (x or "") for x in (exc.stdout, exc.stderr))
    print(out[-6000:], flush=True)  # the log keeps the tracebacks; the table row names the tests
    outcome = {}
    for line in out.splitlines():  # -v: "tests/test_gpu.py::test_name PASSED [ 12%]"
        head = line.split(" ")
        if len(head) >= 2 and head[0].startswith("tests/test_gpu.py::") and head[1] in ("PASSED", "FAILED", "ERROR", "SKIPPED"):
            outcome[head[0].split("::", 1)[1]] = head[1]
    bad = sorted(n for n, o in outcome.items() if o in ("FAILED", "ERROR"))
    counts = ", ".join(f"{sum(o == k for o in outcome.values())} {k.lower()}" for k in ("PASSED", "FAILED", "ERROR", "SKIPPED"))
    if timed_out:
        verdict, detail = "ERROR", f"stopped at its {budget:.0f} s cap ({counts}); failed so far: {bad or 'none'}"
    elif bad:
        verdict, detail = "FAIL", f"failed: {', '.join(bad)} ({counts})"
    elif not outcome or code not in (0, 5):
        verdict, detail = "ERROR", f"pytest exit {code}, no results: {out.strip().splitlines()[-1:] or ['no output']}"
    elif all(o == "SKIPPED" for o in outcome.values()):
        verdict, detail = "SKIP", f"all {len(outcome)} skipped (no CUDA)"
    else:
        verdict, detail = "PASS", counts
    tallies = {k.lower(): v for k, v in Counter(outcome.values()).items()}
    record("gpu-tests", "pytest -m gpu tests/test_gpu.py", verdict, detail, **tallies)
