"""web/encoded.py over real sockets: EncodedResponse must put on the wire exactly what aiohttp's own Response
sends for the same body and headers, in one write where it may, and hand every other case to aiohttp.

A small aiohttp app on a real port answers each route twice: /fast/... with EncodedResponse and /plain/... with
web.Response, from the same body and headers. Raw sockets read the bytes, so keep-alive, pipelining, HEAD,
HTTP/1.0, Connection: close and header injection are seen as a client sees them. The appliance's own routes
(package data, version lists, update checks, search, registry pages, /healthz) are covered in
test_packages_api.py and test_registry_api.py; here, that they take the one-write path."""

from __future__ import annotations

import asyncio
import os

import pytest
from aiohttp import web

from mcpstore_appliance.web.encoded import EncodedResponse, json_text
from mcpstore_appliance.web.middlewares import BASE_HEADERS

BODY = b'{"name":"weather","tools":["forecast"]}'
HEADERS = {"Content-Type": "application/json", "ETag": '"abc"', "Cache-Control": "no-cache"}
BIG = os.urandom(3 << 20)  # more than the socket and the transport buffer hold at once


def front_door_headers(response: web.StreamResponse) -> None:
    """What the front door adds after the handler (web.middlewares.FrontDoor), its own Server name among them."""
    response.headers["X-Request-Id"] = "r-1"
    for name, value in BASE_HEADERS:
        response.headers.setdefault(name, value)


@pytest.fixture
async def served(aiohttp_server):
    """(host, port, responses): every EncodedResponse the app made, to see which path it took."""
    made: list[EncodedResponse] = []
    buffered: list[int] = []  # bytes still waiting in the connection's write buffer as each request starts

    def encoded(body: bytes, headers: dict[str, str]) -> EncodedResponse:
        made.append(EncodedResponse(body, headers))
        return made[-1]

    async def fast(request: web.Request) -> web.StreamResponse:
        buffered.append(request.transport.get_write_buffer_size())
        response = encoded(BIG if request.match_info["what"] == "big" else BODY, dict(HEADERS))
        if "inject" in request.query:
            response.headers["X-Note"] = "ok\r\nSet-Cookie: stolen=1"
        if "date" in request.query:
            response.headers["Date"] = "Thu, 01 Jan 2026 00:00:00 GMT"
        front_door_headers(response)
        return response

    async def plain(request: web.Request) -> web.StreamResponse:
        response = web.Response(body=BIG if request.match_info["what"] == "big" else BODY, headers=dict(HEADERS))
        front_door_headers(response)
        return response

    app = web.Application()
    app.router.add_route("*", "/fast/{what}", fast)
    app.router.add_route("*", "/plain/{what}", plain)
    server = await aiohttp_server(app, host="127.0.0.1")
    return server.host, server.port, made, buffered


