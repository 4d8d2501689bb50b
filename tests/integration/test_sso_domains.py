"""SSO-required e-mail domains: an org claims a domain, proves it by an https .well-known file (a local TLS server
with a certificate from a trustme CA) or a DNS TXT record (a small DNS server on loopback, dnspython's wire
format, also answering the https host's address), then requires SSO: that domain's people can no longer sign in
or sign up with a password, and are told to use SSO."""

from __future__ import annotations

import asyncio
import ssl

import dns.message
import dns.rcode
import dns.rrset
import pytest
import trustme
from aiohttp import web

from tests.sso_support import CSRF, browser

DOMAIN = "acme.test"


class TinyDns(asyncio.DatagramProtocol):
    """Answers A and TXT questions from `records` ({(name, type): [values]}); NXDOMAIN otherwise."""

    def __init__(self):
        self.records: dict[tuple[str, str], list[str]] = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name, kind = question.name.to_text().rstrip("."), dns.rdatatype.to_text(question.rdtype)
        values = self.records.get((name, kind))
        if values:
            rendered = [f'"{v}"' if kind == "TXT" else v for v in values]
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", kind, *rendered))
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        self.transport.sendto(response.to_wire(), addr)


@pytest.fixture
async def peers(aiohttp_server, tmp_path):
    """The DNS server and the domain's https server (its .well-known file settable through `files`)."""
    loop = asyncio.get_running_loop()
    transport, tiny = await loop.create_datagram_endpoint(TinyDns, local_addr=("127.0.0.1", 0))
    tiny.records[(DOMAIN, "A")] = ["127.0.0.1"]
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(DOMAIN).configure_cert(context)
    files: dict[str, str] = {}

    async def well_known(request: web.Request) -> web.Response:
        if "body" not in files:
            raise web.HTTPNotFound()
        return web.Response(text=files["body"])

    site = web.Application()
    site.router.add_get("/.well-known/mcpstore-domain-verification.txt", well_known)
    server = await aiohttp_server(site, host="127.0.0.1", ssl=context)
    yield {"dns": tiny, "files": files, "sso": {"dns_resolver": f"127.0.0.1:{transport.get_extra_info('sockname')[1]}",
                                                  "https_port": server.port, "ca_file": str(ca_file)}}
    transport.close()


async def login(app, login: str, password: str = "correct horse battery"):
    return await app.client.post("/api/auth/token", json={"login": login, "password": password, "name": "t"})


async def test_a_proven_domain_requires_sso_for_its_people(start_app, peers):
    app = await start_app(sso=peers["sso"])
    _, token = await app.user("owner")
    owner = app.client.with_token(token)
    await app.services.accounts.create_user("alice@acme.test", "alice", "correct horse battery")
    assert (await owner.post("/api/orgs", json={"slug": "acme"}))[0] == 201

    status, claim, _ = await owner.post("/api/orgs/acme/domains", json={"domain": "ACME.test."})
    assert status == 201 and claim["domain"] == DOMAIN and not claim["verified"]
    assert claim["dns_record"]["name"] == "_mcpstore-challenge.acme.test"
    assert (await owner.post("/api/orgs/acme/domains", json={"domain": DOMAIN}))[0] == 409  # claimed already
    # Not proven yet: no file, and SSO cannot be required.
    status, body, _ = await owner.post(f"/api/orgs/acme/domains/{DOMAIN}/verify", json={"method": "https"})
    assert status == 403 and body["error"]["code"] == "domain_not_proven"
    peers["files"]["body"] = "some-other-token\n"
    assert (await owner.post(f"/api/orgs/acme/domains/{DOMAIN}/verify", json={"method": "https"}))[0] == 403
    status, body, _ = await owner.put(f"/api/orgs/acme/domains/{DOMAIN}", json={"require_sso": True})
    assert status == 409 and body["error"]["code"] == "domain_not_verified"
    assert (await login(app, "alice@acme.test"))[0] == 201  # passwords still work

    peers["files"]["body"] = claim["https_file"]["content"] + "\n"
    status, body, _ = await owner.post(f"/api/orgs/acme/domains/{DOMAIN}/verify", json={"method": "https"})
    assert status == 200 and body["verified"] and body["method"] == "https"
    status, body, _ = await owner.put(f"/api/orgs/acme/domains/{DOMAIN}", json={"require_sso": True})
    assert status == 200 and body["require_sso"]

    status, body, _ = await login(app, "alice@acme.test")
    assert status == 403 and body["error"]["code"] == "sso_required" and "single sign-on" in body["error"]["message"]
    assert (await login(app, "alice@acme.test", "wrong password"))[1]["error"]["code"] == "sso_required"
    status, body, _ = await login(app, "alice")  # by user name, with the right password: refused too
    assert status == 403 and body["error"]["code"] == "sso_required"
    status, body, _ = await login(app, "alice", "wrong password")  # a wrong one says nothing about SSO
    assert status == 401 and body["error"]["code"] == "bad_credentials"
    status, body, _ = await app.client.post("/api/signup", json={
        "email": "bob@Acme.test", "username": "bob", "password": "correct horse battery"})
    assert status == 403 and body["error"]["code"] == "sso_required"
    assert await app.services.db.fetch_value("SELECT count(*) FROM users WHERE username = 'bob'") == 0
    assert (await login(app, "owner"))[0] == 201  # other domains are not affected
    refusals = await app.services.db.fetch_value(
        "SELECT count(*) FROM audit_events WHERE action = 'user.login' AND reason = 'sso_required'")
    assert refusals == 3  # (the login page's refusal below is the fourth)

    # The login page's SSO form finds the org by the address's proven domain: no provider set up yet, said so;
    # then one that does not answer, also said so (the org was found).
    async with browser() as session:
        async with session.get(app.base_url + "/login") as page:
            csrf = CSRF.search(await page.text()).group(1)
        form = {"csrf_token": csrf, "org": "alice@acme.test"}
        async with session.post(app.base_url + "/login/sso", data=form, allow_redirects=False) as answer:
            assert answer.status == 404 and "no single sign-on is set up" in await answer.text()
        # The password form, refused, fills the SSO form in with the org.
        async with session.post(app.base_url + "/login", data={"csrf_token": csrf, "login": "alice@acme.test",
                                                               "password": "correct horse battery"}) as answer:
            page = await answer.text()
            assert answer.status == 403 and "single sign-on" in page and 'value="acme"' in page
        await owner.put("/api/orgs/acme/sso", json={"issuer": "http://127.0.0.1:9", "client_id": "x"})
        async with session.post(app.base_url + "/login/sso", data=form, allow_redirects=False) as answer:
            assert answer.status == 401 and "did not answer" in await answer.text()


