"""Latency benchmark: try-it prediction (one review, and 1,000 at once) per runtime, explanations, and Start -> first
loss point, against baselines.

Baselines, run in the same process on the same model and texts: the transformers `pipeline("text-classification")`
one review per call (the usual try-it code) and the same pipeline over the whole list. Runtimes: PyTorch fp32, its
dynamic int8 copy, ONNX Runtime fp32 and int8 (exported and checked by ftui.onnx_export). Needs no Hub.

    python bench/latency.py                       # packaged MiniLM, bundled demo reviews
    python bench/latency.py --texts ../shared/data/rotten_tomatoes/test.parquet --labels --model-dir RUN/model

Targets (issue 13, 2-core CPU, packaged MiniLM): ONNX Runtime single review p50 <= 5 ms, batch >= 1,000 reviews/s,
>= 98% of labels equal to torch fp32, accuracy within 0.5 point; an explanation of a 64-token review within ~1 s.
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
    from ftui.readers import read_table

    df = read_table(Path(path) if path else ROOT / "assets" / "demo_reviews.csv")
    texts = df["text"].astype(str).tolist()
    return (texts * (n // len(texts) + 1))[:n]


def load_labels(path: str | None, n: int, names: list[str]) -> list[str]:
    """Label names for the first n rows (repeated like load_texts); integer labels index `names`."""
    from ftui.readers import read_table

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


def onnx_rows(
    model: Any,
    tok: Any,
    names: list[str],
    texts: list[str],
    torch_top: list[str],
    gold: list[str] | None,
    tmp: Path,
    calls: int,
) -> dict[str, Any]:
    """Export through ftui (checked against torch), then time ONNX Runtime fp32 and int8 like the torch rows."""
    from ftui.onnx_export import FP32_FILE, INT8_FILE, OnnxScorer, export_run
    from ftui.predict import Predictor

    idx = {n: i for i, n in enumerate(names)}
    report = export_run(model, tok, names, texts[:256], [idx[g] for g in gold[:256]] if gold else None, 256, tmp / "onnx")
    rows: dict[str, Any] = {"export_s": report.export_s}
    for kind, file in (("fp32", FP32_FILE), ("int8", INT8_FILE)):
        scorer = OnnxScorer(tmp / "onnx" / file, tok, names, report.inputs)
        pred = Predictor()
        ms = time_single(lambda t, s=scorer, p=pred, k=kind: p.predict(k, lambda: s, [t], max_length=256), texts, calls)
        t0 = time.perf_counter()
        probs = pred.predict(kind, lambda s=scorer: s, texts, max_length=256)
        per_s = len(texts) / (time.perf_counter() - t0)
        top = [max(p, key=p.__getitem__) for p in probs]
        rows[kind] = {
            "p50_ms": round(statistics.median(ms), 2),
            "p95_ms": round(percentile(ms, 95), 2),
            "batch_reviews_per_s": round(per_s, 1),
            "label_agreement_vs_torch_fp32": round(sum(a == b for a, b in zip(top, torch_top, strict=True)) / len(top), 4),
            **({"accuracy": round(sum(a == g for a, g in zip(top, gold, strict=True)) / len(gold), 4)} if gold else {}),
        }
    return rows


def explain_rows(model: Any, tok: Any, names: list[str], texts: list[str], n: int) -> dict[str, Any]:
    """Milliseconds per explanation (integrated gradients, and the fast method) of reviews cut to 64 tokens."""
    from ftui.explain import explain

    longish = sorted(texts, key=len)[-n:]  # the longest reviews: most reach the 64-token cut
    out: dict[str, Any] = {}
    for method in ("ig", "fast"):
        explain(model, tok, names, longish[0], max_length=64, method=method)  # warm-up
        ms, deltas, lengths = [], [], []
        for t in longish:
            t0 = time.perf_counter()
            ex = explain(model, tok, names, t, max_length=64, method=method)
            ms.append((time.perf_counter() - t0) * 1000)
            lengths.append(len(ex.tokens))
            if ex.delta is not None:
                deltas.append(abs(ex.delta) / max(1e-6, abs(ex.logit - ex.baseline_logit)))
        out[method] = {"p50": round(statistics.median(ms), 1), "p95": round(percentile(ms, 95), 1),
                       "tokens_p50": int(statistics.median(lengths))}  # fmt: skip
        if deltas:
            out[method]["relative_delta_p50"] = round(statistics.median(deltas), 4)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--texts", help="table with a text column (default: the bundled demo reviews)")
    p.add_argument("--calls", type=int, default=200, help="single-review calls to time")
    p.add_argument("--batch", type=int, default=1000, help="reviews in the batch test")
    p.add_argument("--model-dir", help="a finished run's model folder (default: packaged MiniLM, untrained head)")
    p.add_argument("--labels", action="store_true", help="the texts table has a label column: report accuracy")
    p.add_argument("--explain", type=int, default=20, help="reviews to explain (0: skip explanations)")
    p.add_argument("--no-first-point", action="store_true", help="skip the Start -> first loss point timing")
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

    gold_names = load_labels(args.texts, len(texts), names) if args.labels else None
    with tempfile.TemporaryDirectory() as tmp:
        onnx = onnx_rows(model, tok, names, texts, top, gold_names, Path(tmp), args.calls)
        first = [float("nan")] * 2 if args.no_first_point else first_point(Path(tmp) / "runs")
    explain_ms = explain_rows(model, tok, names, texts, args.explain) if args.explain else {}

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
        "onnx": onnx,
        **({"explain_ms_64_tokens": explain_ms} if explain_ms else {}),
        "first_loss_point_s": {"first_run": round(first[0], 2), "second_run": round(first[1], 2)},
    }
    out["ratio_single_p50_vs_pipeline"] = round(out["single_ms"]["pipeline"]["p50"] / out["single_ms"]["ftui"]["p50"], 2)
    out["ratio_batch_vs_pipeline"] = round(ftui_batch / pipe_batch, 2)
    out["ratio_batch_int8_vs_pipeline"] = round(int8_batch / pipe_batch, 2)
    for kind in ("fp32", "int8"):
        out[f"ratio_single_p50_onnx_{kind}_vs_torch"] = round(out["single_ms"]["ftui"]["p50"] / onnx[kind]["p50_ms"], 2)
        out[f"ratio_batch_onnx_{kind}_vs_torch"] = round(onnx[kind]["batch_reviews_per_s"] / ftui_batch, 2)
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
