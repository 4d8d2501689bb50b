"""Status of published versions: yank, unyank, deprecate; the admin quarantine queue; "latest".

A version's bytes never change (docs/architecture.md, invariant 1); these change status columns only. Each
change writes its ledger leaf and its audit event in the same transaction as the change (invariant 3), so
the catalog, the log and the audit trail never disagree. Every lookup goes through the one visibility rule:
a package the caller may not see answers exactly like a missing one.

Ledger policy: only versions that become visible get leaves. A published version gets its `publish` leaf at
publish time; a quarantined one gets nothing until an admin releases it, which writes its `publish` leaf and a
`quarantine-release` leaf naming the admin. A rejected version never appears in the log. Leaves of packages
that are not public are sealed (the ledger stores a salted commitment; see ledger/events.py).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from .. import audit
from ..accounts.models import ROLES_THAT_PUBLISH, Principal
from ..audit import Actor
from ..db import Database, Transaction
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..ledger import events as ledger_events
from .dependencies import ReleaseLedger
from .pricing import pricing_of
from .visibility import can_manage, can_see

log = logging.getLogger("mcpstore.catalog")

MAX_REASON = 1000
PAST = {"yank": "yanked", "unyank": "unyanked", "deprecate": "deprecated"}


async def refresh_latest(tx: Transaction, package_id: int) -> int | None:
    """Point `packages.latest_version_id` at the highest-precedence published, non-yanked release; with no
    release, the highest such pre-release; with neither, NULL. Returns the version id."""
    latest = await tx.fetch_value(
        "SELECT id FROM versions WHERE package_id = ? AND state = 'published' AND yanked_at IS NULL"
        " ORDER BY is_prerelease ASC, semver_key DESC LIMIT 1", (package_id,))
    await tx.execute("UPDATE packages SET latest_version_id = ?, updated_at = ? WHERE id = ?",
                     (latest, time.time(), package_id))
    return latest


# The ledger seals a leaf when given an org id. A private package in a personal namespace has no org, but its
# name must not appear in the public log either (invariant 5): it is sealed under 0, which is no org's id, so
# only views that already passed the package's own visibility check (its owner) can open it.
PERSONAL_SEAL = 0


def seal_org(package: dict[str, Any]) -> int | None:
    """None writes a public leaf; otherwise the org (or PERSONAL_SEAL) under which the leaf is sealed."""
    if package["visibility"] == "public":
        return None
    return package["org_id"] if package["org_id"] is not None else PERSONAL_SEAL


async def ledger_proof(ledger: ReleaseLedger, index: int | None) -> dict[str, Any] | None:
    """Inclusion proof of a committed leaf against a signed checkpoint, for the response.

    Runs after the commit: if it fails, the version is still published (a retry would get 409), so the
    caller gets the leaf index and can fetch the proof later from /ledger instead of an error."""
    if index is None:
        return None
    try:
        checkpoint = await ledger.ensure_checkpoint(index + 1)
        return await ledger.proof_for(index, checkpoint)
    except Exception as exc:  # the version is committed; never turn that into a failed publish
        log.exception("ledger proof for leaf %s failed", index)
        return {"leaf_index": index, "tree_size": None, "inclusion_proof": None, "checkpoint": None,
                "error": f"proof not available yet: {type(exc).__name__}"}


def clean_reason(reason: str | None, *, required: bool, what: str) -> str | None:
    reason = (reason or "").strip()
    if not reason:
        if required:
            raise InvalidInput(f"{what} needs a reason (it is shown to users and written to the ledger)",
                               code="reason_required", details={"field": "reason"})
        return None
    if len(reason) > MAX_REASON:
        raise InvalidInput(f"the reason is limited to {MAX_REASON} characters", code="reason_too_long",
                           details={"field": "reason"})
    return reason


def actor_of(principal: Principal, ip: str | None = None) -> Actor:
    return Actor(principal.id, principal.user.username, ip)


VERSION_SQL = (
    "SELECT v.*, p.namespace, p.name, p.org_id, p.owner_user_id, p.visibility, p.latest_version_id,"
    " u.username AS publisher FROM versions v JOIN packages p ON p.id = v.package_id"
    " LEFT JOIN users u ON u.id = v.publisher_user_id")


@dataclass(frozen=True)
class StatusChange:
    """The answer of yank / unyank / deprecate / release / reject."""

    version: dict[str, Any]
    changed: bool
    ledger: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.version, "changed": self.changed, "ledger": self.ledger}


def version_status(row: dict[str, Any], latest_version_id: int | None) -> dict[str, Any]:
    return {
        "id": row["id"], "namespace": row["namespace"], "name": row["name"], "version": row["version"],
        "state": row["state"], "sha256": row["sha256"],
        "yanked": row["yanked_at"] is not None, "yanked_at": row["yanked_at"], "yank_reason": row["yank_reason"],
        "deprecated": row["deprecated_at"] is not None, "deprecated_at": row["deprecated_at"],
        "deprecation_reason": row["deprecation_reason"],
        "is_latest": latest_version_id == row["id"],
        "ledger_index": row["ledger_index"],
        "reviewed_at": row.get("reviewed_at"), "review_reason": row.get("review_reason"),
    }


class PackageStatusService:
    def __init__(self, db: Database, ledger: ReleaseLedger):
        self.db = db
        self.ledger = ledger

    # --- the publisher's own packages -----------------------------------------------------------------

    async def managed_packages(self, principal: Principal) -> list[dict[str, Any]]:
        """Packages in the principal's own namespace and in orgs where their role publishes, whatever
        state their versions are in (a package whose only version waits in quarantine is listed too).
        Site administrators get their own packages here, not everybody's."""
        publisher_orgs = sorted(org for org in principal.member_org_ids()
                                if principal.memberships[org] in ROLES_THAT_PUBLISH)
        marks = ", ".join("?" * len(publisher_orgs)) or "NULL"
        rows = await self.db.fetch_all(
            "SELECT p.namespace, p.name, p.visibility, p.pricing_model, p.price_amount, p.currency, p.downloads,"
            " lv.version AS latest_version, lv.deprecated_at AS latest_deprecated_at,"
            " json_extract(lv.metadata_json, '$.display_name') AS display_name,"
            " (SELECT count(*) FROM versions v WHERE v.package_id = p.id) AS version_count,"
            " (SELECT count(*) FROM versions v WHERE v.package_id = p.id AND v.state = 'quarantined') AS quarantined"
            " FROM packages p LEFT JOIN versions lv ON lv.id = p.latest_version_id"
            f" WHERE (p.org_id IS NULL AND p.owner_user_id = ?) OR p.org_id IN ({marks})"
            " ORDER BY p.namespace, p.name",
            (principal.id, *publisher_orgs))
        return [{
            "namespace": r["namespace"], "name": r["name"], "visibility": r["visibility"],
            "display_name": r["display_name"] or r["name"], "version": r["latest_version"],
            "deprecated": r["latest_deprecated_at"] is not None, "downloads": r["downloads"],
            "pricing": pricing_of(r),
            "version_count": r["version_count"], "quarantined": r["quarantined"],
        } for r in rows]

    # --- publisher actions ---------------------------------------------------------------------------

    async def yank(self, principal: Principal, namespace: str, name: str, version: str, reason: str | None,
                   ip: str | None = None) -> StatusChange:
        reason = clean_reason(reason, required=True, what="yanking")

        async def apply(tx: Transaction, row: dict) -> bool:
            if row["yanked_at"] is not None:
                return False
            await tx.execute("UPDATE versions SET yanked_at = ?, yank_reason = ?, updated_at = ? WHERE id = ?",
                             (time.time(), reason, time.time(), row["id"]))
            return True

        return await self._change(principal, namespace, name, version, "yank", reason, apply, ip)

    async def unyank(self, principal: Principal, namespace: str, name: str, version: str,
                     reason: str | None = None, ip: str | None = None) -> StatusChange:
        reason = clean_reason(reason, required=False, what="unyanking")

        async def apply(tx: Transaction, row: dict) -> bool:
            if row["yanked_at"] is None:
                return False
            await tx.execute("UPDATE versions SET yanked_at = NULL, yank_reason = NULL, updated_at = ? WHERE id = ?",
                             (time.time(), row["id"]))
            return True

        return await self._change(principal, namespace, name, version, "unyank", reason, apply, ip)

    async def deprecate(self, principal: Principal, namespace: str, name: str, version: str, reason: str | None,
                        ip: str | None = None) -> StatusChange:
        reason = clean_reason(reason, required=True, what="deprecating")

        async def apply(tx: Transaction, row: dict) -> bool:
            if row["deprecated_at"] is not None and row["deprecation_reason"] == reason:
                return False
            await tx.execute(
                "UPDATE versions SET deprecated_at = ?, deprecation_reason = ?, updated_at = ? WHERE id = ?",
                (time.time(), reason, time.time(), row["id"]))
            return True

        return await self._change(principal, namespace, name, version, "deprecate", reason, apply, ip)

    async def _change(self, principal: Principal, namespace: str, name: str, version: str, kind: str,
                      reason: str | None, apply, ip: str | None) -> StatusChange:
        index = None
        async with self.db.write() as tx:
            row = await self._managed_version(tx, principal, namespace, name, version)
            if row["state"] != "published":
                raise Conflict(f"{namespace}/{name}@{version} is {row['state']}; only published versions can be "
                               f"{PAST[kind]}", code="not_published",
                               details={"state": row["state"]})
            changed = await apply(tx, row)
            if changed:
                index = await self.ledger.append(tx, ledger_events.status_event(
                    kind, namespace=namespace, name=name, version=row["version"], sha256=row["sha256"],
                    actor=principal.user.username, reason=reason), org_id=seal_org(row))
                await audit.record(tx, actor_of(principal, ip), f"package.{kind}", org_id=row["org_id"],
                                   target=f"{namespace}/{name}@{row['version']}",
                                   details={"reason": reason, "ledger_index": index})
            latest = await refresh_latest(tx, row["package_id"])
            row = await tx.fetch_one(VERSION_SQL + " WHERE v.id = ?", (row["id"],))
        return StatusChange(version_status(row, latest), changed, await ledger_proof(self.ledger, index))

    async def _managed_version(self, tx: Transaction, principal: Principal, namespace: str, name: str,
                               version: str) -> dict[str, Any]:
        package = await tx.fetch_one("SELECT * FROM packages WHERE namespace = ? AND name = ?", (namespace, name))
        if package is None or not can_see(principal, package):
            raise NotFound(f"no package {namespace}/{name}", code="no_such_package")
        if not can_manage(principal, package):
            raise Forbidden(f"you may not change versions of {namespace}/{name}: only its owner or its "
                            "organization's owners, admins and publishers can", code="not_package_manager")
        row = await tx.fetch_one(VERSION_SQL + " WHERE v.package_id = ? AND v.version = ?", (package["id"], version))
        if row is None:
            raise NotFound(f"{namespace}/{name} has no version {version[:100]!r}", code="no_such_version")
        return row

    # --- the admin quarantine queue ------------------------------------------------------------------

    async def quarantined(self, limit: int = 50, after_id: int = 0) -> dict[str, Any]:
        """Quarantined versions, oldest first, keyset-paginated by version id (admins only: the web layer
        checks)."""
        rows = await self.db.fetch_all(
            VERSION_SQL + " WHERE v.state = 'quarantined' AND v.id > ? AND v.id NOT IN (SELECT version_id FROM"
            " hosted_checks) ORDER BY v.id LIMIT ?", (after_id, limit + 1))  # pending ones are not for review yet
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": [quarantine_item(row) for row in rows],
                "next_after": rows[-1]["id"] if more else None}

    async def release(self, admin: Principal, namespace: str, name: str, version: str, note: str | None = None,
                      ip: str | None = None) -> StatusChange:
        """Publish a quarantined version: its publish leaf plus a quarantine-release leaf, then 'latest'."""
        note = clean_reason(note, required=False, what="releasing")
        async with self.db.write() as tx:
            row = await self._quarantined_version(tx, admin, namespace, name, version)
            now = time.time()
            publish = ledger_events.publish_event(
                namespace=namespace, name=name, version=row["version"], sha256=row["sha256"], size=row["size"],
                publisher=row["publisher"] or "unknown", signer_fingerprint=row["signer_fingerprint"])
            release = ledger_events.status_event(
                "quarantine-release", namespace=namespace, name=name, version=row["version"], sha256=row["sha256"],
                actor=admin.user.username, reason=note)
            index, _ = await self.ledger.append_many(tx, [publish, release], org_id=seal_org(row))
            await tx.execute(
                "UPDATE versions SET state = 'published', ledger_index = ?, reviewed_by = ?, reviewed_at = ?,"
                " review_reason = ?, updated_at = ? WHERE id = ?", (index, admin.id, now, note, now, row["id"]))
            await audit.record(tx, actor_of(admin, ip), "package.quarantine_release", org_id=row["org_id"],
                               target=f"{namespace}/{name}@{row['version']}",
                               details={"note": note, "ledger_index": index, "sha256": row["sha256"]})
            latest = await refresh_latest(tx, row["package_id"])
            row = await tx.fetch_one(VERSION_SQL + " WHERE v.id = ?", (row["id"],))
        return StatusChange(version_status(row, latest), True, await ledger_proof(self.ledger, index))

    async def reject(self, admin: Principal, namespace: str, name: str, version: str, reason: str | None,
                     ip: str | None = None) -> StatusChange:
        """Refuse a quarantined version for good. It never becomes visible, so it gets no ledger leaf; the
        version number stays taken (invariant 1)."""
        reason = clean_reason(reason, required=True, what="rejecting")
        async with self.db.write() as tx:
            row = await self._quarantined_version(tx, admin, namespace, name, version)
            now = time.time()
            await tx.execute(
                "UPDATE versions SET state = 'rejected', reviewed_by = ?, reviewed_at = ?, review_reason = ?,"
                " updated_at = ? WHERE id = ?", (admin.id, now, reason, now, row["id"]))
            await audit.record(tx, actor_of(admin, ip), "package.quarantine_reject", org_id=row["org_id"],
                               target=f"{namespace}/{name}@{row['version']}",
                               details={"reason": reason, "sha256": row["sha256"]})
            latest = await tx.fetch_value("SELECT latest_version_id FROM packages WHERE id = ?", (row["package_id"],))
            row = await tx.fetch_one(VERSION_SQL + " WHERE v.id = ?", (row["id"],))
        return StatusChange(version_status(row, latest), True)

    @staticmethod
    async def _quarantined_version(tx: Transaction, admin: Principal, namespace: str, name: str,
                                   version: str) -> dict[str, Any]:
        if not admin.is_admin:
            raise Forbidden("site administrators only")
        row = await tx.fetch_one(VERSION_SQL + " WHERE p.namespace = ? AND p.name = ? AND v.version = ?",
                                 (namespace, name, version))
        if row is None:
            raise NotFound(f"no version {namespace}/{name}@{version[:100]}", code="no_such_version")
        if await tx.fetch_value("SELECT 1 FROM hosted_checks WHERE version_id = ?", (row["id"],)):
            raise Conflict(f"{namespace}/{name}@{version} is pending: its hosted start-up check is still running",
                           code="not_quarantined", details={"state": "pending"})
        if row["state"] != "quarantined":
            raise Conflict(f"{namespace}/{name}@{version} is {row['state']}, not quarantined",
                           code="not_quarantined", details={"state": row["state"]})
        return row


def quarantine_item(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"], "namespace": row["namespace"], "name": row["name"], "version": row["version"],
        "sha256": row["sha256"], "size": row["size"], "publisher": row["publisher"],
        "published_at": row["published_at"], "visibility": row["visibility"],
        "signature": {"status": row["signature_status"], "subject": row["signer_subject"],
                      "issuer": row["signer_issuer"], "fingerprint": row["signer_fingerprint"],
                      "reason": row.get("signature_reason")},
        "findings": json.loads(row["findings_json"]),
    }
