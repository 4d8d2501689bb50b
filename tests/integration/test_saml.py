"""SAML 2.0 sign-in per org against a running appliance, with pysaml2's IdP in the test process (tests/saml_idp.py)
signing real assertions, and a real HTTP client following the redirect to the IdP and the HTTP-POST binding back:
a signed assertion signs in (a just-in-time account with the role its groups map to); a tampered, a replayed,
a wrong-audience and a wrong-InResponseTo one are refused with a clear error and change nothing."""

from __future__ import annotations

import base64

import aiohttp
import pytest

from onelogin.saml2.utils import OneLogin_Saml2_Utils
from saml2.xmldsig import DIGEST_SHA1, SIG_RSA_SHA1

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.saml_idp import ENTITY_ID, SSO_URL, TestIdP

ALICE = "alice@acme.example"


async def make_world(start_app, folder, **settings) -> dict:
    """acme (owner boss) signs in with the test IdP, which also trusts other's SP (for the wrong audience)."""
    app = await start_app(**settings)
    _, boss_token = await app.user("boss")
    boss = app.client.with_token(boss_token)
    folder.mkdir(exist_ok=True)
    idp = TestIdP(folder)
    for slug in ("acme", "other"):
        assert (await boss.post("/api/orgs", json={"slug": slug}))[0] == 201
        status, body, _ = await boss.put(f"/api/orgs/{slug}/saml", json={"metadata_xml": idp.metadata_xml()})
        assert status == 200, body
        async with app.client.session.get(f"{app.base_url}/saml/{slug}/metadata") as response:
            assert response.status == 200 and response.content_type == "application/samlmetadata+xml"
            idp.trust_sp(await response.text())
    assert body["idp"]["entity_id"] == ENTITY_ID and body["idp"]["sso_url"] == SSO_URL
    assert (await boss.put("/api/orgs/acme/group-roles", json={"mappings": {"Engineering": "publisher"}}))[0] == 200
    return {"app": app, "boss": boss, "idp": idp, "browser": new_browser(app)}


def new_browser(app) -> aiohttp.ClientSession:
    """A client that keeps cookies as a browser does (also of 127.0.0.1, and Secure ones: the appliance is taken
    to be behind TLS where the test says so)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True, treat_as_secure_origin=[app.base_url]))


@pytest.fixture
async def saml(start_app, tmp_path):
    world = await make_world(start_app, tmp_path)
    yield world
    await world["browser"].close()


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


async def refused(saml, action: str, fields: dict[str, str], status: int, code: str, words: str):
    """The ACS refuses the form with `code` and a message containing `words`, signs no one in, changes nothing
    but the audit log (a failed sso.login)."""
    before = await counts(saml)
    got, text, response = await post_back(saml, action, fields)
    assert got == status and code in text and words in text, (got, text)
    assert SESSION_COOKIE not in response.cookies
    assert await counts(saml) == before
    failures = await saml["app"].services.db.fetch_all(
        "SELECT reason, details FROM audit_events WHERE action = 'sso.login' AND outcome = 'failure'"
        " ORDER BY id DESC LIMIT 1")
    assert failures and failures[0]["reason"] == code


def tamper(fields: dict[str, str], old: str, new: str) -> dict[str, str]:
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    assert old in xml
    return {**fields, "SAMLResponse": base64.b64encode(xml.replace(old, new).encode()).decode()}


async def test_a_tampered_assertion_is_refused(saml):
    action, fields = saml["idp"].respond(await begin(saml), ALICE, ["admin"])
    # the signed NameID changed to someone else's address: the signature no longer holds
    await refused(saml, action, tamper(fields, ALICE, "boss@example.com"), 401, "saml_invalid",
                  "Signature validation failed")
    # and a group added to the signed attributes
    await refused(saml, action, tamper(fields, ">admin<", ">owner<"), 401, "saml_invalid", "Signature validation")


async def test_an_assertion_signed_with_sha1_is_refused(saml):
    action, fields = saml["idp"].respond(await begin(saml), ALICE, [], sign_alg=SIG_RSA_SHA1, digest_alg=DIGEST_SHA1)
    await refused(saml, action, fields, 401, "saml_invalid", "Deprecated signature algorithm")


async def test_a_replayed_assertion_is_refused(saml):
    action, fields = saml["idp"].respond(await begin(saml), ALICE, [])
    assert (await post_back(saml, action, fields))[0] == 303
    await refused(saml, action, fields, 401, "saml_replayed", "already used")
    # from another browser too: the assertion is remembered, not the browser
    saml["browser"].cookie_jar.clear()
    await refused(saml, action, fields, 401, "saml_replayed", "already used")


async def test_an_assertion_for_another_audience_is_refused(saml):
    other_sp = f"{saml['app'].base_url}/saml/other/metadata"
    action, fields = saml["idp"].respond(await begin(saml), ALICE, [], audience=other_sp)
    await refused(saml, action, fields, 401, "saml_invalid", "is not a valid audience")


async def test_a_wrong_in_response_to_is_refused(saml):
    request = await begin(saml)
    action, fields = saml["idp"].respond(request, ALICE, [], in_response_to="id-forged0123456789")
    await refused(saml, action, fields, 401, "saml_wrong_in_response_to", "does not match a sign-in request")
    # a request of another org's sign-in, answered to acme's ACS: not acme's
    foreign = await begin(saml, "other")
    action, fields = saml["idp"].respond(request, ALICE, [], in_response_to=foreign.id)
    await refused(saml, action, fields, 401, "saml_wrong_in_response_to", "does not match a sign-in request")


async def test_an_account_the_idp_did_not_create_is_never_taken_over(saml):
    """boss@example.com has a password account: acme's IdP asserting that address signs no one in."""
    action, fields = saml["idp"].respond(await begin(saml), "boss@example.com", ["admin"])
    await refused(saml, action, fields, 403, "sso_account_exists", "was not created by this organization")


