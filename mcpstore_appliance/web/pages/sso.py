"""The org's single sign-on settings page, for its owners and admins: the OpenID provider (the client secret is
never shown again; leaving the field empty keeps it), the map from the IdP's groups to org roles, and the
e-mail domains the org claims, proves and requires SSO for. One browser-session form per action, each posted
to /orgs/{slug}/sso with an `action` field; the services check the role and audit every change."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ...accounts.models import ROLES
from ...errors import DomainError, InvalidInput
from ...oidc.idtoken import DEFAULT_ALGORITHMS, SUPPORTED_ALGORITHMS
from ..access import allow, browser_session
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from ..keys import SERVICES, SETTINGS
from .render import redirect, render

routes = web.RouteTableDef()
NOTICES = {"config": "The single sign-on settings were saved.", "claim": "The domain was claimed: publish the "
           "token below, then verify.", "verify": "The domain is verified.", "require": "The domain was saved."}


def groups_text(group_roles: dict[str, str]) -> str:
    return "\n".join(f"{group} = {role}" for group, role in group_roles.items())


def parse_groups(text: str) -> dict[str, str]:
    """`group = role` lines (the group name may hold spaces; the role is the last word)."""
    mapping = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        group, sep, role = line.rpartition("=")
        if not sep or not group.strip():
            raise InvalidInput("each line of the group map is 'group name = role'", details={"field": "group_roles"})
        mapping[group.strip()] = role.strip()
    return mapping


def shown_values(form) -> dict[str, Any]:
    """The submitted settings as the form shows them again after a refusal (never the secret)."""
    return {"issuer": str(form.get("issuer", ""))[:500].strip(),
            "client_id": str(form.get("client_id", ""))[:255].strip(),
            "algorithms": [str(a) for a in form.getall("algorithms", [])][:10],
            "group_roles": str(form.get("group_roles", ""))[:50_000],
            "default_role": str(form.get("default_role", "")) or None, "enabled": form.get("enabled") == "on"}


def config_body(shown: dict[str, Any], form) -> dict[str, Any]:
    """The settings for the service: the group lines parsed, and the secret only when one was typed (empty keeps
    the stored one)."""
    body = {**shown, "group_roles": parse_groups(shown["group_roles"])}
    if secret := str(form.get("client_secret", ""))[:1000]:
        body["client_secret"] = secret
    return body


async def _page(request: web.Request, status: int = 200, **values) -> web.Response:
    principal, slug, services = caller(request), request.match_info["slug"], request.app[SERVICES]
    org = await services.accounts.visible_org(principal, slug)
    config = await services.oidc.get_config(principal, slug)  # refuses members who do not manage the org
    domains = await services.domains.list(principal, slug)
    form = values.pop("form", None) or {**(config or {"algorithms": list(DEFAULT_ALGORITHMS), "enabled": True,
                                                       "default_role": "member"}),
                                        "group_roles": groups_text((config or {}).get("group_roles", {}))}
    return await render(request, "orgs/sso.html", status=status, org=org, config=config, form=form,
                        domains=domains, roles=ROLES, algorithms=SUPPORTED_ALGORITHMS,
                        redirect_uri=request.app[SETTINGS].base_url + "/sso/callback",
                        notice=NOTICES.get(request.query.get("done", "")), **values)


@routes.get("/orgs/{slug}/sso")
@allow(browser_session("account"))
async def sso_settings(request: web.Request) -> web.Response:
    return await _page(request)


@routes.post("/orgs/{slug}/sso")
@allow(browser_session("account"))
async def sso_settings_submit(request: web.Request) -> web.Response:
    principal, slug, services = caller(request), request.match_info["slug"], request.app[SERVICES]
    form = await read_form(request, multiline={"group_roles"})
    action, domain, shown = str(form.get("action", "")), str(form.get("domain", ""))[:253], None
    try:
        if action == "config":
            shown = shown_values(form)
            await services.oidc.set_config(principal, slug, config_body(shown, form))
        elif action == "claim":
            await services.domains.claim(principal, slug, domain)
        elif action == "verify":
            await services.domains.verify(principal, slug, domain, str(form.get("method", "")))
        elif action == "require":
            await services.domains.set_require_sso(principal, slug, domain, form.get("require_sso") == "on")
        else:
            raise InvalidInput("unknown action")
    except DomainError as exc:
        return await _page(request, status_for(exc), error=exc.message, **({"form": shown} if shown else {}))
    raise redirect(f"/orgs/{slug}/sso", done=action)
