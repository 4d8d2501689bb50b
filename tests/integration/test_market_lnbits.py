"""Lightning payments against a real LNbits (FakeWallet, tests/lnbits_fixtures.py): its webhooks come twice,
double-encoded and unsigned, so each is only a hint and the payment is re-checked with LNbits; reconciliation
credits what a lost webhook missed."""

from __future__ import annotations

import asyncio
import os
import sys
import time

from mcpstore_appliance.market import journal
from tests.lnbits_fixtures import lnbits_settings
from tests.seed import publish

CALLS = {"pricing": "per_call", "amount": "10", "currency": "sat"}


async def post(app, path: str, token: str | None = None, expect: int = 200, **kwargs):
    status, body, _ = await app.client.with_token(token).post(path, **kwargs)
    assert status == expect, (path, status, body)
    return body


async def eventually(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.1)


async def msat(app, user_id: int) -> int:
    return await journal.balance(app.services.db, "wallet", f"user:{user_id}", "msat")


async def zap_credits(start_app, lnbits, amount: str):
    """An appliance on LNbits, alice's per-call package alice/zap, and bob's unpaid order of `amount` sat credits:
    (app, bob, bob's token, the order)."""
    app = await start_app(**lnbits_settings(lnbits))
    _, alice = await app.user("alice")
    bob, token = await app.user("bob")
    await publish(app, alice, "zap", options=CALLS)
    order = await post(app, "/api/packages/alice/zap/purchase", token, 201, json={"amount": amount})
    return app, bob, token, order


async def test_an_invoice_paid_is_credited_once_despite_double_webhooks(start_app, lnbits):
    app, bob, token, order = await zap_credits(start_app, lnbits, "2000")
    assert order["bolt11"].startswith("lnbc") and order["provider"] == "lnbits"
    assert (await app.client.with_token(token).get("/api/packages/alice/zap/versions/1.0.0/download"))[0] == 402
    await asyncio.to_thread(lnbits.pay, order["bolt11"])
    await eventually(lambda: _status(app, order["id"], "paid"))
    db = app.services.db
    # LNbits delivers each webhook twice (reference §1.5): wait for the second, which must change nothing
    await eventually(lambda: _deliveries_seen(app))
    await asyncio.sleep(1.0)
    assert await msat(app, bob.id) == 2_000_000
    assert await db.fetch_value("SELECT count(*) FROM market_payments") == 1
    assert (await app.client.with_token(token).get("/api/packages/alice/zap/versions/1.0.0/download"))[0] == 200
    # calls are then debited from the credits (10 sat each), split 80/20 (hobbyist)
    package = await db.fetch_value("SELECT id FROM packages WHERE name = 'zap'")
    debit = await app.services.market.debit_call(bob.id, package, "call-1")
    assert (debit.amount, debit.currency, debit.balance) == (10_000, "msat", 1_990_000)
    assert await journal.check(db) == []


async def test_forged_or_unpaid_lnbits_webhooks_change_nothing(start_app, lnbits):
    app, bob, _, order = await zap_credits(start_app, lnbits, "500")
    payment_hash = await app.services.db.fetch_value("SELECT provider_ref FROM market_orders")
    body = b'"{\\"payment_hash\\": \\"' + payment_hash.encode() + b'\\"}"'  # double-encoded, as LNbits sends
    for query in ("", f"?order={order['id']}", f"?order={order['id']}&sig=00", "?order=x&sig=y"):
        answer = await post(app, "/api/payments/lnbits/webhook" + query, expect=400, data=body)
        assert answer["error"]["code"] == "bad_signature"
    signature = app.services.market.providers["lnbits"].signature(order["id"])
    answer = await post(app, f"/api/payments/lnbits/webhook?order={order['id']}&sig={signature}", data=body)
    assert answer["outcomes"] == ["not_paid"]  # LNbits, asked, says the invoice is unpaid
    answer = await post(app, f"/api/payments/lnbits/webhook?order={order['id']}&sig={signature}", expect=400,
                        data=b"[not json")
    assert await msat(app, bob.id) == 0
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_transactions") == 0


