"""A private registry (`[registry] mode = "private"`): every route of the route table, called anonymously,
answers 401 (or sends a browser to the login page) except the few the allowlist below names; signed-in
callers and managed devices read as before; sign-up needs an invitation. The public mode is untouched."""

from __future__ import annotations

import pytest

from mcpstore_appliance.web.access import access_of
from mcpstore_appliance.web.cors import PREFLIGHT_PATHS
from tests.integration.test_route_access import concrete, error_code, path_values, routes_of
from tests.seed import bundle_for, make_org, publish

PRIVATE = {"registry": {"mode": "private"}}
# What a private registry answers without signing in: probes, static files, signing in and up, peers'
# protocols (payment webhooks, the witness), single sign-on, the hosted endpoint's auth metadata, CORS preflights, device policy,
# and the brand (stylesheet, logo) that the login page shows.
OPEN = {
    "GET /healthz", "GET /readyz", "GET /metrics", "GET /static/{name}", "GET /favicon.ico",
    "GET /login", "POST /login", "POST /logout", "GET /signup", "POST /signup", "GET /setup", "POST /setup",
    "POST /login/sso", "GET /sso/callback",  # single sign-on: the way in of a private registry
    "POST /api/signup", "POST /api/auth/token", "POST /api/payments/{provider}/webhook",
    "GET /ledger/witness/key", "POST /ledger/witness/add-checkpoint", "GET /mcp/{namespace}/{name}",
    "GET /.well-known/oauth-protected-resource", "GET /.well-known/oauth-protected-resource/mcp/{namespace}/{name}",
    "GET /policy/{slug}.{fmt}", "GET /branding.css", "GET /branding/logo",
    # OAuth clients of the hosted endpoints (their user signs in at the authorisation step)
    "GET /.well-known/oauth-authorization-server", "GET /.well-known/oauth-authorization-server/{suffix}",
    "POST /oauth/register", "POST /oauth/token", "POST /oauth/revoke",
    # usage tokens: a licence key is the credential; publishers' validators read the keys and revocations
    "POST /api/usage/tokens", "GET /.well-known/jwks.json", "GET /.well-known/mcpstore-revocations.json",
    # SAML sign-in: the IdP reads the SP's metadata, the browser starts there and posts the assertion back
    "GET /saml/{slug}/metadata", "GET /saml/{slug}/login", "POST /saml/{slug}/acs",
}


def _key(route) -> str:
    canonical = route.resource.canonical
    return f"{route.method} {canonical}"


@pytest.fixture
async def private(start_app):
    app = await start_app(**PRIVATE)
    _, alice = await app.user("alice")
    await make_org(app, alice, "orga")
    await publish(app, alice, "tool", namespace="orga")
    return app, alice


async def test_nothing_is_readable_anonymously_but_the_allowlist(private):
    app, _ = private
    _, sha = bundle_for("tool")
    values = {**path_values({"sha256": sha}, 1), "name": "tool"}
    opened, problems = set(), []
    for route in routes_of(app.app):
        access = access_of(route.handler)
        method = "POST" if route.method == "*" else route.method
        open_here = access.open_when_private and not access.scim  # SCIM: its handler demands the org's token
        if open_here:
            opened.add(_key(route).replace("{name:.+}", "{name}").replace(
                "{provider:stripe|lnbits}", "{provider}"))
        path = concrete(route.resource.canonical, values)
        kwargs = {"json": {}} if method not in ("GET", "HEAD", "OPTIONS") else {}
        status, body, response = await app.client.request(method, path, headers={"Accept": "application/json"},
                                                          allow_redirects=False, **kwargs)
        if open_here:
            continue
        refused = status == 401 or (status == 303 and response.headers["Location"].startswith("/login?"))
        if not refused:
            problems.append(f"{method} {route.resource.canonical}: {status} {error_code(status, body) or body!r:.100}")
        elif status == 401 and not path.startswith("/v0") and not access.scim:
            assert error_code(status, body) in ("private_registry", "unauthenticated"), (path, body)
    assert problems == [], "\n".join(problems)
    keys = {k.split(":")[0] if "{" not in k else k for k in opened}
    normalized = {k.replace("{slug:[a-z0-9][a-z0-9-]{0,38}}.{fmt:json|mobileconfig|reg|admx|adml|vscode\\.json}",
                            "{slug}.{fmt}") for k in keys}
    assert {k for k in normalized if not k.startswith("OPTIONS ")} == OPEN
    preflights = {f"OPTIONS {path}".replace(":.+}", "}") for path in PREFLIGHT_PATHS}  # web/cors.py
    assert all(k.startswith("OPTIONS /v0") or k in preflights for k in normalized if k.startswith("OPTIONS "))


async def test_browsers_go_to_the_login_page_and_members_read(private):
    app, alice = private
    status, _, response = await app.client.get("/", headers={"Accept": "text/html"}, allow_redirects=False)
    assert status == 303 and response.headers["Location"].startswith("/login?next=")
    assert (await app.client.get("/login", headers={"Accept": "text/html"}))[0] == 200
    assert (await app.client.get("/healthz"))[0] == 200
    status, body, _ = await app.client.get("/api/packages/orga/tool")
    assert (status, body["error"]["code"]) == (401, "private_registry")
    member = app.client.with_token(alice)
    assert (await member.get("/api/packages/orga/tool"))[0] == 200
    assert (await member.get("/api/packages/orga/tool/versions/1.0.0/download"))[0] == 200
    assert (await member.get("/v0.1/servers"))[0] == 200
    status, device, _ = await member.post("/api/orgs/orga/device-tokens", json={"name": "mdm"})
    assert (await app.client.with_token(device["token"]).get("/api/packages/orga/tool/latest"))[0] == 200
    status, body, _ = await app.client.get("/ledger/lookup/" + bundle_for("tool")[1])
    assert status == 401


async def test_sign_up_needs_an_invitation(private):
    app, _ = private
    status, body, _ = await app.client.post("/api/signup", json={"email": "x@example.com", "username": "xavier",
                                                                  "password": "correct horse battery"})
    assert status in (400, 403) and "invit" in body["error"]["message"].lower(), body
    assert await app.services.db.fetch_value("SELECT count(*) FROM users WHERE username = 'xavier'") == 0
    assert app.services.settings.accounts.signup == "invite"


async def test_the_public_mode_is_unchanged(start_app):
    app = await start_app()
    _, alice = await app.user("alice")
    await publish(app, alice, "tool")
    assert (await app.client.get("/api/packages/alice/tool"))[0] == 200
    assert (await app.client.get("/", headers={"Accept": "text/html"}))[0] == 200
    assert app.services.settings.accounts.signup == "open"
