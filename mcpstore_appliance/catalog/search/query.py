"""What a search asks for: query-string parameters validated into a `SearchQuery`, and its words as the
full-text index sees them.

Every word is quoted before it reaches FTS5 (`fts_expression`), so `"`, `NEAR`, `AND`, `*`, `-`, parentheses
and `column:` filters in user text are searched as plain words, never run as FTS syntax. All words must
match; the last one also matches as a prefix (search as you type).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import InvalidInput

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
_WORD = re.compile(r"[^\W_]+")  # runs of letters and digits: what FTS5's unicode61 tokenizer keeps
_SLUGLIKE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_RUNTIME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,31}$")


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


