"""Credentials mean what they say: the attacks found on the earlier code (issue 17), each refused, and the
declarations themselves held to the rules (writes to accounts need `account`, never `read`)."""

from __future__ import annotations

import time

from mcpstore_appliance.web.access import access_of
from tests.seed import publish

SAFE = {"GET", "HEAD", "OPTIONS"}
# Writes anyone may make: they carry their own proof (a password, an invitation, a signed checkpoint) or none
# is needed (logging out), and they are CSRF-checked for browsers.
PUBLIC_WRITES = {"/api/signup", "/api/auth/token", "/login", "/logout", "/signup", "/setup",
                 "/login/sso",  # starts a sign-in at the org's identity provider, as /login does with a password
                 "/ledger/witness/add-checkpoint", "/{unrouted_path}",
                 "/api/payments/{provider}/webhook",  # payment providers: a signature, or our HMAC in the URL
                 # OAuth clients: public ones, which prove themselves with a code and its PKCE verifier or a
                 # refresh token (registration is rate-limited per address)
                 "/oauth/register", "/oauth/token", "/oauth/revoke",
                 "/api/usage/tokens",  # a licence key in the body is the proof (or L402's macaroon and preimage)
                 "/saml/{slug}/acs"}  # the IdP's POST binding: its signed assertion, for a request of ours
UNSUPPORTED = ("/publish", "/servers/{server_name}/versions/{version}")  # the registry API's 501s, for anyone
ACCOUNT_PREFIXES = ("/api/tokens", "/api/orgs", "/account", "/orgs/")


async def test_declarations_follow_the_rules(appliance):
    for route in appliance.app.router.routes():
        access, path, method = access_of(route.handler), route.resource.canonical, route.method
        where = f"{method} {path}"
        if method in SAFE or path in PUBLIC_WRITES or (path.startswith("/v0") and path.endswith(UNSUPPORTED)):
            continue
        if access.scim:  # an org's identity provider: its SCIM token, checked by the handler (web/scim_api.py)
            continue
        assert access.credentials == "required", where
        assert access.scope not in (None, "read"), f"{where} changes state with scope {access.scope!r}"
        if path.startswith(ACCOUNT_PREFIXES):
            assert access.scope == "account", where
        if path.startswith(("/api/admin", "/admin")):
            assert access.admin and access.org == "refused", where


async def people(app):
    """owner: owns orga and orgb, a private personal package and a private package in orga; dave: nobody."""
    _, owner_token = await app.user("owner")
    await app.user("dave")
    owner = app.client.with_token(owner_token)
    for slug in ("orga", "orgb"):
        assert (await owner.post("/api/orgs", json={"slug": slug}))[0] == 201
    await publish(app, owner_token, "secret", options={"visibility": "private"})
    await publish(app, owner_token, "tool", namespace="orga", options={"visibility": "private"})
    return owner


async def token(client, **body):
    status, answer, _ = await client.post("/api/tokens", json={"name": "t", **body})
    assert status == 201, answer
    return answer


async def test_a_read_token_changes_no_membership_org_invite_or_token(appliance):
    owner = await people(appliance)
    read = appliance.client.with_token((await token(owner, scopes=["read"]))["token"])
    spare = await token(owner, scopes=["read"])
    attempts = [("PUT", "/api/orgs/orga/members/dave", {"role": "owner"}),
                ("POST", "/api/orgs", {"slug": "orgc"}),
                ("POST", "/api/orgs/orga/invites", {"role": "owner"}),
                ("DELETE", "/api/orgs/orga/members/owner", None),
                ("DELETE", f"/api/tokens/{spare['id']}", None),
                ("POST", "/api/tokens", {"name": "more", "scopes": ["read"]})]
    for method, path, body in attempts:
        status, answer, _ = await read.request(method, path, **({"json": body} if body else {}))
        assert (status, answer["error"]["code"]) == (403, "insufficient_scope"), (method, path)
    _, members, _ = await owner.get("/api/orgs/orga/members")
    assert [m["username"] for m in members["members"]] == ["owner"]
    assert (await owner.get("/api/orgs/orgc"))[0] == 404
    assert not next(t for t in (await owner.get("/api/tokens"))[1]["tokens"] if t["id"] == spare["id"])["revoked"]


