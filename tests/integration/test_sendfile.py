"""web/sendfile.py over real sockets: a small aiohttp app on a real port answers with `send_range` from a real
file (large enough that the socket fills and the worker waits for it), and real clients read it fast, slowly,
in part, or go away. The appliance's own downloads use it too (tests/integration/test_downloads.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading

import aiohttp
import pytest
from aiohttp import web

from mcpstore_appliance.web import sendfile
from tests.seed import eventually

MiB = 1 << 20
SIZE = 24 * MiB


@pytest.fixture
async def served(tmp_path, aiohttp_server):
    """(base URL, file bytes, the file): GET /file?start=&end=&claim= answers bytes [start, end) with sendfile;
    `claim` overrides the Content-Length (a file shorter than its record)."""
    path = tmp_path / "blob.bin"
    data = os.urandom(SIZE)
    path.write_bytes(data)
    used: list[bool] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        start, end = int(request.query.get("start", 0)), int(request.query.get("end", SIZE))
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = int(request.query.get("claim", end - start))
        await response.prepare(request)
        try:
            used.append(await sendfile.send_range(request, path, start, int(request.query.get("claim", end))))
        except OSError:
            request.transport.close()
            raise
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/file", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    return str(server.make_url("/file")), data, path, used


async def wait_until_free() -> None:
    await eventually(lambda: sendfile.slots.in_use == 0, seconds=20)
    assert sendfile.slots.in_use == 0, f"{sendfile.slots.in_use} sendfile slots still in use"


async def test_whole_file_and_ranges_arrive_exactly(served):
    url, data, _, used = served
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert hashlib.sha256(await response.read()).digest() == hashlib.sha256(data).digest()
        for start, end in ((0, 1), (5 * MiB - 3, 5 * MiB + 7), (SIZE - 10, SIZE), (MiB, 9 * MiB)):
            async with session.get(url, params={"start": start, "end": end}) as response:
                assert await response.read() == data[start:end], (start, end)
    assert used == [True] * 5


async def test_a_slow_reader_gets_every_byte(served):
    """The socket buffer fills long before 24 MiB: the worker waits for room (poll) many times."""
    url, data, _, used = served
    received = hashlib.sha256()
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            async for block in response.content.iter_chunked(256 * 1024):
                received.update(block)
                await asyncio.sleep(0.002)
    assert received.digest() == hashlib.sha256(data).digest() and used == [True]
    await wait_until_free()


async def test_a_client_that_goes_away_frees_its_worker_and_the_server_goes_on(served):
    url, data, _, _ = served
    host, port = url.split("//")[1].split("/")[0].split(":")

    def read_a_little_then_reset() -> int:  # a blocking client: in a thread, so the server's loop runs on
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            raw.sendall(f"GET /file HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            got = len(raw.recv(MiB))  # the headers and the first bytes, then the client disappears
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            return got

    assert await asyncio.to_thread(read_a_little_then_reset) > 0
    await wait_until_free()
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"start": 0, "end": 100}) as response:
            assert await response.read() == data[:100]


async def test_a_file_shorter_than_its_record_drops_the_connection(served):
    url, _, _, _ = served
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            async with session.get(url, params={"claim": SIZE + MiB}) as response:
                await response.read()
    await wait_until_free()


async def test_when_every_worker_is_busy_it_declines_and_sends_nothing(served, monkeypatch):
    url, data, _, used = served
    monkeypatch.setattr(sendfile.slots, "limit", 0)  # not in_use: a finishing worker may still release its slot
    async with aiohttp.ClientSession() as session:
        async with session.get(url, params={"start": 0, "end": 0}) as response:
            assert await response.read() == b""
    assert used == [False]


async def test_at_shutdown_a_stalled_client_releases_its_worker_at_once(served):
    """A client that stops reading would hold a worker for STALL_SECONDS (60 s); abort_all, which the appliance
    calls at shutdown, ends it now."""
    url, _, _, _ = served
    host, port = url.split("//")[1].split("/")[0].split(":")
    stalled = socket.create_connection((host, int(port)))
    try:
        stalled.sendall(f"GET /file HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())  # and never reads
        for _ in range(200):
            if sendfile.slots.connections:
                break
            await asyncio.sleep(0.05)
        assert sendfile.slots.abort_all(owner=object()) == 0  # another app's shutdown leaves it alone
        assert sendfile.slots.abort_all() == 1
        await wait_until_free()
    finally:
        stalled.close()


async def test_a_handler_cancelled_before_any_worker_took_its_send_still_frees_the_slot(tmp_path, aiohttp_server,
                                                                                       monkeypatch):
    """The send is queued for a worker; if the handler is cancelled first (a client gone, a shutdown), the queued
    job must still run: it alone releases the slot and closes the duplicated descriptor. Made certain here by a
    pool whose one worker is held busy until after the cancellation."""
    path = tmp_path / "blob.bin"
    path.write_bytes(os.urandom(MiB))
    busy, go = asyncio.Event(), threading.Event()
    pool = sendfile.ThreadPoolExecutor(max_workers=1)
    pool.submit(go.wait)  # the only worker waits: the send stays queued
    monkeypatch.setattr(sendfile, "_executor", pool)
    outcome: dict[str, object] = {}

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        response.content_length = MiB
        await response.prepare(request)
        try:
            sending = asyncio.create_task(sendfile.send_range(request, path, 0, MiB))
            await asyncio.sleep(0.1)  # the slot is taken and the job queued behind the busy worker
            outcome["in_use_while_queued"] = sendfile.slots.in_use
            sending.cancel()
            await asyncio.gather(sending, return_exceptions=True)
            outcome["cancelled"] = sending.cancelled()
            go.set()  # now the worker is free: the queued send runs, sends, releases
            await asyncio.to_thread(pool.shutdown, wait=True)  # (aiohttp may cancel this once the client left)
        finally:
            go.set()
            busy.set()
        return response

    app = web.Application()
    app.router.add_get("/file", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(server.make_url("/file")) as response:
            received = len(await response.read())
    await asyncio.wait_for(busy.wait(), 30)
    assert outcome == {"in_use_while_queued": 1, "cancelled": True}
    assert received == MiB  # the queued send delivered the bytes after all
    await wait_until_free()  # and released its slot
