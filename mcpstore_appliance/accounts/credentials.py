"""What the accounts part keeps of credentials: secrets only as sha256 hashes, and a cache of who is behind a
token or session.

Secrets (API tokens, session ids, invite and setup codes) are random, shown once, and stored only as their
hash; lookups go by hash and a constant-time compare confirms the match.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Hashable
from typing import Any

from ..lru import LRU

CACHED_CALLERS = 4096


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class CallerCache:
    """Callers behind tokens and sessions, and their organizations, cached while `change_stamp()` stays the
    same: without it each signed-in request would cost two or three database round trips.

    `change_stamp` moves whenever the database may have changed (this process's commits at once, other
    processes' within about a second: Database.stamp). Without one, every call reads the database."""

    def __init__(self, change_stamp: Callable[[], Hashable] | None = None, size: int = CACHED_CALLERS):
        self.change_stamp = change_stamp or itertools.count().__next__  # a new value each time: nothing cached
        self._entries = LRU(size)

    def stamp(self) -> Hashable:
        """Take it before the reads whose result will be cached under it."""
        return self.change_stamp()

    def get(self, key: Hashable, stamp: Hashable) -> Any:
        """What was cached under `key` at `stamp`, or None."""
        found = self._entries.get(key)
        return found[1] if found is not None and found[0] == stamp else None

    def put(self, key: Hashable, stamp: Hashable, value: Any) -> None:
        self._entries.put(key, (stamp, value))
