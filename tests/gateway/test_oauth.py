"""OAuth access tokens at the hosted endpoint, on a real appliance with bubblewrap sandboxes: the consented flow
over plain HTTP, and each hostile use of codes and tokens (wrong verifier, reused code, another client or
redirect URI, a token for another resource, expired, revoked, rotated and forged tokens)."""

from __future__ import annotations

import time

from mcpstore_appliance.accounts.credentials import secret_hash
from tests.gateway.client import mcp_session
from tests.gateway.oauth_support import flow_for, pkce, register
from tests.gateway.servers import hostile_bundle, publish_bundle

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}


async def world(hosted_app):
    app = await hosted_app()
    user, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    await publish_bundle(app, token, hostile_bundle("other"))
    return app, user, await flow_for(app, user)


async def initialize(app, access_token: str, ref: str = "alice/hostile"):
    """POST initialize with the token: (status, error code or None); a session it opened is ended."""
    client = app.client.with_token(access_token)
    status, body, response = await client.post(f"/mcp/{ref}", json=INIT)
    if status == 200:
        await client.delete(f"/mcp/{ref}", headers={"Mcp-Session-Id": response.headers["Mcp-Session-Id"]})
        return status, None
    return status, body["error"]["code"]


async def test_access_token_works_only_at_its_own_endpoint(hosted_app):
    app, _, flow = await world(hosted_app)
    tokens = await flow.tokens("alice/hostile")
    assert tokens["token_type"] == "Bearer" and tokens["scope"] == "invoke" and tokens["expires_in"] == 3600
    async with mcp_session(app.base_url, "alice/hostile", tokens["access_token"]) as session:
        assert (await session.call_tool("echo", {"text": "via oauth"})).content[0].text == "via oauth"
    assert await initialize(app, tokens["access_token"], "alice/other") == (401, "invalid_token")
    bearer = app.client.with_token(tokens["access_token"])
    for method, path in (("POST", "/api/invoke/alice/hostile"), ("GET", "/api/packages/alice/hostile"),
                         ("GET", "/api/tokens"), ("POST", "/api/tokens")):
        status, body, _ = await bearer.request(method, path, json={"tool": "echo"} if method == "POST" else None)
        assert status == 401 and body["error"]["code"] == "invalid_token", (path, status, body)
    event = await app.services.db.fetch_one("SELECT actor, action, target, details FROM audit_events"
                                            " WHERE action = 'oauth.grant'")
    assert event["actor"] == "alice" and event["target"] == flow.client_id and "alice/hostile" in event["details"]
    # a token stored by the appliance is only a hash
    stored = await app.services.db.fetch_all("SELECT token_hash FROM oauth_tokens")
    assert secret_hash(tokens["access_token"]) in {r["token_hash"] for r in stored}
    assert tokens["access_token"] not in str(stored)


async def test_wrong_verifier_burns_the_code(hosted_app):
    app, _, flow = await world(hosted_app)
    verifier, challenge = pkce()
    code = await flow.code("alice/hostile", challenge)
    status, body, _ = await flow.exchange(code, pkce()[0], "alice/hostile")
    assert status == 400 and body["error"] == "invalid_grant" and "code_verifier" in body["error_description"]
    status, body, _ = await flow.exchange(code, verifier, "alice/hostile")
    assert status == 400 and body["error"] == "invalid_grant"
    assert await app.services.db.fetch_value("SELECT COUNT(*) FROM oauth_tokens") == 0


async def test_a_reused_code_revokes_what_it_issued(hosted_app):
    app, _, flow = await world(hosted_app)
    verifier, challenge = pkce()
    code = await flow.code("alice/hostile", challenge)
    status, tokens, _ = await flow.exchange(code, verifier, "alice/hostile")
    assert status == 200 and await initialize(app, tokens["access_token"]) == (200, None)
    status, body, _ = await flow.exchange(code, verifier, "alice/hostile")
    assert status == 400 and body["error"] == "invalid_grant" and "already used" in body["error_description"]
    assert await initialize(app, tokens["access_token"]) == (401, "token_revoked")
    status, body, _ = await flow.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"],
                                       client_id=flow.client_id)
    assert status == 400 and body["error"] == "invalid_grant"


