"""The curated mirror's admin page: upstreams and their pinned keys, an import form, the updates waiting for
approval (approve imports, reject). Site administrators only; the same as the JSON API (web/api_mirror.py)."""

from __future__ import annotations

from aiohttp import web

from ...errors import DomainError
from ..access import allow, site_admin
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from ..keys import SERVICES
from ..util import client_ip
from .render import redirect, render

routes = web.RouteTableDef()
PAGE = site_admin(page=True, session_only=True)
NOTICES = {"upstream": "The upstream was added and its ledger key pinned.", "import": "The release was imported.",
           "check": "Upstreams were checked for newer versions.", "approve": "The update was imported.",
           "reject": "The update was rejected."}


async def _page(request: web.Request, status: int = 200, **values) -> web.Response:
    mirror = request.app[SERVICES].mirror
    return await render(request, "admin/mirror.html", status=status, upstreams=await mirror.upstreams(),
                        updates=await mirror.pending("pending"), notice=NOTICES.get(request.query.get("done", "")),
                        **{"action_error": None, "form": {}, **values})


@routes.get("/admin/mirror")
@allow(PAGE)
async def mirror_page(request: web.Request) -> web.Response:
    return await _page(request)


def _text(form, name: str, limit: int = 2000) -> str:
    return str(form.get(name, ""))[:limit].strip()


async def _act(request: web.Request, action: str, work) -> web.Response:
    """Run one form's action: back to the page with a notice, or the page again with the refusal."""
    form = await read_form(request)
    try:
        await work(request.app[SERVICES].mirror, caller(request), client_ip(request), form)
    except DomainError as exc:
        return await _page(request, status_for(exc), action_error=exc.message,
                           form={k: v for k, v in form.items() if k != "csrf_token"})
    raise redirect("/admin/mirror", done=action)


@routes.post("/admin/mirror/upstreams")
@allow(PAGE)
async def add_upstream(request: web.Request) -> web.Response:
    return await _act(request, "upstream", lambda mirror, admin, ip, form: mirror.add_upstream(
        admin, _text(form, "url"), _text(form, "key", 500) or None, ip=ip))


@routes.post("/admin/mirror/imports")
@allow(PAGE)
async def import_release(request: web.Request) -> web.Response:
    return await _act(request, "import", lambda mirror, admin, ip, form: mirror.import_release(
        admin, _text(form, "upstream"), _text(form, "release", 300), _text(form, "org", 60), ip=ip))


@routes.post("/admin/mirror/check")
@allow(PAGE)
async def check(request: web.Request) -> web.Response:
    return await _act(request, "check", lambda mirror, admin, ip, form: mirror.check())


PENDING = r"/admin/mirror/pending/{pending_id:\d{1,18}}"


@routes.post(PENDING + "/approve")
@allow(PAGE)
async def approve(request: web.Request) -> web.Response:
    pending_id = int(request.match_info["pending_id"])
    return await _act(request, "approve", lambda mirror, admin, ip, form: mirror.approve(admin, pending_id, ip=ip))


@routes.post(PENDING + "/reject")
@allow(PAGE)
async def reject(request: web.Request) -> web.Response:
    pending_id = int(request.match_info["pending_id"])
    return await _act(request, "reject", lambda mirror, admin, ip, form: mirror.reject(
        admin, pending_id, _text(form, "reason", 1000) or None, ip=ip))
