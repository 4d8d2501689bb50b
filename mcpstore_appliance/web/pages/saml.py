"""The SAML settings page of an org's owners and admins (/orgs/{slug}/saml): this service provider's URLs for the
IdP, the IdP's metadata or fields, and the mapping of IdP group names to org roles that SAML and SCIM share.
Browser-session forms: the front door checks their CSRF tokens; the services audit. Its routes are added with
web/saml_api.py's."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...errors import DomainError, InvalidInput
from ..access import allow, browser_session
from ..auth import managed_org
from ..errors import status_for
from ..forms import read_form
from ..keys import SERVICES
from .render import redirect, render

routes = web.RouteTableDef()
NOTICES = {"saml_saved": "SAML sign-in was saved.", "roles_saved": "The group mapping was saved."}
SAML_FIELDS = ("entity_id", "sso_url", "certificate", "group_attribute", "email_attribute")


def mapping_text(mapping: dict[str, str]) -> str:
    return "\n".join(f"{group} = {role}" for group, role in mapping.items())


def read_mapping(text: str) -> dict[str, str]:
    """'Group name = role' per line (a group name may contain spaces; the role is after the last '=')."""
    pairs = [line.rpartition("=") for line in text.splitlines()[:1000] if line.strip()]
    if any(not sep for _, sep, _ in pairs):
        raise InvalidInput("each line is 'group name = role'", code="invalid_mapping")
    return {group.strip(): role.strip() for group, _, role in pairs}


async def _page(request: web.Request, status: int = 200, **values: Any) -> web.Response:
    _, org = await managed_org(request)
    services = request.app[SERVICES]
    saml = await services.saml.describe(org)
    values.setdefault("saml_form", {**(saml["idp"] or {}), "metadata_xml": ""})
    values.setdefault("roles_text", mapping_text(await services.accounts.group_roles.get(org)))
    return await render(request, "orgs/saml.html", status=status, org=org, saml=saml,
                        notice=NOTICES.get(request.query.get("done", "")), **values)


@routes.get("/orgs/{slug}/saml")
@allow(browser_session("account"))
async def saml_page(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/orgs/{slug}/saml/idp")
@allow(browser_session("account"))
async def save_saml(request: web.Request) -> web.Response:
    form = await read_form(request, multiline={"certificate", "metadata_xml"})
    values = {name: str(form.get(name, ""))[:64 * 1024].strip() or None for name in SAML_FIELDS}
    values["metadata_xml"] = str(form.get("metadata_xml", ""))[:512 * 1024 + 1].strip() or None
    values["enabled"] = form.get("enabled") == "on"
    actor, org = await managed_org(request)
    try:
        await request.app[SERVICES].saml.configure(actor, org, values)
    except DomainError as exc:
        return await _page(request, status_for(exc), saml_form=values, saml_error=exc.message)
    raise redirect(f"/orgs/{org.slug}/saml", done="saml_saved")


@routes.post("/orgs/{slug}/saml/group-roles")
@allow(browser_session("account"))
async def save_group_roles(request: web.Request) -> web.Response:
    form = await read_form(request, multiline={"mappings"})
    text = str(form.get("mappings", ""))[:100_000]
    actor, org = await managed_org(request)
    try:
        await request.app[SERVICES].accounts.group_roles.replace(actor, org, read_mapping(text))
    except DomainError as exc:
        return await _page(request, status_for(exc), roles_text=text, roles_error=exc.message)
    raise redirect(f"/orgs/{org.slug}/saml", done="roles_saved")
