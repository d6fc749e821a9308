"""Typed, frozen configuration for data, model and training, with validation that returns messages."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DATA_SOURCES = ("demo", "hub", "upload", "local")
MODEL_SOURCES = ("packaged", "hub", "local")
HEADS = ("auto", "mlp")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("one-phase", "two-phase")
CORPUS_SOURCES = ("demo", "file", "hub")
ADAPT_MODES = ("continue", "scratch")
PRESETS = ("tiny", "small", "base")
BASELINES = ("tfidf", "nbsvm", "embeddings")
LONG_TEXT = ("truncate", "head_tail", "chunks")  # how a text longer than max_length is read (ftui.batching)

# A Hub repo id: "name" or "owner/name", letters, digits, '-', '_', '.'; never a URL or a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


def is_hub_id(value: str) -> bool:
    """True when `value` is shaped like a Hub repo id (no scheme, no '..', no leading slash)."""
    return bool(_HUB_ID.match(value)) and ".." not in value


@dataclass(frozen=True)
class ReadLimits:
    """How much one data file or Hub split may hold; the deployment's settings pass these down to the readers."""

    max_bytes: int = field(default=500 * 2**20, metadata={"help": "largest file read (a Space's disk and memory are small)"})
    max_rows: int = field(default=0, metadata={"help": "rows read from one file or split; 0 = no cap"})


