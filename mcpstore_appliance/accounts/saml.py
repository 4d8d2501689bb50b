"""SAML 2.0 sign-in per org, the appliance as service provider (python3-saml in strict mode).

SP-initiated only: `start_login` sends an AuthnRequest (HTTP-Redirect) and remembers its ID; the IdP posts its
Response to the org's ACS, and `finish_login` accepts it only when it answers a request of ours for that org that
has not expired (InResponseTo), posted by the browser that started it (a cookie, checked behind TLS, where it
can be SameSite=None: a sign-in someone else started cannot be planted in a victim's browser), and python3-saml's
strict checks pass: the schema, a signed assertion (SHA-1
refused) by the configured certificate, the issuer, Destination and Recipient (our ACS URL), the audience (our
entity id), NotBefore/NotOnOrAfter. An accepted assertion's ID is remembered until it expires, so the same
assertion is never accepted twice. Then the account is provisioned (accounts/sso_provision.py) in the same
transaction, and every outcome is audited as `sso.login`.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from .. import audit
from ..audit import Actor
from ..db import Database
from ..errors import DomainError, InvalidInput, NotFound, RateLimited, Unauthenticated
from .credentials import secret_hash
from .models import Org, User
from .ratelimit import RateLimiter, address_key
from .saml_config import IdpConfig, check_config, from_metadata, saml_settings, sp_urls
from .saml_library import onelogin
from .sso_provision import provision_sso_user

if TYPE_CHECKING:
    from onelogin.saml2.response import OneLogin_Saml2_Response
    from onelogin.saml2.settings import OneLogin_Saml2_Settings

REQUEST_TTL = 600  # seconds a user has at the IdP
MAX_PENDING = 10_000  # outstanding AuthnRequests per org (each anonymous visit to the login URL adds one)
MAX_RESPONSE = 256 * 1024  # base64 characters of a SAMLResponse
MAX_GROUPS = 1000
DISPLAY_ATTRIBUTES = ("displayName", "name", "http://schemas.microsoft.com/identity/claims/displayname",
                      "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")


class SamlRefused(Unauthenticated):
    """A SAML response that signs no one in; its message says which check failed."""


class SamlSignIn:
    def __init__(self, db: Database, base_url: str, attempts_by_ip: RateLimiter, *, bind_browser: bool):
        """`bind_browser`: require the response to come back with the cookie of the browser that started the
        sign-in (only behind TLS: the cookie must be SameSite=None, hence Secure, to come along on the IdP's
        cross-site POST)."""
        self.db = db
        self.base_url = base_url
        self.attempts_by_ip = attempts_by_ip
        self.bind_browser = bind_browser

    # ---- the org admin's configuration --------------------------------------------------------------

    async def describe(self, org: Org) -> dict:
        """What the admin sees: this SP's URLs (to give the IdP) and the IdP as configured (or None)."""
        idp = await self._idp(org.id)
        return {"sp": sp_urls(self.base_url, org.slug),
                "idp": None if idp is None else {**idp.__dict__}}

    async def configure(self, actor: Actor, org: Org, values: dict) -> dict:
        if values.get("metadata_xml"):
            values = {**values, **from_metadata(values["metadata_xml"])}
        idp = check_config(values)
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO saml_idps (org_id, entity_id, sso_url, certificate, group_attribute, email_attribute,"
                " enabled, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (org_id) DO UPDATE SET"
                " entity_id = excluded.entity_id, sso_url = excluded.sso_url, certificate = excluded.certificate,"
                " group_attribute = excluded.group_attribute, email_attribute = excluded.email_attribute,"
                " enabled = excluded.enabled, updated_at = excluded.updated_at",
                (org.id, idp.entity_id, idp.sso_url, idp.certificate, idp.group_attribute, idp.email_attribute,
                 int(idp.enabled), time.time()))
            await audit.record(tx, actor, "sso.saml.configure", org_id=org.id, target=org.slug,
                               details={"entity_id": idp.entity_id, "sso_url": idp.sso_url, "enabled": idp.enabled})
        return await self.describe(org)

    async def remove(self, actor: Actor, org: Org) -> None:
        async with self.db.write() as tx:
            if not await tx.changes("DELETE FROM saml_idps WHERE org_id = ?", (org.id,)):
                raise NotFound("this organization has no SAML sign-in")
            await audit.record(tx, actor, "sso.saml.remove", org_id=org.id, target=org.slug)

    async def sp_metadata(self, slug: str) -> str:
        """This SP's metadata for an org that has SAML configured (enabled or not)."""
        org, _ = await self._configured(slug, enabled_only=False)
        settings = onelogin().Settings(saml_settings(self.base_url, org.slug, None), sp_validation_only=True)
        metadata = settings.get_sp_metadata()
        return metadata.decode() if isinstance(metadata, bytes) else metadata

    # ---- signing in ---------------------------------------------------------------------------------

    async def start_login(self, slug: str, next_url: str, ip: str) -> tuple[str, str]:
        """The IdP URL to send the browser to, with a new AuthnRequest whose ID is remembered, and the secret
        to give that browser as a cookie."""
        self.attempts_by_ip.check(address_key(ip), "sign-in attempts")
        org, idp = await self._configured(slug)
        library = onelogin()
        request = library.AuthnRequest(library.Settings(saml_settings(self.base_url, slug, idp)))
        now = time.time()
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM saml_requests WHERE expires_at < ?", (now,))
            if await tx.fetch_value("SELECT count(*) FROM saml_requests WHERE org_id = ?", (org.id,)) >= MAX_PENDING:
                raise RateLimited("too many sign-ins in progress for this organization", retry_after=60)
            browser = secrets.token_urlsafe(32)
            await tx.insert("saml_requests", {"request_id": request.get_id(), "org_id": org.id, "next": next_url,
                                              "browser_hash": secret_hash(browser), "created_at": now,
                                              "expires_at": now + REQUEST_TTL})
        separator = "&" if urlsplit(idp.sso_url).query else "?"
        return idp.sso_url + separator + urlencode({"SAMLRequest": request.get_request()}), browser

    async def finish_login(self, slug: str, encoded: object, ip: str, browser: str | None) -> tuple[User, str]:
        """The user a posted SAMLResponse signs in, and where to send them; SamlRefused (audited) otherwise.
        `browser`: the cookie start_login gave (None when the browser sent none)."""
        self.attempts_by_ip.check(address_key(ip), "sign-in attempts")
        org, idp = await self._configured(slug)
        try:
            return await self._finish(org, idp, encoded, ip, browser)
        except DomainError as exc:
            async with self.db.write() as tx:
                await audit.record(tx, Actor(None, "anonymous", ip), "sso.login", org_id=org.id, target=org.slug,
                                   outcome="failure", reason=exc.code,
                                   details={"protocol": "saml", "error": exc.message[:300]})
            raise

    async def _finish(self, org: Org, idp: IdpConfig, encoded: object, ip: str,
                      browser: str | None) -> tuple[User, str]:
        if not isinstance(encoded, str) or not encoded.strip() or len(encoded) > MAX_RESPONSE:
            raise InvalidInput(f"SAMLResponse is required (at most {MAX_RESPONSE} characters)", code="saml_malformed")
        settings = onelogin().Settings(saml_settings(self.base_url, org.slug, idp))
        response = await asyncio.to_thread(_parse, settings, encoded)
        in_response_to = response.get_in_response_to()
        if not in_response_to:
            raise SamlRefused("the response answers no sign-in request (unsolicited responses are refused: start "
                              f"at {sp_urls(self.base_url, org.slug)['login_url']})", code="saml_unsolicited")
        request = await self.db.fetch_one("SELECT * FROM saml_requests WHERE request_id = ? AND org_id = ?",
                                          (in_response_to[:200], org.id))
        if request is None or request["expires_at"] < time.time():
            raise SamlRefused(f"InResponseTo {in_response_to[:80]!r} does not match a sign-in request of this "
                              "organization that is still open", code="saml_wrong_in_response_to")
        if self.bind_browser and not hmac.compare_digest(request["browser_hash"], secret_hash(browser or "")):
            raise SamlRefused("this sign-in was started in another browser: start again here",
                              code="saml_other_browser")
        await asyncio.to_thread(_validate, response, self._request_data(org.slug), in_response_to)
        return await self._accept(org, idp, response, request, ip)

    async def _accept(self, org: Org, idp: IdpConfig, response, request: dict, ip: str) -> tuple[User, str]:
        assertion_id, expires_at = response.get_assertion_id(), _expiry(response)
        email, display_name, groups = _identity(response, idp)
        now = time.time()
        async with self.db.write() as tx:
            await tx.execute("DELETE FROM saml_assertions WHERE expires_at < ?", (now,))
            if not await tx.changes("INSERT INTO saml_assertions (org_id, assertion_id, expires_at) VALUES (?, ?, ?)"
                                    " ON CONFLICT DO NOTHING", (org.id, assertion_id, expires_at)):
                raise SamlRefused("this assertion was already used: a replayed assertion is refused",
                                  code="saml_replayed")
            if not await tx.changes("UPDATE saml_requests SET used_at = ? WHERE request_id = ? AND used_at IS NULL",
                                    (now, request["request_id"])):
                raise SamlRefused("this sign-in request was already answered", code="saml_replayed")
            user = await provision_sso_user(tx, org, email, display_name, groups, protocol="saml")
            await audit.record(tx, Actor(user.id, user.username, ip), "sso.login", org_id=org.id, target=user.username,
                               details={"protocol": "saml", "idp": idp.entity_id, "groups": groups[:20]})
        return user, request["next"]

    # ---- helpers ------------------------------------------------------------------------------------

    def _request_data(self, slug: str) -> dict:
        """The ACS request as python3-saml sees it, from the public base URL (so Destination and Recipient are
        checked against the address the IdP was given, also behind a proxy)."""
        parts = urlsplit(self.base_url)
        return {"https": "on" if parts.scheme == "https" else "off", "http_host": parts.netloc,
                "script_name": f"{parts.path}/saml/{slug}/acs", "get_data": {}, "post_data": {}}

    async def _idp(self, org_id: int) -> IdpConfig | None:
        row = await self.db.fetch_one("SELECT * FROM saml_idps WHERE org_id = ?", (org_id,))
        return None if row is None else IdpConfig(row["entity_id"], row["sso_url"], row["certificate"],
                                                  row["group_attribute"], row["email_attribute"], bool(row["enabled"]))

    async def _configured(self, slug: str, *, enabled_only: bool = True) -> tuple[Org, IdpConfig]:
        row = await self.db.fetch_one("SELECT * FROM orgs WHERE slug = ?", (str(slug)[:64],))
        idp = None if row is None else await self._idp(row["id"])
        if idp is None or (enabled_only and not idp.enabled):
            raise NotFound(f"no SAML sign-in for an organization named {str(slug)[:64]!r}", code="saml_not_configured")
        return Org(row["id"], row["slug"], row["name"], row["created_at"]), idp


