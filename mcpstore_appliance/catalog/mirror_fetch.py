"""HTTP to an upstream registry for the curated mirror (catalog/mirror.py): small JSON and text answers, and
bundles streamed to a private file while they are hashed.

An upstream URL comes from an administrator, and enterprise upstreams usually live on the company's own
network, so loopback and private addresses are allowed; link-local addresses (cloud metadata services such as
169.254.169.254), multicast, unspecified and reserved ones never are, neither as the URL's host nor as what a
name resolves to. Only http and https, no credentials in the URL, no redirects followed, answers size-capped.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver
from aiohttp.resolver import DefaultResolver

from ..errors import InvalidInput, TooLarge, UpstreamFailed
from ..text import parse_json

MAX_ANSWER_BYTES = 1024 * 1024  # JSON, checkpoints, keys, proofs
BLOCK = 256 * 1024
METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata", "instance-data"})
AWS_IMDS_V6 = ipaddress.ip_address("fd00:ec2::254")


def refused_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    if ip.is_loopback:
        return False  # ::1 lies in a reserved block; loopback upstreams are allowed like private ones
    return ip.is_link_local or ip.is_multicast or ip.is_unspecified or ip.is_reserved or ip == AWS_IMDS_V6


def upstream_url(raw: str) -> str:
    """The normalized base URL of an upstream, or a clear refusal."""
    if not isinstance(raw, str) or len(raw) > 2000:
        raise InvalidInput("an upstream URL is a string of at most 2000 characters", code="invalid_upstream")
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise InvalidInput("the upstream URL is malformed", code="invalid_upstream") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidInput("an upstream URL must be http:// or https://", code="invalid_upstream",
                           details={"url": raw[:200]})
    host = (parts.hostname or "").lower()
    if not host or parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise InvalidInput("an upstream URL is scheme://host[:port][/path], without credentials, query or fragment",
                           code="invalid_upstream", details={"url": raw[:200]})
    if host in METADATA_HOSTS:
        raise InvalidInput("the upstream URL names a cloud metadata service", code="upstream_address_refused")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None and refused_address(literal):
        raise InvalidInput(f"the upstream address {host} is link-local, multicast or reserved; it is never "
                           "contacted", code="upstream_address_refused", details={"host": host})
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{netloc}{f':{port}' if port else ''}{parts.path.rstrip('/')}"


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to a link-local, multicast or reserved address."""

    def __init__(self) -> None:
        self._resolver = DefaultResolver()

    async def resolve(self, host: str, port: int = 0, family: int = 0):
        answers = await self._resolver.resolve(host, port, family)
        for answer in answers:
            if refused_address(ipaddress.ip_address(answer["host"])):
                raise OSError(f"{host} resolves to a refused address ({answer['host']})")
        return answers

    async def close(self) -> None:
        await self._resolver.close()


def path_of(*segments: str) -> str:
    return "/" + "/".join(quote(segment, safe="") for segment in segments)


class UpstreamClient:
    """One conversation with one upstream (`async with`)."""

    def __init__(self, base_url: str, timeout: float, max_bundle_bytes: int):
        self.base_url = base_url
        self.timeout = timeout
        self.max_bundle_bytes = max_bundle_bytes
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "UpstreamClient":
        connector = aiohttp.TCPConnector(resolver=GuardedResolver())
        self._session = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    def _failed(self, path: str, cause: BaseException) -> UpstreamFailed:
        inner = getattr(cause, "os_error", None) or cause
        return UpstreamFailed(f"the upstream {self.base_url} did not answer {path}: {inner.__class__.__name__}: "
                              f"{str(inner)[:200]}", code="upstream_unreachable", details={"path": path})

    async def get(self, path: str, query: dict[str, Any] | None = None) -> tuple[int, bytes]:
        assert self._session is not None
        params = {k: str(v) for k, v in (query or {}).items()}
        try:
            async with self._session.get(self.base_url + path, params=params, allow_redirects=False) as response:
                body = bytearray()  # read to the end: one read() returns only what has arrived so far
                async for chunk in response.content.iter_chunked(BLOCK):
                    body += chunk
                    if len(body) > MAX_ANSWER_BYTES:
                        raise UpstreamFailed(f"the upstream's answer to {path} is larger than {MAX_ANSWER_BYTES} "
                                             "bytes", code="upstream_answer_too_large")
                return response.status, bytes(body)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._failed(path, exc) from None

    async def json(self, path: str, query: dict[str, Any] | None = None) -> Any:
        status, body = await self.get(path, query)
        if status != 200:
            raise UpstreamFailed(f"the upstream answered {status} for {path}", code="upstream_refused",
                                 details={"status": status, "path": path,
                                          "answer": body[:300].decode("utf-8", "replace")})
        try:
            return parse_json(body, what="the upstream's answer")
        except InvalidInput:
            raise UpstreamFailed(f"the upstream sent malformed JSON for {path}", code="upstream_malformed") from None

    async def download(self, path: str, dest: Path) -> tuple[str, int]:
        """Stream a bundle into `dest` (created 0600), hashing it; (sha256, size)."""
        assert self._session is not None
        digest, size = hashlib.sha256(), 0
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                async with self._session.get(self.base_url + path, allow_redirects=False) as response:
                    if response.status != 200:
                        raise UpstreamFailed(f"the upstream answered {response.status} for {path}",
                                             code="upstream_refused", details={"status": response.status})
                    async for chunk in response.content.iter_chunked(BLOCK):
                        size += len(chunk)
                        if size > self.max_bundle_bytes:
                            raise TooLarge(f"the upstream's bundle is larger than this registry's limit of "
                                           f"{self.max_bundle_bytes} bytes", code="bundle_too_large")
                        digest.update(chunk)
                        out.write(chunk)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise self._failed(path, exc) from None
        return digest.hexdigest(), size

    def blocking_fetch(self, loop: asyncio.AbstractEventLoop) -> Callable[[str, dict | None], tuple[int, bytes]]:
        """`fetch(path, query)` for the ledger's client check (ledger/client_check.py), which is synchronous: run
        in a worker thread, it asks this client on the event loop and waits."""
        def fetch(path: str, query: dict | None) -> tuple[int, bytes]:
            return asyncio.run_coroutine_threadsafe(self.get(path, query), loop).result(self.timeout + 5)

        return fetch
