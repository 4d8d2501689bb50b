"""OIDC sign-in (authorization code + PKCE S256) for an org's IdP or the site-wide provider.

`start` makes the authorization request: fresh `state`, `nonce` and PKCE verifier kept in `oidc_logins` with
the hash of a random cookie given to the browser, so the callback is accepted only from the browser that began
it, once, within a few minutes. `finish` takes that row (deleting it whatever happens next: a replayed state
finds nothing), exchanges the code, checks the ID token (oidc/idtoken.py) and signs the person in through
oidc/people.py (just-in-time account, org role from the IdP's groups). Every outcome is an audit event.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from .. import audit
from ..accounts.credentials import secret_hash
from ..accounts.domains import Domains
from ..accounts.models import Org, Principal, User
from ..accounts.orgs import Orgs, require_manager
from ..audit import Actor
from ..db import Database
from ..errors import Forbidden, InvalidInput, NotFound, Unauthenticated
from .configs import OidcConfig, SealedSecrets, check_body, from_row, to_row
from .idtoken import IdTokenError, verify_id_token
from .people import People
from .provider import ProviderClient

LOGIN_SECONDS = 600  # how long a started sign-in may take at the IdP
USERINFO_CLAIMS = ("email", "email_verified", "name", "groups")  # asked of UserInfo when the ID token lacks them


class SsoFailed(Unauthenticated):
    """A sign-in through the IdP that did not work; the message says why in words the person can act on."""

    def __init__(self, message: str, reason: str):
        super().__init__(message, code="sso_failed", details={"reason": reason})


def with_userinfo(claims: dict[str, Any], userinfo: dict[str, Any]) -> dict[str, Any]:
    """The ID token's claims completed from UserInfo, which must be about the same subject (OIDC Core §5.3.2);
    what the signed ID token says is never overridden."""
    if not userinfo:
        return claims
    if userinfo.get("sub") != claims["sub"]:
        raise IdTokenError("userinfo", "the UserInfo answer is about another subject")
    return {**{k: userinfo[k] for k in USERINFO_CLAIMS if k in userinfo}, **claims}


def pkce_challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


class OidcService:
    def __init__(self, db: Database, orgs: Orgs, domains: Domains, people: People, provider: ProviderClient,
                 secrets_box: SealedSecrets, base_url: str, site: OidcConfig | None = None, site_label: str = ""):
        self.db, self.orgs, self.domains, self.people = db, orgs, domains, people
        self.provider, self.secrets_box = provider, secrets_box
        self.redirect_uri = base_url + "/sso/callback"
        self.site, self.site_label = site, site_label

    # ---- configuration (org owners and admins) ----------------------------------------------------------

    async def _managed_org(self, actor: Principal, slug: str) -> Org:
        org = await self.orgs.visible_org(actor, slug)
        require_manager(actor, org)
        return org

    async def org_config(self, org_id: int) -> OidcConfig | None:
        row = await self.db.fetch_one("SELECT * FROM oidc_configs WHERE org_id = ?", (org_id,))
        return from_row(row, self.secrets_box) if row else None

    async def get_config(self, actor: Principal, slug: str) -> dict[str, Any] | None:
        config = await self.org_config((await self._managed_org(actor, slug)).id)
        return config.public() if config else None

    async def set_config(self, actor: Principal, slug: str, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise InvalidInput("the body must be a JSON object")
        org = await self._managed_org(actor, slug)
        config = check_body(body, await self.org_config(org.id), org.id)
        if "owner" in config.group_roles.values() and actor.role_in(org.id) != "owner" and not actor.is_admin:
            raise Forbidden("only owners can map a group to the owner role")
        row = to_row(config, self.secrets_box)
        async with self.db.write() as tx:
            columns = ", ".join(row)
            updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "org_id")
            await tx.execute(f"INSERT INTO oidc_configs ({columns}) VALUES ({', '.join('?' * len(row))})"
                             f" ON CONFLICT (org_id) DO UPDATE SET {updates}", tuple(row.values()))
            details = {k: v for k, v in config.public().items() if k != "group_roles"}
            await audit.record(tx, Actor(actor.id, actor.user.username), "sso.config.update", org_id=org.id,
                               target=slug, details={**details, "groups_mapped": len(config.group_roles)})
        return config.public()

    # ---- which provider a person signs in with ------------------------------------------------------------

    async def org_for_login(self, text: str) -> Org:
        """The org whose SSO a person named: its slug, or an e-mail address of a domain it has proven."""
        text = (text or "").strip()[:320]
        org = await self.domains.verified_org_for(text) if "@" in text else None
        if org is None and "@" not in text:
            try:
                org = await self.orgs.get_org(text.lower())
            except NotFound:
                org = None
        config = await self.org_config(org.id) if org else None
        if config is None or not config.enabled:
            raise NotFound("no single sign-on is set up for that organization or e-mail domain", code="no_sso")
        return org

    # ---- the flow ------------------------------------------------------------------------------------------

    async def start(self, org: Org | None, next_path: str) -> tuple[str, str]:
        """(the IdP's authorization URL to send the browser to, the browser-binding cookie value)."""
        config = self.site if org is None else await self.org_config(org.id)
        if config is None or not config.enabled:
            raise NotFound("single sign-on is not set up here", code="no_sso")
        try:
            info = await self.provider.discover(config.issuer)
        except IdTokenError as exc:
            raise SsoFailed(str(exc), exc.reason) from None
        state, nonce, verifier, browser = (secrets.token_urlsafe(32) for _ in range(4))
        now = time.time()
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM oidc_logins WHERE expires_at < ?", (now,))
            await tx.insert("oidc_logins", {"state_hash": secret_hash(state), "browser_hash": secret_hash(browser),
                                            "org_id": org.id if org else None, "nonce": nonce, "verifier": verifier,
                                            "next_path": next_path, "expires_at": now + LOGIN_SECONDS})
        query = {"response_type": "code", "client_id": config.client_id, "redirect_uri": self.redirect_uri,
                 "scope": "openid email profile", "state": state, "nonce": nonce,
                 "code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
        separator = "&" if "?" in info.authorization_endpoint else "?"
        return info.authorization_endpoint + separator + urlencode(query), browser

    async def _take_login(self, state: str, browser: str) -> dict[str, Any]:
        """The pending sign-in of this state, deleted as it is read (single use), if this browser began it."""
        if not state or len(state) > 200:
            raise SsoFailed("the sign-in answer carries no valid state; start again", "bad_state")
        async with self.db.write() as tx:
            row = await tx.fetch_one("DELETE FROM oidc_logins WHERE state_hash = ? RETURNING *", (secret_hash(state),))
        if row is None or row["expires_at"] < time.time():
            raise SsoFailed("this sign-in is unknown, used or expired; start again", "bad_state")
        if not browser or not secrets.compare_digest(row["browser_hash"], secret_hash(browser)):
            raise SsoFailed("this sign-in was started in another browser; start again", "bad_state")
        return row

    async def finish(self, query: dict[str, str], browser: str, ip: str | None) -> tuple[User, str]:
        """The callback: (the signed-in user, where to go next), or SsoFailed (audited)."""
        org_id = None
        try:
            login = await self._take_login(query.get("state", ""), browser)
            org_id = login["org_id"]
            config = self.site if org_id is None else await self.org_config(org_id)
            if config is None or not config.enabled:
                raise SsoFailed("single sign-on is no longer set up for this organization", "no_sso")
            claims = await self._claims(config, login, query)
            user = await self.people.sign_in(config, claims, ip)
        except SsoFailed as exc:
            await self._audit_failure(org_id, exc.details["reason"], ip)
            raise
        return user, login["next_path"]

    async def _claims(self, config: OidcConfig, login: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        if "error" in query:
            raise SsoFailed(f"the identity provider refused: {query['error'][:60]}", "idp_error")
        try:
            info = await self.provider.discover(config.issuer)
            # RFC 9207: a provider that names itself in the answer must name the one we asked (mix-up defence).
            if "iss" in query and query["iss"] != info.issuer:
                raise IdTokenError("wrong_issuer", "the answer comes from another identity provider")
            code = query.get("code", "")
            if not code or len(code) > 2000:
                raise IdTokenError("no_code", "the identity provider sent no authorization code")
            tokens = await self.provider.exchange(info, code=code, redirect_uri=self.redirect_uri,
                                                  verifier=login["verifier"], client_id=config.client_id,
                                                  client_secret=config.client_secret)
            claims = await verify_id_token(tokens.get("id_token"), jwks=self.provider.jwks(info),
                                           issuer=info.issuer, client_id=config.client_id,
                                           algorithms=config.algorithms, nonce=login["nonce"])
            if any(name not in claims for name in USERINFO_CLAIMS):
                claims = with_userinfo(claims, await self.provider.userinfo(info, tokens.get("access_token")))
            return claims
        except IdTokenError as exc:
            raise SsoFailed(str(exc), exc.reason) from None

    async def _audit_failure(self, org_id: int | None, reason: str, ip: str | None) -> None:
        async with self.db.write() as tx:
            await audit.record(tx, Actor(None, "anonymous", ip), "sso.login", org_id=org_id, outcome="failure",
                               reason=reason, details={"provider": "org" if org_id else "site"})