async def test_a_bound_token_mints_only_tokens_bound_to_its_org(appliance):
    owner = await people(appliance)
    bound = appliance.client.with_token((await token(owner, scopes=["read", "account"], org="orgb"))["token"])
    minted = await token(bound, scopes=["read"])
    assert minted["org"] == "orgb"  # not the unbound token of the attack
    status, answer, _ = await bound.post("/api/tokens", json={"name": "wider", "org": "orga"})
    assert (status, answer["error"]["code"]) == (403, "org_bound_token")
    status, answer, _ = await bound.post("/api/tokens", json={"name": "more", "scopes": ["publish"]})
    assert (status, answer["error"]["code"]) == (403, "scope_not_allowed")
    minted_client = appliance.client.with_token(minted["token"])
    assert (await minted_client.get("/api/packages/orga/tool"))[0] == 404
    assert (await minted_client.get("/api/packages/owner/secret"))[0] == 404


async def test_a_token_never_outlives_the_token_that_creates_it(appliance):
    owner = await people(appliance)
    short = await token(owner, scopes=["read", "account"], expires_in_days=3)
    client = appliance.client.with_token(short["token"])
    status, answer, _ = await client.post("/api/tokens", json={"name": "long", "expires_in_days": 30})
    assert (status, answer["error"]["code"]) == (403, "expiry_not_allowed")
    default = await token(client)
    assert default["expires_at"] <= short["expires_at"]
    assert (await token(client, expires_in_days=2))["expires_at"] < short["expires_at"]


async def test_a_bound_token_sees_and_does_only_what_concerns_its_org(appliance):
    owner = await people(appliance)
    unbound = await token(owner, scopes=["read"])
    bound_info = await token(owner, scopes=["read", "publish", "account"], org="orgb")
    bound = appliance.client.with_token(bound_info["token"])
    for path in ("/api/packages/owner/secret", "/api/packages/owner/secret/versions/1.0.0/download",
                 "/api/packages/orga/tool"):
        assert (await bound.get(path))[0] == 404, path
    _, found, _ = await bound.get("/api/packages", params={"q": "secret"})
    assert found["packages"] == []
    listed = (await bound.get("/api/tokens"))[1]["tokens"]
    assert {t["org"] for t in listed} == {"orgb"}
    status, _, _ = await bound.delete(f"/api/tokens/{unbound['id']}")
    assert status == 404
    status, answer, _ = await bound.post("/api/packages/owner/secret/versions/1.0.0/yank", json={"reason": "x"})
    assert (status, answer["error"]["code"]) == (403, "org_bound_token")
    await publish(appliance, bound_info["token"], "bound-ok", namespace="orgb")
    await publish(appliance, bound_info["token"], "bound-no", expect=403)  # the personal namespace


async def test_a_publish_only_token_reads_only_what_anyone_reads(appliance):
    owner = await people(appliance)
    publisher = appliance.client.with_token((await token(owner, scopes=["publish"]))["token"])
    assert (await publisher.get("/api/packages/owner/secret"))[0] == 404
    assert (await publisher.get("/api/packages/orga/tool"))[0] == 404
    await publish(appliance, (await token(owner, scopes=["publish"]))["token"], "public-one")
    assert (await publisher.get("/api/packages/owner/public-one"))[0] == 200
    status, me, _ = await publisher.get("/api/me")  # any credential may ask whose it is
    assert status == 200 and me["scopes"] == ["publish"]


async def test_an_admin_token_cannot_be_bound_and_a_bound_token_is_no_admin(appliance):
    _, root_token = await appliance.user("root", admin=True)
    root = appliance.client.with_token(root_token)
    assert (await root.post("/api/orgs", json={"slug": "rootorg"}))[0] == 201
    status, answer, _ = await root.post("/api/tokens", json={"name": "x", "scopes": ["admin"], "org": "rootorg"})
    assert status == 400 and "admin" in answer["error"]["message"]
    bound = await token(root, scopes=["read", "account"], org="rootorg")
    status, answer, _ = await appliance.client.with_token(bound["token"]).get("/api/admin/users")
    assert (status, answer["error"]["code"]) == (403, "insufficient_scope")


async def test_an_expired_creator_expiry_is_checked_on_each_request(appliance):
    owner = await people(appliance)
    short = await token(owner, scopes=["read", "account"], expires_in_days=1)
    async with appliance.services.db.write() as tx:
        await tx.execute("UPDATE api_tokens SET expires_at = ? WHERE id = ?", (time.time() - 1, short["id"]))
    status, answer, _ = await appliance.client.with_token(short["token"]).post("/api/tokens", json={"name": "n"})
    assert (status, answer["error"]["code"]) == (401, "token_expired")
