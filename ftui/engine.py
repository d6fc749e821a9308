"""The engine facade the UI and CLI call: data, models, one run at a time, finished runs, prediction."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ftui import export, hub
from ftui.batching import TokenCache
from ftui.config import DataConfig, ModelConfig, RunConfig, validate_data, validate_model, validate_run
from ftui.data import LABEL, TEXT, TEXT_PAIR, DataBundle, load_data
from ftui.errors import ConfigError, FtuiError, HubError, ModelError, RunInProgress
from ftui.hub import HubStatus
from ftui.metrics import compute_metrics
from ftui.modeling import ModelSummary, build_model, display_name, load_classifier, load_tokenizer, summarize
from ftui.predict import Predictor, int8_loader
from ftui.runs import RUN_FILE, Run
from ftui.settings import Settings
from ftui.store import Store
from ftui.training import MODEL_DIR, PREDICTIONS_FILE, RESUME_DIR, can_resume, pick_device, train_run

RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}|[A-Za-z0-9][A-Za-z0-9_.-]{0,80}")
DEMO_MESSAGE = "This deployment serves predictions only."
MAX_BATCH_TEXTS = 10_000  # one batch prediction; bounds memory and the time one call holds a model
ONLINE_DATASET = "cornell-movie-review-data/rotten_tomatoes"
ONLINE_CHECKPOINT = "distilbert/distilbert-base-uncased"


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


def _slug(text: str, n: int = 24) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text.split(" (")[0].split("/")[-1]).strip("-")[:n] or "x"


class Engine:
    """All state of one app: hub status, caches, the runs, and the lock that allows one training at a time."""

    def __init__(
        self, runs_dir: str | Path | None = None, hub_status: HubStatus | None = None, settings: Settings | None = None
    ) -> None:
        _quiet_libraries()
        self.settings = settings if settings is not None else Settings.from_env()
        self.runs_dir = Path(runs_dir or os.environ.get("FTUI_RUNS_DIR") or Path.cwd() / "runs").resolve()
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.hub = hub_status or hub.check_hub()
        if not self.hub.online:
            hub.go_offline()
        else:
            from ftui import metrics

            # evaluate fetches its metric scripts from the Hub: do it now, not at the first evaluation.
            threading.Thread(target=metrics.backend, name="ftui-evaluate-load", daemon=True).start()
        self.device = pick_device()
        self._lock = threading.Lock()
        self._current: Run | None = None
        self._thread: threading.Thread | None = None
        self._runs: OrderedDict[str, Run] = OrderedDict()
        self._data_cache: OrderedDict[tuple[Any, ...], DataBundle] = OrderedDict()
        self._summary_cache: dict[tuple[Any, ...], ModelSummary] = {}
        self._tokenizers: dict[tuple[Any, ...], Any] = {}
        self.predictor = Predictor()
        self.token_cache = TokenCache()
        self.store = Store(self.runs_dir)
        self._load_finished_runs()

    # ------------------------------------------------------------------------------------------------ defaults
    def default_data(self) -> DataConfig:
        """Hub movie reviews online; the bundled demo offline."""
        return DataConfig(source="hub", dataset_id=ONLINE_DATASET) if self.hub.online else DataConfig()

    def default_model(self) -> ModelConfig:
        """A DistilBERT online; the packaged MiniLM offline."""
        return ModelConfig(source="hub", checkpoint=ONLINE_CHECKPOINT) if self.hub.online else ModelConfig()

    def device_label(self) -> str:
        """The device training will use, in words."""
        if self.device == "cuda":
            return f"GPU: {torch.cuda.get_device_name(0)}"
        return f"CPU ({os.cpu_count()} cores; no GPU found)"

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
        problems = validate_data(DataConfig(source="hub", dataset_id=dataset_id))
        if problems:
            raise HubError(problems[0] + ".", "")
        return hub.dataset_configs(dataset_id.strip(), token)

    def dataset_splits(self, dataset_id: str, config: str | None, token: str | None = None) -> list[str]:
        """Split names of a Hub dataset config."""
        return hub.dataset_splits(dataset_id.strip(), config, token)

    # ------------------------------------------------------------------------------------------- data, model
    def load_data(self, cfg: DataConfig, token: str | None = None) -> DataBundle:
        """Prepared data for a config, cached (per token) so preview and training share one load."""
        key = (*cfg.key(), _token_key(token))
        with self._lock:
            if key in self._data_cache:
                self._data_cache.move_to_end(key)
                return self._data_cache[key]
        bundle = load_data(cfg, token)
        with self._lock:
            self._data_cache[key] = bundle
            while len(self._data_cache) > 4:
                self._data_cache.popitem(last=False)
        return bundle

    def model_summary(self, cfg: ModelConfig, token: str | None = None) -> ModelSummary:
        """Architecture and parameter counts (no weights read), cached."""
        problems = validate_model(cfg)
        if problems:
            raise ModelError("; ".join(problems) + ".", "")
        key = (cfg.source, cfg.checkpoint, cfg.head, cfg.mlp_hidden, cfg.trust_remote_code, _token_key(token))
        if key not in self._summary_cache:
            self._summary_cache[key] = summarize(cfg, token)
        return self._summary_cache[key]

    def tokenizer(self, cfg: ModelConfig, token: str | None = None) -> Any:
        """The checkpoint's tokenizer, cached (for token-length previews)."""
        key = (cfg.source, cfg.checkpoint, cfg.trust_remote_code, _token_key(token))
        if key not in self._tokenizers:
            self._tokenizers[key] = load_tokenizer(cfg, token)
        return self._tokenizers[key]

    # ---------------------------------------------------------------------------------------------------- runs
    def _load_finished_runs(self) -> None:
        """Runs from the store (unfinished ones of dead processes become interrupted), plus older run.json folders."""
        self.store.mark_interrupted()
        found: dict[str, Run] = {}
        for rec in self.store.runs():
            try:
                rec["events"] = self.store.events(rec["run_id"])
                found[rec["run_id"]] = Run.from_record(rec, self._run_dir(rec["run_id"]), self.store)
            except Exception:
                continue  # one unreadable record must not hide the others
        for path in sorted(self.runs_dir.glob(f"*/{RUN_FILE}")):
            if path.parent.name in found:
                continue
            try:
                run = Run.load(path.parent)
                self.store.save_run(run.header())  # a run from before the store existed: import it
                self.store.replace_events(run.run_id, run.events())
                run.store = self.store
            except Exception:
                continue
            found[run.run_id] = run
        for run in sorted(found.values(), key=lambda r: (r.started_at, r.run_id)):
            self._runs[run.run_id] = run

    def _run_dir(self, run_id: str) -> Path:
        """A run's folder; ids come from the store or the UI, so refuse anything that is not a plain name."""
        if not RUN_ID_RE.fullmatch(run_id or ""):
            raise FtuiError(f"'{run_id}' is not a run id.", "Pick a run from the table.")
        return self.runs_dir / run_id

    def _full_mode(self) -> None:
        if self.settings.demo:
            raise FtuiError(DEMO_MESSAGE, "Duplicate this Space (or run ftui locally) to train and manage runs.")

    def start_run(self, cfg: RunConfig, token: str | None = None) -> Run:
        """Validate (settings' caps included), then train in a background thread; RunInProgress while one is going."""
        self._full_mode()
        problems = validate_run(cfg)
        if not problems:
            cfg, problems = self.settings.apply(cfg)
        if problems:
            raise ConfigError(problems)
        with self._lock:
            if self._current is not None and not self._current.status.finished:
                raise RunInProgress(self._current.name)
            # Reserve the slot before any slow work, so a concurrent Start sees it at once.
            run_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]
            model_part, data_part = _slug(display_name(cfg.model)), _slug(cfg.data.dataset_id or "demo")
            name = cfg.train.run_name.strip() or f"{model_part}-{data_part}-f{cfg.model.freeze_depth}-{run_id[9:15]}"
            run = Run(run_id, name, cfg, self.runs_dir / run_id, store=self.store)
            self._current = run
            self._runs[run_id] = run
        try:
            summary = self.model_summary(cfg.model, token)
            depth = cfg.model.freeze_depth
            if depth and not summary.freeze_supported:
                raise ModelError(f"Freeze depth is not supported for '{summary.model_type}' models.", "Set freeze depth to 0.")
            if depth > summary.num_layers:
                raise ConfigError([f"freeze depth must be 0 to {summary.num_layers} for this checkpoint (got {depth})"])
        except FtuiError as exc:
            with self._lock:
                self._runs.pop(run_id, None)
                self._current = None
            raise exc
        run.save_header()
        self._thread = threading.Thread(
            target=train_run,
            args=(run, lambda: self.load_data(cfg.data, token), token, self.token_cache),
            name=f"ftui-run-{run_id}",
            daemon=True,
        )
        self._thread.start()
        return run

    # --------------------------------------------------------------------------------------------- experiments
    def _finished_run(self, run_id: str) -> Run:
        run = self.get_run(run_id) if RUN_ID_RE.fullmatch(run_id or "") else None
        if run is None:
            raise FtuiError(f"No run '{run_id}'.", "Pick a run from the table (press Refresh if it was just deleted).")
        return run

    def rename_run(self, run_id: str, name: str) -> Run:
        """Give a run a new display name."""
        name = (name or "").strip()
        if not name or len(name) > 100 or any(c in name for c in "/\\\0"):
            raise FtuiError("A run name needs 1 to 100 characters and no slashes.", "Type another name.")
        return self._set_meta(run_id, name=name)

    def set_note(self, run_id: str, note: str) -> Run:
        """Attach a free-text note to a run."""
        return self._set_meta(run_id, note=(note or "")[:2000])

    def _set_meta(self, run_id: str, **fields: str) -> Run:
        self._full_mode()
        run = self._finished_run(run_id)
        for key, value in fields.items():
            setattr(run, key, value)
        self.store.update(run_id, **fields)
        if run.status.finished:
            run.save()  # run.json travels with the folder (zip export), so it follows too
        return run

    def delete_run(self, run_id: str) -> None:
        """Remove a finished run: its record, events and files."""
        self._full_mode()
        run = self._finished_run(run_id)
        if not run.status.finished:
            raise FtuiError(f"Run '{run.name}' is still going.", "Stop it first, then delete it.")
        with self._lock:
            self._runs.pop(run_id, None)
            if self._current is run:
                self._current = None
        self.store.delete(run_id)
        for key in (f"run:{run_id}", f"base:{run_id}", f"run:{run_id}#int8", f"base:{run_id}#int8"):
            self.predictor.forget(key)
        target = run.out_dir.resolve()
        if target.parent == self.runs_dir and target.exists():
            shutil.rmtree(target, ignore_errors=True)

    def run_headers(self) -> list[dict[str, Any]]:
        """Every run's record without events (what the runs table needs), oldest first, including the live one."""
        return [r.header() for r in self.runs()]

    def run_record(self, run_id: str) -> dict[str, Any]:
        """One run's record."""
        return self._finished_run(run_id).to_json()

    def test_predictions(self, run_id: str) -> pd.DataFrame:
        """The run's saved test-set predictions (text, label, predicted, confidence, class probabilities)."""
        run = self._finished_run(run_id)
        path = run.out_dir / PREDICTIONS_FILE
        if not path.exists():
            raise FtuiError(f"Run '{run.name}' has no test predictions.", "Only runs that completed have them.")
        return pd.read_parquet(path)

    def score_checkpoint(self, run_id: str, hub_id: str | None = None, token: str | None = None) -> dict[str, Any]:
        """Score the run's test set with its base checkpoint (same seeded head) or a ready fine-tuned Hub classifier."""
        self._full_mode()
        run = self._finished_run(run_id)
        bundle = self.load_data(run.config.data, token)
        texts = bundle.splits["test"][TEXT]
        if TEXT_PAIR in bundle.splits["test"].column_names:
            raise FtuiError("Baselines for sentence-pair tasks are not supported yet.", "Compare runs in the table instead.")
        gold = bundle.splits["test"][LABEL]
        names = list(run.label_names)
        if hub_id:
            cfg = ModelConfig(source="hub", checkpoint=hub_id.strip())
            problems = validate_model(cfg)
            if problems:
                raise ModelError(problems[0] + ".", "Use 'owner/name'.")
            key = f"hub:{hub_id.strip()}"

            def load_hub() -> tuple[Any, Any, list[str]]:
                from transformers import AutoModelForSequenceClassification

                try:
                    model = AutoModelForSequenceClassification.from_pretrained(hub_id.strip(), token=token or None)
                except Exception as exc:
                    raise hub.explain_hub_error(exc, "checkpoint", hub_id.strip()) from exc
                labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
                return model.to(self.device).eval(), load_tokenizer(cfg, token), labels

            loader = load_hub
        else:
            key, loader = f"base:{run_id}", self._loader(f"base:{run_id}")
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
        self._full_mode()
        run = self._finished_run(run_id)
        rec = run.to_json()
        return export.export_zip(rec, run.out_dir, run.out_dir / "export", self._base_limitations(run))

    def push_to_hub(self, run_id: str, repo_id: str, token: str | None, private: bool = True) -> str:
        """Upload the run's model with a generated card; the token is used for this call only."""
        self._full_mode()
        run = self._finished_run(run_id)
        if not self.hub.online:
            raise HubError(f"{hub.OFFLINE_MESSAGE}, so nothing can be pushed.", "Download the zip instead and upload it later.")
        return export.push_to_hub(run.to_json(), run.out_dir, repo_id, token or "", private, self._base_limitations(run))

    def _base_limitations(self, run: Run) -> str:
        try:
            return self.model_summary(run.config.model).card_limitations
        except Exception:  # noqa: BLE001 - the card is optional; an offline Hub model has none
            return ""

    def resume_run(self, run_id: str, token: str | None = None) -> Run:
        """Continue a stopped or interrupted run from its last snapshot, in the same record."""
        self._full_mode()
        run = self._finished_run(run_id)
        if not can_resume(run):
            raise FtuiError(
                f"Run '{run.name}' cannot be resumed ({run.status.value}).",
                "Only stopped or interrupted runs that reached a saved step can be resumed.",
            )
        import torch as _torch

        snap = _torch.load(run.out_dir / RESUME_DIR / "state.pt", map_location="cpu", weights_only=True, mmap=True)
        with self._lock:
            if self._current is not None and not self._current.status.finished:
                raise RunInProgress(self._current.name)
            run.reopen(int(snap["step"]))
            self._current = run
        del snap
        self._thread = threading.Thread(
            target=train_run,
            args=(run, lambda: self.load_data(run.config.data, token), token, self.token_cache, True),
            name=f"ftui-resume-{run_id}",
            daemon=True,
        )
        self._thread.start()
        return run

    def stop_run(self) -> Run | None:
        """Ask the current run to stop; returns it (None when nothing runs)."""
        with self._lock:
            run = self._current
        if run is not None and not run.status.finished:
            run.request_stop()
            return run
        return None

    def join(self, timeout: float) -> bool:
        """Wait for the worker thread; True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def current_run(self) -> Run | None:
        """The latest run started in this process (running or not)."""
        with self._lock:
            return self._current

    def runs(self) -> list[Run]:
        """All known runs, oldest first."""
        with self._lock:
            return list(self._runs.values())

    def get_run(self, run_id: str) -> Run | None:
        """A run by id."""
        with self._lock:
            return self._runs.get(run_id)

    # -------------------------------------------------------------------------------------------------- predict
    def predict_choices(self) -> list[tuple[str, str]]:
        """(label, key) for each finished run with a model, newest first, each with its base checkpoint."""
        out: list[tuple[str, str]] = []
        for run in reversed(self.runs()):
            if run.status.finished and (run.out_dir / MODEL_DIR / "labels.json").exists():
                acc = run.result.get("test_accuracy")
                score = f", test acc {acc:.3f}" if isinstance(acc, (int, float)) else f", {run.status.value}"
                out.append((f"{run.name} (fine-tuned{score})", f"run:{run.run_id}"))
                out.append((f"{run.name} — base checkpoint before fine-tuning", f"base:{run.run_id}"))
        return out

    def _loader(self, key: str) -> Any:
        kind, _, run_id = key.partition(":")
        run = self.get_run(run_id)
        if kind not in ("run", "base") or run is None:
            raise FtuiError(f"Unknown model '{key}'.", "Pick a model from the list (press Refresh after a run ends).")
        model_dir = run.out_dir / MODEL_DIR
        if not (model_dir / "labels.json").exists():
            raise FtuiError(f"Run '{run.name}' has no saved model.", "Pick a finished run.")
        if kind == "run":
            return lambda: load_classifier(model_dir, self.device)

        def load_base() -> tuple[Any, Any, list[str]]:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(run.config.train.seed)  # the same head init the run started from
                model = build_model(run.config.model, run.label_names)
            return model.to(self.device).eval(), load_tokenizer(run.config.model), list(run.label_names)

        return load_base

    def predict(self, text: str, model_key: str | None = None) -> dict[str, float]:
        """Class probabilities for one text, from a run (default: the newest) or its base checkpoint."""
        if not isinstance(text, str) or not text.strip():
            raise FtuiError("There is no text to classify.", "Type a review in the box.")
        return self.predict_many([text], model_key)[0]

    def predict_many(self, texts: list[str], model_key: str | None = None, int8: bool = False) -> list[dict[str, float]]:
        """Class probabilities for many texts (batched, similar lengths together), in the input order.

        int8=True runs a dynamically quantized copy on CPU (several times faster; ignored on GPU).
        """
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise FtuiError("Batch prediction takes a list of texts.", "Give one review per line or a CSV with a text column.")
        if not texts:
            raise FtuiError("There is no text to classify.", "Give one review per line or a CSV with a text column.")
        if len(texts) > MAX_BATCH_TEXTS:
            raise FtuiError(
                f"{len(texts):,} texts is more than one batch prediction takes ({MAX_BATCH_TEXTS:,}).", "Split the file."
            )
        if not model_key:
            choices = self.predict_choices()  # only here: it checks every run's folder
            if not choices:
                raise FtuiError("No trained model yet.", "Train one in the Train tab, then press Refresh here.")
            model_key = choices[0][1]
        loader = self._loader(model_key)
        run = self.get_run(model_key.partition(":")[2])
        max_length = run.config.train.max_length if run else 256
        key = model_key
        if int8 and self.device == "cpu":
            loader, key = int8_loader(loader), f"{model_key}#int8"
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
