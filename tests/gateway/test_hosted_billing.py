"""Billing of hosted per-call packages on the real bubblewrap backend: each tools/call is charged before it runs
(from the caller's wallet, or from a usage token's reservation), a call without credit gets a clear JSON-RPC
error (invoke API: 402) and does not run, and a call that fails costs nothing. Usage tokens are bearer
credentials of /mcp and /api/invoke for their own package only."""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from mcpstore_appliance.market import journal
from mcpstore_appliance.web.mcp_api import GATEWAY, PAYMENT_REQUIRED
from tests.gateway.client import mcp_session
from tests.gateway.servers import hostile_bundle, publish_bundle
from tests.usage_support import add_credits, call, exchange, licence

PER_CALL = {"pricing": "per_call", "amount": "0.10", "currency": "usd"}


async def world(hosted_app, cents: int):
    app = await hosted_app()
    alice, alice_token = await app.user("alice")
    bob, bob_token = await app.user("bob")
    await publish_bundle(app, alice_token, hostile_bundle("meter"), **PER_CALL)
    await publish_bundle(app, alice_token, hostile_bundle("free"))
    await add_credits(app, bob.id, cents)
    return app, alice, bob, bob_token


async def wallet(app, user_id: int) -> int:
    return await journal.balance(app.services.db, "wallet", f"user:{user_id}", "usd")


async def ok_calls(app) -> list[tuple[str, str]]:
    await app.app[GATEWAY].meter.flush()
    return [(r["tool"], r["outcome"]) for r in await app.services.db.fetch_all("SELECT tool, outcome FROM invocations")]


async def test_each_call_is_debited_and_a_call_without_credit_does_not_run(hosted_app):
    app, alice, bob, bob_token = await world(hosted_app, 25)
    async with mcp_session(app.base_url, "alice/meter", bob_token) as session:
        assert (await session.call_tool("echo", {"text": "one"})).content[0].text == "one"
        assert (await session.call_tool("echo", {"text": "two"})).content[0].text == "two"
        with pytest.raises(MCPError) as refused:
            await session.call_tool("put", {"name": "ran", "text": "x"})  # would leave a file if it ran
        assert refused.value.error.code == PAYMENT_REQUIRED
        assert refused.value.error.data["code"] == "insufficient_funds"
        await add_credits(app, bob.id, 10)
        assert (await session.call_tool("get", {"name": "ran"})).content[0].text == "missing"  # put never ran
    assert await wallet(app, bob.id) == 5
    assert await journal.balance(app.services.db, "creator", f"user:{alice.id}", "usd") == 24
    assert await ok_calls(app) == [("echo", "ok"), ("echo", "ok"), ("get", "ok")]  # the refused call is not one
    async with mcp_session(app.base_url, "alice/free", bob_token) as session:  # free packages cost nothing
        await session.call_tool("echo", {"text": "free"})
    assert await wallet(app, bob.id) == 5
    body, _ = await call(app, "POST", "/api/invoke/alice/meter", bob_token, expect=402, json={"tool": "echo"})
    assert body["error"]["code"] == "insufficient_funds"
    assert await journal.check(app.services.db) == []


async def test_a_failed_call_costs_nothing(hosted_app):
    app, alice, bob, bob_token = await world(hosted_app, 30)
    async with mcp_session(app.base_url, "alice/meter", bob_token) as session:
        await session.call_tool("echo", {"text": "paid"})
        with pytest.raises(MCPError):
            await session.call_tool("crash", {})
    assert await wallet(app, bob.id) == 20  # the echo was billed, the crash given back
    assert await ok_calls(app) == [("echo", "ok"), ("crash", "failed")]
    assert await journal.check(app.services.db) == []


async def test_usage_tokens_call_their_package_from_its_reservation(hosted_app):
    app, alice, bob, bob_token = await world(hosted_app, 100)
    issued = await exchange(app, await licence(app, bob_token, "alice/meter"), calls=2)
    token = issued["token"]
    assert await wallet(app, bob.id) == 80  # two calls reserved at issue
    body, _ = await call(app, "POST", "/api/invoke/alice/meter", token, json={"tool": "echo",
                                                                              "arguments": {"text": "hi"}})
    assert body["result"]["content"][0]["text"] == "hi"
    async with mcp_session(app.base_url, "alice/meter", token) as session:
        assert (await session.call_tool("echo", {"text": "mcp"})).content[0].text == "mcp"
        with pytest.raises(MCPError) as refused:
            await session.call_tool("echo", {"text": "third"})
        assert refused.value.error.data["code"] == "reservation_exhausted"
    used = await app.services.db.fetch_value("SELECT used FROM usage_tokens WHERE jti = ?", (issued["jti"],))
    assert used == 2 and await wallet(app, bob.id) == 80
    assert await journal.balance(app.services.db, "creator", f"user:{alice.id}", "usd") == 16

    body, _ = await call(app, "POST", "/api/invoke/alice/free", token, expect=403, json={"tool": "echo"})
    assert body["error"]["code"] == "token_wrong_package"
    body, _ = await call(app, "POST", "/mcp/alice/free", token, expect=403, json={
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}})
    assert body["error"]["code"] == "token_wrong_package"
    assert not app.app[GATEWAY].sessions.sessions
