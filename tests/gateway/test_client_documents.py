"""Client ID metadata documents (oauth/client_documents.py): an application whose client_id is an https URL,
served by a local TLS server with a certificate from a test CA (trustme), signs its user in with no
registration; the document is fetched once and kept, its redirect URIs match exactly, and every bad document
(another client_id, too large, a redirect, not JSON, a secret-based client, a slow server) or address (a
non-public one, unless the operator allows it) is refused with the reason and no redirect."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from mcpstore_appliance.config import OAuthSettings
from mcpstore_appliance.oauth.client_documents import ClientDocuments
from mcpstore_appliance.oauth.errors import ClientRefused
from tests.conftest import tls_server
from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.oauth_support import REDIRECT, Flow, pkce, redirected
from tests.gateway.servers import hostile_bundle, publish_bundle
from tests.gateway.test_oauth import initialize


class ClientSite:
    """The application's own https site: /client.json and hostile variants, counting what is fetched."""

    def __init__(self):
        self.fetches: list[str] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        self.fetches.append(kind)
        url = f"{self.base}/{kind}.json"
        document = {"client_id": url, "client_name": "Doc host", "redirect_uris": [REDIRECT]}
        if kind == "foreign":
            document["client_id"] = f"{self.base}/client.json"
        elif kind == "secret":
            document["token_endpoint_auth_method"] = "client_secret_basic"
        elif kind == "huge":
            document["client_name"] = "x" * 6000
        elif kind == "moved":
            raise web.HTTPFound(f"{self.base}/client.json")
        elif kind == "garbage":
            return web.Response(text="{not json", content_type="application/json")
        elif kind == "slow":
            await asyncio.sleep(3)
        return web.json_response(document, headers={"Cache-Control": "max-age=600"})


@pytest.fixture
async def client_site(aiohttp_server, tmp_path):
    site = ClientSite()
    app = web.Application()
    app.router.add_get("/{kind}.json", site.handle)
    site.base, site.ca_file = await tls_server(aiohttp_server, tmp_path, app)
    return site


async def test_a_client_named_by_its_metadata_document_signs_in(start_app, client_site):
    if reason := bubblewrap_missing():
        pytest.skip(reason)
    app = await start_app(hosted={"backend": "bubblewrap", "publish_check": False}, oauth={
        "client_metadata_private_addresses": True, "client_metadata_ca_file": client_site.ca_file,
        "client_metadata_seconds": 1})
    alice, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    status, metadata, _ = await app.client.get("/.well-known/oauth-authorization-server")
    assert metadata["client_id_metadata_document_supported"] is True
    session_id, csrf = await app.services.accounts.start_session(alice)
    flow = Flow(app, f"{client_site.base}/client.json", {"Cookie": f"mcpstore_session={session_id}"}, csrf)

    verifier, challenge = pkce()
    status, body, _ = await flow.consent_page(flow.params("alice/hostile", challenge))
    assert status == 200 and "Doc host" in body.decode() and f"{client_site.base}/client.json" in body.decode()
    code = await flow.code("alice/hostile", challenge)
    status, tokens, _ = await flow.exchange(code, verifier, "alice/hostile")
    assert status == 200, tokens
    assert await initialize(app, tokens["access_token"]) == (200, None)
    assert client_site.fetches == ["client"]  # fetched once, then kept (max-age)

    # its redirect URIs match exactly: anything else is refused on the page, never redirected to
    status, body, response = await flow.consent_page(flow.params("alice/hostile", challenge,
                                                                 redirect_uri=REDIRECT + "/other"))
    assert status == 400 and "Location" not in response.headers
    base = client_site.base
    for url, reason in ((f"{base}/foreign.json", "not exactly the URL"), (f"{base}/secret.json", "only public"),
                        (f"{base}/huge.json", "larger than 5120 bytes"), (f"{base}/moved.json", "HTTP 302"),
                        (f"{base}/garbage.json", "JSON"), (f"{base}/slow.json", "could not be fetched"),
                        (f"{base}/a/../client.json", "path segments"), (base + "/", "must have a path"),
                        ("http" + base[5:] + "/client.json", "unknown client_id")):
        bad = Flow(app, url, flow.cookie, csrf)
        status, body, response = await bad.consent_page(bad.params("alice/hostile", challenge))
        assert status == 400 and reason in body.decode(), (url, body.decode()[-2000:])
        assert "Location" not in response.headers
    status, body, _ = await flow.exchange("x" * 43, verifier, "alice/hostile", client_id=f"{client_site.base}/x.json")
    assert status == 400 and body["error"] == "invalid_grant"


async def test_non_public_addresses_are_refused_unless_allowed(client_site):
    documents = ClientDocuments(None, OAuthSettings(client_metadata_ca_file=client_site.ca_file))  # the default
    with pytest.raises(ClientRefused, match="non-public address"):
        await documents.get(f"{client_site.base}/client.json")
    localhost = client_site.base.replace("127.0.0.1", "localhost")
    with pytest.raises(ClientRefused, match="non-public address"):  # a name that resolves to loopback
        await documents.get(f"{localhost}/client.json")
    assert client_site.fetches == []
