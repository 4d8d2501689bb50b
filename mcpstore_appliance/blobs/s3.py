"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …), keyed `<prefix><sha256>`.

Why not boto3: the product also ships as a PyInstaller single binary, and boto3 brings botocore, s3transfer,
jmespath and dateutil (tens of MB); aiobotocore pulls in the same botocore and pins aiohttp versions. The
handful of S3 calls a content-addressed store needs (PUT, GET with Range, HEAD, DELETE, ListObjectsV2,
multipart upload, presigned GET) are a small SigV4 client over the aiohttp the appliance already ships:
s3_client.py (requests, signing, errors), s3_upload.py (single and multipart uploads), this module (the
BlobStore).

Dedup: the digest is only known after the whole stream was read, so `put_stream` spools to a local temp file
while hashing, asks HEAD whether the object exists (then the put is a no-op) and only then uploads. That is
one extra local write of the bundle, and it keeps the bucket free of temp objects and copy requests (which
some S3-compatible servers implement poorly).

Errors: a missing object is `errors.NotFound`; every other failure is `S3Error` (s3_client.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

import aiohttp

from mcpstore_appliance.config import S3Settings
from mcpstore_appliance.errors import NotFound
from mcpstore_appliance.private_files import private_dir
from mcpstore_appliance.tempfiles import remove_stale

from ._util import CHUNK_SIZE, check_bounds, check_digest, check_range, hash_file, is_digest, spool
from .base import StoredBlob
from .s3_client import S3Client, S3Error
from .s3_upload import put_multipart, put_single

log = logging.getLogger(__name__)

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # an S3 limit for SigV4 presigned URLs
SPOOL_PREFIX = "s3-put-"


class S3BlobStore:
    def __init__(
        self,
        settings: S3Settings,
        *,
        spool_dir: Path,
        session: aiohttp.ClientSession | None = None,
        list_page_size: int = 1000,
        chunk_size: int = CHUNK_SIZE,
        attempts: int = 3,
    ):
        self.client = S3Client(settings, session=session, attempts=attempts)
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.spool_dir = Path(spool_dir)
        private_dir(self.spool_dir)
        self.list_page_size = list_page_size
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"S3BlobStore({self.client.scheme}://{self.client.host}{self.client.bucket_path}, prefix={self.prefix!r})"

    def key_for(self, sha256: str) -> str:
        return self.prefix + check_digest(sha256)

    def _path(self, sha256: str) -> str:
        return self.client.object_path(self.key_for(sha256))

    # -- reading ---------------------------------------------------------------------------------

    async def size(self, sha256: str) -> int | None:
        return await self._size(self.key_for(sha256))

    async def _size(self, key: str) -> int | None:
        response = await self.client.head(self.client.object_path(key))
        return None if response is None else int(response.headers.get("Content-Length", "0"))

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

    async def modified_at(self, sha256: str) -> float | None:
        """The object's Last-Modified (seconds since the epoch), or None when it is absent. A server that sends
        no date gets "now": a blob of unknown age is never old enough to sweep."""
        response = await self.client.head(self._path(sha256))
        if response is None:
            return None
        try:
            return parsedate_to_datetime(response.headers["Last-Modified"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return time.time()

    async def open_range(self, sha256: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        key = self.key_for(sha256)
        check_bounds(start, end)
        if end is not None and end == start:
            await self._require_range(key, start, end)  # empty range: only existence to check
            return
        headers = {}
        if start > 0 or end is not None:
            headers["range"] = f"bytes={start}-" + ("" if end is None else str(end - 1))
        try:
            response = await self.client.request("GetObject", "GET", self.client.object_path(key), headers=headers,
                                                 ok=(200, 206))
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                raise NotFound(f"blob {sha256} not found") from None
            if exc.status == 416:
                # Unsatisfiable: empty when start is exactly the end of the blob, else a bad range.
                await self._require_range(key, start, end)
                return
            raise
        # A server that ignores Range answers 200 with the whole object: cut the range out ourselves.
        skip = start if response.status == 200 else 0
        limit = None if end is None else end - start
        try:
            async for chunk in _limited(response.content.iter_chunked(self.chunk_size), skip, limit):
                yield chunk
        finally:
            response.release()

    async def _require_range(self, key: str, start: int, end: int | None) -> None:
        size = await self._size(key)
        if size is None:
            raise NotFound(f"blob {key[len(self.prefix):]} not found")
        check_range(start, end, size)

    async def list_digests(self) -> AsyncIterator[str]:
        token = None
        while True:
            query = [("list-type", "2"), ("prefix", self.prefix), ("max-keys", str(self.list_page_size))]
            if token:
                query.append(("continuation-token", token))
            listing = await self.client.simple("ListObjectsV2", "GET", self.client.bucket_path or "/", query=query)
            root = ET.fromstring(listing)
            for key in root.findall("{*}Contents/{*}Key"):
                name = (key.text or "")[len(self.prefix):]
                if is_digest(name):  # skip foreign objects and the ping marker
                    yield name
            token = root.findtext("{*}NextContinuationToken")
            if root.findtext("{*}IsTruncated") != "true" or not token:
                return

    def presign_get(self, sha256: str, *, filename: str | None = None, expires_seconds: int | None = None,
                    now: datetime | None = None) -> str:
        """A presigned GET URL for the blob (query-string SigV4), valid from `now` (default: the
        current time). The object's existence is not checked: that would cost a round trip."""
        expires = min(expires_seconds or self.settings.presign_ttl_seconds, MAX_PRESIGN_SECONDS)
        query = []
        if filename:
            query.append(("response-content-disposition", content_disposition(filename)))
        return self.client.presign("GET", self._path(sha256), query, expires, now=now)

    def local_file(self, sha256: str) -> Path | None:
        return None  # the bytes are in the bucket

    async def presigned_url(self, sha256: str, filename: str) -> str | None:
        check_digest(sha256)
        if not self.settings.presign_redirects:
            return None
        return self.presign_get(sha256, filename=filename)

    # -- writing ---------------------------------------------------------------------------------

    async def put_stream(self, chunks: AsyncIterable[bytes]) -> StoredBlob:
        fd, name = tempfile.mkstemp(dir=self.spool_dir, prefix=SPOOL_PREFIX)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                sha256, _ = await spool(chunks, fh, self.chunk_size)
            return await self.put_file(path, sha256)
        finally:
            path.unlink(missing_ok=True)

    async def put_file(self, path: Path, sha256: str | None = None, *, trusted: bool = False) -> StoredBlob:
        """Upload a local file. Without `sha256` it is hashed first; with it, the bytes are still
        checked while they are sent (whatever `trusted` says: the signature needs each body's hash
        anyway), and a mismatch leaves nothing at the content address."""
        path = Path(path)
        if sha256 is None:
            sha256, _ = await asyncio.to_thread(hash_file, path)
        key = self.key_for(sha256)
        size = (await asyncio.to_thread(os.stat, path)).st_size
        if await self._size(key) == size:
            return StoredBlob(sha256, size)  # already stored: a no-op
        object_path = self.client.object_path(key)
        if size > self.settings.multipart_threshold_bytes:
            await put_multipart(self.client, self.settings, object_path, path, size, sha256)
        else:
            await put_single(self.client, object_path, path, size, sha256, self.chunk_size)
        return StoredBlob(sha256, size)

    async def delete(self, sha256: str) -> bool:
        key = self.key_for(sha256)
        if await self._size(key) is None:
            return False
        await self.client.simple("DeleteObject", "DELETE", self.client.object_path(key), ok=(200, 204))
        return True

    # -- health and lifecycle --------------------------------------------------------------------

    async def ping(self) -> bool:
        """Reachable and writable: a tiny PUT under the prefix (ignored by list_digests)."""
        try:
            await self.client.simple("PutObject", "PUT", self.client.object_path(self.prefix + ".ping"), body=b"ok",
                                     headers={"content-length": "2"}, payload_hash=hashlib.sha256(b"ok").hexdigest())
        except (S3Error, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("blob store ping failed: %s", exc)
            return False
        return True

    def sweep_temp(self, max_age_seconds: float = 24 * 3600) -> int:
        """Remove spool files of puts a crash interrupted; young ones may belong to a put in flight."""
        return remove_stale(self.spool_dir, max_age_seconds, (SPOOL_PREFIX,))

    async def close(self) -> None:
        await self.client.close()


def content_disposition(filename: str) -> str:
    """`attachment; filename="…"`, plus the exact UTF-8 name (RFC 6266 `filename*`) when it is not ASCII."""
    cleaned = "".join(c for c in filename if c.isprintable() and c not in '/\\"') or "download"
    fallback = "".join(c if c.isascii() else "_" for c in cleaned)
    value = f'attachment; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


async def _limited(chunks: AsyncIterator[bytes], skip: int, limit: int | None) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip = chunk[dropped:], skip - dropped
        if limit is not None:
            chunk, limit = chunk[:limit], limit - min(limit, len(chunk))
        if chunk:
            yield chunk
        if limit == 0:
            return
