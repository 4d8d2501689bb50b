"""Package data for consumers: the package page as data, version lists and version detail; download targets
(package_downloads.py) and update checks (package_updates.py) are PackageView's too. Every lookup carries the
visibility rule; a package the caller may not see answers exactly like a missing one (same status, code and
message).

Each answer is one or two indexed queries on the event-loop connection. The part of an answer derived from a
version's metadata (tools, prompts, config fields, the long description rendered to HTML...) never changes,
because versions are immutable, so it is serialized once per version id and kept in a bounded cache; status
columns (yanked, deprecated) and package columns (price, counts, rating) are read fresh on every request.
Package pages and the versions an update check chooses from are kept whole while nothing is committed
(`Database.stamp`), and answered then without touching SQLite.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..accounts.models import Principal
from ..db import Database
from ..errors import NotFound
from ..lru import LRU
from . import semver
from .cursors import CursorCodec, invalid, scope_digest
from .names import is_package_ref
from .package_downloads import Downloads, DownloadTarget
from .package_text import (access_of, check_names, config_field, count_by, dumps, iso, not_found, render_markdown,
                           splice, version_path)
from .package_updates import MAX_KEPT_ANSWER_CHARS, UpdateChecks, requires_payment
from .pricing import format_minor_units, pricing_of
from .visibility import can_manage, can_see, visible_clause

DEFAULT_VERSIONS_LIMIT = 20
MAX_VERSIONS_LIMIT = 100
RECENT_VERSIONS = 5
PUBLISHED_ONLY = ("published",)  # the version states that callers other than a package's managers see
CACHE_BYTES = 64 << 20  # per cache of whole package pages and of their static parts
# Re-exported: callers name them through the view.
__all__ = ["DEFAULT_VERSIONS_LIMIT", "MAX_KEPT_ANSWER_CHARS", "MAX_VERSIONS_LIMIT", "DownloadTarget", "PackageView",
           "config_field", "iso", "render_markdown", "requires_payment", "version_path"]


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
    "v.id AS v_id, v.version, v.semver_key, v.is_prerelease,"
    # a version whose hosted check outlived its publish is stored quarantined and shown as pending (025)
    " CASE WHEN EXISTS (SELECT 1 FROM hosted_checks h WHERE h.version_id = v.id) THEN 'pending' ELSE v.state END"
    " AS state, v.yanked_at, v.yank_reason,"
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

# A mirrored version's provenance (catalog/mirror.py), written with the version and never changed: the
# upstream, its publish leaf, the checkpoint kept verbatim and the inclusion proof, for anyone to re-check.
MIRRORED_FROM = (
    "(SELECT json_object('upstream', m.upstream_url, 'release', m.upstream_release, 'leaf_index', m.leaf_index,"
    " 'leaf', m.leaf, 'tree_size', m.tree_size, 'checkpoint', m.checkpoint, 'inclusion_proof',"
    " json(m.inclusion_proof), 'mirrored_at', m.mirrored_at) FROM mirror_provenance m WHERE m.version_id = v.id)"
    " AS mirrored_from")


def mirrored_from(raw: str | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    found = json.loads(raw)
    return {**found, "mirrored_at": iso(found["mirrored_at"])}


class PackageView(Downloads, UpdateChecks):
    def __init__(self, db: Database, cursors: CursorCodec, base_url: str, cache_size: int = 2048,
                 entitled: Callable[..., bool] | None = None):
        self.db = db
        self.cursors = cursors
        self.base_url = base_url.rstrip("/")
        self._static = LRU(cache_size, CACHE_BYTES, len)
        self._pages = LRU(cache_size, CACHE_BYTES, lambda page: len(page.body))
        self._installable = LRU(cache_size)  # entries are small: see package_updates.MAX_KEPT_CHANGELOG_CHARS
        self._version_lists = LRU(cache_size, CACHE_BYTES, lambda kept: len(kept.body))
        self._anonymous_bundles = LRU(cache_size)  # sha256 -> (stamp, DownloadTarget): package_downloads.py
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
        check_names(namespace, name)
        clause, params = visible_clause(principal)
        fingerprint = self.db.inline(lambda c: c.execute(
            f"SELECT {FINGERPRINT_COLUMNS} FROM packages p WHERE p.namespace = ? AND p.name = ? AND {clause}",
            (namespace, name, *params)).fetchone())
        if fingerprint is None:
            raise not_found(namespace, name)
        key = (*fingerprint, day)
        access = access_of(fingerprint)
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
            return dumps({**dynamic, "version": None})
        dynamic.update(self._version_status(row))
        return splice(dumps(dynamic), self._static_json(row["v_id"], namespace, name))

    def version_json(self, principal: Principal | None, namespace: str, name: str, version: str) -> str:
        """One version in full (`latest` names the package's latest version)."""
        check_names(namespace, name)
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
        return splice(dumps(dynamic), self._static_json(row["v_id"], namespace, name))

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
                f"SELECT v.version, v.sha256, v.size, {STATIC_COLUMNS}, {MIRRORED_FROM} FROM versions v WHERE v.id = ?",
                (version_id,)).fetchone())
            cached = dumps(self._static_fields(row, namespace, name))
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
                         "by_severity": count_by(findings, "severity")},
            "changelog": row["changelog"],
            "sha256": sha256, "size": row["size"], "unsigned_sha256": row["unsigned_sha256"],
            "bundle_url": f"{self.base_url}/bundles/{sha256}.mcpb",
            "bundle_hash": f"sha256:{sha256}",
            "download_url": version_path(self.base_url, namespace, name, row["version"]) + "/download",
            "mirrored_from": mirrored_from(row["mirrored_from"]),
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
        body = dumps(answer)
        if cursor is None and states == PUBLISHED_ONLY:
            self._version_lists.put(key, _VersionList(stamp, access, body))
        return body

    def _versions(self, principal: Principal | None, namespace: str, name: str, limit: int,
                  cursor: str | None) -> tuple[dict[str, Any], dict, tuple[str, ...]]:
        """(the answer, the package's access columns, the version states the caller sees)."""
        check_names(namespace, name)
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
        access = access_of(package)
        answer = {"id": f"{namespace}/{name}", "total": total, "versions": items, "next_cursor": next_cursor}
        return answer, access, states

    # -- downloads --------------------------------------------------------------------------------------

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
        check_names(namespace, name)
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


