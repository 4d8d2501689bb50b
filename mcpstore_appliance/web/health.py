"""Operator endpoints: /healthz (process up), /readyz (database and blob store reachable), /metrics."""

from __future__ import annotations

import asyncio
import hmac
import os

from aiohttp import web

from .access import OPEN_PROBE, allow
from .keys import SERVICES, WORKER

routes = web.RouteTableDef()


@routes.get("/healthz")
@allow(OPEN_PROBE)
async def healthz(request: web.Request) -> web.StreamResponse:
    return web.Response(text='{"status":"ok"}', content_type="application/json")


@routes.get("/readyz")
@allow(OPEN_PROBE)
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks = {}
    for name, probe in (("database", services.db.ping), ("blobs", services.blobs.ping)):
        try:
            checks[name] = bool(await asyncio.wait_for(probe(), timeout=5))
        except Exception:  # any failure of a dependency means "not ready", not a 500
            checks[name] = False
    ready = all(checks.values())
    answer = {"status": "ready" if ready else "unavailable", "checks": checks}
    role = request.app[WORKER]
    if role.count > 1:  # which process answered (`serve --workers N`): for operators and their probes
        answer["worker"] = {"number": role.index + 1, "of": role.count, "pid": os.getpid()}
    return web.json_response(answer, status=200 if ready else 503)


@routes.get("/metrics")
@allow(OPEN_PROBE)  # its own bearer token (server.metrics_token), unrelated to API tokens
async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    token = services.settings.server.metrics_token.get_secret_value()
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            return web.Response(status=401, text="metrics need the configured bearer token\n",
                                headers={"WWW-Authenticate": "Bearer"})
    return web.Response(text=services.metrics.render(), content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": "no-store"})
