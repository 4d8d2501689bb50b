"""Lightning subscription renewals against a real LNbits (FakeWallet): before a paid period ends the appliance
makes that order's next invoice (the reminder, on the buyer's purchases page and API); paid, the subscription
moves on one month exactly once, however often and in whatever order the webhooks (or reconciliation) report
it; unpaid, access ends with the period."""

from __future__ import annotations

import asyncio
import time

from mcpstore_appliance.market import journal, renewals
from mcpstore_appliance.market.entitlements import add_month
from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.integration.test_market_lnbits import _status, eventually, post
from tests.lnbits_fixtures import lnbits_settings
from tests.seed import publish

SUB = {"pricing": "subscription", "amount": "5000", "currency": "sat"}
DAY = 86400


async def subscribed(start_app, lnbits, **server):
    """alice's Lightning subscription alice/sub, bought and paid by bob: (app, bob's token, order, period end)."""
    app = await start_app(**lnbits_settings(lnbits), **server)
    _, alice = await app.user("alice")
    _, token = await app.user("bob")
    await publish(app, alice, "sub", options=SUB)
    order = await post(app, "/api/packages/alice/sub/purchase", token, 201, json={})
    await asyncio.to_thread(lnbits.pay, order["bolt11"])
    return app, token, order


async def period_end(app, order_id: int) -> float:
    return await app.services.db.fetch_value("SELECT period_end FROM market_entitlements WHERE order_id = ?",
                                             (order_id,))


def webhook_body(payment_hash: str) -> bytes:
    return b'"{\\"payment_hash\\": \\"' + payment_hash.encode() + b'\\"}"'  # double-encoded, as LNbits sends


