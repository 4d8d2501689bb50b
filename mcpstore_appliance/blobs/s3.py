"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, R2, …), keyed `<prefix><sha256>`.

Why not boto3: the product also ships as a PyInstaller single binary, and boto3 brings botocore,
s3transfer, jmespath and dateutil: 80-100 MB in older botocore releases, still about 25 MB with
botocore 1.44, which gzips its service models (measured by benchmarks/blobs_bench.py); aiobotocore
pulls in the same botocore and pins aiohttp versions. The handful of S3 calls a content-addressed
store needs (PUT, GET with Range, HEAD, DELETE, ListObjectsV2, multipart upload, presigned GET) are a
small SigV4 client (`sigv4.py`, this file: about 26 KB) over the aiohttp the appliance already ships.

Payload hashing: every upload is signed with the real sha256 of its body instead of UNSIGNED-PAYLOAD
or aws-chunked streaming signatures. We know it anyway: a single PUT's body hash *is* the content
address, and a multipart part is read into a bounded buffer (`part_size_bytes`) and hashed before it
is sent. S3 then rejects a body that does not match what we hashed, so a corrupted upload can never
land under a content address. Bodies without payload (GET, HEAD, DELETE) sign the empty hash;
presigned URLs use UNSIGNED-PAYLOAD as query-string auth requires.

Dedup: the digest is only known after the whole stream was read, so `put_stream` spools to a local
temp file while hashing, asks HEAD whether the object exists (then the put is a no-op) and only then
uploads. That is one extra local write of the bundle, and it keeps the bucket free of temp objects
and copy requests (which some S3-compatible servers implement poorly).

Errors: a missing object is `errors.NotFound`; every other failure is `S3Error` carrying the S3 error
code (SignatureDoesNotMatch, NoSuchBucket, AccessDenied, …). Messages never contain the secret key.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import os
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit
from xml.sax.saxutils import escape

import aiohttp
from yarl import URL

from mcpstore_appliance.config import ConfigError, S3Settings
from mcpstore_appliance.errors import InvalidInput, NotFound
from mcpstore_appliance.private_files import private_dir

from ._util import CHUNK_SIZE, check_bounds, check_digest, check_expected, check_range, hash_file, is_digest, spool
from .base import StorageError, StoredBlob
from .s3_upkeep import SPOOL_PREFIX, S3Upkeep
from .sigv4 import EMPTY_SHA256, SigV4Signer, canonical_query, uri_encode

log = logging.getLogger(__name__)

MAX_PARTS = 10_000  # an S3 limit: larger objects get larger parts
MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # an S3 limit for SigV4 presigned URLs
RETRY_STATUSES = {500, 502, 503, 504}

Body = bytes | Callable[[], AsyncIterable[bytes]] | None


class S3Error(StorageError):
    """An S3 request failed. `code` is the S3 error code (or the HTTP reason when there was no body)."""

    def __init__(self, operation: str, status: int, code: str, message: str = "", request_id: str = ""):
        self.operation = operation
        self.status = status
        self.code = code
        self.request_id = request_id
        text = f"S3 {operation} failed: HTTP {status} {code}"
        if message:
            text += f": {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)


