"""The catalog search service: one page of results for a caller, a query and a cursor.

A page is computed in one snapshot from the plan (plan.py), a relevance ranking (ranking.py) or the joined
page query, the facet counts (facets.py) and, when the words find nothing, the typo fallback (spelling.py).
Recent pages are cached for repeated searches. A search runs on the event loop while the expensive parts are
cached, else on a reader thread (see Database.bounded).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from ...accounts.models import Principal
from ...db import Database, TooBigForTheLoop, snapshot
from ..cursors import CursorCodec
from ..visibility import visible_clause
from ...lru import LRU
from .cache import DEFAULT_RESULT_TTL, STALE_AFTER_CHANGE, CachedPage, read_mark
from .facets import FacetCounts, empty_facets
from .pages import SearchPage, cursor_scope, cursor_state, item_json, next_cursor
from .plan import Plan, joined_page, plan_for
from .query import SearchQuery
from .ranking import Rankings
from .spelling import SpellerCache, attempts

class SearchService:
    def __init__(self, db: Database, cursors: CursorCodec, base_url: str,
                 fold_epoch: Callable[[], int] = lambda: 0, result_ttl: float = DEFAULT_RESULT_TTL,
                 stale_after_change: float = STALE_AFTER_CHANGE):
        self.db = db
        self.marks = db.per_stamp(read_mark)  # read again only when the commit stamp moves
        self.stale_after_change = stale_after_change
        self.cursors = cursors
        self.base_url = base_url.rstrip("/")
        self.facets = FacetCounts()
        self.results = LRU(size=256)  # pages are 5-30 KB
        self.rankings = Rankings()
        self.spelling = SpellerCache(db.dedicated_reader)
        self.fold_epoch = fold_epoch
        self.result_ttl = result_ttl

    async def search(self, principal: Principal | None, query: SearchQuery, fresh: bool = False) -> SearchPage:
        """One page of results. `fresh` skips the recent-pages cache (a client's `Cache-Control: no-cache`)."""
        terms = query.terms
        if query.q.strip() and not terms:
            # Text with no searchable word in it (only punctuation or emoji): nothing can match.
            return SearchPage([], 0, empty_facets(), None, query.effective_sort(), query.q, None, query.filters())
        sort = query.effective_sort()
        # A cursor is checked before any cached page is given; the scope digest it is bound to (a JSON encoding
        # and a hash) is otherwise only needed when a page is computed.
        scope = after = None
        if query.cursor is not None:
            scope = cursor_scope(query, sort)
            after = cursor_state(self.cursors, query, sort, scope)
        # Recent pages are reused for repeated searches (popular queries, the storefront's lists): a page shows
        # a publish or an edit within stale_after_change seconds and a status change (a yank, a deprecation, a
        # deletion, a visibility change) at once (cache.py); counters that change without any of these
        # (invocations, other processes' download folds) may lag by up to result_ttl seconds.
        clause, params = visible_clause(principal, alias="s")
        mark = self.marks()
        key = (self.fold_epoch(), clause, tuple(params), query.q, tuple(sorted(query.filters().items())), sort,
               query.limit, query.cursor)
        now = time.monotonic()
        cached = None if fresh else self.results.get(key)
        if cached is not None and cached.usable(mark, now, self.result_ttl, self.stale_after_change):
            return cached.value
        scope = scope or cursor_scope(query, sort)

        def work(conn: sqlite3.Connection, on_loop: bool) -> SearchPage:
            return snapshot(conn, lambda c: self._search(c, principal, query, sort, scope, after, on_loop))

        # On the event loop when the expensive parts are cached, else on a reader thread.
        try:
            page = self.db.bounded(lambda conn: work(conn, True))
        except TooBigForTheLoop:
            page = await self.db.threaded(lambda conn: work(conn, False))
        if self.result_ttl > 0:
            page.json_text = page.to_json()
            self.results.put(key, CachedPage(page, mark, now))
        return page

    async def warm_up(self) -> None:
        """Build the typo index now (in a reader thread) rather than in the first search that needs it."""
        def build(conn: sqlite3.Connection) -> None:
            if not self.spelling.built:
                self.spelling.rebuild(conn, _generation(conn))

        await self.db.threaded(build)

    def _search(self, conn: sqlite3.Connection, principal: Principal | None, query: SearchQuery, sort: str,
                scope: str, after: dict | None, on_loop: bool = False) -> SearchPage:
        """One page. `on_loop`: running on the event loop (see Database.bounded), where the typo
        fallback and uncached facet counts are not computed: they raise TooBigForTheLoop instead."""
        generation = _generation(conn)
        terms = (after or {}).get("terms") or query.terms
        corrected = (after or {}).get("corrected")
        plan = plan_for(principal, query, sort, terms)
        if on_loop and self.facets.cached(plan, generation) is None:
            # Every way through below ends in this plan's facet counts, which the loop may not compute: go to a
            # reader thread now rather than after ranking on the loop.
            raise TooBigForTheLoop()
        keys = (after or {}).get("keys")
        rows = self._page(conn, plan, query.limit, keys, generation, on_loop)
        if not rows and terms and after is None:
            if on_loop:
                raise TooBigForTheLoop()
            fixed = self._corrected(conn, principal, query, sort, terms, generation)
            if fixed is not None:
                plan, rows = fixed
                corrected = " ".join(plan.terms)
        more = len(rows) > query.limit
        rows = rows[:query.limit]
        total, facets = self.facets.get(conn, plan, generation, on_loop)
        cursor = next_cursor(self.cursors, scope, rows[-1], sort, plan.terms, corrected) if more else None
        items = [item_json(self.base_url, row) for row in rows]
        return SearchPage(items, total, facets, cursor, sort, query.q, corrected, query.filters())

    def _page(self, conn: sqlite3.Connection, plan: Plan, limit: int, keys: list | None, generation: int,
              on_loop: bool = False) -> list:
        if plan.sort == "relevance" and plan.match:
            rows = self.rankings.page(conn, plan, limit, keys, generation, on_loop)
            if rows is not None:
                return rows
        return joined_page(conn, plan, limit, keys)

    def _corrected(self, conn: sqlite3.Connection, principal: Principal | None, query: SearchQuery, sort: str,
                   terms: list[str], generation: int) -> tuple[Plan, list[sqlite3.Row]] | None:
        """The first corrected query that finds something the caller can see (the vocabulary includes words of
        packages the caller cannot see, so a correction is only reported when it finds visible packages)."""
        speller = self.spelling.current(conn, generation)
        for attempt in attempts(speller, terms):
            plan = plan_for(principal, query, sort, attempt)
            rows = self._page(conn, plan, query.limit, None, generation)
            if rows:
                return plan, rows
        return None


def _generation(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT generation FROM search_state WHERE id = 1").fetchone()[0]
