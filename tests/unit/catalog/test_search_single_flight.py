"""SingleFlight (catalog/search/cache.py): callers asking for the same key at the same time share one computation."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from mcpstore_appliance.catalog.search.cache import SingleFlight

WAIT_SECONDS = 10.0  # only reached when a caller never joins: the test then fails on its assertion


def until(condition) -> None:
    """Poll `condition` (the leader holds its computation open until the others have joined)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)


def test_concurrent_callers_of_one_key_share_the_leaders_computation():
    flights = SingleFlight()
    computed = []

    def compute():
        computed.append(threading.current_thread().name)
        until(lambda: flights.joined == 4)  # every other caller is waiting on this computation
        return {"answer": 42}

    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: flights.run("key", compute), range(5)))
    assert len(computed) == 1
    assert flights.joined == 4
    assert all(answer is answers[0] for answer in answers)  # the same object, computed once
    assert flights.run("key", lambda: "later") == "later"  # a finished flight is not a cache


def test_the_leaders_exception_reaches_every_caller_and_the_next_call_computes_again():
    flights = SingleFlight()

    def failing():
        until(lambda: flights.joined == 2)
        raise RuntimeError("database is locked")

    def call():
        with pytest.raises(RuntimeError, match="database is locked"):
            flights.run("key", failing)

    with ThreadPoolExecutor(3) as pool:
        for future in [pool.submit(call) for _ in range(3)]:
            future.result()
    assert flights.joined == 2
    assert flights.run("key", lambda: "recovered") == "recovered"


def test_different_keys_compute_side_by_side():
    flights = SingleFlight()
    both_running = threading.Barrier(2, timeout=WAIT_SECONDS)

    def compute(key):
        both_running.wait()  # raises BrokenBarrierError if one key waited for the other
        return key

    with ThreadPoolExecutor(2) as pool:
        assert sorted(pool.map(lambda key: flights.run(key, lambda: compute(key)), ["a", "b"])) == ["a", "b"]
    assert flights.joined == 0
