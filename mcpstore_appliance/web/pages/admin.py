"""Admin pages: the quarantine queue (findings, release, reject) and the users list. Site administrators only."""

from __future__ import annotations

from aiohttp import web

from ...errors import DomainError
from ..access import allow, site_admin
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from .render import redirect, render
from ..util import client_ip, query_int
from ..keys import SERVICES

routes = web.RouteTableDef()

USERS_PER_PAGE = 100


@routes.get("/admin/users")
@allow(site_admin(page=True, session_only=True))
async def users(request: web.Request) -> web.Response:
    after = query_int(request, "after", 0, 0, 2**62)
    found = await request.app[SERVICES].accounts.list_users(USERS_PER_PAGE, after)
    next_after = found[-1].id if len(found) == USERS_PER_PAGE else None
    return await render(request, "admin/users.html", users=found, next_after=next_after)


# ---- the quarantine queue ------------------------------------------------------------------------------------

NOTICES = {"release": "The version was released and published.", "reject": "The version was rejected.",
           "welcome": "Welcome! You administer this registry."}
QUEUE_PAGE = 50


async def _queue_page(request: web.Request, status: int = 200, **values) -> web.Response:
    after = query_int(request, "after", 0, 0, 2**62)
    queue = await request.app[SERVICES].package_status.quarantined(limit=QUEUE_PAGE, after_id=after)
    return await render(request, "admin/quarantine.html", status=status, items=queue["items"],
                        next_after=queue["next_after"], notice=NOTICES.get(request.query.get("done", "")),
                        **{"action_error": None, **values})


@routes.get("/admin")
@allow(site_admin(page=True, session_only=True))
async def quarantine(request: web.Request) -> web.Response:
    return await _queue_page(request)


@routes.post("/admin/quarantine/{namespace}/{name}/{version}/{action:release|reject}")
@allow(site_admin(page=True, session_only=True))
async def review(request: web.Request) -> web.Response:
    admin = caller(request)
    m = request.match_info
    form = await read_form(request, multiline={"reason"})
    text = str(form.get("reason", ""))[:2000] or None
    try:
        await getattr(request.app[SERVICES].package_status, m["action"])(
            admin, m["namespace"], m["name"], m["version"], text, ip=client_ip(request))
    except DomainError as exc:
        return await _queue_page(request, status_for(exc), action_error=f"{m['namespace']}/{m['name']} "
                                 f"{m['version']}: {exc.message}")
    raise redirect("/admin", done=m["action"])
