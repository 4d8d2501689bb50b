"""CORS for browser-based MCP clients (web/cors.py): Debian's headless Chromium on a page of another origin
(a second local server) reads the OAuth metadata, registers, gets a readable OAuth error from the token
endpoint, sees the hosted endpoint's 401 with its WWW-Authenticate, and initialises with a bearer token,
reading Mcp-Session-Id; every POST there is preceded by the browser's own preflight. An origin that is not
allowed cannot reach /mcp/, and cookies never go cross-origin. Real bubblewrap behind /mcp/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.conftest import free_port
from tests.e2e.browser_support import CHROMIUM, CHROMIUM_ARGS, local_site
from tests.gateway.servers import hostile_bundle, publish_bundle

INIT = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "spa", "version": "1"}}}
CALLS = """async ({base, token, init}) => {
  const json = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"};
  const out = {};
  const attempt = async (name, run) => { try { out[name] = await run(); } catch (e) { out[name] = "blocked"; } };
  await attempt("metadata", async () => (await (await fetch(base + "/.well-known/oauth-authorization-server")).json()).issuer);
  await attempt("register", async () => (await fetch(base + "/oauth/register", {method: "POST", headers: json,
      body: JSON.stringify({client_name: "spa", redirect_uris: ["https://spa.example/cb"]})})).status);
  await attempt("token", async () => (await (await fetch(base + "/oauth/token", {method: "POST",
      headers: {"Content-Type": "application/x-www-form-urlencoded"}, body: "grant_type=authorization_code&code=x"})).json()).error);
  await attempt("token_with_cookies", async () => (await fetch(base + "/oauth/token", {method: "POST",
      credentials: "include", body: new URLSearchParams({grant_type: "refresh_token"})})).status);
  await attempt("unauthenticated", async () => { const r = await fetch(base + "/mcp/alice/hostile", {method: "POST",
      headers: json, body: JSON.stringify(init)}); return [r.status, r.headers.get("WWW-Authenticate")]; });
  await attempt("initialize", async () => { const r = await fetch(base + "/mcp/alice/hostile", {method: "POST",
      headers: {...json, "Authorization": "Bearer " + token}, body: JSON.stringify(init)});
      return [r.status, r.headers.get("Mcp-Session-Id")]; });
  await attempt("mcp_with_cookies", async () => (await fetch(base + "/mcp/alice/hostile", {method: "POST",
      credentials: "include", headers: {...json, "Authorization": "Bearer " + token}, body: JSON.stringify(init)})).status);
  return out;
}"""


async def blank_site(port: int) -> web.AppRunner:
    """The browser client's own origin: an empty page."""
    async def page(_):
        return web.Response(text="<!doctype html><title>spa</title>", content_type="text/html")

    return await local_site(port, "/", page)


async def test_a_browser_client_on_another_origin(hosted_app):
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); .ci/run does"
    from playwright.async_api import async_playwright

    allowed, other = free_port(), free_port()
    app = await hosted_app(allowed_origins=[f"http://127.0.0.1:{allowed}"])
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    sites = [await blank_site(allowed), await blank_site(other)]
    try:
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await (await browser.new_context()).new_page()
            answers = {}
            for port in (allowed, other):
                await page.goto(f"http://127.0.0.1:{port}/")
                answers[port] = await page.evaluate(CALLS, {"base": app.base_url, "token": token, "init": INIT})
            await browser.close()
    finally:
        for site in sites:
            await site.cleanup()
    ok, foreign = answers[allowed], answers[other]
    for seen in (ok, foreign):  # the OAuth endpoints: any origin, never with cookies
        assert seen["metadata"] == app.services.settings.base_url
        assert seen["register"] == 201
        assert seen["token"] == "invalid_grant"  # the OAuth error, readable
        assert seen["token_with_cookies"] == "blocked"
    assert ok["unauthenticated"][0] == 401 and "resource_metadata=" in ok["unauthenticated"][1]
    assert ok["initialize"][0] == 200 and len(ok["initialize"][1]) >= 16
    assert ok["mcp_with_cookies"] == "blocked"
    assert foreign["unauthenticated"] == "blocked" and foreign["initialize"] == "blocked"


async def test_preflights_and_refusals(hosted_app):
    app = await hosted_app(allowed_origins=["https://spa.example"])
    alice, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    http = app.client.session
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}
    async with http.options(app.base_url + "/mcp/alice/hostile", headers={"Origin": "https://spa.example", **ask}) as r:
        assert r.status == 204
        assert r.headers["Access-Control-Allow-Origin"] == "https://spa.example"
        assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
        assert "DELETE" in r.headers["Access-Control-Allow-Methods"]
        assert "Origin" in r.headers.getall("Vary")
        assert "Access-Control-Allow-Credentials" not in r.headers
    async with http.options(app.base_url + "/oauth/token", headers={"Origin": "https://any.example", **ask}) as r:
        assert r.status == 204 and r.headers["Access-Control-Allow-Origin"] == "*"
        assert r.headers["Access-Control-Allow-Methods"] == "POST"
    # an origin the operator did not allow: no CORS answer for /mcp/, and its calls are refused
    async with http.options(app.base_url + "/mcp/alice/hostile", headers={"Origin": "https://evil.example", **ask}) as r:
        assert r.status == 403 and "Access-Control-Allow-Origin" not in r.headers
    async with http.options(app.base_url + "/oauth/token") as r:  # not a preflight
        assert r.status == 403
    # a session cookie is no credential for a call from another (even allowed) origin
    session_id, csrf = await app.services.accounts.start_session(alice)
    async with http.post(app.base_url + "/mcp/alice/hostile", data=json.dumps(INIT), headers={
            "Origin": "https://spa.example", "Cookie": f"{SESSION_COOKIE}={session_id}", "X-CSRF-Token": csrf,
            "Content-Type": "application/json"}) as r:
        assert r.status == 403 and (await r.json())["error"]["code"] == "origin_refused"
