"""Single sign-on over HTTP: the sign-in itself (POST /login/sso sends the browser to the IdP, GET /sso/callback
brings it back signed in) and the org's JSON API for its OIDC settings and e-mail domains (oidc/ and
accounts/domains.py have the rules)."""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..accounts.ratelimit import address_key
from ..errors import DomainError, RateLimited
from .access import ANYONE, allow, open_when_private, signed_in
from .auth import caller
from .errors import status_for
from .forms import read_form
from .keys import NO_STORE, SERVICES, SETTINGS
from .openapi import documented
from .pages.accounts import form_error, login_page_values, start_session
from .pages.render import redirect, render, safe_next
from .util import client_ip, read_json

routes = web.RouteTableDef()
BINDING_COOKIE = "mcpstore_sso"  # binds a sign-in's state and nonce to the browser that started it
CALLBACK = "/sso/callback"
ORG_RESPONSES = {403: "Not an owner or admin of the organization", 404: "No such organization"}
DOMAIN = "{domain:[A-Za-z0-9.-]{1,253}}"


class SsoConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    issuer: str = Field(max_length=500)
    client_id: str = Field(max_length=255)
    client_secret: str | None = Field(None, max_length=1000, description="omit to keep the stored one, \"\" clears")
    algorithms: list[str] = Field(["RS256", "ES256", "EdDSA"], max_length=10)
    group_roles: dict[str, str] = Field({}, description="IdP group name -> org role")
    default_role: str | None = Field("member", description="role without a mapped group; null refuses the sign-in")
    enabled: bool = True


class DomainBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(max_length=253)


class VerifyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["dns", "https"]


class RequireBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    require_sso: bool


# ---- signing in --------------------------------------------------------------------------------------------

@routes.post("/login/sso")
@allow(open_when_private(ANYONE))
async def sso_start(request: web.Request) -> web.Response:
    """The login page's SSO forms: `org` (an org slug or an e-mail address), or `provider=site`."""
    form = await read_form(request)
    services, target = request.app[SERVICES], safe_next(str(form.get("next", "")), "/dashboard")
    named = str(form.get("org", ""))[:320]
    try:
        # Each start writes a pending sign-in: counted with the address's password sign-ins.
        services.accounts.login_by_ip.check(address_key(client_ip(request)), "sign-in attempts")
        org = None if form.get("provider") == "site" else await services.oidc.org_for_login(named)
        location, binding = await services.oidc.start(org, target)
    except DomainError as exc:
        response = await render(request, "accounts/login.html", status=status_for(exc), next=target, login="",
                                sso_org=named, **login_page_values(request), **form_error(exc))
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(exc.retry_after)
        return response
    # A page that moves on by itself (meta refresh, and a link) rather than a 303: a redirect answering a form
    # is held to the page's CSP form-action ('self'), which an org's IdP, named only now, is not part of.
    request[NO_STORE] = True
    response = await render(request, "accounts/sso_redirect.html", location=location)
    settings = request.app[SETTINGS]
    # SameSite=Lax: the IdP's redirect back is a top-level GET navigation, which carries Lax cookies.
    response.set_cookie(BINDING_COOKIE, binding, httponly=True, samesite="Lax", path=CALLBACK, max_age=600,
                        secure=settings.server.behind_tls)
    return response


@routes.get(CALLBACK)
@allow(open_when_private(ANYONE))
async def sso_callback(request: web.Request) -> web.Response:
    request[NO_STORE] = True
    query = {k: v[:2000] for k, v in request.query.items() if k in ("state", "code", "error", "iss")}
    try:
        user, target = await request.app[SERVICES].oidc.finish(query, request.cookies.get(BINDING_COOKIE, ""),
                                                                client_ip(request))
    except DomainError as exc:
        response = await render(request, "accounts/login.html", status=status_for(exc), next="", login="",
                                **login_page_values(request), **form_error(exc))
        response.del_cookie(BINDING_COOKIE, path=CALLBACK)
        return response
    response = await start_session(request, user, safe_next(target, "/dashboard"))
    response.del_cookie(BINDING_COOKIE, path=CALLBACK)
    raise response


