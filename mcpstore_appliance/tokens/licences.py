"""Licence keys: what a buyer pastes into a bundle's `user_config`, and what the bundle's server exchanges for
usage tokens (tokens/usage.py). Long-lived, revocable, shown once, stored as a sha256 hash; one active key per
buyer and package. Revoking a key also revokes the usage tokens issued for it that have not expired yet.
"""

from __future__ import annotations

import hmac
import secrets
import time

from .. import audit
from ..accounts.credentials import secret_hash
from ..accounts.models import Principal
from ..catalog.visibility import can_manage, can_see
from ..errors import Conflict, NotFound, PaymentRequired, Unauthenticated
from ..market.entitlements import active_kind

LICENCE_PREFIX = "mcpl_"
PACKAGE_SQL = ("SELECT id, namespace, name, org_id, owner_user_id, visibility, pricing_model, price_amount, currency,"
               " tier FROM packages WHERE ")


async def access_kind(db, principal: Principal, package: dict) -> str | None:
    """What gives `principal` access to the package (a usage token's `tier`), or None: free, publisher (its
    managers), per_call (paid per call from credits, checked when a token reserves them), or the kind of an
    active entitlement (purchase, subscription, grant)."""
    if not can_see(principal, package):
        return None
    if package["pricing_model"] == "free":
        return "free"
    if can_manage(principal, package):
        return "publisher"
    if package["pricing_model"] == "per_call":
        return "per_call"
    return await active_kind(db, principal.id, principal.member_org_ids(), package["id"])


def licence_json(row: dict) -> dict:
    return {"id": row["id"], "package": f"{row['namespace']}/{row['name']}", "prefix": row["prefix"],
            "created_at": row["created_at"], "last_used_at": row["last_used_at"],
            "revoked": row["revoked_at"] is not None}


class Licences:
    def __init__(self, db, on_revoke=lambda: None):
        self.db = db
        self.on_revoke = on_revoke  # the revocation list is rebuilt at once

    async def package(self, principal: Principal | None, namespace: str, name: str) -> dict:
        row = await self.db.fetch_one(PACKAGE_SQL + "namespace = ? AND name = ?", (namespace, name))
        if row is None or not can_see(principal, row):
            raise NotFound(f"no package {namespace}/{name}", code="package_not_found")
        return row

    async def create(self, principal: Principal, namespace: str, name: str, ip: str | None = None) -> dict:
        """A new licence key for the caller and package; the secret is in this answer only."""
        package = await self.package(principal, namespace, name)
        if await access_kind(self.db, principal, package) is None:
            raise PaymentRequired(f"{namespace}/{name} is a paid package; buy access first",
                                  code="entitlement_required")
        secret = LICENCE_PREFIX + secrets.token_urlsafe(32)
        async with self.db.write() as tx:
            existing = await tx.fetch_value("SELECT id FROM licence_keys WHERE user_id = ? AND package_id = ?"
                                            " AND revoked_at IS NULL", (principal.id, package["id"]))
            if existing is not None:
                raise Conflict("you have a licence key for this package; revoke it first to get a new one",
                               code="licence_exists", details={"id": existing})
            licence_id = await tx.insert("licence_keys", {
                "user_id": principal.id, "package_id": package["id"], "key_hash": secret_hash(secret),
                "prefix": secret[:12], "created_at": time.time()})
            await audit.record(tx, audit.Actor(principal.id, principal.user.username, ip), "licence.create",
                               target=f"{namespace}/{name}", org_id=package["org_id"], details={"id": licence_id})
        return {**(await self.list(principal, licence_id))[0], "licence_key": secret}

    async def list(self, principal: Principal, licence_id: int | None = None) -> list[dict]:
        rows = await self.db.fetch_all(
            "SELECT l.*, p.namespace, p.name FROM licence_keys l JOIN packages p ON p.id = l.package_id"
            " WHERE l.user_id = ? AND (? IS NULL OR l.id = ?) ORDER BY l.id DESC LIMIT 500",
            (principal.id, licence_id, licence_id))
        return [licence_json(row) for row in rows]

    async def revoke(self, principal: Principal, licence_id: int, ip: str | None = None) -> None:
        now = time.time()
        async with self.db.write() as tx:
            changed = await tx.changes("UPDATE licence_keys SET revoked_at = ? WHERE id = ? AND user_id = ?"
                                       " AND revoked_at IS NULL", (now, licence_id, principal.id))
            if not changed:
                raise NotFound("no such active licence key", code="licence_not_found")
            await tx.execute("INSERT OR IGNORE INTO usage_revocations (jti, reason, revoked_at, expires_at)"
                             " SELECT jti, 'licence_revoked', ?, expires_at FROM usage_tokens"
                             " WHERE licence_id = ? AND expires_at > ?", (now, licence_id, now))
            await audit.record(tx, audit.Actor(principal.id, principal.user.username, ip), "licence.revoke",
                               target=str(licence_id))
        self.on_revoke()

    async def holder(self, secret: object) -> dict:
        """The active licence behind a secret (with its package and user), or Unauthenticated."""
        if not isinstance(secret, str) or not secret.startswith(LICENCE_PREFIX) or len(secret) > 100:
            raise Unauthenticated("send a licence key (mcpl_…) as licence_key", code="invalid_licence")
        digest = secret_hash(secret)
        row = await self.db.fetch_one(
            "SELECT l.id, l.user_id, l.package_id, l.key_hash, l.revoked_at, l.last_used_at, u.is_disabled"
            " FROM licence_keys l JOIN users u ON u.id = l.user_id WHERE l.key_hash = ?", (digest,))
        if row is None or not hmac.compare_digest(row["key_hash"], digest):
            raise Unauthenticated("unknown licence key", code="invalid_licence")
        if row["revoked_at"] is not None:
            raise Unauthenticated("this licence key was revoked", code="licence_revoked")
        if row["is_disabled"]:
            raise Unauthenticated("this account is disabled", code="account_disabled")
        return row