async def test_reconciliation_credits_an_invoice_whose_webhook_was_lost(start_app, lnbits):
    # the public URL LNbits is given for webhooks leads nowhere: every delivery is lost
    app = await start_app(server={"public_url": "http://127.0.0.1:9"}, **lnbits_settings(lnbits))
    _, alice = await app.user("alice")
    bob, token = await app.user("bob")
    _, root = await app.user("root", admin=True)
    await publish(app, alice, "sub", options={"pricing": "subscription", "amount": "5000", "currency": "sat"})
    order = await post(app, "/api/packages/alice/sub/purchase", token, 201, json={})
    await asyncio.to_thread(lnbits.pay, order["bolt11"])
    await asyncio.sleep(1.5)  # past the webhook's usual 0.7-1.0 s
    assert await _status(app, order["id"], "pending")
    report = await post(app, "/api/admin/market/reconcile", root)
    assert [c["order"] for c in report["credited"]] == [order["id"]] and report["journal"] == []
    assert await _status(app, order["id"], "paid")
    assert (await app.client.with_token(token).get("/api/packages/alice/sub/versions/1.0.0/download"))[0] == 200
    db = app.services.db
    creator = await db.fetch_value("SELECT owner_user_id FROM packages WHERE name = 'sub'")
    assert await journal.balance(db, "creator", f"user:{creator}", "msat") == 4_000_000  # 80 % of 5000 sat
    assert (await post(app, "/api/admin/market/reconcile", root))["credited"] == []


async def _status(app, order_id: int, status: str) -> bool:
    return await app.services.db.fetch_value("SELECT status FROM market_orders WHERE id = ?", (order_id,)) == status


async def _deliveries_seen(app) -> bool:
    return await app.services.db.fetch_value("SELECT outcome FROM market_webhook_events") == "duplicate"


async def test_mcpstore_buy_prints_the_invoice_and_waits_for_the_payment(start_app, lnbits, tmp_path):
    app, bob, token, _ = await zap_credits(start_app, lnbits, "100")
    env = {**os.environ, "MCPSTORE_TOKEN": token, "MCPSTORE_REGISTRY": app.base_url, "HOME": str(tmp_path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcpstore_appliance.cli.main", "buy", "alice/zap", "--amount", "300", "--wait", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    lines = []
    while not (lines and lines[-1].startswith("lnbc")):
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        assert line, (lines, await process.stderr.read())
        lines.append(line.decode().strip())
    assert "300 sat" in lines[0] and "Lightning invoice" in lines[1]
    await asyncio.to_thread(lnbits.pay, lines[-1])
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err
    assert b"paid: order" in out
    assert await msat(app, bob.id) == 300_000


async def test_the_web_buy_flow_shows_the_invoice_with_a_qr_code_until_it_is_paid(start_app, lnbits):
    from mcpstore_appliance.web.auth import SESSION_COOKIE

    app = await start_app(**lnbits_settings(lnbits))
    _, alice = await app.user("alice")
    bob, _ = await app.user("bob")
    await publish(app, alice, "sub", options={"pricing": "subscription", "amount": "5000", "currency": "sat"})
    session_id, csrf = await app.services.accounts.start_session(bob)
    browser = app.client.with_token(None)
    cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
    status, html, _ = await browser.get("/packages/alice/sub", headers=cookie)
    assert status == 200 and b'id="buy-form"' in html
    status, _, response = await browser.post("/packages/alice/sub/buy", headers=cookie, data={"csrf_token": csrf},
                                             allow_redirects=False)
    assert status == 303 and response.headers["Location"].startswith("/account/purchases?order=")
    status, html, _ = await browser.get(response.headers["Location"], headers=cookie)
    page = html.decode()
    assert status == 200 and 'id="invoice-qr" src="data:image/svg+xml' in page and 'http-equiv="refresh"' in page
    bolt11 = page.split('id="bolt11" type="text" readonly value="', 1)[1].split('"', 1)[0]
    assert bolt11.startswith("lnbc")
    await asyncio.to_thread(lnbits.pay, bolt11)
    status, html, _ = await browser.get(response.headers["Location"], headers=cookie)
    page = html.decode()
    assert 'data-status="paid"' in page and "invoice-qr" not in page and "alice/sub" in page
    status, _, _ = await browser.post("/packages/alice/sub/buy", headers=cookie, data={}, allow_redirects=False)
    assert status == 403  # a form without its CSRF token
