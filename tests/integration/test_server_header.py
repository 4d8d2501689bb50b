"""Every answer names the server `mcpstore` and nothing more: no Python or aiohttp version to look up
vulnerabilities by. Success, errors, redirects, files and HTML pages. (A 500: test_http_surface.py, the route added later.)

Not covered, because the application never sees them: the 400s that aiohttp's HTTP parser answers to a request
it cannot read (a malformed request line, a header line over 8 KB); those still carry aiohttp's default."""

import asyncio

import aiohttp

from tests.seed import publish

HTML = {"Accept": "text/html"}


def assert_ours(response: aiohttp.ClientResponse, what: str) -> None:
    assert response.headers.getall("Server") == ["mcpstore"], what
    assert not any("python" in value.lower() or "aiohttp" in value.lower() for value in response.headers.values()), what


async def raw_get(base_url: str, path: str) -> list[str]:
    """One GET over a raw socket, kept alive as a client would: its header lines."""
    host, port = base_url.split("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
    finally:
        writer.close()
    return head.decode().split("\r\n")[:-2]


async def test_success_error_redirect_and_file_answers_say_mcpstore(appliance):
    _, alice = await appliance.user("alice")
    published = await publish(appliance, alice, "tool", "1.0.0")
    client = appliance.client
    answers = {
        "health": await client.get("/healthz"),
        "package data": await client.get("/api/packages/alice/tool"),
        "bundle download": await client.get(f"/bundles/{published['sha256']}.mcpb"),
        "registry list": await client.get("/v0.1/servers"),
        "home page": await client.get("/", headers=HTML),
        "static file": await client.get("/static/app.css"),
        "HEAD": await client.request("HEAD", "/healthz"),
        "JSON 404": await client.get("/api/packages/alice/nothing"),
        "unrouted 404": await client.get("/no/such/path"),
        "HTML 404": await client.get("/no/such/path", headers=HTML),
        "405": await client.request("PATCH", "/api/me"),
        "401": await client.get("/api/me", headers={"Authorization": "Bearer mcps_wrong"}),
        "400": await client.get("/api/packages?limit=banana"),
        "registry 404": await client.get("/v0.1/servers/nope%2Fnope/versions/latest"),
        "redirect": await client.get("/dashboard", headers=HTML, allow_redirects=False),
    }
    statuses = {what: status for what, (status, _, _) in answers.items()}
    assert statuses["redirect"] == 303 and statuses["405"] == 405 and statuses["HTML 404"] == 404, statuses
    assert statuses["400"] == 400 and statuses["401"] == 401 and statuses["bundle download"] == 200, statuses
    for what, (_, _, response) in answers.items():
        assert_ours(response, what)


async def test_a_repeated_package_read_says_mcpstore_once(appliance):
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0")
    await raw_get(appliance.base_url, "/api/packages/alice/tool")  # the route answers, and keeps the answer
    head = await raw_get(appliance.base_url, "/api/packages/alice/tool")
    assert head[0] == "HTTP/1.1 200 OK" and [line for line in head if line.lower().startswith("server:")] == [
        "Server: mcpstore"]
