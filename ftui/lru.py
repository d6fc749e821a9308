"""The one cache type: a small, locked, least-recently-used map (data, summaries, tokenizers, tokenized splits, models)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRU(Generic[K, V]):
    """At most `capacity` entries; the least recently used goes first. Safe across threads; a value is loaded outside
    the lock, so loading one entry never blocks reads of the others (two threads missing the same key may both load
    it; the last one stored wins, as with any cache)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"an LRU cache holds at least one entry (got {capacity})")
        self.capacity = capacity
        self._lock = threading.Lock()
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value for `key` (now the most recently used), or None."""
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: K, value: V) -> V:
        """Store `value`, dropping the least recently used entries beyond capacity; returns `value`."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value

    def get_or_load(self, key: K, load: Callable[[], V]) -> V:
        """The cached value, or `load()`'s, stored."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return self.put(key, load())

    def forget(self, keep: Callable[[K], bool]) -> None:
        """Drop every entry whose key `keep` refuses."""
        with self._lock:
            for key in [k for k in self._items if not keep(k)]:
                del self._items[key]

    def keys(self) -> list[K]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)
