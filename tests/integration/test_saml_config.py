"""An org admin configures SAML sign-in (/api/orgs/{org}/saml): from the IdP's metadata or by hand; hostile or
broken input (external entities, a DTD, a plain-http SSO URL, a bad certificate, foreign orgs) is a clear 400,
403 or 404 and changes nothing; the SP metadata and login URL exist only while SAML is configured."""

from __future__ import annotations

import pytest

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.saml_idp import ENTITY_ID, SSO_URL, TestIdP

XXE = ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="&x;"/>')
LAUGHS = ('<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
          '<m>&b;</m>')
NO_IDP = '<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://x"/>'


@pytest.fixture
async def org(start_app, tmp_path):
    app = await start_app()
    _, boss_token = await app.user("boss")
    _, eve_token = await app.user("eve")
    boss, eve = app.client.with_token(boss_token), app.client.with_token(eve_token)
    assert (await boss.post("/api/orgs", json={"slug": "acme"}))[0] == 201
    assert (await eve.post("/api/orgs", json={"slug": "evil"}))[0] == 201
    return {"app": app, "boss": boss, "eve": eve, "idp": TestIdP(tmp_path)}


async def test_configured_by_hand_then_disabled_then_removed(org):
    app, boss = org["app"], org["boss"]
    assert (await app.client.get("/saml/acme/metadata"))[0] == 404  # nothing before it is configured
    status, body, _ = await boss.get("/api/orgs/acme/saml")
    assert status == 200 and body["idp"] is None
    assert body["sp"]["acs_url"] == f"{app.base_url}/saml/acme/acs"
    pem = org["idp"].cert_file.read_text()
    status, body, _ = await boss.put("/api/orgs/acme/saml", json={
        "entity_id": ENTITY_ID, "sso_url": SSO_URL, "certificate": pem, "group_attribute": "memberOf"})
    assert status == 200 and body["idp"]["group_attribute"] == "memberOf" and "BEGIN" not in body["idp"]["certificate"]
    status, xml, _ = await app.client.get("/saml/acme/metadata")
    xml = xml.decode()
    assert status == 200 and f'entityID="{app.base_url}/saml/acme/metadata"' in xml
    assert f'Location="{app.base_url}/saml/acme/acs"' in xml and 'WantAssertionsSigned="true"' in xml
    status, _, response = await app.client.get("/saml/acme/login", allow_redirects=False)
    assert status == 303 and response.headers["Location"].startswith(SSO_URL + "?SAMLRequest=")

    assert (await boss.put("/api/orgs/acme/saml", json={"metadata_xml": org["idp"].metadata_xml(),
                                                        "enabled": False}))[0] == 200
    assert (await app.client.get("/saml/acme/login", allow_redirects=False))[0] == 404
    assert (await app.client.get("/saml/acme/metadata"))[0] == 200
    assert (await boss.delete("/api/orgs/acme/saml"))[0] == 204
    assert (await boss.delete("/api/orgs/acme/saml"))[0] == 404
    assert (await app.client.get("/saml/acme/metadata"))[0] == 404
    actions = [r["action"] for r in await app.services.db.fetch_all(
        "SELECT action FROM audit_events WHERE action LIKE 'sso.saml.%' ORDER BY id")]
    assert actions == ["sso.saml.configure", "sso.saml.configure", "sso.saml.remove"]


BAD = [
    ({"metadata_xml": XXE}, 400, "invalid_metadata"),
    ({"metadata_xml": LAUGHS}, 400, "invalid_metadata"),
    ({"metadata_xml": NO_IDP}, 400, "invalid_metadata"),
    ({"metadata_xml": "<not xml"}, 400, "invalid_metadata"),
    ({"entity_id": ENTITY_ID, "sso_url": "http://idp.example.test/sso", "certificate": "PEM"}, 400,
     "invalid_saml_config"),
    ({"entity_id": ENTITY_ID, "sso_url": SSO_URL, "certificate": "bm90IGEgY2VydGlmaWNhdGU="}, 400,
     "invalid_certificate"),
    ({"entity_id": ENTITY_ID, "sso_url": SSO_URL}, 400, "invalid_certificate"),
    ({"sso_url": SSO_URL, "certificate": "x"}, 400, "invalid_saml_config"),
    ({"entity_id": ENTITY_ID, "sso_url": SSO_URL, "certificate": "x", "admin": True}, 400, "invalid_body"),
]


