"""Baselines recorded as runs: TF-IDF, NBSVM (naive-Bayes-scaled word n-grams, single-label only) or a frozen encoder's
mean-pooled embeddings as features, under the label shape's estimator (logistic regression; one-vs-rest with a tuned
threshold for label sets; ridge for numbers: ftui.baseline_heads), its regularisation chosen on the validation split,
scored on the same test split as every run."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ftui import accel, tasks
from ftui.accel import pick_device
from ftui.baseline_heads import C_GRID as C_GRID  # where tests and older callers look for the grid
from ftui.baseline_heads import ESTIMATORS, fit_head, loss, outputs
from ftui.batching import TokenCache, Tokenized, collate, eval_batches
from ftui.config import ModelConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.data_report import label_matrix
from ftui.errors import FtuiError, StopRequested
from ftui.events import EvalEvent, StartEvent, TestEvent
from ftui.files import replace_dir
from ftui.finetune import tokenized_splits
from ftui.modeling import load_encoder, load_tokenizer, mean_pool
from ftui.nbsvm import NBLogistic, nb_vectorizer
from ftui.predictions_file import save_predictions
from ftui.recipes import BAG_OF_WORDS
from ftui.run_layout import MODEL_DIR, PREDICTIONS_FILE
from ftui.runs import Run
from ftui.significance import micro_f1_result
from ftui.tasks import Task, TaskInfo, read_task, save_task
from ftui.train_state import Ending, Holdings, Outcome
from ftui.worker import run_worker

log = logging.getLogger(__name__)

PIPELINE_FILE = "baseline.joblib"
META_FILE = "ftui_baseline.json"
EMBED_BATCH = 64
SPLITS = ("train", "validation", "test")
NAMES = {
    "tfidf": "TF-IDF + logistic regression",
    "nbsvm": "NBSVM (NB log-count ratios + logistic regression)",
    "embeddings": "frozen embeddings + logistic regression",
}


def texts_of(ds: Any) -> list[str]:
    """A split's texts; a sentence pair becomes one text with a separator (bag-of-words models read both)."""
    if TEXT_PAIR in ds.column_names:
        return [f"{a} [SEP] {b}" for a, b in zip(ds[TEXT], ds[TEXT_PAIR], strict=True)]
    return list(ds[TEXT])


