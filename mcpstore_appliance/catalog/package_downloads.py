"""Download targets of the package views: a version's bundle, or a bundle by its content hash, for a caller who
may download it (published, or the package's managers; paid packages for callers an entitlement covers)."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import Any

from ..accounts.models import Principal
from ..errors import NotFound, PaymentRequired
from . import semver
from .package_text import check_names, not_found
from .visibility import can_manage, visible_clause

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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


class Downloads:
    """PackageView's downloads (a mixin: it reads the view's database and entitlement check)."""

    def download_target(self, principal: Principal | None, namespace: str, name: str, version: str) -> DownloadTarget:
        check_names(namespace, name)
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
        """A bundle by its content hash, if some version the caller may download has exactly these bytes.
        Anonymous callers' targets are kept until the next commit (`Database.stamp`): the most requested read of
        a registry then skips SQLite."""
        if not _SHA256.match(sha256):
            raise NotFound("no such bundle", code="no_such_bundle")
        if principal is not None:
            return self._bundle_target(principal, sha256)
        stamp = self.db.stamp()  # before the read: an entry never carries a stamp newer than its data
        kept = self._anonymous_bundles.get(sha256)
        if kept is not None and kept[0] == stamp:
            return kept[1]
        target = self._bundle_target(None, sha256)
        self._anonymous_bundles.put(sha256, (stamp, target))
        return target

    def _bundle_target(self, principal: Principal | None, sha256: str) -> DownloadTarget:
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