def _parse(settings: OneLogin_Saml2_Settings, encoded: str) -> OneLogin_Saml2_Response:
    try:
        return onelogin().Response(settings, encoded.strip())
    except Exception as exc:  # base64, XML (DTDs and entities are refused), or a broken encrypted assertion
        raise SamlRefused(f"SAMLResponse is not a readable SAML response: {str(exc)[:200]}",
                          code="saml_malformed") from None


def _validate(response: OneLogin_Saml2_Response, request_data: dict, request_id: str) -> None:
    if not response.is_valid(request_data, request_id=request_id):
        raise SamlRefused(f"the SAML response was refused: {response.get_error()}", code="saml_invalid")
    if not response.get_audiences():  # python3-saml accepts an assertion meant for anyone; we do not
        raise SamlRefused("the assertion names no audience (an AudienceRestriction is required)", code="saml_invalid")


def _expiry(response: OneLogin_Saml2_Response) -> float:
    """Until when the assertion could be accepted (the later of its NotOnOrAfter times, plus the clock drift
    python3-saml allows); one without any expiry could be replayed forever and is refused."""
    times = [response.valid_scd_not_on_or_after]
    times += [onelogin().Utils.parse_SAML_to_time(node.get("NotOnOrAfter"))
              for node in response._query_assertion("/saml:Conditions") if node.get("NotOnOrAfter")]
    known = [t for t in times if t]
    if not known:
        raise SamlRefused("the assertion has no NotOnOrAfter", code="saml_invalid")
    return max(known) + onelogin().SAML.ALLOWED_CLOCK_DRIFT


def _identity(response: OneLogin_Saml2_Response, idp: IdpConfig) -> tuple[str, str, list[str]]:
    """(e-mail, display name, group names) from a validated response."""
    attributes = {**response.get_friendlyname_attributes(), **response.get_attributes()}

    def first(name: str) -> str:
        values = attributes.get(name) or [""]
        return values[0] if isinstance(values[0], str) else ""

    email = first(idp.email_attribute) if idp.email_attribute else (response.get_nameid() or "")
    display = next((first(name) for name in DISPLAY_ATTRIBUTES if first(name)), "")
    groups = [g for g in attributes.get(idp.group_attribute, [])[:MAX_GROUPS] if isinstance(g, str) and len(g) <= 256]
    return email, display, groups