class S3BlobStore(S3Upkeep):
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
        if not settings.bucket:
            raise ConfigError("config: 'storage.s3.bucket' is required when storage.backend is \"s3\"")
        if not settings.access_key_id or not settings.secret_access_key.get_secret_value():
            raise ConfigError("config: 'storage.s3.access_key_id' and 'storage.s3.secret_access_key' are required")
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.scheme, self.host, self._bucket_path = _address(settings)
        self._signer = SigV4Signer(settings.access_key_id, settings.secret_access_key.get_secret_value(), settings.region)
        self.spool_dir = Path(spool_dir)
        private_dir(self.spool_dir)
        self._session = session
        self._owns_session = session is None
        self.list_page_size = list_page_size
        self.chunk_size = chunk_size
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"S3BlobStore({self.scheme}://{self.host}{self._bucket_path}, prefix={self.prefix!r})"

    # -- addressing ------------------------------------------------------------------------------

    def key_for(self, sha256: str) -> str:
        return self.prefix + check_digest(sha256)

    def _object_path(self, key: str) -> str:
        return f"{self._bucket_path}/{key}"

    def _url(self, path: str, query: str) -> URL:
        encoded = f"{self.scheme}://{self.host}{uri_encode(path, keep_slash=True)}"
        return URL(f"{encoded}?{query}" if query else encoded, encoded=True)

    # -- the one request path --------------------------------------------------------------------

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
            # auto_decompress off: bytes come back exactly as stored, whatever headers a server adds.
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
            self._owns_session = True
        return self._session

    async def _request(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        headers: dict[str, str] | None = None,
        body: Body = None,
        payload_hash: str = EMPTY_SHA256,
        ok: tuple[int, ...] = (200,),
    ) -> aiohttp.ClientResponse:
        """Sign and send; return the response (the caller releases it) or raise S3Error.

        Bodies are bytes or a factory of chunk streams, so a request can be re-sent: 5xx answers and
        broken connections are retried a few times with a short backoff.
        """
        query = list(query)
        query_string = canonical_query(query)
        session = await self._http()
        for attempt in range(1, self.attempts + 1):
            signed = self._signer.sign_headers(method, self.host, path, query, headers or {}, payload_hash)
            data = body() if callable(body) else body
            try:
                response = await session.request(
                    method, self._url(path, query_string), headers=signed, data=data, allow_redirects=False
                )
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt < self.attempts:
                    await asyncio.sleep(0.2 * 2**attempt)
                    continue
                raise S3Error(operation, 0, "ConnectionError", f"{type(exc).__name__}: {exc}") from None
            if response.status in ok:
                return response
            error = await _error_from(operation, response)
            if response.status in RETRY_STATUSES and attempt < self.attempts:
                log.warning("%s; retrying (attempt %d of %d)", error, attempt, self.attempts)
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            raise error
        raise AssertionError("unreachable")

    async def _simple(self, operation: str, method: str, path: str, **kwargs: Any) -> bytes:
        response = await self._request(operation, method, path, **kwargs)
        try:
            return await response.read()
        finally:
            response.release()

    # -- reading ---------------------------------------------------------------------------------

    async def size(self, sha256: str) -> int | None:
        return await self._head(self.key_for(sha256))

    async def _head(self, key: str) -> int | None:
        try:
            response = await self._request("HeadObject", "HEAD", self._object_path(key))
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        response.release()
        return int(response.headers.get("Content-Length", "0"))

    async def exists(self, sha256: str) -> bool:
        return await self.size(sha256) is not None

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
            response = await self._request("GetObject", "GET", self._object_path(key), headers=headers, ok=(200, 206))
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
        size = await self._head(key)
        if size is None:
            raise NotFound(f"blob {key[len(self.prefix):]} not found")
        check_range(start, end, size)

    async def list_digests(self) -> AsyncIterator[str]:
        token = None
        while True:
            query = [("list-type", "2"), ("prefix", self.prefix), ("max-keys", str(self.list_page_size))]
            if token:
                query.append(("continuation-token", token))
            root = ET.fromstring(await self._simple("ListObjectsV2", "GET", self._bucket_path or "/", query=query))
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
        path = self._object_path(self.key_for(sha256))
        query = []
        if filename:
            query.append(("response-content-disposition", content_disposition(filename)))
        signed_query = self._signer.presign("GET", self.host, path, query, expires, now=now)
        return str(self._url(path, signed_query))

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
        if await self._head(key) == size:
            return StoredBlob(sha256, size)  # already stored: a no-op
        if size > self.settings.multipart_threshold_bytes:
            await self._put_multipart(key, path, size, sha256)
        else:
            await self._put_single(key, path, size, sha256)
        return StoredBlob(sha256, size)

    async def _put_single(self, key: str, path: Path, size: int, sha256: str) -> None:
        digests: list[Any] = []

        def body() -> AsyncIterator[bytes]:
            digests.append(hashlib.sha256())
            return _file_chunks(path, size, self.chunk_size, digests[-1])

        headers = {"content-length": str(size), "content-type": "application/octet-stream"}
        try:
            await self._simple("PutObject", "PUT", self._object_path(key), headers=headers, body=body,
                               payload_hash=sha256)
        except S3Error as exc:
            if exc.code == "XAmzContentSHA256Mismatch":  # S3 verified our signed hash and refused
                raise InvalidInput("content does not match the given sha256", code="digest_mismatch") from None
            raise
        sent = digests[-1].hexdigest()
        if sent != sha256:
            # The server did not verify the payload hash (some S3-compatible servers do not):
            # take the wrong bytes away from the content address again.
            await self._simple("DeleteObject", "DELETE", self._object_path(key), ok=(200, 204))
            check_expected(sha256, sent)

    async def _put_multipart(self, key: str, path: Path, size: int, sha256: str) -> None:
        part_size = max(self.settings.part_size_bytes, math.ceil(size / MAX_PARTS))
        object_path = self._object_path(key)
        created = ET.fromstring(await self._simple("CreateMultipartUpload", "POST", object_path,
                                                   query=[("uploads", "")]))
        upload_id = created.findtext("{*}UploadId") or ""
        upload = [("uploadId", upload_id)]
        try:
            with open(path, "rb") as fh:
                parts, whole = await self._upload_parts(object_path, upload, fh, size, part_size)
            check_expected(sha256, whole)
            xml = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>" for n, etag in parts)
            payload = f"<CompleteMultipartUpload>{xml}</CompleteMultipartUpload>".encode()
            done = ET.fromstring(await self._simple(
                "CompleteMultipartUpload", "POST", object_path, query=upload, body=payload,
                payload_hash=hashlib.sha256(payload).hexdigest()))
            if done.tag.rsplit("}", 1)[-1] == "Error":  # S3 may report a failed completion inside a 200
                raise S3Error("CompleteMultipartUpload", 200, done.findtext("{*}Code") or "Error",
                              done.findtext("{*}Message") or "")
        except BaseException:
            await self._abort(object_path, upload)
            raise

    async def _upload_parts(self, object_path: str, upload: list[tuple[str, str]], fh, size: int,
                            part_size: int) -> tuple[list[tuple[int, str]], str]:
        """Upload the parts, `upload_concurrency` at a time; returns [(part number, ETag)] in order and the
        sha256 of the whole file. Parts are read one after another (the whole-file digest needs the bytes in
        order), so memory holds at most `upload_concurrency` parts. The first failure cancels the others."""
        digest = hashlib.sha256()
        pending = iter(enumerate(range(0, size, part_size), start=1))
        read_in_order = asyncio.Lock()
        etags: dict[int, str] = {}

        async def upload_parts_in_turn() -> None:
            while True:
                async with read_in_order:
                    number, offset = next(pending, (None, 0))
                    if number is None:
                        return
                    data, part_hash = await asyncio.to_thread(
                        _read_part, fh, offset, min(part_size, size - offset), digest)
                response = await self._request(
                    "UploadPart", "PUT", object_path, query=[("partNumber", str(number)), *upload],
                    headers={"content-length": str(len(data))}, body=data, payload_hash=part_hash)
                response.release()
                etags[number] = response.headers.get("ETag", "")

        workers = [asyncio.ensure_future(upload_parts_in_turn())
                   for _ in range(min(self.settings.upload_concurrency, math.ceil(size / part_size)))]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        return sorted(etags.items()), digest.hexdigest()

    async def _abort(self, object_path: str, upload: list[tuple[str, str]]) -> None:
        try:
            await self._simple("AbortMultipartUpload", "DELETE", object_path, query=upload, ok=(200, 204))
        except Exception as exc:  # the original failure matters more; a lifecycle rule reaps leftovers
            log.warning("could not abort a multipart upload: %s", exc)

    async def delete(self, sha256: str) -> bool:
        key = self.key_for(sha256)
        if await self._head(key) is None:
            return False
        await self._simple("DeleteObject", "DELETE", self._object_path(key), ok=(200, 204))
        return True

    # -- health and lifecycle --------------------------------------------------------------------

    async def ping(self) -> bool:
        """Reachable and writable: a tiny PUT under the prefix (ignored by list_digests)."""
        try:
            await self._simple("PutObject", "PUT", self._object_path(self.prefix + ".ping"), body=b"ok",
                               headers={"content-length": "2"}, payload_hash=hashlib.sha256(b"ok").hexdigest())
        except (S3Error, aiohttp.ClientError, asyncio.TimeoutError) as exc:
            log.warning("blob store ping failed: %s", exc)
            return False
        return True

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


