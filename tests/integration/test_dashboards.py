"""The market's dashboards: the creator's earnings (JSON, page, `mcpstore stats`), the buyer's subscriptions and
receipts, the operator's overview; and that each shows only the caller's own data.

Sales are recorded with the manual provider (offline payments through the grants API); one refund and the
gateway's invocations are written straight into the database as the Stripe refund path and the gateway would
(both have their own tests)."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from mcpstore_appliance.market import journal, orders, settle
from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.seed import publish
from tests.stripe_fixtures import stripe_settings

from .test_market_lnbits import post

SUB = {"pricing": "subscription", "amount": "25.00", "currency": "usd"}


class Confirms:
    name = "test"


@pytest.fixture
async def shop(start_app):
    """alice sells alice/sub; bob bought it twice offline (one refunded); acme (carol owner, dave member) and
    other (erin admin) are orgs; root administers the site."""
    app = await start_app()
    accounts = app.services.accounts
    users = {}
    for name in ("alice", "bob", "carol", "dave", "erin"):
        users[name] = await app.user(name)
    users["root"] = await app.user("root", admin=True)
    await accounts.create_org(None, "acme", "Acme", owner=users["carol"][0])
    await accounts.set_member(None, "acme", "dave", "member")
    await accounts.create_org(None, "other", "Other", owner=users["erin"][0])
    await publish(app, users["alice"][1], "sub", options=SUB)
    await post(app, "/api/packages/alice/sub/grants", users["alice"][1], 201,
               json={"user": "bob", "reference": "bank-1", "amount": "25.00"})
    await refunded_sale(app, users["bob"][0].id, users["alice"][0].id)
    package = await app.services.db.fetch_value("SELECT id FROM packages WHERE name = 'sub'")
    version = await app.services.db.fetch_value("SELECT id FROM versions WHERE package_id = ?", (package,))
    async with app.services.db.write() as tx:
        for n in range(3):
            await tx.insert("invocations", {"at": time.time() - n, "user_id": users["bob"][0].id,
                                            "package_id": package, "version_id": version, "tool": "t", "via": "mcp",
                                            "outcome": "ok", "duration_ms": 1.0})
    return app, users


async def refunded_sale(app, buyer: int, creator: int) -> None:
    db = app.services.db
    package = await db.fetch_value("SELECT id FROM packages WHERE name = 'sub'")
    async with db.write() as tx:
        order = await orders.create(tx, kind="purchase", buyer_user_id=buyer, package_id=package, major=1,
                                    amount=1000, currency="usd", creator=f"user:{creator}", creator_share_bp=8000,
                                    provider="test", provider_ref="refund-me")
    from mcpstore_appliance.market.providers.base import Payment

    paid = Payment(reference="refund-me", paid=True, amount=1000, currency="usd", payment_id="pi_refund_me")
    assert await settle.settle(db, Confirms, order, paid) == "credited"
    assert await settle.refund(db, "test", "pi_refund_me") == ["refund-me"]


async def get(app, path: str, token: str | None):
    status, body, _ = await app.client.with_token(token).get(path)
    return status, body


async def test_the_creator_dashboard_shows_earnings_sales_calls_buyers_and_refunds(shop):
    app, users = shop
    status, view = await get(app, "/api/market/dashboard?days=7", users["alice"][1])
    assert status == 200, view
    assert view["earnings"] == {"usd": {"earned": 2000, "available": 2000, "pending": 0, "paid_out": 0}}
    assert len(view["sales"]) == 7 and sum(p["count"] for p in view["sales"]) == 2
    assert sum(p["count"] for p in view["invocations"]) == 3
    assert view["top_buyers"][0]["username"] == "bob" and view["top_buyers"][0]["total"] == 2800
    assert [r["package"] for r in view["refunds"]] == ["alice/sub"]
    assert await journal.check(app.services.db) == []


async def test_dashboards_show_only_the_callers_own_data(shop):
    app, users = shop
    status, view = await get(app, "/api/market/dashboard", users["bob"][1])
    assert status == 200 and view["earnings"] == {} and view["top_buyers"] == [] and view["creator"].startswith("user:")
    assert view["creator"] != (await get(app, "/api/market/dashboard", users["alice"][1]))[1]["creator"]
    assert (await get(app, "/api/market/dashboard?org=acme", users["dave"][1]))[0] == 403  # a member, not admin
    assert (await get(app, "/api/market/dashboard?org=acme", users["erin"][1]))[0] == 404  # another org's admin
    assert (await get(app, "/api/market/dashboard?org=acme", users["carol"][1]))[0] == 200  # its owner
    assert (await get(app, "/api/market/payouts?org=acme", users["erin"][1]))[0] == 404
    assert (await get(app, "/api/market/dashboard?days=0", users["alice"][1]))[0] == 400
    assert (await get(app, "/api/market/dashboard", None))[0] == 401
    order = await app.services.db.fetch_value("SELECT id FROM market_orders WHERE provider = 'manual'")
    status, receipt = await get(app, f"/api/market/receipts/{order}", users["bob"][1])
    assert status == 200 and receipt["package"] == "alice/sub" and receipt["amount_display"] == "25.00"
    for other in ("alice", "carol", "erin"):
        assert (await get(app, f"/api/market/receipts/{order}", users[other][1]))[0] == 404
    assert (await get(app, "/api/admin/market/overview", users["alice"][1]))[0] == 403
    status, overview = await get(app, "/api/admin/market/overview", users["root"][1])
    assert status == 200 and overview["revenue"]["usd"] == {"revenue": 500, "fees": 0, "owed_to_creators": 2000}
    assert overview["reconciliation"]["journal"] == []


async def session(app, user) -> dict:
    session_id, _ = await app.services.accounts.start_session(user)
    return {"Cookie": f"{SESSION_COOKIE}={session_id}"}


async def test_the_pages_show_charts_payouts_receipts_and_the_admin_overview(shop):
    app, users = shop
    browser = app.client.with_token(None)
    alice, bob, root = [await session(app, users[n][0]) for n in ("alice", "bob", "root")]
    status, html, _ = await browser.get("/account/earnings", headers=alice)
    page = html.decode()
    assert status == 200 and 'id="sales-chart"' in page and 'id="calls-chart"' in page
    assert "20.00 usd" in page and "<td>bob</td>" in page and 'id="refunds"' in page
    status, html, _ = await browser.get("/account/earnings", headers=bob)
    assert status == 200 and "20.00 usd" not in html.decode() and "<td>bob</td>" not in html.decode()
    order = await app.services.db.fetch_value("SELECT id FROM market_orders WHERE provider = 'manual'")
    status, html, _ = await browser.get(f"/account/receipts/{order}", headers=bob)
    assert status == 200 and "25.00 usd" in html.decode() and "bank-1" in html.decode()
    assert (await browser.get(f"/account/receipts/{order}", headers=alice))[0] == 404
    status, html, _ = await browser.get("/account/purchases", headers=bob)
    page = html.decode()
    assert status == 200 and f'href="/account/receipts/{order}"' in page and 'id="licence-keys"' in page
    assert (await browser.get("/admin/market", headers=alice))[0] == 403
    status, html, _ = await browser.get("/admin/market", headers=root)
    assert status == 200 and 'id="journal-sound"' in html.decode() and 'data-currency="usd"' in html.decode()


async def test_mcpstore_stats_prints_the_dashboard(shop, tmp_path):
    app, users = shop
    env = {**os.environ, "MCPSTORE_TOKEN": users["alice"][1], "MCPSTORE_REGISTRY": app.base_url,
           "HOME": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcpstore_appliance.cli.main", "stats", "--days", "7",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    text = out.decode()
    assert process.returncode == 0, err
    assert "earned 20.00 usd, available 20.00 usd, pending 0.00 usd, paid out 0.00 usd" in text
    assert "bob: 28.00 usd (2 payments)" in text and "order" in text and "total 3" in text


async def test_refused_webhooks_are_listed_for_the_operator(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    _, root = await app.user("root", admin=True)
    body, headers = stripe_world.signed_event("payment_intent.succeeded", {"id": "pi_x"}, secret="whsec_forged")
    status, _, _ = await app.client.post("/api/payments/stripe/webhook", data=body, headers=headers)
    assert status == 400
    _, overview = await get(app, "/api/admin/market/overview", root)
    assert [(w["provider"], w["code"]) for w in overview["failed_webhooks"]] == [("stripe", "bad_signature")]
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_transactions") == 0
