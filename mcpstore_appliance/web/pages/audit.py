"""The audit log in the browser: an org's events for its owners, admins and auditors (/orgs/{slug}/audit), every
event for site administrators (/admin/audit), with filters and pages; and the printable compliance report for a
period (…/audit/report). The data comes from web/api_audit.py's helpers, the report's from audit/report.py."""

from __future__ import annotations

from aiohttp import web

from ...audit.report import compliance_report
from ..access import allow, browser_session, site_admin
from ..api_audit import AUDIT, events_page, parse_instant, scope_of
from ..keys import SERVICES
from .render import render

routes = web.RouteTableDef()


async def _events(request: web.Request) -> web.Response:
    _, slug = await scope_of(request)
    page = await events_page(request)
    return await render(request, "audit/events.html", org_slug=slug, query=dict(request.query), **page)


async def _report(request: web.Request) -> web.Response:
    org_id, slug = await scope_of(request)
    query = request.query
    since = parse_instant(query["since"], "since") if query.get("since") else 0
    until = parse_instant(query["until"], "until", end=True) if query.get("until") else None
    services = request.app[SERVICES]
    report = await compliance_report(services.db, services.ledger, request.app[AUDIT], org_id, since, until)
    return await render(request, "audit/report.html", org_slug=slug, query=dict(query), report=report)


def _site_and_org(site_path: str, org_path: str, page) -> None:
    """The same page for a site administrator (every org) and for an org's owners, admins and auditors."""

    async def site(request: web.Request) -> web.Response:
        return await page(request)

    async def org(request: web.Request) -> web.Response:
        return await page(request)  # scope_of checks the role; a foreign org is 404

    routes.get(site_path)(allow(site_admin(page=True, session_only=True))(site))
    routes.get(org_path)(allow(browser_session("read"))(org))


_site_and_org("/admin/audit", "/orgs/{slug}/audit", _events)
_site_and_org("/admin/audit/report", "/orgs/{slug}/audit/report", _report)
