"""Just-in-time accounts for single sign-on: the one step every SSO protocol (SAML now, OIDC alike) takes after
it has verified who the identity provider says signed in.

An org's IdP signs in only as accounts that org's IdP created, by SSO (`sso_users`) or SCIM (`scim_users`), or
with an address of an e-mail domain the org has proven (accounts/domains.py); another existing account with the
same e-mail is refused, never taken over (the IdP of one org must not reach a user's other orgs or personal
packages). A proven domain's addresses come from its own org's IdP only, as with OIDC (oidc/people.py). A
disabled account (deprovisioned by SCIM) stays out.
The membership's role follows the org's group-to-role mapping (accounts/group_roles.py) at every sign-in;
owners keep their role.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from ..db import Transaction
from ..errors import Forbidden, InvalidInput
from .sso_required import email_domain
from .group_roles import role_for_groups, write_role
from .models import Org, User
from .users import EMAIL, free_username, user_from_row


async def provision_sso_user(tx: Transaction, org: Org, email: str, display_name: str, groups: Iterable[str],
                             *, protocol: str) -> User:
    """The account `email` signs in as (created when new), a member of `org` with the role its groups give.
    Raises Forbidden for an account the org's IdP may not sign in as; nothing is written then."""
    email = (email or "").strip()
    if not EMAIL.match(email) or len(email) > 320:
        raise InvalidInput("the identity provider sent no usable e-mail address", code="sso_no_email")
    domain_owner = await tx.fetch_value("SELECT org_id FROM org_domains WHERE domain = ? AND verified_at IS NOT NULL",
                                        (email_domain(email),))
    if domain_owner not in (None, org.id):
        raise Forbidden("addresses of this e-mail domain sign in through the single sign-on of the organization "
                        "that proved the domain", code="domain_owned")
    role = await role_for_groups(tx, org.id, groups)
    now = time.time()
    row = await tx.fetch_one("SELECT * FROM users WHERE email = ? COLLATE NOCASE", (email,))
    if row is None:
        user_id = await _create(tx, org, email, display_name, protocol, now)
    else:
        user_id = row["id"]
        await _check_managed(tx, org, row, proven=domain_owner == org.id)
        await tx.execute("UPDATE sso_users SET last_login_at = ? WHERE user_id = ?", (now, user_id))
    await tx.execute("INSERT INTO memberships (org_id, user_id, role, created_at) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT (org_id, user_id) DO NOTHING", (org.id, user_id, role, now))
    await write_role(tx, org.id, user_id, role)
    return user_from_row(await tx.fetch_one("SELECT * FROM users WHERE id = ?", (user_id,)))


async def _create(tx: Transaction, org: Org, email: str, display_name: str, protocol: str, now: float) -> int:
    username = await free_username(tx, email)
    user_id = await tx.insert("users", {"email": email, "username": username, "password_hash": None, "is_admin": 0,
                                        "display_name": (display_name or "").strip()[:100] or username,
                                        "created_at": now})
    await tx.insert("namespaces", {"name": username, "user_id": user_id})
    await tx.insert("sso_users", {"user_id": user_id, "org_id": org.id, "protocol": protocol, "created_at": now,
                                  "last_login_at": now})
    return user_id


async def _check_managed(tx: Transaction, org: Org, row: dict, *, proven: bool) -> None:
    managed = proven or await tx.fetch_value(
        "SELECT 1 FROM sso_users WHERE user_id = ? AND org_id = ?"
        " UNION ALL SELECT 1 FROM scim_users WHERE user_id = ? AND org_id = ?", (row["id"], org.id, row["id"], org.id))
    if not managed:
        raise Forbidden("an account with this e-mail address exists and was not created by this organization's "
                        "identity provider: sign in with its password", code="sso_account_exists")
    if row["is_disabled"]:
        raise Forbidden("this account is disabled", code="sso_account_disabled")
