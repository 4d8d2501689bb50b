"""Accounts over HTTP against a real app on a real port: signup, tokens, orgs, roles, and their bad inputs."""

import time

import pytest

PASSWORD = "correct horse battery"


async def signup(client, username, password=PASSWORD, **extra):
    return await client.post("/api/signup", json={"email": f"{username}@example.com", "username": username,
                                                  "password": password, **extra})


async def login_token(client, login, password=PASSWORD, **extra):
    return await client.post("/api/auth/token", json={"login": login, "password": password, **extra})


async def test_signup_login_and_me(appliance):
    client = appliance.client
    status, body, _ = await signup(client, "alice", display_name="Alice A.")
    assert status == 201 and body["username"] == "alice" and "password" not in str(body)
    status, body, _ = await login_token(client, "alice@example.com")
    assert status == 201 and body["token"].startswith("mcps_") and body["scopes"] == ["publish", "read"]
    status, me, _ = await client.with_token(body["token"]).get("/api/me")
    assert status == 200
    assert me["username"] == "alice" and me["display_name"] == "Alice A." and me["namespace"] == "alice"


async def test_password_is_stored_as_argon2id_and_token_as_hash(appliance):
    client = appliance.client
    await signup(client, "bob")
    _, body, _ = await login_token(client, "bob")
    row = await appliance.services.db.fetch_one("SELECT password_hash FROM users WHERE username='bob'")
    assert row["password_hash"].startswith("$argon2id$") and PASSWORD not in row["password_hash"]
    tokens = await appliance.services.db.fetch_all("SELECT * FROM api_tokens")
    assert all(body["token"] not in str(t) for t in tokens)


@pytest.mark.parametrize("payload, code", [
    ({"email": "not-an-email", "username": "carol", "password": PASSWORD}, "invalid_email"),
    ({"email": "c@example.com", "username": "Carol!", "password": PASSWORD}, "invalid_slug"),
    ({"email": "c@example.com", "username": "carol", "password": "short"}, "weak_password"),
    ({"email": "c@example.com", "username": "admin", "password": PASSWORD}, "reserved_name"),
    ({"email": "c@example.com", "username": "carol"}, "invalid_body"),
    ({"email": "c@example.com", "username": "carol", "password": PASSWORD, "is_admin": True}, "invalid_body"),
])
async def test_bad_signups_are_400_and_create_nothing(appliance, payload, code):
    status, body, _ = await appliance.client.post("/api/signup", json=payload)
    assert status == 400 and body["error"]["code"] == code and body["error"]["message"]
    assert await appliance.services.db.fetch_value("SELECT count(*) FROM users") == 0


async def test_duplicate_email_and_name_are_409(appliance):
    client = appliance.client
    assert (await signup(client, "dave"))[0] == 201
    status, body, _ = await signup(client, "dave")
    assert status == 409 and body["error"]["code"] == "email_taken"
    status, body, _ = await client.post("/api/signup", json={"email": "other@example.com", "username": "dave",
                                                             "password": PASSWORD})
    assert status == 409 and body["error"]["code"] == "name_taken"


async def test_malformed_json_and_wrong_content_type(appliance):
    client = appliance.client
    status, body, _ = await client.post("/api/signup", data=b"{not json", headers={"Content-Type": "application/json"})
    assert status == 400 and body["error"]["code"] == "malformed_json"
    status, body, _ = await client.post("/api/signup", data=b"email=x", headers={"Content-Type": "text/plain"})
    assert status == 415 and body["error"]["code"] == "unsupported_media_type"


async def test_oversized_body_is_413(start_app):
    app = await start_app(server={"max_body_bytes": 1024})
    status, body, _ = await app.client.post("/api/signup", data=b"{" + b" " * 5000 + b"}",
                                            headers={"Content-Type": "application/json"})
    assert status == 413 and body["error"]["code"] == "too_large"


async def test_wrong_password_is_401_and_login_is_rate_limited(start_app):
    app = await start_app(accounts={"login_failures_before_delay": 3})
    await signup(app.client, "erin")
    for _ in range(3):
        status, body, _ = await login_token(app.client, "erin", "wrong password!")
        assert status == 401 and body["error"]["code"] == "bad_credentials"
    status, body, response = await login_token(app.client, "erin")
    assert status == 429 and int(response.headers["Retry-After"]) > 0
    assert await app.services.db.fetch_value("SELECT count(*) FROM api_tokens") == 0


async def test_login_rate_limit_per_ip(start_app):
    app = await start_app(accounts={"login_attempts_per_ip_per_minute": 2})
    for name in ("x1", "x2"):
        await login_token(app.client, name, "whatever password")
    status, _, response = await login_token(app.client, "x3", "whatever password")
    assert status == 429 and response.headers["Retry-After"]


async def test_signup_policies(start_app):
    closed = await start_app(accounts={"signup": "closed"})
    status, body, _ = await signup(closed.client, "frank")
    assert status == 403 and body["error"]["code"] == "signup_closed"

    invite_only = await start_app(accounts={"signup": "invite"})
    status, body, _ = await signup(invite_only.client, "gina")
    assert status == 403 and body["error"]["code"] == "invite_required"
    owner, token = await invite_only.user("owner1")
    await invite_only.client.with_token(token).post("/api/orgs", json={"slug": "acme"})
    status, body, _ = await invite_only.client.with_token(token).post("/api/orgs/acme/invites",
                                                                       json={"role": "publisher"})
    code = body["invite_code"]
    assert (await signup(invite_only.client, "gina", invite_code=code))[0] == 201
    assert (await signup(invite_only.client, "hank", invite_code=code))[0] == 403  # one use only
    _, gina, _ = await login_token(invite_only.client, "gina")
    _, me, _ = await invite_only.client.with_token(gina["token"]).get("/api/me")
    assert me["orgs"] == [{"slug": "acme", "name": "acme", "role": "publisher"}]


