"""Token attributions: how much each token of a text pushed the model towards a class (Captum on the embeddings)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from ftui import accel
from ftui.errors import FtuiError
from ftui.predict import CHARS_PER_TOKEN, MAX_PREDICT_CHARS, MODEL_INPUTS
from ftui.tasks import Task
from ftui.tasks import scores as task_scores

log = logging.getLogger(__name__)

Method = Literal["ig", "fast"]
METHODS: dict[str, str] = {
    "ig": "integrated gradients",  # exact up to the reported delta; about `steps` forward+backward passes
    "fast": "gradient × input",  # one pass; a first-order estimate, no completeness guarantee
}
IG_STEPS = 32  # enough for a delta of a few hundredths of a logit on the packaged MiniLM; cost grows linearly
IG_BATCH = 16  # interpolation points per forward pass: bounds memory on long texts


@dataclass(frozen=True)
class Explanation:
    """Per-token contributions (in logits) to one class, for the text as the model read it."""

    tokens: list[str]  # the model's tokens, special tokens included, in order
    scores: list[float]  # each token's contribution to the target class's logit
    label: str  # the class explained (the predicted one unless asked otherwise)
    probability: float  # the model's probability for that class (regression: the predicted value)
    method: str  # a key of METHODS
    delta: float | None  # integrated gradients: sum(scores) - (logit - baseline logit); None for the fast method
    logit: float  # the target class's logit for the text
    baseline_logit: float  # the same for the baseline input (every ordinary token replaced by padding)
    truncated: bool  # the text was longer than the model reads: only its start is explained
    special: list[bool]  # which tokens are special ([CLS], [SEP], ...): shown, but not part of the text

    def words(self) -> list[tuple[str, float]]:
        """The text's words with summed scores: word pieces joined back, special tokens left out. WordPiece marks a
        continuation ("##ing"); byte-level BPE and SentencePiece mark a word's start ("Ġthe", "▁the") instead."""
        pieces = [(t, s) for t, s, sp in zip(self.tokens, self.scores, self.special, strict=True) if not sp]
        starts_marked = any(t.startswith(("Ġ", "▁")) for t, _ in pieces)
        out: list[tuple[str, float]] = []
        for tok, score in pieces:
            if starts_marked:
                new_word = tok.startswith(("Ġ", "▁")) or not out
                tok = tok.lstrip("Ġ▁")
            else:
                new_word = not tok.startswith("##") or not out
                tok = tok if new_word else tok[2:]
            if new_word:
                out.append((tok, score))
            else:
                out[-1] = (out[-1][0] + tok, out[-1][1] + score)
        return out

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The n words that pushed hardest towards the class."""
        return sorted(self.words(), key=lambda w: -w[1])[:n]


def input_embeddings(model: nn.Module) -> nn.Module:
    """The token embedding table (ftui's MLP-head classifier wraps the encoder in .base)."""
    base = getattr(model, "base", model)
    return base.get_input_embeddings()


def explain(
    model: nn.Module,
    tokenizer: Any,
    names: list[str],
    text: str,
    text_pair: str | None = None,
    max_length: int = 128,
    method: Method = "ig",
    target: int | None = None,
    steps: int = IG_STEPS,
    task: Task = Task.SINGLE,
    amp: torch.dtype | None = None,
) -> Explanation:
    """Attribute the class `target` (default: the predicted one; multi-label: the most probable label; regression:
    the predicted value) to the text's tokens.

    Integrated gradients integrate the gradient along a straight path from a baseline input (the same sequence with
    every ordinary token replaced by the padding token, special tokens and the attention mask kept) to the text, at
    the output of the token embedding table; the scores then sum to (logit - baseline logit) up to `delta`.
    On a GPU the passes run under `amp` (the run's mixed precision), which widens `delta` by its rounding.
    """
    from captum.attr import LayerGradientXActivation, LayerIntegratedGradients

    if method not in METHODS:
        raise FtuiError(f"Unknown explanation method '{method}'.", f"Use one of: {', '.join(METHODS)}.")
    if not isinstance(text, str) or not text.strip():
        raise FtuiError("There is no text to explain.", "Type a review in the box.")
    cut = min(MAX_PREDICT_CHARS, max_length * CHARS_PER_TOKEN)  # the model reads max_length tokens; see predict
    enc = tokenizer(
        text[:cut],
        text_pair[:cut] if text_pair else None,
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
        return_special_tokens_mask=True,
    )
    pair_cut = text_pair[: cut + 1] if text_pair else None
    full = tokenizer(text[: cut + 1], pair_cut, truncation=False, add_special_tokens=True)["input_ids"]
    truncated = len(text) > cut or len(pair_cut or "") > cut or len(full) > enc["input_ids"].shape[1]
    device = next(model.parameters()).device
    special = enc.pop("special_tokens_mask")[0].bool()
    inputs = {k: v.to(device) for k, v in enc.items() if k in MODEL_INPUTS}
    ids = inputs.pop("input_ids")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    baseline = torch.where(special.to(device), ids, torch.full_like(ids, pad))

    def forward(input_ids: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[0]  # captum repeats the inputs per interpolation point
        kwargs = {k: v.expand(n, -1) for k, v in inputs.items()}
        with accel.autocast(device.type, amp if device.type == "cuda" else None):
            return model(input_ids=input_ids, **kwargs).logits.float()

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = forward(ids)[0]
            base_logits = forward(baseline)[0]
        probs = task_scores(task, logits[None])[0]  # probabilities, or the value of a regression
        tgt = int(probs.argmax()) if target is None else int(target)
        if not 0 <= tgt < len(names):
            raise FtuiError(f"Class {tgt} does not exist.", f"Pick one of 0..{len(names) - 1}.")
        layer = input_embeddings(model)
        with torch.enable_grad():
            if method == "ig":
                attr, delta = LayerIntegratedGradients(forward, layer).attribute(
                    ids,
                    baselines=baseline,
                    target=tgt,
                    n_steps=steps,
                    internal_batch_size=IG_BATCH,
                    return_convergence_delta=True,
                )
                delta_value: float | None = float(delta.reshape(-1)[0])
            else:
                attr = LayerGradientXActivation(forward, layer).attribute(ids, target=tgt)
                delta_value = None
    finally:
        model.train(was_training)
    scores = attr.detach().float().sum(-1)[0].cpu().tolist()
    tokens = tokenizer.convert_ids_to_tokens(ids[0].tolist())
    return Explanation(
        tokens=tokens,
        scores=scores,
        label=names[tgt],
        probability=float(probs[tgt]),
        method=method,
        delta=delta_value,
        logit=float(logits[tgt]),
        baseline_logit=float(base_logits[tgt]),
        truncated=truncated,
        special=special.tolist(),
    )
