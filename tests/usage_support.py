"""Helpers of the usage-token tests: packages with access, licence keys, tokens the appliance issued, forgeries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mcpstore_appliance.market import journal
from mcpstore_appliance.market.journal import Line
from mcpstore_appliance.web.keys import USAGE

SUBSCRIPTION = {"pricing": "subscription", "amount": "5.00", "currency": "usd"}
PER_CALL = {"pricing": "per_call", "amount": "0.10", "currency": "usd"}


async def call(app, method: str, path: str, token: str | None = None, expect: int = 200, **kwargs):
    status, body, response = await app.client.with_token(token).request(method, path, **kwargs)
    assert status == expect, (method, path, status, body)
    return body, response


async def grant(app, manager_token: str, ref: str, username: str, reference: str = "gift") -> int:
    body, _ = await call(app, "POST", f"/api/packages/{ref}/grants", manager_token, expect=201,
                         json={"user": username, "reference": reference})
    return body["entitlement_id"]


async def licence(app, token: str, ref: str) -> str:
    body, _ = await call(app, "POST", f"/api/packages/{ref}/licence-keys", token, expect=201)
    return body["licence_key"]


async def exchange(app, licence_key: str, expect: int = 200, **extra):
    body, _ = await call(app, "POST", "/api/usage/tokens", expect=expect, json={"licence_key": licence_key, **extra})
    return body


async def add_credits(app, user_id: int, cents: int, currency: str = "usd") -> None:
    """Credits in a buyer's wallet as if a top-up had been paid (a posting from a test clearing account)."""
    async with app.services.db.write() as tx:
        await journal.post(tx, "payment", f"test-credits:{user_id}:{time.time_ns()}", currency,
                           [Line("clearing", "test", -cents), Line("wallet", f"user:{user_id}", cents)])


def claims_of(app, token: str) -> dict:
    ring = app.app[USAGE].ring
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, ring.public_key(kid), algorithms=["EdDSA"], options={"verify_aud": False})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forgeries(app, genuine: str, other_package: str) -> dict[str, str]:
    """Tokens each validator must refuse, built from a genuine one's claims (`other_package`: a genuine token of
    another package): name -> token."""
    claims = claims_of(app, genuine)
    header = jwt.get_unverified_header(genuine)
    usage = app.app[USAGE]
    kid, key = usage.ring.signing_key()
    jwk = usage.jwks()[0]["keys"][0]

    def signed(changes: dict, headers: dict | None = None) -> str:
        return jwt.encode({**claims, **changes}, key, algorithm="EdDSA", headers={"kid": kid, **(headers or {})})

    none = b64(json.dumps({"alg": "none", "typ": "JWT", "kid": kid}).encode()) + "." + \
        b64(json.dumps(claims).encode()) + "."
    # HS256 keyed with the public key (the classic key-confusion attack), made by hand: pyjwt refuses to
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": header["kid"]}).encode()) + "." + \
        b64(json.dumps(claims).encode())
    hs256 = signing_input + "." + b64(hmac.new(base64.urlsafe_b64decode(jwk["x"] + "=="), signing_input.encode(),
                                                hashlib.sha256).digest())
    stranger = Ed25519PrivateKey.generate()
    return {
        "alg_none": none,
        "hs256_with_public_key": hs256,
        "wrong_aud": signed({"aud": "https://elsewhere.example/mcp/" + claims["mcp"]}),
        "expired": signed({"iat": int(time.time()) - 3600, "exp": int(time.time()) - 1800}),
        "unknown_kid": jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "not-a-published-key"}),
        "other_package": other_package,
        "tampered": genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
    }
