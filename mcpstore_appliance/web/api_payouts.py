"""JSON API of creator payouts, and the payout timer of a serving appliance.

    GET  /api/market/payouts?org=slug        payout methods, minimums and the payouts of the caller (or an org)
    PUT  /api/market/payout-method           set a Lightning destination, or start Stripe Connect onboarding
    POST /api/admin/market/payouts/run       run a payout batch now (site administrators)
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from aiohttp import web
from pydantic import Field

from ..market.payouts import creator_of, minimum
from ..text import OneLine
from .access import allow, signed_in, site_admin
from .api_market import Body
from .auth import caller
from .keys import SERVICES, WORKER
from .openapi import documented
from .util import read_json

log = logging.getLogger("mcpstore.market")
routes = web.RouteTableDef()
CREATOR = signed_in("publish", org="allowed")  # an org-bound token sees its own org's only (creator_of)
CREATOR_SETTINGS = signed_in("account", org="allowed")
NO_STORE = {"Cache-Control": "no-store"}


class MethodBody(Body):
    kind: Literal["lightning", "stripe"]
    destination: str | None = Field(None, min_length=3, max_length=2000,
                                     description="Lightning address, lnurl1… or LNURL-pay URL (kind lightning)")
    org: OneLine | None = Field(None, max_length=39, description="set the org's method (owner or admin)")


def org_param(request: web.Request) -> str | None:
    value = request.query.get("org")
    return value[:39] if value else None


@routes.get("/api/market/payouts")
@allow(CREATOR)
@documented("The caller's (or an org's) payout methods, payout minimums (journal units: cents, msat) and payouts "
            "with their status", tags=["market"], query={"org": {"type": "string"}},
            responses={200: "Methods and payouts", 403: "Not an owner or admin of the org", 404: "No such org"})
async def payouts(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    creator, _ = creator_of(caller(request), org_param(request))
    service = services.market.payouts
    await service.refresh_ready(creator)
    return web.json_response({
        "creator": creator, "methods": await service.methods(creator), "payouts": await service.list(creator),
        "minimum": {c: minimum(services.settings.market, c) for c in ("usd", "eur", "msat")},
        "available_methods": sorted(service.payers)}, headers=NO_STORE)


@routes.put("/api/market/payout-method")
@allow(CREATOR_SETTINGS)
@documented("Set where payouts go: a Lightning destination (msat), or a Stripe Connect account (usd, eur; answered "
            "with its onboarding link)", tags=["market"], body=MethodBody.model_json_schema(),
            responses={200: "The method (onboarding_url for Stripe)", 400: "Bad destination or method unavailable",
                       403: "Not an owner or admin of the org", 502: "Stripe did not answer"})
async def set_method(request: web.Request) -> web.Response:
    body = await read_json(request, MethodBody)
    principal = caller(request)
    creator, org_id = creator_of(principal, body.org)
    service = request.app[SERVICES].market.payouts
    result = await service.set_method(principal, creator, org_id, body.kind, body.destination)
    return web.json_response(result, headers=NO_STORE)


@routes.post("/api/admin/market/payouts/run")
@allow(site_admin())
@documented("Run a payout batch now: resume open payouts, then pay every creator above the minimum",
            tags=["market"], responses={200: "The batch report"})
async def run_payouts(request: web.Request) -> web.Response:
    report = await request.app[SERVICES].market.payouts.run()
    return web.json_response(report.as_json())


def install(app: web.Application) -> None:
    """Payouts (and the creator's, buyer's and admin's dashboards): routes, pages, the payout timer."""
    from . import api_dashboards
    from .pages import dashboards as pages_dashboards

    app.router.add_routes(routes)
    app.router.add_routes(api_dashboards.routes)
    app.router.add_routes(pages_dashboards.routes)

    async def payout_timer(app: web.Application):
        market = app[SERVICES].market
        interval = market.settings.payouts.interval_seconds
        task = asyncio.create_task(_every(market.payouts, interval)) \
            if interval > 0 and market.payouts.payers and app[WORKER].leader else None
        yield
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    app.cleanup_ctx.append(payout_timer)


async def _every(service, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await service.run()
        except Exception:  # a provider down now is asked again next time; open payouts are resumed then
            log.exception("payout batch failed")
