"""What cached search answers share: how long a repeated page may be reused, and single flights for work that
many requests need at the same moment."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Any

DEFAULT_RESULT_TTL = 10.0  # seconds a repeated search or listing may be answered from memory


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
