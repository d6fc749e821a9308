"""Latency benchmark: try-it prediction (one review, and 1,000 at once) and Start -> first loss point, against baselines.

Baselines, run in the same process on the same model and texts: the transformers `pipeline("text-classification")`
one review per call (the usual try-it code) and the same pipeline over the whole list. Needs no Hub.

    python bench/latency.py                       # packaged MiniLM, bundled demo reviews
    python bench/latency.py --texts ../shared/data/rotten_tomatoes/test.parquet
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from common import ROOT, percentile  # first: sets the environment (offline, tokenizers), makes ftui importable


def load_texts(path: str | None, n: int) -> list[str]:
    """n review texts from a table (repeated if it is shorter)."""
    from ftui.data import read_table

    df = read_table(Path(path) if path else ROOT / "assets" / "demo_reviews.csv")
    texts = df["text"].astype(str).tolist()
    return (texts * (n // len(texts) + 1))[:n]


def load_labels(path: str | None, n: int, names: list[str]) -> list[str]:
    """Label names for the first n rows (repeated like load_texts); integer labels index `names`."""
    from ftui.data import read_table

    col = read_table(Path(path) if path else ROOT / "assets" / "demo_reviews.csv")["label"].tolist()
    col = [names[int(v)] if not isinstance(v, str) else v for v in col]
    return (col * (n // len(col) + 1))[:n]


def time_single(fn: Any, texts: list[str], calls: int) -> list[float]:
    """Milliseconds per call of fn([text]) after a warm-up."""
    for t in texts[:5]:
        fn(t)
    out = []
    for i in range(calls):
        t0 = time.perf_counter()
        fn(texts[i % len(texts)])
        out.append((time.perf_counter() - t0) * 1000)
    return out


def first_point(runs_dir: Path) -> list[float]:
    """Seconds from Engine.start_run to the first loss event, for a first and a second run (model files cached)."""
    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    engine = Engine(runs_dir=runs_dir, hub_status=HubStatus(False, "offline"))
    cfg = RunConfig(data=DataConfig(), model=ModelConfig(), train=TrainConfig(epochs=1))
    engine.load_data(cfg.data)  # the Data tab has loaded it before anyone presses Start
    engine.model_summary(cfg.model)  # and the Model tab its summary
    out = []
    for _ in range(2):
        t0 = time.perf_counter()
        run = engine.start_run(cfg)
        version = 0
        while not any(e["type"] == "train" for e in run.events()):
            version = run.wait_for_change(version, timeout=60)
            if run.done.is_set() and not any(e["type"] == "train" for e in run.events()):
                raise SystemExit(f"run ended before a loss point: {run.error}")
        out.append(time.perf_counter() - t0)
        engine.stop_run()
        engine.join(60)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", help="table with a text column (default: the bundled demo reviews)")
    p.add_argument("--calls", type=int, default=200, help="single-review calls to time")
    p.add_argument("--batch", type=int, default=1000, help="reviews in the batch test")
    p.add_argument("--model-dir", help="a finished run's model folder (default: packaged MiniLM, untrained head)")
    p.add_argument("--labels", action="store_true", help="the texts table has a label column: report accuracy")
    args = p.parse_args(argv)

    import torch
    from transformers import pipeline

    from ftui.config import ModelConfig
    from ftui.modeling import build_model, load_classifier, load_tokenizer
    from ftui.predict import Predictor, int8_loader

    if args.model_dir:
        model, tok, names = load_classifier(Path(args.model_dir), "cpu")
    else:
        cfg = ModelConfig()
        torch.manual_seed(0)
        names = ["negative", "positive"]
        model, tok = build_model(cfg, names).eval(), load_tokenizer(cfg)
    texts = load_texts(args.texts, args.batch)
    pred = Predictor()

    def loader() -> tuple[Any, Any, list[str]]:
        return model, tok, names

    pipe = pipeline("text-classification", model=model, tokenizer=tok, device="cpu", top_k=None)

    ftui_ms = time_single(lambda t: pred.predict("m", loader, [t], max_length=256), texts, args.calls)
    pipe_ms = time_single(lambda t: pipe(t, truncation=True, max_length=256), texts, args.calls)

    t0 = time.perf_counter()
    fp32 = pred.predict("m", loader, texts, max_length=256)
    ftui_batch = len(texts) / (time.perf_counter() - t0)
    quant = int8_loader(loader)
    pred.predict("q", quant, texts[:64], max_length=256)  # quantize once, outside the timing
    t0 = time.perf_counter()
    int8 = pred.predict("q", quant, texts, max_length=256)
    int8_batch = len(texts) / (time.perf_counter() - t0)
    top = [max(p, key=p.__getitem__) for p in fp32]
    top8 = [max(p, key=p.__getitem__) for p in int8]
    agree = sum(a == b for a, b in zip(top, top8, strict=True)) / len(top)
    accuracy = {}
    if args.labels:
        gold = load_labels(args.texts, len(texts), names)
        accuracy = {
            "fp32": round(sum(a == g for a, g in zip(top, gold, strict=True)) / len(gold), 4),
            "int8": round(sum(a == g for a, g in zip(top8, gold, strict=True)) / len(gold), 4),
        }
    t0 = time.perf_counter()
    pipe(texts, truncation=True, max_length=256)
    pipe_batch = len(texts) / (time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        first = first_point(Path(tmp))

    out = {
        "device": f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)",
        "texts": args.texts or "assets/demo_reviews.csv",
        "single_ms": {
            "ftui": {"p50": round(statistics.median(ftui_ms), 2), "p95": round(percentile(ftui_ms, 95), 2)},
            "pipeline": {"p50": round(statistics.median(pipe_ms), 2), "p95": round(percentile(pipe_ms, 95), 2)},
        },
        "model": args.model_dir or "packaged MiniLM, untrained head",
        "batch_reviews_per_s": {
            "ftui": round(ftui_batch, 1),
            "ftui_int8": round(int8_batch, 1),
            "pipeline": round(pipe_batch, 1),
        },
        "int8_label_agreement": round(agree, 4),
        **({"accuracy": accuracy} if accuracy else {}),
        "first_loss_point_s": {"first_run": round(first[0], 2), "second_run": round(first[1], 2)},
    }
    out["ratio_single_p50_vs_pipeline"] = round(out["single_ms"]["pipeline"]["p50"] / out["single_ms"]["ftui"]["p50"], 2)
    out["ratio_batch_vs_pipeline"] = round(ftui_batch / pipe_batch, 2)
    out["ratio_batch_int8_vs_pipeline"] = round(int8_batch / pipe_batch, 2)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
