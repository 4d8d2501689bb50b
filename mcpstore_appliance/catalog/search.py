"""Catalog search: full text (SQLite FTS5, bm25 with field weights), filters, sorts, facets, keyset pages.

- Text: the query is split into words the way the index tokenizes (letters and digits, diacritics folded,
  lower case). Every word is quoted before it reaches FTS5, so `"`, `NEAR`, `AND`, `*`, `-`, parentheses and
  `column:` filters in user text are searched as plain words, never run as FTS syntax. All words must match;
  the last one also matches as a prefix (search as you type). Ranking is bm25 with the weights in
  `FIELD_WEIGHTS` (the package name highest); an expression's ranking is kept per search generation and
  shared by every caller, filter and page of the same words (see `Ranking`).
- Typos: when the exact search finds nothing, words that are not in the index vocabulary are replaced by the
  nearest known words (trigram candidates, then edit distance <= 2) and the search runs again; the answer
  says which query it used (`corrected_query`). See `Speller`.
- Filters: category, platform, runtime, pricing, max_price, min_rating, verified, tier, org (a namespace).
- Sorts: relevance (with text), downloads, rating, newest, name. Pagination is keyset-based: the cursor holds
  the sort key of the last row (see cursors.py); no OFFSET anywhere.
- Facets: counts by category, platform, pricing and runtime for the current query and filters, plus the
  total. Cached per (search generation, visibility, query), so they cost nothing on later pages; the
  generation counter (005_search.sql) moves whenever anything they depend on changes.
- Visibility: every statement carries `visible_clause(principal)` on the search row, so private packages never
  appear in results, facets or totals of callers who may not see them.
"""

from __future__ import annotations

import bisect
import functools
import json
from array import array
import re
import sqlite3
import threading
import time
import unicodedata
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Hashable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..accounts.models import Principal
from ..db import Database, TooBigForTheLoop, snapshot
from ..errors import InvalidInput
from .cursors import CursorCodec, invalid, scope_digest
from .pricing import pricing_of
from .visibility import visible_clause

SORTS = ("relevance", "downloads", "rating", "newest", "name")
PLATFORMS = ("darwin", "linux", "win32")
PRICING_FILTERS = ("free", "paid", "per_call", "subscription")
TIERS = ("hobbyist", "pro")
FILTERS = ("category", "platform", "runtime", "pricing", "max_price", "min_rating", "verified", "tier", "org")
PARAMETERS = frozenset(("q", "sort", "limit", "cursor", *FILTERS))
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_QUERY_CHARS = 256
MAX_TERMS = 16
MAX_PRICE = 10**12
DEFAULT_RESULT_TTL = 10.0  # seconds a repeated search may be answered from memory
# bm25 weights in the column order of package_fts: name, display_name, keywords, namespace, tools,
# description, author.
FIELD_WEIGHTS = (10.0, 8.0, 5.0, 3.0, 2.0, 1.5, 1.0)
BM25 = "bm25(package_fts, " + ", ".join(str(w) for w in FIELD_WEIGHTS) + ")"
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: what FTS5's unicode61 tokenizer keeps
_SLUGLIKE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RUNTIME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder, not one per item


# --- the query ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SearchQuery:
    q: str = ""
    category: str | None = None
    platform: str | None = None
    runtime: str | None = None
    pricing: str | None = None
    max_price: int | None = None
    min_rating: float | None = None
    verified: bool | None = None
    tier: str | None = None
    org: str | None = None
    sort: str | None = None
    limit: int = DEFAULT_LIMIT
    cursor: str | None = None

    @functools.cached_property
    def terms(self) -> list[str]:
        """The query's words (read several times per search; worked out once). Not to be modified."""
        return terms_of(self.q)

    def effective_sort(self) -> str:
        """relevance needs words to rank by; without any, the catalog is listed by downloads."""
        sort = self.sort or ("relevance" if self.q.strip() else "downloads")
        return "downloads" if sort == "relevance" and not self.terms else sort

    def filters(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FILTERS if getattr(self, name) is not None}


