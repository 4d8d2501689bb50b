"""Licence keys, the usage-token exchange, the JWKS and its rotation, revocations, and JWT attacks refused by the
appliance, against a real app on a real port."""

from __future__ import annotations

import asyncio
import stat
import time

import jwt

from mcpstore_appliance.tokens import KeyRing, usage_keys_dir
from mcpstore_appliance.web.keys import USAGE
from tests.seed import publish
from tests.usage_support import (SUBSCRIPTION, call, claims_of, exchange, forgeries, grant, licence)


async def revocation_list(app, condition, seconds: float = 3.0) -> dict:
    """The published list once `condition(list)` holds (it is rebuilt at most once a second)."""
    for _ in range(int(seconds / 0.1)):
        listed, _ = await call(app, "GET", "/.well-known/mcpstore-revocations.json")
        if condition(listed):
            break
        await asyncio.sleep(0.1)
    return listed


async def paid_world(app):
    alice, alice_token = await app.user("alice")
    bob, bob_token = await app.user("bob")
    await publish(app, alice_token, "paid", "1.0.0", options=SUBSCRIPTION)
    await publish(app, alice_token, "other", "1.0.0", options=SUBSCRIPTION)
    return alice_token, bob, bob_token


async def test_licence_key_exchanges_for_an_eddsa_usage_token(appliance):
    alice_token, bob, bob_token = await paid_world(appliance)
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/licence-keys", bob_token, expect=402)
    assert body["error"]["code"] == "entitlement_required"
    assert await appliance.services.db.fetch_value("SELECT count(*) FROM licence_keys") == 0
    await grant(appliance, alice_token, "alice/paid", "bob")
    key = await licence(appliance, bob_token, "alice/paid")
    assert key.startswith("mcpl_")
    body, _ = await call(appliance, "POST", "/api/packages/alice/paid/licence-keys", bob_token, expect=409)
    assert body["error"]["code"] == "licence_exists"
    listed, response = await call(appliance, "GET", "/api/account/licence-keys", bob_token)
    assert [k["package"] for k in listed["licence_keys"]] == ["alice/paid"] and key not in str(listed)
    assert response.headers["Cache-Control"] == "no-store"
    stored = await appliance.services.db.fetch_value("SELECT key_hash FROM licence_keys")
    assert key not in stored and len(stored) == 64  # a sha256, never the key

    issued = await exchange(appliance, key)
    token = issued["token"]
    header = jwt.get_unverified_header(token)
    jwks, response = await call(appliance, "GET", "/.well-known/jwks.json")
    assert header["alg"] == "EdDSA" and header["kid"] == jwks["keys"][0]["kid"]
    assert jwks["keys"][0] | {} == {**jwks["keys"][0], "kty": "OKP", "crv": "Ed25519"}
    assert "public" in response.headers["Cache-Control"] and response.headers["ETag"]
    claims = jwt.decode(token, jwt.PyJWK(jwks["keys"][0]).key, algorithms=["EdDSA"],
                        audience=f"{appliance.base_url}/mcp/alice/paid")
    assert claims["sub"] == f"user:{bob.id}" and claims["mcp"] == "alice/paid" and claims["tier"] == "grant"
    assert claims["exp"] - claims["iat"] == 900 and claims["jti"] == issued["jti"] and "calls" not in claims
    _, response = await call(appliance, "GET", "/.well-known/jwks.json", expect=304,
                             headers={"If-None-Match": response.headers["ETag"]})

    keys = usage_keys_dir(appliance.services.settings)
    for path in keys.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700


async def test_bad_exchanges_are_refused_and_change_nothing(appliance):
    alice_token, bob, bob_token = await paid_world(appliance)
    await grant(appliance, alice_token, "alice/paid", "bob")
    key = await licence(appliance, bob_token, "alice/paid")
    for body, status, code in [({"licence_key": "mcpl_nope"}, 401, "invalid_licence"),
                               ({"licence_key": "mcps_" + "x" * 40}, 401, "invalid_licence"),
                               ({"licence_key": key, "calls": 0}, 400, "invalid_body"),
                               ({"licence_key": key, "extra": 1}, 400, "invalid_body"),
                               ({}, 400, "invalid_body")]:
        answer, _ = await call(appliance, "POST", "/api/usage/tokens", expect=status, json=body)
        assert answer["error"]["code"] == code, body
    await call(appliance, "POST", "/api/usage/tokens", expect=415, data=b"licence_key=x")
    assert await appliance.services.db.fetch_value("SELECT count(*) FROM usage_tokens") == 0
    # licence keys are personal: neither a usage token nor another user reaches them
    token = (await exchange(appliance, key))["token"]
    body, _ = await call(appliance, "GET", "/api/account/licence-keys", token, expect=403)
    assert body["error"]["code"] == "usage_token_only"
    await call(appliance, "GET", "/api/packages/alice/paid", token)  # public data stays public (as anonymous)
    body, _ = await call(appliance, "DELETE", "/api/account/licence-keys/1", alice_token, expect=404)


