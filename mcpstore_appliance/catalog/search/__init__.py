"""Catalog search: full text (SQLite FTS5, bm25 with field weights), filters, sorts, facets, keyset pages
and a typo fallback, for the JSON API, the storefront and the CLI.

- query.py     what a search asks for: parameters validated into a SearchQuery, its words
- plan.py      how it becomes SQL: conditions, visibility, filters, sorts, the joined page query
- ranking.py   relevance pages from cached rankings
- facets.py    counts by category, platform, pricing and runtime, and the total
- spelling.py  typo correction from the index vocabulary
- pages.py     the answer: SearchPage, item JSON, cursors
- cache.py     what cached answers share (reuse time, single flights)
- service.py   SearchService, which puts them together
"""

from .pages import SearchPage
from .query import FILTERS, MAX_LIMIT, PLATFORMS, SORTS, SearchQuery, parse_bool, parse_search_params
from .service import SearchService

__all__ = ["FILTERS", "MAX_LIMIT", "PLATFORMS", "SORTS", "SearchPage", "SearchQuery",
           "SearchService", "parse_bool", "parse_search_params"]