async def test_code_is_bound_to_client_redirect_resource_and_time(hosted_app):
    app, user, flow = await world(hosted_app)
    other = await flow_for(app, user)
    _, second = await register(app, redirect_uris=["http://127.0.0.1:9/callback", "http://127.0.0.1:9/other"])
    cases = [({"client_id": other.client_id}, "invalid_grant"),
             ({"redirect_uri": "http://127.0.0.1:9/other"}, "invalid_grant"),
             ({"resource": f"{app.base_url}/mcp/alice/other"}, "invalid_target"),
             ({"resource": "https://evil.example/mcp/alice/hostile"}, "invalid_target")]
    for changes, error in cases:
        verifier, challenge = pkce()
        code = await flow.code("alice/hostile", challenge)
        status, body, _ = await flow.exchange(code, verifier, "alice/hostile", **changes)
        assert (status, body["error"]) == (400, error), changes
    verifier, challenge = pkce()
    code = await flow.code("alice/hostile", challenge)
    async with app.services.db.write() as tx:
        await tx.execute("UPDATE oauth_codes SET expires_at = ?", (time.time() - 1,))
    status, body, _ = await flow.exchange(code, verifier, "alice/hostile")
    assert status == 400 and body["error"] == "invalid_grant" and "expired" in body["error_description"]
    assert second["client_id"] and await app.services.db.fetch_value("SELECT COUNT(*) FROM oauth_tokens") == 0


async def test_expired_revoked_and_forged_access_tokens(hosted_app):
    app, _, flow = await world(hosted_app)
    expiring, revoked = await flow.tokens("alice/hostile"), await flow.tokens("alice/hostile")
    async with app.services.db.write() as tx:
        await tx.execute("UPDATE oauth_tokens SET expires_at = ? WHERE token_hash = ?",
                         (time.time() - 1, secret_hash(expiring["access_token"])))
    status, body, response = await app.client.with_token(expiring["access_token"]).post("/mcp/alice/hostile",
                                                                                        json=INIT)
    assert (status, body["error"]["code"]) == (401, "token_expired")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    status, _, _ = await app.client.post("/oauth/revoke", data={"token": revoked["refresh_token"],
                                                                "client_id": flow.client_id})
    assert status == 200 and await initialize(app, revoked["access_token"]) == (401, "token_revoked")
    for forged in ("mcpo_" + "x" * 43, revoked["refresh_token"], expiring["access_token"][:-2] + "AA"):
        assert (await initialize(app, forged))[0] == 401


async def test_refresh_tokens_rotate_and_a_replay_revokes_the_grant(hosted_app):
    app, _, flow = await world(hosted_app)
    first = await flow.tokens("alice/hostile")
    refresh = {"grant_type": "refresh_token", "client_id": flow.client_id}
    status, body, _ = await flow.token(**refresh, refresh_token=first["refresh_token"],
                                       resource=f"{app.base_url}/mcp/alice/other")
    assert (status, body["error"]) == (400, "invalid_target")  # and that attempt used the refresh token up
    second = await flow.tokens("alice/hostile")
    status, third, _ = await flow.token(**refresh, refresh_token=second["refresh_token"])
    assert status == 200 and third["refresh_token"] != second["refresh_token"]
    assert await initialize(app, third["access_token"]) == (200, None)
    status, body, _ = await flow.token(**refresh, refresh_token=second["refresh_token"])  # a replay
    assert status == 400 and body["error"] == "invalid_grant"
    assert await initialize(app, third["access_token"]) == (401, "token_revoked")
    # the refused attempt above used the first refresh token up: presenting it again revokes its grant too
    assert await initialize(app, first["access_token"]) == (200, None)
    status, body, _ = await flow.token(**refresh, refresh_token=first["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"
    assert await initialize(app, first["access_token"]) == (401, "token_revoked")


async def test_long_expired_codes_and_tokens_are_purged(hosted_app):
    app, _, flow = await world(hosted_app)
    old = await flow.tokens("alice/hostile")
    async with app.services.db.write() as tx:
        await tx.execute("UPDATE oauth_tokens SET expires_at = ?", (time.time() - 2 * 86400,))
    fresh = await flow.tokens("alice/hostile")  # a new approval purges what expired more than a day ago
    hashes = {r["token_hash"] for r in await app.services.db.fetch_all("SELECT token_hash FROM oauth_tokens")}
    assert secret_hash(old["access_token"]) not in hashes and secret_hash(fresh["access_token"]) in hashes


async def test_an_api_token_without_invoke_is_challenged_for_the_scope(hosted_app):
    app, user, _ = await world(hosted_app)
    principal = await app.services.accounts.principal_for_user(user.id)
    read_only, _ = await app.services.accounts.create_token(principal, "read only", ["read"])
    status, body, response = await app.client.with_token(read_only).post("/mcp/alice/hostile", json=INIT)
    assert status == 403 and body["error"]["code"] == "insufficient_scope"
    challenge = response.headers["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="invoke"' in challenge
    assert "resource_metadata=" in challenge
