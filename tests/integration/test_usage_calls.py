"""Per-call packages with pre-authorisation: a usage token reserves calls from the buyer's credits at issue, the
publisher's server reports calls against its jti (once per call id, never beyond the reservation), and what an
expired token did not use goes back to the buyer. Over HTTP against a real app and SQLite file."""

from __future__ import annotations

import asyncio

from mcpstore_appliance.market import journal
from mcpstore_appliance.tokens.calls import REPORT_GRACE, hold_of
from mcpstore_appliance.web.keys import USAGE
from tests.seed import publish
from tests.usage_support import PER_CALL, add_credits, call, exchange, licence


async def per_call_world(app, cents: int):
    alice, alice_token = await app.user("alice")
    bob, bob_token = await app.user("bob")
    await publish(app, alice_token, "meter", "1.0.0", options=PER_CALL)  # 0.10 usd a call
    await add_credits(app, bob.id, cents)
    return alice, alice_token, bob, await licence(app, bob_token, "alice/meter")


async def balances(app, user_id: int, creator_id: int) -> tuple[int, int, int, int]:
    db = app.services.db
    return (await journal.balance(db, "wallet", f"user:{user_id}", "usd"),
            await journal.balance(db, "wallet", hold_of(user_id), "usd"),
            await journal.balance(db, "creator", f"user:{creator_id}", "usd"),
            await journal.balance(db, "revenue", journal.PLATFORM, "usd"))


async def report(app, token: str, jti: str, call_id: str, expect: int = 200):
    body, _ = await call(app, "POST", "/api/usage/reports", token, expect=expect, json={"jti": jti, "call_id": call_id})
    return body


async def test_reservations_reports_and_release(appliance):
    alice, alice_token, bob, key = await per_call_world(appliance, 95)
    first = await exchange(appliance, key, calls=5)
    assert first["tier"] == "per_call" and first["calls"] == 5
    second = await exchange(appliance, key, calls=5)
    assert second["calls"] == 4  # the credits cover 4 more, not 5
    body = await exchange(appliance, key, calls=5, expect=402)
    assert body["error"]["code"] == "insufficient_funds" and body["error"]["details"]["balance"] == 5
    assert await balances(appliance, bob.id, alice.id) == (5, 90, 0, 0)

    assert (await report(appliance, alice_token, first["jti"], "c1"))["billed"] is True
    assert await report(appliance, alice_token, first["jti"], "c1") == {"billed": False, "used": 1, "calls": 5}
    for n in range(2, 6):
        await report(appliance, alice_token, first["jti"], f"c{n}")
    body = await report(appliance, alice_token, first["jti"], "c6", expect=402)
    assert body["error"]["code"] == "reservation_exhausted"
    assert await balances(appliance, bob.id, alice.id) == (5, 40, 40, 10)  # 5 calls: 80 % to alice

    _, bob_token = await appliance.user("mallory")
    body = await report(appliance, bob_token, second["jti"], "x", expect=404)  # not the package's publisher
    assert body["error"]["code"] == "usage_token_not_found"
    await report(appliance, alice_token, "no-such-jti", "x", expect=404)
    body, _ = await call(appliance, "POST", "/api/usage/reports", alice_token, expect=400, json={"jti": "j"})
    assert body["error"]["code"] == "invalid_body"
    await report(appliance, alice_token, second["jti"], "d1")

    calls = appliance.app[USAGE].calls
    assert await calls.release_expired() == 0  # nothing has expired yet
    after = second["expires_at"] + REPORT_GRACE + 1
    assert await calls.release_expired(now=after) == 2
    assert await calls.release_expired(now=after) == 0  # once
    assert await balances(appliance, bob.id, alice.id) == (35, 0, 48, 12)  # 3 unused calls of the second back
    body = await report(appliance, alice_token, second["jti"], "d2", expect=409)
    assert body["error"]["code"] == "reservation_closed"
    assert await journal.check(appliance.services.db) == []


async def test_concurrent_exchanges_never_reserve_more_than_the_credits(appliance):
    """Twelve servers exchange the same key at once for 3 calls each, against credits for 10 calls and 5 cents."""
    alice, _, bob, key = await per_call_world(appliance, 105)
    results = await asyncio.gather(*(appliance.client.post("/api/usage/tokens", json={"licence_key": key, "calls": 3})
                                     for _ in range(12)))
    granted = [body["calls"] for status, body, _ in results if status == 200]
    refused = [body["error"]["code"] for status, body, _ in results if status != 200]
    assert sum(granted) == 10 and set(refused) == {"insufficient_funds"} and len(granted) + len(refused) == 12
    assert await balances(appliance, bob.id, alice.id) == (5, 100, 0, 0)
    assert await journal.check(appliance.services.db) == []
