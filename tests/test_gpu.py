"""The CUDA paths on a real GPU: mixed precision, the frozen-layer cache, out of memory, Stop, resume, Predict and
Explain, host syncs per step. Every test skips without CUDA; run them on the device with `pytest -m gpu`."""

from __future__ import annotations

import gc
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from ftui.runs import RunStatus

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

LOSS_TOL = 0.1  # |final training loss at bf16 or fp16 - at fp32| after the same steps on the same batches


def gpu_cfg(checkpoint: Path, data: DataConfig | None = None, freeze: int = 0, **train) -> RunConfig:
    t = {"epochs": 3, "batch_size": 32, "learning_rate": 1e-3, "evals_per_epoch": 1, "max_length": 64, **train}
    return RunConfig(data or DataConfig(), ModelConfig(source="local", checkpoint=str(checkpoint), freeze_depth=freeze),
                     TrainConfig(**t))  # fmt: skip


def finished(engine, cfg: RunConfig, timeout: float = 300):
    run = engine.start_run(cfg)
    assert run.done.wait(timeout) and engine.join(30)
    return run


def losses(run) -> list[float]:
    return [e["loss"] for e in run.events() if e["type"] == "train"]


def allocated_mb() -> float:
    gc.collect()
    torch.cuda.synchronize()
    return torch.cuda.memory_allocated() / 2**20


