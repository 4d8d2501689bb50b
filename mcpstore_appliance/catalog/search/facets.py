"""Facet counts: by category, platform, pricing and runtime for a query and its filters, plus the total.
Counting visits every match, so counts are cached per (generation, plan): later pages and repeated searches
cost nothing."""

from __future__ import annotations

import sqlite3
from collections import Counter

from ...db import TooBigForTheLoop
from ...lru import LRU
from .cache import SingleFlight
from .plan import Plan
from .query import PLATFORMS

Facets = dict[str, dict[str, int]]


def empty_facets() -> Facets:
    return {"category": {}, "platform": {}, "pricing": {}, "runtime": {}}


def fold_facets(groups: list) -> tuple[int, Facets]:
    """Counts per facet value from (category, pricing, platforms, runtimes, count) groups, biggest first.
    A package naming no platform counts for every platform (the platform filter matches it too)."""
    counters: dict[str, Counter[str]] = {name: Counter() for name in ("category", "platform", "pricing", "runtime")}
    total = 0
    for category, pricing, platforms, runtimes, count in groups:
        total += count
        if category:
            counters["category"][category] += count
        counters["pricing"][pricing] += count
        for platform in (platforms.strip(",").split(",") if platforms else PLATFORMS):
            counters["platform"][platform] += count
        for runtime in runtimes.strip(",").split(",") if runtimes else ():
            counters["runtime"][runtime] += count
    facets = {name: dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
              for name, counter in counters.items()}
    return total, facets


class FacetCounts:
    def __init__(self, size: int = 1024):
        self.cache = LRU(size)
        self.flights = SingleFlight()

    def cached(self, plan: Plan, generation: int) -> tuple[int, Facets] | None:
        return self.cache.get((generation, *plan.key()))

    def get(self, conn: sqlite3.Connection, plan: Plan, generation: int, on_loop: bool = False) -> tuple[int, Facets]:
        key = (generation, *plan.key())
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if on_loop:
            raise TooBigForTheLoop()  # counting every match: a reader thread's work
        return self.flights.run(key, lambda: self._count(conn, plan, key))

    def _count(self, conn: sqlite3.Connection, plan: Plan, key: tuple) -> tuple[int, Facets]:
        groups = conn.execute(
            f"SELECT s.category, s.pricing_model, s.platforms, s.runtimes, count(*) FROM {plan.source}"
            f" WHERE {' AND '.join(plan.where)} GROUP BY 1, 2, 3, 4", plan.params).fetchall()
        result = fold_facets(groups)
        self.cache.put(key, result)
        return result