async def test_dns_proof_and_one_owner_per_domain(start_app, peers):
    app = await start_app(sso=peers["sso"])
    _, token = await app.user("owner")
    _, rival_token = await app.user("rival")
    owner, rival = app.client.with_token(token), app.client.with_token(rival_token)
    assert (await owner.post("/api/orgs", json={"slug": "acme"}))[0] == 201
    assert (await rival.post("/api/orgs", json={"slug": "rivalco"}))[0] == 201
    _, mine, _ = await owner.post("/api/orgs/acme/domains", json={"domain": DOMAIN})
    _, theirs, _ = await rival.post("/api/orgs/rivalco/domains", json={"domain": DOMAIN})  # claims may overlap
    assert mine["dns_record"]["value"] != theirs["dns_record"]["value"]

    assert (await owner.post(f"/api/orgs/acme/domains/{DOMAIN}/verify", json={"method": "dns"}))[0] == 403
    peers["dns"].records[("_mcpstore-challenge." + DOMAIN, "TXT")] = ["unrelated", mine["dns_record"]["value"]]
    status, body, _ = await owner.post(f"/api/orgs/acme/domains/{DOMAIN}/verify", json={"method": "dns"})
    assert status == 200 and body["method"] == "dns"
    # The rival publishes its own token too: the domain has an owner already.
    peers["dns"].records[("_mcpstore-challenge." + DOMAIN, "TXT")] = [theirs["dns_record"]["value"]]
    status, body, _ = await rival.post(f"/api/orgs/rivalco/domains/{DOMAIN}/verify", json={"method": "dns"})
    assert status == 409 and body["error"]["code"] == "domain_taken"
    # The rival can neither see nor change acme's claims.
    assert (await rival.get("/api/orgs/acme/domains"))[0] == 404
    assert (await rival.put(f"/api/orgs/acme/domains/{DOMAIN}", json={"require_sso": True}))[0] == 404
    _, listed, _ = await owner.get("/api/orgs/acme/domains")
    assert [d["domain"] for d in listed["domains"]] == [DOMAIN] and listed["domains"][0]["verified"]


async def test_bad_domains_are_refused_and_change_nothing(start_app):
    app = await start_app()
    _, token = await app.user("owner")
    owner = app.client.with_token(token)
    await owner.post("/api/orgs", json={"slug": "acme"})
    for domain in ["not a domain", "1.2.3.4", "x", "-bad.test", "a..b", "a" * 64 + ".test", "exa_mple.com",
                   ("a" * 60 + ".") * 5 + "test", "", 42, None, "ex\u0000ample.com"]:
        status, body, _ = await owner.post("/api/orgs/acme/domains", json={"domain": domain})
        assert status == 400, (domain, body)
    for method in ("ftp", None):
        status, body, _ = await owner.post("/api/orgs/acme/domains/acme.test/verify", json={"method": method})
        assert status == 400, body
    assert (await owner.post("/api/orgs/acme/domains/acme.test/verify", json={"method": "dns"}))[0] == 404
    assert await app.services.db.fetch_value("SELECT count(*) FROM org_domains") == 0
