"""Package data for consumers: the package page as data, version lists, version detail, download targets and
update checks. Every lookup carries the visibility rule; a package the caller may not see answers exactly like
a missing one (same status, code and message).

Speed: each answer is one or two indexed queries on the event-loop connection of `CatalogReader`. The part
of an answer derived from a version's metadata (tools, prompts, config fields, the long description rendered
to HTML...) never changes, because versions are immutable, so it is serialized once per version id and kept
in a bounded cache; status columns (yanked, deprecated) and package columns (price, counts, rating) are read
fresh on every request. Package pages and the versions an update check chooses from are kept whole while
nothing is committed (`Database.stamp`), and answered then without touching SQLite.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import hashlib
import itertools
import json
import re
import sqlite3
import time
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import nh3
from markdown_it import MarkdownIt

from ..accounts.models import Principal
from ..db import Database
from ..errors import InvalidInput, NotFound, PaymentRequired
from ..lru import LRU
from . import semver
from .cursors import CursorCodec, invalid, scope_digest
from .names import is_package_ref
from .pricing import format_minor_units, pricing_of
from .search.query import PLATFORMS
from .visibility import can_manage, can_see, visible_clause

DEFAULT_VERSIONS_LIMIT = 20
MAX_VERSIONS_LIMIT = 100
RECENT_VERSIONS = 5
MAX_CHANGELOG_ENTRIES = 50
# An update check's versions are kept in memory only when their changelogs are at most this long in all
# (typically a few hundred characters; each may be 20,000): the cache of 2,048 entries stays under ~32 MB.
MAX_KEPT_CHANGELOG_CHARS = 16_000
# Update-check answers kept per installable entry, in characters of JSON (an answer is ~600 without changelogs):
# the 2,048 entries add at most ~16 MB however many distinct `current` values clients send.
MAX_KEPT_ANSWER_CHARS = 8_192
PUBLISHED_ONLY = ("published",)  # the version states that callers other than a package's managers see
CACHE_BYTES = 64 << 20  # per cache of whole package pages and of their static parts
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

# --- markdown ----------------------------------------------------------------------------------------------

_MARKDOWN = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
SAFE_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "b", "i", "code", "pre",
             "blockquote", "ul", "ol", "li", "a", "img", "table", "thead", "tbody", "tr", "th", "td", "del", "s"}
SAFE_ATTRIBUTES = {"a": {"href", "title"}, "img": {"src", "alt", "title"}, "ol": {"start"}}
MAX_MARKDOWN_CHARS = 100_000


def render_markdown(text: str | None) -> str:
    """Markdown (CommonMark + tables) to HTML that is safe to embed: raw HTML in the source is escaped by the
    renderer, and the output is sanitized again with an allowlist (no scripts, styles, event handlers or
    javascript: URLs; links get rel="noopener noreferrer nofollow")."""
    if not text:
        return ""
    html = _MARKDOWN.render(text[:MAX_MARKDOWN_CHARS])
    return nh3.clean(html, tags=SAFE_TAGS, attributes=SAFE_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow")


# --- small helpers -----------------------------------------------------------------------------------------

def iso(timestamp: float | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as the MCP Registry writes timestamps."""
    if timestamp is None:
        return None
    return _iso(timestamp)