def long_reviews(folder: Path, rows: int) -> DataConfig:
    """Parquet splits (rows in train, 64 in validation and test) of texts longer than the tiny model's 128 positions,
    so every row of a batch is as long as it gets."""
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    words = "the film was long and the plot was thin but the acting carried it to the end".split()
    rng = np.random.default_rng(0)
    for split, n in (("train", rows), ("validation", 64), ("test", 64)):
        texts = [" ".join(rng.choice(words, 200)) for _ in range(n)]
        pd.DataFrame({"text": texts, "label": ["negative", "positive"] * (n // 2)}).to_parquet(folder / f"{split}.parquet")
    return DataConfig(source="local", dataset_id=str(folder))


def test_bf16_and_fp16_train_like_fp32(engine, tiny_bert_dir, monkeypatch):
    scaled: list[int] = []
    real_step = torch.amp.GradScaler.step

    def counted_step(self, *args, **kwargs):
        scaled.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.amp.GradScaler, "step", counted_step)
    runs = {}
    for p in ("fp32", "bf16", "fp16"):
        scaled.clear()
        runs[p] = finished(engine, gpu_cfg(tiny_bert_dir, precision=p))
        assert bool(scaled) == (p == "fp16"), p  # fp16 steps through the gradient scaler, the others do not
    for p, run in runs.items():
        assert run.status == RunStatus.COMPLETED and run.result["device"] == "cuda", (p, run.error)
        curve = losses(run)
        assert curve[-1] < curve[0], (p, curve)
    for p in ("bf16", "fp16"):
        assert abs(losses(runs[p])[-1] - losses(runs["fp32"])[-1]) <= LOSS_TOL
    assert torch.backends.cuda.matmul.allow_tf32  # fp32 matmuls run on TF32 tensor cores


def test_the_cache_stays_on_under_bf16_and_equals_recomputing(engine, tiny_bert_dir):
    run = finished(engine, gpu_cfg(tiny_bert_dir, freeze=1, precision="bf16", epochs=2))
    assert run.status == RunStatus.COMPLETED, run.error
    assert [e for e in run.events() if e["type"] == "notice"] == []
    assert run.snapshot().progress.prefix_cache_mb > 0


def _filled_cache(tiny_bert_dir: Path, share: float, monkeypatch):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ftui import prefix_cache as pc
    from ftui.architecture import apply_freeze
    from ftui.batching import collate, length_grouped_batches, tokenize_split
    from ftui.data import load_data

    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    enc = tokenize_split(load_data(DataConfig()).splits["train"], tok, 64)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert_dir, num_labels=2).cuda().eval()
    apply_freeze(model, 1)
    monkeypatch.setattr(pc, "GPU_SHARE", share)
    cache = pc.PrefixCache(model, 1, "cuda", torch.bfloat16)
    with torch.no_grad():
        for idx in length_grouped_batches(enc.lengths, 32, torch.Generator().manual_seed(0)):
            batch = collate(enc, idx, tok.pad_token_id, "cuda")
            batch.pop("labels")
            with cache.context("train", enc, idx), torch.autocast("cuda", dtype=torch.bfloat16):
                model(**batch)
    torch.cuda.synchronize()
    assert cache.stores["train"].flat.device.type == ("cuda" if share else "cpu")
    return cache, model, enc, tok


def test_the_host_store_holds_what_the_gpu_store_holds(tiny_bert_dir, monkeypatch):
    host, gpu = (_filled_cache(tiny_bert_dir, share, monkeypatch)[0].stores["train"].flat.float().cpu() for share in (0.0, 1.0))
    assert torch.equal(host, gpu)


def test_cached_logits_under_bf16_equal_recomputed_ones_within_the_dtypes_tolerance(tiny_bert_dir, monkeypatch):
    from ftui.batching import collate
    from ftui.prefix_cache import check_tolerance

    cache, model, enc, tok = _filled_cache(tiny_bert_dir, 1.0, monkeypatch)
    idx = np.arange(min(64, len(enc)))
    batch = collate(enc, idx, tok.pad_token_id, "cuda")
    batch.pop("labels")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        full = model(**batch).logits.float()
        with cache.reuse("train", enc, idx):
            cached = model(**batch).logits.float()
    limit = check_tolerance(torch.bfloat16) * (1 + float(full.abs().max()))
    assert float((cached - full).abs().max()) <= limit


def test_a_real_out_of_memory_fails_with_advice_gives_the_memory_back_and_the_next_run_completes(engine, tiny_bert_dir, tmp_path):
    before = allocated_mb()
    total = torch.cuda.get_device_properties(0).total_memory
    # 512 MiB: the weights fit; a batch of 8192 x 128 tokens needs about 2 GB of activations for backward
    torch.cuda.set_per_process_memory_fraction(min(1.0, 2**29 / total))
    try:
        cfg = gpu_cfg(tiny_bert_dir, long_reviews(tmp_path / "long", 8192), batch_size=8192, max_length=128, max_steps=2)
        run = finished(engine, cfg)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    assert run.status == RunStatus.FAILED and "Out of GPU memory at batch size 8192" in run.error, run.error
    assert allocated_mb() - before < 64
    assert finished(engine, gpu_cfg(tiny_bert_dir, epochs=1)).status == RunStatus.COMPLETED


def test_stop_gives_the_device_memory_back(engine, tiny_bert_dir):
    before = allocated_mb()
    run = engine.start_run(gpu_cfg(tiny_bert_dir, freeze=1, epochs=200))
    version = 0
    while not any(e["type"] == "train" for e in run.events()):
        version = run.wait_for_change(version, timeout=60)
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    assert allocated_mb() - before < 64


def test_a_resumed_run_reproduces_an_uninterrupted_one(engine, tiny_bert_dir):
    """Dropout on: the CUDA generator's state must travel in the snapshot."""
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    cfg = gpu_cfg(tiny_bert_dir, epochs=2, evals_per_epoch=2, precision="fp32")
    whole, twice = finished(engine, cfg), finished(engine, cfg)  # the same run twice: GPU kernels' own noise floor
    run = engine.start_run(cfg)
    version = 0
    while not any(e["type"] == "eval" for e in run.events()):
        version = run.wait_for_change(version, timeout=120)
    engine.stop_run()
    assert run.done.wait(60) and engine.join(30) and run.status == RunStatus.STOPPED
    fresh = Engine(runs_dir=engine.runs_dir, hub_status=HubStatus(False, "offline (tests)"))
    again = fresh.resume_run(run.run_id)
    assert again.done.wait(300) and fresh.join(30) and again.status == RunStatus.COMPLETED, again.error
    last = [[e["eval_loss"] for e in r.events() if e["type"] == "eval"][-1] for r in (whole, twice, again)]
    floor = abs(last[1] - last[0])
    assert abs(last[2] - last[0]) <= max(1e-4, 10 * floor), (last, floor)  # other dropout masks differ by ~1e-2


def test_predict_and_explain_run_on_the_gpu(engine, tiny_bert_dir):
    run = finished(engine, gpu_cfg(tiny_bert_dir, epochs=1))
    key = f"run:{run.run_id}"
    probs = engine.predict("Great value, works perfectly.", key)
    assert abs(sum(probs.values()) - 1) < 1e-3
    scorer = engine.serving.predictor.get(*engine.serving.versioned(key)).scorer
    assert next(scorer.model.parameters()).is_cuda and scorer.amp is not None
    for method in ("ig", "fast"):
        ex = engine.serving.explain("Great value, works perfectly.", key, method)
        assert len(ex.scores) == len(ex.tokens) and all(np.isfinite(ex.scores))
    assert len(engine.serving.predictor.keys()) <= engine.serving.predictor.capacity == 1


def test_host_syncs_per_cached_training_step_are_counted(engine, tiny_bert_dir, monkeypatch):
    """torch.cuda.set_sync_debug_mode counts what still waits on the GPU per training step (evaluation and snapshots
    left out). In the cached epoch a step may sync once per forward pass it runs, and no more: transformers 5.23 builds
    the SDPA attention mask through masking_utils._ignore_bidirectional_mask_sdpa, which evaluates
    `padding_mask.all()` in Python (a host sync per forward, cached or not; not ftui's to remove). A logged step reads
    its mean loss once more (float(running_loss)), after its optimizer step: that sync is counted with the next step."""
    import ftui.finetune as T

    counts: list[tuple[int, int]] = []  # per optimizer step: (host syncs, forward passes)
    forwards = [0]
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")

        def drained() -> int:
            n = sum("synchroniz" in str(w.message) for w in seen)
            seen.clear()
            return n

        def paused(fn):
            def inner(self, *args, **kwargs):
                torch.cuda.set_sync_debug_mode(0)
                try:
                    return fn(self, *args, **kwargs)
                finally:
                    seen.clear()
                    torch.cuda.set_sync_debug_mode("warn")

            return inner

        real_step, real_loss = T.TrainingCore._optimizer_step, T.ClassificationObjective.train_loss

        def step(self) -> None:
            real_step(self)
            counts.append((drained(), forwards[0]))
            forwards[0] = 0

        def loss(self, *args, **kwargs):
            forwards[0] += 1  # one model forward per micro-batch
            return real_loss(self, *args, **kwargs)

        monkeypatch.setattr(T.TrainingCore, "_optimizer_step", step)
        monkeypatch.setattr(T.ClassificationObjective, "train_loss", loss)
        monkeypatch.setattr(T.TrainingCore, "_evaluate", paused(T.TrainingCore._evaluate))
        monkeypatch.setattr(T.TrainingCore, "save_snapshot", paused(T.TrainingCore.save_snapshot))
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run = finished(engine, gpu_cfg(tiny_bert_dir, freeze=1, precision="bf16", epochs=2))
        finally:
            torch.cuda.set_sync_debug_mode(0)
    assert run.status == RunStatus.COMPLETED, run.error
    per_epoch = next(e["steps_per_epoch"] for e in run.events() if e["type"] == "start")
    logged = {e["step"] for e in run.events() if e["type"] == "train"}
    # From the second cached step: the first also runs the cache's one-time self-check (two more forwards, whose
    # difference is read back), which is not a step's steady cost.
    cached = list(enumerate(counts, start=1))[per_epoch + 1 :]
    print(f"host syncs per step, cached epoch (step, syncs, forwards): {[(s, n, f) for s, (n, f) in cached]}")
    over = [(s, n, f) for s, (n, f) in cached if n > f + (s - 1 in logged)]
    assert cached and all(f == 1 for _, (_, f) in cached) and over == [], (over, cached)
