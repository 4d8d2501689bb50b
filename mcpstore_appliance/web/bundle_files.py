"""Sending a bundle's bytes: whole, by range, as 304, or as a redirect to the blob store.

Small bundles (the usual .mcpb is a few KB) are answered from memory with a plain web.Response: content-addressed
bytes never change, so a bounded cache of them is always exact. Larger ones are sent with sendfile from a local
file where the connection allows it (web/sendfile.py), else streamed through the event loop.
"""

from __future__ import annotations

import base64
import os
import re

from aiohttp import web

from ..blobs import BlobStore
from ..catalog.package_view import DownloadTarget
from ..lru import LRU
from . import sendfile
from .api_audit import audit_download
from .caching import cache_headers
from .keys import PRINCIPAL, SERVICES
from .util import etag_matches

BUNDLE_TYPE = "application/zip"  # a .mcpb is a ZIP archive; no media type is registered for it
SMALL_BUNDLE_BYTES = 64 << 10  # at most this size: answered from memory
_small_bundles = LRU(1024, 32 << 20, len)  # by sha256; shared by the apps of a process (the bytes are the same)
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single byte range as (start, end exclusive); "unsatisfiable"; or None to send the whole file
    (no header, a malformed one, another unit or several ranges: RFC 9110 lets a server ignore those)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if not match:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size
    start = int(first)
    if last != "" and int(last) < start:
        return None
    if start >= size:
        return "unsatisfiable"
    end = size if last == "" else min(int(last) + 1, size)
    return start, end


async def _send_bundle(request: web.Request, response: web.StreamResponse, blobs: BlobStore, sha256: str,
                       start: int, end: int) -> None:
    """The headers, then bytes [start, end) of the blob: with sendfile from a local file where the connection
    allows it (web/sendfile.py), else streamed through the event loop."""
    local = blobs.local_file(sha256)
    if local is not None and not os.path.isfile(local):
        local = None  # the streaming path reports the missing blob, before any header is sent
    chunks = None if local is not None else blobs.open_range(sha256, start, end)
    first = b""
    if chunks is not None and request.method != "HEAD":
        first = await anext(chunks, b"")  # a missing blob fails here, before any header is sent
    try:
        await response.prepare(request)
        if request.method != "HEAD":
            if local is not None and not await sendfile.send_range(request, local, start, end):
                chunks = blobs.open_range(sha256, start, end)  # no sendfile right now: stream it
            if chunks is not None:
                await _stream(response, first, chunks)
        await response.write_eof()
    except BaseException:
        # The headers are out, so no error answer can follow them: drop the connection (the client sees a
        # short body) rather than let a second response be written after part of this one.
        if request.transport is not None:
            request.transport.close()
        raise
    finally:
        if chunks is not None:
            await chunks.aclose()


async def _stream(response: web.StreamResponse, first: bytes, chunks) -> None:
    await response.write(first)
    async for chunk in chunks:
        await response.write(chunk)


def bundle_headers(request: web.Request, target: DownloadTarget) -> dict[str, str]:
    etag = f'"{target.sha256}"'
    digest = base64.b64encode(bytes.fromhex(target.sha256)).decode()
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", target.filename)
    headers = {
        # The bytes behind these URLs never change (content-addressed; versions are immutable).
        **cache_headers(request, etag, public=target.public, mutable=False),
        "Content-Disposition": f'attachment; filename="{ascii_name}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "Accept-Ranges": "bytes",
    }
    if target.yanked:
        headers["X-Mcpstore-Yanked"] = "true"
    return headers


async def serve_bundle(request: web.Request, target: DownloadTarget) -> web.StreamResponse:
    services = request.app[SERVICES]
    headers = bundle_headers(request, target)
    counter = services.discovery.downloads
    if etag_matches(request.headers.get("If-None-Match"), headers["ETag"]):
        return web.Response(status=304, headers=headers)
    size = target.size
    wanted = parse_range(request.headers.get("Range"), size)
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != headers["ETag"]:
        wanted = None  # the client's partial copy is of other bytes: send everything
    if wanted == "unsatisfiable":
        return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"},
                            content_type="application/json",
                            text='{"error":{"code":"range_not_satisfiable","message":"the requested range is '
                                 f'outside the {size}-byte bundle","details":{{"size":{size}}}}}}}')
    start, end = wanted if isinstance(wanted, tuple) else (0, size)
    counts = request.method == "GET" and start == 0  # resumed downloads are not new downloads
    if counts and request.get(PRINCIPAL) is not None:  # org members' downloads are audited (web/api_audit.py)
        await audit_download(request, target)
    redirect = await services.blobs.presigned_url(target.sha256, target.filename)
    if redirect:
        if counts:
            counter.record(target.package_id, target.version_id)
        raise web.HTTPFound(redirect, headers={"Cache-Control": "private, max-age=60", "ETag": headers["ETag"]})
    if wanted is None and size <= SMALL_BUNDLE_BYTES:
        response = web.Response(body=await _small_bundle(services.blobs, target.sha256, size), headers=headers,
                                content_type=BUNDLE_TYPE)
        if counts:
            counter.record(target.package_id, target.version_id)
        return response
    status = 206 if isinstance(wanted, tuple) else 200
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = BUNDLE_TYPE
    response.content_length = end - start
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    await _send_bundle(request, response, services.blobs, target.sha256, start, end)
    if counts:
        counter.record(target.package_id, target.version_id)
    return response



async def _small_bundle(blobs: BlobStore, sha256: str, size: int) -> bytes:
    data = _small_bundles.get(sha256)
    if data is None:
        data = b"".join([chunk async for chunk in blobs.open_range(sha256, 0, size)])
        _small_bundles.put(sha256, data)
    return data
