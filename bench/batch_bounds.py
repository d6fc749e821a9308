"""Batch prediction bounds: time and memory of one large batch, the previous way against ftui's, side by side.

previous = every text cut at 20,000 characters, the whole request tokenized in one call, then batched (the code before
the bounds); ftui = each text cut to what the model reads (max_length x 16 characters), tokenized one batch at a
time, memory given back afterwards. Each recipe runs in its own process on the same texts (the packaged MiniLM with
a fresh head), so resident memory is comparable. Also times the engine refusing a request over the character cap.

    python bench/batch_bounds.py --texts 2000 --chars 20000 --max-length 128
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import ROOT  # first: sets the environment (offline, tokenizers), makes ftui importable


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        import os

        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def texts_for(n: int, chars: int) -> list[str]:
    words = "the film was long but the acting kept me watching until the very end of it all".split()
    out = []
    for i in range(n):
        body = " ".join(words[(i + k) % len(words)] for k in range(chars // 4))
        out.append(body[:chars])
    return out


def previous_predict(model, tok, names, texts: list[str], max_length: int, batch_size: int = 64) -> list[list[float]]:
    """The code before the bounds: cut at 20,000 characters, tokenize everything at once, then pad per batch."""
    import torch

    texts = [t[:20_000] for t in texts]
    ids = tok(texts, truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in ids]
    order = sorted(range(len(texts)), key=lambda i: len(ids["input_ids"][i]))
    probs = torch.empty((len(texts), len(names)))
    for start in range(0, len(order), batch_size):
        part = order[start : start + batch_size]
        batch = tok.pad({k: [ids[k][i] for i in part] for k in keys}, return_tensors="pt")
        with torch.inference_mode():
            probs[part] = torch.softmax(model(**batch).logits.float(), dim=-1)
    return probs.tolist()


def child(recipe: str, n: int, chars: int, max_length: int) -> dict:
    import torch

    from ftui.config import ModelConfig
    from ftui.modeling import build_model, load_tokenizer
    from ftui.predict import Predictor
    from ftui.serving import release_memory

    cfg = ModelConfig()
    names = ["negative", "positive"]
    model = build_model(cfg, names, generator=torch.Generator().manual_seed(0)).eval()
    tok = load_tokenizer(cfg)
    texts = texts_for(n, chars)
    previous_predict(model, tok, names, texts[:8], max_length)  # warm up both paths' kernels alike
    base = rss_mb()
    t0 = time.perf_counter()
    if recipe == "previous":
        probs = previous_predict(model, tok, names, texts, max_length)
    else:
        pred = Predictor()
        probs = [list(p.values()) for p in pred.predict("m", lambda: (model, tok, names), texts, max_length=max_length)]
    seconds = time.perf_counter() - t0
    peak = peak_mb()
    del probs
    if recipe == "previous":
        import gc

        gc.collect()  # all the previous code did: glibc kept the freed heap
    else:
        release_memory()  # what the engine does after a request this large
    return {"seconds": round(seconds, 2), "rss_before_mb": round(base), "peak_mb": round(peak), "after_mb": round(rss_mb())}


def refusal_seconds() -> float:
    import tempfile

    from ftui.engine import Engine
    from ftui.errors import FtuiError
    from ftui.hub import HubStatus

    engine = Engine(runs_dir=tempfile.mkdtemp(), hub_status=HubStatus(False, "offline"))
    texts = ["w" * 20_000] * 10_000  # the request from the issue: 10,000 lines of 20,000 characters
    t0 = time.perf_counter()
    try:
        engine.predict_many(texts, "run:none")
    except FtuiError:
        pass
    return round(time.perf_counter() - t0, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--texts", type=int, default=2000)
    p.add_argument("--chars", type=int, default=20_000)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--child", choices=["previous", "ftui"])
    a = p.parse_args()
    if a.child:
        print(json.dumps(child(a.child, a.texts, a.chars, a.max_length)))
        return
    results = {}
    for recipe in ("previous", "ftui"):
        cmd = [sys.executable, __file__, "--child", recipe, "--texts", str(a.texts), "--chars", str(a.chars),
               "--max-length", str(a.max_length)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True).stdout.strip().splitlines()[-1]
        results[recipe] = json.loads(out)
        print(f"{recipe:>9}: {results[recipe]}")
    prev, ours = results["previous"], results["ftui"]
    summary = {
        "texts": a.texts,
        "chars_each": a.chars,
        "recipes": results,
        "speedup": round(prev["seconds"] / max(ours["seconds"], 1e-9), 1),
        "peak_growth_ratio": round(
            (prev["peak_mb"] - prev["rss_before_mb"]) / max(1, ours["peak_mb"] - ours["rss_before_mb"]), 1
        ),
        "over_cap_refused_in_s": refusal_seconds(),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
