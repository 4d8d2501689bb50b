"""In-memory sliding-window rate limits (per IP, per account). One process, so memory is the truth."""

from __future__ import annotations

import math
import time
from collections import defaultdict, deque

from ..errors import RateLimited


class RateLimiter:
    def __init__(self, limit: int, window_seconds: float = 60.0, clock=time.monotonic):
        self.limit = limit
        self.window = window_seconds
        self.clock = clock
        self.hits: dict[str, deque[float]] = defaultdict(deque)

    def check(self, key: str, what: str = "requests") -> None:
        """Count one attempt for `key`; raise RateLimited (with Retry-After seconds) past the limit."""
        now = self.clock()
        hits = self.hits[key]
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        if len(hits) >= self.limit:
            retry_after = max(1, math.ceil(hits[0] + self.window - now))
            raise RateLimited(f"too many {what}; try again in {retry_after} s", retry_after=retry_after)
        hits.append(now)
        if len(self.hits) > 100_000:  # bound memory under a flood of distinct keys
            self._forget_idle(now)

    def reset(self, key: str) -> None:
        self.hits.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self.hits.items() if not v or v[-1] <= now - self.window]:
            del self.hits[key]