def _bad(parameter: str, message: str, code: str = "invalid_parameter") -> InvalidInput:
    return InvalidInput(message, code=code, details={"parameter": parameter})


def _choice(params: Mapping[str, str], name: str, allowed: tuple[str, ...]) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if value not in allowed:
        raise _bad(name, f"{name} must be one of {', '.join(allowed)}")
    return value


def _pattern(params: Mapping[str, str], name: str, pattern: re.Pattern, what: str) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if not pattern.match(value):
        raise _bad(name, f"{name} must be {what}")
    return value


def parse_search_params(params: Mapping[str, str]) -> SearchQuery:
    """Validate query-string parameters (one value each); unknown names and bad values are a 400."""
    unknown = sorted(set(params) - PARAMETERS)
    if unknown:
        raise InvalidInput(f"unknown search parameter(s): {', '.join(name[:40] for name in unknown[:5])}; "
                           f"known: {', '.join(sorted(PARAMETERS))}", code="unknown_parameter",
                           details={"unknown": [name[:40] for name in unknown[:20]]})
    q = params.get("q") or ""
    if len(q) > MAX_QUERY_CHARS:
        raise _bad("q", f"the search text is limited to {MAX_QUERY_CHARS} characters", "query_too_long")
    if "\x00" in q:
        raise _bad("q", "the search text contains a NUL character")
    if len(terms_of(q)) > MAX_TERMS:
        raise _bad("q", f"the search text is limited to {MAX_TERMS} words", "query_too_long")
    sort = params.get("sort") or None
    if sort is not None and sort not in SORTS:
        raise _bad("sort", f"sort must be one of {', '.join(SORTS)}", "invalid_sort")
    return SearchQuery(
        q=q,
        category=_pattern(params, "category", _SLUGLIKE, "a category slug (lowercase letters, digits, '-')"),
        platform=_choice(params, "platform", PLATFORMS),
        runtime=_pattern(params, "runtime", _RUNTIME, "a runtime name such as node or python"),
        pricing=_choice(params, "pricing", PRICING_FILTERS),
        max_price=_int(params, "max_price", 0, MAX_PRICE),
        min_rating=_rating(params),
        verified=parse_bool(params.get("verified"), "verified"),
        tier=_choice(params, "tier", TIERS),
        org=_pattern(params, "org", _SLUGLIKE, "a namespace (organization or user name)"),
        sort=sort,
        limit=_int(params, "limit", 1, MAX_LIMIT, DEFAULT_LIMIT),
        cursor=params.get("cursor") or None,
    )


def _int(params: Mapping[str, str], name: str, low: int, high: int, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    if not re.fullmatch(r"[0-9]{1,13}", raw):
        raise _bad(name, f"{name} must be a whole number between {low} and {high}")
    value = int(raw)
    if not low <= value <= high:
        raise _bad(name, f"{name} must be between {low} and {high}")
    return value


def _rating(params: Mapping[str, str]) -> float | None:
    raw = params.get("min_rating")
    if raw is None or raw == "":
        return None
    if not re.fullmatch(r"[0-9](?:\.[0-9]{1,2})?", raw) or float(raw) > 5:
        raise _bad("min_rating", "min_rating must be a number from 0 to 5 (like 4 or 4.5)")
    return float(raw)


def parse_bool(raw: str | None, name: str) -> bool | None:
    """A boolean query parameter: true/1/yes, false/0/no, or absent (None)."""
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise _bad(name, f"{name} must be true or false")


def terms_of(text: str) -> list[str]:
    """The words of a query as the index sees them: letters/digits, diacritics removed, lower case, unique."""
    decomposed = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in decomposed if unicodedata.category(ch) != "Mn").lower()
    return list(dict.fromkeys(_WORD.findall(folded)))


