"""A 200 response whose body is bytes the appliance keeps ready, written to the socket in one piece.

The hottest reads (package data, version lists, update checks, registry pages) answer bytes that are already
encoded and cached. aiohttp's Response still spends ~11 µs per request on this machine around them (a quarter
of a hello world): the length check, its Date/Server/Connection defaults, the prepare signal, serializing the
header multidict and handing head and body to its stream writer. EncodedResponse writes the status line, the
headers and the body with one transport write instead, but only where the bytes are exactly what aiohttp would
send: a GET over HTTP/1.1 that stays open, no cookies, no compression, no on_response_prepare handler. Anything
else takes aiohttp's own path with the same headers, because it is a web.Response.

The headers stay in the response's multidict until prepare, so the front door adds its own as for any other
response, and they are checked for control characters as aiohttp checks them (no header injection).
"""

from __future__ import annotations

import json
import re

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http import HttpVersion11

try:  # aiohttp's cached per-second Date, the one its own responses carry
    from aiohttp.helpers import rfc822_formatted_time
except ImportError:  # pragma: no cover - a future aiohttp without it
    from email.utils import formatdate

    def rfc822_formatted_time() -> str:
        return formatdate(usegmt=True)

# The same characters aiohttp refuses in a header (http_writer._FORBIDDEN_HEADER_CHARS_RE): any control
# character but tab. A value with CR or LF could otherwise smuggle a header or a second response.
_FORBIDDEN_HEADER_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# Above this many bytes waiting in the socket's buffer, wait for the client to read, as aiohttp's writer does.
_WRITE_BUFFER_LIMIT = 2**16

# Headers aiohttp's own path adds or rewrites: a response that already has one is left to it. (Server is
# not among them: the front door sets its own on every response, and aiohttp keeps a Server it finds.)
_SET_BY_AIOHTTP = ("Content-Length", "Transfer-Encoding", "Connection", "Date")

CRLF = "\r\n"
HEAD_TAIL = "Date: "  # the last header of a response, before the date itself


class EncodedResponse(web.Response):
    """web.Response(body=body, headers=headers), sent in one write where that is the same bytes."""

    def __init__(self, body: bytes, headers: dict[str, str]):
        super().__init__(body=body, headers=headers)
        self._written_whole = False

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        head = self._head() if self._writes_whole(request) else None
        if head is None:
            return await super().prepare(request)
        writer = await write_whole(self, request, head + self._body)
        self._written_whole = True
        self._body_length = len(self._body)
        return writer

    @property
    def written_whole(self) -> bool:
        """Sent in one write by prepare (False: aiohttp's own path, or not sent yet)."""
        return self._written_whole

    async def write_eof(self, data: bytes = b"") -> None:
        if self._written_whole:
            return
        await super().write_eof(data)

    def _writes_whole(self, request: web.BaseRequest) -> bool:
        if (self._payload_writer is not None or self._eof_sent
                or request.method != "GET" or request.version != HttpVersion11 or not request.keep_alive
                or self._status != 200 or self._cookies or self._compression or self._chunked):
            return False
        # Handlers of on_response_prepare may change the headers: they get aiohttp's path.
        return not any(app.on_response_prepare for app in request.match_info.apps)

    def _head(self) -> bytes | None:
        """The status line and headers, or None when aiohttp must shape them (it sets these names itself)."""
        headers = self._headers
        if "Content-Type" not in headers or any(name in headers for name in _SET_BY_AIOHTTP):
            return None
        lines = [f"{name}: {value}" for name, value in headers.items()]
        # one scan of all the lines, joined by tab (allowed), instead of one per name and value (~0.4 µs)
        if _FORBIDDEN_HEADER_CHARS.search("\t".join(lines)):
            raise ValueError("control character in a response header")
        return (f"HTTP/1.1 200 OK\r\n{CRLF.join(lines)}\r\nContent-Length: {len(self._body)}\r\n"
                f"{HEAD_TAIL}{rfc822_formatted_time()}\r\n\r\n").encode("utf-8")


async def write_whole(response: web.StreamResponse, request: web.BaseRequest, data: bytes) -> AbstractStreamWriter:
    """Send a whole response (status line, headers and body) in one transport write, as `response.prepare`."""
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("the client went away before the response")
    transport.write(data)
    # what aiohttp's write_eof leaves on a sent response (no request or writer held)
    response._keep_alive = response._eof_sent = True
    writer = request._payload_writer
    if transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
        await writer.drain()
    return writer


class WholeResponse(web.StreamResponse):
    """A 200 already complete as bytes (status line, headers, body), for answers built without aiohttp's
    header machinery (web.hot_reads); the caller vouches that the bytes are what aiohttp would send."""

    def __init__(self, data: bytes):
        super().__init__()
        self._data = data

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter:
        return await write_whole(self, request, self._data)

    async def write_eof(self, data: bytes = b"") -> None:
        return None  # already sent whole


JSON_UTF8 = "application/json; charset=utf-8"  # what web.Response(text=..., content_type="application/json") sends


def json_text(text: str) -> EncodedResponse:
    """A 200 with JSON text the appliance already has (a kept page, a cached list)."""
    return EncodedResponse(text.encode("utf-8"), {"Content-Type": JSON_UTF8})


def json_data(data) -> EncodedResponse:
    """A 200 with `data` as compact JSON."""
    return json_text(json.dumps(data, separators=(",", ":"), ensure_ascii=False))
