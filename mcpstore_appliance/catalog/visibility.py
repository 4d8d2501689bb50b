"""The one visibility rule of the catalog (DESIGN invariant 5). Every query that lists, counts or reads
packages adds `visible_clause(principal)`, so a private package never leaks into another org's search,
counts, registry API, ledger view or error messages.

- public: everyone, also anonymous callers;
- org: members of the owning org (any role); for a personal namespace it behaves like private;
- private: an org's owners, admins and publishers, or the owning user of a personal namespace;
- site administrators (with an admin-scoped credential) see everything;
- a token bound to one org sees only what concerns that org: public packages and that org's, never its
  holder's personal private packages (`Principal.acts_as_owner`).
"""

from __future__ import annotations

from ..accounts.models import ROLES_THAT_PUBLISH, Principal


def visible_clause(principal: Principal | None, alias: str = "p") -> tuple[str, list]:
    """SQL condition (with its parameters) true for the packages `principal` may see."""
    if principal is None:
        return f"{alias}.visibility = 'public'", []
    if principal.is_admin:
        return "1 = 1", []
    member_orgs = sorted(principal.member_org_ids())
    publisher_orgs = sorted(o for o in member_orgs if principal.memberships[o] in ROLES_THAT_PUBLISH)
    conditions = [f"{alias}.visibility = 'public'"]
    params: list = []
    if principal.acts_as_owner:
        conditions.append(f"{alias}.owner_user_id = ?")
        params.append(principal.id)
    if member_orgs:
        conditions.append(f"({alias}.visibility = 'org' AND {alias}.org_id IN ({', '.join('?' * len(member_orgs))}))")
        params += member_orgs
    if publisher_orgs:
        conditions.append(f"{alias}.org_id IN ({', '.join('?' * len(publisher_orgs))})")
        params += publisher_orgs
    return "(" + " OR ".join(conditions) + ")", params


def can_see(principal: Principal | None, package: dict) -> bool:
    """The same rule for one package row already in hand (keys: visibility, org_id, owner_user_id)."""
    if package["visibility"] == "public":
        return True
    if principal is None:
        return False
    if principal.is_admin or (principal.acts_as_owner and package["owner_user_id"] == principal.id):
        return True
    role = principal.role_in(package["org_id"])
    if role is None:
        return False
    return package["visibility"] == "org" or role in ROLES_THAT_PUBLISH


def can_manage(principal: Principal | None, package: dict) -> bool:
    """Publish new versions, yank, deprecate: the owning user, or an org's owners/admins/publishers."""
    if principal is None:
        return False
    if principal.is_admin:
        return True
    if package["org_id"] is None:
        return principal.acts_as_owner and package["owner_user_id"] == principal.id
    return principal.role_in(package["org_id"]) in ROLES_THAT_PUBLISH