def _address(settings: S3Settings) -> tuple[str, str, str]:
    """(scheme, host[:port], path of the bucket) for path-style or virtual-host-style requests."""
    endpoint = settings.endpoint or f"https://s3.{settings.region}.amazonaws.com"
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"config: invalid value for 'storage.s3.endpoint': {endpoint!r} is not an http(s) URL")
    host = parts.netloc.lower()
    base_path = parts.path.rstrip("/")
    style = settings.addressing_style
    if style == "auto":
        # AWS itself prefers virtual hosts; other servers (MinIO, Ceph, moto) are usually path-style.
        style = "virtual" if not settings.endpoint and _dns_safe(settings.bucket) else "path"
    if style == "virtual":
        return parts.scheme, f"{settings.bucket}.{host}", base_path
    return parts.scheme, host, f"{base_path}/{settings.bucket}"


def _dns_safe(bucket: str) -> bool:
    # Dots would break the TLS wildcard certificate of the virtual host.
    return bucket == bucket.lower() and "." not in bucket and "_" not in bucket


def content_disposition(filename: str) -> str:
    """`attachment; filename="…"`, plus the exact UTF-8 name (RFC 6266 `filename*`) when it is not ASCII."""
    cleaned = "".join(c for c in filename if c.isprintable() and c not in '/\\"') or "download"
    fallback = "".join(c if c.isascii() else "_" for c in cleaned)
    value = f'attachment; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


