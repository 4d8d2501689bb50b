"""Whether an e-mail address must sign in through its org's SSO: its domain is proven by an org that requires it
(accounts/domains.py manages the claims). Password sign-in and sign-up ask here before anything else."""

from __future__ import annotations

from ..db import Database
from ..errors import Forbidden
from .models import Org


def email_domain(email: str) -> str:
    return email.rpartition("@")[2].strip().lower().rstrip(".")


async def sso_org_for(db: Database, email: str) -> Org | None:
    """The org whose verified domain requires SSO for this e-mail address, if any."""
    if "@" not in (email or ""):
        return None
    row = await db.fetch_one(
        "SELECT o.* FROM org_domains d JOIN orgs o ON o.id = d.org_id WHERE d.domain = ?"
        " AND d.verified_at IS NOT NULL AND d.require_sso = 1", (email_domain(email),))
    return Org(row["id"], row["slug"], row["name"], row["created_at"]) if row else None


def sso_required(org: Org) -> Forbidden:
    return Forbidden(f"addresses of this e-mail domain sign in through {org.name}'s single sign-on: use "
                     "\"Sign in with SSO\" on the login page", code="sso_required", details={"org": org.slug})


async def refuse_passwords_for(db: Database, email: str) -> None:
    """Forbidden (sso_required) when this address may not use a password."""
    if (org := await sso_org_for(db, email)) is not None:
        raise sso_required(org)