def tfidf_vectorizer() -> Any:
    """Word 1-2-grams, sublinear term frequency: the classic strong text-classification baseline."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1)


@torch.no_grad()
def embed(
    encoder: torch.nn.Module,
    tok: Tokenized,
    pad_id: int,
    device: str,
    stop: Callable[[], bool],
    amp: torch.dtype | None = None,
) -> np.ndarray:
    """Mean-pooled last hidden states of every row of a tokenized split, in the split's order, computed once in
    length-sorted batches (the same batching as training); under `amp` autocast on a GPU."""
    encoder.eval()
    width = getattr(encoder.config, "hidden_size", None) or getattr(encoder.config, "dim", None)
    out = np.zeros((len(tok), int(width)), dtype=np.float32)
    for idx in eval_batches(tok.lengths, EMBED_BATCH):
        if stop():
            raise StopRequested
        batch = collate(tok, idx, pad_id, device)
        batch.pop("labels")
        with accel.autocast(device, amp if device == "cuda" else None):
            states = encoder(**batch).last_hidden_state
        out[idx] = mean_pool(states, batch["attention_mask"]).float().cpu().numpy()
    return out


class BaselineScorer:
    """A saved baseline as Predict uses it: the pipeline and, for embeddings, the encoder that makes its features;
    `info` says how its outputs read (class or label probabilities, or a value)."""

    def __init__(self, pipeline: Any, names: list[str], featurize: Callable[[list[str], int], Any] | None = None,
                 info: TaskInfo | None = None) -> None:  # fmt: skip
        self.pipeline, self.names, self.featurize = pipeline, list(names), featurize
        self.info = info or TaskInfo()  # baselines saved before label shapes are single-label

    def probabilities(self, texts: list[str], max_length: int, batch_size: int, lock: threading.Lock) -> torch.Tensor:
        """(len(texts), outputs) scores in the input order (ftui.tasks.scores)."""
        with lock:
            x = self.featurize(texts, max_length) if self.featurize else texts
            clf = self.pipeline.steps[-1][1]
            head = self.pipeline[:-1]
            width = 1 if self.info.task is Task.REGRESSION else len(self.names)
            return torch.from_numpy(outputs(self.info.task, clf, head.transform(x), width)).float()


def load_baseline(model_dir: Path, device: str = "cpu") -> BaselineScorer:
    """A baseline run's saved model, ready to score texts."""
    import joblib

    meta = json.loads((model_dir / META_FILE).read_text())
    names = json.loads((model_dir / "labels.json").read_text())
    pipeline = joblib.load(model_dir / PIPELINE_FILE)
    info = read_task(model_dir)
    if meta["baseline"] in BAG_OF_WORDS:
        return BaselineScorer(pipeline, names, info=info)
    cfg = ModelConfig(**meta["model"])
    encoder, tokenizer = load_encoder(cfg).to(device).eval(), load_tokenizer(cfg)
    amp = accel.inference_dtype(meta.get("precision", "auto"), device)  # as the training features were made

    @torch.no_grad()
    def featurize(texts: list[str], max_length: int) -> np.ndarray:
        rows = []
        for start in range(0, len(texts), EMBED_BATCH):
            part = [t[: max_length * 16] for t in texts[start : start + EMBED_BATCH]]
            batch = tokenizer(part, truncation=True, max_length=meta["max_length"], padding=True, return_tensors="pt")
            batch = {k: v.to(device) for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with accel.autocast(device, amp):
                states = encoder(**batch).last_hidden_state
            rows.append(mean_pool(states, batch["attention_mask"]).float().cpu().numpy())
        return np.concatenate(rows)

    return BaselineScorer(pipeline, names, featurize, info)


def is_baseline(model_dir: Path) -> bool:
    """True when a run's model folder holds a baseline pipeline rather than a transformer."""
    return (model_dir / META_FILE).exists()


def baseline_run(
    run: Run, load_bundle: Callable[[], DataBundle], token: str | None = None, token_cache: TokenCache | None = None
) -> None:
    """Worker body of a baseline run (the same lifecycle as a fine-tuning run); never raises."""
    device = pick_device()

    def body(holdings: Holdings) -> Outcome:
        bundle = load_bundle()
        if bundle.task is not Task.SINGLE and run.config.baseline == "nbsvm":  # NB log-count ratios need classes
            raise FtuiError(
                f"NBSVM is a baseline for single-label classes; this dataset is {bundle.task.label}.",
                "Run the TF-IDF or the embeddings baseline instead (CLI: --kind tfidf): both fit multi-label and "
                "regression data.",
            )
        run.label_names = list(bundle.label_names)
        return Outcome(Ending.COMPLETED, result=train_baseline(run, bundle, token, device, token_cache))

    run_worker(run, body, device)


def split_labels(bundle: DataBundle) -> dict[str, np.ndarray]:
    """Each split's targets as the shape's estimator reads them: class indices, a 0/1 matrix, or numbers."""
    if bundle.task is Task.MULTI:
        return {s: label_matrix(bundle.splits[s]) for s in SPLITS}
    dtype = np.float64 if bundle.task is Task.REGRESSION else np.int64
    return {s: np.asarray(bundle.splits[s][LABEL], dtype=dtype) for s in SPLITS}


def featurize(run: Run, bundle: DataBundle, token: str | None, device: str, token_cache: TokenCache | None,
              stop: Callable[[], bool]) -> tuple[dict[str, Any], Any]:  # fmt: skip
    """The three splits as the baseline's features, and the fitted first step of its pipeline."""
    from sklearn.preprocessing import StandardScaler

    cfg, kind = run.config, run.config.baseline
    if kind in BAG_OF_WORDS:
        run.set_progress(phase="fitting TF-IDF" if kind == "tfidf" else "counting word 1-2-grams")
        vec = tfidf_vectorizer() if kind == "tfidf" else nb_vectorizer()
        x = {"train": vec.fit_transform(texts_of(bundle.splits["train"]))}
        x.update({s: vec.transform(texts_of(bundle.splits[s])) for s in ("validation", "test")})
        return x, vec
    run.set_progress(phase="loading model")
    tokenizer = load_tokenizer(cfg.model, token)
    encoder = load_encoder(cfg.model, token).to(device)
    run.set_progress(phase="tokenizing")
    enc = tokenized_splits(run, bundle, tokenizer, token, token_cache, stop)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    run.set_progress(phase="embedding (frozen encoder, once)")
    amp = accel.inference_dtype(cfg.train.precision, device)  # GPU: the run's mixed precision
    feats = {s: embed(encoder, enc[s], pad_id, device, stop, amp) for s in SPLITS}
    del encoder
    scaler = StandardScaler().fit(feats["train"])
    return {s: scaler.transform(f) for s, f in feats.items()}, scaler


def train_baseline(
    run: Run, bundle: DataBundle, token: str | None, device: str, token_cache: TokenCache | None
) -> dict[str, Any]:
    """Fit one baseline, pick its regularisation (and, multi-label, its threshold) on validation, test it, save it as
    the run's model with its test predictions; the completed run's result."""
    import joblib
    from sklearn.pipeline import Pipeline

    cfg, task, t = run.config, bundle.task, run.config.train
    stop = run.stop_event.is_set
    t0 = time.perf_counter()
    width = 1 if task is Task.REGRESSION else len(bundle.label_names)
    y = split_labels(bundle)
    run.set_progress(task=task.value)
    run.log(StartEvent(total_steps=1, steps_per_epoch=1, device=device, train_size=len(y["train"])))
    x, first = featurize(run, bundle, token, device, token_cache, stop)
    param = "alpha" if task is Task.REGRESSION else "C"
    run.set_progress(phase=f"choosing {param} on validation" + (" (and the threshold)" if task is Task.MULTI else ""))
    fit = fit_head(task, x, y, width, t.seed, stop, NBLogistic if cfg.baseline == "nbsvm" else None, t.threshold,
                   t.tune_threshold)  # fmt: skip
    val = tasks.metrics(task, fit.val_out, y["validation"], fit.threshold)
    val_loss = loss(task, fit.val_out, y["validation"])
    run.log(EvalEvent(step=1, epoch=1.0, eval_loss=val_loss, phase="baseline", **{f"eval_{k}": v for k, v in val.items()}))
    run.set_progress(phase="testing")
    test_out = outputs(task, fit.model, x["test"], width)
    test = {f"test_{k}": v for k, v in tasks.metrics(task, test_out, y["test"], fit.threshold).items()}
    if task is Task.MULTI:
        test["threshold"] = fit.threshold
    pipeline = Pipeline([("features", first), (ESTIMATORS[task][0], fit.model)])
    info = TaskInfo(task, fit.threshold, threshold_tuned=task is Task.MULTI and t.tune_threshold)
    meta = {"baseline": cfg.baseline, param: fit.value, "max_length": t.max_length,
            "model": asdict(cfg.model), "precision": t.precision}  # fmt: skip

    def write(tmp: Path) -> None:
        joblib.dump(pipeline, tmp / PIPELINE_FILE)
        (tmp / "labels.json").write_text(json.dumps(bundle.label_names))
        save_task(tmp, info)
        (tmp / META_FILE).write_text(json.dumps(meta))

    replace_dir(run.out_dir / MODEL_DIR, write)
    try:
        save_predictions(run.out_dir / PREDICTIONS_FILE, bundle.splits["test"], test_out, bundle.label_names, info)
    except Exception as exc:  # noqa: BLE001 - the analysis file is a bonus; the run's metrics stand without it
        log.warning("could not save test predictions: %s", exc)
    test_loss = loss(task, test_out, y["test"])
    run.log(TestEvent(step=1, test_loss=test_loss, **test))
    return {
        **test,
        "task": task.value,
        "test_loss": test_loss,
        **(micro_f1_result(y["test"] >= 0.5, test_out >= fit.threshold) if task is Task.MULTI else {}),
        "best_eval": {**val, "loss": val_loss, "step": 1},
        "model_dir": str(run.out_dir / MODEL_DIR),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "device": device,
        "train_size": int(len(y["train"])),
        "val_size": int(len(y["validation"])),
        "test_size": int(len(y["test"])),  # the intervals' n
        param: fit.value,
        f"{param.lower()}_scores": fit.scores,
        "estimator": ESTIMATORS[task][1],
        "steps": 1,
    }