async def _error_from(operation: str, response: aiohttp.ClientResponse) -> S3Error:
    try:
        body = await response.read()
    finally:
        response.release()
    code, message, request_id = response.reason or "Error", "", response.headers.get("x-amz-request-id", "")
    if body:
        try:
            root = ET.fromstring(body)
            code = root.findtext("{*}Code") or code
            # Only Code and Message: signature errors also echo the string-to-sign, which is noise.
            message = root.findtext("{*}Message") or ""
            request_id = root.findtext("{*}RequestId") or request_id
        except ET.ParseError:
            message = body[:200].decode("utf-8", "replace")
    if not body:
        # HEAD answers carry no error document, so the code is only the HTTP reason.
        message = "no error details in the response; check the credentials, region, bucket and its policy"
        if response.status == 404 and operation == "GetObject":
            code = "NoSuchKey"
    return S3Error(operation, response.status, code, message, request_id)


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


async def _file_chunks(path: Path, size: int, chunk_size: int, digest: Any) -> AsyncIterator[bytes]:
    """Stream the first `size` bytes of a file, hashing what is actually sent."""
    with open(path, "rb") as fh:
        remaining = size
        while remaining:
            block = await asyncio.to_thread(fh.read, min(chunk_size, remaining))
            if not block:
                raise OSError(f"{path} shrank while it was uploaded")
            digest.update(block)
            remaining -= len(block)
            yield block


def _read_part(fh, offset: int, length: int, digest: Any) -> tuple[bytes, str]:
    data = os.pread(fh.fileno(), length, offset)
    if len(data) != length:
        raise OSError("file shrank while it was uploaded")
    digest.update(data)
    return data, hashlib.sha256(data).hexdigest()
