"""Talking to an OpenID provider: discovery (cached), its JWKS (oidc/idtoken.py `Jwks`, one per provider) and the
token exchange. aiohttp is used as an HTTP *client* only, as blobs/s3_client.py does. Answers are size-limited
and time-limited; only https is spoken, except to a loopback address (a provider on the same machine)."""

from __future__ import annotations

import ipaddress
import json
import ssl
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import aiohttp

from .idtoken import IdTokenError, Jwks

DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERY_SECONDS = 3600.0
MAX_ANSWER_BYTES = 256 * 1024


@dataclass(frozen=True)
class ProviderInfo:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    token_auth_methods: tuple[str, ...]
    userinfo_endpoint: str | None = None


def allowed_url(url: str) -> bool:
    """https anywhere; plain http only to a loopback host (a provider running beside the appliance)."""
    parts = urlsplit(url)
    if not parts.hostname or parts.username or parts.password:
        return False
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class ProviderClient:
    """Discovery documents and key sets by issuer, kept for an hour (key sets refresh on an unknown `kid`)."""

    def __init__(self, timeout_seconds: float = 10.0, ssl_context: ssl.SSLContext | None = None):
        self.timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self.ssl_context = ssl_context
        self.session: aiohttp.ClientSession | None = None
        self.discovered: dict[str, tuple[float, ProviderInfo]] = {}
        self.key_sets: dict[str, Jwks] = {}

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None or self.session.closed:
            self.session = aiohttp.ClientSession(timeout=self.timeout)
        return self.session

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()

    async def _json(self, method: str, url: str, **kwargs) -> tuple[int, dict]:
        if not allowed_url(url):
            raise IdTokenError("bad_provider", "the identity provider's address must be https")
        try:
            async with self._session().request(method, url, ssl=self.ssl_context, allow_redirects=False,
                                               **kwargs) as response:
                body = await response.content.read(MAX_ANSWER_BYTES + 1)
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise IdTokenError("provider_unreachable", f"the identity provider did not answer ({type(exc).__name__})")
        try:
            document = json.loads(body) if len(body) <= MAX_ANSWER_BYTES else None
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise IdTokenError("bad_provider", f"the identity provider's answer ({status}) is not a JSON object")
        return status, document

    async def discover(self, issuer: str) -> ProviderInfo:
        cached = self.discovered.get(issuer)
        if cached and time.monotonic() - cached[0] < DISCOVERY_SECONDS:
            return cached[1]
        status, doc = await self._json("GET", issuer.rstrip("/") + DISCOVERY_PATH)
        if status != 200:
            raise IdTokenError("bad_provider", f"the identity provider's discovery document answered {status}")
        if doc.get("issuer") != issuer:  # OIDC Discovery §4.3: exactly the issuer we were configured with
            raise IdTokenError("wrong_issuer", "the discovery document names another issuer")
        endpoints = [doc.get(k) for k in ("authorization_endpoint", "token_endpoint", "jwks_uri")]
        if not all(isinstance(e, str) and allowed_url(e) for e in endpoints):
            raise IdTokenError("bad_provider", "the discovery document lacks usable endpoints")
        methods = doc.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        userinfo = doc.get("userinfo_endpoint")
        info = ProviderInfo(issuer, *endpoints, tuple(m for m in methods if isinstance(m, str)),
                            userinfo if isinstance(userinfo, str) and allowed_url(userinfo) else None)
        self.discovered[issuer] = (time.monotonic(), info)
        return info

    def jwks(self, info: ProviderInfo) -> Jwks:
        if info.jwks_uri not in self.key_sets:
            async def fetch() -> dict:
                status, doc = await self._json("GET", info.jwks_uri)
                if status != 200:
                    raise IdTokenError("bad_jwks", f"the identity provider's key set answered {status}")
                return doc
            self.key_sets[info.jwks_uri] = Jwks(fetch)
        return self.key_sets[info.jwks_uri]

    async def exchange(self, info: ProviderInfo, *, code: str, redirect_uri: str, verifier: str, client_id: str,
                       client_secret: str | None) -> dict:
        """The token endpoint's answer to an authorization code (RFC 6749 §4.1.3 with PKCE)."""
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": verifier, "client_id": client_id}
        headers = {"Accept": "application/json"}
        if client_secret:
            if "client_secret_basic" in info.token_auth_methods:
                # RFC 6749 §2.3.1: both parts form-urlencoded before they are joined
                headers["Authorization"] = aiohttp.encode_basic_auth(quote(client_id, safe=""),
                                                                     quote(client_secret, safe=""))
            else:
                form["client_secret"] = client_secret
        status, doc = await self._json("POST", info.token_endpoint, data=form, headers=headers)
        if status != 200:
            error = str(doc.get("error", ""))[:60]
            raise IdTokenError("token_exchange", f"the identity provider refused the code ({status} {error})")
        return doc

    async def userinfo(self, info: ProviderInfo, access_token: str) -> dict:
        """The UserInfo answer (OIDC Core §5.3), for claims a provider leaves out of its ID tokens."""
        if info.userinfo_endpoint is None or not isinstance(access_token, str) or not access_token:
            return {}
        status, doc = await self._json("GET", info.userinfo_endpoint,
                                       headers={"Authorization": f"Bearer {access_token}"})
        if status != 200:
            raise IdTokenError("userinfo", f"the identity provider's UserInfo endpoint answered {status}")
        return doc
