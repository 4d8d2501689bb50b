"""Pages of the market's dashboards: the creator's earnings and payouts (/account/earnings, with ?org= for an
org's), a printable receipt per order (/account/receipts/{id}), and the operator's /admin/market. The buyer's
purchases page is web/pages/market.py. Charts are server-rendered SVG (web/pages/chart.py); no script."""

from __future__ import annotations

from aiohttp import web

from ...errors import DomainError, InvalidInput
from ...market import dashboard
from ...market.money import journal_text
from ...market.payouts import creator_of
from ..access import allow, browser_session, site_admin
from ..api_dashboards import creator_view, receipt_of
from ..api_payouts import org_param
from ..auth import caller
from ..errors import status_for
from ..forms import read_form
from ..keys import SERVICES
from .chart import bar_chart
from .render import redirect, render

routes = web.RouteTableDef()
CREATOR_PAGE = browser_session("publish")
NOTICES = {"method": "Payout method saved."}


def money(values: dict) -> dict:
    """Journal amounts as text for the page: {"msat": {"available": 1_600_000}} -> {"sat": {"available": "1600 sat"}}."""
    return {journal_text(currency, 0).split()[-1]: {key: journal_text(currency, amount) for key, amount in row.items()}
            for currency, row in values.items()}


async def earnings_page(request: web.Request, status: int = 200, notice: str | None = None) -> web.Response:
    view = await creator_view(request)
    for payout in view["payouts"]:
        payout["amount_text"] = journal_text(payout["currency"], payout["amount"])
    for buyer in view["top_buyers"]:
        buyer["total_text"] = journal_text(buyer["currency"], buyer["total"])
    payouts = request.app[SERVICES].market.payouts
    await payouts.refresh_ready(view["creator"])
    return await render(request, "market/earnings.html", status=status, view=view, earnings=money(view["earnings"]),
                        sales=bar_chart(view["sales"]), calls=bar_chart(view["invocations"]),
                        methods=await payouts.methods(view["creator"]), available=sorted(payouts.payers),
                        org=org_param(request), notice=notice or NOTICES.get(request.query.get("saved", "")),
                        failed=status >= 400)


@routes.get("/account/earnings")
@allow(CREATOR_PAGE)
async def earnings(request: web.Request) -> web.Response:
    return await earnings_page(request)


@routes.post("/account/earnings/payout-method")
@allow(browser_session("account"))  # where money goes: an account setting, like the JSON API's
async def set_payout_method(request: web.Request) -> web.Response:
    form = await read_form(request)
    principal = caller(request)
    org = str(form.get("org") or "")[:39] or None
    try:
        creator, org_id = creator_of(principal, org)
        kind = str(form.get("kind", ""))
        if kind not in ("lightning", "stripe"):
            raise InvalidInput("choose Lightning or Stripe", code="invalid_payout_method")
        result = await request.app[SERVICES].market.payouts.set_method(
            principal, creator, org_id, kind, str(form.get("destination", "")) or None)
    except DomainError as exc:
        return await earnings_page(request, status_for(exc), exc.message)
    if result.get("onboarding_url"):
        raise web.HTTPSeeOther(result["onboarding_url"])  # Stripe's onboarding, which returns to this page
    raise redirect("/account/earnings", org=org, saved="method")


@routes.get("/account/receipts/{order_id:\\d{1,18}}")
@allow(browser_session("account"))
async def receipt_page(request: web.Request) -> web.Response:
    return await render(request, "market/receipt.html", receipt=await receipt_of(request))


@routes.get("/admin/market")
@allow(site_admin(page=True, session_only=True))
async def admin_market(request: web.Request) -> web.Response:
    overview = await dashboard.admin_overview(request.app[SERVICES].db)
    return await render(request, "admin/market.html", overview=overview, revenue=money(overview["revenue"]))
