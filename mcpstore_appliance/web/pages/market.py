"""The buyer's pages: the buy form of a package page, and /account/purchases (balances, orders, access, renewal
invoices due, licence keys: made there, shown once, revoked) where a Lightning invoice is shown as text and as a
QR code until it is paid.

The QR code is drawn by `segno` (pure Python, no image library): an SVG data URI, which the page's
Content-Security-Policy allows for images. A page with an unpaid order reloads itself every few seconds, and each
load of an order named in the address asks its provider (the same idempotent crediting as the webhooks).
"""

from __future__ import annotations

import segno
from aiohttp import web

from ...errors import DomainError
from ...market.dashboard import subscriptions
from ...market.money import journal_text
from ..access import browser_session, allow
from ..auth import caller
from ..forms import read_form
from ..util import client_ip
from .render import redirect, render
from ..keys import SERVICES

routes = web.RouteTableDef()
BUYER_PAGE = browser_session("account")


def qr_code(bolt11: str) -> str:
    # Upper case fits the QR alphanumeric mode (a smaller code); wallets read BOLT11 in either case.
    return segno.make(f"lightning:{bolt11}".upper(), error="m").svg_data_uri(scale=4, border=2)


@routes.get("/account/purchases")
@allow(BUYER_PAGE)
async def purchases_page(request: web.Request, *, notice: str | None = None,
                         new_key: dict | None = None) -> web.Response:
    market = request.app[SERVICES].market
    principal = caller(request)
    focus = None
    order_id = request.query.get("order", "")
    if order_id.isdigit() and len(order_id) <= 18:
        try:
            focus = await market.order(principal, int(order_id), refresh=True)
        except DomainError as exc:
            notice = exc.message
    mine = await market.purchases(principal)
    pending = focus if focus and focus["status"] == "pending" else None
    return await render(request, "market/purchases.html", focus=focus, notice=notice,
                        qr=qr_code(pending["bolt11"]) if pending and pending["bolt11"] else None,
                        balances=[journal_text(c, v) for c, v in sorted(mine["balances"].items())],
                        orders=mine["orders"], entitlements=mine["entitlements"], refresh=pending is not None,
                        renewals=[{**r, "qr": qr_code(r["bolt11"])} for r in mine["renewals_due"]],
                        subscriptions=await subscriptions(market.db, principal.id), new_key=new_key,
                        licence_keys=await request.app[SERVICES].usage.licences.list(principal))


@routes.post("/account/licence-keys")
@allow(BUYER_PAGE)
async def create_licence_key(request: web.Request) -> web.Response:
    """A licence key made from the page: its secret is in this answer only (rendered, never in an address)."""
    form = await read_form(request)
    namespace, _, name = str(form.get("package", "")).strip().partition("/")
    try:
        created = await request.app[SERVICES].usage.licences.create(caller(request), namespace[:100], name[:100],
                                                                    client_ip(request))
    except DomainError as exc:  # not bought, already has one, no such package: said on the page
        return await purchases_page(request, notice=exc.message)
    return await purchases_page(request, new_key=created)


@routes.post("/account/licence-keys/{licence_id:\\d{1,18}}/revoke")
@allow(BUYER_PAGE)
async def revoke_licence_key(request: web.Request) -> web.Response:
    await read_form(request)
    try:
        await request.app[SERVICES].usage.licences.revoke(caller(request), int(request.match_info["licence_id"]),
                                                          client_ip(request))
    except DomainError as exc:
        return await purchases_page(request, notice=exc.message)
    raise redirect("/account/purchases")


@routes.post("/account/subscriptions/{order_id:\\d{1,18}}/cancel")
@allow(BUYER_PAGE)
async def cancel_subscription(request: web.Request) -> web.Response:
    await read_form(request)
    try:
        await request.app[SERVICES].market.cancel(caller(request), int(request.match_info["order_id"]))
    except DomainError as exc:
        return await purchases_page(request, notice=exc.message)
    raise redirect("/account/purchases")


@routes.post("/packages/{namespace}/{name}/buy")
@allow(BUYER_PAGE)
async def buy_form(request: web.Request) -> web.Response:
    form = await read_form(request)
    body = {key: form[key] for key in ("provider", "amount") if form.get(key)}
    m = request.match_info
    order = await request.app[SERVICES].market.buy(caller(request), m["namespace"], m["name"], body)
    if order.get("pay_url"):
        raise web.HTTPSeeOther(order["pay_url"])  # Stripe's Checkout page, which returns to the purchases page
    raise redirect("/account/purchases", order=order["id"])
