"""Creator payouts through Stripe Connect. localstripe has no Connect, so the accounts, onboarding links and
transfers are answered by the RECORDING STAND-IN of tests/stripe_fixtures.py (it honours Idempotency-Key and lists
transfers by transfer_group, as Stripe does). alice's earnings come from an offline payment recorded by the manual
provider: 80 % of 25.00 usd."""

from __future__ import annotations

from mcpstore_appliance.market import journal
from tests.seed import publish
from tests.stripe_fixtures import stripe_settings

from .test_market_lnbits import post


async def alice_earns(start_app, world):
    settings = stripe_settings(world)
    settings["market"]["payouts"] = {"minimum": {"usd": "10.00"}, "interval_seconds": 0}
    app = await start_app(**settings)
    alice, alice_token = await app.user("alice")
    await app.user("bob")
    _, root = await app.user("root", admin=True)
    await publish(app, alice_token, "sub", options={"pricing": "subscription", "amount": "25.00", "currency": "usd"})
    await post(app, "/api/packages/alice/sub/grants", alice_token, 201,
               json={"user": "bob", "reference": "bank-transfer-1", "amount": "25.00"})
    return app, alice, alice_token, root


async def owed(app, alice) -> int:
    return await journal.balance(app.services.db, "creator", f"user:{alice.id}", "usd")


async def onboard(app, world, token: str) -> str:
    status, body, _ = await app.client.with_token(token).put("/api/market/payout-method", json={"kind": "stripe"})
    assert status == 200 and body["onboarding_url"].startswith("https://connect.stripe.test/"), body
    assert body["ready"] is False
    return body["destination"]


async def test_a_connect_account_is_paid_by_one_transfer_once_onboarded(start_app, stripe_world):
    app, alice, token, root = await alice_earns(start_app, stripe_world)
    account = await onboard(app, stripe_world, token)
    assert (await post(app, "/api/admin/market/payouts/run", root))["paid"] == []  # onboarding not finished
    assert await onboard(app, stripe_world, token) == account  # asked again: the same account, a new link
    stripe_world.accounts[account]["payouts_enabled"] = True  # the creator finished Stripe's onboarding
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert [(p["amount"], p["currency"]) for p in report["paid"]] == [(2000, "usd")]
    assert [(t["amount"], t["destination"]) for t in stripe_world.transfers] == [(2000, account)]
    assert (await post(app, "/api/admin/market/payouts/run", root))["paid"] == []
    assert len(stripe_world.transfers) == 1 and await owed(app, alice) == 0
    _, body, _ = await app.client.with_token(token).get("/api/market/payouts")
    assert body["payouts"][0]["status"] == "paid" and body["payouts"][0]["provider_ref"].startswith("tr_")
    assert body["methods"] == [{**body["methods"][0], "kind": "stripe", "ready": True}]


async def test_a_crash_after_the_transfer_is_finished_by_its_transfer_group(start_app, stripe_world):
    app, alice, token, root = await alice_earns(start_app, stripe_world)
    stripe_world.accounts[await onboard(app, stripe_world, token)]["payouts_enabled"] = True
    payer = app.services.market.payouts.payers["stripe"]
    real_send = payer.send

    async def send_then_crash(payout):
        await real_send(payout)
        raise ConnectionError("the appliance stopped before it wrote the answer")

    payer.send = send_then_crash
    assert len((await post(app, "/api/admin/market/payouts/run", root))["open"]) == 1
    payer.send = real_send
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert [p["amount"] for p in report["paid"]] == [2000]
    assert len(stripe_world.transfers) == 1 and await owed(app, alice) == 0
    assert await journal.check(app.services.db) == []


async def test_a_refused_transfer_returns_the_funds(start_app, stripe_world):
    app, alice, token, root = await alice_earns(start_app, stripe_world)
    stripe_world.accounts[await onboard(app, stripe_world, token)]["payouts_enabled"] = True
    stripe_world.transfer_error = "Insufficient funds in Stripe account."
    report = await post(app, "/api/admin/market/payouts/run", root)
    assert "Insufficient funds" in report["failed"][0]["error"] and await owed(app, alice) == 2000
    stripe_world.transfer_error = None
    assert [p["amount"] for p in (await post(app, "/api/admin/market/payouts/run", root))["paid"]] == [2000]
    assert await owed(app, alice) == 0 and await journal.check(app.services.db) == []
