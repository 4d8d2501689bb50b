"""Which org role an identity provider's groups give: one mapping per org, shared by SCIM group membership
(scim/service.py), SAML sign-in (accounts/saml.py) and any other single sign-on.

A group named after a role (admin, publisher, auditor, member; case-insensitive) gives that role unless the org
maps that name otherwise; an org admin maps any other group name (an Entra ID or Okta group's display name) to a
role. A user in several mapped groups gets the highest role, one in none is a `member`. `owner` is never given by
an IdP: owners stay a decision of the org's owners.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .. import audit
from ..audit import Actor
from ..db import Database, Transaction
from ..errors import InvalidInput
from .models import Org

ROLE_RANK = ("member", "auditor", "publisher", "admin")  # lowest first
MAX_ENTRIES = 200
MAX_NAME = 256


def check_mapping(mapping: object) -> dict[str, str]:
    """A mapping {group name: role} as an admin sends it, checked (names unique regardless of case)."""
    if not isinstance(mapping, Mapping) or len(mapping) > MAX_ENTRIES:
        raise InvalidInput(f"the mapping is an object of at most {MAX_ENTRIES} group names to roles",
                           code="invalid_mapping", details={"field": "mappings"})
    checked: dict[str, str] = {}
    for name, role in mapping.items():
        clean = name.strip() if isinstance(name, str) else ""
        if not clean or len(clean) > MAX_NAME or not clean.isprintable():
            raise InvalidInput(f"a group name is 1-{MAX_NAME} printable characters", code="invalid_mapping",
                               details={"field": "mappings", "group": str(name)[:MAX_NAME]})
        if role not in ROLE_RANK:
            raise InvalidInput(f"group {clean!r}: the role must be one of {list(ROLE_RANK)} (owners are never "
                               "given by an identity provider)", code="invalid_mapping",
                               details={"field": "mappings", "group": clean})
        if clean.lower() in (known.lower() for known in checked):
            raise InvalidInput(f"group {clean!r} is named twice", code="invalid_mapping",
                               details={"field": "mappings", "group": clean})
        checked[clean] = role
    return checked


async def mapping_of(q, org_id: int) -> dict[str, str]:
    rows = await q.fetch_all("SELECT group_name, role FROM sso_group_roles WHERE org_id = ? ORDER BY group_name",
                             (org_id,))
    return {row["group_name"]: row["role"] for row in rows}


async def role_for_groups(q, org_id: int, groups: Iterable[str]) -> str:
    """The highest role the groups give in the org (`member` when none gives one)."""
    mapped = {name.lower(): role for name, role in (await mapping_of(q, org_id)).items()}
    roles = [mapped.get(g.lower(), g.lower() if g.lower() in ROLE_RANK else "member") for g in groups]
    return max(roles, key=ROLE_RANK.index, default="member")


class GroupRoles:
    """The org admin's side: read and replace the org's mapping (audited)."""

    def __init__(self, db: Database):
        self.db = db

    async def get(self, org: Org) -> dict[str, str]:
        async with self.db.read() as q:
            return await mapping_of(q, org.id)

    async def replace(self, actor: Actor, org: Org, mapping: object) -> dict[str, str]:
        checked = check_mapping(mapping)
        async with self.db.write() as tx:
            before = await mapping_of(tx, org.id)
            await tx.execute("DELETE FROM sso_group_roles WHERE org_id = ?", (org.id,))
            await tx.execute_many("INSERT INTO sso_group_roles (org_id, group_name, role) VALUES (?, ?, ?)",
                                  [(org.id, name, role) for name, role in checked.items()])
            await _resync_scim_roles(tx, org.id)
            await audit.record(tx, actor, "org.group_roles.set", org_id=org.id, target=org.slug,
                               details={"before": before, "after": checked})
        return await self.get(org)


async def write_role(tx: Transaction, org_id: int, user_id: int, role: str) -> None:
    """Set a member's role from their groups; owners are left alone."""
    await tx.execute("UPDATE memberships SET role = ? WHERE org_id = ? AND user_id = ? AND role != 'owner'",
                     (role, org_id, user_id))


async def _resync_scim_roles(tx: Transaction, org_id: int) -> None:
    """SCIM users' roles follow a changed mapping at once (SSO users' at their next sign-in)."""
    rows = await tx.fetch_all(
        "SELECT s.user_id, g.display_name FROM scim_users s LEFT JOIN scim_group_members m ON m.scim_user_id = s.id"
        " LEFT JOIN scim_groups g ON g.id = m.group_id WHERE s.org_id = ?", (org_id,))
    groups: dict[int, list[str]] = {}
    for row in rows:
        groups.setdefault(row["user_id"], []).extend([row["display_name"]] if row["display_name"] else [])
    for user_id, names in groups.items():
        await write_role(tx, org_id, user_id, await role_for_groups(tx, org_id, names))
