"""Group policy over HTTP on a real app: org admins change it (versioned, audited), devices fetch it with a
device token (signed JSON with ETag/304, MDM formats), members ask whether a bundle is allowed. Every hostile
call gets a clear 4xx and changes nothing."""

from __future__ import annotations

import os
import plistlib
import time

import pytest

from mcpstore_appliance.policy.signed import verify
from tests.seed import bundle_for, make_org, publish

STRICT = {"allow_only_listed": True, "allowed": {"acme/tool": "^1.0.0"}, "blocked_publishers": ["shady"],
          "require_signature": False}


@pytest.fixture
async def world(start_app):
    app = await start_app()
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    _, eve = await app.user("eve")
    await make_org(app, alice, "acme", {"bob": "member"})
    await make_org(app, eve, "evil")
    return {"app": app, "alice": app.client.with_token(alice), "bob": app.client.with_token(bob),
            "eve": app.client.with_token(eve), "anon": app.client, "alice_token": alice, "eve_token": eve}


async def _policy_rows(app) -> int:
    return await app.services.db.fetch_value("SELECT count(*) FROM org_policies")


async def _device_token(world, slug="acme", client="alice") -> tuple[str, int]:
    status, body, _ = await world[client].post(f"/api/orgs/{slug}/device-tokens", json={"name": "laptops"})
    assert status == 201, body
    return body["token"], body["id"]


async def test_admins_change_the_policy_in_audited_versions(world):
    app, alice = world["app"], world["alice"]
    status, body, response = await alice.get("/api/orgs/acme/policy")
    assert status == 200 and body["version"] == 0 and body["policy"]["allow_only_listed"] is False
    assert "no-store" in response.headers["Cache-Control"]
    status, body, _ = await alice.put("/api/orgs/acme/policy", json={"policy": STRICT, "expected_version": 0})
    assert status == 200 and body["version"] == 1 and body["created_by"] == "alice"
    assert body["policy"]["allowed"] == {"acme/tool": "^1.0.0"}
    status, body, _ = await alice.get("/api/orgs/acme/policy")
    assert [h["version"] for h in body["history"]] == [1]
    events = await app.services.db.fetch_all("SELECT actor, details FROM audit_events WHERE action = 'policy.update'")
    assert len(events) == 1 and events[0]["actor"] == "alice" and '"version":1' in events[0]["details"]


@pytest.mark.parametrize("who, slug, body, status, code", [
    ("bob", "acme", {"policy": STRICT}, 403, "forbidden"),  # a member, not an admin
    ("eve", "acme", {"policy": STRICT}, 404, "not_found"),  # a foreign org looks missing
    ("alice", "nosuch", {"policy": STRICT}, 404, "not_found"),
    ("anon", "acme", {"policy": STRICT}, 401, "unauthenticated"),
    ("alice", "acme", {"policy": {"allowed": {"acme/tool": ">=banana"}}}, 400, "invalid_body"),
    ("alice", "acme", {"policy": {"blocked_publishers": ["Not A Slug"]}}, 400, "invalid_body"),
    ("alice", "acme", {"policy": {"require_signature": True, "surprise": 1}}, 400, "invalid_body"),
    ("alice", "acme", {"policy": STRICT, "expected_version": 7}, 409, "policy_version_moved"),
    ("alice", "acme", {"policy": "everything allowed"}, 400, "invalid_body"),
])
async def test_bad_changes_are_refused_and_change_nothing(world, who, slug, body, status, code):
    got, answer, _ = await world[who].put(f"/api/orgs/{slug}/policy", json=body)
    assert (got, answer["error"]["code"]) == (status, code), answer
    assert await _policy_rows(world["app"]) == 0
    assert await world["app"].services.db.fetch_value(
        "SELECT count(*) FROM audit_events WHERE action = 'policy.update'") == 0


async def test_devices_fetch_the_signed_policy_with_etag(world):
    app, alice = world["app"], world["alice"]
    await alice.put("/api/orgs/acme/policy", json={"policy": STRICT})
    token, _ = await _device_token(world)
    device = app.client.with_token(token)
    status, _, response = await device.get("/policy/acme.json")
    assert status == 200 and "private" in response.headers["Cache-Control"]
    raw = await _raw(app, "/policy/acme.json", token)
    public = bytes.fromhex((await alice.get("/api/orgs/acme/policy"))[1]["signing_key"]["public_key"])
    signed = verify(raw, public, now=time.time())
    assert signed["org"] == "acme" and signed["policy_version"] == 1 and signed["policy"]["blocked_publishers"] == ["shady"]
    etag = response.headers["ETag"]
    status, _, again = await device.get("/policy/acme.json", headers={"If-None-Match": etag})
    assert status == 304 and again.headers["ETag"] == etag
    await alice.put("/api/orgs/acme/policy", json={"policy": {**STRICT, "require_signature": True}})
    status, body, changed = await device.get("/policy/acme.json", headers={"If-None-Match": etag})
    assert status == 200 and changed.headers["ETag"] != etag and body["signed"]["policy_version"] == 2
    key_file = app.data_dir / "keys" / "policy.key"
    assert os.stat(key_file).st_mode & 0o777 == 0o600