async def test_tokens_create_list_revoke_and_expiry(appliance):
    _, token = await appliance.user("ivan")
    client = appliance.client.with_token(token)
    status, created, _ = await client.post("/api/tokens", json={"name": "ci", "scopes": ["read"]})
    assert status == 201 and created["token"].startswith("mcps_")
    status, listing, _ = await client.get("/api/tokens")
    assert [t["name"] for t in listing["tokens"]] == ["ci", "test"]
    assert "token" not in listing["tokens"][0] and created["token"] not in str(listing)

    ci = appliance.client.with_token(created["token"])
    assert (await ci.get("/api/me"))[0] == 200
    assert (await client.delete(f"/api/tokens/{created['id']}"))[0] == 204
    status, body, _ = await ci.get("/api/me")
    assert status == 401 and body["error"]["code"] == "token_revoked"
    status, body, _ = await client.delete(f"/api/tokens/{created['id']}")
    assert status == 404

    _, short, _ = await client.post("/api/tokens", json={"name": "short", "expires_in_days": 1})
    async with appliance.services.db.write() as tx:
        await tx.execute("UPDATE api_tokens SET expires_at = ? WHERE id = ?", (time.time() - 1, short["id"]))
    status, body, _ = await appliance.client.with_token(short["token"]).get("/api/me")
    assert status == 401 and body["error"]["code"] == "token_expired"


async def test_forged_and_malformed_tokens_are_401(appliance):
    for header in ("Bearer mcps_forgedforgedforged", "Bearer nonsense", "Basic dXNlcjpwYXNz", "Bearer "):
        status, body, _ = await appliance.client.get("/api/me", headers={"Authorization": header})
        assert status == 401 and body["error"]["code"] == "invalid_token", header
    status, body, _ = await appliance.client.get("/api/me")
    assert status == 401 and body["error"]["code"] == "unauthenticated"


async def test_scopes_are_enforced(appliance):
    _, token = await appliance.user("judy", scopes=("read",))
    client = appliance.client.with_token(token)
    status, body, _ = await client.post("/api/tokens", json={"name": "wider", "scopes": ["publish"]})
    assert status == 403
    status, body, _ = await client.post("/api/tokens", json={"name": "admin", "scopes": ["admin"]})
    assert status == 403
    status, body, _ = await client.get("/api/admin/users")
    assert status == 403 and body["error"]["code"] == "insufficient_scope"


async def test_orgs_members_roles_and_foreign_orgs(appliance):
    _, owner = await appliance.user("olga")
    _, member = await appliance.user("mike")
    _, outsider = await appliance.user("oscar")
    olga, mike, oscar = (appliance.client.with_token(t) for t in (owner, member, outsider))

    status, body, _ = await olga.post("/api/orgs", json={"slug": "acme", "name": "Acme Corp"})
    assert status == 201 and body["role"] == "owner"
    assert (await olga.post("/api/orgs", json={"slug": "acme"}))[0] == 409
    assert (await olga.post("/api/orgs", json={"slug": "mike"}))[0] == 409  # a user's namespace

    status, body, _ = await olga.put("/api/orgs/acme/members/mike", json={"role": "member"})
    assert status == 200 and body["role"] == "member"
    status, body, _ = await mike.put("/api/orgs/acme/members/oscar", json={"role": "member"})
    assert status == 403  # members don't manage members
    status, body, _ = await olga.put("/api/orgs/acme/members/mike", json={"role": "emperor"})
    assert status == 400

    # A foreign org answers like a missing one, and nothing changes.
    for path in ("/api/orgs/acme", "/api/orgs/acme/members"):
        status, body, _ = await oscar.get(path)
        assert status == 404 and "Acme Corp" not in str(body)
    status, _, _ = await oscar.put("/api/orgs/acme/members/oscar", json={"role": "owner"})
    assert status == 404
    _, members, _ = await olga.get("/api/orgs/acme/members")
    assert [(m["username"], m["role"]) for m in members["members"]] == [("mike", "member"), ("olga", "owner")]

    status, body, _ = await olga.delete("/api/orgs/acme/members/olga")
    assert status == 409 and body["error"]["code"] == "last_owner"
    assert (await mike.delete("/api/orgs/acme/members/mike"))[0] == 204  # anyone may leave


async def test_org_bound_token_sees_only_its_org(appliance):
    _, token = await appliance.user("pam")
    pam = appliance.client.with_token(token)
    await pam.post("/api/orgs", json={"slug": "one"})
    await pam.post("/api/orgs", json={"slug": "two"})
    _, bound, _ = await pam.post("/api/tokens", json={"name": "one-only", "org": "one"})
    client = appliance.client.with_token(bound["token"])
    _, me, _ = await client.get("/api/me")
    assert [o["slug"] for o in me["orgs"]] == ["one"]
    status, body, _ = await client.get("/api/orgs/two")
    assert status == 403 and body["error"]["code"] == "org_bound_token"
    assert [o["slug"] for o in (await client.get("/api/orgs"))[1]["orgs"]] == ["one"]


async def test_audit_log_records_account_actions(appliance):
    _, token = await appliance.user("quinn")
    await appliance.client.with_token(token).post("/api/orgs", json={"slug": "audited"})
    actions = [r["action"] for r in await appliance.services.db.fetch_all("SELECT action FROM audit_events")]
    assert actions == ["user.create", "token.create", "org.create"]
    from mcpstore_appliance.web.api_audit import AUDIT

    assert (await appliance.app[AUDIT].verify()).ok  # hash-chained (tampering: tests/unit/audit/test_tamper.py)
