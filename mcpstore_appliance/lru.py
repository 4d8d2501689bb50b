"""A bounded, thread-safe least-recently-used map, optionally bounded by weight too (bytes, roughly)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class LRU:
    """At most `size` entries and, with `weigh`, at most `max_weight` in all (bytes, roughly: a kept package
    page may hold a 100,000-character description, so a count alone does not bound memory)."""

    def __init__(self, size: int, max_weight: int | None = None, weigh: Callable[[Any], int] | None = None):
        self.size = size
        self.max_weight, self._weigh = max_weight, weigh
        self.weight = 0
        self._data: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        # No lock on the hot path: each OrderedDict call is atomic under the GIL (keys are strings or tuples of them),
        # and a key another thread evicts between the two calls is simply not moved.
        value = self._data.get(key)
        if value is not None:
            try:
                self._data.move_to_end(key)
            except KeyError:
                pass
        return value

    def put(self, key: Any, value: Any) -> None:
        weigh = self._weigh or (lambda _: 0)
        with self._lock:
            replaced = self._data.pop(key, None)
            if replaced is not None:
                self.weight -= weigh(replaced)
            if self.max_weight is not None and weigh(value) > self.max_weight:
                return  # heavier than the whole budget: not kept, and nothing else evicted for it
            self._data[key] = value
            self.weight += weigh(value)
            while len(self._data) > self.size or (self.max_weight is not None and self.weight > self.max_weight):
                _, evicted = self._data.popitem(last=False)
                self.weight -= weigh(evicted)
