"""Every route, every kind of credential: the answer matches the route's declared Access (web/access.py).

The table is generated from the running app's router, so a new route is tried as soon as it exists, and a
route without a declaration fails here (and stops the appliance at start-up). For each route and credential
the test works out, from the declaration alone, whether the front door must refuse the call and with which
code; an admitted call may still be refused by the service for its own reasons (a missing body, a role), but
never with one of the access codes.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time

import pytest

from mcpstore_appliance.accounts.credentials import secret_hash
from mcpstore_appliance.accounts.models import SCOPES
from mcpstore_appliance.web.access import ACCESS_CODES, Access, access_of, undeclared_routes
from mcpstore_appliance.web.api_policy import POLICY
from mcpstore_appliance.errors import Conflict
from mcpstore_appliance.web.auth import SESSION_COOKIE
from mcpstore_appliance.web.keys import OAUTH, USAGE
from mcpstore_appliance.web.scim_api import SCIM_TOKENS
from tests.seed import bundle_for, publish

SAFE = {"GET", "HEAD", "OPTIONS"}
KINDS = ("anonymous", *SCOPES, *(f"{scope}@orgb" for scope in SCOPES if scope != "admin"), "revoked", "expired",
         "disabled", "session", "session-no-csrf", "admin-session", "device", "usage", "oauth", "scim")
AUTH_FAILURES = {"revoked": "token_revoked", "expired": "token_expired", "disabled": "account_disabled"}
PATH_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


@pytest.fixture
async def world(start_app):
    """owner: owner of orga (path values) and a member of orgb (the 'other org' of bound tokens), with a private
    personal package and an org package; root: a site administrator; gone: a disabled user."""
    app = await start_app()
    owner, owner_token = await app.user("owner")
    root, root_token = await app.user("root", admin=True)
    gone, gone_token = await app.user("gone")
    owner_client = app.client.with_token(owner_token)
    for slug in ("orga", "orgb"):
        assert (await owner_client.post("/api/orgs", json={"slug": slug}))[0] == 201
    await publish(app, owner_token, "tool", namespace="orga", options={"visibility": "private"})
    await publish(app, owner_token, "secret", options={"visibility": "private"})
    async with app.services.db.write() as tx:
        await tx.execute("UPDATE users SET is_disabled = 1 WHERE id = ?", (gone.id,))
    _, sha = bundle_for("tool")
    return {"app": app, "owner": owner, "root": root, "gone_token": gone_token, "sha256": sha}


async def credential(world, kind: str) -> dict[str, str]:
    """Fresh headers for one kind of caller (fresh, so that a route that revokes or logs out harms no other)."""
    app, accounts = world["app"], world["app"].services.accounts
    if kind == "anonymous":
        return {}
    if kind == "disabled":
        return {"Authorization": f"Bearer {world['gone_token']}"}
    if kind == "device":  # an org device token (policy/), for orga: it reads orga's policy and nothing else
        secret, _ = await app.app[POLICY].create_device_token(await accounts.principal_for_user(world["owner"].id),
                                                             "orga", "device")
        return {"Authorization": f"Bearer {secret}"}
    if kind == "usage":  # a usage token (tokens/) of owner for orga/tool: it calls that hosted package only
        return {"Authorization": f"Bearer {await usage_token(world)}"}
    if kind == "oauth":  # an OAuth access token (oauth/) whose audience is the hosted endpoint of orga/tool
        return {"Authorization": f"Bearer {await oauth_token(app, world['owner'], 'orga/tool')}"}
    if kind == "scim":  # an org SCIM token (scim/), for orga: it provisions orga and nothing else
        owner = await accounts.principal_for_user(world["owner"].id)
        secret, _ = await app.app[SCIM_TOKENS].create(owner, await accounts.get_org("orga"), "idp")
        return {"Authorization": f"Bearer {secret}"}
    if kind.startswith("session") or kind == "admin-session":
        user = world["root"] if kind == "admin-session" else world["owner"]
        session_id, csrf = await accounts.start_session(user)
        headers = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
        return headers if kind == "session-no-csrf" else {**headers, "X-CSRF-Token": csrf}
    scope, _, org = kind.partition("@")
    user = world["root"] if scope == "admin" else world["owner"]
    principal = await accounts.principal_for_user(user.id)
    scopes = list(SCOPES[:3]) if kind in AUTH_FAILURES else [scope]
    secret, info = await accounts.create_token(principal, f"{kind}-token", scopes, org_slug=org or None)
    if kind == "revoked":
        await accounts.revoke_token(principal, info.id)
    if kind == "expired":
        async with app.services.db.write() as tx:
            await tx.execute("UPDATE api_tokens SET expires_at = ? WHERE token_hash = ?",
                             (time.time() - 1, secret_hash(secret)))
    return {"Authorization": f"Bearer {secret}"}


async def usage_token(world) -> str:
    usage = world["app"].app[USAGE]
    principal = await world["app"].services.accounts.principal_for_user(world["owner"].id)
    try:
        world["licence"] = (await usage.licences.create(principal, "orga", "tool"))["licence_key"]
    except Conflict:  # the one made before is still active
        pass
    return (await usage.exchange(world["licence"]))["token"]


async def oauth_token(app, user, ref: str) -> str:
    """An access token through the authorisation server's own steps (registration, approval, code, token)."""
    oauth, verifier = app.app[OAUTH], "v" * 43
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    client = await oauth.register({"redirect_uris": ["http://127.0.0.1:9/cb"]}, None)
    request = await oauth.authorization_request({
        "response_type": "code", "client_id": client["client_id"], "code_challenge": challenge,
        "code_challenge_method": "S256", "resource": f"{app.base_url}/mcp/{ref}"})
    code = await oauth.issue_code(await app.services.accounts.principal_for_user(user.id), request)
    tokens = await oauth.token({"grant_type": "authorization_code", "code": code, "client_id": client["client_id"],
                                "redirect_uri": "http://127.0.0.1:9/cb", "code_verifier": verifier})
    return tokens["access_token"]


