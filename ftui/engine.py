"""The engine facade the UI and CLI call: deployment rules, data, models, runs (through RunManager), prediction."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ftui import hub, jobs, jobs_data, scaleout
from ftui.accel import default_batch_size, pick_device
from ftui.adapt import corpus_preview, load_corpus
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
    validate_run,
)
from ftui.data import LABEL, DataBundle, load_data
from ftui.data_report import label_matrix, text_lengths
from ftui.distributed import SOLO, Dist
from ftui.engine_estimate import EstimateFacade, EstimateState
from ftui.engine_jobs import JobsFacade
from ftui.engine_predict import PredictFacade
from ftui.engine_runs import RunsFacade
from ftui.errors import ConfigError, DataError, FtuiError, HubError, ModelError
from ftui.hub import HubStatus
from ftui.launcher import Launcher
from ftui.lru import LRU
from ftui.model_card import ModelSummary, summarize
from ftui.modeling import default_learning_rate, load_tokenizer
from ftui.recipes import recipe_of
from ftui.recommend import Recommendation, apply, label_shares, measure, recommend
from ftui.runner import RunManager
from ftui.serving import PredictionService, admit_model
from ftui.settings import Settings
from ftui.store import Store
from ftui.tasks import Task
from ftui.workspace import Workspaces, run_folder

log = logging.getLogger(__name__)

DEMO_MESSAGE = "This deployment serves predictions only."
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


def _token_key(token: str | None) -> str:
    # Cache entries loaded with a token stay private to that token.
    return hashlib.sha256(token.encode()).hexdigest()[:16] if token else ""


def _sentence(problems: list[str]) -> str:
    text = "; ".join(problems)
    return text[:1].upper() + text[1:] + "."


class Engine(RunsFacade, PredictFacade, JobsFacade, EstimateFacade):
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
        self.device = pick_device()
        self._data_cache: LRU[tuple[Any, ...], DataBundle] = LRU(4)  # prepared datasets: the largest entries
        self._summary_cache: LRU[tuple[Any, ...], ModelSummary] = LRU(32)
        self._tokenizers: LRU[tuple[Any, ...], Any] = LRU(8)
        self._lengths: LRU[tuple[Any, ...], tuple[list[int], str]] = LRU(8)  # the histogram and the advice measure once
        self.token_cache = TokenCache()
        self.store = Store(self.runs_dir, network=self.settings.network_storage)
        self.estimates = EstimateState(None if self.store.read_only else self.runs_dir)  # timed speeds, token lengths
        self.workspaces = Workspaces(self.settings)
        if not self.store.read_only:  # before the runs load: a killed orphan's run then reads as interrupted
            unfinished = self.store.unfinished()
            folders = {run_id: run_folder(self.runs_dir, run_id, user) for run_id, user in unfinished}
            scaleout.end_orphans(self.runs_dir, [run_id for run_id, _ in unfinished], folders)
        self.manager = RunManager(self.runs_dir, self.store, max_queue=self.settings.max_queue, wait_for_others=adopt_queue)
        self.launcher = Launcher(
            self.manager, self.settings, self.runs_dir, self.token_cache, self.load_data, self._check_model_fits,
            dist, offline=not self.hub.online,
            sees=lambda user, run: self.workspaces.can_see(self.workspaces.viewer(user), run),
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
        target = self.jobs_target()  # a run that trained on Jobs reads its data's copy where this machine mounts it
        cfg = jobs_data.on_this_machine(cfg, jobs.MOUNT, target.local_dir if target is not None else None)
        self._admit_data(cfg)
        key = (*cfg.key(), _token_key(token))
        return self._data_cache.get_or_load(key, lambda: load_data(cfg, token, self.settings.read_limits()))

    def loaded_data(self, cfg: DataConfig, token: str | None = None) -> DataBundle | None:
        """The prepared data for a config when it is loaded already (never loads: for estimates on a passing change)."""
        self._admit_data(cfg)
        return self._data_cache.get((*cfg.key(), _token_key(token)))

    def model_summary(self, cfg: ModelConfig, token: str | None = None) -> ModelSummary:
        """Architecture and parameter counts (no weights read), cached."""
        if isinstance(cfg, ModelConfig):
            self._admit_model(cfg)  # before validating, which looks at the disk: a refused path is never probed
        problems = validate_model(cfg) if isinstance(cfg, ModelConfig) else []
        if problems:
            raise ModelError("; ".join(problems) + ".", "")
        key = (cfg.source, cfg.checkpoint, cfg.head, cfg.mlp_hidden, cfg.trust_remote_code, _token_key(token))
        return self._summary_cache.get_or_load(key, lambda: summarize(cfg, token))

    def tokenizer(self, cfg: ModelConfig, token: str | None = None) -> Any:
        """The checkpoint's tokenizer, cached (for token-length previews)."""
        self._admit_model(cfg)
        key = (cfg.source, cfg.checkpoint, cfg.trust_remote_code, _token_key(token))
        return self._tokenizers.get_or_load(key, lambda: load_tokenizer(cfg, token))

    def text_lengths(self, data: DataConfig, model: ModelConfig, token: str | None = None) -> tuple[list[int], str]:
        """Lengths of a sample of train texts: in the checkpoint's tokens, or in words when its tokenizer is refused or
        cannot be loaded."""
        bundle = self.load_data(data, token)
        try:
            tokenizer = self.tokenizer(model, token)
        except FtuiError as exc:
            log.info("lengths in words: %s", exc)
            tokenizer = None
        key = (*data.key(), model.source, model.checkpoint, tokenizer is None, _token_key(token))
        return self._lengths.get_or_load(key, lambda: text_lengths(bundle, tokenizer))

    def recommendations(self, cfg: RunConfig, token: str | None = None) -> list[Recommendation]:
        """What this run's data calls for (ftui.recommend): measured on its train split in its checkpoint's tokens at
        its max length. Only fine-tuning reads these settings (the recipe's layered runs); a checkpoint that cannot be
        summarised gets no schedule advice."""
        if not recipe_of(cfg).layered:
            return []
        bundle = self.load_data(cfg.data, token)
        lengths, unit = self.text_lengths(cfg.data, cfg.model, token)
        try:
            summary = self.model_summary(cfg.model, token)
            two_phase_ok = summary.freeze_supported and cfg.model.freeze_depth < summary.num_layers
        except FtuiError as exc:
            log.info("no schedule advice: %s", exc)
            two_phase_ok = False
        train = bundle.splits["train"]
        labels = label_matrix(train) if bundle.task is Task.MULTI else np.asarray(train[LABEL])
        shares = label_shares(bundle.task, labels, len(bundle.label_names))
        return recommend(measure(bundle.task, shares, lengths, unit, cfg.train.max_length, two_phase_ok))

    def with_recommendations(
        self, cfg: RunConfig, given: Collection[str] = (), token: str | None = None
    ) -> tuple[RunConfig, list[Recommendation]]:
        """The config with the data's recommendations applied to the settings not in `given` (unless
        cfg.train.recommend is off), and the ones applied: the CLI's rule, for API callers too."""
        if not cfg.train.recommend or validate_run(cfg):  # a config with problems is refused by start_run, as it is
            return cfg, []
        train, applied = apply(cfg.train, self.recommendations(cfg, token), given)
        return replace(cfg, train=train), applied

    def _check_model_fits(self, cfg: RunConfig, token: str | None) -> None:
        """The checkpoint loads, and the freeze depth and schedule make sense for it (before a thread starts)."""
        summary = self.model_summary(cfg.model, token)
        depth, recipe = cfg.model.freeze_depth, recipe_of(cfg)
        if recipe.layered and depth and not summary.freeze_supported:
            raise ModelError(f"Freeze depth is not supported for '{summary.model_type}' models.", "Set freeze depth to 0.")
        if recipe.layered and cfg.train.schedule == "two-phase" and not summary.freeze_supported:
            raise ModelError(
                f"'Head first, then fine-tune' needs a per-layer encoder, which '{summary.model_type}' models lack here.",
                "Choose the one-phase schedule.",
            )
        if depth > summary.num_layers:
            raise ConfigError([f"freeze depth must be 0 to {summary.num_layers} for this checkpoint (got {depth})"])
        if summary.max_length and recipe.bounded_length and cfg.train.max_length > summary.max_length:
            # Caught here, not mid-run (an index error) or worse, in Predict on the first long review.
            raise ConfigError(
                [f"max sequence length {cfg.train.max_length} is more than {summary.name} can read "
                 f"({summary.max_length} tokens): set it to {summary.max_length} or less in the Train tab"]
            )  # fmt: skip
        if recipe.layered and cfg.train.schedule == "two-phase" and depth >= summary.num_layers:
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