def fts_expression(terms: list[str], prefix_last: bool = True) -> str:
    """An FTS5 MATCH expression in which every word is a quoted string (never FTS syntax); all must match."""
    parts = ['"' + term.replace('"', '""') + '"' for term in terms]
    if prefix_last and parts and len(terms[-1]) >= 2:
        parts[-1] += "*"
    return " ".join(parts)


# --- typo correction ---------------------------------------------------------------------------------------

def _grams(word: str) -> set[str]:
    padded = f"^{word}$"
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def edit_distance(a: str, b: str, limit: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap neighbours), capped at limit + 1."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > limit:
            return limit + 1
        previous2, previous = previous, current
    return previous[-1]


class Speller:
    """Nearest known words for a misspelled one, from the index vocabulary (term -> document count).

    Candidates share trigrams with the word (an in-memory trigram index over the vocabulary); the best are
    those within edit distance 1 (words up to 4 letters) or 2, then the most common. The vocabulary includes
    words of packages the caller cannot see, so a correction is only ever reported when the corrected search
    returns packages the caller can see (which then contain every corrected word)."""

    MAX_CANDIDATES = 300

    def __init__(self, vocabulary: dict[str, int]):
        self.docs = vocabulary
        self.sorted_terms = sorted(vocabulary)
        self.grams: dict[str, list[str]] = defaultdict(list)
        for term in vocabulary:
            if 3 <= len(term) <= 40 and not term.isdigit():
                for gram in _grams(term):
                    self.grams[gram].append(term)

    def knows(self, term: str, as_prefix: bool = False) -> bool:
        if term in self.docs:
            return True
        if as_prefix:
            at = bisect.bisect_left(self.sorted_terms, term)
            return at < len(self.sorted_terms) and self.sorted_terms[at].startswith(term)
        return False

    def suggestions(self, word: str, count: int = 3) -> list[str]:
        if len(word) < 3 or word.isdigit():
            return []
        shared: Counter[str] = Counter()
        for gram in _grams(word):
            shared.update(self.grams.get(gram, ()))
        limit = 1 if len(word) <= 4 else 2
        scored = []
        for term, _ in shared.most_common(self.MAX_CANDIDATES):
            distance = edit_distance(word, term, limit)
            if distance <= limit:
                scored.append((distance, -self.docs[term], term))
        return [term for _, _, term in sorted(scored)[:count]]


# --- results -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SortSpec:
    keys: tuple[str, ...]  # SQL expressions, in order
    descending: bool
    numeric: tuple[bool, ...]  # which keys are numbers (cursor validation)


SORT_SPECS = {
    "relevance": SortSpec((BM25, "s.package_id"), False, (True, True)),
    "downloads": SortSpec(("s.downloads", "s.package_id"), True, (True, True)),
    "rating": SortSpec(("s.rating", "s.rating_count", "s.package_id"), True, (True, True, True)),
    "newest": SortSpec(("s.published_at", "s.package_id"), True, (True, True)),
    "name": SortSpec(("s.name", "s.namespace", "s.package_id"), False, (False, False, True)),
}


@dataclass
class SearchPage:
    """One page of results. `items` are JSON object texts (assembled without re-encoding the precomputed
    summaries); `to_json()` is the API response, `item_dicts()` the same items as Python values."""

    items: list[str]
    total: int
    facets: dict[str, dict[str, int]]
    next_cursor: str | None
    sort: str
    query: str
    corrected_query: str | None = None
    filters: dict[str, Any] = field(default_factory=dict)
    json_text: str | None = None  # the serialized answer, kept with cached pages

    def item_dicts(self) -> list[dict[str, Any]]:
        return [json.loads(item) for item in self.items]

    def to_json(self) -> str:
        if self.json_text is not None:
            return self.json_text
        head = json.dumps({
            "total": self.total, "next_cursor": self.next_cursor,
            "query": {"q": self.query, "corrected_query": self.corrected_query, "sort": self.sort,
                      "filters": self.filters},
            "facets": self.facets,
        }, separators=(",", ":"), ensure_ascii=False)
        return head[:-1] + ',"packages":[' + ",".join(self.items) + "]}"


