"""Masked-LM pre-training speed: the tutorial Trainer recipe, a tuned Trainer and ftui's engine on one corpus and model.

tutorial = `Trainer` + `DataCollatorForLanguageModeling`, every document padded to 512 tokens at map time, batch 16;
tuned_trainer = `Trainer` + the same collator on the course's `group_texts` blocks (concatenated documents cut into
blocks of --block tokens, no padding), batch --batch; ftui = the Adapt tab's run (same blocks and batch). Each recipe
runs in its own process for --steps optimizer steps after one warm-up step. Speed is real (non-padding) tokens per
second of the training loop; the last line is JSON with every recipe and ftui's ratios.

    python bench/mlm_speed.py --corpus ../shared/data/rotten_tomatoes/train.parquet --steps 30
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT  # first: sets the environment (offline, tokenizers), makes ftui importable

RESULT_TAG = "BENCH_RESULT "


def corpus_texts(path: str | None, n: int) -> list[str]:
    """Documents of the corpus (the demo reviews without a path)."""
    from ftui.adapt import load_corpus
    from ftui.config import AdaptConfig

    cfg = AdaptConfig(corpus_source="file", corpus=path) if path else AdaptConfig()
    return load_corpus(cfg).texts[:n]


def trainer_recipe(recipe: str, texts: list[str], args: argparse.Namespace, out: Path) -> dict:
    import datasets
    import torch
    from transformers import (
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from ftui.modeling import packaged_checkpoint

    torch.manual_seed(args.seed)
    ckpt = packaged_checkpoint()
    tok = AutoTokenizer.from_pretrained(ckpt)
    model = AutoModelForMaskedLM.from_pretrained(ckpt)
    ds = datasets.Dataset.from_dict({"text": texts})
    if recipe == "tutorial":
        ds = ds.map(lambda b: tok(b["text"], truncation=True, max_length=512, padding="max_length"), batched=True,
                    remove_columns=["text"])  # fmt: skip
        batch = 16
    else:
        ds = ds.map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
        block = args.block

        def group(b: dict) -> dict:
            ids = [t for row in b["input_ids"] for t in row]
            n = len(ids) // block * block
            blocks = [ids[i : i + block] for i in range(0, n, block)]
            return {"input_ids": blocks, "attention_mask": [[1] * block for _ in blocks]}

        ds = ds.map(group, batched=True, remove_columns=ds.column_names)
        batch = args.batch
    real_tokens = {"n": 0}

    class Clock(TrainerCallback):
        """Starts the clock after the first step (warm-up), counts steps."""

        def on_step_end(self, a, state, control, **kw):  # noqa: ANN001
            if state.global_step == 1:
                real_tokens["t0"] = time.perf_counter()

    collator = DataCollatorForLanguageModeling(tok, mlm_probability=0.15)
    targs = TrainingArguments(output_dir=str(out), per_device_train_batch_size=batch, max_steps=args.steps + 1,
                              learning_rate=5e-5, report_to=[], save_strategy="no", logging_strategy="no",
                              use_cpu=args.device == "cpu", seed=args.seed, dataloader_num_workers=0)  # fmt: skip
    trainer = Trainer(model=model, args=targs, train_dataset=ds, data_collator=collator, callbacks=[Clock()])
    trainer.train()
    seconds = time.perf_counter() - real_tokens["t0"]
    mask = ds["attention_mask"][: (args.steps + 1) * batch]
    per_sample = sum(map(sum, mask)) / max(1, len(mask))
    tokens_per_s = round(args.steps * batch * per_sample / seconds, 1)
    return {"samples_per_s": round(args.steps * batch / seconds, 2), "tokens_per_s": tokens_per_s, "batch": batch,
            "real_tokens_per_sample": round(per_sample, 1)}  # fmt: skip


def ftui_recipe(texts: list[str], args: argparse.Namespace, out: Path) -> dict:
    from ftui.config import AdaptConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    corpus = out / "corpus.txt"
    corpus.write_text("\n".join(t.replace("\n", " ") for t in texts))
    engine = Engine(runs_dir=out / "runs", hub_status=HubStatus(False, "offline"))
    cfg = RunConfig(
        train=TrainConfig(
            learning_rate=5e-5,
            batch_size=args.batch,
            max_length=args.block,
            max_steps=args.steps + 1,
            epochs=100,
            evals_per_epoch=1,
            seed=args.seed,
        ),  # fmt: skip
        kind="mlm",
        adapt=AdaptConfig(corpus_source="file", corpus=str(corpus), holdout=0.01),
    )
    run = engine.start_run(cfg)
    run.done.wait(3600)
    engine.join(60)
    r = run.result
    if run.status.value != "completed":
        raise SystemExit(f"ftui run failed: {run.error}")
    seconds = r["train_loop_seconds"]
    tokens = r["train_samples"] * args.block
    return {"samples_per_s": round(r["train_samples"] / seconds, 2), "tokens_per_s": round(tokens / seconds, 1),
            "batch": args.batch, "real_tokens_per_sample": args.block, "note": "includes its first step"}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=None, help="a corpus file (default: the bundled demo reviews)")
    p.add_argument("--docs", type=int, default=4000, help="documents used")
    p.add_argument("--steps", type=int, default=30, help="timed optimizer steps per recipe")
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--device", default="cpu")
    p.add_argument("--child", choices=["tutorial", "tuned_trainer", "ftui"])
    a = p.parse_args()
    if a.child:
        texts = corpus_texts(a.corpus, a.docs)
        with tempfile.TemporaryDirectory() as tmp:
            res = ftui_recipe(texts, a, Path(tmp)) if a.child == "ftui" else trainer_recipe(a.child, texts, a, Path(tmp))
        print(RESULT_TAG + json.dumps(res), flush=True)
        return
    results = {}
    for recipe in ("tutorial", "tuned_trainer", "ftui"):
        cmd = [sys.executable, __file__, "--child", recipe, *sys.argv[1:]]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        line = next((x for x in done.stdout.splitlines() if x.startswith(RESULT_TAG)), None)
        if line is None:
            raise SystemExit(f"{recipe} failed:\n{done.stderr[-3000:]}")
        results[recipe] = json.loads(line[len(RESULT_TAG) :])
        print(f"{recipe:>14}: {results[recipe]}", flush=True)
    ours = results["ftui"]["tokens_per_s"]
    print(json.dumps({"recipes": results, "ratio_vs_tutorial": round(ours / results["tutorial"]["tokens_per_s"], 2),
                      "ratio_vs_tuned_trainer": round(ours / results["tuned_trainer"]["tokens_per_s"], 2),
                      "unit": "real tokens per second of the training loop"}))  # fmt: skip


if __name__ == "__main__":
    main()