def expected_refusal(access: Access, kind: str, method: str, path_values: dict[str, str], *,
                     unrouted: bool = False) -> str | None:
    """The access code the front door must answer with, or None when it must admit the call. (What no route took
    answers 404/405 without a CSRF check: there is nothing to protect.)"""
    if access.device:  # the handler checks the device token itself: any other credential is not one
        return None if kind == "device" else "invalid_device_token"
    if access.scim:  # likewise the SCIM token, for the org's identity provider
        return None if kind == "scim" else "invalid_token"
    if access.credentials == "ignored":
        return None
    if kind == "scim":  # not a user's token: refused wherever one is read
        return "invalid_token"
    if kind == "device":  # a managed device: anonymous as a user (acting for its org), so as anonymous callers
        kind = "anonymous"
    if kind == "oauth":  # good only at its audience, the hosted endpoint of orga/tool, with the invoke scope
        if access.resource is None or access.resource.format_map(path_values) != "/mcp/orga/tool":
            return "invalid_token"
        kind = "invoke"
    if kind in AUTH_FAILURES:
        return AUTH_FAILURES[kind]
    if kind == "session-no-csrf" and method not in SAFE and not unrouted:
        return "csrf_failed"
    if access.credentials == "optional":
        return None
    if kind == "anonymous":
        return "login" if access.page else "unauthenticated"
    session = kind in ("session", "session-no-csrf", "admin-session")
    if access.session_only and not session:
        return "session_required"
    if kind == "usage" and access.scope != "invoke":
        return "usage_token_only"
    scope, _, bound_org = kind.partition("@")
    scopes = set(SCOPES) if session else {"invoke"} if kind == "usage" else {scope}
    if access.scope is not None and access.scope not in scopes:
        return "insufficient_scope"
    if bound_org and access.org != "allowed" and path_values.get(access.org.removeprefix("path:")) != bound_org:
        return "org_bound_token"
    if access.admin and not (kind in ("admin", "admin-session")):
        return "admin_only"
    return None


def path_values(world, token_id: int) -> dict[str, str]:
    return {"namespace": "orga", "name": "tool", "version": "1.0.0", "slug": "orga", "username": "owner",
            "token_id": str(token_id), "sha256": world["sha256"], "index": "0", "path": "0/000",
            "server_name": "orga/tool", "action": "release", "unrouted_path": "no/such/thing",
            "order_id": "1", "entitlement_id": "1", "licence_id": "1", "provider": "stripe", "fmt": "json",
            "suffix": "mcp/orga/tool", "kind": "Users", "tail": "no/such/thing", "id": "u-1",
            "pending_id": "1", "domain": "orga.example", "grant_id": "1"}


def concrete(canonical: str, values: dict[str, str]) -> str:
    return PATH_PARAM.sub(lambda m: values[m.group(1)], canonical)


def error_code(status: int, body) -> str | None:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"].get("code")
    return None


def routes_of(app):
    return [route for route in app.router.routes() if route.method != "HEAD"]


async def test_every_route_declares_who_may_call_it(world):
    assert undeclared_routes(world["app"].app) == []
    assert all(access_of(route.handler) is not None for route in routes_of(world["app"].app))


async def test_every_route_answers_every_credential_as_declared(world):
    app = world["app"]
    routes = routes_of(app.app)
    assert len(routes) > 60  # the whole surface, not a stub of it
    problems, refusals, admissions = [], 0, 0
    for route in routes:
        access = access_of(route.handler)
        method = "POST" if route.method == "*" else route.method
        for kind in KINDS:
            headers = {"Accept": "application/json", **await credential(world, kind)}
            spare = await app.services.accounts.create_token(
                await app.services.accounts.principal_for_user(world["owner"].id), "spare", ["read"])
            values = path_values(world, spare[1].id)
            path = concrete(route.resource.canonical, values)
            kwargs = {"json": {}} if method not in SAFE else {}
            status, body, response = await app.client.request(method, path, headers=headers, allow_redirects=False,
                                                              **kwargs)
            want = expected_refusal(access, kind, method, values, unrouted="unrouted_path" in route.resource.canonical)
            code = error_code(status, body)
            where = f"{method} {route.resource.canonical} as {kind}"
            if want == "login":
                refusals += 1
                if status != 303 or not response.headers.get("Location", "").startswith("/login?next="):
                    problems.append(f"{where}: want a redirect to the login page, got {status}")
            elif want is not None:
                refusals += 1
                want_status = 401 if want in ("unauthenticated", "invalid_token", "invalid_device_token",
                                              *AUTH_FAILURES.values()) else 403
                # the MCP Registry API's and SCIM's own error shapes have no code
                registry = path.startswith(("/v0", "/scim/"))
                if status != want_status or (not registry and code != want):
                    problems.append(f"{where}: want {want_status} {want}, got {status} {code or body!r:.120}")
            else:
                admissions += 1
                # (a service's own 401 or 403, such as a wrong password on the login form, is not the front door's)
                refused_here = code in ACCESS_CODES or (path.startswith("/v0") and status in (401, 403))
                # 501: what the registry API does not do; 503 hosted_unavailable: hosted execution is off here
                declined = status == 501 or (status == 503 and code == "hosted_unavailable")
                if refused_here or (status >= 500 and not declined):
                    problems.append(f"{where}: want it admitted, got {status} {code or body!r:.120}")
    assert problems == [], "\n".join(problems)
    assert refusals > 300 and admissions > 300  # both sides of every declaration were exercised
