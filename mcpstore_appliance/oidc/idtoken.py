"""Checking an OpenID Connect ID token: the signature against the provider's JWKS, with an allowlist of
asymmetric algorithms (never `none`, never HS*: an HMAC "signed" with the public key would otherwise pass), the
exact issuer, the audience (and `azp` when there are several), `exp`/`iat`/`nbf` with a small leeway, and the
nonce of the sign-in that asked for it. No HTTP here: the JWKS is fetched through a callable."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable
from typing import Any

import jwt

from ..errors import InvalidInput

# Asymmetric algorithms only; a configuration may narrow them (the default below), never widen them.
SUPPORTED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
DEFAULT_ALGORITHMS = ("RS256", "ES256", "EdDSA")
LEEWAY_SECONDS = 60
MAX_TOKEN_BYTES = 16 * 1024


class IdTokenError(Exception):
    """An ID token (or the provider's answer around it) that must not sign anyone in; `reason` is a short code
    for the audit log, the message is for the person signing in."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_algorithms(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A configured allowlist: known asymmetric algorithms only (InvalidInput names the offending one)."""
    chosen = tuple(dict.fromkeys(names))
    if not chosen:
        raise InvalidInput("at least one signing algorithm is required", details={"field": "algorithms"})
    for name in chosen:
        if name not in SUPPORTED_ALGORITHMS:
            raise InvalidInput(f"algorithm {name!r} is not allowed; choose from {list(SUPPORTED_ALGORITHMS)}",
                               code="algorithm_not_allowed", details={"field": "algorithms"})
    return chosen


class Jwks:
    """A provider's signing keys by `kid`, fetched when first needed and fetched again (at most once per
    `refetch_seconds`) when a token names a `kid` we do not know: the provider may have rotated its keys, but a
    stream of made-up `kid`s must not turn into a stream of requests to it."""

    def __init__(self, fetch: Callable[[], Awaitable[dict]], refetch_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_age_seconds: float = 3600.0):
        self.fetch = fetch
        self.refetch_seconds = refetch_seconds
        self.max_age_seconds = max_age_seconds  # a key the provider withdrew stops working within this time
        self.clock = clock
        self.keys: list[dict] | None = None
        self.fetched_at = float("-inf")
        self.fetches = 0

    async def _refresh(self) -> None:
        self.fetched_at = self.clock()
        self.fetches += 1
        document = await self.fetch()
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise IdTokenError("bad_jwks", "the identity provider's key set is malformed")
        self.keys = [k for k in keys if isinstance(k, dict) and k.get("use", "sig") == "sig"]

    def _find(self, kid: str | None, alg: str) -> jwt.PyJWK | None:
        candidates = [k for k in self.keys or [] if kid is None or k.get("kid") == kid]
        if kid is None and len(candidates) != 1:
            return None  # without a kid, only an unambiguous single key will do
        for key in candidates:
            if key.get("alg") not in (None, alg):
                continue
            try:
                return jwt.PyJWK(key, algorithm=alg)  # refuses a key whose type does not fit the algorithm
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
                continue
        return None

    async def key(self, kid: str | None, alg: str) -> jwt.PyJWK:
        if self.keys is None or self.clock() - self.fetched_at >= self.max_age_seconds:
            await self._refresh()
        found = self._find(kid, alg)
        if found is None and self.clock() - self.fetched_at >= self.refetch_seconds:
            await self._refresh()
            found = self._find(kid, alg)
        if found is None:
            raise IdTokenError("unknown_key", "the ID token is signed with a key the identity provider does not list")
        return found


async def verify_id_token(raw: str, *, jwks: Jwks, issuer: str, client_id: str, algorithms: tuple[str, ...],
                          nonce: str, now: float | None = None) -> dict[str, Any]:
    """The claims of a valid ID token, or IdTokenError."""
    if not isinstance(raw, str) or not raw or len(raw) > MAX_TOKEN_BYTES:
        raise IdTokenError("malformed", "the identity provider sent no usable ID token")
    try:
        header = jwt.get_unverified_header(raw)
    except jwt.PyJWTError:
        raise IdTokenError("malformed", "the ID token is malformed") from None
    alg, kid = header.get("alg"), header.get("kid")
    allowed = [a for a in algorithms if a in SUPPORTED_ALGORITHMS]
    if alg not in allowed:
        raise IdTokenError("algorithm_not_allowed", f"the ID token's algorithm {str(alg)[:20]!r} is not allowed")
    if kid is not None and not isinstance(kid, str):
        raise IdTokenError("malformed", "the ID token's key id is malformed")
    key = await jwks.key(kid, alg)
    try:
        claims = jwt.decode(raw, key, algorithms=[alg], audience=client_id, issuer=issuer, leeway=LEEWAY_SECONDS,
                            options={"require": ["iss", "sub", "aud", "exp", "iat"]})
    except jwt.ExpiredSignatureError:
        raise IdTokenError("expired", "the ID token has expired; sign in again") from None
    except jwt.InvalidAudienceError:
        raise IdTokenError("wrong_audience", "the ID token was issued to another application") from None
    except jwt.InvalidIssuerError:
        raise IdTokenError("wrong_issuer", "the ID token comes from another issuer") from None
    except jwt.ImmatureSignatureError:
        raise IdTokenError("not_yet_valid", "the ID token is not valid yet (check the clocks)") from None
    except jwt.PyJWTError as exc:
        raise IdTokenError("invalid", f"the ID token is not valid: {str(exc)[:120]}") from None
    _check_rest(claims, client_id, nonce, time.time() if now is None else now)
    return claims


def _check_rest(claims: dict[str, Any], client_id: str, nonce: str, now: float) -> None:
    """What PyJWT leaves to us: `azp` with several audiences, `iat` in the future, the nonce."""
    audience = claims["aud"]
    if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != client_id:
        raise IdTokenError("wrong_audience", "the ID token names several audiences but not us as its party")
    if "azp" in claims and claims["azp"] != client_id:
        raise IdTokenError("wrong_audience", "the ID token was issued to another application")
    if not isinstance(claims["iat"], (int, float)) or claims["iat"] > now + LEEWAY_SECONDS:
        raise IdTokenError("not_yet_valid", "the ID token was issued in the future (check the clocks)")
    got = claims.get("nonce")
    if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
        raise IdTokenError("bad_nonce", "the ID token does not belong to this sign-in (nonce)")
    if not isinstance(claims["sub"], str) or not 0 < len(claims["sub"]) <= 255:
        raise IdTokenError("malformed", "the ID token's subject is malformed")
