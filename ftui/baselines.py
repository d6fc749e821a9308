"""Baselines recorded as runs: TF-IDF + logistic regression, NBSVM (naive-Bayes-scaled word n-grams + logistic
regression) and a frozen encoder's mean-pooled embeddings + logistic regression, each with its regularisation chosen
on the validation split and scored on the same test split as every run."""

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

from ftui import accel
from ftui.accel import pick_device
from ftui.batching import TokenCache, Tokenized, collate, eval_batches
from ftui.config import ModelConfig
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle
from ftui.errors import FtuiError, StopRequested
from ftui.events import EvalEvent, StartEvent, TestEvent
from ftui.files import replace_dir
from ftui.finetune import tokenized_splits
from ftui.metrics import compute_metrics
from ftui.modeling import load_encoder, load_tokenizer, mean_pool
from ftui.nbsvm import NBLogistic, nb_vectorizer
from ftui.predictions_file import save_predictions
from ftui.recipes import BAG_OF_WORDS
from ftui.run_layout import MODEL_DIR, PREDICTIONS_FILE
from ftui.runs import Run
from ftui.tasks import Task, TaskInfo
from ftui.train_state import Ending, Holdings, Outcome
from ftui.worker import run_worker

log = logging.getLogger(__name__)

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)  # inverse regularisation strengths tried on the validation split
PIPELINE_FILE = "baseline.joblib"
META_FILE = "ftui_baseline.json"
EMBED_BATCH = 64
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


def logistic(c: float, seed: int) -> Any:
    """The classifier on top of either featurisation."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=2000, random_state=seed)


def full_probabilities(clf: Any, x: Any, n_classes: int) -> np.ndarray:
    """predict_proba with a column for every class (a class absent from train gets probability 0)."""
    out = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    out[:, clf.classes_] = clf.predict_proba(x)
    return out


def choose_c(
    x_train: Any,
    y_train: np.ndarray,
    x_val: Any,
    y_val: np.ndarray,
    n_classes: int,
    seed: int,
    stop: Callable[[], bool],
    make: Callable[[float, int], Any] = logistic,
) -> tuple[Any, float, list[dict[str, float]]]:
    """The classifier whose C scores best on validation (accuracy, then macro-F1; the first of equals, the most
    regularised); with every C's scores."""
    best: tuple[tuple[float, float], Any, float] | None = None
    scores = []
    for c in C_GRID:
        if stop():
            raise StopRequested
        clf = make(c, seed).fit(x_train, y_train)
        m = compute_metrics(full_probabilities(clf, x_val, n_classes).argmax(-1).tolist(), y_val.tolist())
        scores.append({"C": c, **m})
        if best is None or (m["accuracy"], m["macro_f1"]) > best[0]:
            best = ((m["accuracy"], m["macro_f1"]), clf, c)
    assert best is not None
    return best[1], best[2], scores


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
    """A saved baseline as Predict uses it: the pipeline and, for embeddings, the encoder that makes its features."""

    info = TaskInfo()  # baselines are single-label classifiers

    def __init__(self, pipeline: Any, names: list[str], featurize: Callable[[list[str], int], Any] | None = None) -> None:
        self.pipeline, self.names, self.featurize = pipeline, list(names), featurize

    def probabilities(self, texts: list[str], max_length: int, batch_size: int, lock: threading.Lock) -> torch.Tensor:
        """(len(texts), classes) probabilities in the input order."""
        with lock:
            x = self.featurize(texts, max_length) if self.featurize else texts
            clf = self.pipeline.steps[-1][1]
            head = self.pipeline[:-1]
            return torch.from_numpy(full_probabilities(clf, head.transform(x), len(self.names))).float()


def load_baseline(model_dir: Path, device: str = "cpu") -> BaselineScorer:
    """A baseline run's saved model, ready to score texts."""
    import joblib

    meta = json.loads((model_dir / META_FILE).read_text())
    names = json.loads((model_dir / "labels.json").read_text())
    pipeline = joblib.load(model_dir / PIPELINE_FILE)
    if meta["baseline"] in BAG_OF_WORDS:
        return BaselineScorer(pipeline, names)
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

    return BaselineScorer(pipeline, names, featurize)


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
        if bundle.task is not Task.SINGLE:
            raise FtuiError(
                f"Baselines are single-label classifiers; this dataset is {bundle.task.label}.",
                "Fine-tune a transformer on it instead (Train tab); its curves and test metrics are the comparison.",
            )
        run.label_names = list(bundle.label_names)
        return Outcome(Ending.COMPLETED, result=train_baseline(run, bundle, token, device, token_cache))

    run_worker(run, body, device)


