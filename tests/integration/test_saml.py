"""SAML 2.0 sign-in per org against a running appliance, with pysaml2's IdP in the test process (tests/saml_idp.py)
signing real assertions, and a real HTTP client following the redirect to the IdP and the HTTP-POST binding back:
a signed assertion signs in (a just-in-time account with the role its groups map to); a tampered, a replayed,
a wrong-audience and a wrong-InResponseTo one are refused with a clear error and change nothing."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.saml_idp import ENTITY_ID, SSO_URL, TestIdP

ALICE = "alice@acme.example"


@pytest.fixture
async def saml(start_app, tmp_path):
    """acme (owner boss) signs in with the test IdP, which also trusts other's SP (for the wrong audience)."""
    app = await start_app()
    _, boss_token = await app.user("boss")
    boss = app.client.with_token(boss_token)
    idp = TestIdP(tmp_path)
    for slug in ("acme", "other"):
        assert (await boss.post("/api/orgs", json={"slug": slug}))[0] == 201
        status, body, _ = await boss.put(f"/api/orgs/{slug}/saml", json={"metadata_xml": idp.metadata_xml()})
        assert status == 200, body
        async with app.client.session.get(f"{app.base_url}/saml/{slug}/metadata") as response:
            assert response.status == 200 and response.content_type == "application/samlmetadata+xml"
            idp.trust_sp(await response.text())
    assert body["idp"]["entity_id"] == ENTITY_ID and body["idp"]["sso_url"] == SSO_URL
    assert (await boss.put("/api/orgs/acme/group-roles", json={"mappings": {"Engineering": "publisher"}}))[0] == 200
    browser = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # keeps cookies of 127.0.0.1
    yield {"app": app, "boss": boss, "idp": idp, "browser": browser}
    await browser.close()


async def begin(saml, org: str = "acme", next_path: str = "/account"):
    """The browser asks to sign in; the appliance redirects it to the IdP with an AuthnRequest."""
    app, browser = saml["app"], saml["browser"]
    async with browser.get(f"{app.base_url}/saml/{org}/login", params={"next": next_path},
                           allow_redirects=False) as response:
        assert response.status == 303
        return saml["idp"].read_request(response.headers["Location"])


async def post_back(saml, action: str, fields: dict[str, str]):
    """The IdP's auto-submitting form, posted as the browser does."""
    async with saml["browser"].post(action, data=fields, allow_redirects=False) as response:
        return response.status, await response.text(), response


async def counts(saml) -> dict[str, int]:
    db = saml["app"].services.db
    return {table: await db.fetch_value(f"SELECT count(*) FROM {table}")
            for table in ("users", "memberships", "web_sessions", "sso_users", "saml_assertions")}


async def test_a_signed_assertion_signs_in_a_new_member_with_the_mapped_role(saml):
    request = await begin(saml)
    assert request.assertion_consumer_service_url == f"{saml['app'].base_url}/saml/acme/acs"
    action, fields = saml["idp"].respond(request, ALICE, ["Engineering", "Everyone"])
    status, _, response = await post_back(saml, action, fields)
    assert status == 303 and response.headers["Location"] == "/account", _
    assert SESSION_COOKIE in response.cookies
    async with saml["browser"].get(f"{saml['app'].base_url}/api/me") as me:
        body = await me.json()
    assert me.status == 200 and body["email"] == ALICE and body["username"] == "alice"
    members = {m["username"]: m["role"] for m in (await saml["boss"].get("/api/orgs/acme/members"))[1]["members"]}
    assert members["alice"] == "publisher"