async def test_malformed_posts_are_clear_errors(saml):
    app = saml["app"]
    for data, code in (({}, "saml_malformed"), ({"SAMLResponse": "%%%not-base64"}, "saml_malformed"),
                       ({"SAMLResponse": base64.b64encode(b"<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
                                                          b"<x>&e;</x>").decode()}, "saml_malformed"),
                       ({"SAMLResponse": "A" * 300_000}, "saml_malformed")):
        before = await counts(saml)
        async with saml["browser"].post(f"{app.base_url}/saml/acme/acs", data=data) as response:
            text = await response.text()
        assert response.status in (400, 401, 413) and (code in text or response.status == 413), text[:300]
        assert "root:" not in text and await counts(saml) == before
    async with saml["browser"].post(f"{app.base_url}/saml/nosuchorg/acs", data={"SAMLResponse": "x"}) as response:
        assert response.status == 404 and "saml_not_configured" in await response.text()


async def test_sign_in_is_audited_and_roles_follow_the_groups_at_each_sign_in(saml):
    for groups, role in ((["Engineering"], "publisher"), (["Everyone"], "member"), (["admin", "owner"], "admin")):
        request = await begin(saml)
        saml["browser"].cookie_jar.clear()
        assert (await post_back(saml, *saml["idp"].respond(request, ALICE, groups)))[0] == 303
        members = (await saml["boss"].get("/api/orgs/acme/members"))[1]["members"]
        assert {m["username"]: m["role"] for m in members}["alice"] == role
    assert (await counts(saml))["users"] == 2  # boss and alice: one account, signed in three times
    rows = await saml["app"].services.db.fetch_all(
        "SELECT actor, target, ip, details FROM audit_events WHERE action = 'sso.login' AND outcome = 'success'")
    assert len(rows) == 3 and rows[0]["actor"] == "alice" and rows[0]["ip"] == "127.0.0.1"


@pytest.mark.parametrize("shift, words", [(3600, "expired"), (-3600, "not yet valid")])
async def test_an_assertion_outside_its_validity_window_is_refused(saml, monkeypatch, shift, words):
    """NotOnOrAfter and NotBefore, checked against the SP's clock (moved here, the same process)."""
    action, fields = saml["idp"].respond(await begin(saml), ALICE, [])
    real_now = OneLogin_Saml2_Utils.now
    monkeypatch.setattr(OneLogin_Saml2_Utils, "now", staticmethod(lambda: real_now() + shift))
    await refused(saml, action, fields, 401, "saml_invalid", "")
    status, text, _ = await post_back(saml, action, fields)
    assert words in text.lower() or "subjectconfirmation" in text.lower(), text


async def test_an_unsolicited_response_is_refused(saml):
    """IdP-initiated sign-in (a Response answering no request of ours) is refused."""
    request = await begin(saml)
    action, fields = saml["idp"].respond(request, ALICE, [])
    xml = base64.b64decode(fields["SAMLResponse"]).decode()
    unsolicited = xml.replace(f' InResponseTo="{request.id}"', "", 1)  # the Response's own attribute
    assert unsolicited != xml
    await refused(saml, action, {**fields, "SAMLResponse": base64.b64encode(unsolicited.encode()).decode()}, 401,
                  "saml_unsolicited", "unsolicited responses are refused")


async def test_behind_tls_only_the_browser_that_started_a_sign_in_finishes_it(start_app, tmp_path):
    """A response someone else obtained (their own sign-in) planted in a victim's browser signs no one in: the
    sign-in is tied to the starting browser by a Secure, SameSite=None cookie that the IdP's POST brings back."""
    saml = await make_world(start_app, tmp_path / "tls", server={"behind_tls": True})
    victim = new_browser(saml["app"])
    try:
        request = await begin(saml)
        cookie = next(c for c in saml["browser"].cookie_jar if c.key == "mcpstore_saml")
        assert cookie["secure"] and cookie["samesite"] == "None" and cookie["httponly"]
        action, fields = saml["idp"].respond(request, ALICE, [])
        await refused({**saml, "browser": victim}, action, fields, 401, "saml_other_browser", "another browser")
        status, _, response = await post_back(saml, action, fields)
        assert status == 303 and SESSION_COOKIE in response.cookies
    finally:
        await victim.close()
        await saml["browser"].close()


async def test_a_user_the_orgs_scim_created_signs_in_to_the_same_account(saml):
    boss = saml["boss"]
    token = (await boss.post("/api/orgs/acme/scim-tokens", json={"name": "idp"}))[1]["token"]
    status, _, _ = await saml["app"].client.with_token(token).post("/scim/v2/acme/Users", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": ALICE,
        "emails": [{"value": ALICE, "primary": True}]})
    assert status == 201
    users = (await counts(saml))["users"]
    assert (await post_back(saml, *saml["idp"].respond(await begin(saml), ALICE, [])))[0] == 303
    async with saml["browser"].get(f"{saml['app'].base_url}/api/me") as me:
        assert (await me.json())["username"] == "alice"
    assert (await counts(saml))["users"] == users
    # acme's SSO account is not other's to sign in as: other's IdP asserting the same address is refused
    await refused(saml, *saml["idp"].respond(await begin(saml, "other"), ALICE, []), 403, "sso_account_exists",
                  "was not created by this organization")
