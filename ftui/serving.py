"""Prediction for the Predict tab and the API: which models are offered, loading them by version, bounded batches."""

from __future__ import annotations

import gc
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ftui import accel
from ftui.baselines import NAMES, is_baseline, load_baseline
from ftui.config import ModelConfig, RunConfig
from ftui.errors import DataError, FtuiError, ModelError
from ftui.explain import Explanation, Method, explain
from ftui.files import DownloadFolder, FileTooLarge, recover_dir
from ftui.modeling import build_model, load_classifier, load_tokenizer
from ftui.onnx_export import ONNX_DIR, REPORT_FILE, OnnxReport, export_run, has_export, load_scorer
from ftui.predict import CPU_MODELS, GPU_MODELS, Predictor, TransformerScorer, int8_loader, texts_from_lines, texts_from_table
from ftui.readers import read_table
from ftui.recipes import recipe_of
from ftui.run_layout import MODEL_DIR, PREDICTIONS_FILE, has_classifier
from ftui.runner import RUN_ID_RE, RunManager
from ftui.runs import RunStatus
from ftui.settings import Settings
from ftui.tasks import Task, TaskInfo, read_task

log = logging.getLogger(__name__)

MAX_EXAMPLES = 8  # example texts offered in the Predict tab (multi-label has one per label set, which can be many)
MAX_BATCH_TEXTS = 10_000  # one batch prediction; bounds memory and the time one call holds a model
CSV_TEXT_CHARS = 2_000  # a text in the predictions CSV; the model read at most its first 512 tokens or so
BIG_REQUEST_CHARS = 1_000_000  # after a prediction call this large, freed memory goes back to the system
RUNTIMES: dict[str, str] = {  # how Predict runs a model: key -> what the UI calls it
    "pytorch": "PyTorch",
    "pytorch-int8": "PyTorch, dynamic int8 copy (CPU)",
    "onnx": "ONNX Runtime (CPU; needs the run's ONNX export)",
    "onnx-int8": "ONNX Runtime int8 (CPU; needs the run's ONNX export)",
}


def admit_model(settings: Settings, cfg: ModelConfig) -> None:
    """ModelError when the deployment forbids touching this checkpoint (allowlist, remote code)."""
    if not isinstance(cfg, ModelConfig):
        raise ModelError("No checkpoint was given.", "Pick one in the Model tab.")
    problems = settings.admit_model(cfg)
    if problems:
        text = "; ".join(problems)
        raise ModelError(text[:1].upper() + text[1:] + ".", "")


