"""JSON API of the curated mirror (catalog/mirror.py), site administrators only:

    GET  /api/admin/mirror/upstreams                  upstreams and their pinned ledger keys
    POST /api/admin/mirror/upstreams                  {"url", "key"?}: pin a key (given, or first use)
    POST /api/admin/mirror/imports                    {"upstream", "release", "org"}: import one release
    POST /api/admin/mirror/check                      look for newer upstream versions (they wait as pending)
    GET  /api/admin/mirror/pending?status=            pending (or approved, rejected) updates
    POST /api/admin/mirror/pending/{id}/approve       import it
    POST /api/admin/mirror/pending/{id}/reject        {"reason"?}
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..errors import InvalidInput
from .access import allow, site_admin
from .auth import caller
from .keys import SERVICES, WORKER
from .openapi import documented
from .util import client_ip, read_json

routes = web.RouteTableDef()
TAGS = ["mirror"]
ADMIN_ONLY = {401: "Not signed in", 403: "Site administrators only"}
REFUSALS = {400: "Malformed request or upstream URL", 404: "Unknown upstream, organization or update",
            409: "Already decided, or a different version exists here", 413: "Bundle larger than the limit",
            422: "The upstream's ledger does not vouch for the bytes, or our scans reject them",
            502: "The upstream failed or answered nonsense"}


class UpstreamBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2000)
    key: str | None = Field(None, max_length=500, description="the upstream's ledger verifier key; absent: pin "
                                                              "the key it serves now (first use)")


class ImportBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    upstream: str = Field(max_length=2000)
    release: str = Field(max_length=300, description="namespace/name@version at the upstream")
    org: str = Field(max_length=60, description="the organization here that the release is published under")
    visibility: Literal["public", "org", "private"] | None = Field(
        None, description="of a package new here (default org: the organization's members); kept on updates")


class RejectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


def _mirror(request: web.Request):
    return request.app[SERVICES].mirror


def _pending_id(request: web.Request) -> int:
    return int(request.match_info["pending_id"])


@routes.get("/api/admin/mirror/upstreams")
@allow(site_admin())
@documented("Upstream registries of the curated mirror and their pinned ledger keys", tags=TAGS,
            responses={200: "OK", **ADMIN_ONLY})
async def list_upstreams(request: web.Request) -> web.Response:
    return web.json_response({"upstreams": await _mirror(request).upstreams()})


@routes.post("/api/admin/mirror/upstreams")
@allow(site_admin())
@documented("Add an upstream registry, pinning its ledger key: the one given, or the one it serves now "
            "(recorded as first-use). Adding it again with the same key changes nothing", tags=TAGS,
            body=UpstreamBody.model_json_schema(),
            responses={201: "Added", 200: "Already added with this key", **REFUSALS, **ADMIN_ONLY})
async def add_upstream(request: web.Request) -> web.Response:
    body = await read_json(request, UpstreamBody)
    answer = await _mirror(request).add_upstream(caller(request), body.url, body.key, ip=client_ip(request))
    return web.json_response(answer, status=201 if answer["created"] else 200)


@routes.post("/api/admin/mirror/imports")
@allow(site_admin())
@documented("Import a release from an upstream: its checkpoint (signed by the pinned key), inclusion proof and "
            "bytes are verified, then it is published here through the usual scans (or quarantined) with its "
            "provenance. Importing it again answers the first import (200)", tags=TAGS,
            body=ImportBody.model_json_schema(),
            responses={201: "Imported (published or quarantined)", 200: "Imported before", **REFUSALS, **ADMIN_ONLY})
async def import_release(request: web.Request) -> web.Response:
    body = await read_json(request, ImportBody)
    answer = await _mirror(request).import_release(caller(request), body.upstream, body.release, body.org,
                                                   ip=client_ip(request), visibility=body.visibility)
    return web.json_response(answer, status=201 if answer["created"] else 200)


@routes.post("/api/admin/mirror/check")
@allow(site_admin())
@documented("Look for newer upstream versions of mirrored packages; they wait as pending for approval",
            tags=TAGS, responses={200: "New pending updates, and the upstreams that failed", **ADMIN_ONLY})
async def check(request: web.Request) -> web.Response:
    return web.json_response(await _mirror(request).check())


@routes.get("/api/admin/mirror/pending")
@allow(site_admin())
@documented("Updates of mirrored packages: pending (default), approved or rejected", tags=TAGS,
            query={"status": {"type": "string", "enum": ["pending", "approved", "rejected", "all"]}},
            responses={200: "OK", 400: "Unknown status", **ADMIN_ONLY})
async def pending(request: web.Request) -> web.Response:
    status = request.query.get("status", "pending")
    if status not in ("pending", "approved", "rejected", "all"):
        raise InvalidInput("status is pending, approved, rejected or all", code="invalid_parameter")
    return web.json_response({"updates": await _mirror(request).pending(None if status == "all" else status)})


@routes.post(r"/api/admin/mirror/pending/{pending_id:\d{1,18}}/approve")
@allow(site_admin())
@documented("Approve a pending update: it is imported, verified and scanned like any import", tags=TAGS,
            responses={201: "Imported", **REFUSALS, **ADMIN_ONLY})
async def approve(request: web.Request) -> web.Response:
    answer = await _mirror(request).approve(caller(request), _pending_id(request), ip=client_ip(request))
    return web.json_response(answer, status=201 if answer["created"] else 200)


@routes.post(r"/api/admin/mirror/pending/{pending_id:\d{1,18}}/reject")
@allow(site_admin())
@documented("Reject a pending update; it is not offered again", tags=TAGS, body=RejectBody.model_json_schema(),
            responses={200: "Rejected", 404: "No such update", 409: "Already decided", **ADMIN_ONLY})
async def reject(request: web.Request) -> web.Response:
    body = await read_json(request, RejectBody) if request.body_exists else RejectBody()
    answer = await _mirror(request).reject(caller(request), _pending_id(request), body.reason,
                                           ip=client_ip(request))
    return web.json_response(answer)


def install(app: web.Application) -> None:
    """The routes, the admin page, and the update-check timer (`[mirror] check_interval_seconds`, 0 = off)."""
    from .pages import mirror as mirror_pages

    app.router.add_routes(routes)
    app.router.add_routes(mirror_pages.routes)

    async def check_timer(app: web.Application):
        services = app[SERVICES]
        if app[WORKER].leader:
            services.mirror.start(services.settings.mirror.check_interval_seconds)
        yield
        await services.mirror.stop()

    app.cleanup_ctx.append(check_timer)