def train_baseline(
    run: Run, bundle: DataBundle, token: str | None, device: str, token_cache: TokenCache | None
) -> dict[str, Any]:
    """Fit one baseline, pick C on validation, test it, save it as the run's model with its test predictions; the
    completed run's result."""
    import joblib
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    cfg, kind = run.config, run.config.baseline
    make: Callable[[float, int], Any] = logistic
    stop = run.stop_event.is_set
    t0 = time.perf_counter()
    n_classes = len(bundle.label_names)
    labels = {s: np.asarray(bundle.splits[s][LABEL]) for s in ("train", "validation", "test")}
    run.log(StartEvent(total_steps=1, steps_per_epoch=1, device=device, train_size=len(labels["train"])))
    if kind == "tfidf":
        run.set_progress(phase="fitting TF-IDF")
        vec = tfidf_vectorizer()
        x = {"train": vec.fit_transform(texts_of(bundle.splits["train"]))}
        x.update({s: vec.transform(texts_of(bundle.splits[s])) for s in ("validation", "test")})
        first: Any = vec
    elif kind == "nbsvm":
        run.set_progress(phase="counting word 1-2-grams")
        vec = nb_vectorizer()
        x = {"train": vec.fit_transform(texts_of(bundle.splits["train"]))}
        x.update({s: vec.transform(texts_of(bundle.splits[s])) for s in ("validation", "test")})
        first, make = vec, NBLogistic
    else:
        run.set_progress(phase="loading model")
        tokenizer = load_tokenizer(cfg.model, token)
        encoder = load_encoder(cfg.model, token).to(device)
        run.set_progress(phase="tokenizing")
        enc = tokenized_splits(run, bundle, tokenizer, token, token_cache, stop)
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        run.set_progress(phase="embedding (frozen encoder, once)")
        amp = accel.inference_dtype(cfg.train.precision, device)  # GPU: the run's mixed precision
        feats = {s: embed(encoder, enc[s], pad_id, device, stop, amp) for s in ("train", "validation", "test")}
        del encoder
        first = StandardScaler().fit(feats["train"])
        x = {s: first.transform(f) for s, f in feats.items()}
    run.set_progress(phase="choosing C on validation")
    clf, c, scores = choose_c(x["train"], labels["train"], x["validation"], labels["validation"], n_classes,
                              cfg.train.seed, stop, make)  # fmt: skip
    val_probs = full_probabilities(clf, x["validation"], n_classes)
    val = compute_metrics(val_probs.argmax(-1).tolist(), labels["validation"].tolist())
    val_loss = _log_loss(val_probs, labels["validation"])
    run.log(EvalEvent(step=1, epoch=1.0, eval_loss=val_loss, eval_accuracy=val["accuracy"], eval_macro_f1=val["macro_f1"],
                      phase="baseline"))  # fmt: skip
    run.set_progress(phase="testing")
    test_probs = full_probabilities(clf, x["test"], n_classes)
    test = compute_metrics(test_probs.argmax(-1).tolist(), labels["test"].tolist())
    pipeline = Pipeline([("features", first), ("logistic", clf)])
    meta = {"baseline": kind, "C": c, "max_length": cfg.train.max_length, "model": asdict(cfg.model),
            "precision": cfg.train.precision}  # fmt: skip

    def write(tmp: Path) -> None:
        joblib.dump(pipeline, tmp / PIPELINE_FILE)
        (tmp / "labels.json").write_text(json.dumps(bundle.label_names))
        (tmp / META_FILE).write_text(json.dumps(meta))

    replace_dir(run.out_dir / MODEL_DIR, write)
    try:
        save_predictions(run.out_dir / PREDICTIONS_FILE, bundle.splits["test"], test_probs, bundle.label_names)
    except Exception as exc:  # noqa: BLE001 - the analysis file is a bonus; the run's metrics stand without it
        log.warning("could not save test predictions: %s", exc)
    test_loss = _log_loss(test_probs, labels["test"])
    run.log(TestEvent(step=1, test_loss=test_loss, test_accuracy=test["accuracy"], test_macro_f1=test["macro_f1"]))
    return {
        "test_accuracy": test["accuracy"],
        "test_macro_f1": test["macro_f1"],
        "test_loss": test_loss,
        "best_eval": {"accuracy": val["accuracy"], "macro_f1": val["macro_f1"], "loss": val_loss, "step": 1},
        "model_dir": str(run.out_dir / MODEL_DIR),
        "train_seconds": round(time.perf_counter() - t0, 2),
        "device": device,
        "train_size": int(len(labels["train"])),
        "val_size": int(len(labels["validation"])),
        "test_size": int(len(labels["test"])),  # the intervals' n
        "C": c,
        "c_scores": scores,
        "steps": 1,
    }


def _log_loss(probs: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0)))) if len(y) else 0.0
