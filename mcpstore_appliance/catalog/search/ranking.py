"""Relevance pages from cached rankings.

Ranking scores every match of an expression with bm25, so it costs in proportion to the matches, while
everything after it (visibility, filters, the rows of one page) is a few indexed lookups; so its best matches
are cached and shared by every caller, filter and page of the same words. A ranking holds packages of every
visibility: callers only ever see the ids that pass their own visibility and filter check.
"""

from __future__ import annotations

import bisect
import sqlite3
from array import array

from ...lru import LRU
from .cache import SingleFlight
from .plan import BM25, Plan, details


class Ranking:
    """The best matches of one FTS5 expression in relevance order (bm25 score, then package id)."""

    __slots__ = ("scores", "ids", "complete")

    def __init__(self, rows: list, keep: int):
        self.complete = len(rows) <= keep  # every match is in the list
        rows = rows[:keep]
        self.scores = array("d", (row[1] for row in rows))
        self.ids = array("q", (row[0] for row in rows))

    def __len__(self) -> int:
        return len(self.ids)

    def start_after(self, keys: list | None) -> int:
        """The position of the first entry after a cursor's (score, id) keys."""
        if keys is None:
            return 0
        scores, ids = self.scores, self.ids
        return bisect.bisect_right(range(len(ids)), (keys[0], keys[1]), key=lambda i: (scores[i], ids[i]))


class Rankings:
    """Rankings by (generation, expression): the best `keep` matches, cached only for expressions with at least
    `cache_min` matches (ranking fewer costs less than a cache slot is worth, and random words must not push
    the popular ones out). Exact by construction: the generation moves on every change of the index."""

    def __init__(self, size: int = 256, keep: int = 500, cache_min: int = 200):
        self.cache = LRU(size)  # <= size x 8 KB
        self.keep, self.cache_min = keep, cache_min
        # Ranked candidates checked against visibility and filters at a time: factor x the page within
        # [low, high] first, twice as many each further time (up to high).
        self.factor, self.low, self.high = 2, 20, 500
        self.flights = SingleFlight()

    def get(self, conn: sqlite3.Connection, match: str, generation: int, on_loop: bool = False) -> Ranking:
        """The expression's ranking in this generation: from the cache, or scored now by FTS5 (the caller's
        snapshot has this generation), once for all the reader threads that need it at the same time."""
        key = (generation, match)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        if on_loop:
            return self.rank(conn, key)
        return self.flights.run(key, lambda: self.rank(conn, key))

    def rank(self, conn: sqlite3.Connection, key: tuple[int, str]) -> Ranking:
        _, match = key
        rows = conn.execute(f"SELECT rowid, {BM25} AS score FROM package_fts WHERE package_fts MATCH ?"
                            " ORDER BY score, rowid LIMIT ?", (match, self.keep + 1)).fetchall()
        ranking = Ranking(rows, self.keep)
        if len(rows) >= self.cache_min:
            self.cache.put(key, ranking)
        return ranking

    def page(self, conn: sqlite3.Connection, plan: Plan, limit: int, keys: list | None, generation: int,
             on_loop: bool = False) -> list | None:
        """The relevance page from the expression's ranking: its entries after the cursor are checked against
        visibility and filters a batch at a time until the page is full. None when the ranking is cut short
        before the page is full; the caller then runs the joined query, which gives the same rows."""
        want = limit + 1
        batch = min(max(want * self.factor, self.low), self.high)
        ranking = self.get(conn, plan.match, generation, on_loop)
        position = ranking.start_after(keys)
        condition = " AND ".join(plan.where[1:])
        kept: list[tuple[int, float]] = []
        while len(kept) < want and position < len(ranking):
            ids = ranking.ids[position:position + batch].tolist()
            passing = {row[0] for row in conn.execute(
                f"SELECT s.package_id FROM package_search s WHERE s.package_id IN ({', '.join('?' * len(ids))})"
                f" AND {condition}", [*ids, *plan.params[1:]])}
            kept += [(package_id, ranking.scores[position + i]) for i, package_id in enumerate(ids)
                     if package_id in passing]
            position += len(ids)
            batch = min(batch * 2, self.high)
        if len(kept) < want and not ranking.complete:
            return None  # the page may continue past the cached ranking
        kept = kept[:want]
        if not kept:
            return []
        found = details(conn, [package_id for package_id, _ in kept])
        return [{**dict(found[package_id]), "k0": score, "k1": package_id} for package_id, score in kept]
