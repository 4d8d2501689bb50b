"""The catalog as the official MCP Registry API (v0.1) sees it: server.json documents and their `_meta`.

Each published version of a package is one registry entry:

- `server.name` is reverse-DNS under the configured prefix: `<prefix>.<namespace>/<name>`
  (e.g. `com.example.mcpstore.acme/weather`); namespaces and names are slugs, so this always matches the
  registry's name pattern.
- `server.packages[0]` is the bundle: `registryType: "mcpb"`, the appliance's content-addressed download URL as
  `identifier`, `fileSha256` of the stored bytes, stdio transport.
- `server.remotes[0]`, only where a server answers: the publisher's own https endpoint for the pro tier; the
  hobbyist tier's hosted endpoint, `{base}/mcp/{namespace}/{name}`, where the gateway has a working sandbox
  backend and runs the server's type (`hosted_types`).
- `_meta["io.modelcontextprotocol.registry/official"]`: status (`deleted` for a yanked version, `deprecated`,
  else `active`), publishedAt, updatedAt, statusChangedAt, isLatest; our extras (verified, rating, pricing,
  ledger index, ...) under `<prefix>/catalog`.

Listing order is (server name, version) compared as text, as upstream; keyset-paginated. Private packages
follow the one visibility rule like every other read.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sqlite3
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from ..accounts.models import Principal
from ..db import Database, TooBigForTheLoop
from ..errors import InvalidInput, NotFound
from .cursors import CursorCodec, invalid, scope_digest
from .names import is_package_ref
from .package_view import iso, version_path
from .pricing import pricing_of
from ..lru import LRU
from .search.cache import DEFAULT_RESULT_TTL
from .visibility import visible_clause

OFFICIAL = "io.modelcontextprotocol.registry/official"
SCHEMA_URL = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"
DEFAULT_LIMIT = 30
MAX_LIMIT = 100
MAX_SEARCH = 200
TRIGRAM_CHARS = 3  # FTS5's trigram index finds substrings of at least 3 characters
# Matching packages under which the trigram index answers a search sooner than the scan in name order (at
# 100,000 packages both cost about 8 ms of CPU at 400 matches: benchmarks/README.md, Discovery).
FEW_MATCHES = 400
PROBE_SQL = "SELECT count(*) FROM (SELECT rowid FROM registry_text WHERE registry_text MATCH ? LIMIT ?)"
_PREFIX = re.compile(r"^[a-zA-Z0-9.-]+$")

ENTRY_COLUMNS = (
    "s.package_id, s.namespace, s.name, s.server_key, s.tier, s.verified, s.rating, s.rating_count, s.downloads,"
    " s.pricing_model, s.price_amount, s.currency, s.visibility, p.endpoint_url, p.latest_version_id,"
    " ec.ok AS endpoint_ok,"
    " v.id AS v_id, v.version, v.sha256, v.size, v.published_at, v.updated_at, v.yanked_at, v.yank_reason,"
    " v.deprecated_at, v.deprecation_reason, v.ledger_index, v.signature_status,"
    # One parse of the version's metadata for the four fields (a JSON array of them).
    " json_extract(v.metadata_json, '$.display_name', '$.description', '$.links', '$.server_type') AS texts_json")
ENTRY_FROM = ("package_search s JOIN versions v ON v.package_id = s.package_id"
              " JOIN packages p ON p.id = s.package_id"
              # the pro endpoint's last check (gateway/endpoint_health.py): a failing one is not offered
              " LEFT JOIN endpoint_checks ec ON ec.package_id = s.package_id AND ec.endpoint_url = p.endpoint_url")


def server_not_found() -> NotFound:
    return NotFound("Server not found", code="server_not_found")


class RegistryView:
    def __init__(self, db: Database, cursors: CursorCodec, base_url: str, name_prefix: str,
                 search_generation: Callable[[], int], fold_epoch: Callable[[], int] = lambda: 0,
                 result_ttl: float = DEFAULT_RESULT_TTL, hosted_types: frozenset[str] = frozenset()):
        if not _PREFIX.match(name_prefix):
            raise ValueError(f"registry name prefix {name_prefix!r} must be reverse-DNS (letters, digits, '.', '-')")
        self.search_generation = search_generation  # read again only when the commit stamp moves
        self.fold_epoch = fold_epoch
        self.result_ttl = result_ttl
        self._pages = LRU(size=128)  # listing pages are up to ~100 KB
        self.few_matches = FEW_MATCHES  # see _page
        self.db = db
        self.cursors = cursors
        self.base_url = base_url.rstrip("/")
        self.prefix = name_prefix
        self.extras_key = f"{name_prefix}/catalog"
        # Server types the hosted gateway runs; empty while it has no working sandbox backend (gateway/).
        self.hosted_types = hosted_types

    # -- names ------------------------------------------------------------------------------------------

    def server_name(self, namespace: str, name: str) -> str:
        return f"{self.prefix}.{namespace}/{name}"

    def parse_server_name(self, server_name: str) -> tuple[str, str]:
        head, slash, name = server_name.partition("/")
        if not slash or not head.startswith(self.prefix + "."):
            raise server_not_found()
        namespace = head[len(self.prefix) + 1:]
        if not is_package_ref(namespace, name):
            raise server_not_found()
        return namespace, name

    # -- reads ------------------------------------------------------------------------------------------

    async def list_servers_json(self, principal: Principal | None, fresh: bool = False, **params: Any) -> str:
        """`list_servers` serialized, with repeated requests (host probes, the first pages that every client
        fetches) answered from memory for up to `result_ttl` seconds. The key holds the catalog's search
        generation, which every publish, status change and package edit moves, and the download-fold count,
        so listings are never older than the catalog; only counters in our `_meta` extras may lag. `fresh`
        (a client's `Cache-Control: no-cache`) skips the cache."""
        clause, values = visible_clause(principal, alias="s")
        generation = self.search_generation()
        key = (generation, self.fold_epoch(), clause, tuple(values), tuple(sorted(params.items())))
        now = time.monotonic()
        cached = None if fresh else self._pages.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        text = json.dumps(await self.list_servers(principal, **params), separators=(",", ":"), ensure_ascii=False)
        if self.result_ttl > 0:
            self._pages.put(key, (now + self.result_ttl, text))
        return text

    async def list_servers(self, principal: Principal | None, *, cursor: str | None = None, limit: int = DEFAULT_LIMIT,
                           search: str | None = None, updated_since: str | None = None, version: str | None = None,
                           include_deleted: bool | None = None) -> dict[str, Any]:
        since = parse_rfc3339(updated_since) if updated_since else None
        if since is not None:
            if include_deleted is False:
                raise InvalidInput("include_deleted=false cannot be combined with updated_since (which includes "
                                   "deleted entries, so that mirrors learn about them)", code="invalid_parameter")
            include_deleted = True
        if search is not None and len(search) > MAX_SEARCH:
            raise InvalidInput(f"search is limited to {MAX_SEARCH} characters", code="invalid_parameter")
        clause, params = visible_clause(principal, alias="s")
        where = [clause, "v.state = 'published'"]
        params = list(params)
        if not include_deleted:
            where.append("v.yanked_at IS NULL")
        if version == "latest":
            where.append("v.id = p.latest_version_id")
        elif version:
            where.append("v.version = ?")
            params.append(version)
        if since is not None:
            where.append("v.updated_at > ?")
            params.append(since)
        needle = search.lower() if search else None
        if needle:
            where.append("(instr(lower(s.server_key), ?) > 0 OR instr(lower(s.description), ?) > 0)")
            params += [needle, needle]
        scope = scope_digest(version, since, search, bool(include_deleted))
        if cursor:
            keys = self.cursors.decode(cursor, "registry", scope)
            if len(keys) != 2 or not all(isinstance(k, str) for k in keys):
                raise invalid("malformed cursor")
            # (server_key, version) > (a, b), written so that SQLite can start the index scan at a.
            where.append("s.server_key >= ? AND (s.server_key > ? OR v.version > ?)")
            params += [keys[0], keys[0], keys[1]]
        rows = await self._page(*_page_queries(where, params, needle, limit))
        metadata: dict[str, Any] = {"count": len(rows)}
        if len(rows) >= limit:  # upstream: a cursor whenever the page is full
            last = rows[-1]
            metadata["nextCursor"] = self.cursors.encode("registry", scope, [last["server_key"], last["version"]])
        return {"servers": [self.entry(row) for row in rows], "metadata": metadata}

    async def _page(self, scan: tuple[str, list], indexed: tuple[str, list] | None, phrase: str | None) -> list:
        """One listing page. With a search, two plans give the same rows: the scan in name order fills a page
        of a common substring within a few rows but reads the whole catalog for a rare one; the trigram index
        finds a rare one's few packages at once but must fetch and sort every one of a common one's. A probe
        of the index (a capped count, well under a millisecond) tells which: under FEW_MATCHES matches the
        index, else the scan. The chosen plan runs on the event loop within the database's budget of SQLite
        steps, and on a reader thread past it."""
        plan = scan
        if indexed is not None and self.db.inline(
                lambda c: c.execute(PROBE_SQL, (phrase, self.few_matches)).fetchone()[0]) < self.few_matches:
            plan = indexed
        try:
            return self.db.bounded(lambda c: c.execute(*plan).fetchall())
        except TooBigForTheLoop:
            return await self.db.threaded(lambda c: c.execute(*plan).fetchall())

    def server_versions(self, principal: Principal | None, server_name: str,
                        include_deleted: bool = False) -> dict[str, Any]:
        """All versions of one server, newest publication first (unpaginated, as upstream)."""
        rows = self._entries(principal, server_name, include_deleted, None)
        rows.sort(key=lambda r: (r["published_at"], r["v_id"]), reverse=True)
        return {"servers": [self.entry(row) for row in rows], "metadata": {"count": len(rows)}}

    def server_version(self, principal: Principal | None, server_name: str, version: str,
                       include_deleted: bool = False) -> dict[str, Any]:
        rows = self._entries(principal, server_name, include_deleted, version)
        if not rows:
            raise server_not_found()
        return self.entry(rows[0])

    def _entries(self, principal: Principal | None, server_name: str, include_deleted: bool,
                 version: str | None) -> list[sqlite3.Row]:
        namespace, name = self.parse_server_name(server_name)
        clause, params = visible_clause(principal, alias="s")
        where = ["s.server_key = ?", clause, "v.state = 'published'"]
        values: list[Any] = [f"{namespace}/{name}", *params]
        if not include_deleted:
            where.append("v.yanked_at IS NULL")
        if version == "latest":
            where.append("v.id = p.latest_version_id")
        elif version is not None:
            where.append("v.version = ?")
            values.append(version)
        sql = f"SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE {' AND '.join(where)}"
        rows = self.db.inline(lambda c: c.execute(sql, values).fetchall())
        if not rows and version is None:
            raise server_not_found()
        return rows

    # -- documents --------------------------------------------------------------------------------------

    def entry(self, row: sqlite3.Row) -> dict[str, Any]:
        return {"server": self.server_json(row), "_meta": self.meta(row)}

    def server_json(self, row: sqlite3.Row) -> dict[str, Any]:
        namespace, name = row["namespace"], row["name"]
        display_name, description, links, _ = json.loads(row["texts_json"])
        title = (display_name or name).strip()[:100] or name
        description = _short(description or title, 100)
        document: dict[str, Any] = {
            "$schema": SCHEMA_URL,
            "name": self.server_name(namespace, name),
            "title": title,
            "description": description,
            "version": row["version"],
        }
        links = links or {}
        repository = _repository(links.get("repository"))
        if repository:
            document["repository"] = repository
        if _is_http(links.get("homepage")):
            document["websiteUrl"] = links["homepage"]
        document["packages"] = [{
            "registryType": "mcpb",
            "identifier": f"{self.base_url}/bundles/{row['sha256']}.mcpb",
            "version": row["version"],
            "fileSha256": row["sha256"],
            "transport": {"type": "stdio"},
        }]
        remote = self._remote(row)
        if remote:
            document["remotes"] = [remote]
        return document

    def _remote(self, row: sqlite3.Row) -> dict[str, Any] | None:
        """A remote only where one answers: an MCP host offers its users every remote it is given."""
        if row["tier"] == "hobbyist":
            return self._hosted_remote(row)
        url = row["endpoint_url"] if row["tier"] == "pro" else None
        if not (_is_http(url) and url.startswith("https://")) or row["endpoint_ok"] == 0:
            return None  # not yet checked: offered; its last check failed: not
        remote: dict[str, Any] = {"type": "streamable-http", "url": url}
        if row["pricing_model"] != "free":
            remote["headers"] = [{"name": "Authorization", "isRequired": True, "isSecret": True,
                                  "description": f"Bearer usage token bought at {self.base_url}"}]
        return remote

    def _hosted_remote(self, row: sqlite3.Row) -> dict[str, Any] | None:
        """The gateway's endpoint (gateway/), where hosted execution works and the server type is hosted."""
        if not self.hosted_types or json.loads(row["texts_json"])[3] not in self.hosted_types:
            return None
        return {"type": "streamable-http", "url": f"{self.base_url}/mcp/{row['namespace']}/{row['name']}",
                "headers": [{"name": "Authorization", "isRequired": True, "isSecret": True,
                             "description": f"Bearer API token of your account at {self.base_url}"}]}

    def meta(self, row: sqlite3.Row) -> dict[str, Any]:
        if row["yanked_at"] is not None:
            status, message, changed = "deleted", row["yank_reason"], row["yanked_at"]
        elif row["deprecated_at"] is not None:
            status, message, changed = "deprecated", row["deprecation_reason"], row["deprecated_at"]
        else:
            status, message, changed = "active", None, row["published_at"]
        official: dict[str, Any] = {"status": status}
        if message:
            official["statusMessage"] = message[:500]
        official.update({"statusChangedAt": iso(changed), "publishedAt": iso(row["published_at"]),
                         "updatedAt": iso(row["updated_at"]), "isLatest": row["v_id"] == row["latest_version_id"]})
        namespace, name = row["namespace"], row["name"]
        extras = {
            "id": f"{namespace}/{name}",
            "verified": bool(row["verified"]),
            "rating": row["rating"] if row["rating_count"] and row["rating"] >= 0 else None,
            "ratingCount": row["rating_count"],
            "downloads": row["downloads"],
            "pricing": pricing_of(row),
            "tier": row["tier"],
            "ledgerIndex": row["ledger_index"],
            "signature": row["signature_status"],
            "size": row["size"],
            "packageUrl": f"{self.base_url}/api/packages/{namespace}/{name}",
            "downloadUrl": version_path(self.base_url, namespace, name, row["version"]) + "/download",
        }
        return {OFFICIAL: official, self.extras_key: extras}


def _page_queries(where: list[str], params: list[Any], needle: str | None, limit: int
                  ) -> tuple[tuple[str, list], tuple[str, list] | None, str | None]:
    """The listing page's query as (sql, parameters); for a search of TRIGRAM_CHARS or more, also the same
    query narrowed by the trigram index, and the FTS5 phrase it asks the index for (see RegistryView._page).
    The index is asked for the lower-cased needle that the substring condition looks for: it folds case itself,
    so it then finds every row the condition can accept (a text that lower-cases to hold the needle also folds
    to hold it)."""
    def page_sql(conditions: list[str]) -> str:
        return (f"SELECT {ENTRY_COLUMNS} FROM {ENTRY_FROM} WHERE {' AND '.join(conditions)}"
                " ORDER BY s.server_key, v.version LIMIT ?")

    scan = (page_sql(where), [*params, limit])
    if not needle or len(needle) < TRIGRAM_CHARS:
        return scan, None, None
    phrase = '"' + needle.replace('"', '""') + '"'  # one FTS5 string: never query syntax
    narrowed = ["s.package_id IN (SELECT rowid FROM registry_text WHERE registry_text MATCH ?)", *where]
    return scan, (page_sql(narrowed), [phrase, *params, limit]), phrase


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 timestamp (a zone is required)."""
    problem = InvalidInput("Invalid updated_since format: expected RFC3339 timestamp "
                           "(e.g., 2025-08-07T13:15:04.280Z)", code="invalid_parameter",
                           details={"parameter": "updated_since"})
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})", text or ""):
        raise problem
    normalized = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("z", "Z").replace("t", "T"))
    try:
        moment = dt.datetime.fromisoformat(normalized.replace("Z", "+00:00"))
    except ValueError:
        raise problem from None
    return moment.timestamp()


def _short(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _is_http(url: Any) -> bool:
    return isinstance(url, str) and bool(re.fullmatch(r"https?://[^\s]+", url)) and len(url) <= 2048


def _repository(url: Any) -> dict[str, str] | None:
    if not _is_http(url):
        return None
    host = (urlsplit(url).hostname or "").lower()
    source = {"github.com": "github", "www.github.com": "github", "gitlab.com": "gitlab",
              "www.gitlab.com": "gitlab"}.get(host, host)
    return {"url": url, "source": source} if source else None
