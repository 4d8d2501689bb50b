"""Users: creating and finding them, who a user is as a caller (`principal_for_user`), and signing in with a
password, throttled per address and per account."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from .. import audit
from ..audit import Actor
from ..config import AccountSettings
from ..db import Database, Transaction
from ..errors import Conflict, InvalidInput, NotFound, Unauthenticated
from .models import SESSION_SCOPES, Principal, User
from .passwords import CONCURRENT_HASHES, hash_password, password_problem, verify_password
from .ratelimit import FailureDelays, RateLimiter, address_key
from .sso_required import sso_org_for, sso_required

SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,37}[a-z0-9])?$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
RESERVED_NAMES = frozenset({"admin", "api", "static", "ledger", "bundles", "login", "logout", "signup", "org",
                            "orgs", "search", "setup", "mcp", "v0", "account", "dashboard", "well-known", "system"})


def user_from_row(row: dict[str, Any]) -> User:
    return User(row["id"], row["email"], row["username"], row["display_name"], bool(row["is_admin"]),
                row["created_at"])


def check_slug(value: str, what: str) -> str:
    """A username or an org slug: both are namespaces of packages, so they share one rule."""
    if not isinstance(value, str) or not SLUG.match(value):
        raise InvalidInput(f"{what} must be 1-39 lowercase letters, digits or inner hyphens", code="invalid_slug",
                           details={"field": what})
    if value in RESERVED_NAMES:
        raise InvalidInput(f"{what} {value!r} is reserved", code="reserved_name", details={"field": what})
    return value


async def ensure_name_free(tx: Transaction, namespace: str, email: str | None = None) -> None:
    if email and await tx.fetch_value("SELECT 1 FROM users WHERE email = ?", (email,)):
        raise Conflict("an account with this email already exists", code="email_taken")
    if await tx.fetch_value("SELECT 1 FROM namespaces WHERE name = ?", (namespace,)):
        raise Conflict(f"the name {namespace!r} is taken", code="name_taken")


class Users:
    def __init__(self, db: Database, settings: AccountSettings):
        self.db = db
        self.login_by_ip = RateLimiter(settings.login_attempts_per_ip_per_minute)
        self.login_failures = FailureDelays(settings.login_failures_before_delay, settings.login_max_delay_seconds)
        self.hash_slots = asyncio.Semaphore(CONCURRENT_HASHES)

    async def _hashing(self, function, *args):
        """Run a password hash off the event loop, a bounded number at a time."""
        async with self.hash_slots:
            return await asyncio.to_thread(function, *args)

    async def create_user(self, email: str, username: str, password: str | None, *, display_name: str = "",
                          is_admin: bool = False, actor: Actor = audit.SYSTEM) -> User:
        email = (email or "").strip()
        if not EMAIL.match(email):
            raise InvalidInput("a valid email address is required", code="invalid_email", details={"field": "email"})
        check_slug(username, "username")
        if password is not None and (problem := password_problem(password)):
            raise InvalidInput(problem, code="weak_password", details={"field": "password"})
        display_name = (display_name or username).strip()[:100]
        # Hashed before the write lock is taken: other writers need not wait for it.
        password_hash = await self._hashing(hash_password, password) if password is not None else None
        async with self.db.write() as tx:
            await ensure_name_free(tx, username, email)
            now = time.time()
            user_id = await tx.insert("users", {
                "email": email, "username": username, "display_name": display_name,
                "password_hash": password_hash, "is_admin": int(is_admin), "created_at": now,
            })
            await tx.insert("namespaces", {"name": username, "user_id": user_id})
            await audit.record(tx, actor, "user.create", target=username, details={"admin": is_admin})
        return await self.get_user(user_id)

    async def get_user(self, user_id: int) -> User:
        row = await self.db.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))
        if row is None:
            raise NotFound("no such user")
        return user_from_row(row)

    async def find_user(self, username: str) -> User:
        row = await self.db.fetch_one("SELECT * FROM users WHERE username = ?", (username,))
        if row is None:
            raise NotFound(f"no user named {username!r}")
        return user_from_row(row)

    async def list_users(self, limit: int = 100, after_id: int = 0) -> list[User]:
        rows = await self.db.fetch_all("SELECT * FROM users WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
        return [user_from_row(row) for row in rows]

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
        # An address of an SSO-only domain is turned away before its password is looked at; one typed as a user
        # name only after the password was right (so the refusal tells a guesser nothing about the account).
        await self._refuse_sso_only(login, ip)
        row = await self.db.fetch_one(
            "SELECT * FROM users WHERE (email = ? OR username = ?) AND is_disabled = 0", (login, login.lower()))
        if not await self._hashing(verify_password, row["password_hash"] if row else None, password or ""):
            self.login_failures.failed(failures_key)
            async with self.db.write() as tx:  # AU-2: failed sign-ins are audited (site chain), name as typed
                await audit.record(tx, Actor(row["id"] if row else None, row["username"] if row else "anonymous", ip),
                                   "user.login", target=login[:200], outcome="failure", reason="bad_credentials")
            raise Unauthenticated("wrong email or password", code="bad_credentials")
        self.login_failures.succeeded(failures_key)
        await self._refuse_sso_only(row["email"], ip)
        async with self.db.write() as tx:
            await audit.record(tx, Actor(row["id"], row["username"], ip), "user.login", target=row["username"])
        return user_from_row(row)

    async def _refuse_sso_only(self, email: str, ip: str) -> None:
        if (org := await sso_org_for(self.db, email)) is not None:
            async with self.db.write() as tx:
                await audit.record(tx, Actor(None, "anonymous", ip), "user.login", target=email[:200],
                                   org_id=org.id, outcome="failure", reason="sso_required")
            raise sso_required(org)

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
        return Principal(user_from_row(rows[0]), scopes, {r["org_id"]: r["role"] for r in orgs},
                         {r["org_id"]: r["slug"] for r in orgs}, token_org_id, via, expires_at)


async def free_username(tx: Transaction, user_name: str) -> str:
    """An appliance username (a namespace slug) for an identity provider's user name or e-mail: its local part,
    made a slug, with a number added while it is taken."""
    stem = re.sub(r"[^a-z0-9]+", "-", user_name.split("@")[0].lower()).strip("-")[:32].strip("-") or "user"
    candidate, n = stem, 1
    while candidate in RESERVED_NAMES or await tx.fetch_value("SELECT 1 FROM namespaces WHERE name = ?",
                                                              (candidate,)):
        n += 1
        candidate = f"{stem}-{n}"
    return candidate
