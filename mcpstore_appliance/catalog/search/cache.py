"""What cached search answers share: how long a repeated page may be reused, which catalog changes it may
outlive, and single flights for work that many requests need at the same moment."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any


DEFAULT_RESULT_TTL = 10.0  # seconds a repeated search or listing may be answered from memory
# Seconds a cached page may outlive a change that only adds or updates packages (a publish, an edit, a
# rating). Without it every publish would make every popular search compute its page again at once, and a
# registry that publishes several times a second would compute nearly every search; with it, each page is
# computed at most once per window whatever the publish rate. A status change (a yank, a deprecation, a
# deletion, a visibility or owner change) is never outlived.
STALE_AFTER_CHANGE = 2.0


@dataclass(frozen=True)
class Mark:
    """Where the catalog is: its search generation (every change a search can see) and its count of status
    changes (those a search must show at once), both moved by triggers (005, 009)."""

    generation: int
    status_changes: int


@dataclass(frozen=True)
class CachedPage:
    value: Any
    mark: Mark
    computed_at: float  # time.monotonic()

    def usable(self, mark: Mark, now: float, ttl: float, stale_after_change: float) -> bool:
        """Whether this page may answer at `now`, when the catalog is at `mark`."""
        if now >= self.computed_at + ttl:
            return False
        if self.mark == mark:
            return True
        return self.mark.status_changes == mark.status_changes and now < self.computed_at + stale_after_change


def read_mark(conn: sqlite3.Connection) -> Mark:
    return Mark(*conn.execute("SELECT generation, status_changes FROM search_state WHERE id = 1").fetchone())


class SingleFlight:
    """Callers asking for the same key at the same time share one computation: the first computes, the others
    wait for its result (or its exception). After a catalog change a popular search's ranking and facet counts
    are cold at once, and each request for it that arrives while the first one is being computed would
    otherwise compute it again. Only for reader threads: the event loop must never wait, and a computation it
    leads may be cut short by its step budget, which is no answer for a thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future] = {}
        self.joined = 0  # calls answered by another caller's computation

    def run(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            flight = self._flights.get(key)
            leading = flight is None
            if leading:
                flight = self._flights[key] = Future()
            else:
                self.joined += 1
        if not leading:
            return flight.result()
        try:
            value = compute()
        except BaseException as exc:
            flight.set_exception(exc)
            raise
        else:
            flight.set_result(value)
            return value
        finally:
            with self._lock:
                del self._flights[key]
