"""The engine facade the UI and CLI call: deployment rules, data, models, runs (through RunManager), prediction."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ftui import export, hub, scaleout
from ftui.accel import default_batch_size, pick_device
from ftui.adapt import adapted_checkpoints, corpus_preview, load_corpus
from ftui.batching import TokenCache
from ftui.config import (
    AdaptConfig,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    corpus_as_data,
    validate_adapt,
    validate_data,
    validate_model,
)
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle, load_data
from ftui.data_report import text_lengths
from ftui.distributed import SOLO, Dist
from ftui.errors import ConfigError, DataError, FtuiError, HubError, ModelError
from ftui.explain import Explanation
from ftui.hub import HubStatus
from ftui.launcher import Launcher
from ftui.metrics import compute_metrics
from ftui.model_card import ModelSummary, summarize
from ftui.modeling import default_learning_rate, display_name, load_tokenizer
from ftui.onnx_export import OnnxReport, has_export, read_report
from ftui.run_layout import PREDICTIONS_FILE
from ftui.runner import QueuedRun, RunManager
from ftui.runs import Run
from ftui.serving import PredictionService, admit_model
from ftui.settings import Settings
from ftui.store import Store
from ftui.sweeps import SweepConfig
from ftui.tasks import TaskInfo

log = logging.getLogger(__name__)

DEMO_MESSAGE = "This deployment serves predictions only."
ONLINE_DATASET = "cornell-movie-review-data/rotten_tomatoes"
ONLINE_CHECKPOINT = "distilbert/distilbert-base-uncased"
MAX_NOTE_CHARS = 2000


def _quiet_libraries() -> None:
    """Progress bars and load reports from transformers/datasets would flood the server log."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def map_labels(theirs: list[str], ours: list[str]) -> dict[str, int] | None:
    """Map another model's label names onto ours: by name (case-insensitive), else LABEL_i / same count by index."""
    low = {n.lower(): i for i, n in enumerate(ours)}
    if all(t.lower() in low for t in theirs):
        return {t: low[t.lower()] for t in theirs}
    if len(theirs) == len(ours):
        return {t: i for i, t in enumerate(theirs)}
    return None


def _token_key(token: str | None) -> str:
    # Cache entries loaded with a token stay private to that token.
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


def _sentence(problems: list[str]) -> str:
    text = "; ".join(problems)
    return text[:1].upper() + text[1:] + "."


