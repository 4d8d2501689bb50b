"""JSON of the market's dashboards: the creator's (what `mcpstore stats` prints), the buyer's subscriptions and
receipts, the operator's overview. Each answers only the caller's own data (market/dashboard.py).

    GET /api/market/dashboard?org=slug&days=30      earnings, sales and invocations per day, top buyers, refunds
    GET /api/market/subscriptions                   the caller's subscriptions with their next renewal
    GET /api/market/receipts/{order_id}             a receipt of one of the caller's paid orders
    GET /api/admin/market/overview                  revenue per currency, failed webhooks, reconciliation
"""

from __future__ import annotations

from aiohttp import web

from ..errors import NotFound
from ..market import dashboard
from ..market.payouts import creator_of
from .access import allow, site_admin
from .api_market import BUYER
from .api_payouts import CREATOR, NO_STORE, org_param
from .auth import caller
from .keys import SERVICES
from .openapi import documented
from .util import query_int

routes = web.RouteTableDef()


async def creator_view(request: web.Request) -> dict:
    """The creator dashboard of the caller (or of an org they own or administer), with their payouts."""
    creator, _ = creator_of(caller(request), org_param(request))
    days = query_int(request, "days", 30, 1, 366)
    services = request.app[SERVICES]
    found = await dashboard.creator_dashboard(services.db, creator, days)
    found["payouts"] = await services.market.payouts.list(creator, limit=20)
    return found


@routes.get("/api/market/dashboard")
@allow(CREATOR)
@documented("The creator dashboard: earnings per currency (earned, available, pending, paid_out; cents or msat), "
            "sales and invocations per day, top buyers, refunds, recent payouts", tags=["market"],
            query={"org": {"type": "string"}, "days": {"type": "integer", "minimum": 1, "maximum": 366}},
            responses={200: "The dashboard", 400: "Bad days", 403: "Not an owner or admin of the org",
                       404: "No such org"})
async def creator_dashboard(request: web.Request) -> web.Response:
    return web.json_response(await creator_view(request), headers=NO_STORE)


@routes.get("/api/market/subscriptions")
@allow(BUYER)
@documented("The caller's subscriptions, with the next renewal (the end of the paid period)", tags=["market"],
            responses={200: "Subscriptions"})
async def subscriptions(request: web.Request) -> web.Response:
    found = await dashboard.subscriptions(request.app[SERVICES].db, caller(request).id)
    return web.json_response({"subscriptions": found}, headers=NO_STORE)


@routes.get("/api/market/receipts/{order_id:\\d{1,18}}")
@allow(BUYER)
@documented("A receipt of one of the caller's paid orders", tags=["market"],
            responses={200: "The receipt", 404: "No such paid order of yours"})
async def receipt(request: web.Request) -> web.Response:
    return web.json_response(await receipt_of(request), headers=NO_STORE)


async def receipt_of(request: web.Request) -> dict:
    found = await dashboard.receipt(request.app[SERVICES].db, caller(request).id, int(request.match_info["order_id"]))
    if found is None:
        raise NotFound("no such paid order of yours", code="order_not_found")
    return found


@routes.get("/api/admin/market/overview")
@allow(site_admin())
@documented("The operator's view of the market: revenue, fees and what is owed to creators per currency, failed "
            "webhook deliveries, the reconciliation report, open or failed payouts", tags=["market"],
            responses={200: "The overview"})
async def overview(request: web.Request) -> web.Response:
    return web.json_response(await dashboard.admin_overview(request.app[SERVICES].db), headers=NO_STORE)
