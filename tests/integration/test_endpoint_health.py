"""Pro-tier endpoints are asked to `initialize` (gateway/endpoint_health.py) against a real https MCP endpoint on
loopback (a certificate from a test CA made by trustme): the answer shows on the package page, and /v0.1 stops
offering the endpoint as a remote while it fails. Only public addresses are contacted unless the operator
allows more, no redirect is followed, and an oversized answer is cut."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.conftest import tls_server
from tests.data.bundles import bundle_bytes, node_manifest
from tests.gateway.servers import publish_bundle

ANSWER = {"jsonrpc": "2.0", "id": 1, "result": {"protocolVersion": "2025-11-25", "capabilities": {},
                                                "serverInfo": {"name": "weather-pro", "version": "1"}}}


class Endpoint:
    """An https MCP endpoint whose answer the test chooses."""

    def __init__(self):
        self.mode, self.requests = "json", []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(await request.json())
        if self.mode == "json":
            return web.json_response(ANSWER)
        if self.mode == "sse":
            return web.Response(text=f"event: message\ndata: {json.dumps(ANSWER)}\n\n", content_type="text/event-stream")
        if self.mode == "redirect":
            raise web.HTTPTemporaryRedirect("https://example.com/elsewhere")
        if self.mode == "huge":
            return web.Response(body=b"[" * (1 << 20), content_type="application/json")
        return web.json_response({"error": "down"}, status=500)


@pytest.fixture
async def endpoint(aiohttp_server, tmp_path):
    peer = Endpoint()
    app = web.Application()
    app.router.add_post("/mcp", peer.handle)
    base, peer.ca_file = await tls_server(aiohttp_server, tmp_path, app)
    peer.url = f"{base}/mcp"
    return peer


async def pro_package(start_app, endpoint, private: bool = True):
    app = await start_app(hosted={"backend": "off", "endpoint_check_private_addresses": private,
                                  "endpoint_ca_file": endpoint.ca_file})
    _, token = await app.user("alice")
    manifest = node_manifest()
    manifest["name"] = "weather"
    await publish_bundle(app, token, bundle_bytes(manifest), tier="pro", endpoint=endpoint.url)
    checker = app.services.gateway.endpoints
    checker.interval = 0  # every round checks again (the setting's floor is 10 s)
    return app, checker


async def remotes(app) -> list:
    status, body, _ = await app.client.get("/v0.1/servers?search=weather")
    assert status == 200
    (entry,) = body["servers"]
    return entry["server"].get("remotes", [])


async def page(app) -> str:
    status, body, _ = await app.client.get("/packages/alice/weather")
    assert status == 200
    return body.decode()


async def test_a_healthy_endpoint_is_shown_up_and_offered_a_failing_one_is_not(start_app, endpoint):
    app, checker = await pro_package(start_app, endpoint)
    assert "not checked yet" in await page(app)
    assert [r["url"] for r in await remotes(app)] == [endpoint.url]  # offered before the first check

    assert await checker.run_due() == 1
    assert endpoint.requests[-1]["method"] == "initialize"
    health = await checker.health_of(app.services.discovery.packages.package_ref(None, "alice", "weather")[0])
    assert health["ok"] == 1 and "weather-pro" in health["detail"]
    assert ">up</span>" in await page(app)
    assert [r["url"] for r in await remotes(app)] == [endpoint.url]

    endpoint.mode = "down"
    await checker.run_due()
    html = await page(app)
    assert ">down</span>" in html and "HTTP 500 to initialize" in html
    assert await remotes(app) == []

    endpoint.mode = "sse"  # Streamable HTTP may answer as one event
    await checker.run_due()
    assert [r["url"] for r in await remotes(app)] == [endpoint.url]


async def test_redirects_and_oversized_answers_are_failures(start_app, endpoint):
    app, checker = await pro_package(start_app, endpoint)
    endpoint.mode = "redirect"
    assert (await checker.check(endpoint.url)).detail == "HTTP 307 to initialize"
    endpoint.mode = "huge"
    result = await checker.check(endpoint.url)
    assert not result.ok and result.detail == "not a JSON-RPC answer to initialize"


async def test_private_addresses_are_not_contacted_unless_allowed(start_app, endpoint):
    app, checker = await pro_package(start_app, endpoint, private=False)
    result = await checker.check(endpoint.url)
    assert not result.ok and "non-public address" in result.detail
    by_name = await checker.check(endpoint.url.replace("127.0.0.1", "localhost"))  # a name resolving to loopback
    assert not by_name.ok and "non-public address" in by_name.detail
    await checker.run_due()
    assert endpoint.requests == []  # nothing reached the loopback endpoint
    assert await remotes(app) == []