async def test_a_renewal_invoice_paid_extends_the_subscription_once(start_app, lnbits):
    app, token, order = await subscribed(start_app, lnbits)
    await eventually(lambda: _status(app, order["id"], "paid"))
    market, db = app.services.market, app.services.db
    end = await period_end(app, order["id"])
    assert await renewals.invoice_due(market, now=end - 5 * DAY) == []  # not yet within the 3-day notice
    made = await renewals.invoice_due(market, now=end - DAY)
    assert [r["order_id"] for r in made] == [order["id"]] and made[0]["bolt11"].startswith("lnbc")
    assert await renewals.invoice_due(market, now=end - DAY / 2) == []  # one invoice a period
    # the reminder: on the purchases API and page, with the invoice
    status, mine, _ = await app.client.with_token(token).get("/api/market/purchases")
    assert [r["bolt11"] for r in mine["renewals_due"]] == [made[0]["bolt11"]]
    bob = await db.fetch_value("SELECT id FROM users WHERE username = 'bob'")
    principal = await app.services.accounts.principal_for_user(bob)
    session_id, _ = await app.services.accounts.start_session(principal.user)
    status, html, _ = await app.client.with_token(None).get("/account/purchases",
                                                            headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
    assert status == 200 and b'id="renewal-due"' in html and made[0]["bolt11"].encode() in html
    assert f'action="/account/subscriptions/{order["id"]}/cancel"'.encode() in html  # the cancel form
    cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
    assert (await app.client.with_token(None).post(f"/account/subscriptions/{order['id']}/cancel", headers=cookie,
                                                   data={}))[0] == 403  # without its CSRF token: nothing changes
    await asyncio.to_thread(lnbits.pay, made[0]["bolt11"])
    await eventually(lambda: _extended(app, order["id"], add_month(end)))
    await asyncio.sleep(1.5)  # LNbits' second delivery of each webhook
    # replayed and reordered deliveries: the renewal's and the first invoice's again; both change nothing
    sig = market.providers["lnbits"].signature(order["id"])
    for payment_hash in (made[0]["reference"], order_hash := await _first_hash(app, order["id"]),
                         made[0]["reference"]):
        answer = await post(app, f"/api/payments/lnbits/webhook?order={order['id']}&sig={sig}",
                            data=webhook_body(payment_hash))
        assert answer["outcomes"] == ["duplicate"], payment_hash
    assert order_hash != made[0]["reference"]
    assert await period_end(app, order["id"]) == add_month(end)
    assert await db.fetch_value("SELECT count(*) FROM market_payments WHERE order_id = ?", (order["id"],)) == 2
    creator = await db.fetch_value("SELECT owner_user_id FROM packages WHERE name = 'sub'")
    assert await journal.balance(db, "creator", f"user:{creator}", "msat") == 2 * 4_000_000
    assert await journal.check(db) == []
    status, mine, _ = await app.client.with_token(token).get("/api/market/purchases")
    assert mine["renewals_due"] == []
    # the next period's invoice left unpaid: access ends when the paid period does
    later = await renewals.invoice_due(market, now=add_month(end) - DAY)
    assert len(later) == 1 and later[0]["period_end"] == add_month(end)
    download = "/api/packages/alice/sub/versions/1.0.0/download"
    assert (await app.client.with_token(token).get(download))[0] == 200
    async with db.write() as tx:  # the clock past the period's end (the invoice still unpaid)
        await tx.execute("UPDATE market_entitlements SET period_end = ? WHERE order_id = ?",
                         (time.time() - 1, order["id"]))
    assert (await app.client.with_token(token).get(download))[0] == 402
    assert await db.fetch_value("SELECT count(*) FROM market_payments WHERE order_id = ?", (order["id"],)) == 2


async def test_reconciliation_credits_a_renewal_whose_webhook_was_lost(start_app, lnbits):
    # webhooks go to a port where nobody listens: only reconciliation sees the payments
    app, token, order = await subscribed(start_app, lnbits, server={"public_url": "http://127.0.0.1:9"})
    _, root = await app.user("root", admin=True)
    assert [c["order"] for c in (await post(app, "/api/admin/market/reconcile", root))["credited"]] == [order["id"]]
    end = await period_end(app, order["id"])
    made = await renewals.invoice_due(app.services.market, now=end - DAY)
    await asyncio.to_thread(lnbits.pay, made[0]["bolt11"])
    report = await post(app, "/api/admin/market/reconcile", root)
    assert [c["order"] for c in report["credited"]] == [order["id"]] and report["journal"] == []
    assert await period_end(app, order["id"]) == add_month(end)
    assert (await post(app, "/api/admin/market/reconcile", root))["credited"] == []
    assert await period_end(app, order["id"]) == add_month(end)
    # the next invoice is out; bob cancels: it leaves the reminder, no other comes, access lasts the paid month
    assert len(await renewals.invoice_due(app.services.market, now=add_month(end) - DAY)) == 1
    _, mallory = await app.user("mallory")
    answer = await post(app, f"/api/market/orders/{order['id']}/cancel", mallory, 404)
    assert answer["error"]["code"] == "order_not_found"
    for _ in range(2):  # twice: the same answer
        answer = await post(app, f"/api/market/orders/{order['id']}/cancel", token)
        assert answer == {"order": order["id"], "cancelled": True, "access_until": add_month(end)}
    status, mine, _ = await app.client.with_token(token).get("/api/market/purchases")
    assert mine["renewals_due"] == []
    async with app.services.db.write() as tx:  # as if the month's invoice had never been made
        await tx.execute("DELETE FROM market_renewals WHERE period_end = ?", (add_month(end),))
    assert await renewals.invoice_due(app.services.market, now=add_month(end) - DAY) == []
    assert (await app.client.with_token(token).get("/api/packages/alice/sub/versions/1.0.0/download"))[0] == 200


async def _extended(app, order_id: int, expected: float) -> bool:
    return await period_end(app, order_id) == expected


async def _first_hash(app, order_id: int) -> str:
    return await app.services.db.fetch_value("SELECT provider_ref FROM market_orders WHERE id = ?", (order_id,))
