"""The defaults table: each candidate default against the current one, on several real datasets, with 95% intervals.

Datasets (all real text; subsets and epoch caps keep the whole table under ~45 minutes on a 2-core CPU):
  short   rotten_tomatoes review snippets (about 27 tokens; none longer than the max length)
  long    the long documents of bench/long_text.py (24 snippets glued into ~500 words, the evidence spread through them)
  trec    question classes (6 coarse, imbalanced: ABBR is 1.6% of train; no validation split, so one is carved)
  multi   a multi-label set built from real trec questions: each row is one or two questions, its labels the fine
          classes of those questions (12 labels, 1-2 per row: sparse). Built here; no real sparse multi-label corpus
          is available offline.

Candidates against the defaults (truncate, one-phase, no class weights): head + tail, chunks (long set only), head
first then fine-tune (two-phase), and balanced class weights. A candidate that cannot change a dataset's input is not
run but marked as the same run (no text cut at the max length; every class weight exactly 1). Every cell is the test
score with its 95% interval (Wilson for accuracy, bootstrap for micro-F1) and, against the default on the same test
texts, the paired test (exact McNemar, paired bootstrap) and whether the difference is within noise. The last line is
JSON.

    python bench/defaults.py --data ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import common  # noqa: F401 - offline, quiet tokenizers, the repo importable
import numpy as np
import pandas as pd
from long_text import long_documents

DEFAULT = "default"
# candidate name -> TrainConfig fields it changes (against TrainConfig's defaults)
CANDIDATES: dict[str, dict[str, Any]] = {
    DEFAULT: {},
    "head_tail": {"long_text": "head_tail"},
    "chunks": {"long_text": "chunks"},
    "two_phase": {"schedule": "two-phase"},
    "two_phase+head_tail": {"schedule": "two-phase", "long_text": "head_tail"},
    "balanced": {"class_weights": "balanced"},
    "two_phase+balanced": {"schedule": "two-phase", "class_weights": "balanced"},
}
PLAN = {  # which candidates each dataset measures (chunks only where texts are long)
    "short": ["default", "head_tail", "two_phase", "balanced"],
    "long": ["default", "head_tail", "chunks", "two_phase", "two_phase+head_tail", "balanced"],
    "trec": ["default", "head_tail", "two_phase", "balanced"],
    "multi": ["default", "head_tail", "two_phase", "balanced", "two_phase+balanced"],
}


# ---------------------------------------------------------------------------------------------------- datasets
def build_short(src: Path, work: Path, train: int, val: int, seed: int) -> Path:
    """rotten_tomatoes with a stratified train subset, a smaller validation split (it only picks the better of the
    epochs) and the whole test split (the intervals' n)."""
    out = work / "short"
    out.mkdir(exist_ok=True)  # rebuilt the same (seeded) in a reused --work folder
    for split, n in (("train", train), ("validation", val), ("test", 0)):
        frame = pd.read_parquet(src / f"{split}.parquet")
        if n:
            frame = frame.groupby("label", group_keys=False).sample(n=n // 2, random_state=seed)
        frame.to_parquet(out / f"{split}.parquet")
    return out


def build_long(src: Path, work: Path, sizes: dict[str, int], seed: int) -> Path:
    """bench/long_text.py's documents: 24 snippets of one split each, 18 of the document's label."""
    out = work / "long"
    out.mkdir(exist_ok=True)
    for i, (split, n) in enumerate(sizes.items()):
        long_documents(pd.read_parquet(src / f"{split}.parquet"), n, 24, 18, seed + i).to_csv(out / f"{split}.csv", index=False)
    return out


def build_multi(trec: Path, work: Path, sizes: dict[str, int], labels: int, seed: int) -> Path:
    """Rows of one or two real trec questions (of different fine classes), labelled with their fine classes; the
    questions of each split are disjoint (drawn from trec's train set)."""
    rng = np.random.default_rng(seed)
    q = pd.read_parquet(trec / "train.parquet")
    top = q["fine_label"].value_counts().index[:labels]
    q = q[q["fine_label"].isin(top)].sample(frac=1.0, random_state=seed).reset_index(drop=True)
    total = sum(sizes.values())
    out = work / "multi"
    out.mkdir(exist_ok=True)
    start = 0
    for split, n in sizes.items():
        pool = q.iloc[start : start + int(len(q) * n / total)].reset_index(drop=True)
        start += len(pool)
        rows = []
        for _ in range(n):
            k = 1 if rng.random() < 0.5 else 2
            picked = pool.iloc[rng.choice(len(pool), k, replace=False)]
            names = sorted(set(picked["fine_label"]))
            rows.append({"text": " ".join(picked["text"]), "labels": names})
        pd.DataFrame(rows).to_json(out / f"{split}.jsonl", orient="records", lines=True)
    return out


# ---------------------------------------------------------------------------------------------------- scoring
def micro_f1_of(gold: np.ndarray, pred: np.ndarray) -> Callable[[np.ndarray], float]:
    """score(indices): micro-F1 of those rows' label sets."""

    def score(idx: np.ndarray) -> float:
        g, p = gold[idx], pred[idx]
        tp = float((g & p).sum())
        denom = 2 * tp + float((~g & p).sum()) + float((g & ~p).sum())
        return 2 * tp / denom if denom else 0.0

    return score


def label_sets(frame: pd.DataFrame, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(gold, predicted) 0/1 matrices of a multi-label predictions file."""
    names = [c[2:-1] for c in frame.columns if c.startswith("y(")]
    gold = frame[[f"y({n})" for n in names]].to_numpy(dtype=bool)
    pred = frame[[f"p({n})" for n in names]].to_numpy() >= threshold
    return gold, pred


def cell(run: Any, multi: bool) -> dict[str, Any]:
    """A run's test score, its 95% interval and what the comparison needs."""
    from ftui.significance import bootstrap_interval, read_predictions, wilson_interval

    frame = read_predictions(run.out_dir)
    r = run.result
    from ftui.advice import warnings_of

    out: dict[str, Any] = {"status": run.status.value, "error": run.error, "seconds": r.get("train_seconds"),
                           "train_rows": r.get("train_size"), "test_size": r.get("test_size"),
                           "warnings": sorted({w["kind"] for w in warnings_of(run.events())})}  # fmt: skip
    if frame is None:
        return out
    if multi:
        gold, pred = label_sets(frame, float(r.get("threshold", 0.5)))
        iv = bootstrap_interval(micro_f1_of(gold, pred), len(frame), "micro-F1")
        out.update(metric="micro-F1", macro_f1=r.get("test_macro_f1"), threshold=r.get("threshold"),
                   labels_per_row=round(float(pred.sum(1).mean()), 2))  # fmt: skip
        out["_sets"] = (gold, pred)
    else:
        iv = wilson_interval(frame["correct"].to_numpy())
        out.update(metric="accuracy", macro_f1=r.get("test_macro_f1"))
        out["_correct"] = frame["correct"].to_numpy(dtype=bool)
    out.update(value=round(iv.value, 4), low=round(iv.low, 4), high=round(iv.high, 4), test_size=len(frame))
    return out


def versus(c: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The paired test of a cell against the dataset's default on the same test texts."""
    from ftui.significance import paired_accuracy, paired_bootstrap

    if "_correct" in c and "_correct" in base:
        p = paired_accuracy(c["_correct"], base["_correct"])
    elif "_sets" in c and "_sets" in base:
        (gold, pa), (_, pb) = c["_sets"], base["_sets"]
        p = paired_bootstrap(micro_f1_of(gold, pa), micro_f1_of(gold, pb), len(gold), "micro-F1")
    else:
        return {}
    return {"diff": round(p.diff, 4), "diff_low": round(p.low, 4), "diff_high": round(p.high, 4), "p": round(p.p, 4),
            "noise": p.noise, "test": p.test}  # fmt: skip


# ------------------------------------------------------------------------------------------- when nothing changes
def cut_share(engine: Any, data: Any, model: Any, max_length: int) -> tuple[float, int]:
    """Share of train texts longer than the max length in the checkpoint's tokens (all of train), and how many."""
    from ftui.data_report import text_lengths

    bundle = engine.load_data(data)
    lengths, _ = text_lengths(bundle, engine.tokenizer(model), limit=len(bundle.splits["train"]))
    return sum(n > max_length for n in lengths) / len(lengths), len(lengths)


def unit_weights(engine: Any, data: Any) -> bool:
    """Whether balanced class weights are all exactly 1 on this train split (balanced classes: nothing changes)."""
    from ftui.data import LABEL
    from ftui.data_report import label_matrix
    from ftui.tasks import Task, class_weight_vector

    bundle = engine.load_data(data)
    train = bundle.splits["train"]
    labels = label_matrix(train) if bundle.task is Task.MULTI else np.asarray(train[LABEL])
    w = class_weight_vector("balanced", labels, bundle.label_names, bundle.task)
    return w is not None and bool(np.allclose(w.numpy(), 1.0))


def same_as_default(name: str, cut: float, unit: bool) -> str:
    """Why a candidate reads exactly the default's input here ('' when it does not)."""
    changes = CANDIDATES[name]
    if set(changes) == {"long_text"} and cut == 0.0:
        return "no train text is longer than the max length: the same input"
    if set(changes) == {"class_weights"} and unit:
        return "balanced classes: every weight is 1, the same loss"
    return ""


def done_before(engine: Any, cfg: Any) -> Any:
    """A completed run of exactly this config already in the working folder (--work), else None."""
    for run in engine.runs():
        if run.status.value == "completed" and run.config.to_dict() == cfg.to_dict():
            print(json.dumps({"type": "reused", "run": run.name, "run_id": run.run_id}), flush=True)
            return run
    return None


# ---------------------------------------------------------------------------------------------------- table
def fmt(c: dict[str, Any]) -> str:
    if "same" in c:
        return "= default"
    if "value" not in c:
        return f"{c.get('status')}"
    text = f"{c['value']:.3f} [{c['low']:.3f}–{c['high']:.3f}]"
    if "diff" in c:
        text += f" {100 * c['diff']:+.1f}{' ~' if c['noise'] else ' *'}"
    for other, p in c.get("vs", {}).items():  # a combination against its other half alone
        text += f" ({100 * p['diff']:+.1f}{' ~' if p['noise'] else ' *'} vs {other})"
    return text


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    names = [n for n in CANDIDATES if any(n in per for per in results.values())]
    sets = list(results)
    width = 38
    lines = ["candidate".ljust(22) + "".join(s.ljust(width) for s in sets)]
    for n in names:
        lines.append(n.ljust(22) + "".join(fmt(results[s][n]).ljust(width) if n in results[s] else "".ljust(width)
                                           for s in sets))  # fmt: skip
    lines.append(
        "cells: score [95% interval], points against the default (and against a combination's other half);"
        " ~ within noise (paired p >= 0.05), * not"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="../shared/data (rotten_tomatoes/ and trec/ inside)")
    p.add_argument("--sets", nargs="+", default=list(PLAN), choices=list(PLAN))
    p.add_argument("--short-train", type=int, default=800, help="rotten_tomatoes train rows (half of each label)")
    p.add_argument("--short-val", type=int, default=300, help="rotten_tomatoes validation rows (test: all 1,066)")
    p.add_argument("--long-train", type=int, default=160, help="long documents to train on")
    p.add_argument("--long-val", type=int, default=60)
    p.add_argument("--long-test", type=int, default=200)
    p.add_argument("--trec-train", type=int, default=1000, help="trec train rows (stratified), after carving validation")
    p.add_argument("--multi-rows", type=int, nargs=3, default=[600, 150, 300], help="train, validation, test rows")
    p.add_argument("--epochs", type=float, default=2.0, help="fine-tuning epochs (two-phase adds its head epoch)")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default="packaged", help="'packaged' (MiniLM) or a local checkpoint folder")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = torch's default (one per core)")
    p.add_argument("--work", default=None,
                   help="working folder (default: a new temporary one); a completed run already in it with the same "
                        "config is reused, so an interrupted table resumes where it stopped")  # fmt: skip
    a = p.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)  # on a shared, loaded machine fewer threads contend less

    from ftui.config import DataConfig, ModelConfig, RunConfig, TrainConfig
    from ftui.engine import Engine
    from ftui.hub import HubStatus

    root, work = Path(a.data), Path(a.work or tempfile.mkdtemp(prefix="ftui-defaults-"))
    work.mkdir(parents=True, exist_ok=True)
    splits = ("train", "validation", "test")
    build = {  # each set is built only when measured
        "short": lambda: DataConfig(source="local", seed=a.seed, dataset_id=str(build_short(
            root / "rotten_tomatoes", work, a.short_train, a.short_val, a.seed))),
        "long": lambda: DataConfig(source="local", seed=a.seed, dataset_id=str(build_long(
            root / "rotten_tomatoes", work, dict(zip(splits, (a.long_train, a.long_val, a.long_test), strict=True)),
            a.seed))),
        "trec": lambda: DataConfig(source="local", dataset_id=str(root / "trec"), text_columns=("text",),
                                   label_column="coarse_label", max_train_examples=a.trec_train, seed=a.seed),
        "multi": lambda: DataConfig(source="local", seed=a.seed, label_column="labels", dataset_id=str(build_multi(
            root / "trec", work, dict(zip(splits, a.multi_rows, strict=True)), 12, a.seed))),
    }  # fmt: skip
    engine = Engine(runs_dir=work / "runs", hub_status=HubStatus(False, "offline (bench)"))
    model = ModelConfig() if a.checkpoint == "packaged" else ModelConfig(source="local", checkpoint=a.checkpoint)
    base = TrainConfig(epochs=a.epochs, learning_rate=a.lr, max_length=a.max_length, evals_per_epoch=1, seed=a.seed)
    results: dict[str, dict[str, dict[str, Any]]] = {}
    facts: dict[str, dict[str, Any]] = {}
    t_all, load_start = time.perf_counter(), os.getloadavg()
    for name in a.sets:
        cfg_data = build[name]()
        bundle = engine.load_data(cfg_data)
        cut, measured = cut_share(engine, cfg_data, model, a.max_length)
        unit = unit_weights(engine, cfg_data)
        facts[name] = {"sizes": bundle.sizes, "task": bundle.task.value, "labels": len(bundle.label_names),
                       "cut_share": round(cut, 4), "measured_texts": measured, "balanced_weights_all_1": unit}  # fmt: skip
        print(json.dumps({"type": "dataset", "name": name, **facts[name]}), flush=True)
        multi = bundle.task.value == "multi_label"
        per: dict[str, dict[str, Any]] = {}
        for cand in PLAN[name]:
            why = same_as_default(cand, cut, unit)
            if why:
                per[cand] = {"same": why}
                print(json.dumps({"type": "cell", "set": name, "candidate": cand, "same": why}), flush=True)
                continue
            train = replace(base, **CANDIDATES[cand], run_name=f"{name}-{cand}")
            cfg = RunConfig(data=cfg_data, model=model, train=train)
            run = done_before(engine, cfg)
            if run is None:
                run = engine.start_run(cfg)
                run.done.wait()
                engine.join(60)
            per[cand] = cell(run, multi)
            if cand != DEFAULT:
                per[cand].update(versus(per[cand], per[DEFAULT]))
            rest = cand.partition("+")[2]
            if rest in per and "same" not in per[rest]:
                per[cand]["vs"] = {rest: versus(per[cand], per[rest])}
            shown = {k: v for k, v in per[cand].items() if not k.startswith("_")}
            print(json.dumps({"type": "cell", "set": name, "candidate": cand, **shown}), flush=True)
        results[name] = per
    print(table(results), flush=True)
    clean = {s: {n: {k: v for k, v in c.items() if not k.startswith("_")} for n, c in per.items()}
             for s, per in results.items()}  # fmt: skip
    summary = {"settings": {"epochs": a.epochs, "lr": a.lr, "max_length": a.max_length, "seed": a.seed,
                            "model": a.checkpoint}, "datasets": facts, "cells": clean,
               "wall_seconds": round(time.perf_counter() - t_all, 1), "cpus": os.cpu_count(),
               "load_start": [round(x, 2) for x in load_start],
               "load_end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    print(json.dumps(summary), flush=True)
    return summary


if __name__ == "__main__":
    main()
