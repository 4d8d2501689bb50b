"""The S3 request path: addressing (path-style or virtual-host), SigV4 signing (`sigv4.py`), retries, and S3's
errors turned into `S3Error`. It speaks HTTP through aiohttp's client, which the appliance already ships.

Errors: every failure is `S3Error` carrying the S3 error code (SignatureDoesNotMatch, NoSuchBucket,
AccessDenied, …). Messages never contain the secret key.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterable, Callable, Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from yarl import URL

from mcpstore_appliance.config import ConfigError, S3Settings

from .base import StorageError
from .sigv4 import EMPTY_SHA256, SigV4Signer, canonical_query, uri_encode

log = logging.getLogger("mcpstore_appliance.blobs.s3")

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


class S3Client:
    """Signed requests to one bucket. `session`: an aiohttp ClientSession to use (else one of its own)."""

    def __init__(self, settings: S3Settings, *, session: aiohttp.ClientSession | None = None, attempts: int = 3):
        if not settings.bucket:
            raise ConfigError("config: 'storage.s3.bucket' is required when storage.backend is \"s3\"")
        if not settings.access_key_id or not settings.secret_access_key.get_secret_value():
            raise ConfigError("config: 'storage.s3.access_key_id' and 'storage.s3.secret_access_key' are required")
        self.scheme, self.host, self.bucket_path = _address(settings)
        self._signer = SigV4Signer(settings.access_key_id, settings.secret_access_key.get_secret_value(), settings.region)
        self._session = session
        self._owns_session = session is None
        self.attempts = attempts

    def object_path(self, key: str) -> str:
        return f"{self.bucket_path}/{key}"

    def url(self, path: str, query: str) -> URL:
        encoded = f"{self.scheme}://{self.host}{uri_encode(path, keep_slash=True)}"
        return URL(f"{encoded}?{query}" if query else encoded, encoded=True)

    def presign(self, method: str, path: str, query: list[tuple[str, str]], expires: int,
                now: datetime | None = None) -> str:
        return str(self.url(path, self._signer.presign(method, self.host, path, query, expires, now=now)))

    async def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
            # auto_decompress off: bytes come back exactly as stored, whatever headers a server adds.
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=False)
            self._owns_session = True
        return self._session

    async def request(
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
                    method, self.url(path, query_string), headers=signed, data=data, allow_redirects=False
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

    async def simple(self, operation: str, method: str, path: str, **kwargs: Any) -> bytes:
        """`request`, read whole."""
        response = await self.request(operation, method, path, **kwargs)
        try:
            return await response.read()
        finally:
            response.release()

    async def head(self, path: str) -> aiohttp.ClientResponse | None:
        """The released HEAD response of an object (its headers), or None when it is absent."""
        try:
            response = await self.request("HeadObject", "HEAD", path)
        except S3Error as exc:
            if exc.status == 404:
                return None
            raise
        response.release()
        return response

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
