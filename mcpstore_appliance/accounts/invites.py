"""Getting an account: sign-up as the settings allow it (open, by invitation, closed), invitations to the
registry or to an org, and the one-time setup link that makes the first visitor of an empty registry its
administrator."""

from __future__ import annotations

import secrets
import time
from typing import Any

from .. import audit
from ..audit import Actor
from ..config import AccountSettings
from ..db import Database
from ..errors import Forbidden
from .credentials import secret_hash
from .models import Principal, User
from .orgs import Orgs, check_role, require_manager
from .sso_required import refuse_passwords_for
from .users import Users


class Invites:
    def __init__(self, db: Database, settings: AccountSettings, users: Users, orgs: Orgs):
        self.db = db
        self.settings = settings
        self.users = users
        self.orgs = orgs

    async def signup(self, email: str, username: str, password: str, *, display_name: str = "",
                     invite_code: str | None = None, ip: str | None = None) -> User:
        if self.settings.signup == "closed":
            raise Forbidden("sign-up is closed on this registry; ask an administrator for an account",
                            code="signup_closed")
        await refuse_passwords_for(self.db, email or "")  # the domain's org wants its people to use its SSO
        invite = None
        if self.settings.signup == "invite":
            invite = await self._valid_invite(invite_code)
        user = await self.users.create_user(email, username, password, display_name=display_name,
                                            actor=Actor(None, "anonymous", ip))
        if invite is not None:
            await self._use_invite(invite, user)
        return user

    async def create_invite(self, actor: Principal, *, email: str | None = None, org_slug: str | None = None,
                            role: str = "member", days: int = 7) -> str:
        org = None
        if org_slug:
            org = await self.orgs.get_org(org_slug)
            require_manager(actor, org)
            check_role(role)
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
        if await self.users.user_count():
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
        if row is None or await self.users.user_count():
            raise Forbidden("this setup link is not valid any more", code="setup_used")
        user = await self.users.create_user(email, username, password, display_name=display_name, is_admin=True)
        async with self.db.write() as tx:
            await tx.execute("UPDATE setup_links SET used_at = ? WHERE code_hash = ?", (time.time(), row["code_hash"]))
        return user
