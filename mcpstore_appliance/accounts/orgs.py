"""Organizations, their members and roles. An org a caller does not belong to answers exactly like a missing
one, so org names do not leak."""

from __future__ import annotations

import time
from typing import Any

from .. import audit
from ..audit import Actor
from ..db import Database, Transaction
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from .credentials import CallerCache
from .models import ROLES, ROLES_THAT_MANAGE_MEMBERS, Member, Org, Principal, User
from .users import Users, check_slug, ensure_name_free


def org_from_row(row: dict[str, Any]) -> Org:
    return Org(row["id"], row["slug"], row["name"], row["created_at"])


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {list(ROLES)}", details={"field": "role"})


def require_manager(actor: Principal, org: Org) -> None:
    if actor.is_admin:
        return
    role = actor.role_in(org.id)
    if role is None:
        raise NotFound(f"no organization named {org.slug!r}")
    if role not in ROLES_THAT_MANAGE_MEMBERS:
        raise Forbidden("only owners and admins of this organization manage its members")


def _actor(principal: Principal | None) -> Actor:
    return Actor(principal.id, principal.user.username) if principal else audit.SYSTEM


class Orgs:
    def __init__(self, db: Database, users: Users, callers: CallerCache):
        self.db = db
        self.users = users
        self.callers = callers

    async def create_org(self, actor: Principal | None, slug: str, name: str, *, owner: User | None = None) -> Org:
        if actor is not None and actor.token_org_id is not None:
            raise Forbidden("a token bound to an organization cannot create organizations", code="org_bound_token")
        check_slug(slug, "slug")
        name = (name or slug).strip()[:100]
        owner = owner or (actor.user if actor else None)
        async with self.db.write() as tx:
            await ensure_name_free(tx, slug)
            now = time.time()
            org_id = await tx.insert("orgs", {"slug": slug, "name": name, "created_at": now})
            await tx.insert("namespaces", {"name": slug, "org_id": org_id})
            if owner is not None:
                await tx.insert("memberships", {"org_id": org_id, "user_id": owner.id, "role": "owner",
                                                "created_at": now})
            await audit.record(tx, _actor(actor), "org.create", org_id=org_id, target=slug)
        return await self.get_org(slug)

    async def get_org(self, slug: str) -> Org:
        row = await self.db.fetch_one("SELECT * FROM orgs WHERE slug = ?", (slug,))
        if row is None:
            raise NotFound(f"no organization named {slug!r}")
        return org_from_row(row)

    async def visible_org(self, principal: Principal | None, slug: str) -> Org:
        """An org the principal belongs to; a foreign org answers exactly like a missing one."""
        row = await self.db.fetch_one("SELECT * FROM orgs WHERE slug = ?", (slug,))
        if row is None or principal is None or (principal.role_in(row["id"]) is None and not principal.is_admin):
            raise NotFound(f"no organization named {slug!r}")
        return org_from_row(row)

    async def orgs_of(self, principal: Principal) -> list[tuple[Org, str]]:
        """The caller's organizations with their role in each, by slug (cached like the callers themselves);
        through an org-bound token, only that org."""
        stamp = self.callers.stamp()
        found = self.callers.get(("orgs", principal.id), stamp)
        if found is None:
            rows = await self.db.fetch_all(
                "SELECT o.*, m.role FROM memberships m JOIN orgs o ON o.id = m.org_id WHERE m.user_id = ?"
                " ORDER BY o.slug", (principal.id,))
            found = tuple((org_from_row(row), row["role"]) for row in rows)
            self.callers.put(("orgs", principal.id), stamp, found)
        return [(org, role) for org, role in found if principal.token_org_id in (None, org.id)]

    async def members(self, principal: Principal | None, slug: str) -> list[Member]:
        org = await self.visible_org(principal, slug)
        rows = await self.db.fetch_all(
            "SELECT u.username, u.display_name, m.role FROM memberships m JOIN users u ON u.id = m.user_id"
            " WHERE m.org_id = ? ORDER BY u.username", (org.id,))
        return [Member(r["username"], r["display_name"], r["role"]) for r in rows]

    async def set_member(self, actor: Principal | None, slug: str, username: str, role: str) -> Member:
        """Add a member or change a member's role (operators pass actor=None)."""
        check_role(role)
        org = await (self.get_org(slug) if actor is None else self.visible_org(actor, slug))
        if actor is not None:
            require_manager(actor, org)
            if role == "owner" and actor.role_in(org.id) != "owner" and not actor.is_admin:
                raise Forbidden("only owners can make someone an owner")
        user = await self.users.find_user(username)
        async with self.db.write() as tx:
            current = await tx.fetch_value("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                                           (org.id, user.id))
            if current == "owner" and role != "owner":
                await _keep_an_owner(tx, org)
                if actor is not None and actor.role_in(org.id) != "owner" and not actor.is_admin:
                    raise Forbidden("only owners can change an owner's role")
            await tx.execute(
                "INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
                (org.id, user.id, role, time.time()))
            await audit.record(tx, _actor(actor), "org.member.set", org_id=org.id, target=username,
                               details={"role": role, "previous": current})
        return Member(user.username, user.display_name, role)

    async def remove_member(self, actor: Principal, slug: str, username: str) -> None:
        org = await self.visible_org(actor, slug)
        user = await self.users.find_user(username)
        if user.id != actor.id:
            require_manager(actor, org)
        async with self.db.write() as tx:
            current = await tx.fetch_value("SELECT role FROM memberships WHERE org_id = ? AND user_id = ?",
                                           (org.id, user.id))
            if current is None:
                raise NotFound(f"{username} is not a member of {slug}")
            if current == "owner":
                await _keep_an_owner(tx, org)
                if actor.role_in(org.id) != "owner" and not actor.is_admin:
                    raise Forbidden("only owners can remove an owner")
            await tx.execute("DELETE FROM memberships WHERE org_id = ? AND user_id = ?", (org.id, user.id))
            await audit.record(tx, _actor(actor), "org.member.remove", org_id=org.id, target=username)


async def _keep_an_owner(tx: Transaction, org: Org) -> None:
    owners = await tx.fetch_value("SELECT count(*) FROM memberships WHERE org_id = ? AND role = 'owner'",
                                  (org.id,))
    if owners <= 1:
        raise Conflict("an organization must keep at least one owner", code="last_owner")
