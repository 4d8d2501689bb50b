"""Tokens that belong to an organization rather than a user (SCIM's bearer tokens): created and revoked by the
org's owners and admins, shown once, stored as their sha256, and good for that one org only. (The policy's
device tokens follow the same pattern in policy/service.py.)"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from .. import audit
from ..audit import Actor
from ..db import Database
from ..errors import InvalidInput, NotFound, Unauthenticated
from .credentials import secret_hash
from .models import Org, Principal

TABLES = frozenset({"scim_tokens"})  # the table name is code's, never input: it is checked against this list
LAST_USED_RESOLUTION = 60.0  # seconds: one write a minute per token, not one per request


@dataclass(frozen=True)
class OrgTokenInfo:
    id: int
    name: str
    prefix: str
    created_by: str | None
    created_at: float
    last_used_at: float | None
    revoked: bool


class OrgTokens:
    def __init__(self, db: Database, table: str, prefix: str, action: str):
        if table not in TABLES:
            raise ValueError(f"not an org token table: {table!r}")
        self.db, self.table, self.prefix, self.action = db, table, prefix, action

    async def create(self, principal: Principal, org: Org, name: str,
                     ip: str | None = None) -> tuple[str, OrgTokenInfo]:
        """A new token for `org` (the caller checked that `principal` manages it); the secret is returned once."""
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInput("a token needs a name of 1-100 characters", details={"field": "name"})
        secret = self.prefix + secrets.token_urlsafe(32)
        async with self.db.write() as tx:
            token_id = await tx.insert(self.table, {
                "org_id": org.id, "name": name, "token_hash": secret_hash(secret), "prefix": secret[:12],
                "created_by": principal.id, "created_at": time.time()})
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), f"{self.action}.create",
                               org_id=org.id, target=str(token_id), details={"name": name})
        return secret, (await self.list(org, token_id))[0]

    async def list(self, org: Org, token_id: int | None = None) -> list[OrgTokenInfo]:
        rows = await self.db.fetch_all(
            f"SELECT t.*, u.username FROM {self.table} t LEFT JOIN users u ON u.id = t.created_by"
            " WHERE t.org_id = ? AND (? IS NULL OR t.id = ?) ORDER BY t.id DESC", (org.id, token_id, token_id))
        return [OrgTokenInfo(r["id"], r["name"], r["prefix"], r["username"], r["created_at"], r["last_used_at"],
                             r["revoked_at"] is not None) for r in rows]

    async def revoke(self, principal: Principal, org: Org, token_id: int, ip: str | None = None) -> None:
        async with self.db.write() as tx:
            changed = await tx.changes(f"UPDATE {self.table} SET revoked_at = ? WHERE id = ? AND org_id = ?"
                                       " AND revoked_at IS NULL", (time.time(), token_id, org.id))
            if not changed:
                raise NotFound("no such active token")
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), f"{self.action}.revoke",
                               org_id=org.id, target=str(token_id))

    async def org_for(self, secret: str | None, slug: str) -> Org:
        """The org the token belongs to, which must be `slug`: a token of another org, a revoked or an unknown
        one all answer the same 401, so a token tells nothing about other orgs."""
        if not secret or not secret.startswith(self.prefix) or len(secret) > 200:
            raise Unauthenticated(f"send this organization's token: Authorization: Bearer {self.prefix}…",
                                  code="invalid_token")
        digest = secret_hash(secret)
        row = await self.db.fetch_one(
            f"SELECT t.id, t.token_hash, t.revoked_at, t.last_used_at, o.id AS org_id, o.slug, o.name,"
            f" o.created_at FROM {self.table} t JOIN orgs o ON o.id = t.org_id WHERE t.token_hash = ?", (digest,))
        if row is None or row["slug"] != slug or row["revoked_at"] is not None \
                or not hmac.compare_digest(row["token_hash"], digest):
            raise Unauthenticated("unknown or revoked token for this organization", code="invalid_token")
        now = time.time()
        if row["last_used_at"] is None or now - row["last_used_at"] > LAST_USED_RESOLUTION:
            async with self.db.write() as tx:
                await tx.execute(f"UPDATE {self.table} SET last_used_at = ? WHERE id = ?", (now, row["id"]))
        return Org(row["org_id"], row["slug"], row["name"], row["created_at"])