# What a result needs besides its sort keys, joined only for the rows of the page.
DETAIL_COLUMNS = (
    "s.namespace, s.name, s.category, s.pricing_model, s.price_amount, s.currency, s.tier, s.verified, s.rating,"
    " s.rating_count, s.downloads, p.invocations, sm.summary_json, v.sha256, v.version")
# The version row gives sha256 and version (its first columns) faster than parsing the summary JSON twice.
DETAIL_JOINS = ("JOIN package_summary sm ON sm.package_id = s.package_id JOIN packages p ON p.id = s.package_id"
                " JOIN versions v ON v.id = s.version_id")


@dataclass(frozen=True)
class _Plan:
    source: str  # FROM clause
    where: list[str]
    params: list[Any]
    sort: str
    spec: SortSpec
    terms: list[str]
    match: str | None


class FacetCache:
    """A bounded LRU shared by the reader threads: facet counts by (generation, visibility, query), recent
    result pages, and rankings by (generation, expression)."""

    def __init__(self, size: int = 1024):
        self.size = size
        self._entries: OrderedDict[tuple, tuple[int, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[int, dict] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple, value: tuple[int, dict]) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)


class SingleFlight:
    """Callers asking for the same key at the same time share one computation: the first computes, the others
    wait for its result (or its exception). After a catalog change every popular search's ranking and facet
    counts are cold at once, and each request for a word that arrives while the first one is being computed
    would otherwise compute it again (measured: 40% of the rankings computed under the benchmark's churn).
    Only for reader threads: the event loop must never wait, and a computation it leads may be cut short by
    its step budget, which is no answer for a thread."""

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


class Ranking:
    """The best matches of one FTS5 expression in relevance order (bm25 score, then package id), as ranked
    in one search generation. Ranking scores every match of the expression (about 1.2 us each: 2-25 ms for
    words matching 2-20% of 100,000 packages), while everything after it (visibility, filters, the rows of
    one page) costs a fraction of a millisecond, so the list is kept and shared by every caller, filter and
    page of the same words. It holds packages of every visibility: callers only ever see the ids that pass
    their own visibility and filter check. Exact by construction: the cache key holds the generation, which
    the triggers of 005_search.sql move on every change of the full-text index."""

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


