"""Connection limits (web/connections.py) on the real app on a real port, with real sockets: a head that
trickles in, a body that stalls and an idle connection are closed after their timeouts (small ones here); a
slow but moving upload and a slow handler are not cut; past the caps, new connections are answered 503 and
closed while the connections already served keep working."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re

import aiohttp
import pytest
from aiohttp import web

from mcpstore_appliance.app import create_app
from mcpstore_appliance.eventloop import loop_factory, running_loop_name
from mcpstore_appliance.web import sendfile
from mcpstore_appliance.web.access import NO_CREDENTIALS, allow
from tests.conftest import Client, RunningApp, make_settings, serve_app, stop_app
from tests.integration.publish_support import FAST_LEDGER, bundle, user
from tests.seed import eventually

QUICK = {"header_timeout_seconds": 1.0, "body_stall_timeout_seconds": 1.0}
LATE = 10.0  # long after any timeout here: the server had every chance to close


def add_upload_route(app: web.Application) -> None:
    """POST /test/upload reads the whole body, then waits `then_wait` seconds, and answers its size."""

    async def upload(request: web.Request) -> web.Response:
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
        await asyncio.sleep(float(request.query.get("then_wait", 0)))
        return web.json_response({"bytes": size})

    app.router.add_post("/test/upload", allow(NO_CREDENTIALS)(upload))


async def connect(app, source: str = "127.0.0.1"):
    return await asyncio.open_connection("127.0.0.1", app.site.port, local_addr=(source, 0))


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LATE)
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    return int(head.split(b" ", 2)[1]), await asyncio.wait_for(reader.readexactly(length), LATE)


async def get(reader, writer, path: str = "/healthz") -> int:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
    return (await read_response(reader))[0]


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """Whether the server closes the connection within `seconds` (anything it sends first is read)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        while loop.time() < deadline:
            if not await asyncio.wait_for(reader.read(4096), deadline - loop.time()):
                return True
    except ConnectionError:  # closed with a reset
        return True
    except asyncio.TimeoutError:
        pass
    return False


