"""What the Model tab shows of a checkpoint before training: its size, depth, limits and its card's limitations."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ftui.architecture import (
    above_stack,
    count_params,
    embedding_modules,
    encoder_layers,
    hidden_size,
    position_limit,
    shared_modules,
)
from ftui.config import ModelConfig
from ftui.errors import ModelError
from ftui.modeling import build_model, display_name, load_config, resolve_checkpoint


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
