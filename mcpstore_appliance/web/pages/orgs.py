"""Organization pages: the org home with its packages (private ones for members only) and member management."""

from __future__ import annotations

from aiohttp import web

from ...accounts.models import ROLES, ROLES_THAT_MANAGE_MEMBERS
from ...errors import DomainError
from ...market.money import journal_text
from ..access import ANYONE, allow, browser_session
from ..auth import caller, principal_of
from ..errors import status_for
from ..forms import read_form
from .render import redirect, render
from .catalog import search_packages
from ..keys import SERVICES

routes = web.RouteTableDef()

NOTICES = {
    "org_created": "The organization was created. You are its owner.",
    "member_saved": "The member was saved.",
    "member_removed": "The member was removed.",
}


async def _org_page(request: web.Request, status: int = 200, **values) -> web.Response:
    principal = principal_of(request)
    services = request.app[SERVICES]
    slug = request.match_info["slug"]
    org = await services.accounts.get_org(slug)
    role = principal.role_in(org.id) if principal else None
    is_member = role is not None or bool(principal and principal.is_admin)
    members = await services.accounts.members(principal, slug) if is_member else []
    packages = await org_packages(request, slug)
    # the org's credits, which its members' per-call calls use when their own do not cover them
    credits = [journal_text(c, v) for c, v in sorted((await services.market.wallet_balances(
        f"org:{org.id}")).items())] if is_member else []
    return await render(request, "orgs/org.html", status=status, org=org, role=role, members=members, credits=credits,
                        packages=packages, is_member=is_member, roles=ROLES,
                        can_manage=bool(principal and (principal.is_admin or role in ROLES_THAT_MANAGE_MEMBERS)),
                        notice=NOTICES.get(request.query.get("done", "")),
                        **{"member_form": {}, "member_error": None, **values})


async def org_packages(request: web.Request, slug: str) -> list:
    """The org's packages this visitor may see: the catalog search applies the one visibility rule."""
    page = await search_packages(request, {"org": slug, "sort": "name", "limit": "100"})
    return page.item_dicts()


@routes.get("/orgs/{slug}")
@allow(ANYONE)
async def org_home(request: web.Request) -> web.Response:
    return await _org_page(request)


@routes.post("/orgs/{slug}/members")
@allow(browser_session("account"))
async def set_member(request: web.Request) -> web.Response:
    principal = caller(request)
    form = await read_form(request)
    member_form = {"username": str(form.get("username", ""))[:39], "role": str(form.get("role", "member"))[:20]}
    slug = request.match_info["slug"]
    try:
        await request.app[SERVICES].accounts.set_member(principal, slug, member_form["username"],
                                                          member_form["role"])
    except DomainError as exc:
        return await _org_page(request, status_for(exc), member_form=member_form, member_error=exc.message)
    raise redirect(f"/orgs/{slug}", done="member_saved")


@routes.post("/orgs/{slug}/members/{username}/remove")
@allow(browser_session("account"))
async def remove_member(request: web.Request) -> web.Response:
    principal = caller(request)
    slug = request.match_info["slug"]
    try:
        await request.app[SERVICES].accounts.remove_member(principal, slug, request.match_info["username"])
    except DomainError as exc:
        return await _org_page(request, status_for(exc), member_error=exc.message)
    raise redirect(f"/orgs/{slug}", done="member_removed")
