"""Whose address a request is counted and audited under (web/util.py `client_ip`): the TCP peer; a trusted
proxy's X-Forwarded-For; and, on a worker's Unix socket only, the client another worker handed the request over
for (web/session_routing.py). A real aiohttp app on a real port and a real Unix socket."""

from __future__ import annotations

import aiohttp
from aiohttp import web

from mcpstore_appliance.config import load_settings
from mcpstore_appliance.web.keys import SETTINGS
from mcpstore_appliance.web.util import HANDED_OVER_FOR, client_ip
from tests.conftest import free_port


async def serve(tmp_path, trusted: list[str]) -> tuple[web.AppRunner, int, str]:
    async def answer(request: web.Request) -> web.Response:
        return web.Response(text=client_ip(request))

    app = web.Application()
    app[SETTINGS] = load_settings(None, environ={}, server={"trusted_proxies": trusted})
    app.router.add_get("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await web.UnixSite(runner, str(tmp_path / "worker.sock")).start()
    return runner, port, str(tmp_path / "worker.sock")


async def ask(url: str, headers: dict, unix: str | None = None) -> str:
    connector = aiohttp.UnixConnector(path=unix) if unix else None
    async with aiohttp.ClientSession(connector=connector) as client:
        async with client.get(url, headers=headers) as response:
            return await response.text()


async def test_the_handed_over_address_is_believed_only_on_the_unix_socket(tmp_path):
    runner, port, socket_path = await serve(tmp_path, trusted=[])
    try:
        spoof = {HANDED_OVER_FOR: "203.0.113.9", "X-Forwarded-For": "198.51.100.7"}
        assert await ask(f"http://127.0.0.1:{port}/", spoof) == "127.0.0.1"  # over TCP: the peer, nothing else
        assert await ask("http://worker/", spoof, unix=socket_path) == "203.0.113.9"
        assert await ask("http://worker/", {}, unix=socket_path) == "unknown"
    finally:
        await runner.cleanup()


async def test_forwarded_for_is_believed_from_a_trusted_proxy_only(tmp_path):
    runner, port, _ = await serve(tmp_path, trusted=["127.0.0.1/32"])
    try:
        assert await ask(f"http://127.0.0.1:{port}/", {"X-Forwarded-For": "10.0.0.1, 198.51.100.7"}) == "198.51.100.7"
    finally:
        await runner.cleanup()
