"""E-mail domains an org proves it owns, and whether their people must use single sign-on.

An org claims a domain and gets a token; it proves ownership by publishing the token as the TXT record
`_mcpstore-challenge.<domain>` or as the file `https://<domain>/.well-known/mcpstore-domain-verification.txt`.
Several orgs may claim a domain, only one may prove it. Once proven with "require SSO" on, the domain's
people cannot sign in or sign up with a password: accounts/users.py and accounts/invites.py ask
accounts/sso_required.py.
"""

from __future__ import annotations

import hmac
import re
import secrets
import ssl
import time
from dataclasses import dataclass
from typing import Any

from .. import audit
from ..audit import Actor
from ..db import Database
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import Org, Principal
from .domain_checks import DNS_PREFIX, WELL_KNOWN, https_lines, txt_values
from .orgs import Orgs, require_manager
from .sso_required import email_domain

LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class DomainClaim:
    domain: str
    token: str
    verified: bool
    method: str | None
    require_sso: bool

    def public(self) -> dict[str, Any]:
        return {"domain": self.domain, "verified": self.verified, "method": self.method,
                "require_sso": self.require_sso, "dns_record": {"name": DNS_PREFIX + self.domain, "type": "TXT",
                                                                "value": self.token},
                "https_file": {"url": f"https://{self.domain}{WELL_KNOWN}", "content": self.token}}


def check_domain(value: Any) -> str:
    text = value.strip().lower().rstrip(".") if isinstance(value, str) else ""
    try:
        text = text.encode("idna").decode("ascii") if text and not text.isascii() else text
    except UnicodeError:
        text = ""
    labels = text.split(".")
    if not 3 < len(text) <= 253 or len(labels) < 2 or not all(LABEL.match(x) for x in labels) \
            or labels[-1].isdigit():
        raise InvalidInput("domain must be a DNS name such as example.com", code="invalid_domain",
                           details={"field": "domain"})
    return text


class Domains:
    """`resolver`: "host:port" of the DNS server asked for TXT records ("" = the system's); `https_port` and
    `ssl_context` are for the .well-known check (tests point them at a local TLS server)."""

    def __init__(self, db: Database, orgs: Orgs, *, resolver: str = "", https_port: int = 443,
                 ssl_context: ssl.SSLContext | None = None, timeout_seconds: float = 10.0):
        self.db, self.orgs = db, orgs
        self.resolver, self.https_port, self.ssl_context = resolver, https_port, ssl_context
        self.timeout = timeout_seconds

    async def _managed(self, actor: Principal, slug: str) -> Org:
        org = await self.orgs.visible_org(actor, slug)
        require_manager(actor, org)
        return org

    async def list(self, actor: Principal, slug: str) -> list[DomainClaim]:
        org = await self._managed(actor, slug)
        rows = await self.db.fetch_all("SELECT * FROM org_domains WHERE org_id = ? ORDER BY domain", (org.id,))
        return [_claim(r) for r in rows]

    async def claim(self, actor: Principal, slug: str, domain: Any) -> DomainClaim:
        org, domain = await self._managed(actor, slug), check_domain(domain)
        async with self.db.write() as tx:
            if await tx.fetch_value("SELECT 1 FROM org_domains WHERE org_id = ? AND domain = ?", (org.id, domain)):
                raise Conflict(f"{domain} is already claimed by this organization", code="domain_claimed")
            if await tx.fetch_value("SELECT count(*) FROM org_domains WHERE org_id = ?", (org.id,)) >= 50:
                raise InvalidInput("an organization claims at most 50 domains", code="too_many_domains")
            await tx.insert("org_domains", {"org_id": org.id, "domain": domain, "created_at": time.time(),
                                            "token": "mcpstore-verify=" + secrets.token_urlsafe(24)})
            await audit.record(tx, _actor(actor), "sso.domain.claim", org_id=org.id, target=domain)
        return await self._get(org, domain)

    async def _get(self, org: Org, domain: str) -> DomainClaim:
        row = await self.db.fetch_one("SELECT * FROM org_domains WHERE org_id = ? AND domain = ?", (org.id, domain))
        if row is None:
            raise NotFound(f"{domain} is not claimed by this organization")
        return _claim(row)

    async def set_require_sso(self, actor: Principal, slug: str, domain: Any, require: bool) -> DomainClaim:
        org, domain = await self._managed(actor, slug), check_domain(domain)
        claim = await self._get(org, domain)
        if require and not claim.verified:
            raise Conflict("prove the domain first: SSO can be required only for a verified domain",
                           code="domain_not_verified")
        async with self.db.write() as tx:
            await tx.execute("UPDATE org_domains SET require_sso = ? WHERE org_id = ? AND domain = ?",
                             (int(require), org.id, domain))
            await audit.record(tx, _actor(actor), "sso.domain.require", org_id=org.id, target=domain,
                               details={"require_sso": require})
        return await self._get(org, domain)

    async def verify(self, actor: Principal, slug: str, domain: Any, method: str) -> DomainClaim:
        org, domain = await self._managed(actor, slug), check_domain(domain)
        claim = await self._get(org, domain)
        if method not in ("dns", "https"):
            raise InvalidInput("method must be dns or https", details={"field": "method"})
        found = await (txt_values(domain, self.resolver, self.timeout) if method == "dns" else
                       https_lines(domain, self.https_port, self.ssl_context, self.resolver, self.timeout))
        proven = any(hmac.compare_digest(v.encode(), claim.token.encode()) for v in found)
        async with self.db.write() as tx:
            if proven:
                owner = await tx.fetch_value("SELECT org_id FROM org_domains WHERE domain = ? AND verified_at IS NOT"
                                             " NULL AND org_id != ?", (domain, org.id))
                if owner is not None:
                    raise Conflict(f"{domain} is already verified by another organization", code="domain_taken")
                await tx.execute("UPDATE org_domains SET verified_at = ?, method = ? WHERE org_id = ? AND domain = ?",
                                 (time.time(), method, org.id, domain))
            await audit.record(tx, _actor(actor), "sso.domain.verify", org_id=org.id, target=domain,
                               outcome="success" if proven else "failure",
                               reason=None if proven else "token_not_found", details={"method": method})
        if not proven:
            where = DNS_PREFIX + domain if method == "dns" else f"https://{domain}{WELL_KNOWN}"
            raise Forbidden(f"the verification token was not found at {where}", code="domain_not_proven")
        return await self._get(org, domain)

    async def verified_org_for(self, email: str) -> Org | None:
        """The org that proved this e-mail address's domain (SSO required or not)."""
        row = await self.db.fetch_one(
            "SELECT o.* FROM org_domains d JOIN orgs o ON o.id = d.org_id WHERE d.domain = ?"
            " AND d.verified_at IS NOT NULL", (email_domain(email),))
        return Org(row["id"], row["slug"], row["name"], row["created_at"]) if row else None


def _claim(row: dict[str, Any]) -> DomainClaim:
    return DomainClaim(row["domain"], row["token"], row["verified_at"] is not None, row["method"],
                       bool(row["require_sso"]))


def _actor(principal: Principal) -> Actor:
    return Actor(principal.id, principal.user.username)
