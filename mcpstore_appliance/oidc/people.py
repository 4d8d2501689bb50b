"""Who a checked ID token signs in: the account linked to its (issuer, sub), or a new one made just in time from
a verified e-mail address; for an org's IdP, a membership whose role follows the IdP's groups at every sign-in.

An existing password account is linked by e-mail only when the org signing it in has proven the address's
domain: otherwise any IdP that lets users pick their own e-mail could take over another person's account. For
the same reason the addresses of a proven domain are taken from that org's IdP only.
"""

from __future__ import annotations

import re
import secrets
import time
from typing import Any

from .. import audit
from ..accounts.domains import Domains
from ..accounts.models import User
from ..accounts.users import EMAIL, RESERVED_NAMES, Users, user_from_row
from ..audit import Actor
from ..db import Database, Transaction
from .configs import OidcConfig, role_for_groups


def _failed(message: str, reason: str) -> Exception:
    from .service import SsoFailed  # the error type lives with the flow that raises it
    return SsoFailed(message, reason)


def username_base(email: str) -> str:
    """A namespace-safe user name from an e-mail's local part (a number is added when it is taken)."""
    base = re.sub(r"[^a-z0-9]+", "-", email.partition("@")[0].lower()).strip("-")[:30].strip("-")
    return base if base and base not in RESERVED_NAMES else "user"


class People:
    def __init__(self, db: Database, users: Users, domains: Domains):
        self.db, self.users, self.domains = db, users, domains

    async def sign_in(self, config: OidcConfig, claims: dict[str, Any], ip: str | None) -> User:
        email = claims.get("email")
        if not isinstance(email, str) or not EMAIL.match(email) or claims.get("email_verified") is not True:
            raise _failed("the identity provider did not send a verified e-mail address", "email_not_verified")
        owner = await self.domains.verified_org_for(email)
        if owner is not None and owner.id != config.org_id:
            # A proven domain's addresses are vouched for by its org's IdP alone: another IdP could otherwise
            # take (or squat) its people's accounts.
            raise _failed(f"addresses of this e-mail domain sign in through {owner.name}'s single sign-on",
                          "domain_owned")
        role = role_for_groups(config, claims.get("groups")) if config.org_id is not None else None
        if config.org_id is not None and role is None:
            raise _failed("your groups at the identity provider give you no role in this organization",
                          "no_role")
        user_id = await self._account(config, claims, email)
        async with self.db.write() as tx:
            row = await tx.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,))
            if row is None or row["is_disabled"]:
                raise _failed("this account is disabled", "account_disabled")
            if role is not None:
                await self._set_role(tx, config.org_id, user_id, role)
            await audit.record(tx, Actor(user_id, row["username"], ip), "sso.login", org_id=config.org_id,
                               target=row["username"], details={"issuer": config.issuer, "role": role})
        return user_from_row(row)

    async def _account(self, config: OidcConfig, claims: dict[str, Any], email: str) -> int:
        issuer, subject = config.issuer, claims["sub"]
        found = await self.db.fetch_value("SELECT user_id FROM oidc_identities WHERE issuer = ? AND subject = ?",
                                          (issuer, subject))
        if found is None:
            found = await self._link_or_create(config, claims, email)
        async with self.db.write() as tx:
            await tx.execute("UPDATE oidc_identities SET last_login = ? WHERE issuer = ? AND subject = ?",
                             (time.time(), issuer, subject))
        return found

    async def _link_or_create(self, config: OidcConfig, claims: dict[str, Any], email: str) -> int:
        existing = await self.db.fetch_value("SELECT id FROM users WHERE email = ?", (email,))
        if existing is not None:
            proven = await self.domains.verified_org_for(email) if config.org_id is not None else None
            if proven is None or proven.id != config.org_id:
                raise _failed("an account with this e-mail address exists already; sign in with it first, or ask "
                              "the organization to verify its e-mail domain", "email_taken")
            user_id = existing
        else:
            user_id = (await self._create(claims, email)).id
        async with self.db.write() as tx:
            now = time.time()
            await tx.execute("INSERT INTO oidc_identities (issuer, subject, user_id, created_at, last_login)"
                             " VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                             (config.issuer, claims["sub"], user_id, now, now))
        return user_id

    async def _create(self, claims: dict[str, Any], email: str) -> User:
        base, name = username_base(email), claims.get("name")
        display = name[:100] if isinstance(name, str) and name.strip() else ""
        for attempt in range(20):
            username = base if attempt == 0 else f"{base[:30]}-{secrets.randbelow(10**6)}"
            if await self.db.fetch_value("SELECT 1 FROM namespaces WHERE name = ?", (username,)):
                continue
            return await self.users.create_user(email, username, None, display_name=display,
                                                actor=Actor(None, "sso", None))
        raise _failed("no free user name could be found for this account", "no_username")

    async def _set_role(self, tx: Transaction, org_id: int, user_id: int, role: str) -> None:
        """The IdP's role, except that the org's last owner is never demoted by a sign-in."""
        current = await tx.fetch_value("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                                       (org_id, user_id))
        if current == role:
            return
        if current == "owner" and await tx.fetch_value(
                "SELECT count(*) FROM memberships WHERE org_id = ? AND role = 'owner'", (org_id,)) <= 1:
            return
        await tx.execute("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                         (org_id, user_id, role, time.time()))
        await audit.record(tx, Actor(None, "sso"), "org.member.set", org_id=org_id, target=str(user_id),
                           details={"role": role, "previous": current, "via": "oidc"})
