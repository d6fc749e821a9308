"""Deployment settings from environment variables: caps, allowlists, demo mode and login for a public Space."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ftui.config import DataConfig, ModelConfig, ReadLimits, RunConfig


def _int(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name, "").strip()
    try:
        return max(0, int(float(raw))) if raw else 0
    except ValueError as exc:
        raise ValueError(f"{name} must be a whole number (got {raw!r})") from exc


def _float(env: Mapping[str, str], name: str) -> float:
    raw = env.get(name, "").strip()
    try:
        return max(0.0, float(raw)) if raw else 0.0
    except ValueError as exc:
        raise ValueError(f"{name} must be a number (got {raw!r})") from exc


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in env.get(name, "").split(",") if x.strip())


def _flag(env: Mapping[str, str], name: str) -> bool | None:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be 1 or 0 (got {raw!r})")


ZERO_GPU_TRAINING = (
    "this Space runs on ZeroGPU, which lends a GPU only for short calls such as Predict and Explain, never for a "
    "training run; train where a run can hold a GPU or a CPU (a GPU Space, this app on your own machine, or a CPU "
    "Space with its caps), then show the run here (Runs tab: export, or share the runs folder)"
)


def _storage(env: Mapping[str, str]) -> bool:
    """FTUI_RUNS_STORAGE: True for a network mount; unset means network on a Space, where only a bucket lasts."""
    raw = env.get("FTUI_RUNS_STORAGE", "").strip().lower()
    if raw not in ("", "local", "network"):
        raise ValueError(f"FTUI_RUNS_STORAGE must be 'local' or 'network' (got {raw!r})")
    return raw == "network" or (not raw and bool(env.get("SPACE_ID")))


@dataclass(frozen=True)
class Settings:
    """What the operator of a deployment allows; 0 or empty means no limit. Enforced by the engine, not the widgets."""

    demo: bool = field(default=False, metadata={"help": "FTUI_MODE=demo: predictions only, no training"})
    max_train_examples: int = field(default=0, metadata={"help": "FTUI_MAX_TRAIN_EXAMPLES: rows of train per run"})
    max_epochs: float = field(default=0.0, metadata={"help": "FTUI_MAX_EPOCHS"})
    max_length: int = field(default=0, metadata={"help": "FTUI_MAX_LENGTH: tokens per example"})
    max_batch_size: int = field(default=0, metadata={"help": "FTUI_MAX_BATCH_SIZE"})
    max_minutes: float = field(default=0.0, metadata={"help": "FTUI_MAX_RUN_MINUTES: wall clock of training per run"})
    allowed_checkpoints: tuple[str, ...] = field(
        default=(), metadata={"help": "FTUI_ALLOWED_CHECKPOINTS (packaged = the built-in)"}
    )
    allowed_datasets: tuple[str, ...] = field(default=(), metadata={"help": "FTUI_ALLOWED_DATASETS (demo = the built-in)"})
    auth: tuple[tuple[str, str], ...] = field(default=(), metadata={"help": "FTUI_AUTH=user:password[,user:password]"})
    max_upload_mb: float = field(default=500.0, metadata={"help": "FTUI_MAX_UPLOAD_MB: largest data file accepted"})
    max_rows: int = field(default=0, metadata={"help": "FTUI_MAX_ROWS: rows read from one data file or Hub split"})
    allow_remote_code: bool = field(
        default=True,
        metadata={"help": "FTUI_ALLOW_REMOTE_CODE: honour 'Trust remote code'; off by default on a Space or a locked-down app"},
    )
    max_queue: int = field(default=20, metadata={"help": "FTUI_MAX_QUEUE: runs waiting in the queue at once (sweeps too)"})
    cpu_processes: int = field(
        default=0,
        metadata={"help": "FTUI_CPU_PROCESSES: offer runs of up to this many processes on a machine without GPUs "
                  "(tests, demos; on CPU one process already uses every core)"},
    )  # fmt: skip
    max_batch_chars: int = field(
        default=5_000_000, metadata={"help": "FTUI_MAX_BATCH_CHARS: characters in one batch prediction (memory and time bound)"}
    )
    space_id: str = field(default="", metadata={"help": "SPACE_ID (set by Hugging Face): this app runs as a Space"})
    zero_gpu: bool = field(
        default=False,
        metadata={"help": "SPACES_ZERO_GPU (set by Hugging Face on ZeroGPU hardware): a GPU only inside short calls, so "
                  "Predict and Explain run on it and training is refused"},
    )  # fmt: skip
    network_storage: bool = field(
        default=False,
        metadata={"help": "FTUI_RUNS_STORAGE=network|local: the runs folder is a network mount (a Space's bucket: no "
                  "SQLite WAL, no mmap there); default network on a Space (SPACE_ID set), else local"},
    )  # fmt: skip
    max_downloads_mb: float = field(
        default=512.0,
        metadata={"help": "FTUI_MAX_DOWNLOADS_MB: disk the generated downloads may take (oldest evicted; one file ≤ 1/4)"},
    )
    oauth: bool = field(
        default=False,
        metadata={"help": "FTUI_OAUTH, or OAUTH_CLIENT_ID (set on a Space with hf_oauth: true): one workspace per signed-in "
                  "Hugging Face user, showcase runs for everyone else"},
    )  # fmt: skip
    admins: tuple[str, ...] = field(
        default=(), metadata={"help": "FTUI_ADMINS: Hub usernames who see and manage every run and mark showcase runs"}
    )
    max_queue_per_user: int = field(
        default=3, metadata={"help": "FTUI_MAX_QUEUE_PER_USER: runs one signed-in user may have waiting (with OAuth)"}
    )
    auto_baseline: bool = field(
        default=True,
        metadata={"help": "FTUI_AUTO_BASELINE=0: never fit the TF-IDF baseline by itself beside a model run on new data "
                  "(each run can still turn it off: TrainConfig.auto_baseline)"},
    )  # fmt: skip
    jobs_bucket: str = field(
        default="", metadata={"help": "FTUI_BUCKET: the Storage Bucket 'user/name' a Hugging Face Jobs run mounts (its runs "
                              "folder is this app's); empty: the page offers no Jobs"}
    )  # fmt: skip
    jobs_bucket_dir: str = field(
        default="", metadata={"help": "FTUI_BUCKET_DIR: where this machine mounts that bucket (the runs folder is inside)"}
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the FTUI_* variables (ValueError names a malformed one)."""
        env = os.environ if env is None else env
        mode = env.get("FTUI_MODE", "full").strip().lower() or "full"
        if mode not in ("full", "demo"):
            raise ValueError(f"FTUI_MODE must be 'full' or 'demo' (got {mode!r})")
        pairs = []
        for item in _list(env, "FTUI_AUTH"):
            user, sep, password = item.partition(":")
            if not sep or not user or not password:
                raise ValueError("FTUI_AUTH must be user:password pairs separated by commas")
            pairs.append((user, password))
        allowed_checkpoints = _list(env, "FTUI_ALLOWED_CHECKPOINTS")
        allowed_datasets = _list(env, "FTUI_ALLOWED_DATASETS")
        # A Space (SPACE_ID is set by Hugging Face) or any restriction means strangers call this app: their ticked
        # box must not run code in it. The operator can still allow it explicitly.
        locked = bool(env.get("SPACE_ID")) or mode == "demo" or bool(allowed_checkpoints or allowed_datasets or pairs)
        remote = _flag(env, "FTUI_ALLOW_REMOTE_CODE")
        return cls(
            demo=mode == "demo",
            max_train_examples=_int(env, "FTUI_MAX_TRAIN_EXAMPLES"),
            max_epochs=_float(env, "FTUI_MAX_EPOCHS"),
            max_length=_int(env, "FTUI_MAX_LENGTH"),
            max_batch_size=_int(env, "FTUI_MAX_BATCH_SIZE"),
            max_minutes=_float(env, "FTUI_MAX_RUN_MINUTES"),
            allowed_checkpoints=allowed_checkpoints,
            allowed_datasets=allowed_datasets,
            auth=tuple(pairs),
            max_upload_mb=_float(env, "FTUI_MAX_UPLOAD_MB") or 500.0,
            max_rows=_int(env, "FTUI_MAX_ROWS"),
            allow_remote_code=(not locked) if remote is None else remote,
            max_batch_chars=_int(env, "FTUI_MAX_BATCH_CHARS") or 5_000_000,
            max_downloads_mb=_float(env, "FTUI_MAX_DOWNLOADS_MB") or 512.0,
            network_storage=_storage(env),
            space_id=env.get("SPACE_ID", "").strip(),
            zero_gpu=env.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true"),  # as the spaces package reads it
            cpu_processes=_int(env, "FTUI_CPU_PROCESSES"),
            max_queue=_int(env, "FTUI_MAX_QUEUE") if env.get("FTUI_MAX_QUEUE", "").strip() else 20,
            oauth=bool(_flag(env, "FTUI_OAUTH")) or (_flag(env, "FTUI_OAUTH") is None and bool(env.get("OAUTH_CLIENT_ID"))),
            admins=_list(env, "FTUI_ADMINS"),
            max_queue_per_user=_int(env, "FTUI_MAX_QUEUE_PER_USER") if env.get("FTUI_MAX_QUEUE_PER_USER", "").strip() else 3,
            auto_baseline=_flag(env, "FTUI_AUTO_BASELINE") is not False,
            jobs_bucket=env.get("FTUI_BUCKET", "").strip(),
            jobs_bucket_dir=env.get("FTUI_BUCKET_DIR", "").strip(),
        )

    def page_notices(self) -> list[str]:
        """What the page must say before anyone fills anything in: ZeroGPU refuses training; a public full-mode Space
        without a login is one workspace where every visitor controls every run."""
        notices = []
        if self.zero_gpu and not self.demo:
            notices.append(f"**ZeroGPU:** {ZERO_GPU_TRAINING[0].upper()}{ZERO_GPU_TRAINING[1:]}.")
        if self.space_id and not self.demo and not self.auth and not self.oauth:
            notices.append(
                "**Shared workspace:** every visitor of this Space sees and controls every run here (stop, rename, "
                "delete, export). For your own runs, duplicate the Space or make it private; its operator can turn on "
                "sign-in (hf_oauth: true), a login (FTUI_AUTH) or demo mode (FTUI_MODE=demo)."
            )
        return notices

    def admit_training(self, gpu_free: bool) -> list[str]:
        """Why a run cannot train here: ZeroGPU lends a GPU only inside short calls (60 s by default, a daily quota
        per visitor), never to a background run; a run that needs no GPU (a TF-IDF or NBSVM baseline) may run."""
        if self.zero_gpu and not gpu_free:
            return [ZERO_GPU_TRAINING]
        return []

    def admit_model(self, model: ModelConfig) -> list[str]:
        """Why this checkpoint may not be touched here (loaded, summarised, tokenized): empty when it may."""
        errors: list[str] = []
        if self.allowed_checkpoints:
            name = "packaged" if model.source == "packaged" else model.checkpoint.strip()
            if name not in self.allowed_checkpoints or model.source == "local":
                errors.append(f"checkpoint '{name}' is not allowed here; choose one of: {', '.join(self.allowed_checkpoints)}")
        if model.trust_remote_code and not self.allow_remote_code:
            errors.append(
                "this deployment does not run code shipped in model repos ('Trust remote code'); its operator can allow it "
                "with FTUI_ALLOW_REMOTE_CODE=1"
            )
        return errors

    def admit_data(self, data: DataConfig) -> list[str]:
        """Why this dataset may not be read here: empty when it may."""
        if not self.allowed_datasets:
            return []
        name = "demo" if data.source == "demo" else data.dataset_id.strip()
        if name not in self.allowed_datasets or data.source in ("local", "upload"):
            return [f"dataset '{name}' is not allowed here; choose one of: {', '.join(self.allowed_datasets)}"]
        return []

    def read_limits(self) -> ReadLimits:
        """The caps on reading one data file or Hub split."""
        return ReadLimits(max_bytes=int(self.max_upload_mb * 2**20), max_rows=self.max_rows)

    def apply(self, cfg: RunConfig) -> tuple[RunConfig, list[str]]:
        """The config with unset limits filled from the caps, and a message for every value over a cap."""
        errors: list[str] = []
        data, model, train = cfg.data, cfg.model, cfg.train
        if self.max_train_examples:
            if data.max_train_examples == 0:
                data = replace(data, max_train_examples=self.max_train_examples)  # "all" means "as many as allowed"
            elif data.max_train_examples > self.max_train_examples:
                errors.append(f"this deployment trains on at most {self.max_train_examples} examples per run")
        if self.max_minutes:
            if train.max_minutes == 0:
                train = replace(train, max_minutes=self.max_minutes)
            elif train.max_minutes > self.max_minutes:
                errors.append(f"this deployment allows at most {self.max_minutes:g} minutes of training per run")
        checks = [
            (self.max_epochs, train.epochs, "epochs"),
            (self.max_length, train.max_length, "max sequence length"),
            (self.max_batch_size, train.batch_size, "batch size"),
        ]
        for cap, value, what in checks:
            if cap and isinstance(value, (int, float)) and value > cap:
                errors.append(f"{what} is capped at {cap:g} on this deployment (got {value:g})")
        errors += self.admit_model(model) + self.admit_data(data)
        return replace(cfg, data=data, model=model, train=train), errors

    def describe(self) -> str:
        """One line for the page header: the limits in force (empty without any)."""
        bits = []
        if self.max_train_examples:
            bits.append(f"≤ {self.max_train_examples} train examples")
        if self.max_epochs:
            bits.append(f"≤ {self.max_epochs:g} epochs")
        if self.max_length:
            bits.append(f"≤ {self.max_length} tokens")
        if self.max_batch_size:
            bits.append(f"batch ≤ {self.max_batch_size}")
        if self.max_minutes:
            bits.append(f"≤ {self.max_minutes:g} min per run")
        if self.allowed_checkpoints:
            bits.append("checkpoints: " + ", ".join(self.allowed_checkpoints))
        if self.allowed_datasets:
            bits.append("datasets: " + ", ".join(self.allowed_datasets))
        return ("Limits on this deployment: " + "; ".join(bits) + ".") if bits else ""
