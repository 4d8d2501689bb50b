"""What a search answers: one page of results (`SearchPage`), its items as JSON, and the cursor that
continues it (the sort keys of its last row, bound to the query, filters and sort)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ..cursors import CursorCodec, invalid, scope_digest
from ..pricing import pricing_of
from .plan import SORT_SPECS
from .query import MAX_TERMS, SearchQuery

_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode  # one encoder, not one per item


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


def package_url(base_url: str, namespace: str, name: str) -> str:
    return f"{base_url}/api/packages/{namespace}/{name}"


def item_json(base_url: str, row) -> str:
    """One result: the row's live columns, then the package's precomputed summary (a JSON object text)."""
    summary = row["summary_json"]
    namespace, name, sha256 = row["namespace"], row["name"], row["sha256"]
    url = package_url(base_url, namespace, name)
    dynamic = {
        "id": f"{namespace}/{name}", "namespace": namespace, "name": name, "category": row["category"],
        "tier": row["tier"],
        "pricing": pricing_of(row),
        "rating": row["rating"] if row["rating_count"] and row["rating"] >= 0 else None,
        "rating_count": row["rating_count"], "downloads": row["downloads"], "invocations": row["invocations"],
        "verified": bool(row["verified"]),
        "bundle_url": f"{base_url}/bundles/{sha256}.mcpb",
        "bundle_hash": f"sha256:{sha256}",
        "download_url": f"{url}/versions/{quote(row['version'], safe='')}/download",
        "url": url,
    }
    return _ENCODE(dynamic)[:-1] + "," + summary[1:]


def cursor_scope(query: SearchQuery, sort: str) -> str:
    # Bound to the query, filters and sort (not to the caller: the keys are of a row the caller saw).
    return scope_digest(query.terms, sorted(query.filters().items()), sort)


def next_cursor(cursors: CursorCodec, scope: str, row, sort: str, terms: list[str], corrected: str | None) -> str:
    state: dict[str, Any] = {"keys": [row[f"k{i}"] for i in range(len(SORT_SPECS[sort].keys))]}
    if corrected:
        state.update(terms=terms, corrected=corrected)
    return cursors.encode("search", scope, [state])


def cursor_state(cursors: CursorCodec, query: SearchQuery, sort: str, scope: str) -> dict | None:
    """The sort keys (and corrected words, if any) of the query's cursor; None without one; a 400 for a
    cursor that is forged, altered, of another query or malformed."""
    if query.cursor is None:
        return None
    decoded = cursors.decode(query.cursor, "search", scope)
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
