"""JSON API of the marketplace: buying, the buyer's purchases, manual grants, provider webhooks, reconciliation.

    POST   /api/packages/{namespace}/{name}/purchase        a Checkout link, a BOLT11 invoice or a client secret
    POST   /api/packages/{namespace}/{name}/grants          manual provider: grant, or record an offline payment
    DELETE /api/packages/{namespace}/{name}/grants/{id}     manual provider: revoke
    POST   /api/market/credits                              top up the credit wallet of one currency (or an org's)
    GET    /api/market/purchases                            balances, orders, entitlements of the caller
    GET    /api/market/orders/{id}?refresh=true             one order (refresh: ask the provider first)
    POST   /api/market/orders/{id}/cancel                   cancel a Lightning subscription (access to the period end)
    POST   /api/payments/{stripe,lnbits}/webhook            provider webhooks (hints, re-checked)
    POST   /api/admin/market/reconcile                      journal against providers, now
"""

from __future__ import annotations

from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from ..market.reconcile import reconcile as run_reconcile
from ..text import OneLine
from .access import OPEN_PROBE, allow, signed_in, site_admin
from .auth import caller
from .openapi import documented
from .util import read_json
from .keys import SERVICES, WORKER

routes = web.RouteTableDef()
PACKAGE_PATH = "/api/packages/{namespace}/{name}"
BUYER = signed_in("account", org="allowed")  # an org-bound token buys only for its org (checked by the service)
MANAGER = signed_in("publish", org="allowed")


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PurchaseBody(Body):
    provider: Literal["stripe", "lnbits"] | None = None
    flow: Literal["checkout", "intent"] = "checkout"
    amount: str | None = Field(None, max_length=20, description="credit pack for per-call packages, e.g. \"20.00\"")
    org: OneLine | None = Field(None, max_length=39, description="buy for this org (owner or admin)")
    seats: list[OneLine] | None = Field(None, max_length=1000, description="named members; omitted: the whole org")


class CreditsBody(Body):
    currency: Literal["usd", "eur", "sat"]
    amount: str = Field(max_length=20)
    provider: Literal["stripe", "lnbits"] | None = None
    flow: Literal["checkout", "intent"] = "checkout"
    org: OneLine | None = Field(None, max_length=100, description="an org's slug: its credits, which its members' "
                                "per-call calls use when their own do not cover them (by its owner or admin)")


class GrantBody(Body):
    user: OneLine | None = Field(None, max_length=39)
    org: OneLine | None = Field(None, max_length=39)
    seats: list[OneLine] | None = Field(None, max_length=1000)
    major: int | None = Field(None, ge=0, le=1_000_000)
    reference: OneLine = Field(min_length=1, max_length=200)
    amount: str | None = Field(None, max_length=20, description="an offline payment's amount in the package's currency")


def market(request: web.Request):
    return request.app[SERVICES].market


ORDER_RESPONSES = {201: "The order, with pay_url (Checkout), bolt11 (Lightning) or client_secret",
                   400: "Free package, bad amount, below the card minimum, no provider", 401: "Not signed in",
                   403: "Not an admin of the org", 404: "No such package", 502: "The payment provider failed"}


@routes.post(PACKAGE_PATH + "/purchase")
@allow(BUYER)
@documented("Buy access: a subscription (per month, per major version) or a credit pack for a per-call package",
            tags=["market"], body=PurchaseBody.model_json_schema(), responses=ORDER_RESPONSES)
async def purchase(request: web.Request) -> web.Response:
    body = await read_json(request, PurchaseBody)
    m = request.match_info
    order = await market(request).buy(caller(request), m["namespace"], m["name"], body.model_dump())
    return web.json_response(order, status=201, headers={"Cache-Control": "no-store"})


@routes.post("/api/market/credits")
@allow(BUYER)
@documented("Top up the caller's credit wallet in one currency (per-call packages are paid from it), or with "
            "`org` the org's, which pays its members' calls when their own credits do not cover them",
            tags=["market"], body=CreditsBody.model_json_schema(), responses=ORDER_RESPONSES)
async def top_up(request: web.Request) -> web.Response:
    body = await read_json(request, CreditsBody)
    order = await market(request).top_up(caller(request), body.model_dump())
    return web.json_response(order, status=201, headers={"Cache-Control": "no-store"})


