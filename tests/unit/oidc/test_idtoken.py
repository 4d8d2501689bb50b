"""The ID token checks (oidc/idtoken.py) against tokens signed here with real keys: each check refuses what it
must (wrong issuer or audience, `none`, HS256 keyed with the public key, expired, a wrong nonce, an unknown key)
and the key set is fetched again on an unknown `kid`, at most once a minute."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from mcpstore_appliance.errors import InvalidInput
from mcpstore_appliance.oidc.configs import OidcConfig, role_for_groups
from mcpstore_appliance.oidc.idtoken import DEFAULT_ALGORITHMS, IdTokenError, Jwks, check_algorithms, verify_id_token

ISSUER, CLIENT, NONCE = "https://idp.example", "mcpstore", "n-0123456789"
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def jwk(private_key, kid: str) -> dict:
    public = private_key.public_key()
    if isinstance(private_key, rsa.RSAPrivateKey):
        data = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        data = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
    else:
        data = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public))
    return {**data, "kid": kid, "use": "sig"}


def claims(**changes) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "sub": "u-1", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": NONCE, **changes}


def token(key=RSA_KEY, alg: str = "RS256", kid: str | None = "k1", **changes) -> str:
    return jwt.encode(claims(**changes), key, algorithm=alg, headers={"kid": kid} if kid else None)


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key_set(*documents: list[dict], clock=None) -> Jwks:
    """A Jwks whose successive fetches answer the given key lists (the last one repeated)."""
    answers = list(documents)

    async def fetch() -> dict:
        return {"keys": answers.pop(0) if len(answers) > 1 else answers[0]}

    return Jwks(fetch, clock=clock or Clock())


async def verify(raw: str, jwks: Jwks | None = None, **options) -> dict:
    return await verify_id_token(raw, jwks=jwks or key_set([jwk(RSA_KEY, "k1")]), issuer=ISSUER, client_id=CLIENT,
                                 algorithms=options.pop("algorithms", DEFAULT_ALGORITHMS), nonce=NONCE, **options)


async def refused(raw: str, reason: str, jwks: Jwks | None = None, **options) -> None:
    with pytest.raises(IdTokenError) as caught:
        await verify(raw, jwks, **options)
    assert caught.value.reason == reason, str(caught.value)


async def test_a_good_token_of_each_default_algorithm_passes():
    keys = key_set([jwk(RSA_KEY, "k1"), jwk(EC_KEY, "k2"), jwk(ED_KEY, "k3")])
    assert (await verify(token(), keys))["sub"] == "u-1"
    assert (await verify(token(EC_KEY, "ES256", "k2"), keys))["sub"] == "u-1"
    assert (await verify(token(ED_KEY, "EdDSA", "k3"), keys))["sub"] == "u-1"


async def test_wrong_issuer_and_audience_are_refused():
    await refused(token(iss="https://idp.example/"), "wrong_issuer")  # exact match: no trailing-slash leniency
    await refused(token(iss="https://evil.example"), "wrong_issuer")
    await refused(token(aud="another-app"), "wrong_audience")
    await refused(token(aud=[CLIENT, "another-app"]), "wrong_audience")  # several audiences and no azp
    await refused(token(aud=[CLIENT, "another-app"], azp="another-app"), "wrong_audience")
    assert (await verify(token(aud=[CLIENT, "another-app"], azp=CLIENT)))["azp"] == CLIENT


async def test_alg_none_is_refused():
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    await refused(unsigned, "algorithm_not_allowed")
    await refused(unsigned, "algorithm_not_allowed", algorithms=("none", "RS256"))  # not even if configured


async def test_hs256_keyed_with_the_public_key_is_refused():
    public_pem = RSA_KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": "k1"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    signature = base64.urlsafe_b64encode(hmac.new(public_pem, header + b"." + body, hashlib.sha256).digest())
    forged = (header + b"." + body + b"." + signature.rstrip(b"=")).decode()
    await refused(forged, "algorithm_not_allowed")
    await refused(forged, "algorithm_not_allowed", algorithms=("HS256", "RS256"))
    with pytest.raises(InvalidInput):
        check_algorithms(["HS256"])
    with pytest.raises(InvalidInput):
        check_algorithms(["none"])
    assert check_algorithms(["ES256", "ES256"]) == ("ES256",)


async def test_an_algorithm_outside_the_configured_allowlist_is_refused():
    keys = key_set([jwk(EC_KEY, "k2")])
    await refused(token(EC_KEY, "ES256", "k2"), "algorithm_not_allowed", keys, algorithms=("RS256",))


async def test_a_key_of_the_wrong_type_for_the_algorithm_is_not_used():
    # An EC key listed under the kid an RS256 token names: PyJWK refuses the pairing, so no key is found.
    await refused(token(kid="k2"), "unknown_key", key_set([jwk(EC_KEY, "k2")]))


async def test_expired_and_future_tokens_are_refused_beyond_the_leeway():
    now = int(time.time())
    await refused(token(exp=now - 120, iat=now - 600), "expired")
    assert await verify(token(exp=now - 30, iat=now - 600))  # within the 60 s leeway
    await refused(token(iat=now + 600, exp=now + 900), "not_yet_valid")
    await refused(token(nbf=now + 600), "not_yet_valid")


async def test_a_wrong_or_missing_nonce_is_refused():
    await refused(token(nonce="n-other"), "bad_nonce")
    no_nonce = claims()
    del no_nonce["nonce"]
    await refused(jwt.encode(no_nonce, RSA_KEY, algorithm="RS256", headers={"kid": "k1"}), "bad_nonce")


async def test_missing_required_claims_and_garbage_are_refused():
    without_exp = claims()
    del without_exp["exp"]
    await refused(jwt.encode(without_exp, RSA_KEY, algorithm="RS256", headers={"kid": "k1"}), "invalid")
    await refused("not.a.token", "malformed")
    await refused("", "malformed")
    await refused("x" * 20_000, "malformed")
    tampered = token()[:-4] + ("AAAA" if not token().endswith("AAAA") else "BBBB")
    await refused(tampered, "invalid")


async def test_an_unknown_kid_fetches_the_keys_again_once_a_minute():
    clock = Clock()
    keys = key_set([jwk(RSA_KEY, "k1")], [jwk(RSA_KEY, "k1"), jwk(EC_KEY, "k2")], clock=clock)
    assert await verify(token(), keys) and keys.fetches == 1
    clock.now += 61
    assert await verify(token(EC_KEY, "ES256", "k2"), keys)  # rotated in: found after one more fetch
    assert keys.fetches == 2
    await refused(token(kid="made-up"), "unknown_key", keys)  # just fetched: not again
    await refused(token(kid="made-up-2"), "unknown_key", keys)
    assert keys.fetches == 2
    clock.now += 61
    await refused(token(kid="made-up-3"), "unknown_key", keys)
    assert keys.fetches == 3


async def test_a_token_without_kid_uses_the_only_key_and_never_guesses_between_several():
    assert await verify(token(kid=None), key_set([jwk(RSA_KEY, "k1")]))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    await refused(token(kid=None), "unknown_key", key_set([jwk(RSA_KEY, "k1"), jwk(other, "k9")]))


def test_groups_map_to_the_highest_role_or_the_default():
    config = OidcConfig(1, ISSUER, CLIENT, None, group_roles={"eng": "publisher", "it": "admin"},
                        default_role="member")
    assert role_for_groups(config, ["eng", "it", "x"]) == "admin"
    assert role_for_groups(config, ["eng"]) == "publisher"
    assert role_for_groups(config, ["nothing"]) == "member"
    assert role_for_groups(config, "it") == "member"  # not a list: ignored
    refusing = OidcConfig(1, ISSUER, CLIENT, None, group_roles={"it": "admin"}, default_role=None)
    assert role_for_groups(refusing, []) is None


def test_userinfo_completes_the_id_token_only_for_the_same_subject():
    from mcpstore_appliance.oidc.service import with_userinfo

    id_claims = {"sub": "u-1", "email": "a@x.test"}
    merged = with_userinfo(id_claims, {"sub": "u-1", "email": "other@x.test", "email_verified": True,
                                       "groups": ["eng"], "is_admin": True})
    assert merged == {"sub": "u-1", "email": "a@x.test", "email_verified": True, "groups": ["eng"]}
    with pytest.raises(IdTokenError) as caught:
        with_userinfo(id_claims, {"sub": "u-2", "email_verified": True})
    assert caught.value.reason == "userinfo"
    assert with_userinfo(id_claims, {}) == id_claims


async def test_a_withdrawn_key_stops_working_when_the_key_set_ages_out():
    clock = Clock()
    keys = key_set([jwk(RSA_KEY, "k1")], [jwk(EC_KEY, "k2")], clock=clock)
    assert await verify(token(), keys)
    clock.now += 3000
    assert await verify(token(), keys) and keys.fetches == 1  # still fresh
    clock.now += 700
    await refused(token(), "unknown_key", keys)  # fetched again: k1 is gone
    assert keys.fetches == 2
