"""Client ID metadata documents (the MCP authorization spec's alternative to registration,
draft-ietf-oauth-client-id-metadata-document): a `client_id` that is an https URL names a JSON document at that
URL with the client's metadata, which this server fetches instead of asking the client to register.

The URL comes from anyone, so the fetch is guarded as the pro-tier endpoint checks are (outbound.py): public
addresses only unless `oauth.client_metadata_private_addresses`, no redirects, `oauth.client_metadata_seconds`
in all, at most MAX_DOCUMENT_BYTES. The document must name itself as `client_id` (exactly), be a public client
(`token_endpoint_auth_method` none) and pass the checks of a registration (clients.py `registration`); its
`redirect_uris` are then matched exactly as a registered client's are. A good document is kept for its
Cache-Control max-age (clamped to MIN_TTL..MAX_TTL, DEFAULT_TTL without one) and stored as an `oauth_clients`
row, so grants refer to it and the applications page names it.
"""

from __future__ import annotations

import asyncio
import json
import re
import ssl
import time
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from ..errors import InvalidInput
from ..lru import LRU
from ..outbound import failure, guarded_session, refused_address
from ..text import parse_json
from .clients import MAX_URI_CHARS, Client, registration
from .errors import ClientRefused, OAuthError

MAX_DOCUMENT_BYTES = 5 * 1024  # the draft's suggestion: a client's metadata is small
DEFAULT_TTL, MIN_TTL, MAX_TTL = 300.0, 60.0, 86400.0
MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d{1,9})\s*(?:,|$)")


def _refused(message: str) -> ClientRefused:
    return ClientRefused("invalid_client", f"the client's metadata document cannot be used: {message}")


def check_document_url(url: str) -> str:
    """An https URL with a path, and nothing that would make two spellings of one client."""
    if len(url) > MAX_URI_CHARS or any(c.isspace() or not c.isprintable() for c in url):
        raise _refused("the client_id URL is too long or has spaces or control characters")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname or "@" in parts.netloc:
        raise _refused("the client_id must be an https URL with a host and no user info")
    if parts.path in ("", "/") or parts.fragment or "#" in url:
        raise _refused("the client_id URL must have a path and no fragment")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise _refused("the client_id URL may not have . or .. path segments")
    return url


def check_document(url: str, document: Any) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise _refused("it is not a JSON object")
    if document.get("client_id") != url:
        raise _refused("its client_id is not exactly the URL it was fetched from")
    if document.get("token_endpoint_auth_method", "none") != "none":
        raise _refused("only public clients (token_endpoint_auth_method none, with PKCE) are supported here")
    try:
        return registration(document)
    except OAuthError as exc:
        raise _refused(exc.description) from None


def ttl_of(cache_control: str) -> float:
    if "no-store" in cache_control:
        return MIN_TTL  # kept briefly all the same: an authorisation and its token exchange are one flow
    found = MAX_AGE.search(cache_control)
    return min(MAX_TTL, max(MIN_TTL, float(found.group(1)))) if found else DEFAULT_TTL


class ClientDocuments:
    def __init__(self, db, settings):
        """`settings`: OAuthSettings."""
        self.db = db
        self.timeout = settings.client_metadata_seconds
        self.public_only = not settings.client_metadata_private_addresses
        self.ssl = ssl.create_default_context(cafile=settings.client_metadata_ca_file or None)
        self._kept = LRU(1000)  # url -> (Client, kept until)

    async def get(self, url: str) -> Client:
        kept = self._kept.get(url)
        if kept is not None and kept[1] > time.monotonic():
            return kept[0]
        metadata, ttl = await self._fetch(check_document_url(url))
        client = Client(url, metadata["client_name"], tuple(metadata["redirect_uris"]))
        await self._store(url, metadata)
        self._kept.put(url, (client, time.monotonic() + ttl))
        return client

    async def _fetch(self, url: str) -> tuple[dict[str, Any], float]:
        if refused_address(url, self.public_only):
            raise _refused("its URL is a non-public address")
        try:
            async with guarded_session(self.ssl, self.public_only, self.timeout) as http, http.get(
                    url, allow_redirects=False, headers={"Accept": "application/json"}) as response:
                body = await response.content.read(MAX_DOCUMENT_BYTES + 1)
                status, cache_control = response.status, response.headers.get("Cache-Control", "")
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError) as exc:
            raise _refused(f"it could not be fetched ({failure(exc)})") from None
        if status != 200:
            raise _refused(f"fetching it answered HTTP {status} (redirects are not followed)")
        if len(body) > MAX_DOCUMENT_BYTES:
            raise _refused(f"it is larger than {MAX_DOCUMENT_BYTES} bytes")
        try:
            document = parse_json(body, what="the client metadata document")
        except InvalidInput as exc:
            raise _refused(exc.message) from None
        return check_document(url, document), ttl_of(cache_control)

    async def _store(self, url: str, metadata: dict[str, Any]) -> None:
        answer = json.dumps({"client_id": url, **metadata})
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO oauth_clients (client_id, client_name, redirect_uris, metadata_json, created_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name,"
                " redirect_uris = excluded.redirect_uris, metadata_json = excluded.metadata_json",
                (url, metadata["client_name"], json.dumps(metadata["redirect_uris"]), answer, int(time.time())))
