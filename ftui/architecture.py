"""What ftui knows of encoder architectures, in tables: the layer stack, embeddings, shared and pass-through modules,
sizes and position limits; and freezing the bottom of the stack."""

from __future__ import annotations

from typing import Any

from torch import nn

from ftui.errors import ModelError

# ------------------------------------------------------------------------------- architecture knowledge, in tables
# Where encoder families keep their stack of layers, relative to the base model.
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