async def test_bad_configuration_is_refused_and_changes_nothing(org):
    boss = org["boss"]
    assert (await boss.put("/api/orgs/acme/saml", json={"metadata_xml": org["idp"].metadata_xml()}))[0] == 200
    before = (await boss.get("/api/orgs/acme/saml"))[1]
    for body, status, code in BAD:
        got, answer, _ = await boss.put("/api/orgs/acme/saml", json=body)
        assert got == status and answer["error"]["code"] == code, (body, answer)
        assert "root:" not in str(answer)
        assert (await boss.get("/api/orgs/acme/saml"))[1] == before


async def test_only_the_orgs_owners_and_admins_configure_it(org):
    boss, eve = org["boss"], org["eve"]
    metadata = {"metadata_xml": org["idp"].metadata_xml()}
    assert (await eve.put("/api/orgs/acme/saml", json=metadata))[0] == 404  # a foreign org answers as missing
    assert (await boss.put("/api/orgs/acme/members/eve", json={"role": "publisher"}))[0] == 200
    for method in ("get", "put", "delete"):
        kwargs = {"json": metadata} if method == "put" else {}
        status, body, _ = await getattr(eve, method)("/api/orgs/acme/saml", **kwargs)
        assert status == 403, (method, body)
    assert (await boss.get("/api/orgs/acme/saml"))[1]["idp"] is None


async def test_the_saml_page_saves_the_idp_and_the_group_mapping(org):
    app, boss = org["app"], org["boss"]
    user = await app.services.accounts.find_user("boss")
    session_id, csrf = await app.services.accounts.start_session(user)
    page = {"Cookie": f"{SESSION_COOKIE}={session_id}", "Accept": "text/html"}
    status, html, _ = await app.client.get("/orgs/acme", headers=page)
    assert status == 200 and b'href="/orgs/acme/saml"' in html
    status, html, _ = await app.client.get("/orgs/acme/saml", headers=page)
    assert status == 200 and f"{app.base_url}/saml/acme/acs".encode() in html
    status, _, response = await app.client.post("/orgs/acme/saml/group-roles", headers=page, allow_redirects=False,
                                                data={"csrf_token": csrf, "mappings": "Engineering Team = publisher\r\n"
                                                                                      "ops=admin\r\n"})
    assert status == 303 and response.headers["Location"] == "/orgs/acme/saml?done=roles_saved"
    expected = {"Engineering Team": "publisher", "ops": "admin"}
    assert (await boss.get("/api/orgs/acme/group-roles"))[1]["mappings"] == expected
    for bad in ("no equals sign", "x = owner"):
        status, html, _ = await app.client.post("/orgs/acme/saml/group-roles", headers=page,
                                                data={"csrf_token": csrf, "mappings": bad})
        assert status == 400 and bad.encode() in html
    assert (await boss.get("/api/orgs/acme/group-roles"))[1]["mappings"] == expected
    assert (await app.client.post("/orgs/acme/saml/group-roles", headers=page,
                                  data={"mappings": "a = admin"}))[0] == 403  # no CSRF token
    status, _, response = await app.client.post("/orgs/acme/saml/idp", headers=page, allow_redirects=False, data={
        "csrf_token": csrf, "metadata_xml": org["idp"].metadata_xml(), "enabled": "on"})
    assert status == 303 and (await boss.get("/api/orgs/acme/saml"))[1]["idp"]["entity_id"] == ENTITY_ID
    status, html, _ = await app.client.post("/orgs/acme/saml/idp", headers=page, data={
        "csrf_token": csrf, "metadata_xml": XXE})
    assert status == 400 and b"could not be read" in html and b"root:" not in html
    # another org's owner does not get the page
    eve = await app.services.accounts.find_user("eve")
    eve_session, _ = await app.services.accounts.start_session(eve)
    status, _, _ = await app.client.get("/orgs/acme/saml", headers={"Cookie": f"{SESSION_COOKIE}={eve_session}",
                                                                   "Accept": "text/html"})
    assert status == 404
