"""Validate mcpstore usage tokens offline, on a self-hosted (pro tier) MCP server. One file; needs only pyjwt
with its crypto extra (`pip install 'pyjwt[crypto]'`), none of the appliance.

    from mcpstore_usage import UsageValidator, InvalidUsageToken

    validator = UsageValidator("https://registry.example.com", "alice/weather")
    try:
        claims = validator.validate(bearer_token)   # {"sub", "mcp", "tier", "jti", "calls"?, ...}
    except InvalidUsageToken as refused:
        return 401, refused.code                     # e.g. "expired", "revoked", "wrong_package"

What it checks: the signature is EdDSA (Ed25519) by a key of the appliance's JWKS (fetched and cached; fetched
again when a token names an unknown `kid`, at most once per `kid_refresh_seconds`), the issuer, the audience
(`<appliance>/mcp/<package>`), the package (`mcp`), expiry (with `leeway` seconds of clock skew), and the
appliance's revocation list (fetched at most every `revocations_seconds`, 30 by default, so a refunded buyer is
refused within a minute). `alg: none`, HMAC algorithms and any other algorithm are refused before any key is used.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable

import jwt

__all__ = ["InvalidUsageToken", "UsageValidator"]
REQUIRED = ["iss", "sub", "mcp", "tier", "aud", "iat", "exp", "jti"]


class InvalidUsageToken(Exception):
    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _fetch_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (the appliance's https URL)
        return json.loads(response.read())


class UsageValidator:
    def __init__(self, appliance_url: str, package: str, *, audience: str | None = None, leeway: int = 60,
                 jwks_seconds: float = 3600, kid_refresh_seconds: float = 10, revocations_seconds: float = 30,
                 fetch: Callable[[str], dict] = _fetch_json):
        self.issuer = appliance_url.rstrip("/")
        self.package = package
        self.audience = audience or f"{self.issuer}/mcp/{package}"
        self.leeway = leeway
        self.jwks_seconds, self.kid_refresh_seconds = jwks_seconds, kid_refresh_seconds
        self.revocations_seconds = revocations_seconds
        self.fetch = fetch
        self._lock = threading.Lock()
        self._keys: dict[str, object] = {}
        self._keys_at = float("-inf")
        self._revoked_jtis: frozenset[str] = frozenset()
        self._revoked_subjects: dict[tuple[str, str], float] = {}
        self._revocations_at = float("-inf")

    def validate(self, token: str) -> dict:
        """The token's claims; InvalidUsageToken with a `code` when it must be refused."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidUsageToken("malformed", "not a JWT") from None
        if header.get("alg") != "EdDSA":
            raise InvalidUsageToken("bad_algorithm", f"only EdDSA is accepted, not {header.get('alg')!r}")
        key = self._key(str(header.get("kid", "")))
        try:
            claims = jwt.decode(token, key, algorithms=["EdDSA"], audience=self.audience, issuer=self.issuer,
                                leeway=self.leeway, options={"require": REQUIRED})
        except jwt.ExpiredSignatureError:
            raise InvalidUsageToken("expired", "the token has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidUsageToken("wrong_audience", f"the token is not for {self.audience}") from None
        except jwt.PyJWTError as exc:
            raise InvalidUsageToken("invalid", str(exc)) from None
        if claims["mcp"] != self.package:
            raise InvalidUsageToken("wrong_package", f"the token is for {claims['mcp']!r}, not {self.package!r}")
        self._check_revocations(claims)
        return claims

    def _key(self, kid: str):
        now = time.monotonic()
        with self._lock:
            stale = now - self._keys_at > self.jwks_seconds
            unknown = kid not in self._keys and now - self._keys_at > self.kid_refresh_seconds
            if stale or unknown:
                document = self.fetch(f"{self.issuer}/.well-known/jwks.json")
                self._keys = {jwk["kid"]: jwt.PyJWK(jwk).key for jwk in document.get("keys", [])
                              if jwk.get("kty") == "OKP" and jwk.get("crv") == "Ed25519" and "kid" in jwk}
                self._keys_at = now
            key = self._keys.get(kid)
        if key is None:
            raise InvalidUsageToken("unknown_key", f"no key {kid!r} in the appliance's JWKS")
        return key

    def _check_revocations(self, claims: dict) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._revocations_at >= self.revocations_seconds:
                document = self.fetch(f"{self.issuer}/.well-known/mcpstore-revocations.json")
                self._revoked_jtis = frozenset(document.get("jti", []))
                self._revoked_subjects = {(s["sub"], s["mcp"]): s["revoked_at"] for s in document.get("subjects", [])}
                self._revocations_at = now
            revoked_at = self._revoked_subjects.get((claims["sub"], claims["mcp"]))
            if claims["jti"] in self._revoked_jtis or (revoked_at is not None and claims["iat"] <= revoked_at):
                raise InvalidUsageToken("revoked", "the token was revoked (refund, dispute, ended access)")
