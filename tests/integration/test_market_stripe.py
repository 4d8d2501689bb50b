"""Card payments with the real `stripe` SDK against localstripe (in-process), and a recording stand-in for the
Checkout Sessions localstripe lacks (tests/stripe_fixtures.py). Webhooks are delivered 1-5 times, reordered,
replayed, forged and stale: each payment is credited once and forgeries change nothing."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import time

from mcpstore_appliance.market import journal
from tests.seed import publish
from tests.stripe_fixtures import register_webhook, stripe_settings

SUBSCRIPTION = {"pricing": "subscription", "amount": "12.00", "currency": "usd"}


async def post(app, path: str, token: str | None = None, expect: int = 200, **kwargs):
    status, body, _ = await app.client.with_token(token).post(path, **kwargs)
    assert status == expect, (path, status, body)
    return body


async def wallet(app, user_id: int) -> int:
    return await journal.balance(app.services.db, "wallet", f"user:{user_id}", "usd")


async def state(app) -> tuple:
    db = app.services.db
    return (await db.fetch_all("SELECT id, status FROM market_orders ORDER BY id"),
            await db.fetch_all("SELECT kind, owner, currency, balance FROM market_accounts ORDER BY id"),
            await db.fetch_value("SELECT count(*) FROM market_entitlements WHERE revoked_at IS NULL"))


async def intent_order(app, token: str, amount: str, currency: str = "usd") -> tuple[dict, str]:
    """A credits order paid by a PaymentIntent (not yet paid): (the order, the intent's id)."""
    order = await post(app, "/api/market/credits", token, 201,
                       json={"currency": currency, "amount": amount, "flow": "intent"})
    return order, await app.services.db.fetch_value("SELECT provider_ref FROM market_orders WHERE id = ?",
                                                    (order["id"],))


async def eventually(check, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.05)


async def test_a_payment_intent_is_credited_once_however_its_webhooks_arrive(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    await register_webhook(stripe_world, app.base_url + "/api/payments/stripe/webhook")
    bob, token = await app.user("bob")
    order, intent_id = await intent_order(app, token, "20.00")
    assert order["client_secret"] and order["status"] == "pending"
    # the buyer pays the intent at "Stripe"; localstripe then sends its own signed webhook
    await stripe_world.pay_intent(intent_id)
    await eventually(lambda: _paid(app, order["id"]))
    assert await wallet(app, bob.id) == 2000

    intent = (await stripe_world.client().v1.payment_intents.retrieve_async(intent_id)).to_dict()
    deliveries = [stripe_world.signed_event("payment_intent.succeeded", intent, event_id=f"evt_r{n}")
                  for n in range(5)]
    random.Random(7).shuffle(deliveries)
    answers = await asyncio.gather(*(post(app, "/api/payments/stripe/webhook", data=body, headers=headers)
                                     for body, headers in deliveries + deliveries[:2]))  # and two replays
    assert all(a["outcomes"] == ["duplicate"] for a in answers)
    assert await wallet(app, bob.id) == 2000
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_payments") == 1
    assert await journal.check(app.services.db) == []


async def test_forged_and_stale_webhooks_are_400_and_change_nothing(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    _, token = await app.user("bob")
    _, intent_id = await intent_order(app, token, "20.00")
    await stripe_world.pay_intent(intent_id)
    intent = (await stripe_world.client().v1.payment_intents.retrieve_async(intent_id)).to_dict()
    before = await state(app)
    forged = stripe_world.signed_event("payment_intent.succeeded", intent, secret="whsec_someone_else")
    stale = stripe_world.signed_event("payment_intent.succeeded", intent, timestamp=int(time.time()) - 400)
    body, headers = stripe_world.signed_event("payment_intent.succeeded", intent)
    tampered = (body.replace(b'"amount": 2000', b'"amount": 1'), headers)
    unsigned = (body, {"Content-Type": "application/json"})
    for payload, hdrs in (forged, stale, tampered, unsigned, (b"not json", headers)):
        answer = await post(app, "/api/payments/stripe/webhook", expect=400, data=payload, headers=hdrs)
        assert answer["error"]["code"] == "bad_signature"
    assert await state(app) == before  # still pending: nothing was credited by a forgery


async def test_card_payments_below_the_minimum_are_refused_with_the_fee_trap(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await publish(app, alice, "cheap", options={"pricing": "subscription", "amount": "5.00", "currency": "usd"})
    for path, body in (("/api/packages/alice/cheap/purchase", {}),
                       ("/api/market/credits", {"currency": "usd", "amount": "9.99"})):
        answer = await post(app, path, bob, 400, json=body)
        assert answer["error"]["code"] == "below_card_minimum"
        assert "Top up your credits" in answer["error"]["message"] and "fee" in answer["error"]["message"]
    assert await app.services.db.fetch_value("SELECT count(*) FROM market_orders") == 0
    assert stripe_world.requests == []


async def test_checkout_subscription_renews_by_invoice_and_a_refund_reverses_it(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await publish(app, alice, "paid", options=SUBSCRIPTION)
    order = await post(app, "/api/packages/alice/paid/purchase", bob, 201, json={})
    assert order["pay_url"].startswith("https://checkout.stripe.test/")
    asked = stripe_world.requests[-1]  # what the stand-in recorded of the appliance's Checkout request
    assert asked["mode"] == "subscription" and asked["subscription_data"]["metadata"]["order_id"] == str(order["id"])
    assert asked["line_items"]["0"]["price_data"]["recurring"]["interval"] == "month"
    download = "/api/packages/alice/paid/versions/1.0.0/download"
    assert (await app.client.with_token(bob).get(download))[0] == 402

    session_id = await app.services.db.fetch_value("SELECT provider_ref FROM market_orders")
    intent_id = await stripe_world.complete(session_id)
    session = dict(stripe_world.sessions[session_id])
    session.pop("metadata_for_intent")
    events = [stripe_world.signed_event("checkout.session.completed", session, event_id="evt_cs") for _ in range(3)]
    intent = (await stripe_world.client().v1.payment_intents.retrieve_async(intent_id)).to_dict()
    events.append(stripe_world.signed_event("payment_intent.succeeded", intent))
    outcomes = [(await post(app, "/api/payments/stripe/webhook", data=b, headers=h))["outcomes"][0] for b, h in events]
    assert outcomes.count("credited") == 1 and set(outcomes) == {"credited", "duplicate"}
    assert (await app.client.with_token(bob).get(download))[0] == 200
    db = app.services.db
    creator = await db.fetch_value("SELECT owner_user_id FROM packages WHERE name = 'paid'")
    assert await journal.balance(db, "creator", f"user:{creator}", "usd") == 960  # 80 % of 12.00
    assert await journal.balance(db, "revenue", journal.PLATFORM, "usd") == 240

    # each paid period's invoice (the first one again, then a renewal) is credited once and extends access
    entitlement_end = await db.fetch_value("SELECT period_end FROM market_entitlements")
    first = stripe_world.invoices[stripe_world.sessions[session_id]["invoice"]]
    renewal = stripe_world.invoice(stripe_world.sessions[session_id])
    outcomes = []
    for invoice in (first, renewal, renewal):
        body, headers = stripe_world.signed_event("invoice.payment_succeeded", invoice)  # localstripe's name
        outcomes += (await post(app, "/api/payments/stripe/webhook", data=body, headers=headers))["outcomes"]
    assert outcomes == ["duplicate", "credited", "duplicate"]
    assert 27 * 86400 < await db.fetch_value("SELECT period_end FROM market_entitlements") - entitlement_end \
        < 32 * 86400  # one calendar month more
    assert await journal.balance(db, "creator", f"user:{creator}", "usd") == 1920

    refund_event = stripe_world.signed_event("charge.refunded", {"id": "ch_x", "object": "charge",
                                                                 "payment_intent": intent_id, "refunded": True})
    answer = await post(app, "/api/payments/stripe/webhook", data=refund_event[0], headers=refund_event[1])
    assert answer["outcomes"] == ["not_refunded"]  # the provider says otherwise: nothing reversed
    await stripe_world.client().v1.refunds.create_async(params={"payment_intent": intent_id})
    for _ in range(2):
        body, headers = stripe_world.signed_event("charge.refunded", {"id": "ch_x", "object": "charge",
                                                                      "payment_intent": intent_id})
        await post(app, "/api/payments/stripe/webhook", data=body, headers=headers)
    assert await journal.balance(db, "creator", f"user:{creator}", "usd") == 960  # the first period is reversed
    assert (await app.client.with_token(bob).get(download))[0] == 402
    assert await db.fetch_value("SELECT status FROM market_orders") == "refunded"
    assert await journal.check(db) == []


async def test_reconciliation_credits_a_missed_payment_and_reports_an_unknown_credit(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))  # no webhook registered: every delivery is missed
    bob, token = await app.user("bob")
    _, root = await app.user("root", admin=True)
    _, intent_id = await intent_order(app, token, "25.00")
    await stripe_world.pay_intent(intent_id)
    assert await wallet(app, bob.id) == 0
    # a credit the provider never saw (a bug, or a hand-edited database): reconciliation must report it
    from mcpstore_appliance.market import orders, settle
    from mcpstore_appliance.market.providers.base import Payment

    async with app.services.db.write() as tx:
        ghost = await orders.create(tx, kind="credits", buyer_user_id=bob.id, amount=1500, currency="usd",
                                    creator_share_bp=0, provider="stripe", provider_ref="pi_ghost")
    stripe_provider = app.services.market.providers["stripe"]
    assert await settle.settle(app.services.db, stripe_provider, ghost,
                               Payment("pi_ghost", True, 1500, "usd")) == "credited"

    report = await post(app, "/api/admin/market/reconcile", root)
    assert [c["reference"] for c in report["credited"]] == [intent_id]
    assert [u["reference"] for u in report["unknown_to_provider"]] == ["pi_ghost"]
    assert report["journal"] == [] and report["failed"] == []
    assert await wallet(app, bob.id) == 4000
    again = await post(app, "/api/admin/market/reconcile", root)
    assert again["credited"] == [] and await wallet(app, bob.id) == 4000
    assert await app.services.db.fetch_value("SELECT kind FROM market_findings") == "unknown_to_provider"


async def _paid(app, order_id: int) -> bool:
    return await app.services.db.fetch_value("SELECT status FROM market_orders WHERE id = ?", (order_id,)) == "paid"


async def test_mcpstore_admin_reconcile_credits_from_the_command_line(start_app, stripe_world):
    app = await start_app(**stripe_settings(stripe_world))
    bob, token = await app.user("bob")
    _, intent_id = await intent_order(app, token, "10.00", "eur")
    await stripe_world.pay_intent(intent_id)
    market = stripe_settings(stripe_world)["market"]["stripe"]
    env = {**os.environ, "MCPSTORE_MARKET__STRIPE__SECRET_KEY": market["secret_key"],
           "MCPSTORE_MARKET__STRIPE__WEBHOOK_SECRET": market["webhook_secret"],
           "MCPSTORE_MARKET__STRIPE__API_BASE": market["api_base"]}
    command = [sys.executable, "-m", "mcpstore_appliance.cli.main", "admin", "reconcile", "--data",
               str(app.data_dir)]
    done = await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [c["reference"] for c in json.loads(done.stdout)["credited"]] == [intent_id]
    assert await journal.balance(app.services.db, "wallet", f"user:{bob.id}", "eur") == 1000
