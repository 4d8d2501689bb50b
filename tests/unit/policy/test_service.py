"""Versioned policies and device tokens in a real SQLite file (the service, without HTTP)."""

from __future__ import annotations

import pytest
from nacl.signing import SigningKey

from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.config import load_settings
from mcpstore_appliance.db import Database
from mcpstore_appliance.errors import Conflict, Forbidden, NotFound, Unauthenticated
from mcpstore_appliance.policy.artifacts import Artifacts
from mcpstore_appliance.policy.model import DEFAULT_POLICY, Policy
from mcpstore_appliance.policy.service import PolicyService


@pytest.fixture
async def world(tmp_path):
    db = await Database(tmp_path / "db.sqlite3").open()
    try:  # an open database keeps the test process alive: close it whatever happens
        yield await _people(db, AccountService(db, load_settings(environ={}, data_dir=str(tmp_path)).accounts))
    finally:
        await db.close()


async def _people(db, accounts):
    """alice owns acme, bob is a member of it, eve owns another org."""
    ids = {name: (await accounts.create_user(f"{name}@example.com", name, None)).id for name in ("alice", "bob", "eve")}
    await accounts.create_org(await accounts.principal_for_user(ids["alice"]), "acme", "Acme")
    await accounts.create_org(await accounts.principal_for_user(ids["eve"]), "evil", "Evil")
    await accounts.set_member(await accounts.principal_for_user(ids["alice"]), "acme", "bob", "member")
    world = {"db": db, "policies": PolicyService(db, accounts, Artifacts(SigningKey.generate(), "https://reg.example", "example.reg"))}
    for name, user_id in ids.items():
        world[name] = await accounts.principal_for_user(user_id)
    return world


async def test_each_change_is_a_new_version_with_who_and_when(world):
    policies, alice = world["policies"], world["alice"]
    org = await policies.managed_org(alice, "acme")
    assert (await policies.current(org)).version == 0 and (await policies.current(org)).policy == DEFAULT_POLICY
    first = await policies.update(alice, "acme", Policy(require_signature=True), ip="10.0.0.1")
    second = await policies.update(alice, "acme", Policy(blocked_publishers=["evil"]))
    same = await policies.update(alice, "acme", Policy(blocked_publishers=["evil"]))  # nothing new to say
    assert (first.version, second.version, same.version) == (1, 2, 2)
    assert second.created_by == "alice" and second.created_at >= first.created_at
    assert [row["version"] for row in await policies.history(org)] == [2, 1]
    events = await world["db"].fetch_all("SELECT action, org_id, target, ip FROM audit_events WHERE action LIKE 'policy.%'")
    assert [(e["action"], e["target"]) for e in events] == [("policy.update", "acme")] * 2
    assert events[0]["ip"] == "10.0.0.1"


async def test_a_stale_editor_is_refused_and_nothing_changes(world):
    policies, alice = world["policies"], world["alice"]
    await policies.update(alice, "acme", Policy(require_signature=True))
    with pytest.raises(Conflict):
        await policies.update(alice, "acme", Policy(), expected_version=0)
    org = await policies.managed_org(alice, "acme")
    assert (await policies.current(org)).policy == Policy(require_signature=True)


async def test_members_and_strangers_cannot_change_it(world):
    policies = world["policies"]
    with pytest.raises(Forbidden):
        await policies.update(world["bob"], "acme", Policy(require_signature=True))
    with pytest.raises(NotFound):  # a foreign org looks like a missing one
        await policies.update(world["eve"], "acme", Policy(require_signature=True))
    assert await world["db"].fetch_value("SELECT count(*) FROM org_policies") == 0


async def test_device_tokens_read_their_own_org_only_until_revoked(world):
    policies, alice = world["policies"], world["alice"]
    secret, info = await policies.create_device_token(alice, "acme", "laptops")
    assert (await policies.org_for_device(secret, "acme")).slug == "acme"
    stored = await world["db"].fetch_value("SELECT token_hash FROM device_tokens")
    assert secret not in stored and len(stored) == 64
    for token, slug, code in ((secret, "evil", "invalid_device_token"), (secret + "x", "acme", "invalid_device_token"),
                              ("mcps_user_token", "acme", "invalid_device_token"), (None, "acme", "invalid_device_token")):
        with pytest.raises(Unauthenticated) as caught:
            await policies.org_for_device(token, slug)
        assert caught.value.code == code
    with pytest.raises(NotFound):
        await policies.revoke_device_token(world["eve"], "acme", info.id)
    await policies.revoke_device_token(alice, "acme", info.id)
    with pytest.raises(Unauthenticated) as caught:
        await policies.org_for_device(secret, "acme")
    assert caught.value.code == "device_token_revoked"
    assert [t.revoked for t in await policies.device_tokens(await policies.managed_org(alice, "acme"))] == [True]
