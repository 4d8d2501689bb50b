"""Usage tokens: a licence key in, an EdDSA (Ed25519) JWT out that lives 15 minutes.

Claims: `iss` (this appliance), `sub` (user:<id>), `mcp` (namespace/name), `tier` (what gives access: free,
publisher, per_call, purchase, subscription, grant), `aud` (the package's endpoint on this appliance,
`<base_url>/mcp/<namespace>/<name>`, for hosted and self-hosted packages alike), `iat`, `exp`, `jti`, and for
per-call packages `calls`: the calls pre-authorised, reserved from the buyer's credits at issue (tokens/calls.py).
The header names the signing key (`kid`) of the JWKS at /.well-known/jwks.json.

`verify` is the appliance's own check (the gateway's bearer tokens): only EdDSA, a known kid, the audience that
matches the token's package, not expired, not revoked. Publishers check the same offline with validators/.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass, replace

import jwt

from ..accounts.models import Principal
from ..errors import InvalidInput, PaymentRequired, Unauthenticated
from ..lru import LRU
from .calls import Calls
from .keyring import SKEW_SECONDS, TOKEN_SECONDS, KeyRing
from .licences import PACKAGE_SQL, Licences, access_kind
from .revocations import Revocations

REQUIRED = ["iss", "sub", "mcp", "tier", "aud", "iat", "exp", "jti"]
DEFAULT_CALLS = 100
MAX_CALLS = 10_000
PRINCIPAL_SECONDS = 30.0  # a usage-token caller's memberships are read again after this long


@dataclass(frozen=True)
class UsageGrant:
    """What a usage token lets its bearer do: call one package (`mcp`) at one audience."""

    jti: str
    mcp: str
    aud: str
    tier: str
    calls: int


class UsageTokens:
    def __init__(self, db, ring: KeyRing, base_url: str, principal_for_user, market_settings=None):
        self.db = db
        self.ring = ring
        self.base_url = base_url.rstrip("/")
        self.principal_for_user = principal_for_user  # accounts' (user_id, scopes, org, via, expires) -> Principal
        self.revocations = Revocations(db)
        self.licences = Licences(db, self.revocations.invalidate)
        self.calls = Calls(db, market_settings)
        self._principals = LRU(4096)  # user id -> (their usage-token principal, when it was read)
        self._verified = LRU(4096)  # token digest -> its claims, once its signature was checked

    def audience(self, ref: str) -> str:
        return f"{self.base_url}/mcp/{ref}"

    # -- issuing --------------------------------------------------------------------------------------------

    async def exchange(self, licence_key: object, calls: object = None) -> dict:
        """A usage token for the holder of `licence_key`, with `calls` pre-authorised calls for a per-call
        package (default 100; fewer when the credits cover fewer; 402 when they cover none)."""
        if calls is not None and (type(calls) is not int or not 1 <= calls <= MAX_CALLS):
            raise InvalidInput(f"calls is a whole number from 1 to {MAX_CALLS}", code="invalid_calls")
        licence = await self.licences.holder(licence_key)
        principal = await self.principal_for_user(licence["user_id"])
        package = await self.db.fetch_one(PACKAGE_SQL + "id = ?", (licence["package_id"],))
        tier = await access_kind(self.db, principal, package)
        ref = f"{package['namespace']}/{package['name']}"
        if tier is None:
            raise PaymentRequired(f"the licence holder has no access to {ref} (any more)", code="entitlement_required")
        now = int(time.time())
        claims = {"iss": self.base_url, "sub": f"user:{principal.id}", "mcp": ref, "tier": tier,
                  "aud": self.audience(ref), "iat": now, "exp": now + TOKEN_SECONDS, "jti": secrets.token_urlsafe(16)}
        async with self.db.write() as tx:
            reservation = {}
            if tier == "per_call":
                reservation = await self.calls.reserve(tx, claims["jti"], principal.id, package,
                                                       DEFAULT_CALLS if calls is None else calls)
                claims["calls"] = reservation["calls"]
            await tx.insert("usage_tokens", {"jti": claims["jti"], "licence_id": licence["id"],
                                             "user_id": principal.id, "package_id": package["id"],
                                             "issued_at": now, "expires_at": claims["exp"], **reservation})
            if licence["last_used_at"] is None or now - licence["last_used_at"] > 60:
                await tx.execute("UPDATE licence_keys SET last_used_at = ? WHERE id = ?", (now, licence["id"]))
        kid, key = self.ring.signing_key()
        token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "JWT"})
        return {"token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS, "expires_at": claims["exp"],
                "jti": claims["jti"], "mcp": ref, "tier": tier, "aud": claims["aud"],
                **({"calls": claims["calls"]} if tier == "per_call" else {})}

    # -- checking -------------------------------------------------------------------------------------------

    async def verify(self, token: str) -> dict:
        """The claims of a valid usage token issued here; Unauthenticated (401) with a reason otherwise. A token
        seen before skips the signature check (its claims are kept by the token's hash), not the others."""
        digest = hashlib.sha256(token.encode()).digest()
        claims = self._verified.get(digest)
        if claims is None:
            claims = self._decode(token)
            self._verified.put(digest, claims)
        if claims["exp"] + SKEW_SECONDS < time.time():
            raise Unauthenticated("this usage token has expired; exchange the licence key again", code="token_expired")
        if (await self.revocations.current()).is_revoked(claims):
            raise Unauthenticated("this usage token was revoked", code="token_revoked")
        return claims

    def _decode(self, token: str) -> dict:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token", code="invalid_token") from None
        if header.get("alg") != "EdDSA":
            raise Unauthenticated("usage tokens are signed with EdDSA only", code="invalid_token")
        key = self.ring.public_key(str(header.get("kid", "")))
        if key is None:
            raise Unauthenticated("this token's signing key (kid) is unknown here", code="invalid_token")
        try:
            claims = jwt.decode(token, key, algorithms=["EdDSA"], issuer=self.base_url, leeway=SKEW_SECONDS,
                                options={"require": REQUIRED, "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("this usage token has expired; exchange the licence key again",
                                  code="token_expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid usage token: {str(exc)[:100]}", code="invalid_token") from None
        if not isinstance(claims["mcp"], str) or claims["aud"] != self.audience(claims["mcp"]):
            raise Unauthenticated("this token is for another audience", code="invalid_token")
        if not isinstance(claims["sub"], str) or not claims["sub"].startswith("user:"):
            raise Unauthenticated("invalid usage token subject", code="invalid_token")
        return claims

    async def principal_for(self, token: str) -> Principal:
        """The caller behind a usage token: its user with the invoke scope only, limited to the token's package."""
        claims = await self.verify(token)
        try:
            user_id = int(claims["sub"][5:])
        except ValueError:
            raise Unauthenticated("invalid usage token subject", code="invalid_token") from None
        kept = self._principals.get(user_id)
        if kept is None or time.monotonic() - kept[1] > PRINCIPAL_SECONDS:
            kept = (await self.principal_for_user(user_id, frozenset({"invoke"}), None, "usage"), time.monotonic())
            self._principals.put(user_id, kept)
        principal = replace(kept[0], expires_at=claims["exp"])
        return principal.with_usage(UsageGrant(claims["jti"], claims["mcp"], claims["aud"], claims["tier"],
                                               int(claims.get("calls", 0))))

    def jwks(self) -> tuple[dict, str]:
        state = self.ring.state()
        return state.jwks, state.etag
