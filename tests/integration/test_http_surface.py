"""Health, readiness, metrics, OpenAPI, JSON errors and CSRF on the real app."""

import asyncio
import logging
import re
import threading

import aiohttp
import pytest
from aiohttp import web

from mcpstore_appliance.web.access import ANYONE, allow, signed_in
from mcpstore_appliance.app import create_app
from mcpstore_appliance.web.openapi import undocumented_routes
from tests.conftest import free_port, make_settings
from tests.seed import publish
from mcpstore_appliance.web.keys import SERVICES


async def test_health_and_readiness(appliance):
    status, body, _ = await appliance.client.get("/healthz")
    assert status == 200 and body == {"status": "ok"}
    status, body, _ = await appliance.client.get("/readyz")
    assert status == 200 and body["checks"] == {"database": True, "blobs": True}


async def test_readiness_reports_a_broken_database(appliance):
    await appliance.services.db.close()
    status, body, _ = await appliance.client.get("/readyz")
    assert status == 503 and body["checks"]["database"] is False


async def test_unknown_route_and_wrong_method_are_json_errors(appliance):
    status, body, _ = await appliance.client.get("/api/nothing-here")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, response = await appliance.client.request("PATCH", "/api/me")
    assert status == 405 and body["error"]["code"] == "method_not_allowed" and "GET" in response.headers["Allow"]


async def test_unrouted_answers_go_through_the_front_door(appliance):
    """aiohttp's router answers what no route took (404, or 405 with Allow when the path exists under other
    methods; HEAD too) and the front door's middlewares give it the JSON error and the headers."""
    status, body, response = await appliance.client.request("DELETE", "/api/packages")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(",")) >= {"GET", "POST"}
    assert response.headers["X-Content-Type-Options"] == "nosniff" and response.headers["X-Request-Id"]
    status, _, response = await appliance.client.request("HEAD", "/no/such/thing")
    assert status == 404 and response.headers["X-Request-Id"]
    status, body, _ = await appliance.client.get("/api/packages/a/b/c/d/e/f")
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_unrouted_state_change_with_a_session_is_404_not_csrf(appliance):
    user, _ = await appliance.user("nina")
    session_id, _ = await appliance.services.accounts.start_session(user)
    status, body, _ = await appliance.client.post("/api/no-such-endpoint", json={},
                                                  headers={"Cookie": f"mcpstore_session={session_id}"})
    assert status == 404 and body["error"]["code"] == "not_found"


async def test_start_up_refuses_a_route_that_declares_no_access(tmp_path, aiohttp_server):
    """A route without @allow(...) would be admitted unchecked: it stops the start."""
    app = create_app(make_settings(tmp_path / "data", port=free_port()))

    async def late(request):
        return web.Response(text="late")

    app.router.add_get("/late-and-bare", late)
    threads_before = set(threading.enumerate())
    with pytest.raises(RuntimeError, match="@allow"):
        await aiohttp_server(app, host="127.0.0.1")
    # and nothing was opened: a database connection's thread left behind once kept a test run from exiting
    assert [t.name for t in set(threading.enumerate()) - threads_before] == []


async def test_a_route_added_later_gets_the_front_door(tmp_path, aiohttp_server):
    """The front door is the application's middleware chain: a route added after create_app gets its errors,
    headers, access check and metrics without doing anything."""
    app = create_app(make_settings(tmp_path / "data", port=free_port()))

    async def late(request):
        raise ValueError("boom")

    async def signed_in_only(request):
        return web.Response(text="never")

    app.router.add_get("/late/route", allow(ANYONE)(late))
    app.router.add_get("/late/mine", allow(signed_in(None, org="allowed"))(signed_in_only))
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession() as session:
        async with session.get(str(server.make_url("/late/route"))) as response:
            assert response.status == 500 and (await response.json())["error"]["code"] == "internal"
            assert response.headers["X-Request-Id"] and response.headers["Server"] == "mcpstore"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        async with session.get(str(server.make_url("/late/mine"))) as response:
            assert response.status == 401 and (await response.json())["error"]["code"] == "unauthenticated"
        async with session.get(str(server.make_url("/metrics"))) as response:
            text = await response.text()
    assert 'mcpstore_http_requests_total{method="GET",route="/late/route",status="500"} 1' in text
    assert 'mcpstore_http_requests_total{method="GET",route="/late/mine",status="401"} 1' in text