async def trickle(reader, writer, first: bytes, then: bytes, every: float) -> float:
    """Send `first`, then `then` every `every` seconds until the server closes; seconds until it did."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer.write(first)
    while loop.time() - started < LATE:
        try:
            data = await asyncio.wait_for(reader.read(4096), every)
        except asyncio.TimeoutError:
            try:
                writer.write(then)
                await writer.drain()
            except ConnectionError:
                break
            continue
        except ConnectionError:
            break
        assert data == b"", f"the server answered a request that never ended: {data[:80]!r}"
        break
    else:
        raise AssertionError(f"the server kept the connection for {LATE} s")
    return loop.time() - started


async def metrics(app) -> str:
    return (await app.client.get("/metrics"))[1].decode()


async def test_a_head_that_trickles_in_is_closed_after_the_header_timeout(start_app):
    app = await start_app(server=QUICK)
    reader, writer = await connect(app)
    held = await trickle(reader, writer, b"GET /healthz HTTP/1.1\r\nHost: test\r\n", b"X-Slow: 1\r\n", every=0.2)
    assert held >= 1.0
    # empty lines before a request line are skipped by aiohttp: they cannot reset the head's clock
    reader, writer = await connect(app)
    assert await trickle(reader, writer, b"\r\n", b"\r\n", every=0.2) >= 1.0
    text = await metrics(app)
    assert 'mcpstore_connections_timed_out_total{phase="head"} 2' in text


async def test_a_head_that_completes_in_time_is_served_and_idle_connections_wait_for_keepalive(start_app):
    app = await start_app(server={**QUICK, "keepalive_timeout_seconds": 3.0})
    reader, writer = await connect(app)
    for piece in (b"GET /healthz HTTP/1.1\r\n", b"Host: test\r\n", b"\r\n"):
        writer.write(piece)
        await asyncio.sleep(0.3)  # 0.9 s for the head, under the 1 s timeout
    assert (await read_response(reader))[0] == 200
    idle = await connect(app)  # connects and sends nothing: not a head, so only keep-alive applies
    assert not await closed_within(reader, 2.0)  # idle after an answer: longer than the header timeout
    assert await get(reader, writer) == 200
    assert await closed_within(idle[0], LATE)


async def test_an_idle_keepalive_connection_is_closed_after_the_keepalive_timeout(start_app):
    app = await start_app(server={"keepalive_timeout_seconds": 1.0})
    reader, writer = await connect(app)
    assert await get(reader, writer) == 200
    started = asyncio.get_running_loop().time()
    assert await closed_within(reader, LATE)
    assert asyncio.get_running_loop().time() - started >= 0.9


async def test_a_stalled_body_is_closed_after_the_stall_timeout(start_app):
    app = await start_app(add_upload_route, server=QUICK)
    reader, writer = await connect(app)
    writer.write(b"POST /test/upload HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10)
    started = asyncio.get_running_loop().time()
    assert await closed_within(reader, LATE)
    assert asyncio.get_running_loop().time() - started >= 1.0
    assert 'mcpstore_connections_timed_out_total{phase="body"} 1' in await metrics(app)


async def test_a_publish_whose_body_stalls_is_cut_and_leaves_nothing(start_app):
    app = await start_app(server=QUICK, ledger=FAST_LEDGER)
    _, token = await user(app, "slow")
    data = bundle("stalled")
    reader, writer = await connect(app)
    writer.write(f"POST /api/packages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
                 f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n".encode()
                 + data[: len(data) // 2])
    assert await closed_within(reader, LATE)
    tmp = app.data_dir / "tmp"
    await eventually(lambda: not any(tmp.iterdir()), seconds=5)
    assert not any(tmp.iterdir()), "the cut upload left a temporary file"
    assert await app.services.db.fetch_one("SELECT id FROM packages WHERE name = 'stalled'") is None


async def test_a_slow_but_moving_upload_is_not_cut(start_app):
    app = await start_app(add_upload_route, server=QUICK)
    reader, writer = await connect(app)
    writer.write(b"POST /test/upload HTTP/1.1\r\nHost: test\r\nContent-Length: 2000\r\n\r\n")
    for _ in range(20):  # 6 s in all: several times both timeouts, never 1 s without a byte
        await asyncio.sleep(0.3)
        writer.write(b"y" * 100)
    assert await read_response(reader) == (200, b'{"bytes": 2000}')
    assert await get(reader, writer) == 200  # and the connection goes on


async def test_a_handler_busy_after_its_body_arrived_is_not_cut(start_app):
    app = await start_app(add_upload_route, server=QUICK)
    reader, writer = await connect(app)
    writer.write(b"POST /test/upload?then_wait=3 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n\r\nhello")
    assert await read_response(reader) == (200, b'{"bytes": 5}')
    # and with Expect: 100-continue, the body sent only once invited
    writer.write(b"POST /test/upload?then_wait=2 HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LATE) == b"HTTP/1.1 100 Continue\r\n\r\n"
    await asyncio.sleep(0.5)
    writer.write(b"hello")
    assert await read_response(reader) == (200, b'{"bytes": 5}')


async def test_past_the_per_address_cap_new_connections_are_refused_and_served_ones_go_on(start_app, caplog):
    app = await start_app(server={"max_connections_per_address": 3})
    served = [await connect(app) for _ in range(3)]
    for reader, writer in served:
        assert await get(reader, writer) == 200
    with caplog.at_level(logging.INFO, logger="mcpstore.connections"):
        for _ in range(3):
            refused = await connect(app)
            assert await read_response(refused[0]) == (503, refused_body())
            assert await closed_within(refused[0], LATE)
        other = await connect(app, "127.0.0.2")  # another address has its own count
        assert await get(*other) == 200
        for reader, writer in served:
            assert await get(reader, writer) == 200
        await eventually(lambda: any("refused" in r.message for r in caplog.records), seconds=3)
    lines = [r for r in caplog.records if r.name == "mcpstore.connections" and "refused" in r.message]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING  # rate-limited: one line for three
    assert "refused 3 (total cap 0, per-address cap 3; most from 127.0.0.1: 3)" in lines[0].message
    served[0][1].close()  # a served connection ends: its place is free again
    await eventually(lambda: app.site.gate.by_address["127.0.0.1"] == 2)
    assert await get(*await connect(app)) == 200
    assert 'mcpstore_connections_refused_total{reason="per_address"} 3' in await metrics_on(served[1])


async def test_past_the_total_cap_new_connections_are_refused_and_served_ones_go_on(start_app):
    app = await start_app(server={"max_connections": 4, "max_connections_per_address": 2})
    served = [await connect(app, source) for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.3")]
    for reader, writer in served:
        assert await get(reader, writer) == 200
    refused = await connect(app, "127.0.0.4")
    answer = await asyncio.wait_for(refused[0].read(), LATE)  # all of it: the server closes after it
    head, body = answer.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 503 ") and b"\r\nServer: mcpstore\r\n" in head
    assert json.loads(body)["error"]["code"] == "too_many_connections"
    for reader, writer in served:
        assert await get(reader, writer) == 200
    assert app.site.gate.limits.total == 4
    assert 'mcpstore_connections_refused_total{reason="total"} 1' in await metrics_on(served[0])


async def test_a_trusted_proxy_is_not_capped_per_address(start_app):
    app = await start_app(server={"max_connections_per_address": 2, "trusted_proxies": ["127.0.0.9/32"]})
    through_proxy = [await connect(app, "127.0.0.9") for _ in range(5)]
    for reader, writer in through_proxy:
        assert await get(reader, writer) == 200
    direct = [await connect(app) for _ in range(3)]
    assert [await get(*direct[0]), await get(*direct[1])] == [200, 200]
    assert (await read_response(direct[2][0]))[0] == 503


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_publish_with_100_continue_and_a_sendfile_download_pass_through_the_guard(tmp_path, loop):
    """On the loop `mcpstore serve` runs by default and on asyncio's: curl's way of publishing (the body only
    once the server invited it) and a download sent by the kernel from the blob file."""

    async def scenario() -> None:
        assert running_loop_name() == loop
        app = create_app(make_settings(tmp_path / "data", ledger=FAST_LEDGER))
        runner, site = await serve_app(app)
        try:
            async with aiohttp.ClientSession() as session:
                running = RunningApp(f"http://127.0.0.1:{site.port}", app, Client("", session), tmp_path, site)
                _, token = await user(running, "carol")
                data = bundle("continued", "1.0.0", extra={"noise.bin": os.urandom(1 << 20)})
                reader, writer = await connect(running)
                writer.write(f"POST /api/packages HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\n"
                             f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n"
                             "Expect: 100-continue\r\n\r\n".encode())
                invited = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), LATE)
                assert invited == b"HTTP/1.1 100 Continue\r\n\r\n"
                writer.write(data)
                status, body = await read_response(reader)
                assert status == 201, body
                sends = sendfile.slots.sends
                writer.write(b"GET /api/packages/carol/continued/versions/1.0.0/download HTTP/1.1\r\n"
                             b"Host: test\r\n\r\n")
                assert await read_response(reader) == (200, data)
                assert sendfile.slots.sends == sends + 1
                writer.close()
        finally:
            await stop_app(runner, site)

    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        runner.run(scenario())


async def metrics_on(connection) -> str:
    reader, writer = connection
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
    return (await read_response(reader))[1].decode()


def refused_body() -> bytes:
    from mcpstore_appliance.web.connections import REFUSED

    return REFUSED.split(b"\r\n\r\n", 1)[1]
