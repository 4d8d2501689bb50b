"""SAML 2.0 sign-in over HTTP (accounts/saml.py has the rules), and the org's group-to-role mapping.

- `/saml/{org}/metadata`, `/saml/{org}/login`, `/saml/{org}/acs`: what browsers and the IdP reach, open on a
  private registry too (signing in is how one gets in). They take no credentials of ours: the ACS is
  authenticated by the signed assertion itself, and a cross-site POST carries no session cookie anyway.
- `/api/orgs/{org}/saml` and `/api/orgs/{org}/group-roles`: the org's owners and admins configure them (or on the
  page /orgs/{org}/saml, web/pages/saml.py).
"""

from __future__ import annotations

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..accounts.saml import REQUEST_TTL
from ..errors import InvalidInput
from ..text import OneLine
from .access import NO_CREDENTIALS, allow, open_when_private, signed_in
from .auth import managed_org
from .keys import SERVICES, SETTINGS
from .openapi import documented
from .pages import saml as saml_page
from .pages.accounts import start_session
from .pages.render import safe_next
from .util import client_ip, read_json

routes = web.RouteTableDef()


def install(app: web.Application) -> None:
    """The one hook in create_app: these routes and the org's SAML settings page (web/pages/saml.py)."""
    app.router.add_routes(routes)
    app.router.add_routes(saml_page.routes)
SAML_PATH = "/saml/{slug}"
ORG_RESPONSES = {403: "Not an owner or admin of the organization", 404: "No such organization"}
OPEN = open_when_private(NO_CREDENTIALS)
BROWSER_COOKIE = "mcpstore_saml"  # ties a sign-in to the browser that started it (accounts/saml.py)


class SamlConfigBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metadata_xml: str | None = Field(None, max_length=512 * 1024)
    entity_id: OneLine | None = Field(None, max_length=1024)
    sso_url: OneLine | None = Field(None, max_length=1024)
    certificate: str | None = Field(None, max_length=64 * 1024)
    group_attribute: OneLine | None = Field(None, max_length=1024)
    email_attribute: OneLine | None = Field(None, max_length=1024)
    enabled: bool = True


class GroupRolesBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mappings: dict[str, str]


# ---- browsers and the IdP ---------------------------------------------------------------------------

@routes.get(f"{SAML_PATH}/metadata")
@allow(OPEN)
async def sp_metadata(request: web.Request) -> web.Response:
    xml = await request.app[SERVICES].saml.sp_metadata(request.match_info["slug"])
    return web.Response(text=xml, content_type="application/samlmetadata+xml")


@routes.get(f"{SAML_PATH}/login")
@allow(OPEN)
async def start_login(request: web.Request) -> web.Response:
    target = safe_next(request.query.get("next", "")[:2000], "/dashboard")
    slug = request.match_info["slug"]
    location, browser = await request.app[SERVICES].saml.start_login(slug, target, client_ip(request))
    response = web.HTTPSeeOther(location, headers={"Cache-Control": "no-store"})
    # Comes back on the IdP's cross-site POST only as SameSite=None, which browsers take only with Secure (TLS).
    tls = request.app[SETTINGS].server.behind_tls
    response.set_cookie(BROWSER_COOKIE, browser, path=f"/saml/{slug}/", httponly=True, secure=tls,
                        samesite="None" if tls else "Lax", max_age=REQUEST_TTL)
    raise response


@routes.post(f"{SAML_PATH}/acs")
@allow(OPEN)
async def assertion_consumer(request: web.Request) -> web.Response:
    """The IdP's HTTP-POST binding: a form with SAMLResponse (and RelayState, not used: the request we sent
    says where the user goes)."""
    if request.content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise InvalidInput("the IdP posts a form with SAMLResponse", code="saml_malformed")
    form = await request.post()
    user, target = await request.app[SERVICES].saml.finish_login(
        request.match_info["slug"], form.get("SAMLResponse"), client_ip(request), request.cookies.get(BROWSER_COOKIE))
    response = await start_session(request, user, safe_next(target, "/dashboard"))
    response.del_cookie(BROWSER_COOKIE, path=f"/saml/{request.match_info['slug']}/")
    raise response


# ---- the org admin's configuration ------------------------------------------------------------------

@routes.get("/api/orgs/{slug}/saml")
@allow(signed_in("account", org="path:slug"))
@documented("The organization's SAML sign-in: this service provider's URLs (for the IdP) and the IdP configured",
            tags=["sso"], responses={200: "OK", **ORG_RESPONSES})
async def get_saml(request: web.Request) -> web.Response:
    _, org = await managed_org(request)
    return web.json_response(await request.app[SERVICES].saml.describe(org))


@routes.put("/api/orgs/{slug}/saml")
@allow(signed_in("account", org="path:slug"))
@documented("Configure SAML sign-in: the IdP's metadata XML, or its entity id, SSO URL (https) and signing "
            "certificate; the attribute holding group names (default `groups`) and, optionally, the e-mail",
            tags=["sso"], body=SamlConfigBody.model_json_schema(),
            responses={200: "Saved", 400: "Invalid", 413: "Metadata too large", **ORG_RESPONSES})
async def put_saml(request: web.Request) -> web.Response:
    body = await read_json(request, SamlConfigBody)
    actor, org = await managed_org(request)
    return web.json_response(await request.app[SERVICES].saml.configure(actor, org, body.model_dump()))


@routes.delete("/api/orgs/{slug}/saml")
@allow(signed_in("account", org="path:slug"))
@documented("Remove the organization's SAML sign-in", tags=["sso"],
            responses={204: "Removed", 403: "Not an owner or admin", 404: "None configured, or no such organization"})
async def delete_saml(request: web.Request) -> web.Response:
    actor, org = await managed_org(request)
    await request.app[SERVICES].saml.remove(actor, org)
    return web.Response(status=204)


@routes.get("/api/orgs/{slug}/group-roles")
@allow(signed_in("account", org="path:slug"))
@documented("The organization's mapping of identity-provider group names to org roles (SCIM groups, SAML)",
            tags=["sso"], responses={200: "OK", **ORG_RESPONSES})
async def get_group_roles(request: web.Request) -> web.Response:
    _, org = await managed_org(request)
    return web.json_response({"mappings": await request.app[SERVICES].accounts.group_roles.get(org)})


@routes.put("/api/orgs/{slug}/group-roles")
@allow(signed_in("account", org="path:slug"))
@documented("Replace the mapping of group names to roles (admin, publisher, auditor, member; never owner)",
            tags=["sso"], body=GroupRolesBody.model_json_schema(), responses={200: "Saved", 400: "Invalid",
                                                                              **ORG_RESPONSES})
async def put_group_roles(request: web.Request) -> web.Response:
    body = await read_json(request, GroupRolesBody)
    actor, org = await managed_org(request)
    mappings = await request.app[SERVICES].accounts.group_roles.replace(actor, org, body.mappings)
    return web.json_response({"mappings": mappings})