async def test_metrics_count_requests_by_route_and_status(appliance):
    await appliance.client.get("/healthz")
    await appliance.client.get("/api/me")
    status, text, response = await appliance.client.get("/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert status == 200 and response.content_type == "text/plain"
    assert re.search(r'mcpstore_http_requests_total\{method="GET",route="/healthz",status="200"\} 1', text)
    assert re.search(r'mcpstore_http_requests_total\{method="GET",route="/api/me",status="401"\} 1', text)
    assert 'mcpstore_http_request_duration_seconds_bucket{method="GET",route="/healthz",le="+Inf"} 1' in text


async def test_unrouted_requests_share_one_metrics_series(appliance):
    """aiohttp makes a new route object for every 404/405: counting by it would grow the metrics without
    bound under a scan of random paths."""
    for i in range(30):
        assert (await appliance.client.get(f"/no/such/path/{i}"))[0] == 404
    await appliance.client.request("PATCH", "/api/me")
    await appliance.client.request("PATCH", "/api/me")
    series = appliance.app[SERVICES].metrics._requests
    assert sum(1 for resource, _ in series if resource is None) == 2  # GET and PATCH
    _, text, _ = await appliance.client.get("/metrics")
    text = text.decode() if isinstance(text, bytes) else str(text)
    assert 'mcpstore_http_requests_total{method="GET",route="unmatched",status="404"} 30' in text
    assert 'mcpstore_http_requests_total{method="PATCH",route="unmatched",status="405"} 2' in text
    assert 'mcpstore_http_request_duration_seconds_count{method="GET",route="unmatched"} 30' in text


async def test_metrics_token(start_app):
    app = await start_app(server={"metrics_token": "s3cret-metrics"})
    assert (await app.client.get("/metrics"))[0] == 401
    assert (await app.client.get("/metrics", headers={"Authorization": "Bearer wrong"}))[0] == 401
    assert (await app.client.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics"}))[0] == 200


async def test_openapi_lists_every_json_endpoint(appliance):
    status, document, _ = await appliance.client.get("/api/openapi.json")
    assert status == 200 and document["openapi"].startswith("3.1")
    assert "/api/me" in document["paths"] and "post" in document["paths"]["/api/tokens"]
    assert "/api/tokens/{token_id}" in document["paths"]
    assert undocumented_routes(appliance.app, ("/api/", "/v0", "/ledger/")) == []


async def test_openapi_document_is_valid_openapi_3_1(appliance):
    from openapi_spec_validator import validate

    _, document, _ = await appliance.client.get("/api/openapi.json")
    validate(document)


async def test_cookie_session_needs_csrf_for_state_changes(appliance):
    user, _ = await appliance.user("rita")
    session_id, csrf = await appliance.services.accounts.start_session(user)
    cookies = {"Cookie": f"mcpstore_session={session_id}"}
    status, body, _ = await appliance.client.post("/api/tokens", json={"name": "x"}, headers=cookies)
    assert status == 403 and body["error"]["code"] == "csrf_failed"
    status, body, _ = await appliance.client.post("/api/tokens", json={"name": "x"},
                                                  headers={**cookies, "X-CSRF-Token": "wrong"})
    assert status == 403
    assert await appliance.services.db.fetch_value("SELECT count(*) FROM api_tokens WHERE name='x'") == 0
    status, body, _ = await appliance.client.post("/api/tokens", json={"name": "x"},
                                                  headers={**cookies, "X-CSRF-Token": csrf})
    assert status == 201
    status, _, _ = await appliance.client.get("/api/me", headers=cookies)  # reads need no CSRF token
    assert status == 200


async def test_security_headers(appliance):
    _, _, response = await appliance.client.get("/healthz")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Request-Id"]


async def test_access_log_is_structured_and_can_be_switched_off(start_app, caplog):
    import json
    import logging

    caplog.set_level(logging.INFO, logger="mcpstore.access")
    logged = await start_app(server={"access_log": True})
    await logged.client.get("/api/me", headers={"X-Request-Id": "trace-me"})
    await logged.client.get("/healthz")  # probes stay out of the log
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "mcpstore.access"]
    assert [(l["path"], l["status"], l["request_id"]) for l in lines] == [("/api/me", 401, "trace-me")]
    assert lines[0]["ms"] >= 0 and lines[0]["method"] == "GET"

    caplog.clear()
    quiet = await start_app(server={"access_log": False})
    await quiet.client.get("/api/me")
    assert not [r for r in caplog.records if r.name == "mcpstore.access"]


async def raw_exchange(base_url: str, request: bytes) -> bytes:
    host, port = base_url.split("//", 1)[1].split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        return await asyncio.wait_for(reader.read(), timeout=10)  # Connection: close below: read to the end
    finally:
        writer.close()


async def test_hot_reads_carry_every_header_once(appliance):
    """Package data, version lists, update checks, search, registry pages and /healthz, pipelined on one
    connection: the front door's headers are there, once each, beside the route's own."""
    _, alice = await appliance.user("alice")
    await publish(appliance, alice, "tool", "1.0.0")
    for path in ("/healthz", "/api/packages/alice/tool", "/api/packages/alice/tool/versions",
                 "/api/packages/alice/tool/latest?current=0.9.0", "/api/packages?q=tool", "/v0.1/servers?limit=1"):
        # two pipelined requests: the first kept alive, the second closes the connection
        once = f"GET {path} HTTP/1.1\r\nHost: t\r\nX-Request-Id: trace-7\r\n\r\n".encode()
        data = await raw_exchange(appliance.base_url, once + once.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        head = data.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
        names = [line.split(":", 1)[0].lower() for line in head[1:]]
        assert head[0] == "HTTP/1.1 200 OK", (path, head)
        assert len(names) == len(set(names)), (path, names)
        assert {"content-type", "content-length", "date", "server", "x-request-id", "x-content-type-options",
                "referrer-policy"} <= set(names), (path, names)
        assert "X-Request-Id: trace-7" in head and "X-Content-Type-Options: nosniff" in head
        assert data.count(b"HTTP/1.1 200 OK") == 2, path


async def test_a_request_id_with_a_control_character_is_not_echoed(appliance):
    data = await raw_exchange(appliance.base_url,
                              b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-Id: a\x01b\r\nConnection: close\r\n\r\n")
    assert b"a\x01b" not in data
    status, body, _ = await appliance.client.get("/healthz")  # and the appliance goes on serving
    assert status == 200 and body == {"status": "ok"}


async def test_a_url_over_8_kb_is_a_4xx_and_one_log_line_without_traceback(appliance, caplog):
    """aiohttp logs a request it cannot parse with a traceback at ERROR; a client could flood the log with them."""
    caplog.set_level(logging.INFO, logger="aiohttp.server")
    for _ in range(3):
        answer = await raw_exchange(appliance.base_url, f"GET /{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:40]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(records) == 3
    for record in records:
        assert record.levelno == logging.INFO and record.exc_info is None and record.exc_text is None
        line = record.getMessage()
        assert "\n" not in line and len(line) < 400 and line.startswith("bad HTTP request from 127.0.0.1")
    assert "Traceback" not in caplog.text