# ---- the org's settings ------------------------------------------------------------------------------------

@routes.get("/api/orgs/{slug}/sso")
@allow(signed_in("account", org="path:slug"))
@documented("The organization's OpenID Connect settings (the client secret is never shown)", tags=["sso"],
            responses={200: "OK", **ORG_RESPONSES})
async def get_sso(request: web.Request) -> web.Response:
    config = await request.app[SERVICES].oidc.get_config(caller(request), request.match_info["slug"])
    return web.json_response({"oidc": config, "redirect_uri": request.app[SETTINGS].base_url + CALLBACK})


@routes.put("/api/orgs/{slug}/sso")
@allow(signed_in("account", org="path:slug"))
@documented("Set the organization's OpenID Connect provider and the map from its groups to org roles",
            tags=["sso"], body=SsoConfigBody.model_json_schema(), responses={200: "Saved", 400: "Invalid",
                                                                              **ORG_RESPONSES})
async def put_sso(request: web.Request) -> web.Response:
    body = (await read_json(request, SsoConfigBody)).model_dump(exclude_unset=True)
    config = await request.app[SERVICES].oidc.set_config(caller(request), request.match_info["slug"], body)
    return web.json_response({"oidc": config, "redirect_uri": request.app[SETTINGS].base_url + CALLBACK})


@routes.get("/api/orgs/{slug}/domains")
@allow(signed_in("account", org="path:slug"))
@documented("The e-mail domains the organization claims, with how to prove each", tags=["sso"],
            responses={200: "OK", **ORG_RESPONSES})
async def list_domains(request: web.Request) -> web.Response:
    claims = await request.app[SERVICES].domains.list(caller(request), request.match_info["slug"])
    return web.json_response({"domains": [c.public() for c in claims]})


@routes.post("/api/orgs/{slug}/domains")
@allow(signed_in("account", org="path:slug"))
@documented("Claim an e-mail domain; the answer says which DNS record or https file proves it", tags=["sso"],
            body=DomainBody.model_json_schema(), responses={201: "Claimed", 400: "Invalid", 409: "Claimed already",
                                                            **ORG_RESPONSES})
async def claim_domain(request: web.Request) -> web.Response:
    body = await read_json(request, DomainBody)
    claim = await request.app[SERVICES].domains.claim(caller(request), request.match_info["slug"], body.domain)
    return web.json_response(claim.public(), status=201)


@routes.post(f"/api/orgs/{{slug}}/domains/{DOMAIN}/verify")
@allow(signed_in("account", org="path:slug"))
@documented("Prove a claimed domain by its DNS TXT record or its https .well-known file", tags=["sso"],
            body=VerifyBody.model_json_schema(), responses={200: "Verified", 403: "Token not found or not an admin",
                                                            404: "Not claimed", 409: "Verified by another org"})
async def verify_domain(request: web.Request) -> web.Response:
    body = await read_json(request, VerifyBody)
    claim = await request.app[SERVICES].domains.verify(caller(request), request.match_info["slug"],
                                                       request.match_info["domain"], body.method)
    return web.json_response(claim.public())


@routes.put(f"/api/orgs/{{slug}}/domains/{DOMAIN}")
@allow(signed_in("account", org="path:slug"))
@documented("Require (or stop requiring) single sign-on for a verified domain's people", tags=["sso"],
            body=RequireBody.model_json_schema(), responses={200: "Saved", 404: "Not claimed",
                                                             409: "Not verified yet", **ORG_RESPONSES})
async def require_sso(request: web.Request) -> web.Response:
    body = await read_json(request, RequireBody)
    claim = await request.app[SERVICES].domains.set_require_sso(caller(request), request.match_info["slug"],
                                                                request.match_info["domain"], body.require_sso)
    return web.json_response(claim.public())
