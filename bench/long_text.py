"""Long documents: plain truncation vs head + tail vs chunks (windows, logits averaged) at several max lengths.

Long reviews are built from real ones: each document is `--snippets` rotten_tomatoes reviews of one split, most of
them (`--majority`) of the document's label and the rest of the other, shuffled, so the evidence is spread over the
whole text (about 500 words); a model that reads only its start sees a few snippets and a weak majority. Every mode
trains the packaged MiniLM through the engine, one run per (mode, max length), on the same documents; the last line is
JSON with test accuracy and time per configuration and each mode's ratio to truncation at the same length.

    python bench/long_text.py --data ../shared/data/rotten_tomatoes --lengths 128 256
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401 - offline, quiet tokenizers, the repo importable
import numpy as np
import pandas as pd

MODES = ("truncate", "head_tail", "chunks")


def long_documents(snippets: pd.DataFrame, n: int, per_doc: int, majority: int, seed: int) -> pd.DataFrame:
    """n documents, half of each label, each `per_doc` snippets with `majority` of them of its label, shuffled."""
    rng = np.random.default_rng(seed)
    by_label = {y: snippets.loc[snippets["label"] == y, "text"].to_numpy() for y in (0, 1)}
    docs = []
    for i in range(n):
        y = i % 2
        parts = list(rng.choice(by_label[y], majority, replace=False)) + list(
            rng.choice(by_label[1 - y], per_doc - majority, replace=False)
        )
        rng.shuffle(parts)
        docs.append({"text": " ".join(parts), "label": ["negative", "positive"][y]})
    return pd.DataFrame(docs)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="folder with rotten_tomatoes train/validation/test parquet files")
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 256])
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    p.add_argument("--train-docs", type=int, default=800)
    p.add_argument("--eval-docs", type=int, default=200, help="validation documents (test gets twice as many)")
    p.add_argument("--snippets", type=int, default=24, help="reviews per document")
    p.add_argument("--majority", type=int, default=18, help="of them, how many carry the document's label")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)

    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    src = Path(a.data)
    work = Path(tempfile.mkdtemp(prefix="ftui-long-"))
    sizes = {"train": a.train_docs, "validation": a.eval_docs, "test": 2 * a.eval_docs}
    for i, (split, n) in enumerate(sizes.items()):
        docs = long_documents(pd.read_parquet(src / f"{split}.parquet"), n, a.snippets, a.majority, a.seed + i)
        docs.to_csv(work / f"{split}.csv", index=False)
    words = pd.read_csv(work / "test.csv")["text"].str.split().str.len()
    print(json.dumps({"documents": sizes, "words_mean": round(float(words.mean()), 1)}), flush=True)

    engine = Engine(runs_dir=work / "runs", hub_status=HubStatus(False, "offline (bench)"))
    rows: list[dict[str, Any]] = []
    for length in a.lengths:
        for mode in a.modes:
            cfg = RunConfig(
                data=DataConfig(source="local", dataset_id=str(work), seed=a.seed),
                model=ModelConfig(),
                train=TrainConfig(epochs=a.epochs, learning_rate=a.lr, batch_size=a.batch_size, max_length=length,
                                  long_text=mode, evals_per_epoch=1, seed=a.seed, run_name=f"{mode}-{length}"),
            )  # fmt: skip
            t0 = time.perf_counter()
            run = engine.start_run(cfg)
            run.done.wait()
            engine.join(60)
            r = run.result
            row = {"mode": mode, "max_length": length, "status": run.status.value, "error": run.error,
                   "test_accuracy": r.get("test_accuracy"), "train_rows": r.get("train_size"),
                   "train_loop_s": r.get("train_loop_seconds"), "total_s": round(time.perf_counter() - t0, 1)}  # fmt: skip
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary: dict[str, Any] = {"runs": rows, "ratios": []}
    for length in a.lengths:
        base = next((r for r in rows if r["mode"] == "truncate" and r["max_length"] == length), None)
        for r in rows:
            if base and r["max_length"] == length and r["mode"] != "truncate" and r["test_accuracy"] is not None:
                summary["ratios"].append({
                    "max_length": length, "mode": r["mode"],
                    "accuracy_minus_truncate": round(r["test_accuracy"] - (base["test_accuracy"] or 0.0), 4),
                    "time_vs_truncate": round(r["total_s"] / base["total_s"], 2),
                })  # fmt: skip
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