async def exchange(host: str, port: int, raw: bytes, responses: int = 1, *, head: bool = False,
                   read_slowly: bool = False) -> list[tuple[str, dict[str, str], bytes]]:
    """Send `raw`, read `responses` answers: (status line, headers, body)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(raw)
        answers = []
        for _ in range(responses):
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            status, *lines = head_bytes.decode().split("\r\n")[:-2]
            names = [line.split(":", 1)[0].lower() for line in lines]
            assert len(names) == len(set(names)), f"a header repeated: {names}"
            headers = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip() for line in lines}
            length = 0 if head else int(headers["content-length"])
            body = bytearray()
            while len(body) < length:
                if read_slowly:
                    await asyncio.sleep(0.01)
                body += await reader.read(min(65536, length - len(body)))
            answers.append((status, headers, bytes(body)))
        return answers
    finally:
        writer.close()


def get(path: str, *extra: str, method: str = "GET", version: str = "1.1") -> bytes:
    return "\r\n".join([f"{method} {path} HTTP/{version}", "Host: test", *extra, "", ""]).encode()


def without_date(headers: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in headers.items() if name != "date"}


async def test_same_bytes_as_aiohttp_in_one_write(served):
    host, port, made, _ = served
    [(fast_status, fast_headers, fast_body)] = await exchange(host, port, get("/fast/small"))
    [(plain_status, plain_headers, plain_body)] = await exchange(host, port, get("/plain/small"))
    assert made[-1].written_whole
    assert fast_status == plain_status == "HTTP/1.1 200 OK"
    assert without_date(fast_headers) == without_date(plain_headers)
    assert fast_headers["content-length"] == str(len(BODY)) and fast_body == plain_body == BODY
    assert fast_headers["date"].endswith(" GMT") and fast_headers["server"] == plain_headers["server"] == "mcpstore"


async def test_pipelined_requests_on_one_connection_each_get_their_answer(served):
    host, port, made, _ = served
    answers = await exchange(host, port, get("/fast/small") + get("/fast/big") + get("/fast/small"), 3)
    assert [body for _, _, body in answers] == [BODY, BIG, BODY]
    assert all(response.written_whole for response in made[-3:])


async def test_big_bodies_to_a_slow_reader_arrive_whole_and_wait_for_it(served):
    host, port, made, buffered = served
    answers = await exchange(host, port, get("/fast/big") * 3, 3, read_slowly=True)
    assert all(body == BIG and headers["content-length"] == str(len(BIG)) for _, headers, body in answers)
    assert all(response.written_whole for response in made[-3:])
    # Each answer waited for the client to take most of the one before (as aiohttp's writer does): the
    # pipelined requests did not pile three bodies up in memory.
    assert max(buffered[-3:]) < len(BIG) // 2


@pytest.mark.parametrize("raw, head", [
    (get("/fast/small", method="HEAD"), True),
    (get("/fast/small", version="1.0"), False),
    (get("/fast/small", "Connection: close"), False),
    (get("/fast/small?date=1"), False),
])
async def test_other_requests_take_aiohttps_path_with_the_same_answer(served, raw, head):
    host, port, made, _ = served
    plain_raw = raw.replace(b"/fast/", b"/plain/")
    [(fast_status, fast_headers, fast_body)] = await exchange(host, port, raw, head=head)
    [(plain_status, plain_headers, plain_body)] = await exchange(host, port, plain_raw, head=head)
    assert not made[-1].written_whole
    assert fast_status == plain_status
    if b"date=1" in raw:  # the handler's own Date is kept, not doubled
        assert fast_headers["date"] == "Thu, 01 Jan 2026 00:00:00 GMT"
    else:
        assert without_date(fast_headers) == without_date(plain_headers)
    assert fast_body == plain_body == (b"" if head else BODY)
    assert fast_headers["content-length"] == str(len(BODY))


async def test_connection_close_is_honoured(served):
    host, port, _, _ = served
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(get("/fast/small", "Connection: close"))
    data = await asyncio.wait_for(reader.read(), timeout=10)  # returns only when the server closes
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK") and b"Connection: close" in data and data.endswith(BODY)


async def test_a_header_with_a_line_break_is_never_sent(served):
    host, port, made, _ = served
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(get("/fast/small?inject=1"))
    data = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    assert b"stolen" not in data and b"Set-Cookie" not in data
    assert not data.startswith(b"HTTP/1.1 200")  # a 500, or the connection dropped: never the forged header
    # and the server still answers the next client
    [(status, _, body)] = await exchange(host, port, get("/fast/small"))
    assert status == "HTTP/1.1 200 OK" and body == BODY


async def test_a_client_gone_before_the_answer_leaves_the_server_serving(served):
    host, port, _, _ = served
    for _ in range(20):
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(get("/fast/big"))
        await writer.drain()
        writer.transport.abort()  # reset, possibly before the server wrote anything
    [(status, _, body)] = await exchange(host, port, get("/fast/big"))
    assert status == "HTTP/1.1 200 OK" and body == BIG


async def test_on_response_prepare_handlers_see_and_change_the_response(aiohttp_server):
    async def stamp(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["X-Stamped"] = "yes"

    made: list[EncodedResponse] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        made.append(json_text('{"a":1}'))
        return made[-1]

    app = web.Application()
    app.on_response_prepare.append(stamp)
    app.router.add_get("/", handler)
    server = await aiohttp_server(app, host="127.0.0.1")
    [(status, headers, body)] = await exchange(server.host, server.port, get("/"))
    assert status == "HTTP/1.1 200 OK" and headers["x-stamped"] == "yes" and body == b'{"a":1}'
    assert headers["content-type"] == "application/json; charset=utf-8" and not made[-1].written_whole


async def test_json_text_sends_the_content_type_of_aiohttps_text_responses(aiohttp_server):
    async def ours(request: web.Request) -> web.StreamResponse:
        response = json_text('{"café":"☕"}')
        front_door_headers(response)
        return response

    async def theirs(request: web.Request) -> web.StreamResponse:
        response = web.Response(text='{"café":"☕"}', content_type="application/json")
        front_door_headers(response)
        return response

    app = web.Application()
    app.router.add_get("/ours", ours)
    app.router.add_get("/theirs", theirs)
    server = await aiohttp_server(app, host="127.0.0.1")
    [(_, our_headers, our_body)] = await exchange(server.host, server.port, get("/ours"))
    [(_, their_headers, their_body)] = await exchange(server.host, server.port, get("/theirs"))
    assert without_date(our_headers) == without_date(their_headers)
    assert our_body == their_body == '{"café":"☕"}'.encode()