@dataclass(frozen=True)
class DataConfig:
    """Which rows to train on and how to read them."""

    source: str = field(default="demo", metadata={"help": "demo | hub | upload | local"})
    dataset_id: str = field(default="", metadata={"help": "Hub id, or a file/folder path for upload/local"})
    config_name: str | None = field(default=None, metadata={"help": "Hub config (glue needs one, e.g. 'sst2')"})
    train_split: str = field(default="train", metadata={"help": "split to train on"})
    validation_split: str | None = field(
        default=None, metadata={"help": "None: use one named validation/dev, else carve 10% of train"}
    )
    test_split: str | None = field(default=None, metadata={"help": "None: use one named test, else carve 10% of train"})
    text_columns: tuple[str, ...] = field(default=(), metadata={"help": "1 or 2 text columns; empty = detect"})
    label_column: str | None = field(default=None, metadata={"help": "label column; None = detect"})
    label_columns: tuple[str, ...] = field(
        default=(), metadata={"help": "multi-label from several 0/1 columns, one per label (instead of label_column)"}
    )
    task: str = field(
        default="auto",
        metadata={"help": "auto | single_label | multi_label | regression; auto reads it from the label column"},
    )
    max_train_examples: int = field(default=0, metadata={"help": "stratified cap on train rows for quick demos; 0 = all"})
    seed: int = field(default=42, metadata={"help": "seed for carving splits and subsets, so reruns match"})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "allow script datasets (loaded via the Hub's Parquet export)"}
    )
    uploaded_from: str = field(
        default="", metadata={"help": "a Jobs run's local data: the file or folder its copy on the bucket was made from"}
    )

    def key(self) -> tuple[Any, ...]:
        """Cache key: every field, hashable."""
        return tuple(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class ModelConfig:
    """Which checkpoint to start from and which of its parameters train."""

    source: str = field(default="packaged", metadata={"help": "packaged | hub | local"})
    checkpoint: str = field(default="", metadata={"help": "Hub id or local folder; ignored for packaged"})
    freeze_depth: int = field(
        default=0, metadata={"help": "0 trains all; k freezes embeddings + bottom k layers; N trains only the head"}
    )
    head: str = field(default="auto", metadata={"help": "auto = the model's own head; mlp = a small MLP head"})
    mlp_hidden: int = field(default=256, metadata={"help": "hidden width of the MLP head"})
    mlp_dropout: float = field(default=0.1, metadata={"help": "dropout inside the MLP head"})
    trust_remote_code: bool = field(default=False, metadata={"help": "run model code shipped in the repo"})
    allow_bin_weights: bool = field(
        default=False, metadata={"help": "accept pickle (.bin) weights when a checkpoint has no safetensors"}
    )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; defaults suit a small encoder on a CPU demo."""

    learning_rate: float = field(default=5e-5, metadata={"help": "peak AdamW learning rate"})
    batch_size: int = field(default=16, metadata={"help": "examples per optimizer micro-batch"})
    epochs: float = field(default=3.0, metadata={"help": "passes over train; fractions allowed"})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW decay, not applied to biases and norms"})
    warmup_ratio: float = field(default=0.1, metadata={"help": "share of steps with a linear warmup"})
    max_length: int = field(default=128, metadata={"help": "tokens kept per example; longer ones are cut"})
    seed: int = field(default=42, metadata={"help": "seed for head init, shuffling and dropout"})
    precision: str = field(default="auto", metadata={"help": "auto = bf16/fp16 on GPU, fp32 on CPU"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step"})
    evals_per_epoch: int = field(default=4, metadata={"help": "validation passes per epoch, so curves show early"})
    early_stopping_patience: int = field(default=0, metadata={"help": "stop after this many evals without improvement; 0 = off"})
    max_steps: int = field(default=0, metadata={"help": "stop after this many optimizer steps; 0 = run all epochs"})
    max_minutes: float = field(default=0.0, metadata={"help": "stop training after this many minutes; 0 = no limit"})
    frozen_cache: bool = field(
        default=True, metadata={"help": "reuse the frozen layers' outputs after their first pass instead of recomputing"}
    )
    schedule: str = field(
        default="one-phase",
        metadata={"help": "one-phase | two-phase: first train only the new head (transfer learning), then fine-tune"},
    )
    head_epochs: float = field(default=1.0, metadata={"help": "two-phase: epochs of the head-only phase"})
    head_learning_rate: float = field(
        default=1e-3, metadata={"help": "two-phase: learning rate of the head-only phase (a new head learns fast)"}
    )
    class_weights: str = field(
        default="none",
        metadata={"help": "none | balanced (inverse train frequency, for imbalanced data) | one weight per class: 1,3"},
    )
    long_text: str = field(
        default="truncate",
        metadata={"help": "truncate | head_tail (keep the start and the end) | chunks (overlapping windows, logits "
                  "averaged per text): how texts longer than max_length are read"},
    )  # fmt: skip
    threshold: float = field(
        default=0.5, metadata={"help": "multi-label: a label is predicted when its probability reaches this"}
    )
    tune_threshold: bool = field(
        default=True, metadata={"help": "multi-label: pick the threshold with the best validation micro-F1 after training"}
    )
    auto_baseline: bool = field(
        default=True,
        metadata={
            "help": "on data with no baseline yet, fit the TF-IDF baseline (seconds, on the CPU) beside this run: "
            "the score to beat, drawn on its chart"
        },
    )
    recommend: bool = field(
        default=True,
        metadata={"help": "apply the settings the data calls for (long texts, schedule, class weights; ftui.recommend) "
                  "where none was given"},
    )  # fmt: skip
    processes: int = field(
        default=1,
        metadata={"help": "data-parallel processes (one per GPU) training this run together with DDP; >1: the app "
                  "launches torchrun; under torchrun, its process count"},
    )  # fmt: skip
    run_name: str = field(default="", metadata={"help": "label for the run; empty = generated"})
    report_to: str = field(default="", metadata={"help": "extra metric sinks, comma-separated: tensorboard, trackio"})


@dataclass(frozen=True)
class AdaptConfig:
    """Masked-language-model pre-training: which texts, and whether to continue a checkpoint or start from scratch."""

    corpus_source: str = field(default="demo", metadata={"help": "demo | file (txt, one document per line; or a table) | hub"})
    corpus: str = field(default="", metadata={"help": "file path or Hub dataset id"})
    corpus_config: str | None = field(default=None, metadata={"help": "Hub dataset config"})
    corpus_split: str = field(default="train", metadata={"help": "Hub split (IMDB's 'unsupervised' has 50k unlabelled)"})
    text_column: str | None = field(default=None, metadata={"help": "text column of a table or Hub split; None = detect"})
    mode: str = field(default="continue", metadata={"help": "continue pre-training the checkpoint, or scratch"})
    mask_rate: float = field(default=0.15, metadata={"help": "share of tokens masked (BERT's 15%; 80/10/10 mask/random/keep)"})
    whole_word: bool = field(default=False, metadata={"help": "mask every piece of a chosen word together"})
    vocab_size: int = field(default=8000, metadata={"help": "scratch: WordPiece vocabulary size"})
    min_frequency: int = field(default=2, metadata={"help": "scratch: a piece must occur this often to enter the vocabulary"})
    lowercase: bool = field(default=True, metadata={"help": "scratch: lowercase before tokenizing (uncased model)"})
    preset: str = field(default="tiny", metadata={"help": "scratch: tiny | small | base (model size)"})
    holdout: float = field(default=0.05, metadata={"help": "share of documents held out for perplexity"})


SWEEP_METRICS = ("accuracy", "macro_f1", "micro_f1", "rmse", "spearman")  # validation metrics a sweep can rank by
LOWER_IS_BETTER = frozenset({"rmse"})  # an error, not a score


@dataclass(frozen=True)
class SweepRef:
    """Which sweep a run is a point of, and how the sweep judges its points."""

    sweep_id: str = field(default="", metadata={"help": "the sweep this run belongs to; empty = not part of a sweep"})
    point: tuple[tuple[str, str], ...] = field(
        default=(), metadata={"help": "the swept settings of this run as (field, value), for the sweep view"}
    )
    metric: str = field(
        default="accuracy",
        metadata={"help": "accuracy | macro_f1 | micro_f1 (multi-label) | rmse, spearman (regression): ranks and prunes"},
    )
    prune: bool = field(
        default=False,
        metadata={"help": "stop after the first evaluation when below the median of completed points (saves time)"},
    )


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines one training run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    kind: str = field(default="finetune", metadata={"help": "finetune | baseline: what the run trains"})
    baseline: str = field(
        default="",
        metadata={
            "help": "for a baseline: tfidf (word 1-2-grams + logistic regression) | nbsvm (word 1-2-grams scaled by "
            "naive-Bayes log-count ratios + logistic regression) | embeddings (the checkpoint's mean-pooled states + "
            "logistic regression)"
        },
    )
    adapt: AdaptConfig = field(default_factory=AdaptConfig, metadata={"help": "for kind 'mlm': corpus and recipe"})
    sweep: SweepRef = field(default_factory=SweepRef, metadata={"help": "set on the runs a sweep queues"})
    user: str = field(default="", metadata={"help": "the signed-in Hub user who asked for it ('' without sign-in): its owner"})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunConfig:
        """Inverse of to_dict; unknown keys are ignored so older run files still load."""
        data = _build(DataConfig, d.get("data", {}))
        if isinstance(data.text_columns, list):
            data = replace(data, text_columns=tuple(data.text_columns))
        if isinstance(data.label_columns, list):
            data = replace(data, label_columns=tuple(data.label_columns))
        return cls(
            data=data,
            model=_build(ModelConfig, d.get("model", {})),
            train=_build(TrainConfig, d.get("train", {})),
            kind=str(d.get("kind") or "finetune"),
            baseline=str(d.get("baseline") or ""),
            adapt=_build(AdaptConfig, d.get("adapt", {}) or {}),
            sweep=_sweep_ref(d.get("sweep") or {}),
            user=str(d.get("user") or ""),
        )


def _sweep_ref(d: dict[str, Any]) -> SweepRef:
    ref = _build(SweepRef, d)
    return replace(ref, point=tuple((str(k), str(v)) for k, v in ref.point))


def _build(kind: type, d: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    return kind(**{k: v for k, v in d.items() if k in names})


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int_in(errors: list[str], name: str, value: Any, lo: int, hi: int) -> None:
    if not _finite(value) or int(value) != value or not lo <= value <= hi:
        errors.append(f"{name} must be a whole number from {lo} to {hi} (got {value!r})")


def _float_in(errors: list[str], name: str, value: Any, lo: float, hi: float, lo_open: bool = False) -> None:
    ok = _finite(value) and (lo < value if lo_open else lo <= value) and value <= hi
    if not ok:
        bound = f"above {lo}" if lo_open else f"from {lo}"
        errors.append(f"{name} must be a number {bound} to {hi} (got {value!r})")


def validate_data(cfg: DataConfig) -> list[str]:
    """Messages for every problem in a data config; empty when it is usable."""
    errors: list[str] = []
    if cfg.source not in DATA_SOURCES:
        errors.append(f"data source must be one of {', '.join(DATA_SOURCES)} (got {cfg.source!r})")
    elif cfg.source == "hub":
        if not cfg.dataset_id.strip():
            errors.append("pick a Hub dataset id (e.g. 'cornell-movie-review-data/rotten_tomatoes'; CLI: --dataset)")
        elif not is_hub_id(cfg.dataset_id.strip()):
            errors.append(f"'{cfg.dataset_id}' is not a Hub dataset id: use 'owner/name', not a URL or a path")
    elif cfg.source in ("upload", "local"):
        if not cfg.dataset_id.strip():
            errors.append("give a file (CSV, JSON/JSONL, Parquet) or a dataset folder (CLI: --dataset PATH)")
        elif not Path(cfg.dataset_id).expanduser().exists():
            errors.append(f"no file or folder at '{cfg.dataset_id}'")
    if len(cfg.text_columns) > 2:
        errors.append("choose one text column, or two for sentence pairs (CLI: --text-column, twice for pairs)")
    from ftui.tasks import TASK_CHOICES

    if cfg.task not in TASK_CHOICES:
        errors.append(f"label shape must be one of {', '.join(TASK_CHOICES)} (got {cfg.task!r}; CLI: --task)")
    if cfg.label_columns:
        if len(cfg.label_columns) < 2 or len(cfg.label_columns) > 1000:
            errors.append(
                "choose at least two 0/1 label columns for multi-label (one per label; CLI: --label-columns a,b), or one "
                "label column (--label-column)"
            )
        elif len(set(cfg.label_columns)) != len(cfg.label_columns):
            errors.append("a label column is chosen twice")
        elif cfg.task not in ("auto", "multi_label"):
            errors.append(f"several 0/1 label columns make a multi-label task, not {cfg.task}")
    _int_in(errors, "max training examples", cfg.max_train_examples, 0, 10_000_000)
    _int_in(errors, "data seed", cfg.seed, 0, 2**31 - 1)
    return errors


def validate_model(cfg: ModelConfig) -> list[str]:
    """Messages for every problem in a model config; depth against N is checked once N is known."""
    errors: list[str] = []
    if cfg.source not in MODEL_SOURCES:
        errors.append(f"model source must be one of {', '.join(MODEL_SOURCES)} (got {cfg.source!r})")
    elif cfg.source == "hub":
        if not cfg.checkpoint.strip():
            errors.append("pick a Hub checkpoint id (e.g. 'distilbert/distilbert-base-uncased')")
        elif not is_hub_id(cfg.checkpoint.strip()):
            errors.append(f"'{cfg.checkpoint}' is not a Hub model id: use 'owner/name', not a URL or a path")
    elif cfg.source == "local":
        p = Path(cfg.checkpoint).expanduser()
        if not cfg.checkpoint.strip() or not p.is_dir():
            errors.append(f"no checkpoint folder at '{cfg.checkpoint}'")
        elif not (p / "config.json").exists():
            errors.append(f"'{cfg.checkpoint}' has no config.json: point at a saved transformers checkpoint")
    _int_in(errors, "freeze depth", cfg.freeze_depth, 0, 1000)
    if cfg.head not in HEADS:
        errors.append(f"head must be one of {', '.join(HEADS)} (got {cfg.head!r})")
    _int_in(errors, "MLP hidden size", cfg.mlp_hidden, 1, 65536)
    _float_in(errors, "MLP dropout", cfg.mlp_dropout, 0.0, 0.9)
    return errors


def parse_class_weights(spec: str) -> list[float] | None:
    """Custom weights from "1, 3.5" (None for the words none/balanced); ValueError when it is neither."""
    if not isinstance(spec, str):
        raise ValueError(spec)
    if spec.strip().lower() in ("", "none", "balanced"):
        return None
    weights = [float(x) for x in spec.replace(";", ",").split(",") if x.strip()]
    if not weights or any(not (0 < w <= 1000) for w in weights):
        raise ValueError(spec)
    return weights


def class_weight_problems(spec: Any) -> list[str]:
    """A message when the class-weight setting is neither none, balanced nor a list of positive numbers."""
    try:
        parse_class_weights(spec)
    except (ValueError, TypeError):
        return [f"class weights must be 'none', 'balanced' or one positive number per class like '1, 3' (got {str(spec)[:40]!r})"]
    return []


def validate_train(cfg: TrainConfig) -> list[str]:
    """Messages for every out-of-range hyperparameter."""
    errors: list[str] = []
    _float_in(errors, "learning rate", cfg.learning_rate, 0.0, 1.0, lo_open=True)
    _int_in(errors, "batch size", cfg.batch_size, 1, 4096)
    _float_in(errors, "epochs", cfg.epochs, 0.0, 1000.0, lo_open=True)
    _float_in(errors, "weight decay", cfg.weight_decay, 0.0, 1.0)
    _float_in(errors, "warmup ratio", cfg.warmup_ratio, 0.0, 0.5)
    _int_in(errors, "max sequence length", cfg.max_length, 8, 8192)
    _int_in(errors, "seed", cfg.seed, 0, 2**31 - 1)
    if cfg.precision not in PRECISIONS:
        errors.append(f"precision must be one of {', '.join(PRECISIONS)} (got {cfg.precision!r})")
    _int_in(errors, "gradient accumulation", cfg.grad_accum, 1, 1024)
    _int_in(errors, "evaluations per epoch", cfg.evals_per_epoch, 1, 100)
    _int_in(errors, "early-stopping patience", cfg.early_stopping_patience, 0, 1000)
    _int_in(errors, "max steps", cfg.max_steps, 0, 10_000_000)
    _float_in(errors, "max minutes", cfg.max_minutes, 0.0, 100_000.0)
    _int_in(errors, "processes", cfg.processes, 1, 1024)
    from ftui import sinks

    if not isinstance(cfg.report_to, str):
        errors.append("report_to must be text such as 'tensorboard'")
    else:
        for name in sinks.parse(cfg.report_to):
            if name not in sinks.SINKS:
                errors.append(f"unknown metric sink '{name}' (choose from {', '.join(sinks.SINKS)})")
            elif name not in sinks.available():
                errors.append(f"metric sink '{name}' is not installed (pip install {name})")
    errors += class_weight_problems(cfg.class_weights)
    _float_in(errors, "decision threshold", cfg.threshold, 0.0, 1.0, lo_open=True)
    if cfg.long_text not in LONG_TEXT:
        errors.append(f"long texts must be one of {', '.join(LONG_TEXT)} (got {cfg.long_text!r})")
    if not isinstance(cfg.tune_threshold, bool):
        errors.append(f"tune threshold must be true or false (got {cfg.tune_threshold!r})")
    if not isinstance(cfg.auto_baseline, bool):
        errors.append(f"automatic baseline must be true or false (got {cfg.auto_baseline!r})")
    if cfg.schedule not in SCHEDULES:
        errors.append(f"schedule must be one of {', '.join(SCHEDULES)} (got {cfg.schedule!r})")
    elif cfg.schedule == "two-phase":
        _float_in(errors, "head-phase epochs", cfg.head_epochs, 0.0, 1000.0, lo_open=True)
        _float_in(errors, "head-phase learning rate", cfg.head_learning_rate, 0.0, 1.0, lo_open=True)
    if not isinstance(cfg.recommend, bool):
        errors.append(f"recommend must be true or false (got {cfg.recommend!r})")
    if not isinstance(cfg.frozen_cache, bool):
        errors.append(f"frozen-layer cache must be true or false (got {cfg.frozen_cache!r})")
    if len(cfg.run_name) > 100 or any(c in cfg.run_name for c in "/\\\0"):
        errors.append("run name must be under 100 characters with no slashes")
    return errors


def validate_run(cfg: RunConfig) -> list[str]:
    """All messages for a whole run config."""
    from ftui.recipes import kind_problems  # the kinds' own rules live in their table (which builds on this module)

    errors = validate_data(cfg.data) + validate_model(cfg.model) + validate_train(cfg.train) + kind_problems(cfg)
    if cfg.sweep.metric not in SWEEP_METRICS:
        errors.append(f"sweep metric must be one of {', '.join(SWEEP_METRICS)} (got {cfg.sweep.metric!r})")
    return errors


def corpus_as_data(cfg: AdaptConfig) -> DataConfig:
    """A pre-training corpus as the dataset it is (for the deployment's dataset rules and the runs table)."""
    if cfg.corpus_source == "hub":
        return DataConfig(source="hub", dataset_id=str(cfg.corpus).strip(), config_name=cfg.corpus_config)
    if cfg.corpus_source == "file":
        return DataConfig(source="local", dataset_id=str(cfg.corpus).strip())
    return DataConfig()


def validate_adapt(cfg: AdaptConfig) -> list[str]:
    """Messages for every problem in a pre-training config."""
    errors: list[str] = []
    if cfg.corpus_source not in CORPUS_SOURCES:
        errors.append(f"corpus source must be one of {', '.join(CORPUS_SOURCES)} (got {cfg.corpus_source!r})")
    elif cfg.corpus_source == "hub" and not is_hub_id(str(cfg.corpus).strip()):
        errors.append(f"'{cfg.corpus}' is not a Hub dataset id: use 'owner/name'")
    elif cfg.corpus_source == "file" and not Path(str(cfg.corpus)).expanduser().is_file():
        errors.append(f"no corpus file at '{cfg.corpus}'")
    if cfg.mode not in ADAPT_MODES:
        errors.append(f"pre-training mode must be one of {', '.join(ADAPT_MODES)} (got {cfg.mode!r})")
    _float_in(errors, "mask rate", cfg.mask_rate, 0.0, 0.5, lo_open=True)
    _int_in(errors, "vocabulary size", cfg.vocab_size, 100, 200_000)
    _int_in(errors, "minimum frequency", cfg.min_frequency, 1, 1_000_000)
    if cfg.preset not in PRESETS:
        errors.append(f"model size must be one of {', '.join(PRESETS)} (got {cfg.preset!r})")
    _float_in(errors, "held-out share", cfg.holdout, 0.0, 0.5, lo_open=True)
    return errors
