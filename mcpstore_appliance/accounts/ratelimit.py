"""In-memory rate limits. One process, so memory is the truth.

`RateLimiter`: a sliding window of attempts per key (all sign-ins from one address).
`FailureDelays`: growing delays after repeated failures per key (one account from one address), so that
guessing a password is slow for whoever guesses and costs the account's owner, signing in from anywhere
else, nothing.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict, defaultdict, deque
from collections.abc import Hashable
from dataclasses import dataclass

from ..errors import RateLimited

MAX_KEYS = 100_000  # bound memory under a flood of distinct keys


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
        if len(self.hits) > MAX_KEYS:
            self._forget_idle(now)

    def reset(self, key: str) -> None:
        self.hits.pop(key, None)

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, v in self.hits.items() if not v or v[-1] <= now - self.window]:
            del self.hits[key]


@dataclass
class _Failures:
    count: int
    last: float  # when the last failure was counted
    closed_until: float


class FailureDelays:
    """The `free`-th failure for a key closes it for `first_delay` seconds, and each further failure for twice
    as long as the one before (2x, 4x, ... at most `max_delay` seconds). Attempts while it is closed are refused
    (RateLimited with Retry-After) before anything is tried, so they neither test a password nor lengthen the
    delay. A success forgets the key; so do `forget_after` seconds without a failure."""

    def __init__(self, free: int, max_delay: float, *, first_delay: float = 1.0, forget_after: float = 3600.0,
                 clock=time.monotonic):
        self.free, self.first_delay, self.max_delay = free, first_delay, max_delay
        self.forget_after = max(forget_after, max_delay)
        self.clock = clock
        self._keys: OrderedDict[Hashable, _Failures] = OrderedDict()  # least recently failed first

    def check(self, key: Hashable, what: str = "failed attempts") -> None:
        entry = self._keys.get(key)
        if entry is None:
            return
        now = self.clock()
        if now >= entry.last + self.forget_after:
            del self._keys[key]
        elif now < entry.closed_until:
            retry_after = max(1, math.ceil(entry.closed_until - now))
            raise RateLimited(f"too many {what}; try again in {retry_after} s", retry_after=retry_after)

    def failed(self, key: Hashable) -> None:
        now = self.clock()
        entry = self._keys.pop(key, None)
        if entry is None or now >= entry.last + self.forget_after:
            entry = _Failures(0, now, now)
        entry.count += 1
        entry.last = now
        beyond = entry.count - self.free
        if beyond >= 0:
            entry.closed_until = now + min(self.max_delay, self.first_delay * 2 ** min(beyond, 60))
        self._keys[key] = entry
        while len(self._keys) > MAX_KEYS:
            self._keys.popitem(last=False)

    def succeeded(self, key: Hashable) -> None:
        self._keys.pop(key, None)


def address_key(address: str) -> str:
    """The unit an address is limited by: an IPv4 address, or an IPv6 address's /64 (one subscriber's
    network, in which a client picks new addresses at will)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 4:
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ipaddress.ip_network(f"{ip}/64", strict=False))