async def test_devices_fetch_every_mdm_format(world):
    token, _ = await _device_token(world)
    device = world["app"].client.with_token(token)
    types = {"mobileconfig": "application/x-apple-aspen-config", "reg": "text/plain", "admx": "application/xml",
             "adml": "application/xml", "vscode.json": "application/json"}
    for fmt, content_type in types.items():
        status, _, response = await device.get(f"/policy/acme.{fmt}")
        assert status == 200 and response.headers["Content-Type"].startswith(content_type), fmt
        assert "attachment" in response.headers["Content-Disposition"]
    profile = plistlib.loads(await _raw(world["app"], "/policy/acme.mobileconfig", token))
    assert profile["PayloadContent"][0]["PayloadType"] == "com.anthropic.claudefordesktop"


async def test_foreign_forged_and_revoked_device_tokens_are_refused(world):
    app = world["app"]
    token, token_id = await _device_token(world)
    evil_token, _ = await _device_token(world, "evil", "eve")
    cases = [
        (None, "acme", "invalid_device_token"),
        (token[:-2] + "xx", "acme", "invalid_device_token"),  # forged
        (token, "evil", "invalid_device_token"),  # another org's policy
        (evil_token, "acme", "invalid_device_token"),
        (world["alice_token"], "acme", "invalid_device_token"),  # a user's API token is not a device token
    ]
    for secret, slug, code in cases:
        status, body, _ = await app.client.with_token(secret).get(f"/policy/{slug}.json")
        assert (status, body["error"]["code"]) == (401, code), (secret, slug)
    # only acme's admins manage acme's device tokens
    assert (await world["eve"].delete(f"/api/orgs/acme/device-tokens/{token_id}"))[0] == 404
    assert (await world["bob"].get("/api/orgs/acme/device-tokens"))[0] == 403
    assert (await world["bob"].post("/api/orgs/acme/device-tokens", json={"name": "x"}))[0] == 403
    assert (await world["alice"].post("/api/orgs/acme/device-tokens", json={"name": ""}))[0] == 400
    assert (await app.client.with_token(token).get("/policy/acme.json"))[0] == 200  # still valid
    assert (await world["alice"].delete(f"/api/orgs/acme/device-tokens/{token_id}"))[0] == 204
    status, body, _ = await app.client.with_token(token).get("/policy/acme.json")
    assert (status, body["error"]["code"]) == (401, "device_token_revoked")
    assert (await world["alice"].delete(f"/api/orgs/acme/device-tokens/{token_id}"))[0] == 404
    status, body, _ = await world["alice"].get("/api/orgs/acme/device-tokens")
    assert [t["revoked"] for t in body["device_tokens"]] == [True] and token not in str(body)


async def test_members_ask_whether_a_bundle_is_allowed(world):
    app = world["app"]
    await publish(app, world["alice_token"], "tool", namespace="acme")
    await publish(app, world["alice_token"], "other", namespace="acme")
    _, tool_sha = bundle_for("tool")
    _, other_sha = bundle_for("other")
    await world["alice"].put("/api/orgs/acme/policy", json={"policy": STRICT})
    status, body, _ = await world["bob"].get("/api/orgs/acme/policy/check", params={"sha256": tool_sha})
    assert status == 200 and body["allowed"] is True and body["release"]["package"] == "acme/tool"
    status, body, _ = await world["bob"].get("/api/orgs/acme/policy/check", params={"sha256": other_sha})
    assert body["allowed"] is False and body["rule"] == "not_allowlisted" and "acme/other" in body["reason"]
    status, body, _ = await world["bob"].get("/api/orgs/acme/policy/check", params={"sha256": "0" * 64})
    assert body["allowed"] is False and body["rule"] == "unknown_bundle"
    assert (await world["eve"].get("/api/orgs/acme/policy/check", params={"sha256": tool_sha}))[0] == 404
    assert (await world["bob"].get("/api/orgs/acme/policy/check", params={"sha256": "nothex"}))[0] == 400


async def _raw(app, path: str, token: str) -> bytes:
    async with app.client.session.get(app.base_url + path, headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
        return await response.read()
