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
from ..catalog.visibility import can_manage
from ..errors import InvalidInput, NotFound, PaymentRequired, Unauthenticated
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
    def __init__(self, db, ring: KeyRing, base_url: str, principal_for_user, market_settings=None, l402=None):
        self.db = db
        self.l402 = l402  # tokens/l402.py: agents without an account pay with Lightning (None: no LNbits)
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
                                                       DEFAULT_CALLS if calls is None else calls,
                                                       principal.member_org_ids())
                claims["calls"] = reservation["calls"]
            await tx.insert("usage_tokens", {"jti": claims["jti"], "licence_id": licence["id"],
                                             "user_id": principal.id, "package_id": package["id"],
                                             "issued_at": now, "expires_at": claims["exp"], **reservation})
            if licence["last_used_at"] is None or now - licence["last_used_at"] > 60:
                await tx.execute("UPDATE licence_keys SET last_used_at = ? WHERE id = ?", (now, licence["id"]))
        return self._signed(claims)

    def _signed(self, claims: dict) -> dict:
        kid, key = self.ring.signing_key()
        token = jwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid, "typ": "JWT"})
        return {"token": token, "token_type": "Bearer", "expires_in": TOKEN_SECONDS, "expires_at": claims["exp"],
                "jti": claims["jti"], "mcp": claims["mcp"], "tier": claims["tier"], "aud": claims["aud"],
                **({"calls": claims["calls"]} if "calls" in claims else {})}

    async def exchange_l402(self, ref: object, credential: str | None, calls: object = None,
                            ip: str | None = None) -> dict:
        """For an agent without an account (tokens/l402.py): without `credential`, the L402 challenge (a 402
        with an invoice for `calls` calls of package `ref`); with `<macaroon>:<preimage>` of a paid invoice, a
        usage token whose calls are prepaid (`sub` l402:<payment hash>, `tier` l402)."""
        if calls is not None and (type(calls) is not int or not 1 <= calls <= MAX_CALLS):
            raise InvalidInput(f"calls is a whole number from 1 to {MAX_CALLS}", code="invalid_calls")
        package = await self._l402_package(ref)
        if credential is None:
            raise await self.l402.challenge(package, DEFAULT_CALLS if calls is None else calls, ip)
        now = int(time.time())
        jti = secrets.token_urlsafe(16)
        redeemed = await self.l402.redeem(package, credential, jti, now + TOKEN_SECONDS)
        ref = f"{package['namespace']}/{package['name']}"
        return self._signed({"iss": self.base_url, "sub": f"l402:{redeemed.payment_hash}", "mcp": ref,
                             "tier": "l402", "aud": self.audience(ref), "iat": now, "exp": now + TOKEN_SECONDS,
                             "jti": jti, "calls": redeemed.calls})

    async def _l402_package(self, ref: object) -> dict:
        namespace, _, name = ref.partition("/") if isinstance(ref, str) else ("", "", "")
        if not namespace or not name or len(ref) > 200:
            raise Unauthenticated("send a licence key (licence_key), or name the package (`package`: namespace/name)"
                                  " to pay per call with Lightning (L402)", code="credentials_required")
        package = await self.licences.package(None, namespace, name)
        if self.l402 is None or not self.l402.offered_for(package):
            raise Unauthenticated(f"{ref} is paid with a licence key here (L402 takes per-call packages priced in"
                                  " sat on an appliance with LNbits)", code="credentials_required")
        return package

    async def report(self, principal: Principal, jti: object, call_id: object) -> dict:
        """A publisher's server reports one call against a token of its package: an L402 token's prepaid calls,
        or a licence holder's reservation (tokens/calls.py)."""
        if self.l402 is not None and isinstance(jti, str) and len(jti) <= 100 and \
                await self.db.fetch_value("SELECT 1 FROM l402_tokens WHERE jti = ?", (jti,)):
            if not can_manage(principal, await self.l402.package_of(jti)):
                raise NotFound("no usage token with this jti for a package you publish", code="usage_token_not_found")
            return await self.l402.report(jti, call_id)
        return await self.calls.report(principal, jti, call_id)

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
