"""Reading a bounded body from an aiohttp stream (a request's or an answer's `content`)."""

from __future__ import annotations

from typing import Protocol


class ByteStream(Protocol):
    async def read(self, n: int = -1) -> bytes: ...


async def read_capped(stream: ByteStream, limit: int) -> bytes:
    """The stream's bytes to its end, or its first `limit + 1` bytes when it holds more (the caller refuses
    those). One `read(n)` returns only what has arrived so far, so a body split across packets needs a loop."""
    body = bytearray()
    while len(body) <= limit:
        chunk = await stream.read(limit + 1 - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)
