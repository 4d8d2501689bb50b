"""Installs through the gateway follow the org's policy: a member acting for the org (X-Mcpstore-Org or an
org-bound token) cannot start a hosted server the policy refuses, on the MCP endpoint or the invoke API, and
is told the rule; the same member acting for no org still can."""

from __future__ import annotations

from tests.gateway.servers import hostile_bundle, publish_bundle
from tests.seed import make_org

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


async def test_hosted_installs_follow_the_org_policy(hosted_app):
    app = await hosted_app()
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await make_org(app, alice, "acme", {"bob": "member"})
    await publish_bundle(app, alice, hostile_bundle())
    admin = app.client.with_token(alice)
    status, body, _ = await admin.put("/api/orgs/acme/policy", json={"policy": {"allow_hosted_servers": False}})
    assert status == 200, body
    status, bound, _ = await app.client.with_token(bob).post(
        "/api/tokens", json={"name": "ci", "scopes": ["read", "invoke"], "org": "acme"})
    assert status == 201, bound
    member = app.client.with_token(bob)
    for client, headers in ((member, {"X-Mcpstore-Org": "acme"}), (app.client.with_token(bound["token"]), {})):
        status, body, _ = await client.post("/api/invoke/alice/hostile", json={"tool": "echo",
                                                                              "arguments": {"text": "hi"}},
                                            headers=headers)
        assert status == 403 and body["error"]["code"] == "policy_refused", body
        assert body["error"]["details"]["rule"] == "hosted_servers_not_allowed"
        status, body, _ = await client.post("/mcp/alice/hostile", json=INIT, headers={**MCP_HEADERS, **headers})
        assert status == 403 and body["error"]["details"]["rule"] == "hosted_servers_not_allowed", body
    status, body, _ = await member.post("/api/invoke/alice/hostile", json={"tool": "echo", "arguments": {"text": "hi"}})
    assert status == 200 and body["result"]["content"][0]["text"] == "hi", body
