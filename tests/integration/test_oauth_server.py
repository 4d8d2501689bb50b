"""The OAuth authorisation server of the hosted endpoints over HTTP, without a sandbox: metadata, dynamic
client registration, and every refusal of an authorisation request. Hosted execution is off here, so the
consent page refuses every package with the gateway's reason; the approved flow and the tokens are tested
with a real sandbox in tests/gateway/test_oauth.py and with the SDK and Chromium in tests/e2e."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from tests.gateway.oauth_support import REDIRECT, flow_for, pkce, redirected, register


async def count(app, table: str) -> int:
    return await app.services.db.fetch_value(f"SELECT COUNT(*) FROM {table}")


async def test_metadata_links_resource_to_authorization_server(start_app):
    app = await start_app()
    status, resource, _ = await app.client.get("/.well-known/oauth-protected-resource/mcp/alice/echo")
    assert status == 200 and resource["authorization_servers"] == [app.base_url]
    assert resource["scopes_supported"] == ["invoke"]
    status, meta, response = await app.client.get("/.well-known/oauth-authorization-server")
    assert status == 200 and meta["issuer"] == app.base_url
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint"] == f"{app.base_url}/oauth/token"
    assert meta["registration_endpoint"] == f"{app.base_url}/oauth/register"
    assert meta["token_endpoint_auth_methods_supported"] == ["none"]
    # the path-suffixed variant that clients build from the MCP endpoint's path answers the same document
    status, suffixed, _ = await app.client.get("/.well-known/oauth-authorization-server/mcp/alice/echo")
    assert status == 200 and suffixed == meta
    assert (await app.client.get("/.well-known/oauth-authorization-server/elsewhere"))[0] == 404
    status, _, response = await app.client.post("/mcp/alice/echo", json={})
    challenge = response.headers["WWW-Authenticate"]
    assert status == 401 and 'scope="invoke"' in challenge and "resource_metadata=" in challenge


async def test_registration_of_a_public_client(start_app):
    app = await start_app()
    status, client = await register(app, token_endpoint_auth_method="client_secret_post",
                                    redirect_uris=[REDIRECT, "https://app.example/cb", "http://[::1]:8/cb"])
    assert status == 201 and client["client_id"].startswith("mcpc_")
    assert client["token_endpoint_auth_method"] == "none" and "client_secret" not in client
    assert client["grant_types"] == ["authorization_code", "refresh_token"] and client["scope"] == "invoke"


@pytest.mark.parametrize("metadata, error", [
    ({"redirect_uris": ["http://app.example/cb"]}, "invalid_redirect_uri"),  # http off loopback
    ({"redirect_uris": ["https://app.example/cb#frag"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://user@app.example/cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["myapp://cb"]}, "invalid_redirect_uri"),
    ({"redirect_uris": ["https://app.example/" + "a" * 2001]}, "invalid_redirect_uri"),
    ({"redirect_uris": [f"https://app.example/{i}" for i in range(6)]}, "invalid_redirect_uri"),
    ({"redirect_uris": []}, "invalid_redirect_uri"),
    ({"redirect_uris": "https://app.example/cb"}, "invalid_redirect_uri"),
    ({"grant_types": ["client_credentials"]}, "invalid_client_metadata"),
    ({"response_types": ["token"]}, "invalid_client_metadata"),
    ({"scope": "admin"}, "invalid_scope"),
    ({"client_name": "x" * 101}, "invalid_client_metadata"),
    ({"client_name": "evil\u202e"}, "invalid_client_metadata"),
])
async def test_registration_refuses_bad_metadata(start_app, metadata, error):
    app = await start_app()
    status, body = await register(app, **metadata)
    assert status == 400 and body["error"] == error and body["error_description"]
    assert await count(app, "oauth_clients") == 0


async def test_registration_refuses_what_is_not_json_and_is_rate_limited(start_app):
    app = await start_app(oauth={"registrations_per_ip_per_hour": 2})
    for data, content_type in ((b"{no", "application/json"), (b"[]", "application/json"),
                               (b"redirect_uris=x", "application/x-www-form-urlencoded"),
                               (b"{" + b" " * 20000 + b"}", "application/json")):
        status, body, _ = await app.client.post("/oauth/register", data=data, headers={"Content-Type": content_type})
        assert status == 400 and body["error"] == "invalid_client_metadata"
    assert (await register(app))[0] == 201
    status, body = await register(app)
    assert status == 429 and await count(app, "oauth_clients") == 1


async def test_authorize_sends_anonymous_visitors_to_the_login_page(start_app):
    app = await start_app()
    _, challenge = pkce()
    query = {"client_id": "mcpc_x", "code_challenge": challenge}
    status, _, response = await app.client.get("/oauth/authorize", params=query, allow_redirects=False)
    location = response.headers["Location"]
    assert status == 303 and location.startswith("/login?next=")
    assert parse_qs(urlsplit(location).query)["next"][0].startswith("/oauth/authorize?")


async def test_unknown_client_or_unregistered_redirect_is_never_redirected(start_app):
    app = await start_app()
    user, _ = await app.user("alice")
    flow = await flow_for(app, user)
    _, challenge = pkce()
    attempts = [flow.params("alice/echo", challenge, client_id="mcpc_unknown"),
                flow.params("alice/echo", challenge, client_id="mcpc_unknown", redirect_uri="https://evil.example/"),
                flow.params("alice/echo", challenge, redirect_uri="https://evil.example/cb"),
                flow.params("alice/echo", challenge, redirect_uri=REDIRECT + "/../../evil"),
                flow.params("alice/echo", challenge, redirect_uri=REDIRECT + "?next=https://evil.example"),
                flow.params("alice/echo", challenge, redirect_uri="http://127.0.0.1:9/callbackX"),
                flow.params("alice/echo", challenge, state="s" * 501)]
    for params in attempts:
        status, body, response = await flow.consent_page(params)
        assert status == 400 and "Location" not in response.headers, params
        assert b"cannot be used" in body
        status, body, response = await flow.decide(params)
        assert status == 400 and "Location" not in response.headers, params
    assert await count(app, "oauth_codes") == 0


@pytest.mark.parametrize("changes, error", [
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "short"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"resource": None}, "invalid_target"),
    ({"resource": "https://evil.example/mcp/alice/echo"}, "invalid_target"),
    ({"resource": "BASE/api/packages"}, "invalid_target"),
    ({"resource": "BASE/mcp/alice/echo?x=1"}, "invalid_target"),
    ({"scope": "admin"}, "invalid_scope"),
])
async def test_bad_authorization_requests_go_back_with_an_error(start_app, changes, error):
    app = await start_app()
    user, _ = await app.user("alice")
    flow = await flow_for(app, user)
    _, challenge = pkce()
    changes = {k: v.replace("BASE", app.base_url) if v else v for k, v in changes.items()}
    status, _, response = await flow.consent_page(flow.params("alice/echo", challenge, **changes))
    assert status == 303
    answer = redirected(response)
    assert answer["error"] == error and answer["state"] == "st-1" and "code" not in answer


async def test_consent_refuses_a_package_the_user_cannot_call_with_the_reason(start_app):
    app = await start_app()  # hosted execution is off: no package can be called
    user, _ = await app.user("alice")
    flow = await flow_for(app, user)
    _, challenge = pkce()
    params = flow.params("alice/echo", challenge)
    status, body, _ = await flow.consent_page(params)
    assert status == 403 and b"You cannot allow this" in body and b"hosted execution is unavailable" in body
    assert b'id="approve"' not in body
    status, body, _ = await flow.decide(params)  # approving anyway changes nothing
    assert status == 403 and await count(app, "oauth_codes") == 0
    status, _, response = await flow.decide(params, "deny")
    answer = redirected(response)
    assert status == 303 and answer["error"] == "access_denied" and answer["state"] == "st-1"


async def test_consent_form_needs_the_session_csrf_token(start_app):
    app = await start_app()
    user, token = await app.user("alice")
    flow = await flow_for(app, user)
    _, challenge = pkce()
    status, body, _ = await flow.decide(flow.params("alice/echo", challenge), csrf="forged")
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    # an API token cannot approve in the user's name either: the form is for browser sessions
    status, body, _ = await app.client.with_token(token).post("/oauth/authorize", data={"decision": "approve"})
    assert status == 403 and body["error"]["code"] == "session_required"
    assert await count(app, "oauth_codes") == 0


@pytest.mark.parametrize("form, error", [
    ({"grant_type": "password", "username": "a"}, "unsupported_grant_type"),
    ({"grant_type": "authorization_code", "code": "nope"}, "invalid_grant"),
    ({"grant_type": "refresh_token", "refresh_token": "mcpr_nope"}, "invalid_grant"),
])
async def test_token_endpoint_refusals(start_app, form, error):
    app = await start_app()
    status, body, response = await app.client.post("/oauth/token", data=form)
    assert status == 400 and body["error"] == error and response.headers["Cache-Control"] == "no-store"


async def test_token_endpoint_reads_only_single_valued_forms(start_app):
    app = await start_app()
    status, body, _ = await app.client.post("/oauth/token", json={"grant_type": "authorization_code"})
    assert status == 400 and body["error"] == "invalid_request"
    status, body, _ = await app.client.post("/oauth/token", data="grant_type=refresh_token&grant_type=x",
                                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 400 and body["error"] == "invalid_request"
    status, _, _ = await app.client.post("/oauth/revoke", data={"token": "mcpo_unknown", "client_id": "mcpc_x"})
    assert status == 200  # RFC 7009: unknown tokens are not an error


async def test_forged_oauth_token_is_refused_everywhere(start_app):
    app = await start_app()
    forged = app.client.with_token("mcpo_" + "A" * 43)
    status, body, response = await forged.post("/mcp/alice/echo", json={})
    assert status == 401 and body["error"]["code"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    status, body, _ = await forged.get("/api/packages")
    assert status == 401 and body["error"]["code"] == "invalid_token"