class SearchService:
    def __init__(self, db: Database, cursors: CursorCodec, base_url: str, search_generation: Callable[[], int],
                 fold_epoch: Callable[[], int] = lambda: 0, result_ttl: float = DEFAULT_RESULT_TTL):
        self.db = db
        self.search_generation = search_generation  # read again only when the commit stamp moves
        self.cursors = cursors
        self.base_url = base_url.rstrip("/")
        self.facet_cache = FacetCache()
        self.results = FacetCache(size=256)  # the same bounded, thread-safe LRU (pages are 5-30 KB)
        self.fold_epoch = fold_epoch
        self.result_ttl = result_ttl
        # Ranked candidates checked against visibility and filters at a time: factor x the page within
        # [min, max] first, twice as many each further time (up to max).
        self.rank_factor, self.rank_min, self.rank_max = 2, 20, 500
        # Rankings kept per (generation, expression): the best rank_keep matches, only for expressions with
        # at least rank_cache_min matches (ranking fewer costs less than a cache slot is worth, and random
        # words must not push the popular ones out).
        self.rankings = FacetCache(size=256)  # <= 256 x 8 KB
        self.rank_keep, self.rank_cache_min = 500, 200
        self._flights = SingleFlight()  # rankings and facet counts being computed on a reader thread
        self._speller: Speller | None = None
        self._speller_generation = -1
        self._speller_seconds = 0.0
        self._speller_lock = threading.Lock()
        self._speller_refreshing = False

    async def search(self, principal: Principal | None, query: SearchQuery, fresh: bool = False) -> SearchPage:
        """One page of results. `fresh` skips the recent-pages cache (a client's `Cache-Control: no-cache`)."""
        terms = query.terms
        if query.q.strip() and not terms:
            # Text with no searchable word in it (only punctuation or emoji): nothing can match.
            return SearchPage([], 0, empty_facets(), None, query.effective_sort(), query.q, None, query.filters())
        sort = query.effective_sort()
        # A cursor is checked before any kept page is given; the scope digest it is bound to (a JSON encoding
        # and a hash) is otherwise only needed when a page is computed.
        scope = after = None
        if query.cursor is not None:
            scope = self._scope(principal, query, sort)
            after = self._after(query, sort, scope)
        # Recent pages are reused for repeated searches (popular queries, the storefront's lists): exact for
        # membership, order, facets and ratings (the key holds the search generation and the download-fold
        # epoch); only counters that change without either (invocations, other processes' folds) may lag by
        # up to result_ttl seconds.
        clause, params = visible_clause(principal, alias="s")
        generation = self.search_generation()
        key = (generation, self.fold_epoch(), clause, tuple(params), query.q, tuple(sorted(query.filters().items())),
               sort, query.limit, query.cursor)
        now = time.monotonic()
        cached = None if fresh else self.results.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        scope = scope or self._scope(principal, query, sort)

        def work(conn: sqlite3.Connection, on_loop: bool) -> SearchPage:
            return snapshot(conn, lambda c: self._search(c, principal, query, sort, scope, after, on_loop))

        # On the event loop when the expensive parts are cached (about 0.5 ms), else on a reader thread.
        try:
            page = self.db.bounded(lambda conn: work(conn, True))
        except TooBigForTheLoop:
            page = await self.db.threaded(lambda conn: work(conn, False))
        if self.result_ttl > 0:
            page.json_text = page.to_json()
            self.results.put(key, (now + self.result_ttl, page))
        return page

    async def warm_up(self) -> None:
        """Build the typo index now (in a reader thread) rather than in the first search that needs it."""
        def build(conn: sqlite3.Connection) -> None:
            generation = conn.execute("SELECT generation FROM search_state WHERE id = 1").fetchone()[0]
            if self._speller is None:
                self._rebuild_speller(conn, generation)

        await self.db.threaded(build)

    # -- inside a reader thread ---------------------------------------------------------------------------

    def _search(self, conn: sqlite3.Connection, principal: Principal | None, query: SearchQuery, sort: str,
                scope: str, after: dict | None, on_loop: bool = False) -> SearchPage:
        """One page. `on_loop`: running on the event loop (see Database.bounded), where the typo
        fallback and uncached facet counts are not computed: they raise TooBigForTheLoop instead."""
        generation = conn.execute("SELECT generation FROM search_state WHERE id = 1").fetchone()[0]
        terms = (after or {}).get("terms") or query.terms
        corrected = (after or {}).get("corrected")
        plan = self._plan(principal, query, sort, terms)
        if on_loop and self.facet_cache.get(self._facet_key(plan, generation)) is None:
            # Every way through below ends in this plan's facet counts, which the loop may not compute: go to a
            # reader thread now rather than after ranking on the loop (wasted work, a few ms, after each change).
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
        total, facets = self._facets(conn, principal, plan, generation, on_loop)
        next_cursor = None
        if more:
            last = rows[-1]
            state = {"keys": [last[f"k{i}"] for i in range(len(plan.spec.keys))]}
            if corrected:
                state.update(terms=plan.terms, corrected=corrected)
            next_cursor = self.cursors.encode("search", scope, [state])
        items = [self._item(row) for row in rows]
        return SearchPage(items, total, facets, next_cursor, sort, query.q, corrected, query.filters())

    def _plan(self, principal: Principal | None, query: SearchQuery, sort: str, terms: list[str]) -> _Plan:
        clause, params = visible_clause(principal, alias="s")
        where = ["s.version_id IS NOT NULL", clause]
        params = list(params)
        match = fts_expression(terms) if terms else None
        if match:
            source = "package_fts JOIN package_search s ON s.package_id = package_fts.rowid"
            where.insert(0, "package_fts MATCH ?")
            params.insert(0, match)
        else:
            source = "package_search s"
        add_filters(query, where, params)
        return _Plan(source, where, params, sort, SORT_SPECS[sort], terms, match)

    def _page(self, conn: sqlite3.Connection, plan: _Plan, limit: int, keys: list | None, generation: int,
              on_loop: bool = False) -> list:
        if plan.sort == "relevance" and plan.match:
            rows = self._ranked_page(conn, plan, limit, keys, generation, on_loop)
            if rows is not None:
                return rows
        spec = plan.spec
        where, params = list(plan.where), list(plan.params)
        if keys is not None:
            op = "<" if spec.descending else ">"
            where.append(f"({', '.join(spec.keys)}) {op} ({', '.join('?' * len(keys))})")
            params += keys
        direction = " DESC" if spec.descending else ""
        order = ", ".join(f"k{i}{direction}" for i in range(len(spec.keys)))
        selected = ", ".join(f"{key} AS k{i}" for i, key in enumerate(spec.keys))
        # The inner query picks the page's ids (LIMIT keeps SQLite from flattening it into the joins below),
        # so only the rows shown are joined with their summaries.
        inner = (f"SELECT s.package_id AS id, {selected} FROM {plan.source} WHERE {' AND '.join(where)}"
                 f" ORDER BY {order} LIMIT ?")
        sql = (f"SELECT r.*, {DETAIL_COLUMNS} FROM ({inner}) r JOIN package_search s ON s.package_id = r.id"
               f" {DETAIL_JOINS} ORDER BY {order}")
        return conn.execute(sql, [*params, limit + 1]).fetchall()

    def _ranked_page(self, conn: sqlite3.Connection, plan: _Plan, limit: int, keys: list | None,
                     generation: int, on_loop: bool = False) -> list | None:
        """The relevance page from the expression's ranking (see `Ranking`): its entries after the cursor are
        checked against visibility and filters a batch at a time until the page is full. None when the
        ranking is cut short before the page is full; the caller then runs the joined query, which gives
        the same rows."""
        want = limit + 1
        batch = min(max(want * self.rank_factor, self.rank_min), self.rank_max)
        ranking = self._ranking(conn, plan.match, generation, on_loop)
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
            batch = min(batch * 2, self.rank_max)
        if len(kept) < want and not ranking.complete:
            return None  # the page may continue past the kept ranking
        kept = kept[:want]
        if not kept:
            return []
        details = {row["id"]: row for row in conn.execute(
            f"SELECT s.package_id AS id, {DETAIL_COLUMNS} FROM package_search s {DETAIL_JOINS}"
            f" WHERE s.package_id IN ({', '.join('?' * len(kept))})", [package_id for package_id, _ in kept])}
        return [{**dict(details[package_id]), "k0": score, "k1": package_id} for package_id, score in kept]

    def _ranking(self, conn: sqlite3.Connection, match: str, generation: int, on_loop: bool = False) -> Ranking:
        """The expression's ranking in this generation: from the cache, or scored now by FTS5 (bm25 with the
        field weights over every match; the caller's snapshot has this generation), once for all the reader
        threads that need it at the same time."""
        key = (generation, match)
        cached = self.rankings.get(key)
        if cached is not None:
            return cached
        if on_loop:
            return self._rank(conn, key)
        return self._flights.run(("ranking", *key), lambda: self._rank(conn, key))

    def _rank(self, conn: sqlite3.Connection, key: tuple[int, str]) -> Ranking:
        _, match = key
        rows = conn.execute(f"SELECT rowid, {BM25} AS score FROM package_fts WHERE package_fts MATCH ?"
                            " ORDER BY score, rowid LIMIT ?", (match, self.rank_keep + 1)).fetchall()
        ranking = Ranking(rows, self.rank_keep)
        if len(rows) >= self.rank_cache_min:
            self.rankings.put(key, ranking)
        return ranking

    def _corrected(self, conn: sqlite3.Connection, principal: Principal | None, query: SearchQuery, sort: str,
                   terms: list[str], generation: int) -> tuple[_Plan, list[sqlite3.Row]] | None:
        speller = self._current_speller(conn, generation)
        if speller is None:
            return None
        options: list[list[str]] = []
        for index, term in enumerate(terms):
            last = index == len(terms) - 1
            if speller.knows(term, as_prefix=last and len(term) >= 2):
                options.append([term])
            else:
                options.append(speller.suggestions(term) or [])
        if all(len(o) == 1 and o[0] == t for o, t in zip(options, terms)) or any(not o for o in options):
            return None
        # Try the best suggestion for every word, then the runners-up one word at a time (at most 3 runs).
        attempts = [[o[0] for o in options]]
        for index, choices in enumerate(options):
            for alternative in choices[1:]:
                attempt = [o[0] for o in options]
                attempt[index] = alternative
                attempts.append(attempt)
        for attempt in attempts[:3]:
            plan = self._plan(principal, query, sort, list(dict.fromkeys(attempt)))
            rows = self._page(conn, plan, query.limit, None, generation)
            if rows:
                return plan, rows
        return None

    def _current_speller(self, conn: sqlite3.Connection, generation: int) -> Speller | None:
        """The speller for this generation. Rebuilt in the caller's thread when the vocabulary is small
        (it then always reflects the latest publish); for a big one, an older speller answers while a
        rebuild runs in the background."""
        speller = self._speller
        if speller is not None and self._speller_generation == generation:
            return speller
        if speller is None or self._speller_seconds < 0.05:
            return self._rebuild_speller(conn, generation)
        with self._speller_lock:
            start = not self._speller_refreshing
            self._speller_refreshing = True
        if start:
            threading.Thread(target=self._refresh_in_background, args=(generation,), daemon=True).start()
        return speller

    def _rebuild_speller(self, conn: sqlite3.Connection, generation: int) -> Speller:
        started = time.perf_counter()
        vocabulary = {term: docs for term, docs in conn.execute("SELECT term, doc FROM package_fts_vocab")}
        speller = Speller(vocabulary)
        self._speller, self._speller_generation = speller, generation
        self._speller_seconds = time.perf_counter() - started
        return speller

    def _refresh_in_background(self, generation: int) -> None:
        try:
            with self.db.dedicated_reader() as conn:
                self._rebuild_speller(conn, generation)
        finally:
            with self._speller_lock:
                self._speller_refreshing = False

    def _facets(self, conn: sqlite3.Connection, principal: Principal | None, plan: _Plan,
                generation: int, on_loop: bool = False) -> tuple[int, dict[str, dict[str, int]]]:
        key = self._facet_key(plan, generation)
        cached = self.facet_cache.get(key)
        if cached is not None:
            return cached
        if on_loop:
            raise TooBigForTheLoop()  # counting every match: a reader thread's work
        return self._flights.run(("facets", *key), lambda: self._count(conn, plan, key))

    def _count(self, conn: sqlite3.Connection, plan: _Plan, key: tuple) -> tuple[int, dict[str, dict[str, int]]]:
        groups = conn.execute(
            f"SELECT s.category, s.pricing_model, s.platforms, s.runtimes, count(*) FROM {plan.source}"
            f" WHERE {' AND '.join(plan.where)} GROUP BY 1, 2, 3, 4", plan.params).fetchall()
        result = fold_facets(groups)
        self.facet_cache.put(key, result)
        return result

    @staticmethod
    def _facet_key(plan: _Plan, generation: int) -> tuple:
        return generation, plan.source, tuple(plan.where), tuple(plan.params)

    def _item(self, row) -> str:
        summary = row["summary_json"]
        namespace, name, sha256 = row["namespace"], row["name"], row["sha256"]
        dynamic = {
            "id": f"{namespace}/{name}", "namespace": namespace, "name": name, "category": row["category"],
            "tier": row["tier"],
            "pricing": pricing_of(row),
            "rating": row["rating"] if row["rating_count"] and row["rating"] >= 0 else None,
            "rating_count": row["rating_count"], "downloads": row["downloads"], "invocations": row["invocations"],
            "verified": bool(row["verified"]),
            "bundle_url": f"{self.base_url}/bundles/{sha256}.mcpb",
            "bundle_hash": f"sha256:{sha256}",
            "download_url": package_url(self.base_url, namespace, name) + f"/versions/{quote(row['version'], safe='')}"
                            "/download",
            "url": package_url(self.base_url, namespace, name),
        }
        return _ENCODE(dynamic)[:-1] + "," + summary[1:]

    # -- cursors --------------------------------------------------------------------------------------------

    @staticmethod
    def _scope(principal: Principal | None, query: SearchQuery, sort: str) -> str:
        # Bound to the query, filters and sort (not to the caller: the keys are of a row the caller saw).
        return scope_digest(query.terms, sorted(query.filters().items()), sort)

    def _after(self, query: SearchQuery, sort: str, scope: str) -> dict | None:
        if query.cursor is None:
            return None
        decoded = self.cursors.decode(query.cursor, "search", scope)
        state = decoded[0] if len(decoded) == 1 else None
        spec = SORT_SPECS[sort]
        keys = state.get("keys") if isinstance(state, dict) else None
        if not isinstance(keys, list) or len(keys) != len(spec.keys):
            raise invalid("malformed cursor")
        for value, numeric in zip(keys, spec.numeric):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric else isinstance(value, str)
            if not ok:
                raise invalid("malformed cursor")
        terms = state.get("terms")
        if terms is not None and (not isinstance(terms, list) or not all(isinstance(t, str) for t in terms)
                                  or len(terms) > MAX_TERMS):
            raise invalid("malformed cursor")
        return {"keys": keys, "terms": terms, "corrected": state.get("corrected")}


