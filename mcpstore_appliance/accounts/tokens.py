"""API tokens. A token never creates a token with more rights than itself: no scope it lacks, no wider org
binding and no later expiry. Tokens are stored as hashes (credentials.py); `last_used_at` is written at most
once a minute per token."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

from .. import audit
from ..audit import Actor
from ..config import AccountSettings
from ..db import Database
from ..errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from .credentials import CallerCache, secret_hash
from .models import SCOPES, Principal, TokenInfo
from .orgs import Orgs
from .ratelimit import RateLimiter
from .users import Users

TOKEN_PREFIX = "mcps_"
LAST_USED_RESOLUTION = 60.0  # seconds; spares a write on every authenticated request


@dataclass(frozen=True)
class _CachedToken:
    principal: Principal
    expires_at: float | None
    last_used_at: float  # when last_used_at was last written


class Tokens:
    def __init__(self, db: Database, settings: AccountSettings, users: Users, orgs: Orgs, callers: CallerCache):
        self.db = db
        self.settings = settings
        self.users = users
        self.orgs = orgs
        self.callers = callers
        self.token_by_ip = RateLimiter(settings.token_requests_per_ip_per_minute)

    async def create_token(self, principal: Principal, name: str, scopes: list[str], *, org_slug: str | None = None,
                           expires_in_days: int | None = None, ip: str | None = None) -> tuple[str, TokenInfo]:
        """A new token for the principal's user, never with more rights than the credential that asks: no scope
        it lacks, no wider org binding (a bound token's tokens are bound to its org) and no later expiry."""
        if ip:
            self.token_by_ip.check(ip, "token requests")
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInput("a token needs a name of 1-100 characters", details={"field": "name"})
        scopes = token_scopes(principal, scopes)
        expires_at = token_expiry(principal, expires_in_days, self.settings.token_max_days)
        org_id = await self._token_org(principal, org_slug)
        if org_id is not None and "admin" in scopes:
            raise InvalidInput("site administration cannot be bound to an organization; leave out the admin "
                               "scope or the org", details={"field": "scopes"})
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        async with self.db.write() as tx:
            token_id = await tx.insert("api_tokens", {
                "user_id": principal.id, "org_id": org_id, "name": name, "token_hash": secret_hash(secret),
                "prefix": secret[:12], "scopes": " ".join(scopes), "created_at": time.time(),
                "expires_at": expires_at,
            })
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), "token.create",
                               org_id=org_id, target=str(token_id), details={"name": name, "scopes": scopes})
        return secret, (await self.list_tokens(principal, token_id=token_id))[0]

    async def _token_org(self, principal: Principal, org_slug: str | None) -> int | None:
        """The org a new token is bound to: the asked one (the holder must be a member), and for a credential
        that is itself bound, its own org (asked or not: a bound token cannot mint a wider one)."""
        if principal.token_org_id is not None:
            if org_slug and org_slug != principal.bound_org_slug:
                raise Forbidden("this token is bound to an organization; the tokens it creates are bound to the "
                                "same one", code="org_bound_token")
            return principal.token_org_id
        if not org_slug:
            return None
        org = await self.orgs.get_org(org_slug)
        if principal.role_in(org.id) is None:
            raise Forbidden("you are not a member of this organization")
        return org.id

    async def list_tokens(self, principal: Principal, token_id: int | None = None) -> list[TokenInfo]:
        """The holder's tokens; through an org-bound token, only the tokens bound to the same org."""
        bound = principal.token_org_id
        rows = await self.db.fetch_all(
            "SELECT t.*, o.slug AS org_slug FROM api_tokens t LEFT JOIN orgs o ON o.id = t.org_id"
            " WHERE t.user_id = ? AND (? IS NULL OR t.id = ?) AND (? IS NULL OR t.org_id = ?) ORDER BY t.id DESC",
            (principal.id, token_id, token_id, bound, bound))
        return [TokenInfo(r["id"], r["name"], r["prefix"], r["scopes"].split(), r["org_slug"], r["created_at"],
                          r["expires_at"], r["last_used_at"], r["revoked_at"] is not None) for r in rows]

    async def revoke_token(self, principal: Principal, token_id: int, ip: str | None = None) -> None:
        async with self.db.write() as tx:
            bound = principal.token_org_id  # a bound token revokes only tokens bound to its own org
            changed = await tx.changes(
                "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL"
                " AND (? IS NULL OR org_id = ?)", (time.time(), token_id, principal.id, bound, bound))
            if not changed:
                raise NotFound("no such active token")
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), "token.revoke",
                               target=str(token_id))

    async def principal_for_token(self, secret: str) -> Principal:
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            raise Unauthenticated("malformed API token", code="invalid_token")
        digest = secret_hash(secret)
        now = time.time()
        stamp = self.callers.stamp()
        cached = self.callers.get(("token", digest), stamp)
        if cached is not None and now - cached.last_used_at <= LAST_USED_RESOLUTION:
            if cached.expires_at is not None and cached.expires_at < now:
                raise Unauthenticated("this API token has expired", code="token_expired")
            return cached.principal
        row = await self.db.fetch_one(
            "SELECT t.*, u.is_disabled FROM api_tokens t JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
            (digest,))
        if row is None or not hmac.compare_digest(row["token_hash"], digest):
            raise Unauthenticated("unknown API token", code="invalid_token")
        if row["revoked_at"] is not None:
            raise Unauthenticated("this API token was revoked", code="token_revoked")
        if row["expires_at"] is not None and row["expires_at"] < now:
            raise Unauthenticated("this API token has expired", code="token_expired")
        if row["is_disabled"]:
            raise Unauthenticated("this account is disabled", code="account_disabled")
        last_used_at = row["last_used_at"]
        if last_used_at is None or now - last_used_at > LAST_USED_RESOLUTION:
            async with self.db.write() as tx:
                await tx.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (now, row["id"]))
            last_used_at = now  # the write moved the stamp: the next call reads the row once more, then caches it
        principal = await self.users.principal_for_user(row["user_id"], frozenset(row["scopes"].split()),
                                                        row["org_id"], "token", row["expires_at"])
        self.callers.put(("token", digest), stamp, _CachedToken(principal, row["expires_at"], last_used_at))
        return principal


def token_scopes(principal: Principal, scopes: list[str]) -> list[str]:
    """The new token's scopes (default: read), never one the creating credential lacks."""
    scopes = sorted(set(scopes or ["read"]))
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise InvalidInput(f"unknown scopes {unknown}; use {list(SCOPES)}", details={"field": "scopes"})
    if "admin" in scopes and not principal.user.is_admin:
        raise Forbidden("only site administrators can create admin tokens", code="scope_not_allowed")
    if not set(scopes) <= principal.scopes:
        raise Forbidden("a token cannot have more scopes than the credential that creates it",
                        code="scope_not_allowed", details={"missing": sorted(set(scopes) - principal.scopes)})
    return scopes


def token_expiry(principal: Principal, expires_in_days: int | None, max_days: int) -> float:
    """The new token's expiry: the asked number of days (default the maximum), never past the expiry of the
    token that creates it (asked explicitly beyond it is refused; the default is cut to it)."""
    days = max_days if expires_in_days is None else expires_in_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= max_days:
        raise InvalidInput(f"expires_in_days must be 1-{max_days}", details={"field": "expires_in_days"})
    expires_at = time.time() + days * 86400
    limit = principal.expires_at
    if limit is not None and expires_at > limit:
        if expires_in_days is not None:
            raise Forbidden("a token cannot outlive the token that creates it", code="expiry_not_allowed",
                            details={"latest": limit})
        expires_at = limit
    return expires_at
