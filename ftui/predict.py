"""Prediction: loads finished runs (or a base checkpoint with its untrained head) and scores text."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

MAX_PREDICT_CHARS = 20_000  # longer input is cut: the model only reads max_length tokens anyway


class Predictor:
    """A small LRU of loaded models; each model is used under its own lock so calls never interleave on it."""

    def __init__(self, capacity: int = 3) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._models: OrderedDict[str, tuple[nn.Module, Any, list[str], threading.Lock]] = OrderedDict()

    def get(
        self, key: str, loader: Callable[[], tuple[nn.Module, Any, list[str]]]
    ) -> tuple[nn.Module, Any, list[str], threading.Lock]:
        """The cached entry for `key`, loading it with `loader` on first use."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        model, tok, names = loader()  # outside the lock: loading one model must not block the others
        entry = (model, tok, names, threading.Lock())
        with self._lock:
            self._models[key] = entry
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return entry

    def forget(self, key: str) -> None:
        """Drop a cached model (after its files changed)."""
        with self._lock:
            self._models.pop(key, None)

    def predict(
        self, key: str, loader: Callable[[], tuple[nn.Module, Any, list[str]]], texts: list[str], max_length: int = 256
    ) -> list[dict[str, float]]:
        """Class probabilities for each text, as {label name: probability}."""
        model, tok, names, lock = self.get(key, loader)
        texts = [t[:MAX_PREDICT_CHARS] for t in texts]
        device = next(model.parameters()).device
        with lock, torch.inference_mode():
            enc = tok(texts, truncation=True, max_length=max_length, padding=True, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            probs = torch.softmax(model(**enc).logits.float(), dim=-1).cpu()
        return [{names[i]: float(p[i]) for i in range(len(names))} for p in probs]
