"""The org's SSO settings, by the JSON API and the settings page: only owners and admins read or change them,
the client secret is sealed and never shown again, and bad settings (an `alg` of none or HS256, a plain-http
issuer, an unknown role) are refused without changing anything."""

from __future__ import annotations

import pytest

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.sso_support import CSRF, browser

GOOD = {"issuer": "https://idp.example", "client_id": "mcpstore", "client_secret": "topsecret-value",
        "group_roles": {"IT admins": "admin"}, "default_role": "member"}


@pytest.fixture
async def acme(start_app):
    app = await start_app()
    _, token = await app.user("owner")
    _, member_token = await app.user("mallory")
    _, outsider_token = await app.user("eve")
    owner = app.client.with_token(token)
    await owner.post("/api/orgs", json={"slug": "acme"})
    assert (await owner.put("/api/orgs/acme/members/mallory", json={"role": "member"}))[0] == 200
    return app, owner, app.client.with_token(member_token), app.client.with_token(outsider_token)


async def test_the_api_keeps_the_secret_and_refuses_bad_settings(acme):
    app, owner, member, outsider = acme
    status, body, _ = await owner.get("/api/orgs/acme/sso")
    assert status == 200 and body["oidc"] is None and body["redirect_uri"].endswith("/sso/callback")
    status, body, _ = await owner.put("/api/orgs/acme/sso", json=GOOD)
    assert status == 200 and body["oidc"]["has_client_secret"] and "topsecret" not in str(body)
    assert body["oidc"]["algorithms"] == ["RS256", "ES256", "EdDSA"]
    sealed = await app.services.db.fetch_value("SELECT sealed_secret FROM oidc_configs")
    assert b"topsecret" not in sealed
    for bad in ({"algorithms": ["none"]}, {"algorithms": ["HS256"]}, {"algorithms": []},
                {"issuer": "http://idp.example"}, {"issuer": "https://idp.example/?x=1"}, {"issuer": "idp"},
                {"group_roles": {"x": "god"}}, {"default_role": "god"}, {"client_id": ""}, {"extra": 1},
                {"group_roles": {f"g{i}": "member" for i in range(101)}}):
        status, body, _ = await owner.put("/api/orgs/acme/sso", json={**GOOD, **bad})
        assert status == 400, (bad, body)
    assert (await owner.get("/api/orgs/acme/sso"))[1]["oidc"]["issuer"] == GOOD["issuer"]  # unchanged
    # An admin who is not an owner cannot hand out ownership through the IdP's groups.
    assert (await owner.put("/api/orgs/acme/members/mallory", json={"role": "admin"}))[0] == 200
    status, body, _ = await member.put("/api/orgs/acme/sso", json={**GOOD, "group_roles": {"x": "owner"}})
    assert status == 403 and "owner" in body["error"]["message"]
    assert (await member.put("/api/orgs/acme/sso", json=GOOD))[0] == 200  # admins manage SSO otherwise
    assert (await owner.put("/api/orgs/acme/members/mallory", json={"role": "member"}))[0] == 200
    assert (await member.get("/api/orgs/acme/sso"))[0] == 403
    assert (await member.put("/api/orgs/acme/sso", json=GOOD))[0] == 403
    assert (await outsider.get("/api/orgs/acme/sso"))[0] == 404  # a foreign org answers like a missing one
    assert (await owner.get("/api/orgs/nosuch/sso"))[0] == 404
    events = await app.services.db.fetch_value("SELECT count(*) FROM audit_events WHERE action = 'sso.config.update'")
    assert events == 2  # the owner's and the admin's saves; no refused one


async def test_the_settings_page_saves_and_never_shows_the_secret(acme):
    app, owner, member, _ = acme
    accounts = app.services.accounts
    session_id, csrf = await accounts.start_session(await accounts.find_user("owner"))
    cookie = {"Cookie": f"{SESSION_COOKIE}={session_id}"}
    status, page, _ = await app.client.get("/orgs/acme/sso", headers=cookie)
    assert status == 200 and b"/sso/callback" in page
    form = {"csrf_token": csrf, "action": "config", "issuer": "https://idp.example", "client_id": "mcpstore",
            "client_secret": "topsecret-value", "algorithms": "ES256", "default_role": "",
            "group_roles": "IT admins = admin\nengineers = publisher", "enabled": "on"}
    status, _, response = await app.client.post("/orgs/acme/sso", data=form, headers=cookie, allow_redirects=False)
    assert status == 303, response
    status, page, _ = await app.client.get("/orgs/acme/sso", headers=cookie)
    assert b"topsecret" not in page and b"IT admins = admin" in page and b"stored; never shown again" in page
    saved = (await owner.get("/api/orgs/acme/sso"))[1]["oidc"]
    assert saved["algorithms"] == ["ES256"] and saved["default_role"] is None
    assert saved["group_roles"] == {"IT admins": "admin", "engineers": "publisher"}
    # Saved again without a secret: the stored one stays.
    await app.client.post("/orgs/acme/sso", data={**form, "client_secret": ""}, headers=cookie)
    assert (await owner.get("/api/orgs/acme/sso"))[1]["oidc"]["has_client_secret"]
    status, page, _ = await app.client.post("/orgs/acme/sso", headers=cookie,
                                            data={**form, "group_roles": "no role on this line"})
    assert status == 400 and b"group name = role" in page
    status, _, _ = await app.client.post("/orgs/acme/sso", headers=cookie, data={**form, "csrf_token": "forged"})
    assert status == 403
    status, _, _ = await app.client.post("/orgs/acme/sso", headers=cookie,
                                         data={"csrf_token": csrf, "action": "claim", "domain": "acme.example"})
    status, page, _ = await app.client.get("/orgs/acme/sso", headers=cookie)
    assert b"_mcpstore-challenge.acme.example" in page
    session_id, _ = await accounts.start_session(await accounts.find_user("mallory"))
    status, _, _ = await app.client.get("/orgs/acme/sso", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"})
    assert status == 403


async def test_sso_starts_are_rate_limited_per_address(start_app):
    app = await start_app(accounts={"login_attempts_per_ip_per_minute": 2})
    async with browser() as session:
        async with session.get(app.base_url + "/login") as page:
            csrf = CSRF.search(await page.text()).group(1)
        statuses = []
        for _ in range(3):
            async with session.post(app.base_url + "/login/sso", data={"csrf_token": csrf, "org": "nosuch"}) as answer:
                statuses.append((answer.status, answer.headers.get("Retry-After")))
    assert [s for s, _ in statuses] == [404, 404, 429] and int(statuses[2][1]) >= 1
