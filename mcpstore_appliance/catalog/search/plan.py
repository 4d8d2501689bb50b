"""How a search becomes SQL: the FROM clause and conditions of a query (text, visibility, filters), the sort
keys of each sort, and the joined query that reads one keyset page.

- Text: `package_fts MATCH` on the query's words; relevance is bm25 with the weights in `FIELD_WEIGHTS`
  (the package name highest).
- Filters: category, platform, runtime, pricing, max_price, min_rating, verified, tier, org (a namespace).
- Sorts: relevance (with text), downloads, rating, newest, name. Pages are keyset-based: a cursor holds the
  sort key of the last row (see pages.py); no OFFSET anywhere.
- Visibility: every statement carries `visible_clause(principal)` on the search row, so private packages
  never appear in results, facets or totals of callers who may not see them.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ...accounts.models import Principal
from ..visibility import visible_clause
from .query import SearchQuery, fts_expression

# bm25 weights in the column order of package_fts: name, display_name, keywords, namespace, tools,
# description, author.
FIELD_WEIGHTS = (10.0, 8.0, 5.0, 3.0, 2.0, 1.5, 1.0)
BM25 = "bm25(package_fts, " + ", ".join(str(w) for w in FIELD_WEIGHTS) + ")"
FTS_SOURCE = "package_fts JOIN package_search s ON s.package_id = package_fts.rowid"


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

# What a result needs besides its sort keys, joined only for the rows of the page.
DETAIL_COLUMNS = (
    "s.namespace, s.name, s.category, s.pricing_model, s.price_amount, s.currency, s.tier, s.verified, s.rating,"
    " s.rating_count, s.downloads, p.invocations, sm.summary_json, v.sha256, v.version")
# The version row gives sha256 and version (its first columns) faster than parsing the summary JSON twice.
DETAIL_JOINS = ("JOIN package_summary sm ON sm.package_id = s.package_id JOIN packages p ON p.id = s.package_id"
                " JOIN versions v ON v.id = s.version_id")


@dataclass(frozen=True)
class Plan:
    source: str  # FROM clause
    where: list[str]  # with `match`, where[0] is the MATCH condition and params[0] its expression
    params: list[Any]
    sort: str
    spec: SortSpec
    terms: list[str]
    match: str | None

    def key(self) -> tuple:
        """Everything the plan's matches depend on (visibility included)."""
        return self.source, tuple(self.where), tuple(self.params)


def plan_for(principal: Principal | None, query: SearchQuery, sort: str, terms: list[str]) -> Plan:
    clause, params = visible_clause(principal, alias="s")
    where = ["s.version_id IS NOT NULL", clause]
    params = list(params)
    match = fts_expression(terms) if terms else None
    if match:
        source = FTS_SOURCE
        where.insert(0, "package_fts MATCH ?")
        params.insert(0, match)
    else:
        source = "package_search s"
    add_filters(query, where, params)
    return Plan(source, where, params, sort, SORT_SPECS[sort], terms, match)


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


def joined_page(conn: sqlite3.Connection, plan: Plan, limit: int, keys: list | None) -> list:
    """`limit + 1` rows after the cursor's `keys` in the plan's sort order, with their details."""
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


def details(conn: sqlite3.Connection, ids: list[int]) -> dict[int, sqlite3.Row]:
    """The detail columns of these packages, by id."""
    return {row["id"]: row for row in conn.execute(
        f"SELECT s.package_id AS id, {DETAIL_COLUMNS} FROM package_search s {DETAIL_JOINS}"
        f" WHERE s.package_id IN ({', '.join('?' * len(ids))})", ids)}