def add_filters(query: SearchQuery, where: list[str], params: list[Any]) -> None:
    if query.category is not None:
        where.append("s.category = ?")
        params.append(query.category)
    if query.platform is not None:
        # A package that names no platform runs anywhere, so it matches every platform filter.
        where.append("(s.platforms = '' OR instr(s.platforms, ?) > 0)")
        params.append(f",{query.platform},")
    if query.runtime is not None:
        where.append("instr(s.runtimes, ?) > 0")
        params.append(f",{query.runtime},")
    if query.pricing == "paid":
        where.append("s.pricing_model <> 'free'")
    elif query.pricing is not None:
        where.append("s.pricing_model = ?")
        params.append(query.pricing)
    if query.max_price is not None:
        where.append("s.price_amount <= ?")
        params.append(query.max_price)
    if query.min_rating:
        where.append("s.rating >= ?")
        params.append(query.min_rating)
    if query.verified is not None:
        where.append("s.verified = ?")
        params.append(int(query.verified))
    if query.tier is not None:
        where.append("s.tier = ?")
        params.append(query.tier)
    if query.org is not None:
        # server_key = namespace || '/' || name: a range on its index ('0' is the character after '/').
        where.append("s.server_key >= ? AND s.server_key < ?")
        params += [query.org + "/", query.org + "0"]


def empty_facets() -> dict[str, dict[str, int]]:
    return {"category": {}, "platform": {}, "pricing": {}, "runtime": {}}


def fold_facets(groups: list) -> tuple[int, dict[str, dict[str, int]]]:
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


def package_url(base_url: str, namespace: str, name: str) -> str:
    return f"{base_url}/api/packages/{namespace}/{name}"