class Engine:
    """One app's state, as small services behind one facade: deployment settings (applied at every entry point),
    caches, the runs (RunManager), and prediction."""

    def __init__(
        self,
        runs_dir: str | Path | None = None,
        hub_status: HubStatus | None = None,
        settings: Settings | None = None,
        adopt_queue: bool = False,
        dist: Dist = SOLO,
    ) -> None:
        """adopt_queue: this is the app: start the runs a previous process of the app left queued, and train one run
        at a time in the folder (the CLI does neither: a `train` command never runs someone else's queue).
        dist: this process is rank 0 of a torchrun run."""
        _quiet_libraries()
        self.settings = settings if settings is not None else Settings.from_env()
        self.runs_dir = Path(runs_dir or os.environ.get("FTUI_RUNS_DIR") or Path.cwd() / "runs").resolve()
        self.hub = hub_status or hub.check_hub()
        if not self.hub.online:
            hub.go_offline()
        else:
            from ftui import metrics

            # evaluate fetches its metric scripts from the Hub: do it now, not at the first evaluation.
            threading.Thread(target=metrics.backend, name="ftui-evaluate-load", daemon=True).start()
        self.device = pick_device()
        self._cache_lock = threading.Lock()
        self._data_cache: OrderedDict[tuple[Any, ...], DataBundle] = OrderedDict()
        self._summary_cache: dict[tuple[Any, ...], ModelSummary] = {}
        self._tokenizers: dict[tuple[Any, ...], Any] = {}
        self.token_cache = TokenCache()
        self.store = Store(self.runs_dir, network=self.settings.network_storage)
        if not self.store.read_only:  # before the runs load: a killed orphan's run then reads as interrupted
            scaleout.end_orphans(self.runs_dir, self.store.unfinished_ids())
        self.manager = RunManager(self.runs_dir, self.store, max_queue=self.settings.max_queue, wait_for_others=adopt_queue)
        self.launcher = Launcher(
            self.manager, self.settings, self.runs_dir, self.token_cache, self.load_data, self._check_model_fits,
            dist, offline=not self.hub.online,
        )  # fmt: skip
        self.serving = PredictionService(self.manager, self.settings, self.device)
        self.predictor = self.serving.predictor  # the model cache, shared with baselines (score_checkpoint)
        self.notices = [n for n in (self.store.notice, self._read_only_notice()) if n]
        if adopt_queue and not self.settings.demo and not self.store.read_only:
            self.manager.adopt()

    def _read_only_notice(self) -> str:
        if not self.store.read_only:
            return ""
        return (
            f"Read-only: {self.store.read_only}. Runs can be viewed and used for predictions, not trained or changed. "
            "Set FTUI_RUNS_DIR to a writable folder and restart."
        )

    # ------------------------------------------------------------------------------------------------ defaults
    def default_data(self) -> DataConfig:
        """Hub movie reviews online; the bundled demo offline."""
        return DataConfig(source="hub", dataset_id=ONLINE_DATASET) if self.hub.online else DataConfig()

    def default_model(self) -> ModelConfig:
        """A DistilBERT online; the packaged MiniLM offline."""
        return ModelConfig(source="hub", checkpoint=ONLINE_CHECKPOINT) if self.hub.online else ModelConfig()

    def default_train(self) -> TrainConfig:
        """Training settings for the default checkpoint (its learning rate, the device's batch size; the rest are
        TrainConfig's defaults)."""
        return TrainConfig(learning_rate=default_learning_rate(self.default_model()), batch_size=default_batch_size(self.device))

    def device_label(self) -> str:
        """The device training will use, in words."""
        if self.device == "cuda":
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return f"CPU ({os.cpu_count()} cores; no GPU found)"

    # ------------------------------------------------------------------------------------- deployment rules
    # Every entry point that reads a dataset or touches a checkpoint goes through these two, so an allowlist or the
    # remote-code switch cannot be bypassed by calling a hidden event or the API directly.
    def _admit_model(self, cfg: ModelConfig) -> None:
        admit_model(self.settings, cfg)

    def _admit_data(self, cfg: DataConfig) -> None:
        if not isinstance(cfg, DataConfig):
            raise DataError("No dataset was given.", "Pick one in the Data tab (CLI: --dataset).")
        problems = self.settings.admit_data(cfg)
        if problems:
            raise DataError(_sentence(problems), "")

    def _full_mode(self) -> None:
        if self.settings.demo:
            raise FtuiError(DEMO_MESSAGE, "Duplicate this Space (or run ftui locally) to train and manage runs.")

    def _writable(self) -> None:
        self._full_mode()
        if self.store.read_only:
            raise FtuiError(f"The runs folder is read-only ({self.store.read_only}).", "Set FTUI_RUNS_DIR to a writable folder.")

    # ---------------------------------------------------------------------------------------------------- hub
    def _need_hub(self) -> None:
        if not self.hub.online:
            raise HubError(
                f"{hub.OFFLINE_MESSAGE}.",
                "Use the bundled demo / packaged checkpoint or a local path; type a cached id directly.",
            )

    def search_datasets(self, query: str, token: str | None = None) -> list[str]:
        """Hub text-classification datasets for a query, most downloaded first."""
        self._need_hub()
        return hub.search_datasets(query, token=token)

    def search_models(self, query: str, token: str | None = None) -> list[str]:
        """Hub fill-mask / text-classification checkpoints for a query."""
        self._need_hub()
        return hub.search_models(query, token=token)

    def dataset_configs(self, dataset_id: str, token: str | None = None) -> list[str]:
        """Config names of a Hub dataset (works offline for cached datasets)."""
        cfg = DataConfig(source="hub", dataset_id=str(dataset_id or ""))
        problems = validate_data(cfg)
        if problems:
            raise HubError(problems[0] + ".", "")
        self._admit_data(cfg)
        return hub.dataset_configs(cfg.dataset_id.strip(), token)

    def dataset_splits(self, dataset_id: str, config: str | None, token: str | None = None) -> list[str]:
        """Split names of a Hub dataset config."""
        cfg = DataConfig(source="hub", dataset_id=str(dataset_id or ""), config_name=config)
        problems = validate_data(cfg)
        if problems:
            raise HubError(problems[0] + ".", "")
        self._admit_data(cfg)
        return hub.dataset_splits(cfg.dataset_id.strip(), config, token)

    # ------------------------------------------------------------------------------------------- data, model
    def load_data(self, cfg: DataConfig, token: str | None = None) -> DataBundle:
        """Prepared data for a config, cached (per token) so preview and training share one load."""
        self._admit_data(cfg)
        key = (*cfg.key(), _token_key(token))
        with self._cache_lock:
            if key in self._data_cache:
                self._data_cache.move_to_end(key)
                return self._data_cache[key]
        bundle = load_data(cfg, token, self.settings.read_limits())
        with self._cache_lock:
            self._data_cache[key] = bundle
            while len(self._data_cache) > 4:
                self._data_cache.popitem(last=False)
        return bundle

    def model_summary(self, cfg: ModelConfig, token: str | None = None) -> ModelSummary:
        """Architecture and parameter counts (no weights read), cached."""
        if isinstance(cfg, ModelConfig):
            self._admit_model(cfg)  # before validating, which looks at the disk: a refused path is never probed
        problems = validate_model(cfg) if isinstance(cfg, ModelConfig) else []
        if problems:
            raise ModelError("; ".join(problems) + ".", "")
        key = (cfg.source, cfg.checkpoint, cfg.head, cfg.mlp_hidden, cfg.trust_remote_code, _token_key(token))
        if key not in self._summary_cache:
            self._summary_cache[key] = summarize(cfg, token)
        return self._summary_cache[key]

    def tokenizer(self, cfg: ModelConfig, token: str | None = None) -> Any:
        """The checkpoint's tokenizer, cached (for token-length previews)."""
        self._admit_model(cfg)
        key = (cfg.source, cfg.checkpoint, cfg.trust_remote_code, _token_key(token))
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(cfg, token)
        return self._tokenizers[key]

    def text_lengths(self, data: DataConfig, model: ModelConfig, token: str | None = None) -> tuple[list[int], str]:
        """Lengths of a sample of train texts: in the checkpoint's tokens, or in words when its tokenizer is refused or
        cannot be loaded."""
        bundle = self.load_data(data, token)
        try:
            tokenizer = self.tokenizer(model, token)
        except FtuiError as exc:
            log.info("lengths in words: %s", exc)
            tokenizer = None
        return text_lengths(bundle, tokenizer)

    # ---------------------------------------------------------------------------------------------------- runs
    def start_run(self, cfg: RunConfig, token: str | None = None) -> Run | QueuedRun:
        """Validate (settings' caps and the checkpoint included), then train in a background thread, or queue the run
        when one is training (QueueFull past the queue cap). A baseline config fits its baseline instead."""
        self._writable()
        return self.launcher.start_run(cfg, token)

    def start_baselines(self, cfg: RunConfig, token: str | None = None) -> list[Run | QueuedRun]:
        """ "Run baselines": TF-IDF + logistic regression, NBSVM, then frozen embeddings + logistic regression, as runs
        (each queued behind the one before)."""
        self._writable()
        return self.launcher.start_baselines(cfg, token)

    def resume_run(self, run_id: str, token: str | None = None) -> Run:
        """Continue a stopped or interrupted run from its last snapshot, in the same record."""
        self._writable()
        return self.launcher.resume_run(run_id, token)

    def adopt_run(self, run_id: str, token: str | None = None, resume: bool = False) -> Run:
        """Train here a run another process created and handed over (the app's torchrun child does, as rank 0)."""
        self._writable()
        return self.launcher.adopt_run(run_id, token, resume)

    def max_processes(self) -> int:
        """How many data-parallel processes a run may use here (1 = only the app's own thread)."""
        from ftui.scaleout import available_processes

        return max(1, available_processes(self.settings.cpu_processes))

    # ------------------------------------------------------------------------------------------------- queue
    def queued(self) -> list[QueuedRun]:
        """Runs waiting for the training slot, in the order they start."""
        return self.manager.queued()

    def cancel_queued(self, item_id: str) -> QueuedRun:
        """Take a waiting run off the queue."""
        self._writable()
        return self.manager.cancel(item_id)

    def move_queued(self, item_id: str, delta: int) -> bool:
        """Move a waiting run up (-1) or down (+1)."""
        self._writable()
        if delta not in (-1, 1):
            raise FtuiError(f"A queued run moves one place up or down (got {delta!r}).", "Use Up or Down.")
        return self.manager.move(item_id, delta)

    def clear_queue(self) -> int:
        """Take every run this app queued off the queue; the training run goes on."""
        self._writable()
        return self.manager.clear()

    # ------------------------------------------------------------------------------------------------- sweeps
    def plan_sweep(self, base: RunConfig, sweep: SweepConfig, token: str | None = None) -> list[RunConfig]:
        """Every point of a sweep as a checked run config; ConfigError lists every problem (each field or point named)."""
        return self.launcher.plan_sweep(base, sweep, token)

    def start_sweep(self, base: RunConfig, sweep: SweepConfig, token: str | None = None) -> list[QueuedRun]:
        """Queue one run per point of the sweep (all or none); the first starts at once when nothing trains."""
        self._writable()
        return self.launcher.start_sweep(base, sweep, token)

    def sweep_ids(self) -> list[str]:
        """Sweep ids of the stored runs and the queue, newest first."""
        return self.launcher.sweep_ids()

    def sweep_table(self, sweep_id: str, metric: str = "accuracy") -> list[dict[str, Any]]:
        """One sweep's runs, best validation score first, plus its points still queued."""
        return self.launcher.sweep_table(sweep_id, metric)

    def _check_model_fits(self, cfg: RunConfig, token: str | None) -> None:
        """The checkpoint loads, and the freeze depth and schedule make sense for it (before a thread starts)."""
        summary = self.model_summary(cfg.model, token)
        depth = cfg.model.freeze_depth
        if cfg.kind == "finetune" and depth and not summary.freeze_supported:
            raise ModelError(f"Freeze depth is not supported for '{summary.model_type}' models.", "Set freeze depth to 0.")
        if cfg.kind == "finetune" and cfg.train.schedule == "two-phase" and not summary.freeze_supported:
            raise ModelError(
                f"'Head first, then fine-tune' needs a per-layer encoder, which '{summary.model_type}' models lack here.",
                "Choose the one-phase schedule.",
            )
        if depth > summary.num_layers:
            raise ConfigError([f"freeze depth must be 0 to {summary.num_layers} for this checkpoint (got {depth})"])
        if summary.max_length and cfg.kind != "baseline" and cfg.train.max_length > summary.max_length:
            # Caught here, not mid-run (an index error) or worse, in Predict on the first long review.
            raise ConfigError(
                [f"max sequence length {cfg.train.max_length} is more than {summary.name} can read "
                 f"({summary.max_length} tokens): set it to {summary.max_length} or less in the Train tab"]
            )  # fmt: skip
        if cfg.kind == "finetune" and cfg.train.schedule == "two-phase" and depth >= summary.num_layers:
            raise ConfigError(
                [f"with freeze depth {depth} of {summary.num_layers} the fine-tune phase would train only the head again: "
                 "lower the freeze depth, or choose the one-phase schedule"]
            )  # fmt: skip

    def preview_corpus(self, cfg: AdaptConfig, model: ModelConfig, block: int, token: str | None = None) -> dict[str, Any]:
        """Documents, tokens (in the checkpoint's tokenizer when continuing), blocks, duplicates of a corpus."""
        if isinstance(cfg, AdaptConfig):
            self._admit_data(corpus_as_data(cfg))  # before validating, which looks at the disk
        problems = validate_adapt(cfg)
        if problems:
            raise DataError(_sentence(problems), "")
        corpus = load_corpus(cfg, self.settings.read_limits(), token)
        tokenizer = self.tokenizer(model, token) if cfg.mode == "continue" else None
        return {"name": corpus.name, **corpus_preview(corpus, tokenizer, block)}

    def adapted_checkpoints(self) -> list[tuple[str, str]]:
        """(label, folder) of completed masked-LM runs: checkpoints a classifier run can start from."""
        return adapted_checkpoints(self.runs())

    def stop_run(self) -> Run | None:
        """Ask the current run to stop; returns it (None when nothing runs)."""
        return self.manager.stop()

    def join(self, timeout: float) -> bool:
        """Wait for the worker thread; True when it has ended."""
        return self.manager.join(timeout)

    def current_run(self) -> Run | None:
        """The latest run started in this process (running or not)."""
        return self.manager.current()

    def runs(self) -> list[Run]:
        """All known runs, oldest first (other processes' runs included, from the store)."""
        return self.manager.runs()

    def get_run(self, run_id: str) -> Run | None:
        """A run by id."""
        return self.manager.get(run_id) if isinstance(run_id, str) else None

    # --------------------------------------------------------------------------------------------- experiments
    def rename_run(self, run_id: str, name: str) -> Run:
        """Give a run a new display name."""
        name = (name or "").strip() if isinstance(name, str) else ""
        if not name or len(name) > 100 or any(c in name for c in "/\\\0"):
            raise FtuiError("A run name needs 1 to 100 characters and no slashes.", "Type another name.")
        self._writable()
        return self.manager.set_meta(run_id, name=name)

    def set_note(self, run_id: str, note: str) -> Run:
        """Attach a free-text note to a run."""
        note = note if isinstance(note, str) else ""
        if len(note) > MAX_NOTE_CHARS:
            raise FtuiError(
                f"A note holds up to {MAX_NOTE_CHARS:,} characters (this one has {len(note):,}).",
                "Shorten it; keep long write-ups in a file beside the run.",
            )
        self._writable()
        return self.manager.set_meta(run_id, note=note)

    def delete_run(self, run_id: str) -> None:
        """Remove a finished run: its record, events and files (refused while it trains here or elsewhere)."""
        self._writable()
        run = self.manager.delete(run_id)
        self.predictor.forget_prefix(f"run:{run.run_id}")
        self.predictor.forget_prefix(f"base:{run.run_id}")
        self.predictor.forget_prefix(f"onnx:{run.run_id}#")

    def run_headers(self) -> list[dict[str, Any]]:
        """Every run's record without events (what the runs table needs), oldest first, including live ones."""
        return [r.header() for r in self.runs()]

    def run_record(self, run_id: str) -> dict[str, Any]:
        """One run's record."""
        return self.manager.require(run_id).to_json()

    def test_predictions(self, run_id: str) -> pd.DataFrame:
        """The run's saved test-set predictions (text, label, predicted, confidence, class probabilities)."""
        run = self.manager.require(run_id)
        path = run.out_dir / PREDICTIONS_FILE
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise FtuiError(f"Run '{run.name}' has no test predictions.", "Only runs that completed have them.") from exc

    def score_checkpoint(self, run_id: str, hub_id: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Score the run's test set with its base checkpoint (same seeded head) or a ready fine-tuned Hub classifier."""
        self._full_mode()
        run = self.manager.require(run_id)
        if run.result.get("task", "single_label") != "single_label":
            raise FtuiError(
                f"Run '{run.name}' is not a single-label classifier: its base checkpoint has no comparable score here.",
                "Its test metrics and curves are in the run's evaluation above.",
            )
        bundle = self.load_data(run.config.data, token)
        texts = bundle.splits["test"][TEXT]
        if TEXT_PAIR in bundle.splits["test"].column_names:
            raise FtuiError("Baselines for sentence-pair tasks are not supported yet.", "Compare runs in the table instead.")
        gold = bundle.splits["test"][LABEL]
        names = list(run.label_names)
        if hub_id:
            cfg = ModelConfig(source="hub", checkpoint=str(hub_id).strip())
            problems = validate_model(cfg)
            if problems:
                raise ModelError(problems[0] + ".", "Use 'owner/name'.")
            self._admit_model(cfg)
            key = f"hub:{cfg.checkpoint}"

            def load_hub() -> tuple[Any, Any, list[str]]:
                from transformers import AutoModelForSequenceClassification

                try:
                    model = AutoModelForSequenceClassification.from_pretrained(cfg.checkpoint, token=token or None)
                except Exception as exc:
                    raise hub.explain_hub_error(exc, "checkpoint", cfg.checkpoint) from exc
                labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
                return model.to(self.device).eval(), load_tokenizer(cfg, token), labels

            loader = load_hub
        else:
            key, loader = self.serving.versioned(f"base:{run.run_id}")
        probs = self.predictor.predict(key, loader, list(texts), max_length=run.config.train.max_length)
        theirs = list(probs[0].keys()) if probs else []
        mapping = map_labels(theirs, names)
        if mapping is None:
            raise FtuiError(
                f"'{hub_id}' predicts {theirs}, which do not match this run's labels {names}.",
                "Pick a classifier trained on the same labels.",
            )
        preds = [mapping[max(p, key=p.__getitem__)] for p in probs]
        m = compute_metrics(preds, gold)
        return {"model": hub_id or f"{display_name(run.config.model)} (base, untrained head)", **m, "n": len(gold)}

    def export_zip(self, run_id: str) -> Path:
        """A zip of the run's model, tokenizer, labels, config, metrics and model card."""
        self._writable()
        run = self.manager.require(run_id)
        with self.manager.hold(run.run_id, "an export"):
            if self.manager.get(run.run_id) is None:
                raise FtuiError(f"Run '{run.name}' was just deleted.", "Pick another run.")
            rec = run.to_json()
            try:
                return export.export_zip(rec, run.out_dir, run.out_dir / "export", self._base_limitations(run))
            except OSError as exc:
                raise FtuiError(
                    f"The zip of '{run.name}' could not be written ({exc.strerror or exc}).",
                    "Check that the run still exists and the disk has space, then try again.",
                ) from exc

    def push_to_hub(self, run_id: str, repo_id: str, token: str | None, private: bool = True) -> str:
        """Upload the run's model with a generated card; the token is used for this call only."""
        self._full_mode()
        run = self.manager.require(run_id)
        if not self.hub.online:
            raise HubError(f"{hub.OFFLINE_MESSAGE}, so nothing can be pushed.", "Download the zip instead and upload it later.")
        with self.manager.hold(run.run_id, "a push to the Hub"):
            return export.push_to_hub(run.to_json(), run.out_dir, repo_id, token or "", private, self._base_limitations(run))

    def _base_limitations(self, run: Run) -> str:
        try:
            return self.model_summary(run.config.model).card_limitations
        except Exception as exc:  # noqa: BLE001 - the card is optional; an offline Hub model has none
            log.info("no base card for %s: %s", run.run_id, exc)
            return ""

    # -------------------------------------------------------------------------------------------------- predict
    def predict_choices(self) -> list[tuple[str, str]]:
        """(label, key) of every model Predict offers, the default first (see PredictionService.choices)."""
        return self.serving.choices()

    def predict(self, text: str, model_key: str | None = None, runtime: str = "pytorch") -> dict[str, float]:
        """Class probabilities for one text, from a run (default: the best completed run on the data at hand, by
        validation score) or its base checkpoint."""
        return self.serving.predict(text, model_key, runtime)

    def task_info(self, model_key: str | None = None) -> TaskInfo:
        """How a model's outputs read: class probabilities, label probabilities with a threshold, or a value."""
        return self.serving.task_info(model_key)

    def predict_many(
        self, texts: list[str], model_key: str | None = None, int8: bool = False, runtime: str = "pytorch"
    ) -> list[dict[str, float]]:
        """Class probabilities for many texts, in the input order (bounded; see PredictionService.predict_many)."""
        return self.serving.predict_many(texts, model_key, int8, runtime)

    def explain(self, text: str, model_key: str | None = None, method: str = "ig") -> Explanation:
        """Token attributions for the class a fine-tuned model predicts (see ftui.explain)."""
        return self.serving.explain(text, model_key, method)  # type: ignore[arg-type]  # checked in explain()

    def export_onnx(self, run_id: str, int8: bool = True) -> OnnxReport:
        """ONNX (and int8) export of a finished run, checked against torch on its test set, kept in the run folder."""
        self._writable()
        run = self.manager.require(run_id)
        with self.manager.hold(run.run_id, "an ONNX export"):
            if self.manager.get(run.run_id) is None:
                raise FtuiError(f"Run '{run.name}' was just deleted.", "Pick another run.")
            return self.serving.export_onnx(run.run_id, int8)

    def onnx_report(self, run_id: str) -> OnnxReport | None:
        """The stored check of a run's ONNX export (None when it has none)."""
        run = self.manager.require(run_id)
        return read_report(run.out_dir) if has_export(run.out_dir) else None

    def predict_examples(self, model_key: str | None, fallback: list[str]) -> list[str]:
        """Example texts for a model: one per class from its run's test set, else `fallback`."""
        return self.serving.examples(model_key, fallback)

    def serve_downloads_from(self, folder: Path) -> None:
        """Write generated downloads into `folder`: the UI passes its web server's own file cache, so each file is
        stored once, under the downloads' byte budget, instead of once here and once more in the server's cache."""
        self.serving.downloads.root = Path(folder)

    def predictions_file(self, frame: Any) -> Path:
        """A batch's predictions as a CSV download (texts cut, the downloads folder's byte budget kept)."""
        return self.serving.predictions_file(frame)

    def batch_texts(self, lines: str | None, path: str | None) -> list[str]:
        """The texts of a batch request, from a file (read under the deployment's caps) or typed lines."""
        return self.serving.batch_texts(lines, path)
