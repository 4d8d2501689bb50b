"""The applications a user allowed to call hosted MCP endpoints for them (their OAuth grants, oauth/grants.py):
client name, endpoint, scopes, when granted and last used, and a CSRF-protected form to revoke each one, which
ends its access and refresh tokens at once."""

from __future__ import annotations

from aiohttp import web

from ..access import allow, browser_session
from ..auth import caller
from ..keys import OAUTH
from ..util import client_ip
from .render import redirect, render

routes = web.RouteTableDef()
NOTICES = {"revoked": "Access was revoked. The application's tokens no longer work."}


@routes.get("/account/applications")
@allow(browser_session("account"))
async def applications(request: web.Request) -> web.Response:
    grants = await request.app[OAUTH].grants.of(caller(request))
    return await render(request, "oauth/grants.html", grants=grants,
                        notice=NOTICES.get(request.query.get("done", "")))


@routes.post("/account/applications/{grant_id:\\d{1,18}}/revoke")
@allow(browser_session("account"))  # a browser form: the session's CSRF token is checked by the front door
async def revoke(request: web.Request) -> web.Response:
    await request.app[OAUTH].grants.revoke(caller(request), int(request.match_info["grant_id"]),
                                           ip=client_ip(request))
    raise redirect("/account/applications", done="revoked")