@functools.lru_cache(maxsize=65536)  # listings format the same publish times again and again
def _iso(timestamp: float) -> str:
    moment = dt.datetime.fromtimestamp(timestamp, dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def not_found(namespace: str, name: str) -> NotFound:
    # The same words whether the package is missing or hidden from this caller.
    return NotFound(f"no package {namespace[:64]}/{name[:64]}", code="no_such_package")


def version_path(base_url: str, namespace: str, name: str, version: str) -> str:
    return f"{base_url}/api/packages/{namespace}/{name}/versions/{quote(version, safe='')}"


def _access(row: sqlite3.Row) -> dict[str, Any]:
    """The columns that decide who may see a package (for can_see and can_manage), kept with cached answers."""
    return {"visibility": row["visibility"], "org_id": row["org_id"], "owner_user_id": row["owner_user_id"]}


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _splice(*objects: str) -> str:
    """Join JSON object texts with distinct keys into one object without re-encoding them."""
    inner = [text[1:-1] for text in objects if len(text) > 2]
    return "{" + ",".join(inner) + "}"


@dataclass(frozen=True)
class DownloadTarget:
    package_id: int
    version_id: int
    namespace: str
    name: str
    version: str
    sha256: str
    size: int
    public: bool
    yanked: bool

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.mcpb"


@dataclass(frozen=True)
class _Installable:
    """What an update check chooses from, for one (package, platform, pre-releases or not): the newest
    installable versions with their semver sort keys, as read at `stamp` (Database.stamp)."""

    stamp: tuple
    access: dict  # visibility, org_id, owner_user_id: for can_see
    pricing_model: str
    versions: list[tuple[str, sqlite3.Row]]  # (semver sort key, row), newest first
    latest: semver.Version | None  # the first of them, parsed
    # update-check answers as JSON text by the client's `current` (the same for every caller who may see the
    # package), so that the hosts polling for the same installed version share one answer
    answers: dict[str | None, str] = field(default_factory=dict)
    package_id: int | None = None


@dataclass(frozen=True)
class _VersionList:
    """The first page of a package's version list as JSON, for callers who see its published versions only,
    as read at `stamp` (Database.stamp)."""

    stamp: tuple
    access: dict  # visibility, org_id, owner_user_id: for can_see and can_manage
    body: str


@dataclass(frozen=True)
class _Page:
    key: tuple  # the fingerprint it was built from
    body: bytes
    etag: str
    access: dict  # visibility, org_id, owner_user_id: for can_see
    stamp: tuple  # Database.stamp() when last validated


PACKAGE_COLUMNS = (
    "p.id, p.namespace, p.name, p.org_id, p.owner_user_id, p.visibility, p.category, p.pricing_model,"
    " p.price_amount, p.currency, p.tier, p.endpoint_url, p.latest_version_id, p.verified, p.downloads,"
    " p.invocations, p.rating_avg, p.rating_count, p.created_at, p.updated_at")
VERSION_COLUMNS = (
    "v.id AS v_id, v.version, v.semver_key, v.is_prerelease, v.state, v.yanked_at, v.yank_reason,"
    " v.deprecated_at, v.deprecation_reason, v.sha256, v.size, v.ledger_index, v.published_at,"
    " v.platforms")
# Everything a package page depends on, read to validate a cached page (one indexed lookup).
FINGERPRINT_COLUMNS = (
    "p.id, p.updated_at, p.latest_version_id, p.visibility, p.org_id, p.owner_user_id, p.category, p.pricing_model,"
    " p.price_amount, p.currency, p.tier, p.endpoint_url, p.verified, p.downloads, p.invocations, p.rating_avg,"
    " p.rating_count, (SELECT max(x.updated_at) FROM versions x WHERE x.package_id = p.id) AS versions_changed")
STATIC_COLUMNS = (
    "v.metadata_json, v.manifest_version, v.signature_status, v.signer_subject, v.signer_issuer,"
    " v.signer_not_before, v.signer_not_after, v.signer_fingerprint, v.signature_reason, v.findings_json,"
    " v.changelog, v.icon_sha256, v.unsigned_sha256")


class PackageView:
    def __init__(self, db: Database, cursors: CursorCodec, base_url: str, cache_size: int = 2048,
                 entitled: Callable[..., bool] | None = None):
        self.db = db
        self.cursors = cursors
        self.base_url = base_url.rstrip("/")
        self._static = LRU(cache_size, CACHE_BYTES, len)
        self._pages = LRU(cache_size, CACHE_BYTES, lambda page: len(page.body))
        self._installable = LRU(cache_size)  # entries are small: see MAX_KEPT_CHANGELOG_CHARS
        self._version_lists = LRU(cache_size, CACHE_BYTES, lambda kept: len(kept.body))
        # (conn, user id, org ids, package id, major) -> bool: whether an entitlement covers that major version.
        # Set by the market's wiring (market.entitlements.covers); None: nobody has bought anything.
        self.entitled = entitled  # whether a caller holds access to a paid package (market/); None: nobody

    # -- package data -----------------------------------------------------------------------------------

    def package_data(self, principal: Principal | None, namespace: str,
                     name: str) -> tuple[bytes, str, bool]:
        """Everything a package page needs, as JSON bytes, with an ETag and whether the package is public.

        A page is rebuilt only when its fingerprint changes: the package row's own columns, the newest
        `updated_at` of its versions (every publish, yank, deprecation or review sets it) and the UTC day
        (the 30-day download count moves with it). The body is the same for every caller who may see the
        package (nothing in it depends on who asks). While nothing at all was committed to the database
        since a page was validated (`Database.stamp`: this process's commit count, and SQLite's
        `PRAGMA data_version` about once a second for other processes' commits), the page is answered
        without touching SQLite; the caller's right to see it is then checked on the row already in hand
        with `can_see`, the same rule as `visible_clause`."""
        day = int(time.time() // 86400)  # the UTC day number
        stamp = self.db.stamp()  # before any read: a page never carries a stamp newer than its data
        cached = self._pages.get((namespace, name))  # only names that passed _check_names are ever kept
        if cached is not None and cached.stamp == stamp and cached.key[-1] == day:
            if not can_see(principal, cached.access):
                raise not_found(namespace, name)
            return cached.body, cached.etag, cached.access["visibility"] == "public"
        _check_names(namespace, name)
        clause, params = visible_clause(principal)
        fingerprint = self.db.inline(lambda c: c.execute(
            f"SELECT {FINGERPRINT_COLUMNS} FROM packages p WHERE p.namespace = ? AND p.name = ? AND {clause}",
            (namespace, name, *params)).fetchone())
        if fingerprint is None:
            raise not_found(namespace, name)
        key = (*fingerprint, day)
        access = _access(fingerprint)
        if cached is None or cached.key != key:
            body = self._build_package(fingerprint[0], namespace, name, day).encode()
            cached = _Page(key, body, '"' + hashlib.sha256(body).hexdigest()[:32] + '"', access, stamp)
        else:
            cached = _Page(key, cached.body, cached.etag, access, stamp)
        self._pages.put((namespace, name), cached)
        return cached.body, cached.etag, access["visibility"] == "public"

    def package_json(self, principal: Principal | None, namespace: str, name: str) -> str:
        return self.package_data(principal, namespace, name)[0].decode()

    def _build_package(self, package_id: int, namespace: str, name: str, day: int) -> str:
        since = (dt.date(1970, 1, 1) + dt.timedelta(days=day - 29)).isoformat()
        sql = (
            f"SELECT {PACKAGE_COLUMNS}, o.slug AS org_slug, {VERSION_COLUMNS},"
            " (SELECT count(*) FROM versions c WHERE c.package_id = p.id AND c.state = 'published') AS version_count,"
            " (SELECT coalesce(sum(d.count), 0) FROM download_days d WHERE d.package_id = p.id AND d.day >= ?)"
            "   AS downloads_30d,"
            " (SELECT json_group_array(json_object('version', x.version, 'published_at', x.published_at,"
            "     'prerelease', json(CASE WHEN x.is_prerelease THEN 'true' ELSE 'false' END),"
            "     'yanked', json(CASE WHEN x.yanked_at IS NULL THEN 'false' ELSE 'true' END)))"
            "   FROM (SELECT * FROM versions x WHERE x.package_id = p.id AND x.state = 'published'"
            "         ORDER BY x.semver_key DESC LIMIT ?) x) AS recent_json,"
            " (SELECT l.version FROM versions l WHERE l.id = p.latest_version_id) AS latest_version"
            " FROM packages p LEFT JOIN orgs o ON o.id = p.org_id"
            " LEFT JOIN versions v ON v.id = coalesce(p.latest_version_id, (SELECT x.id FROM versions x"
            "   WHERE x.package_id = p.id AND x.state = 'published' ORDER BY x.semver_key DESC LIMIT 1))"
            " WHERE p.id = ?")
        row = self.db.inline(lambda c: c.execute(sql, [since, RECENT_VERSIONS, package_id]).fetchone())
        recent = json.loads(row["recent_json"] or "[]")
        for entry in recent:
            entry["published_at"] = iso(entry["published_at"])
            entry["url"] = version_path(self.base_url, namespace, name, entry["version"])
        dynamic = {
            **self._package_fields(row),
            "latest_version": row["latest_version"],
            "versions": {"count": row["version_count"], "recent": recent,
                         "url": f"{self.base_url}/api/packages/{namespace}/{name}/versions"},
            "stats": {"downloads": row["downloads"], "downloads_30d": row["downloads_30d"],
                      "invocations": row["invocations"],
                      "rating": {"average": row["rating_avg"], "count": row["rating_count"]}},
        }
        if row["v_id"] is None:
            return _dumps({**dynamic, "version": None})
        dynamic.update(self._version_status(row))
        return _splice(_dumps(dynamic), self._static_json(row["v_id"], namespace, name))

    def version_json(self, principal: Principal | None, namespace: str, name: str, version: str) -> str:
        """One version in full (`latest` names the package's latest version)."""
        _check_names(namespace, name)
        package = self._package_row(principal, namespace, name)
        states = self._states(principal, package)
        if version == "latest":
            condition, value = "v.id = ?", package["latest_version_id"]
        else:
            condition, value = "v.version = ?", version
        row = self.db.inline(lambda c: c.execute(
            f"SELECT {VERSION_COLUMNS} FROM versions v WHERE v.package_id = ? AND {condition}"
            f" AND v.state IN ({', '.join('?' * len(states))})", (package["id"], value, *states)).fetchone())
        if row is None:
            raise NotFound(f"{namespace}/{name} has no version {version[:100]!r}", code="no_such_version")
        dynamic = {**self._package_fields(package), **self._version_status(row),
                   "is_latest": row["v_id"] == package["latest_version_id"]}
        return _splice(_dumps(dynamic), self._static_json(row["v_id"], namespace, name))

    def _package_fields(self, row: sqlite3.Row) -> dict[str, Any]:
        namespace, name = row["namespace"], row["name"]
        pricing = pricing_of(row)
        amount, currency = pricing["amount"], pricing["currency"]
        return {
            "id": f"{namespace}/{name}", "namespace": namespace, "name": name,
            "org": row["org_slug"] if "org_slug" in row.keys() else None,
            "visibility": row["visibility"], "category": row["category"], "tier": row["tier"],
            "endpoint_url": row["endpoint_url"] if row["tier"] == "pro" else None,
            "pricing": {**pricing, "amount_display": format_minor_units(amount, currency) if currency else "0"},
            "verified": bool(row["verified"]),
            "url": f"{self.base_url}/api/packages/{namespace}/{name}",
            "created_at": iso(row["created_at"]), "updated_at": iso(row["updated_at"]),
        }

    def _version_status(self, row: sqlite3.Row) -> dict[str, Any]:
        """The mutable columns of a version (read fresh every time)."""
        return {
            "version": row["version"], "state": row["state"], "prerelease": bool(row["is_prerelease"]),
            "yanked": row["yanked_at"] is not None, "yank_reason": row["yank_reason"],
            "deprecated": row["deprecated_at"] is not None, "deprecation_reason": row["deprecation_reason"],
            "ledger_index": row["ledger_index"], "published_at": iso(row["published_at"]),
        }

    def _static_json(self, version_id: int, namespace: str, name: str) -> str:
        cached = self._static.get(version_id)
        if cached is None:
            row = self.db.inline(lambda c: c.execute(
                f"SELECT v.version, v.sha256, v.size, {STATIC_COLUMNS} FROM versions v WHERE v.id = ?",
                (version_id,)).fetchone())
            cached = _dumps(self._static_fields(row, namespace, name))
            self._static.put(version_id, cached)
        return cached

    def _static_fields(self, row: sqlite3.Row, namespace: str, name: str) -> dict[str, Any]:
        meta = json.loads(row["metadata_json"])
        sha256 = row["sha256"]
        signer = None
        if row["signer_subject"] or row["signer_fingerprint"]:
            signer = {"subject": row["signer_subject"], "issuer": row["signer_issuer"],
                      "fingerprint_sha256": row["signer_fingerprint"], "not_before": row["signer_not_before"],
                      "not_after": row["signer_not_after"]}
        findings = json.loads(row["findings_json"] or "[]")
        return {
            "display_name": meta.get("display_name") or name,
            "description": meta.get("description") or "",
            "long_description": meta.get("long_description"),
            "long_description_html": render_markdown(meta.get("long_description")),
            "author": meta.get("author"),
            "tools": [{"name": t.get("name"), "description": t.get("description")} for t in meta.get("tools") or []],
            "tools_generated": bool(meta.get("tools_generated")),
            "prompts": [{"name": p.get("name"), "description": p.get("description"),
                         "arguments": list(p.get("arguments") or [])} for p in meta.get("prompts") or []],
            "user_config": [config_field(f) for f in meta.get("user_config") or []],
            "links": meta.get("links") or {},
            "privacy_policies": list(meta.get("privacy_policies") or []),
            "keywords": list(meta.get("keywords") or []),
            "license": meta.get("license"),
            "compatibility": {"platforms": list(meta.get("platforms") or []), "runtimes": meta.get("runtimes") or {},
                              "claude_desktop": meta.get("claude_desktop")},
            "server_type": meta.get("server_type"),
            "manifest_version": row["manifest_version"],
            "icon_sha256": row["icon_sha256"],
            "screenshots": list(meta.get("screenshots") or []),
            "signature": {"status": row["signature_status"], "signer": signer, "reason": row["signature_reason"]},
            "findings": {"count": len(findings),
                         "by_severity": _count_by(findings, "severity")},
            "changelog": row["changelog"],
            "sha256": sha256, "size": row["size"], "unsigned_sha256": row["unsigned_sha256"],
            "bundle_url": f"{self.base_url}/bundles/{sha256}.mcpb",
            "bundle_hash": f"sha256:{sha256}",
            "download_url": version_path(self.base_url, namespace, name, row["version"]) + "/download",
        }

    # -- versions ---------------------------------------------------------------------------------------

    def versions(self, principal: Principal | None, namespace: str, name: str, limit: int = DEFAULT_VERSIONS_LIMIT,
                 cursor: str | None = None) -> dict[str, Any]:
        """Versions newest first by semver precedence, yanked ones marked, keyset-paginated."""
        return self._versions(principal, namespace, name, limit, cursor)[0]

    def versions_json(self, principal: Principal | None, namespace: str, name: str,
                      limit: int = DEFAULT_VERSIONS_LIMIT, cursor: str | None = None) -> str:
        """`versions` as JSON. A first page that shows published versions only (what everyone but the package's
        managers sees) is kept while nothing is committed, the rule of package pages and update checks: hosts
        and package pages ask for it again and again. The caller's right to see it is checked on every call."""
        stamp = self.db.stamp()  # before any read: an entry never carries a stamp newer than its data
        key = (namespace, name, limit)  # kept only after _check_names passed for them
        kept = self._version_lists.get(key) if cursor is None else None
        if kept is not None and kept.stamp == stamp:
            if not can_see(principal, kept.access):
                raise not_found(namespace, name)
            if not can_manage(principal, kept.access):
                return kept.body
        answer, access, states = self._versions(principal, namespace, name, limit, cursor)
        body = _dumps(answer)
        if cursor is None and states == PUBLISHED_ONLY:
            self._version_lists.put(key, _VersionList(stamp, access, body))
        return body

    def _versions(self, principal: Principal | None, namespace: str, name: str, limit: int,
                  cursor: str | None) -> tuple[dict[str, Any], dict, tuple[str, ...]]:
        """(the answer, the package's access columns, the version states the caller sees)."""
        _check_names(namespace, name)
        package = self._package_row(principal, namespace, name)
        states = self._states(principal, package)
        scope = scope_digest(package["id"], states)
        where = ["v.package_id = ?", f"v.state IN ({', '.join('?' * len(states))})"]
        params: list[Any] = [package["id"], *states]
        if cursor is not None:
            keys = self.cursors.decode(cursor, "versions", scope)
            if len(keys) != 1 or not semver.is_sort_key(keys[0]):  # also a cursor from before migration 007
                raise invalid("malformed cursor")
            where.append("v.semver_key < ?")
            params.append(keys[0])

        def query(c: sqlite3.Connection):
            found = c.execute(f"SELECT {VERSION_COLUMNS} FROM versions v WHERE {' AND '.join(where)}"
                              " ORDER BY v.semver_key DESC LIMIT ?", (*params, limit + 1)).fetchall()
            total = c.execute(f"SELECT count(*) FROM versions v WHERE {' AND '.join(where[:2])}",
                              (package["id"], *states)).fetchone()[0]
            return found, total

        rows, total = self.db.inline(query)
        more = len(rows) > limit
        rows = rows[:limit]
        items = []
        for row in rows:
            item = self._version_status(row)
            item.update({"is_latest": row["v_id"] == package["latest_version_id"], "sha256": row["sha256"],
                         "size": row["size"], "platforms": json.loads(row["platforms"]),
                         "url": version_path(self.base_url, namespace, name, row["version"]),
                         "download_url": version_path(self.base_url, namespace, name, row["version"]) + "/download"})
            items.append(item)
        next_cursor = self.cursors.encode("versions", scope, [rows[-1]["semver_key"]]) if more else None
        access = _access(package)
        answer = {"id": f"{namespace}/{name}", "total": total, "versions": items, "next_cursor": next_cursor}
        return answer, access, states

    # -- downloads --------------------------------------------------------------------------------------

    def download_target(self, principal: Principal | None, namespace: str, name: str, version: str) -> DownloadTarget:
        _check_names(namespace, name)
        clause, params = visible_clause(principal)
        rows = self.db.inline(lambda c: c.execute(
            "SELECT p.id AS package_id, p.namespace, p.name, p.visibility, p.org_id, p.owner_user_id,"
            " p.pricing_model, v.id AS version_id, v.version, v.sha256, v.size, v.state, v.yanked_at"
            " FROM packages p JOIN versions v ON v.package_id = p.id"
            f" WHERE p.namespace = ? AND p.name = ? AND v.version = ? AND {clause}",
            (namespace, name, version, *params)).fetchall())
        target = self._downloadable(principal, rows)
        if target is None:
            if not rows and not self._exists(principal, namespace, name):
                raise not_found(namespace, name)
            raise NotFound(f"{namespace}/{name} has no version {version[:100]!r}", code="no_such_version")
        return target

    def bundle_target(self, principal: Principal | None, sha256: str) -> DownloadTarget:
        """A bundle by its content hash, if some version the caller may download has exactly these bytes."""
        if not _SHA256.match(sha256):
            raise NotFound("no such bundle", code="no_such_bundle")
        clause, params = visible_clause(principal)
        rows = self.db.inline(lambda c: c.execute(
            "SELECT p.id AS package_id, p.namespace, p.name, p.visibility, p.org_id, p.owner_user_id,"
            " p.pricing_model, v.id AS version_id, v.version, v.sha256, v.size, v.state, v.yanked_at"
            " FROM versions v JOIN packages p ON p.id = v.package_id"
            f" WHERE v.sha256 = ? AND {clause}"
            " ORDER BY v.state = 'published' DESC, p.visibility = 'public' DESC, v.id LIMIT 10",
            (sha256, *params)).fetchall())
        target = self._downloadable(principal, rows)
        if target is None:
            raise NotFound("no such bundle", code="no_such_bundle")
        return target

    def _downloadable(self, principal: Principal | None, rows: list[sqlite3.Row]) -> DownloadTarget | None:
        unpaid = None
        for row in rows:
            # Quarantined and rejected bytes are for the package's managers (and admins reviewing them) only.
            if not (row["state"] == "published" or can_manage(principal, dict(row))):
                continue
            if not self.may_use(principal, row, semver.parse(row["version"]).major):
                unpaid = unpaid or row  # the same bytes may still be free in another package
                continue
            public = row["visibility"] == "public" and row["pricing_model"] == "free"  # paid bytes: private cache
            return DownloadTarget(row["package_id"], row["version_id"], row["namespace"], row["name"],
                                  row["version"], row["sha256"], row["size"], public, row["yanked_at"] is not None)
        if unpaid is not None:
            ref = f"{unpaid['namespace']}/{unpaid['name']}"
            raise PaymentRequired(f"{ref} is a paid package: buy access (POST /api/packages/{ref}/purchase) to "
                                  "download its bundles; its page, manifest and ledger entry stay public",
                                  details={"package": ref, "major": semver.parse(unpaid["version"]).major})
        return None

    def may_use(self, principal: Principal | None, package: Any, major: int) -> bool:
        """Free packages are for everyone; a paid one for its managers and for callers an entitlement covers."""
        if package["pricing_model"] == "free" or can_manage(principal, dict(package)):
            return True
        if principal is None or self.entitled is None:
            return False
        return self.db.inline(lambda c: self.entitled(c, principal.id, principal.member_org_ids(),
                                                          package["package_id"], major))

    # -- update check -----------------------------------------------------------------------------------

    def update_check_json(self, principal: Principal | None, namespace: str, name: str, current: str | None,
                          platform: str | None, prerelease: bool,
                          admit: Callable[[sqlite3.Row], bool] | None = None) -> str:
        """The newest installable version for a client running `current` on `platform`, as JSON text.

        Semver precedence; pre-releases only when asked for; yanked, quarantined and rejected versions never;
        versions that name platforms must name this one. A higher major version is a breaking change.
        The answer is kept with the installable entry it came from (so it is dropped with it as soon as
        anything is committed), up to MAX_KEPT_ANSWER_CHARS per entry. `admit` (an org's policy, policy/enforce.py)
        leaves out the versions it refuses; such an answer is the caller's own and is not kept.
        """
        _check_names(namespace, name)
        if platform is not None and platform not in PLATFORMS:
            raise InvalidInput(f"platform must be one of {', '.join(PLATFORMS)}", code="invalid_parameter",
                               details={"parameter": "platform"})
        installable = self._installable_versions(namespace, name, platform, prerelease)
        visible = installable is not None and can_see(principal, installable.access)
        if visible and admit is not None:
            installable = _admitted(installable, admit)
        # A signed-in caller of a paid package gets requires_payment from their own entitlement, so that answer
        # is not shared (nor kept); everyone else shares one.
        shared = admit is None and (principal is None or installable is None or installable.pricing_model == "free")
        kept = installable.answers.get(current) if visible and shared else None
        if kept is not None:
            return kept
        current_version = semver.parse(current) if current else None  # a bad `current` is a 400 before a 404
        if not visible:
            raise not_found(namespace, name)
        answer = self._update_answer(installable, namespace, name, current, current_version)
        if not shared and answer["update_available"]:
            package = {**installable.access, "pricing_model": installable.pricing_model,
                       "package_id": installable.package_id}
            answer["requires_payment"] = not self.may_use(principal, package, installable.latest.major)
        text = _dumps(answer)
        if not shared:
            return text
        answers = installable.answers
        if sum(map(len, answers.values())) + len(text) > MAX_KEPT_ANSWER_CHARS:
            answers.clear()  # rare: many distinct `current` values, or long changelogs
        if len(text) <= MAX_KEPT_ANSWER_CHARS:
            answers[current] = text
        return text

    def _update_answer(self, installable: _Installable, namespace: str, name: str, current: str | None,
                       current_version: semver.Version | None) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "id": f"{namespace}/{name}", "current_version": current, "latest_version": None,
            "update_available": False, "download_url": None, "bundle_url": None, "sha256": None, "size": None,
            "published_at": None, "changelog": [], "breaking_changes": False, "requires_payment": False,
            "deprecated": False, "deprecation_reason": None}
        if not installable.versions:
            return answer
        latest_version, latest = installable.latest, installable.versions[0][1]
        current_key = current_version.sort_key() if current_version else ""  # "" sorts before every key
        newer = list(itertools.takewhile(lambda entry: entry[0] > current_key, installable.versions))
        available = bool(newer)
        breaking = current_version is not None and latest_version.major > current_version.major
        answer.update({
            "latest_version": latest["version"], "update_available": available,
            "download_url": version_path(self.base_url, namespace, name, latest["version"]) + "/download",
            "bundle_url": f"{self.base_url}/bundles/{latest['sha256']}.mcpb",
            "sha256": latest["sha256"], "size": latest["size"], "published_at": iso(latest["published_at"]),
            "changelog": [{"version": r["version"], "published_at": iso(r["published_at"]), "changes": r["changelog"]}
                          for _, r in newer[:MAX_CHANGELOG_ENTRIES]],
            "breaking_changes": breaking,
            "requires_payment": available and requires_payment(installable.pricing_model, breaking,
                                                               current_version),
            "deprecated": latest["deprecated_at"] is not None, "deprecation_reason": latest["deprecation_reason"],
        })
        return answer

    def _installable_versions(self, namespace: str, name: str, platform: str | None,
                              prerelease: bool) -> _Installable | None:
        """From memory while nothing was committed since it was read (the same rule as package pages), else
        read again: update checks are what every host sends for every installed bundle, again and again. The
        entry is the same for every caller; the caller's right to see the package is checked on it."""
        stamp = self.db.stamp()  # before any read: an entry never carries a stamp newer than its data
        key = (namespace, name, platform, prerelease)  # only names that passed _check_names are ever kept
        cached = self._installable.get(key)
        if cached is not None and cached.stamp == stamp:
            return cached
        package = self.db.inline(lambda c: c.execute(
            "SELECT p.id, p.visibility, p.org_id, p.owner_user_id, p.pricing_model FROM packages p"
            " WHERE p.namespace = ? AND p.name = ?", (namespace, name)).fetchone())
        if package is None:
            return None
        rows = self.db.inline(lambda c: c.execute(
            "SELECT v.version, v.semver_key, v.is_prerelease, v.changelog, v.sha256, v.size, v.published_at,"
            " v.deprecated_at, v.deprecation_reason, v.signature_status FROM versions v"
            " WHERE v.package_id = ? AND v.state = 'published' AND v.yanked_at IS NULL"
            " AND (? OR v.is_prerelease = 0)"
            " AND (? IS NULL OR v.platforms = '[]' OR EXISTS (SELECT 1 FROM json_each(v.platforms) j"
            "      WHERE j.value = ?))"
            " ORDER BY v.semver_key DESC LIMIT ?",
            (package["id"], int(prerelease), platform, platform, MAX_CHANGELOG_ENTRIES + 1)).fetchall())
        access = _access(package)
        installable = _Installable(stamp, access, package["pricing_model"],
                                   [(row["semver_key"], row) for row in rows],
                                   semver.parse(rows[0]["version"]) if rows else None, package_id=package["id"])
        if sum(len(row["changelog"] or "") for row in rows) <= MAX_KEPT_CHANGELOG_CHARS:
            self._installable.put(key, installable)
        return installable

    # -- shared lookups ---------------------------------------------------------------------------------

    def _package_row(self, principal: Principal | None, namespace: str, name: str) -> sqlite3.Row:
        clause, params = visible_clause(principal)
        row = self.db.inline(lambda c: c.execute(
            f"SELECT {PACKAGE_COLUMNS}, o.slug AS org_slug FROM packages p LEFT JOIN orgs o ON o.id = p.org_id"
            f" WHERE p.namespace = ? AND p.name = ? AND {clause}", (namespace, name, *params)).fetchone())
        if row is None:
            raise not_found(namespace, name)
        return row

    def package_ref(self, principal: Principal | None, namespace: str, name: str) -> tuple[int, int]:
        """(package id, total downloads) of a package the caller may see."""
        _check_names(namespace, name)
        found = self._package_row(principal, namespace, name)
        return found["id"], found["downloads"]

    def visible(self, principal: Principal | None, namespace: str, name: str) -> bool:
        """Whether the package exists and the caller may see it."""
        return is_package_ref(namespace, name) and self._exists(principal, namespace, name)

    def _exists(self, principal: Principal | None, namespace: str, name: str) -> bool:
        try:
            self._package_row(principal, namespace, name)
        except NotFound:
            return False
        return True

    @staticmethod
    def _states(principal: Principal | None, package: sqlite3.Row) -> tuple[str, ...]:
        """Everyone sees published versions; the package's managers also see quarantined and rejected ones."""
        if can_manage(principal, dict(package)):
            return ("published", "quarantined", "rejected")
        return PUBLISHED_ONLY


def _admitted(installable: _Installable, admit: Callable[[sqlite3.Row], bool]) -> _Installable:
    """The entry with only the versions `admit` allows (a copy with no kept answers)."""
    versions = [entry for entry in installable.versions if admit(entry[1])]
    latest = semver.parse(versions[0][1]["version"]) if versions else None
    return dataclasses.replace(installable, versions=versions, latest=latest, answers={})


def requires_payment(pricing_model: str, breaking: bool, current: semver.Version | None) -> bool:
    """Whether installing the update needs a new purchase.

    The rule is: the package is paid and the caller's entitlement covers only an older major version.
    This is the answer for a caller without credentials (the shared, kept one): the entitlement is assumed
    to cover the major version the caller runs, so a major upgrade (or a first install, with no current
    version) requires payment and a minor or patch update does not. A signed-in caller's answer comes from
    their entitlements instead (`update_check_json`, market.entitlements.covers).
    """
    if pricing_model == "free":
        return False
    return current is None or breaking


def config_field(field: dict[str, Any]) -> dict[str, Any]:
    """A user_config field for display; a sensitive field's default is never shown."""
    sensitive = bool(field.get("sensitive"))
    return {"key": field.get("key"), "type": field.get("type"), "title": field.get("title"),
            "description": field.get("description"), "required": bool(field.get("required")),
            "sensitive": sensitive, "multiple": bool(field.get("multiple")),
            "default": None if sensitive else field.get("default"), "min": field.get("min"), "max": field.get("max")}


def _count_by(items: list[dict], key: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        value = str(item.get(key))
        counts[value] = counts.get(value, 0) + 1
    return counts


def _check_names(namespace: str, name: str) -> None:
    # A name that cannot exist is simply not found (the same answer as a hidden package).
    if not is_package_ref(namespace, name):
        raise not_found(namespace, name)

