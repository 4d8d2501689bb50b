"""Org credit wallets against a real LNbits (FakeWallet): an org's owner or admin tops up the org's credits, its
members' per-call calls use them when their own credits do not cover a call (their own first), concurrent
calls never overdraw them, the org page shows them, and nobody else tops up or spends them."""

from __future__ import annotations

import asyncio

from mcpstore_appliance.market import journal
from mcpstore_appliance.market.journal import InsufficientFunds
from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.integration.test_market_lnbits import _status, eventually, post
from tests.lnbits_fixtures import lnbits_settings
from tests.seed import publish


async def org_world(app, package: str, price: dict):
    """acme (owner alice, member bob) and carol's per-call package: (alice's token, bob, bob's token, carol,
    carol's token, the org id)."""
    _, alice_token = await app.user("alice")
    bob, bob_token = await app.user("bob")
    carol_user, carol = await app.user("carol")
    assert (await app.client.with_token(alice_token).post("/api/orgs", json={"slug": "acme"}))[0] == 201
    status, _, _ = await app.client.with_token(alice_token).put("/api/orgs/acme/members/bob", json={"role": "member"})
    assert status in (200, 201)
    await publish(app, carol, package, options={"pricing": "per_call", **price})
    return alice_token, bob, bob_token, carol_user, carol, await app.services.db.fetch_value(
        "SELECT id FROM orgs WHERE slug = 'acme'")


async def test_members_calls_use_the_org_credits_never_overdrawn(start_app, lnbits):
    app = await start_app(**lnbits_settings(lnbits))
    alice_token, bob, bob_token, carol_user, _, org = await org_world(app, "zap", {"amount": "10", "currency": "sat"})
    alice = await app.services.db.fetch_one("SELECT id FROM users WHERE username = 'alice'")
    _, stranger = await app.user("stranger")
    db, market = app.services.db, app.services.market
    package = await db.fetch_value("SELECT id FROM packages WHERE name = 'zap'")
    # only the org's owner or admin tops it up
    for token in (bob_token, stranger):
        answer = await post(app, "/api/market/credits", token, 403, json={"currency": "sat", "amount": "100",
                                                                         "org": "acme"})
        assert answer["error"]["code"] == "not_org_admin"
    order = await post(app, "/api/market/credits", alice_token, 201, json={"currency": "sat", "amount": "100",
                                                                          "org": "acme"})
    await asyncio.to_thread(lnbits.pay, order["bolt11"])
    await eventually(lambda: _status(app, order["id"], "paid"))
    assert await market.wallet_balances(f"org:{org}") == {"msat": 100_000}
    assert await market.wallet_balances(f"user:{alice['id']}") == {}  # the org's, not the admin's own
    # bob's own credits first (one call's worth), then the org's; 15 calls at once for 11 calls of money
    async with db.write() as tx:
        await journal.post(tx, "payment", "test-own", "msat", [journal.Line("clearing", "test", -10_000),
                                                               journal.Line("wallet", f"user:{bob.id}", 10_000)])
    results = await asyncio.gather(*(market.debit_call(bob.id, package, f"c{n}", {org}) for n in range(15)),
                                   return_exceptions=True)
    assert sum(not isinstance(r, Exception) for r in results) == 11
    assert all(isinstance(r, InsufficientFunds) for r in results if isinstance(r, Exception))
    assert await market.wallet_balances(f"org:{org}") == {"msat": 0}
    assert await market.wallet_balances(f"user:{bob.id}") == {"msat": 0}
    assert (await market.debit_call(bob.id, package, "c3", {org})).repeated  # a call debited once
    assert await journal.balance(db, "creator", f"user:{carol_user.id}", "msat") == 11 * 8_000
    assert await journal.check(db) == []
    # the org page shows the credits to its members, to nobody else
    for username, shown in (("bob", True), ("stranger", False)):
        user = await db.fetch_one("SELECT id FROM users WHERE username = ?", (username,))
        principal = await app.services.accounts.principal_for_user(user["id"])
        session_id, _ = await app.services.accounts.start_session(principal.user)
        status, html, _ = await app.client.with_token(None).get("/orgs/acme",
                                                                headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
        assert status == 200 and (b'id="org-credits"' in html) == shown
        assert (b'<ul id="org-balances"><li>0 sat</li>' in html) == shown


async def test_a_members_usage_token_reserves_from_the_org_credits_and_gives_back_to_them(start_app):
    from tests.usage_support import exchange, licence

    app = await start_app()
    _, bob, bob_token, _, carol, org = await org_world(app, "calls", {"amount": "0.10", "currency": "usd"})
    db, market = app.services.db, app.services.market
    async with db.write() as tx:  # the org's credits, as if its top-up had been paid
        await journal.post(tx, "payment", "test-org", "usd", [journal.Line("clearing", "test", -100),
                                                              journal.Line("wallet", f"org:{org}", 100)])
    token = await exchange(app, await licence(app, bob_token, "carol/calls"), calls=50)
    assert token["calls"] == 10  # all the org's 1.00 usd covers, bob having no credits of his own
    assert await market.wallet_balances(f"org:{org}") == {"usd": 0}
    for n in range(2):
        status, body, _ = await app.client.with_token(carol).post("/api/usage/reports",
                                                                  json={"jti": token["jti"], "call_id": f"c{n}"})
        assert status == 200 and body["billed"], body
    assert await app.services.usage.calls.release_expired(now=token["expires_at"] + 10_000) == 1
    assert await market.wallet_balances(f"org:{org}") == {"usd": 80}  # the 8 calls not made went back to the org
    assert await market.wallet_balances(f"user:{bob.id}") == {}
    assert await journal.check(db) == []
