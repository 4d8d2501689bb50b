"""The audit log over HTTP: org owners, admins and auditors read their org's events, site administrators all
of them (JSON, with filters and a cursor), export them as JSON Lines, CEF or RFC 5424 syslog, and push syslog to
the configured collector. Reading and exporting are audited too. `install` is the one hook in create_app: the
AuditLog service (audit/service.py), its sealing timer, and these routes and pages.
"""

from __future__ import annotations

import calendar
import re
import socket
import time
from urllib.parse import urlencode

from aiohttp import web

from .. import audit
from ..accounts.models import Principal
from ..audit.export import FORMATS, push_syslog, render
from ..audit.service import MAX_PAGE, AuditLog, Filters, event_view, open_audit_log
from ..catalog.package_view import DownloadTarget
from ..errors import Conflict, Forbidden, InvalidInput, UpstreamFailed
from ..text import check_text
from .access import allow, signed_in, site_admin
from .auth import caller
from .keys import PRINCIPAL, SERVICES, WORKER
from .openapi import documented

routes = web.RouteTableDef()
AUDIT = web.AppKey("audit", AuditLog)
READERS = frozenset({"owner", "admin", "auditor"})  # org roles that read the org's audit log
ORG_RESPONSES = {403: "Not an owner, admin or auditor of the organization", 404: "No such organization"}
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INSTANT = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,3})?Z$")
FILTER_QUERY = {
    "actor": {"type": "string", "maxLength": 200}, "action": {"type": "string", "maxLength": 200},
    "outcome": {"type": "string", "enum": ["success", "failure"]},
    "since": {"type": "string", "description": "YYYY-MM-DD or RFC 3339 UTC (…Z), inclusive"},
    "until": {"type": "string", "description": "YYYY-MM-DD (through that day) or RFC 3339 UTC, exclusive"},
}


def install(app: web.Application) -> None:
    from .pages import audit as pages_audit  # the HTML view and the compliance report

    async def audit_service(app: web.Application):
        services = app[SERVICES]
        log = app[AUDIT] = open_audit_log(services.db, services.ledger, services.settings.data_dir / "keys",
                                          services.settings.audit)
        log.start(seal=app[WORKER].leader)  # every worker writes its buffered events; one seals and prunes
        yield
        await log.stop()

    app.cleanup_ctx.append(audit_service)
    app.router.add_routes(routes)
    app.router.add_routes(pages_audit.routes)


async def audit_download(request: web.Request, target: DownloadTarget) -> None:
    """Called by the bundle download for signed-in callers (web/bundle_files.py)."""
    await request.app[AUDIT].record_download(request[PRINCIPAL], target.package_id,
                                             f"{target.namespace}/{target.name}@{target.version}")


def parse_instant(value: str, name: str, *, end: bool = False) -> int:
    """Milliseconds from a day (its start; with `end`, the next day's start) or an RFC 3339 UTC instant."""
    try:
        if _DAY.match(value):
            seconds = calendar.timegm(time.strptime(value, "%Y-%m-%d")) + (86400 if end else 0)
            return seconds * 1000
        match = _INSTANT.match(value)
        if match:
            seconds = calendar.timegm(time.strptime(f"{match[1]} {match[2]}:{match[3]}:{match[4]}", "%Y-%m-%d %H:%M:%S"))
            return seconds * 1000 + int((match[5] or ".0")[1:].ljust(3, "0"))
    except ValueError:
        pass
    raise InvalidInput(f"{name} must be a day (YYYY-MM-DD) or an RFC 3339 UTC time (…Z)", code="invalid_time",
                       details={"parameter": name})


def parse_filters(query, org_id: int | None) -> Filters:
    values = {}
    for name in ("actor", "action"):
        value = query.get(name, "").strip()
        if len(value) > 200:
            raise InvalidInput(f"{name} is at most 200 characters", code="invalid_filter", details={"parameter": name})
        values[name] = check_text(value, name) or None if value else None
    outcome = query.get("outcome") or None
    if outcome not in (None, "success", "failure"):
        raise InvalidInput("outcome is success or failure", code="invalid_filter", details={"parameter": "outcome"})
    since = parse_instant(query["since"], "since") if query.get("since") else None
    until = parse_instant(query["until"], "until", end=True) if query.get("until") else None
    return Filters(org_id=org_id, outcome=outcome, since_ms=since, until_ms=until, **values)


