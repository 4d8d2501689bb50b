"""Admin pages: the quarantine queue (findings, release, reject) and the users list. Site administrators only."""

from __future__ import annotations

from aiohttp import web

from .auth import require_admin
from .pages import login_required, render
from .util import query_int

routes = web.RouteTableDef()

USERS_PER_PAGE = 100


def admin_required(request: web.Request):
    login_required(request)  # anonymous visitors go to the login page, members get a 403 page
    return require_admin(request)


@routes.get("/admin/users")
async def users(request: web.Request) -> web.Response:
    admin_required(request)
    after = query_int(request, "after", 0, 0, 2**62)
    found = await request.app["services"].accounts.list_users(USERS_PER_PAGE, after)
    next_after = found[-1].id if len(found) == USERS_PER_PAGE else None
    return await render(request, "admin/users.html", users=found, next_after=next_after)
