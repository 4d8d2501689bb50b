"""The MCP authorization flow end to end, with real peers only: the official `mcp` SDK client
(OAuthClientProvider) meets a 401 at the hosted endpoint, discovers the RFC 9728 and RFC 8414 metadata,
registers itself (RFC 7591), and sends the user's browser to the authorisation endpoint; headless Chromium
signs in on the appliance's own login page and approves on the consent page; the code comes back to a real
loopback callback server; the SDK exchanges it (PKCE S256, resource) and then initializes, lists and calls
tools of a bundle running in a bubblewrap sandbox. The token it got is refused at another package's endpoint."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from mcp import ClientSession
from mcp.client.auth import AuthorizationCodeResult, OAuthClientProvider
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from pydantic import AnyUrl

from tests.conftest import free_port
from tests.e2e.browser_support import CHROMIUM, CHROMIUM_ARGS, local_site
from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.servers import hostile_bundle, publish_bundle

pytestmark = pytest.mark.e2e
PASSWORD = "correct horse battery"  # tests/conftest.py RunningApp.user's


class MemoryStorage:
    """The SDK's TokenStorage, kept in memory (a host would keep it on disk)."""

    def __init__(self):
        self.tokens = self.client_info = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens) -> None:
        self.tokens = tokens

    async def get_client_info(self):
        return self.client_info

    async def set_client_info(self, client_info) -> None:
        self.client_info = client_info


async def callback_server(port: int, answers: asyncio.Queue):
    """A native app's loopback redirect target: it takes the authorisation response the browser brings."""

    async def callback(request: web.Request) -> web.Response:
        await answers.put(dict(request.query))
        return web.Response(text="You can close this window.")

    return await local_site(port, "/callback", callback)


async def test_sdk_oauth_flow_with_chromium_consent(start_app):
    reason = bubblewrap_missing()
    if reason:
        pytest.skip(reason)
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); .ci/run does"
    from playwright.async_api import async_playwright

    app = await start_app(hosted={"backend": "bubblewrap"})
    _, publisher_token = await app.user("alice")
    await publish_bundle(app, publisher_token, hostile_bundle())
    await publish_bundle(app, publisher_token, hostile_bundle("other"))
    port, answers = free_port(), asyncio.Queue()
    callback = await callback_server(port, answers)
    redirect_uri = f"http://127.0.0.1:{port}/callback"
    seen: dict[str, str] = {}
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await (await browser.new_context()).new_page()

        async def sign_in_and_approve(authorization_url: str) -> None:
            seen["authorization_url"] = authorization_url
            await page.goto(authorization_url)  # not signed in: the appliance's login page comes first
            assert "/login" in page.url
            await page.fill("#login", "alice")
            await page.fill("#password", PASSWORD)
            await page.click("form[action='/login'] button[type=submit]")
            await page.wait_for_selector("#approve")
            seen["consent"] = await page.inner_text("h1")
            await page.click("#approve")

        async def authorization_response() -> AuthorizationCodeResult:
            answer = await asyncio.wait_for(answers.get(), 30)
            seen["answer"] = answer
            return AuthorizationCodeResult(code=answer["code"], state=answer.get("state"), iss=answer.get("iss"))

        storage = MemoryStorage()
        auth = OAuthClientProvider(
            server_url=f"{app.base_url}/mcp/alice/hostile",
            client_metadata=OAuthClientMetadata(client_name="SDK e2e host", redirect_uris=[AnyUrl(redirect_uri)],
                                                grant_types=["authorization_code", "refresh_token"],
                                                response_types=["code"]),
            storage=storage, redirect_handler=sign_in_and_approve, callback_handler=authorization_response)
        try:
            http = create_mcp_http_client(auth=auth)
            async with http, streamable_http_client(f"{app.base_url}/mcp/alice/hostile", http_client=http) as (r, w):
                async with ClientSession(r, w) as session:
                    await session.initialize()
                    tools = {tool.name for tool in (await session.list_tools()).tools}
                    result = await session.call_tool("echo", {"text": "signed in through the appliance"})
        finally:
            await browser.close()
            await callback.cleanup()
    assert {"echo", "whoami"} <= tools
    assert result.content[0].text == "signed in through the appliance"
    assert "code_challenge_method=S256" in seen["authorization_url"]
    assert "resource=" in seen["authorization_url"] and "alice%2Fhostile" in seen["authorization_url"]
    assert seen["consent"] == "Allow SDK e2e host to call alice/hostile?"
    assert seen["answer"]["iss"] == app.base_url
    token = storage.tokens.access_token
    assert token.startswith("mcpo_") and storage.client_info.client_id.startswith("mcpc_")
    grant = await app.services.db.fetch_one("SELECT resource, scope FROM oauth_grants")
    assert grant == {"resource": f"{app.base_url}/mcp/alice/hostile", "scope": "invoke"}
    async with aiohttp.ClientSession() as plain:  # the same token at another package's endpoint
        async with plain.post(f"{app.base_url}/mcp/alice/other", json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                              headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 401 and (await response.json())["error"]["code"] == "invalid_token"
