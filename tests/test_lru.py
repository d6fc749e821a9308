"""The one cache type: a locked LRU whose loads never block reads of other keys."""

from __future__ import annotations

import threading

import pytest

from ftui.batching import TokenCache
from ftui.lru import LRU
from ftui.predict import Predictor


def test_least_recently_used_goes_first():
    cache: LRU[str, int] = LRU(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # a is now the most recent
    cache.put("c", 3)
    assert cache.keys() == ["a", "c"] and cache.get("b") is None and len(cache) == 2


def test_a_value_loads_once_and_a_slow_load_never_blocks_other_keys():
    cache: LRU[str, int] = LRU(4)
    cache.put("ready", 7)
    started, release = threading.Event(), threading.Event()
    calls = []

    def slow() -> int:
        calls.append("slow")
        started.set()
        assert release.wait(10)
        return 1

    loader = threading.Thread(target=lambda: cache.get_or_load("slow", slow))
    loader.start()
    assert started.wait(10)
    assert cache.get_or_load("ready", lambda: 0) == 7  # answered while the other key is still loading
    release.set()
    loader.join(10)
    assert cache.get_or_load("slow", lambda: 99) == 1 and calls == ["slow"]


def test_forget_drops_what_the_predicate_refuses_and_capacity_is_checked():
    cache: LRU[str, int] = LRU(5)
    for k in ("run:a@1", "run:a@2", "run:b@1"):
        cache.put(k, 0)
    cache.forget(lambda k: not k.startswith("run:a@") or k == "run:a@2")
    assert cache.keys() == ["run:a@2", "run:b@1"]
    with pytest.raises(ValueError, match="at least one"):
        LRU(0)


def test_the_token_cache_and_the_model_cache_are_this_type():
    assert isinstance(TokenCache(), LRU) and TokenCache().capacity == 3
    models = Predictor(capacity=1)
    models.get("m1", lambda: "scorer-1")
    models.get("m2", lambda: "scorer-2")
    assert models.keys() == ["m2"]  # capacity 1: the older model went
    models.forget_prefix("m", keep=None)
    assert models.keys() == []
