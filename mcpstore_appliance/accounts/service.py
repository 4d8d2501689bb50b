"""Users, organizations, memberships, API tokens, web sessions, signup policy and the first-admin setup link.

Secrets (API tokens, session ids, invite and setup codes) are random, shown once, and stored only as
sha256 hashes; lookups go by hash and a constant-time compare confirms the match.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import re
import secrets
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from .. import audit
from ..audit import Actor
from ..config import AccountSettings
from ..db import Database, Transaction
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated
from ..lru import LRU
from .models import (
    ROLES,
    ROLES_THAT_MANAGE_MEMBERS,
    SCOPES,
    SESSION_SCOPES,
    Member,
    Org,
    Principal,
    TokenInfo,
    User,
)
from .passwords import CONCURRENT_HASHES, hash_password, password_problem, verify_password
from .ratelimit import FailureDelays, RateLimiter, address_key

TOKEN_PREFIX = "mcps_"
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
RESERVED_NAMES = frozenset({"admin", "api", "static", "ledger", "bundles", "login", "logout", "signup", "org",
                            "orgs", "search", "setup", "mcp", "v0", "account", "dashboard", "well-known", "system"})
LAST_USED_RESOLUTION = 60.0  # seconds; avoids a write on every authenticated request
# Tokens and sessions whose callers are kept between requests (AccountService.change_stamp), and the callers'
# organizations: each signed-in request otherwise costs two or three database round trips, ~10x an anonymous
# read of a kept package page.
KEPT_CALLERS = 4096


@dataclass(frozen=True)
class _KeptCaller:
    principal: Principal
    expires_at: float | None
    stamp: Hashable  # change_stamp() before the reads it came from
    last_used_at: float | None = None  # tokens: when last_used_at was last written
    csrf_token: str = ""  # sessions


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _user(row: dict[str, Any]) -> User:
    return User(row["id"], row["email"], row["username"], row["display_name"], bool(row["is_admin"]),
                row["created_at"])


def _org(row: dict[str, Any]) -> Org:
    return Org(row["id"], row["slug"], row["name"], row["created_at"])


def check_slug(value: str, what: str) -> str:
    if not isinstance(value, str) or not SLUG.match(value):
        raise InvalidInput(f"{what} must be 1-39 lowercase letters, digits or inner hyphens", code="invalid_slug",
                           details={"field": what})
    if value in RESERVED_NAMES:
        raise InvalidInput(f"{what} {value!r} is reserved", code="reserved_name", details={"field": what})
    return value


class AccountService:
    def __init__(self, db: Database, settings: AccountSettings, change_stamp: Callable[[], Hashable] | None = None):
        """`change_stamp`: a value that moves whenever the database may have changed (this process's commits at
        once, other processes' within about a second: Database.stamp). With it, the callers behind tokens
        and sessions are cached while it stays the same; without it, every call reads the database."""
        self.db = db
        self.settings = settings
        self.change_stamp = change_stamp or itertools.count().__next__  # a new value each time: nothing cached
        self._kept_callers = LRU(KEPT_CALLERS)
        self.login_by_ip = RateLimiter(settings.login_attempts_per_ip_per_minute)
        self.login_failures = FailureDelays(settings.login_failures_before_delay, settings.login_max_delay_seconds)
        self.token_by_ip = RateLimiter(settings.token_requests_per_ip_per_minute)
        self.hash_slots = asyncio.Semaphore(CONCURRENT_HASHES)

    async def _hashing(self, function, *args):
        """Run a password hash off the event loop, a bounded number at a time."""
        async with self.hash_slots:
            return await asyncio.to_thread(function, *args)

    # ---- users -----------------------------------------------------------------------------------

    async def create_user(self, email: str, username: str, password: str | None, *, display_name: str = "",
                          is_admin: bool = False, actor: Actor = audit.SYSTEM) -> User:
        email = (email or "").strip()
        if not EMAIL.match(email):
            raise InvalidInput("a valid email address is required", code="invalid_email", details={"field": "email"})
        check_slug(username, "username")
        if password is not None and (problem := password_problem(password)):
            raise InvalidInput(problem, code="weak_password", details={"field": "password"})
        display_name = (display_name or username).strip()[:100]
        password_hash = await self._hashing(hash_password, password) if password is not None else None  # outside the write lock
        async with self.db.write() as tx:
            await self._ensure_free(tx, email=email, namespace=username)
            now = time.time()
            user_id = await tx.insert("users", {
                "email": email, "username": username, "display_name": display_name,
                "password_hash": password_hash, "is_admin": int(is_admin), "created_at": now,
            })
            await tx.insert("namespaces", {"name": username, "user_id": user_id})
            await audit.record(tx, actor, "user.create", target=username, details={"admin": is_admin})
        return await self.get_user(user_id)

    async def _ensure_free(self, tx: Transaction, *, email: str | None = None, namespace: str) -> None:
        if email and await tx.fetch_value("SELECT 1 FROM users WHERE email = ?", (email,)):
            raise Conflict("an account with this email already exists", code="email_taken")
        if await tx.fetch_value("SELECT 1 FROM namespaces WHERE name = ?", (namespace,)):
            raise Conflict(f"the name {namespace!r} is taken", code="name_taken")

    async def get_user(self, user_id: int) -> User:
        row = await self.db.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound("no such user")
        return _user(row)

    async def find_user(self, username: str) -> User:
        row = await self.db.fetch_one("SELECT * FROM users WHERE username = ?", (username,))
        if row is None:
            raise NotFound(f"no user named {username!r}")
        return _user(row)

    async def list_users(self, limit: int = 100, after_id: int = 0) -> list[User]:
        rows = await self.db.fetch_all("SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [_user(row) for row in rows]

    async def user_count(self) -> int:
        return await self.db.fetch_value("SELECT count(*) FROM users", default=0)

    async def login(self, login: str, password: str, ip: str) -> User:
        """Check a password; the same error for every failure. Limited per address (all its attempts) and
        slowed per account and address (FailureDelays): whoever guesses waits longer and longer, while the
        account's owner signing in from another address is not held back by it."""
        address = address_key(ip)
        self.login_by_ip.check(address, "login attempts")
        login = (login or "").strip()
        failures_key = (login.lower(), address)
        self.login_failures.check(failures_key, "failed sign-ins to this account from your address")
        row = await self.db.fetch_one(
            "SELECT * FROM users WHERE (email = ? OR username = ?) AND is_disabled = 0", (login, login.lower()))
        if not await self._hashing(verify_password, row["password_hash"] if row else None, password or ""):
            self.login_failures.failed(failures_key)
            raise Unauthenticated("wrong email or password", code="bad_credentials")
        self.login_failures.succeeded(failures_key)
        async with self.db.write() as tx:
            await audit.record(tx, Actor(row["id"], row["username"], ip), "user.login")
        return _user(row)

    # ---- signup, invites and the first admin -----------------------------------------------------

    async def signup(self, email: str, username: str, password: str, *, display_name: str = "",
                     invite_code: str | None = None, ip: str | None = None) -> User:
        if self.settings.signup == "closed":
            raise Forbidden("sign-up is closed on this registry; ask an administrator for an account",
                            code="signup_closed")
        invite = None
        if self.settings.signup == "invite":
            invite = await self._valid_invite(invite_code)
        user = await self.create_user(email, username, password, display_name=display_name,
                                      actor=Actor(None, "anonymous", ip))
        if invite is not None:
            await self._use_invite(invite, user)
        return user

    async def create_invite(self, actor: Principal, *, email: str | None = None, org_slug: str | None = None,
                            role: str = "member", days: int = 7) -> str:
        org = None
        if org_slug:
            org = await self.get_org(org_slug)
            self._require_manager(actor, org)
            self._check_role(role)
        elif not actor.is_admin:
            raise Forbidden("only site administrators can invite people to the registry")
        code = secrets.token_urlsafe(24)
        async with self.db.write() as tx:
            await tx.insert("invites", {
                "code_hash": secret_hash(code), "email": email, "org_id": org.id if org else None,
                "role": role if org else None, "created_by": actor.id, "created_at": time.time(),
                "expires_at": time.time() + days * 86400,
            })
            await audit.record(tx, Actor(actor.id, actor.user.username), "invite.create",
                               org_id=org.id if org else None, details={"email": email, "role": role})
        return code

    async def _valid_invite(self, code: str | None) -> dict[str, Any]:
        row = await self.db.fetch_one("SELECT * FROM invites WHERE code_hash = ?", (secret_hash(code or ""),))
        if row is None or row["used_at"] or row["expires_at"] < time.time():
            raise Forbidden("sign-up needs a valid, unused invitation code", code="invite_required")
        return row

    async def _use_invite(self, invite: dict[str, Any], user: User) -> None:
        async with self.db.write() as tx:
            used = await tx.changes("UPDATE invites SET used_at = ? WHERE code_hash = ? AND used_at IS NULL",
                                    (time.time(), invite["code_hash"]))
            if used and invite["org_id"]:
                await tx.insert("memberships", {"org_id": invite["org_id"], "user_id": user.id,
                                                "role": invite["role"], "created_at": time.time()})

    async def create_setup_link_if_fresh(self) -> str | None:
        """On a registry without users, a one-time code that lets the first visitor become admin."""
        if await self.user_count():
            return None
        code = secrets.token_urlsafe(24)
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM setup_links")
            await tx.insert("setup_links", {"code_hash": secret_hash(code), "created_at": time.time()})
        return code

    async def complete_setup(self, code: str, email: str, username: str, password: str,
                             display_name: str = "") -> User:
        row = await self.db.fetch_one("SELECT * FROM setup_links WHERE code_hash = ? AND used_at IS NULL",
                                      (secret_hash(code or ""),))
        if row is None or await self.user_count():
            raise Forbidden("this setup link is not valid any more", code="setup_used")
        user = await self.create_user(email, username, password, display_name=display_name, is_admin=True)
        async with self.db.write() as tx:
            await tx.execute("UPDATE setup_links SET used_at = ? WHERE code_hash = ?", (time.time(), row["code_hash"]))
        return user

    # ---- API tokens ------------------------------------------------------------------------------

    async def create_token(self, principal: Principal, name: str, scopes: list[str], *, org_slug: str | None = None,
                           expires_in_days: int | None = None, ip: str | None = None) -> tuple[str, TokenInfo]:
        """A new token for the principal's user, never with more rights than the credential that asks: no scope
        it lacks, no wider org binding (a bound token's tokens are bound to its org) and no later expiry."""
        if ip:
            self.token_by_ip.check(ip, "token requests")
        name = (name or "").strip()
        if not name or len(name) > 100:
            raise InvalidInput("a token needs a name of 1-100 characters", details={"field": "name"})
        scopes = self._token_scopes(principal, scopes)
        expires_at = self._token_expiry(principal, expires_in_days)
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

    @staticmethod
    def _token_scopes(principal: Principal, scopes: list[str]) -> list[str]:
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

    def _token_expiry(self, principal: Principal, expires_in_days: int | None) -> float:
        """The new token's expiry: the asked number of days (default the maximum), never past the expiry of the
        token that creates it (asked explicitly beyond it is refused; the default is cut to it)."""
        max_days = self.settings.token_max_days
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
        org = await self.get_org(org_slug)
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
        stamp = self.change_stamp()  # before the reads it guards
        kept = self._kept_callers.get(("token", digest))
        if kept is not None and kept.stamp == stamp and now - kept.last_used_at <= LAST_USED_RESOLUTION:
            if kept.expires_at is not None and kept.expires_at < now:
                raise Unauthenticated("this API token has expired", code="token_expired")
            return kept.principal
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
            last_used_at = now  # the write moved the stamp: the next call reads the row once more, then keeps it
        principal = await self.principal_for_user(row["user_id"], frozenset(row["scopes"].split()), row["org_id"],
                                                  "token", row["expires_at"])
        self._kept_callers.put(("token", digest), _KeptCaller(principal, row["expires_at"], stamp, last_used_at))
        return principal

    async def principal_for_user(self, user_id: int, scopes: frozenset[str] = SESSION_SCOPES,
                                 token_org_id: int | None = None, via: str = "password",
                                 expires_at: float | None = None) -> Principal:
        # One query for the user and their memberships (a LEFT JOIN row per org, or one row without).
        rows = await self.db.fetch_all(
            "SELECT u.*, m.org_id, m.role, o.slug FROM users u LEFT JOIN memberships m ON m.user_id = u.id"
            " LEFT JOIN orgs o ON o.id = m.org_id WHERE u.id = ?", (user_id,))
        if not rows:
            raise Unauthenticated("this account no longer exists", code="account_disabled")
        orgs = [r for r in rows if r["org_id"] is not None]
        return Principal(_user(rows[0]), scopes, {r["org_id"]: r["role"] for r in orgs},
                         {r["org_id"]: r["slug"] for r in orgs}, token_org_id, via, expires_at)

    # ---- web sessions ----------------------------------------------------------------------------

    async def start_session(self, user: User) -> tuple[str, str]:
        """Return (session cookie value, CSRF token)."""
        session_id = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        now = time.time()
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM web_sessions WHERE expires_at < ?", (now,))
            await tx.insert("web_sessions", {
                "id_hash": secret_hash(session_id), "user_id": user.id, "csrf_token": csrf,
                "created_at": now, "expires_at": now + self.settings.session_ttl_hours * 3600,
            })
        return session_id, csrf

    async def principal_for_session(self, session_id: str) -> tuple[Principal, str] | None:
        """The session's principal and CSRF token, or None for an unknown or expired session."""
        if not session_id or len(session_id) > 100:
            return None
        digest = secret_hash(session_id)
        now = time.time()
        stamp = self.change_stamp()  # before the reads it guards
        kept = self._kept_callers.get(("session", digest))
        if kept is not None and kept.stamp == stamp:
            return None if kept.expires_at < now else (kept.principal, kept.csrf_token)
        row = await self.db.fetch_one(
            "SELECT s.*, u.is_disabled FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (digest,))
        if row is None or row["expires_at"] < now or row["is_disabled"]:
            return None
        principal = await self.principal_for_user(row["user_id"], SESSION_SCOPES, None, "session")
        self._kept_callers.put(("session", digest),
                               _KeptCaller(principal, row["expires_at"], stamp, csrf_token=row["csrf_token"]))
        return principal, row["csrf_token"]

    async def end_session(self, session_id: str) -> None:
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM web_sessions WHERE id_hash = ?", (secret_hash(session_id),))

    # ---- organizations ---------------------------------------------------------------------------

    async def create_org(self, actor: Principal | None, slug: str, name: str, *, owner: User | None = None) -> Org:
        if actor is not None and actor.token_org_id is not None:
            raise Forbidden("a token bound to an organization cannot create organizations", code="org_bound_token")
        check_slug(slug, "slug")
        name = (name or slug).strip()[:100]
        owner = owner or (actor.user if actor else None)
        async with self.db.write() as tx:
            await self._ensure_free(tx, namespace=slug)
            now = time.time()
            org_id = await tx.insert("orgs", {"slug": slug, "name": name, "created_at": now})
            await tx.insert("namespaces", {"name": slug, "org_id": org_id})
            if owner is not None:
                await tx.insert("memberships", {"org_id": org_id, "user_id": owner.id, "role": "owner",
                                                "created_at": now})
            who = Actor(actor.id, actor.user.username) if actor else audit.SYSTEM
            await audit.record(tx, who, "org.create", org_id=org_id, target=slug)
        return await self.get_org(slug)

    async def get_org(self, slug: str) -> Org:
        row = await self.db.fetch_one("SELECT * FROM orgs WHERE slug = ?", (slug,))
        if row is None:
            raise NotFound(f"no organization named {slug!r}")
        return _org(row)

    async def visible_org(self, principal: Principal | None, slug: str) -> Org:
        """An org the principal belongs to; a foreign org answers exactly like a missing one."""
        row = await self.db.fetch_one("SELECT * FROM orgs WHERE slug = ?", (slug,))
        if row is None or principal is None or (principal.role_in(row["id"]) is None and not principal.is_admin):
            raise NotFound(f"no organization named {slug!r}")
        return _org(row)

    async def orgs_of(self, principal: Principal) -> list[tuple[Org, str]]:
        """The caller's organizations with their role in each, by slug (kept like the callers themselves);
        through an org-bound token, only that org."""
        stamp = self.change_stamp()  # before the read it guards
        kept = self._kept_callers.get(("orgs", principal.id))
        if kept is None or kept[0] != stamp:
            rows = await self.db.fetch_all(
                "SELECT o.*, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ?"
                " ORDER BY o.slug", (principal.id,))
            kept = (stamp, tuple((_org(row), row["role"]) for row in rows))
            self._kept_callers.put(("orgs", principal.id), kept)
        return [(org, role) for org, role in kept[1] if principal.token_org_id in (None, org.id)]

    async def members(self, principal: Principal | None, slug: str) -> list[Member]:
        org = await self.visible_org(principal, slug)
        rows = await self.db.fetch_all(
            "SELECT u.username, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id"
            " WHERE m.org_id = ? ORDER BY u.username", (org.id,))
        return [Member(r["username"], r["display_name"], r["role"]) for r in rows]

    def _require_manager(self, actor: Principal, org: Org) -> None:
        if actor.is_admin:
            return
        role = actor.role_in(org.id)
        if role is None:
            raise NotFound(f"no organization named {org.slug!r}")
        if role not in ROLES_THAT_MANAGE_MEMBERS:
            raise Forbidden("only owners and admins of this organization manage its members")

    @staticmethod
    def _check_role(role: str) -> None:
        if role not in ROLES:
            raise InvalidInput(f"role must be one of {list(ROLES)}", details={"field": "role"})

    async def set_member(self, actor: Principal | None, slug: str, username: str, role: str) -> Member:
        """Add a member or change a member's role (operators pass actor=None)."""
        self._check_role(role)
        org = await (self.get_org(slug) if actor is None else self.visible_org(actor, slug))
        if actor is not None:
            self._require_manager(actor, org)
            if role == "owner" and actor.role_in(org.id) != "owner" and not actor.is_admin:
                raise Forbidden("only owners can make someone an owner")
        user = await self.find_user(username)
        async with self.db.write() as tx:
            current = await tx.fetch_value("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                                           (org.id, user.id))
            if current == "owner" and role != "owner":
                await self._keep_an_owner(tx, org)
                if actor is not None and actor.role_in(org.id) != "owner" and not actor.is_admin:
                    raise Forbidden("only owners can change an owner's role")
            await tx.execute(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                (org.id, user.id, role, time.time()))
            who = Actor(actor.id, actor.user.username) if actor else audit.SYSTEM
            await audit.record(tx, who, "org.member.set", org_id=org.id, target=username,
                               details={"role": role, "previous": current})
        return Member(user.username, user.display_name, role)

    async def remove_member(self, actor: Principal, slug: str, username: str) -> None:
        org = await self.visible_org(actor, slug)
        user = await self.find_user(username)
        if user.id != actor.id:
            self._require_manager(actor, org)
        async with self.db.write() as tx:
            current = await tx.fetch_value("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                                           (org.id, user.id))
            if current is None:
                raise NotFound(f"{username} is not a member of {slug}")
            if current == "owner":
                await self._keep_an_owner(tx, org)
                if actor.role_in(org.id) != "owner" and not actor.is_admin:
                    raise Forbidden("only owners can remove an owner")
            await tx.execute("DELETE FROM memberships WHERE org_id = ? AND user_id = ?", (org.id, user.id))
            await audit.record(tx, Actor(actor.id, actor.user.username), "org.member.remove", org_id=org.id,
                               target=username)

    @staticmethod
    async def _keep_an_owner(tx: Transaction, org: Org) -> None:
        owners = await tx.fetch_value("SELECT count(*) FROM memberships WHERE org_id = ? AND role = 'owner'",
                                      (org.id,))
        if owners <= 1:
            raise Conflict("an organization must keep at least one owner", code="last_owner")
