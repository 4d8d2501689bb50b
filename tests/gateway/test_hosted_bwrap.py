"""Hosted execution on bubblewrap, end to end: the official MCP SDK over Streamable HTTP against a real
appliance, bundles published through the real API, servers in real sandboxes. Hostile tools are contained with
a clear JSON-RPC error while the appliance and other sessions keep working."""

from __future__ import annotations

import asyncio
import json

import pytest
from mcp.shared.exceptions import MCPError

from mcpstore_appliance.web.mcp_api import GATEWAY
from tests.gateway.client import mcp_session
from tests.gateway.servers import hostile_bundle, publish_bundle

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


async def published(start, **hosted):
    app = await start(**hosted)
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    return app, token


def text(result) -> str:
    return result.content[0].text


async def still_works(app, token) -> None:
    """A fresh session answers: the appliance survived whatever the last one did."""
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert text(await session.call_tool("echo", {"text": "alive"})) == "alive"


async def test_sdk_lists_and_calls_tools(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert {"echo", "loop", "alloc"} <= tools
        assert text(await session.call_tool("echo", {"text": "hi"})) == "hi"
        assert text(await session.call_tool("whoami", {})) == "uid=65534"  # not root
        assert text(await session.call_tool("writes", {})) == "/tmp/x"  # read-only everywhere but /tmp
    await app.services.db.fetch_all("SELECT 1")
    gateway = app.app[GATEWAY]
    await gateway.meter.flush()
    rows = await app.services.db.fetch_all("SELECT tool, via, outcome, user_id, version_id FROM invocations")
    assert [(r["tool"], r["via"], r["outcome"]) for r in rows] == [("echo", "mcp", "ok"), ("whoami", "mcp", "ok"),
                                                                   ("writes", "mcp", "ok")]
    assert await app.services.db.fetch_value("SELECT invocations FROM packages WHERE name = 'hostile'") == 3


async def test_infinite_loop_times_out_and_ends_the_session(hosted_app):
    app, token = await published(hosted_app, call_timeout_seconds=1)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("loop", {})
        assert raised.value.error.code == -32001 and "timed out after 1s" in raised.value.error.message
        with pytest.raises(MCPError):  # the session ended: its id is unknown now (404)
            await session.call_tool("echo", {"text": "again"})
    assert not app.app[GATEWAY].sessions.sessions
    await still_works(app, token)


async def test_default_call_budget_is_crossed_by_a_six_second_call(hosted_app):
    app, token = await published(hosted_app)
    assert app.app[GATEWAY].sessions.limits.call_timeout == 5.0
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert text(await session.call_tool("sleep", {"seconds": 0.1})) == "slept"
        with pytest.raises(MCPError) as raised:
            await session.call_tool("sleep", {"seconds": 6})
        assert raised.value.error.code == -32001


async def test_one_gigabyte_allocation_is_killed_at_512_mb(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("alloc", {})
        assert raised.value.error.code == -32002
        assert "out of memory (512 MB)" in raised.value.error.message
    await still_works(app, token)


async def test_fork_bomb_stops_at_the_pids_cap(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        answer = text(await session.call_tool("forks", {}))
        forked = int(answer.split()[1].rstrip(","))
        assert 0 < forked < 64 and "BlockingIOError" in answer, answer
    await still_works(app, token)


async def test_network_is_unreachable(hosted_app):
    app, token = await published(hosted_app)
    port = int(app.base_url.rsplit(":", 1)[1])  # the appliance itself listens on the host's loopback
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert text(await session.call_tool("network", {"port": port})).startswith("refused")


async def test_never_answering_initialize_gets_an_error(hosted_app):
    app = await hosted_app(init_timeout_seconds=1)
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle("silent", env={"HOSTILE_MODE": "silent"}))
    status, body, response = await app.client.with_token(token).post("/mcp/alice/silent", json=INIT)
    assert status == 200 and body["id"] == 1 and body["error"]["code"] == -32001
    assert "Mcp-Session-Id" not in response.headers
    assert not app.app[GATEWAY].sessions.sessions and not app.app[GATEWAY].sessions._slots


async def test_garbage_on_stdout_is_skipped_and_counted(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert text(await session.call_tool("garbage", {})) == "after garbage"
        (hosted,) = app.app[GATEWAY].sessions.sessions.values()
        assert hosted.client.skipped_lines == 2


async def test_100_mb_of_output_ends_the_session_at_the_message_cap(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("flood", {})
        assert raised.value.error.code == -32003 and "over 1048576 bytes" in raised.value.error.message
    await still_works(app, token)


async def test_crash_mid_call(hosted_app):
    app, token = await published(hosted_app)
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("crash", {})
        assert raised.value.error.code == -32002 and "exit status 3" in raised.value.error.message


async def test_sessions_never_share_files(hosted_app):
    app, token = await published(hosted_app)
    _, other = await app.user("bob")
    async with mcp_session(app.base_url, "alice/hostile", token) as first, \
            mcp_session(app.base_url, "alice/hostile", other) as second:
        assert text(await first.call_tool("put", {"name": "secret", "text": "mine"})) == "ok"
        assert text(await first.call_tool("get", {"name": "secret"})) == "mine"
        assert text(await second.call_tool("get", {"name": "secret"})) == "missing"


async def test_hostile_session_does_not_disturb_another(hosted_app):
    app, token = await published(hosted_app, call_timeout_seconds=2)
    async with mcp_session(app.base_url, "alice/hostile", token) as calm, \
            mcp_session(app.base_url, "alice/hostile", token) as wild:
        looping = asyncio.ensure_future(wild.call_tool("loop", {}))
        for n in range(3):
            assert text(await calm.call_tool("echo", {"text": str(n)})) == str(n)
        with pytest.raises(MCPError):
            await looping


async def test_user_config_reaches_the_server_as_environment_only(hosted_app):
    app = await hosted_app()
    _, token = await app.user("alice")
    fields = {"api_key": {"type": "string", "title": "API key", "sensitive": True, "default": "s3cret-default",
                          "description": "the key"}}
    await publish_bundle(app, token, hostile_bundle("keyed", env={"API_KEY": "${user_config.api_key}"},
                                                    user_config=fields))
    async with mcp_session(app.base_url, "alice/keyed", token) as session:
        assert text(await session.call_tool("env", {"name": "API_KEY"})) == "s3cret-default"
        (hosted,) = app.app[GATEWAY].sessions.sessions.values()
        cmdline = open(f"/proc/{hosted.client.sandbox.process.pid}/cmdline", "rb").read()
        assert b"s3cret" not in cmdline and b"/usr/bin/python3" in cmdline


async def test_session_caps_per_user_and_in_total(hosted_app):
    app, token = await published(hosted_app, max_sessions_per_user=1, max_sessions=2)
    _, bob = await app.user("bob")
    _, carol = await app.user("carol")
    client = app.client
    assert (await client.with_token(token).post("/mcp/alice/hostile", json=INIT))[0] == 200
    status, body, response = await client.with_token(token).post("/mcp/alice/hostile", json=INIT)
    assert status == 429 and body["error"]["code"] == "too_many_sessions" and response.headers["Retry-After"]
    assert (await client.with_token(bob).post("/mcp/alice/hostile", json=INIT))[0] == 200
    status, body, response = await client.with_token(carol).post("/mcp/alice/hostile", json=INIT)
    assert status == 503 and body["error"]["code"] == "sandboxes_busy" and response.headers["Retry-After"]


async def test_idle_sessions_are_reaped(hosted_app):
    app, token = await published(hosted_app, idle_timeout_seconds=0.5)
    client = app.client.with_token(token)
    _, _, response = await client.post("/mcp/alice/hostile", json=INIT)
    session_id = response.headers["Mcp-Session-Id"]
    gateway = app.app[GATEWAY]
    for _ in range(100):
        if not gateway.sessions.sessions:
            break
        await asyncio.sleep(0.05)
    status, body, _ = await client.post("/mcp/alice/hostile", headers={"Mcp-Session-Id": session_id},
                                        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 404 and body["error"]["code"] == "mcp_session_not_found"


async def test_invoke_api(hosted_app):
    app, token = await published(hosted_app, call_timeout_seconds=1)
    client = app.client.with_token(token)
    status, body, _ = await client.post("/api/invoke/alice/hostile", json={"tool": "echo", "arguments": {"text": "x"}})
    assert status == 200 and body["result"]["content"][0]["text"] == "x"
    status, body, _ = await client.post("/api/invoke/alice/hostile", json={"tool": "loop"})
    assert status == 504 and body["error"]["code"] == "server_timeout"
    status, body, _ = await client.post("/api/invoke/alice/hostile", json={"tool": 3})
    assert status == 400 and body["error"]["code"] == "invalid_tool"
    assert not app.app[GATEWAY].sessions.sessions
    await app.app[GATEWAY].meter.flush()
    rows = await app.services.db.fetch_all("SELECT via, outcome FROM invocations ORDER BY id")
    assert [(r["via"], r["outcome"]) for r in rows] == [("invoke", "ok"), ("invoke", "timeout")]


async def test_http_surface(hosted_app):
    app, token = await published(hosted_app)
    client = app.client
    status, body, response = await client.post("/mcp/alice/hostile", json=INIT)
    assert status == 401
    challenge = response.headers["WWW-Authenticate"]
    assert f'resource_metadata="{app.base_url}/.well-known/oauth-protected-resource/mcp/alice/hostile"' in challenge
    status, metadata, _ = await client.get("/.well-known/oauth-protected-resource/mcp/alice/hostile")
    assert status == 200 and metadata["resource"] == f"{app.base_url}/mcp/alice/hostile"
    assert metadata["authorization_servers"] == [app.base_url]
    authed = client.with_token(token)
    assert (await authed.get("/mcp/alice/hostile"))[0] == 405
    status, body, _ = await authed.post("/mcp/alice/hostile", json=INIT, headers={"Origin": "https://evil.example"})
    assert status == 403 and body["error"]["code"] == "origin_refused"
    status, body, _ = await authed.post("/mcp/alice/hostile", json=INIT, headers={"MCP-Protocol-Version": "1999-01-01"})
    assert status == 400 and body["error"]["code"] == "unsupported_protocol_version"
    status, body, _ = await authed.post("/mcp/alice/hostile", json=[INIT])
    assert status == 400 and body["error"]["code"] == "batch_not_supported"
    status, body, _ = await authed.post("/mcp/alice/hostile", data=b"{not json")
    assert status == 400
    status, body, _ = await authed.post("/mcp/alice/hostile", json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    assert status == 400 and body["error"]["code"] == "mcp_session_required"
    status, body, _ = await authed.post("/mcp/alice/nothing", json=INIT)
    assert status == 404
    assert not app.app[GATEWAY].sessions.sessions  # none of the refusals started a sandbox
    status, _, response = await authed.post("/mcp/alice/hostile", json=INIT, headers={"Origin": app.base_url})
    session = {"Mcp-Session-Id": response.headers["Mcp-Session-Id"]}
    assert status == 200
    status, _, _ = await authed.post("/mcp/alice/hostile", headers=session,
                                     json={"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert status == 202
    _, other = await app.user("mallory")
    assert (await client.with_token(other).post("/mcp/alice/hostile", headers=session,
                                                json={"jsonrpc": "2.0", "id": 3, "method": "tools/list"}))[0] == 404
    assert (await authed.delete("/mcp/alice/hostile", headers=session))[0] == 204
    assert (await authed.delete("/mcp/alice/hostile", headers=session))[0] == 404


async def test_access_follows_the_package(hosted_app):
    app = await hosted_app()
    _, owner = await app.user("owner")
    _, member = await app.user("member")
    _, stranger = await app.user("stranger")
    from tests.seed import make_org
    await make_org(app, owner, "acme", {"member": "member"})
    await publish_bundle(app, owner, hostile_bundle("inside"), namespace="acme", visibility="org")
    await publish_bundle(app, owner, hostile_bundle("paid"), namespace="acme", pricing="subscription", amount="5.00",
                         currency="usd")
    assert (await app.client.with_token(member).post("/mcp/acme/inside", json=INIT))[0] == 200
    status, body, _ = await app.client.with_token(stranger).post("/mcp/acme/inside", json=INIT)
    assert status == 404 and body["error"]["code"] == "package_not_found"  # never says it exists
    status, body, _ = await app.client.with_token(member).post("/mcp/acme/paid", json=INIT)
    assert status == 403 and body["error"]["code"] == "entitlement_required"


async def test_registry_advertises_hosted_remotes(hosted_app, start_app):
    app, token = await published(hosted_app)
    status, body, _ = await app.client.get("/v0.1/servers")
    (entry,) = [e for e in body["servers"] if e["server"]["name"].endswith("alice/hostile")]
    assert entry["server"]["remotes"][0] == {
        "type": "streamable-http", "url": f"{app.base_url}/mcp/alice/hostile",
        "headers": [{"name": "Authorization", "isRequired": True, "isSecret": True,
                     "description": f"Bearer API token of your account at {app.base_url}"}]}
    off = await start_app(hosted={"backend": "off"})
    _, token = await off.user("alice")
    await publish_bundle(off, token, hostile_bundle())
    status, body, _ = await off.client.get("/v0.1/servers")
    assert all("remotes" not in e["server"] for e in body["servers"])
    status, body, response = await off.client.with_token(token).post("/mcp/alice/hostile", json=INIT)
    assert status == 503 and body["error"]["code"] == "hosted_unavailable" and response.headers["Retry-After"]