async def test_revoked_licence_key_revokes_its_tokens(appliance):
    alice_token, bob, bob_token = await paid_world(appliance)
    await grant(appliance, alice_token, "alice/paid", "bob")
    key = await licence(appliance, bob_token, "alice/paid")
    token = (await exchange(appliance, key))["token"]
    await call(appliance, "POST", "/api/invoke/alice/paid", token, expect=503, json={"tool": "x"})  # accepted
    licence_id = (await call(appliance, "GET", "/api/account/licence-keys", bob_token))[0]["licence_keys"][0]["id"]
    await call(appliance, "DELETE", f"/api/account/licence-keys/{licence_id}", bob_token, expect=204)
    body = await exchange(appliance, key, expect=401)
    assert body["error"]["code"] == "licence_revoked"
    listed, response = await call(appliance, "GET", "/.well-known/mcpstore-revocations.json")
    assert claims_of(appliance, token)["jti"] in listed["jti"]
    assert response.headers["Cache-Control"] == "public, max-age=15"
    body, _ = await call(appliance, "POST", "/api/invoke/alice/paid", token, expect=401, json={"tool": "x"})
    assert body["error"]["code"] == "token_revoked"
    await licence(appliance, bob_token, "alice/paid")  # a new key after revoking the old one


async def test_ended_access_lists_the_subject_and_refuses_exchange(appliance):
    """A refund, dispute or manager's revoke ends the entitlement: the buyer's tokens of that package issued
    before are listed as revoked, and the licence key exchanges nothing more."""
    alice_token, bob, bob_token = await paid_world(appliance)
    entitlement = await grant(appliance, alice_token, "alice/paid", "bob")
    key = await licence(appliance, bob_token, "alice/paid")
    token = (await exchange(appliance, key))["token"]
    await call(appliance, "DELETE", f"/api/packages/alice/paid/grants/{entitlement}", alice_token, expect=204)
    listed = await revocation_list(appliance, lambda listed: listed["subjects"])
    [subject] = listed["subjects"]
    assert subject["sub"] == f"user:{bob.id}" and subject["mcp"] == "alice/paid"
    assert subject["revoked_at"] >= claims_of(appliance, token)["iat"]
    body, _ = await call(appliance, "POST", "/api/invoke/alice/paid", token, expect=401, json={"tool": "x"})
    assert body["error"]["code"] == "token_revoked"
    body = await exchange(appliance, key, expect=402)
    assert body["error"]["code"] == "entitlement_required"


async def test_rotation_keeps_tokens_in_flight_valid(appliance):
    alice_token, bob, bob_token = await paid_world(appliance)
    await grant(appliance, alice_token, "alice/paid", "bob")
    key = await licence(appliance, bob_token, "alice/paid")
    before = (await exchange(appliance, key))["token"]
    _, response = await call(appliance, "GET", "/.well-known/jwks.json")
    new_kid = KeyRing(usage_keys_dir(appliance.services.settings)).rotate()  # what `mcpstore admin` runs
    appliance.app[USAGE].ring._checked = 0.0  # the running appliance looks at the ring file once a second
    after = (await exchange(appliance, key))["token"]
    assert jwt.get_unverified_header(after)["kid"] == new_kid != jwt.get_unverified_header(before)["kid"]
    jwks, rotated = await call(appliance, "GET", "/.well-known/jwks.json")
    assert {k["kid"] for k in jwks["keys"]} == {new_kid, jwt.get_unverified_header(before)["kid"]}
    assert rotated.headers["ETag"] != response.headers["ETag"]
    for token in (before, after):  # both accepted (503: no sandbox backend in this app, after authentication)
        await call(appliance, "POST", "/api/invoke/alice/paid", token, expect=503, json={"tool": "x"})


def test_a_retired_key_leaves_the_jwks_once_its_tokens_expired(tmp_path, monkeypatch):
    ring = KeyRing(tmp_path / "usage")
    first = ring.rotate()
    second = ring.rotate()
    assert {k["kid"] for k in ring.state().jwks["keys"]} == {first, second}
    later = time.time() + 900 + 61
    monkeypatch.setattr(time, "time", lambda: later)
    third = ring.rotate()
    ring._checked = 0.0
    assert {k["kid"] for k in ring.state().jwks["keys"]} == {second, third}
    assert not (tmp_path / "usage" / f"{first}.key").exists()


async def test_jwt_attacks_are_refused_by_the_appliance(appliance):
    alice_token, bob, bob_token = await paid_world(appliance)
    await grant(appliance, alice_token, "alice/paid", "bob")
    await grant(appliance, alice_token, "alice/other", "bob", reference="gift2")
    genuine = (await exchange(appliance, await licence(appliance, bob_token, "alice/paid")))["token"]
    other = (await exchange(appliance, await licence(appliance, bob_token, "alice/other")))["token"]
    await call(appliance, "POST", "/api/invoke/alice/paid", genuine, expect=503, json={"tool": "x"})
    for name, forged in forgeries(appliance, genuine, other).items():
        status = 403 if name == "other_package" else 401
        body, _ = await call(appliance, "POST", "/api/invoke/alice/paid", forged, expect=status, json={"tool": "x"})
        code = body["error"]["code"]
        assert code == {"other_package": "token_wrong_package", "expired": "token_expired"}.get(name, "invalid_token"), \
            (name, body)
