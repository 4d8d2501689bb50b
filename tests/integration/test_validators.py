"""The stand-alone validators (validators/python with pyjwt, validators/node with the real `jose` from npm) against
tokens a real appliance issued: genuine ones pass, every JWT attack and every revoked token is refused.

jose is installed once into the test cache ($MCPSTORE_TEST_CACHE, as tests/e2e does for mcpb); node and npm must
be on PATH (.ci/run installs them)."""

from __future__ import annotations

import asyncio
import fcntl
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_usage_tokens import paid_world, revocation_list
from tests.usage_support import call, claims_of, exchange, forgeries, grant, licence

REPO = Path(__file__).resolve().parents[2]
JOSE_VERSION = "6.2.19"
EXPECTED = {"genuine": "ok", "alg_none": "bad_algorithm", "hs256_with_public_key": "bad_algorithm",
            "wrong_aud": "wrong_audience", "expired": "expired", "unknown_kid": "unknown_key",
            "other_package": "wrong_audience", "tampered": "invalid", "revoked": "revoked", "refunded": "revoked"}


def python_validator():
    spec = importlib.util.spec_from_file_location("mcpstore_usage", REPO / "validators/python/mcpstore_usage.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def node_validator() -> Path:
    """A folder with validators/node and the real jose installed beside it."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not on PATH; the Node validator tests need node and npm")
    cache = Path(os.environ.get("MCPSTORE_TEST_CACHE") or Path.home() / ".cache" / "mcpstore-tests")
    prefix = cache / f"npm-jose-{JOSE_VERSION}"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(cache / ".jose-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (prefix / "node_modules" / "jose" / "package.json").exists():
            subprocess.run(["npm", "install", "--prefix", str(prefix), "--no-audit", "--no-fund", "--loglevel=error",
                            f"jose@{JOSE_VERSION}"], check=True, timeout=300, stdin=subprocess.DEVNULL)
    for name in ("index.mjs", "check.mjs"):  # next to node_modules, where an ES module finds jose
        shutil.copy(REPO / "validators" / "node" / name, prefix / name)
    return prefix


async def tokens_to_check(app) -> dict[str, str]:
    """Genuine, forged, revoked (licence key revoked) and refunded (entitlement ended) tokens for alice/paid."""
    alice_token, bob, bob_token = await paid_world(app)
    _, carol_token = await app.user("carol")
    await grant(app, alice_token, "alice/paid", "bob")
    await grant(app, alice_token, "alice/other", "bob", reference="gift2")
    refunded_entitlement = await grant(app, alice_token, "alice/paid", "carol", reference="gift3")
    genuine = (await exchange(app, await licence(app, bob_token, "alice/paid")))["token"]
    other = (await exchange(app, await licence(app, bob_token, "alice/other")))["token"]
    refunded = (await exchange(app, await licence(app, carol_token, "alice/paid")))["token"]
    revoked_key = await licence(app, alice_token, "alice/paid")  # the publisher's own key
    revoked = (await exchange(app, revoked_key))["token"]
    keys, _ = await call(app, "GET", "/api/account/licence-keys", alice_token)
    await call(app, "DELETE", f"/api/account/licence-keys/{keys['licence_keys'][0]['id']}", alice_token, expect=204)
    await call(app, "DELETE", f"/api/packages/alice/paid/grants/{refunded_entitlement}", alice_token, expect=204)
    await revocation_list(app, lambda listed: listed["subjects"] and listed["jti"])
    return {"genuine": genuine, **forgeries(app, genuine, other), "revoked": revoked, "refunded": refunded}


async def test_python_validator_accepts_genuine_and_refuses_attacks(appliance):
    module = python_validator()
    tokens = await tokens_to_check(appliance)
    validator = module.UsageValidator(appliance.base_url, "alice/paid")
    results = {}
    for name, token in tokens.items():
        try:
            await asyncio.to_thread(validator.validate, token)  # urllib blocks: off the loop that serves the app
            results[name] = "ok"
        except module.InvalidUsageToken as refused:
            results[name] = refused.code
    assert results == EXPECTED
    assert (await asyncio.to_thread(validator.validate, tokens["genuine"]))["sub"] == \
        claims_of(appliance, tokens["genuine"])["sub"]


async def test_node_validator_accepts_genuine_and_refuses_attacks(appliance, node_validator):
    tokens = await tokens_to_check(appliance)
    process = await asyncio.create_subprocess_exec(
        "node", "check.mjs", cwd=node_validator, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(json.dumps(
        {"appliance": appliance.base_url, "package": "alice/paid", "tokens": tokens}).encode()), 60)
    assert process.returncode == 0, err.decode()
    assert json.loads(out) == EXPECTED


def test_python_validator_fetches_at_most_every_30_seconds_and_refreshes_on_unknown_kid():
    """The caches, with a recording fetch: no network and no appliance needed for this rule."""
    module = python_validator()
    fetched = []

    def fetch(url):
        fetched.append(url.rsplit("/", 1)[1])
        return {"keys": []} if url.endswith("jwks.json") else {"jti": [], "subjects": []}

    validator = module.UsageValidator("https://registry.example", "a/b", fetch=fetch)
    import jwt
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    token = jwt.encode({"x": 1}, Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": "k1"})
    for _ in range(3):
        with pytest.raises(module.InvalidUsageToken) as refused:
            validator.validate(token)
        assert refused.value.code == "unknown_key"
    assert fetched == ["jwks.json"]  # an unknown kid refreshes the JWKS at most every 10 s, not per token
    validator._check_revocations({"jti": "j", "sub": "user:1", "mcp": "a/b", "iat": 1})
    validator._check_revocations({"jti": "j", "sub": "user:1", "mcp": "a/b", "iat": 1})
    assert fetched == ["jwks.json", "mcpstore-revocations.json"]