@routes.get("/api/market/purchases")
@allow(BUYER)
@documented("The caller's credit balances (minor units: cents, msat), orders and entitlements", tags=["market"],
            responses={200: "Purchases", 401: "Not signed in"})
async def purchases(request: web.Request) -> web.Response:
    return web.json_response(await market(request).purchases(caller(request)), headers={"Cache-Control": "no-store"})


@routes.get("/api/market/orders/{order_id:\\d{1,18}}")
@allow(BUYER)
@documented("One of the caller's orders; refresh=true asks the provider first (what `mcpstore buy` polls)",
            tags=["market"], query={"refresh": {"type": "boolean", "default": False}},
            responses={200: "The order", 404: "No such order of yours", 502: "The payment provider failed"})
async def order(request: web.Request) -> web.Response:
    refresh = request.query.get("refresh", "false").lower() in ("1", "true", "yes")
    found = await market(request).order(caller(request), int(request.match_info["order_id"]), refresh=refresh)
    return web.json_response(found, headers={"Cache-Control": "no-store"})


@routes.post("/api/market/orders/{order_id:\\d{1,18}}/cancel")
@allow(BUYER)
@documented("Cancel one of the caller's Lightning subscriptions: no more renewal invoices; access lasts to the end "
            "of the paid period", tags=["market"],
            responses={200: "Cancelled, with access_until", 400: "Not a Lightning subscription",
                       404: "No such order of yours"})
async def cancel(request: web.Request) -> web.Response:
    done = await market(request).cancel(caller(request), int(request.match_info["order_id"]))
    return web.json_response(done, headers={"Cache-Control": "no-store"})


@routes.post(PACKAGE_PATH + "/grants")
@allow(MANAGER)
@documented("Manual provider: grant access to a user, an org or named seats, optionally recording an offline "
            "payment (amount and reference)", tags=["market"], body=GrantBody.model_json_schema(),
            responses={201: "Granted", 400: "Invalid or duplicate reference", 403: "Not a manager",
                       404: "No such package, user or org"})
async def grant(request: web.Request) -> web.Response:
    body = await read_json(request, GrantBody)
    m = request.match_info
    values = body.model_dump(exclude_none=True)
    granted = await market(request).grant(caller(request), m["namespace"], m["name"], values)
    return web.json_response(granted, status=201)


@routes.delete(PACKAGE_PATH + "/grants/{entitlement_id:\\d{1,18}}")
@allow(MANAGER)
@documented("Manual provider: revoke an entitlement of this package", tags=["market"],
            responses={204: "Revoked", 403: "Not a manager", 404: "No such entitlement"})
async def revoke(request: web.Request) -> web.Response:
    m = request.match_info
    await market(request).revoke(caller(request), m["namespace"], m["name"], int(m["entitlement_id"]))
    return web.Response(status=204)


@routes.post("/api/payments/{provider:stripe|lnbits}/webhook")
@allow(OPEN_PROBE)  # providers authenticate by signature (Stripe) or by our HMAC in the URL (LNbits)
@documented("Payment provider webhooks: verified, then each payment re-checked with the provider and credited "
            "once", tags=["market"], body={"type": "object"},
            responses={200: "Taken (also for repeats)", 400: "Forged, stale or malformed", 404: "Provider not set up",
                       502: "The provider could not be asked; deliver again"})
async def webhook(request: web.Request) -> web.Response:
    raw = await request.read()  # the raw bytes: the signature covers them exactly
    outcomes = await market(request).webhook(request.match_info["provider"], raw, request.headers, request.query)
    return web.json_response({"received": True, "outcomes": outcomes})


@routes.post("/api/admin/market/reconcile")
@allow(site_admin())
@documented("Reconcile the journal with every provider now: credit what is missing, report what the provider "
            "does not know", tags=["market"], responses={200: "The report", 502: "A provider failed"})
async def reconcile(request: web.Request) -> web.Response:
    return web.json_response(await run_reconcile(market(request)))


def install_market(app: web.Application) -> None:
    """The market's routes and pages, and the reconciliation timer of a serving appliance."""
    from .pages import market as market_pages  # the buyer's pages, with the routes of the market

    app.router.add_routes(routes)
    app.router.add_routes(market_pages.routes)

    async def market_lifecycle(app: web.Application):
        if app[WORKER].leader:
            app[SERVICES].market.start(run_reconcile)
        yield  # the timer is stopped with the services (app.close_services)

    app.cleanup_ctx.append(market_lifecycle)