def _int(query, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidInput(f"{name} must be a whole number from {low} to {high}", code="invalid_parameter",
                           details={"parameter": name})
    return int(raw)


async def reader_org(request: web.Request, principal: Principal) -> tuple[int, str]:
    """The path's org if the caller may read its audit log; a foreign org answers like a missing one (404)."""
    org = await request.app[SERVICES].accounts.visible_org(principal, request.match_info["slug"])
    if not principal.is_admin and principal.role_in(org.id) not in READERS:
        raise Forbidden("only owners, admins and auditors of this organization read its audit log")
    return org.id, org.slug


async def scope_of(request: web.Request) -> tuple[int | None, str | None]:
    """(org_id, slug) for /api/orgs/{slug}/audit/...; (None, None) for a site administrator's whole-site routes."""
    if "slug" in request.match_info:
        return await reader_org(request, caller(request))
    return None, None


async def events_page(request: web.Request) -> dict:
    org_id, _ = await scope_of(request)
    query = request.query
    filters = parse_filters(query, org_id)
    if org_id is None and query.get("org"):  # a site administrator narrowing to one org
        org = await request.app[SERVICES].accounts.visible_org(caller(request), query["org"][:100])
        filters = Filters(**{**filters.__dict__, "org_id": org.id})
    limit = _int(query, "limit", 50, 1, MAX_PAGE)
    rows = await request.app[AUDIT].events(filters, before_id=_int(query, "before", None, 1, 2**62), limit=limit)
    following = None
    if len(rows) == limit:
        following = urlencode({**{k: v for k, v in query.items() if k != "before"}, "before": rows[-1]["id"]})
    return {"events": [event_view(r) for r in rows], "next": f"?{following}" if following else None}


@routes.get("/api/audit/events")
@allow(site_admin())
@documented("Audit events of the whole appliance, newest first (site administrators)", tags=["audit"],
            query={**FILTER_QUERY, "org": {"type": "string", "maxLength": 100}, "before": {"type": "integer"},
                   "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}})
async def site_events(request: web.Request) -> web.Response:
    return web.json_response(await events_page(request), headers={"Cache-Control": "private, no-store"})


@routes.get("/api/orgs/{slug}/audit/events")
@allow(signed_in("read", org="path:slug"))
@documented("The organization's audit events, newest first (owners, admins, auditors)", tags=["audit"],
            query={**FILTER_QUERY, "before": {"type": "integer"},
                   "limit": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE}},
            responses={200: "OK", **ORG_RESPONSES})
async def org_events(request: web.Request) -> web.Response:
    return web.json_response(await events_page(request), headers={"Cache-Control": "private, no-store"})


async def _export(request: web.Request) -> web.StreamResponse:
    fmt = request.query.get("format", "jsonl")
    if fmt not in FORMATS:
        raise InvalidInput(f"format is one of {', '.join(FORMATS)}", code="invalid_format")
    org_id, slug = await scope_of(request)
    filters = parse_filters(request.query, org_id)
    log = request.app[AUDIT]
    await log.record_now(_actor(request), "audit.export", org_id=org_id, target=slug or "site",
                         details={"format": fmt, "filters": _described(filters)})
    response = web.StreamResponse(headers={
        "Content-Type": "application/x-ndjson" if fmt == "jsonl" else "text/plain; charset=utf-8",
        "Content-Disposition": f'attachment; filename="audit-{slug or "site"}.{"jsonl" if fmt == "jsonl" else "log"}"',
        "Cache-Control": "private, no-store"})
    await response.prepare(request)
    hostname = socket.gethostname()
    batch: list[dict] = []
    async for row in log.all_events(filters):
        batch.append(event_view(row))
        if len(batch) >= 500:
            await response.write("".join(render(batch, fmt, hostname)).encode())
            batch = []
    await response.write("".join(render(batch, fmt, hostname)).encode())
    await response.write_eof()
    return response


def _actor(request: web.Request) -> audit.Actor:
    principal = caller(request)
    return audit.Actor(principal.id, principal.user.username)


def _described(filters: Filters) -> dict:
    return {k: v for k, v in filters.__dict__.items() if v is not None and k != "org_id"}


EXPORT_QUERY = {**FILTER_QUERY, "format": {"type": "string", "enum": list(FORMATS)}}


@routes.get("/api/audit/export")
@allow(site_admin())
@documented("Export the whole appliance's audit events (JSON Lines, CEF or RFC 5424 syslog); audited",
            tags=["audit"], query=EXPORT_QUERY)
async def site_export(request: web.Request) -> web.StreamResponse:
    return await _export(request)


@routes.get("/api/orgs/{slug}/audit/export")
@allow(signed_in("read", org="path:slug"))
@documented("Export the organization's audit events (JSON Lines, CEF or RFC 5424 syslog); audited",
            tags=["audit"], query=EXPORT_QUERY, responses={200: "OK", **ORG_RESPONSES})
async def org_export(request: web.Request) -> web.StreamResponse:
    return await _export(request)


async def _push(request: web.Request) -> web.Response:
    settings = request.app[SERVICES].settings.audit
    if not settings.syslog_host:
        raise Conflict("no syslog collector is configured ([audit] syslog_host)", code="syslog_not_configured")
    org_id, slug = await scope_of(request)
    filters = parse_filters(request.query, org_id)
    log = request.app[AUDIT]
    events = [event_view(row) async for row in log.all_events(filters)]
    hostname = socket.gethostname()
    messages = [m.rstrip("\n") for m in render(events, "syslog", hostname)]
    target = f"{settings.syslog_host}:{settings.syslog_port}"
    try:
        sent = await push_syslog(settings.syslog_host, settings.syslog_port, messages, settings.syslog_timeout_seconds)
    except (OSError, TimeoutError) as exc:
        await log.record_now(_actor(request), "audit.export", org_id=org_id, target=slug or "site", outcome="failure",
                             reason=type(exc).__name__, details={"format": "syslog", "collector": target})
        raise UpstreamFailed(f"the syslog collector {target} did not take the events", code="collector_unreachable")
    await log.record_now(_actor(request), "audit.export", org_id=org_id, target=slug or "site",
                         details={"format": "syslog", "collector": target, "events": sent,
                                  "filters": _described(filters)})
    return web.json_response({"sent": sent, "collector": target})


@routes.post("/api/audit/push")
@allow(site_admin())
@documented("Push the appliance's audit events to the configured syslog collector (RFC 5424 over TCP)",
            tags=["audit"], query=FILTER_QUERY, responses={200: "OK", 409: "No collector configured",
                                                            502: "The collector is unreachable"})
async def site_push(request: web.Request) -> web.Response:
    return await _push(request)


@routes.post("/api/orgs/{slug}/audit/push")
@allow(signed_in("account", org="path:slug"))
@documented("Push the organization's audit events to the configured syslog collector (RFC 5424 over TCP)",
            tags=["audit"], query=FILTER_QUERY, responses={200: "OK", 409: "No collector configured",
                                                            502: "The collector is unreachable", **ORG_RESPONSES})
async def org_push(request: web.Request) -> web.Response:
    return await _push(request)
