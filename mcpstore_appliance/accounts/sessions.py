"""Web sessions: a random cookie value (stored as its hash) and a CSRF token per session."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from ..config import AccountSettings
from ..db import Database
from .credentials import CallerCache, secret_hash
from .models import SESSION_SCOPES, Principal, User
from .users import Users


@dataclass(frozen=True)
class _CachedSession:
    principal: Principal
    expires_at: float
    csrf_token: str


class Sessions:
    def __init__(self, db: Database, settings: AccountSettings, users: Users, callers: CallerCache):
        self.db = db
        self.settings = settings
        self.users = users
        self.callers = callers

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
        stamp = self.callers.stamp()
        cached = self.callers.get(("session", digest), stamp)
        if cached is not None:
            return None if cached.expires_at < now else (cached.principal, cached.csrf_token)
        row = await self.db.fetch_one(
            "SELECT s.*, u.is_disabled FROM web_sessions s JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (digest,))
        if row is None or row["expires_at"] < now or row["is_disabled"]:
            return None
        principal = await self.users.principal_for_user(row["user_id"], SESSION_SCOPES, None, "session")
        self.callers.put(("session", digest), stamp, _CachedSession(principal, row["expires_at"], row["csrf_token"]))
        return principal, row["csrf_token"]

    async def end_session(self, session_id: str) -> None:
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM web_sessions WHERE id_hash = ?", (secret_hash(session_id),))