def release_memory() -> None:
    """Give freed memory back to the system after a big request: glibc keeps freed heap pages otherwise, so one large
    batch would leave the app gigabytes bigger for good."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError) as exc:  # not glibc (macOS, musl): nothing to trim
        log.debug("malloc_trim unavailable: %s", exc)


def model_version(model_dir: Path) -> str:
    """Changes whenever a model folder is replaced (a new best checkpoint, a resumed run's end): the prediction cache
    keys on it, so nobody is served yesterday's weights."""
    try:
        labels = (model_dir / "labels.json").stat()
        return f"{model_dir.stat().st_ino}-{labels.st_mtime_ns}"
    except OSError:
        return "missing"


def model_version_file(path: Path) -> str:
    """A file's version (inode and modification time): changes when it is rewritten."""
    try:
        st = path.stat()
        return f"{st.st_ino}-{st.st_mtime_ns}"
    except OSError:
        return "missing"


def data_at_hand(cfg: RunConfig) -> tuple[Any, ...]:
    """What makes two runs' validation and test sets the same (the dataset, its columns, splits and seed), whatever
    else differs (the train subset, the checkpoint): runs with equal keys are ranked against each other."""
    d = cfg.data
    return (d.source, d.dataset_id.strip(), d.config_name, d.validation_split, d.test_split, tuple(d.text_columns),
            d.label_column, tuple(d.label_columns), d.task, d.seed)  # fmt: skip


def _primary(result: dict[str, Any]) -> Task:
    return Task(result.get("task") or Task.SINGLE.value)


def validation_rank(run: Any) -> tuple[float, float]:
    """Sort key, best first: the validation primary metric of the run's label shape (accuracy, micro-F1, RMSE),
    then the lower validation loss; runs without a finite score last."""
    task = _primary(run.result)
    best = run.result.get("best_eval") or {}
    score, loss = best.get(task.primary), best.get("loss")
    if not isinstance(score, (int, float)) or not math.isfinite(score):
        return (math.inf, math.inf)
    sign = -1.0 if task.higher_is_better else 1.0
    return (sign * float(score), float(loss) if isinstance(loss, (int, float)) and math.isfinite(loss) else math.inf)


def val_text(result: dict[str, Any]) -> str:
    """How a completed run reads in the picker: what it is, its validation score (what ranks it), its test score."""
    task = _primary(result)
    best = (result.get("best_eval") or {}).get(task.primary)
    name = {"accuracy": "val acc", "micro_f1": "val micro-F1", "rmse": "val RMSE"}[task.primary]
    val = f"{name} {best:{'.4g' if task is Task.REGRESSION else '.3f'}}" if isinstance(best, (int, float)) else "no val score"
    return f"{val}{score_text(result)}"


def _has_model(run: Any) -> bool:
    return has_classifier(run.out_dir)


def _entries(run: Any, what: str) -> list[tuple[str, str]]:
    """A run's picker entries: itself (a baseline labelled as one), and a fine-tuned run's base checkpoint."""
    recipe = recipe_of(run.config)
    if not recipe.serves_base:
        return [(f"{run.name} (baseline: {NAMES.get(run.config.baseline, '?')}, {what})", f"run:{run.run_id}")]
    return [(f"{run.name} (fine-tuned, {what})", f"run:{run.run_id}"),
            (f"{run.name} — base checkpoint before fine-tuning", f"base:{run.run_id}")]  # fmt: skip


def score_text(result: dict[str, Any]) -> str:
    """A finished run's test score for the model picker: accuracy, micro-F1 (multi-label) or RMSE (regression)."""
    for key, name, fmt in (("test_rmse", "test RMSE", ".4g"), ("test_micro_f1", "test micro-F1", ".3f"),
                           ("test_accuracy", "test acc", ".3f")):  # fmt: skip
        if isinstance(result.get(key), (int, float)):
            return f", {name} {result[key]:{fmt}}"
    return ""


class PredictionService:
    """The models Predict offers (from the runs), each loaded once per version of its folder, and bounded scoring."""

    def __init__(self, manager: RunManager, settings: Settings, device: str) -> None:
        self.manager = manager
        self.settings = settings
        self.device = device
        self.predictor = Predictor(GPU_MODELS if device == "cuda" else CPU_MODELS)  # GPU memory is training's
        self.downloads = DownloadFolder(max_bytes=int(settings.max_downloads_mb * 2**20))

    def choices(self, visible: Callable[[Any], bool] = lambda _: True) -> list[tuple[str, str]]:
        """(label, key) for each run with a saved model. First (the default) the completed runs on the data at hand
        (the newest completed run's data), best validation score first, baselines among them and labelled so; a
        newer, weaker run never displaces a better one (test scores are shown, never used to pick). Then other
        completed runs newest first, a training run's best checkpoint so far, and stopped/interrupted/failed runs,
        each labelled; each fine-tuned run followed by its base checkpoint. Only the runs `visible` lets through."""
        groups: dict[str, list[tuple[str, str]]] = {"ranked": [], "completed": [], "live": [], "other": []}
        runs = [r for r in reversed(self.manager.runs()) if visible(r)]
        completed = [r for r in runs if r.status == RunStatus.COMPLETED and _has_model(r)]
        at_hand = data_at_hand(completed[0].config) if completed else None
        ranked = sorted((r for r in completed if data_at_hand(r.config) == at_hand), key=validation_rank)
        for run in ranked:
            groups["ranked"].extend(_entries(run, ("best on this data, " if run is ranked[0] else "") + val_text(run.result)))
        for run in runs:
            if run in ranked or not _has_model(run):
                continue
            status = run.status
            if status == RunStatus.COMPLETED:
                what, group = val_text(run.result), "completed"
            elif not status.finished:
                best = run.snapshot(events=False).progress.best_eval_accuracy if not run.remote else None
                val = f", val acc {best:.3f}" if isinstance(best, (int, float)) else ""
                what, group = f"training now: best checkpoint so far{val}", "live"
            elif not recipe_of(run.config).serves_partial:
                continue
            else:
                what, group = f"{status.value} early: best checkpoint before it ended", "other"
            groups[group].extend(_entries(run, what))
        return groups["ranked"] + groups["completed"] + groups["live"] + groups["other"]

    def versioned(self, key: str) -> tuple[str, Any]:
        """(cache key with the model folder's version, loader); drops cached older versions of the same model."""
        kind, _, run_id = key.partition(":")
        run = self.manager.get(run_id) if kind in ("run", "base") and RUN_ID_RE.fullmatch(run_id) else None
        if run is None:
            raise FtuiError(f"Unknown model '{key}'.", "Pick a model from the list (press Refresh after a run ends).")
        model_dir = run.out_dir / MODEL_DIR
        amp = accel.inference_dtype(run.config.train.precision, self.device)  # the run's mixed precision, on a GPU
        if not (model_dir / "labels.json").exists() and not self.manager.training() and not run.remote:
            recover_dir(model_dir)  # a swap its process did not finish (killed mid-save)
        if not (model_dir / "labels.json").exists():
            raise FtuiError(f"Run '{run.name}' has no saved model.", "Pick a finished run.")
        baseline = is_baseline(model_dir)
        if kind == "base" and baseline:
            raise FtuiError(f"Run '{run.name}' is a baseline: it has no base checkpoint.", "Pick the run itself.")
        if kind == "base":
            admit_model(self.settings, run.config.model)  # the base checkpoint is loaded afresh: today's rules apply

            def load_base() -> TransformerScorer:
                gen = torch.Generator().manual_seed(run.config.train.seed)  # the same head init the run started from
                task = read_task(model_dir).task
                model = build_model(run.config.model, run.label_names, generator=gen, task=task)
                return TransformerScorer(model.to(self.device).eval(), load_tokenizer(run.config.model),
                                         list(run.label_names), TaskInfo(task), amp)  # fmt: skip

            return key, load_base
        version = model_version(model_dir)
        self.predictor.forget_prefix(key + "@", keep=f"{key}@{version}")
        if baseline:
            if run.config.baseline == "embeddings":
                admit_model(self.settings, run.config.model)  # its encoder is loaded afresh to make features
            return f"{key}@{version}", lambda: load_baseline(model_dir, self.device)
        trust = run.config.model.trust_remote_code
        if trust:
            admit_model(self.settings, run.config.model)  # its own code runs again on load: today's rules apply
        return f"{key}@{version}", lambda: TransformerScorer(
            *load_classifier(model_dir, self.device, trust), read_task(model_dir), amp
        )

    def task_info(self, model_key: str | None = None) -> TaskInfo:
        """How a model's scores read (class probabilities, label probabilities and a threshold, or a value)."""
        key, loader = self.versioned(self.default_key(model_key))
        return self.predictor.get(key, loader).scorer.info

    def predict(self, text: str, model_key: str | None = None, runtime: str = "pytorch") -> dict[str, float]:
        """Class probabilities for one text, from a run (default: the newest) or its base checkpoint."""
        if not isinstance(text, str) or not text.strip():
            raise FtuiError("There is no text to classify.", "Type a review in the box.")
        return self.predict_many([text], model_key, runtime=runtime)[0]

    def default_key(self, model_key: str | None) -> str:
        """The model a request means: the one asked for (type-checked), else the default choice."""
        if model_key is not None and not isinstance(model_key, str):
            raise FtuiError(f"'{str(model_key)[:100]}' is not a model choice.", "Pick a model from the list, or leave it empty.")
        if model_key:
            return model_key
        choices = self.choices()  # only here: it checks every run's folder
        if not choices:
            raise FtuiError("No trained model yet.", "Train one in the Train tab, then press Refresh here.")
        return choices[0][1]

    def _runtime(self, model_key: str, runtime: str) -> tuple[str, Any]:
        """(cache key, loader) for a model under a runtime (see RUNTIMES)."""
        if runtime not in RUNTIMES:
            raise FtuiError(f"Unknown runtime '{str(runtime)[:40]}'.", f"Use one of: {', '.join(RUNTIMES)}.")
        key, loader = self.versioned(model_key)
        if runtime == "pytorch" or self.device != "cpu" and runtime == "pytorch-int8":
            return key, loader  # int8 copies are a CPU speed-up; a GPU serves fp32/bf16 faster
        if runtime == "pytorch-int8":
            return f"{key}#int8", int8_loader(loader)
        kind, _, run_id = model_key.partition(":")
        run = self.manager.get(run_id)
        if kind != "run" or run is None or not recipe_of(run.config).onnx:
            raise FtuiError("ONNX Runtime serves fine-tuned runs only.", "Pick a fine-tuned run, or the PyTorch runtime.")
        int8 = runtime == "onnx-int8"
        if not has_export(run.out_dir, int8):
            raise FtuiError(
                f"Run '{run.name}' has no ONNX export{' with an int8 copy' if int8 else ''}.",
                "Export it first (Runs tab: Export to ONNX), or use the PyTorch runtime.",
            )
        version = model_version_file(run.out_dir / ONNX_DIR / REPORT_FILE)
        prefix = f"onnx:{run.run_id}#{runtime}"
        self.predictor.forget_prefix(prefix + "@", keep=f"{prefix}@{version}")
        return f"{prefix}@{version}", lambda: load_scorer(run.out_dir, int8)

    def check_batch(self, texts: Any) -> None:
        """A batch this deployment takes: a non-empty list of texts within the count and character caps."""
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise FtuiError("Batch prediction takes a list of texts.", "Give one review per line or a CSV with a text column.")
        if not texts:
            raise FtuiError("There is no text to classify.", "Give one review per line or a CSV with a text column.")
        if len(texts) > MAX_BATCH_TEXTS:
            raise FtuiError(
                f"{len(texts):,} texts is more than one batch prediction takes ({MAX_BATCH_TEXTS:,}).", "Split the file."
            )
        chars = sum(map(len, texts))
        if chars > self.settings.max_batch_chars:
            raise FtuiError(
                f"These texts hold {chars:,} characters, more than one batch prediction takes here "
                f"({self.settings.max_batch_chars:,}).",
                "Split the file into smaller parts.",
            )

    def predict_many(
        self, texts: list[str], model_key: str | None = None, int8: bool = False, runtime: str = "pytorch"
    ) -> list[dict[str, float]]:
        """Class probabilities for many texts (batched, similar lengths together), in the input order.

        runtime (a RUNTIMES key) picks PyTorch, its dynamic int8 copy on CPU, or ONNX Runtime (fp32 or int8) on a
        run's checked export; int8=True is the older spelling of "pytorch-int8". Bounded: at most MAX_BATCH_TEXTS
        texts and settings.max_batch_chars characters per call; each text is cut to what the model can read before
        it is tokenized.
        """
        self.check_batch(texts)
        model_key = self.default_key(model_key)
        key, loader = self._runtime(model_key, "pytorch-int8" if int8 and runtime == "pytorch" else runtime)
        run = self.manager.get(model_key.partition(":")[2])
        max_length = run.config.train.max_length if run else 256
        try:
            return self.predictor.predict(key, loader, texts, max_length=max_length)
        except FtuiError:
            raise
        except Exception as exc:  # a damaged or deleted model folder must not break the tab
            self.predictor.forget(key)
            raise FtuiError(
                f"Could not run the model '{model_key}' ({type(exc).__name__}: {str(exc)[:200]}).",
                "Pick another model, or train again.",
            ) from exc
        finally:
            if sum(map(len, texts)) > BIG_REQUEST_CHARS:
                release_memory()

    def explain(
        self, text: str, model_key: str | None = None, method: Method = "ig", text_pair: str | None = None
    ) -> Explanation:
        """Token attributions for the predicted class of a fine-tuned run (or its base checkpoint)."""
        if not isinstance(text, str) or not text.strip():
            raise FtuiError("There is no text to explain.", "Type a review in the box.")
        model_key = self.default_key(model_key)
        key, loader = self.versioned(model_key)
        run = self.manager.get(model_key.partition(":")[2])
        entry = self.predictor.get(key, loader)
        if not isinstance(entry.scorer, TransformerScorer):
            raise FtuiError(
                "Explanations need a transformer: this model is a baseline.",
                "Pick a fine-tuned run (a TF-IDF model's weights per word are in its exported pipeline).",
            )
        sc = entry.scorer
        with entry.lock:  # the model is shared with Predict; gradients must not interleave with another call
            return explain(sc.model, sc.tokenizer, sc.names, text, text_pair,
                           max_length=run.config.train.max_length if run else 256, method=method,
                           task=sc.info.task, amp=sc.amp)  # fmt: skip

    def export_onnx(self, run_id: str, int8: bool = True) -> OnnxReport:
        """Export a finished fine-tuned run to ONNX (and int8), checked on its test set; kept in the run folder."""
        run = self.manager.require(run_id)
        if not recipe_of(run.config).onnx:
            raise FtuiError(f"Run '{run.name}' is not a fine-tuned classifier.", "Export a fine-tuned run to ONNX.")
        if not run.status.finished or run.remote:
            raise FtuiError(f"Run '{run.name}' is still training.", "Export it when it has finished.")
        model_dir = run.out_dir / MODEL_DIR
        if not (model_dir / "labels.json").exists():
            raise FtuiError(f"Run '{run.name}' has no saved model.", "Export a run that trained.")
        info = read_task(model_dir)
        if info.task is not Task.SINGLE:
            raise FtuiError(
                f"Run '{run.name}' is {info.task.label}: the ONNX export covers single-label classifiers.",
                "Serve it with the PyTorch runtime, or download its model folder (Runs tab: Export) for transformers.",
            )
        if info.long_text != "truncate":
            raise FtuiError(
                f"Run '{run.name}' reads long texts as '{info.long_text}': the ONNX export covers runs that cut texts "
                "at their max length.",
                "Serve it with the PyTorch runtime, which reads texts the way the run was trained.",
            )
        import pandas as pd

        try:
            frame = pd.read_parquet(run.out_dir / PREDICTIONS_FILE)
        except (OSError, ValueError) as exc:
            raise FtuiError(f"Run '{run.name}' has no test predictions to check an export against.",
                            "Export a run that completed its test.") from exc  # fmt: skip
        if run.config.model.trust_remote_code:
            admit_model(self.settings, run.config.model)
        model, tokenizer, names = load_classifier(model_dir, "cpu", run.config.model.trust_remote_code)
        index = {n: i for i, n in enumerate(names)}
        gold = [index.get(str(x), -1) for x in frame["label"]]
        pairs = frame["text_pair"].astype(str).tolist() if "text_pair" in frame.columns else None
        report = export_run(model, tokenizer, names, frame["text"].astype(str).tolist(), gold,
                            run.config.train.max_length, run.out_dir / ONNX_DIR, int8=int8, pairs=pairs)  # fmt: skip
        self.predictor.forget_prefix(f"onnx:{run.run_id}#")
        return report

    def examples(self, model_key: str | None, fallback: list[str], max_chars: int = 300) -> list[str]:
        """Example texts for the Predict tab: one per class from the chosen run's own test set (the most confidently
        right), so a movie model gets movie reviews; `fallback` when the run has none."""
        import pandas as pd

        run_id = model_key.partition(":")[2] if isinstance(model_key, str) else ""
        run = self.manager.get(run_id) if RUN_ID_RE.fullmatch(run_id) else None
        path = run.out_dir / PREDICTIONS_FILE if run else None
        try:
            frame = pd.read_parquet(path, columns=["text", "label", "correct", "confidence"]) if path else None
        except (OSError, ValueError) as exc:
            log.info("no test predictions for examples (%s): %s", model_key, exc)
            frame = None
        if frame is None or frame.empty:
            return list(fallback)
        if pd.api.types.is_float_dtype(frame["label"]):  # regression: well-predicted texts across the target's range
            good = frame[frame["correct"]].sort_values("label", kind="stable")
            good = good if len(good) else frame.sort_values("label", kind="stable")
            picks = good.iloc[sorted({round(q * (len(good) - 1)) for q in (0.0, 1 / 3, 2 / 3, 1.0)})]["text"].tolist()
        else:
            frame = frame.sort_values(["correct", "confidence"], ascending=False)
            picks = frame.groupby("label", sort=True).head(1)["text"].tolist()[:MAX_EXAMPLES]
        return [t if len(t) <= max_chars else t[:max_chars] + " …" for t in picks]

    def predictions_file(self, frame: pd.DataFrame) -> Path:
        """The batch's predictions as a CSV in the downloads folder (under its byte budget), each text cut to
        CSV_TEXT_CHARS characters (about what a 512-token model reads), so one huge text is not stored whole."""
        cut = frame.assign(text=[t if len(t) <= CSV_TEXT_CHARS else t[:CSV_TEXT_CHARS] + " …" for t in frame["text"]])
        try:
            return self.downloads.write("predictions.csv", lambda path: cut.to_csv(path, index=False))
        except FileTooLarge as exc:
            raise FtuiError(f"The predictions file would be too large ({exc}).", "Predict fewer texts at once.") from None

    def batch_texts(self, lines: str | None, path: str | None) -> list[str]:
        """The texts of a batch request: an uploaded file (one review per line in .txt, else a table with a text
        column, read under the deployment's caps) or typed lines."""
        if path:
            p = Path(path)
            if p.suffix.lower() == ".txt":
                limit = self.settings.read_limits().max_bytes
                if p.stat().st_size > limit:
                    raise DataError(f"'{p.name}' is larger than {limit / 2**20:,.0f} MB.", "Split the file.")
                return texts_from_lines(p.read_text(errors="replace"))
            return texts_from_table(read_table(p, self.settings.read_limits()))
        return texts_from_lines(lines or "")
