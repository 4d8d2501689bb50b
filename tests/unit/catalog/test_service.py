"""The catalog's status service (catalog/service.py): yank, unyank, deprecate, and the admin quarantine queue
(release, reject), on a real SQLite file with the real ledger. Versions are inserted as the publish pipeline
leaves them; the rules checked are who may change what, which changes write ledger leaves and audit events,
and where "latest" points afterwards."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.catalog import semver
from mcpstore_appliance.catalog.service import PERSONAL_SEAL, PackageStatusService, refresh_latest
from mcpstore_appliance.config import AccountSettings, LedgerSettings
from mcpstore_appliance.db import Database
from mcpstore_appliance.errors import Conflict, Forbidden, InvalidInput, NotFound
from mcpstore_appliance.keys import load_or_create_signing_key
from mcpstore_appliance.ledger.service import Ledger


@pytest.fixture
async def ledger(db, tmp_path):
    key = load_or_create_signing_key(tmp_path / "keys" / "ledger.key")
    log = Ledger(db, key, "test.example/ledger", LedgerSettings(checkpoint_interval_seconds=0))
    yield log
    await log.close()


@pytest.fixture
def status(db, ledger) -> PackageStatusService:
    return PackageStatusService(db, ledger)


@pytest.fixture
async def people(db):
    """Principals: the owner of the `alice` namespace, a stranger, a site administrator, and the publisher
    and plain member of the org `acme`."""
    accounts = AccountService(db, AccountSettings())
    made = {}
    for name in ("alice", "stranger", "root", "pia", "mona"):
        made[name] = await accounts.create_user(f"{name}@example.com", name, None, is_admin=name == "root")
    await accounts.create_org(None, "acme", "Acme", owner=made["alice"])
    await accounts.set_member(None, "acme", "pia", "publisher")
    await accounts.set_member(None, "acme", "mona", "member")
    return {name: await accounts.principal_for_user(user.id) for name, user in made.items()}


async def add_version(db: Database, namespace: str, name: str, version: str, *, state: str = "published",
                      visibility: str = "public") -> int:
    """A version row as the publish pipeline writes it (the package row on its first version)."""
    parsed = semver.parse(version)
    now = time.time()
    async with db.write() as tx:
        package = await tx.fetch_one("SELECT * FROM packages WHERE namespace = ? AND name = ?", (namespace, name))
        if package is None:
            owner = await tx.fetch_one("SELECT user_id, org_id FROM namespaces WHERE name = ?", (namespace,))
            package_id = await tx.insert("packages", {
                "namespace": namespace, "name": name, "org_id": owner["org_id"], "owner_user_id": owner["user_id"],
                "visibility": visibility, "created_at": now, "updated_at": now})
        else:
            package_id = package["id"]
        metadata = {"name": name, "version": version, "display_name": name, "description": "a test package"}
        version_id = await tx.insert("versions", {
            "package_id": package_id, "version": version, "semver_key": parsed.sort_key(),
            "is_prerelease": int(parsed.is_prerelease), "state": state,
            "sha256": hashlib.sha256(f"{namespace}/{name}@{version}".encode()).hexdigest(), "size": 100,
            "manifest_json": json.dumps(metadata), "metadata_json": json.dumps(metadata),
            "signature_status": "unsigned", "published_at": now, "updated_at": now})
        await refresh_latest(tx, package_id)
    return version_id


async def latest(db: Database, namespace: str, name: str) -> str | None:
    return await db.fetch_value("SELECT v.version FROM packages p JOIN versions v ON v.id = p.latest_version_id"
                                " WHERE p.namespace = ? AND p.name = ?", (namespace, name))


async def leaves(db: Database) -> list[dict]:
    rows = await db.fetch_all("SELECT data, org_id FROM ledger_leaves ORDER BY idx")
    return [{**json.loads(bytes(r["data"])), "sealed_for": r["org_id"]} for r in rows]


async def audited(db: Database) -> list[str]:
    return [r["action"] for r in await db.fetch_all("SELECT action FROM audit_events WHERE action LIKE 'package.%'")]


# --- yank, unyank, deprecate ------------------------------------------------------------------------------


async def test_yanking_writes_a_leaf_and_an_audit_event_and_moves_latest(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    await add_version(db, "alice", "tool", "1.1.0")
    assert await latest(db, "alice", "tool") == "1.1.0"
    change = await status.yank(people["alice"], "alice", "tool", "1.1.0", "  broken build ")
    assert change.changed and change.version["yanked"] and change.version["yank_reason"] == "broken build"
    assert change.ledger["leaf_index"] == 0
    assert await latest(db, "alice", "tool") == "1.0.0"
    [leaf] = await leaves(db)
    assert (leaf["kind"], leaf["version"], leaf["actor"], leaf["reason"], leaf["sealed_for"]) == (
        "yank", "1.1.0", "alice", "broken build", None)
    assert await audited(db) == ["package.yank"]


async def test_yanking_twice_changes_nothing_the_second_time(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    await status.yank(people["alice"], "alice", "tool", "1.0.0", "bad")
    again = await status.yank(people["alice"], "alice", "tool", "1.0.0", "bad")
    assert not again.changed and again.ledger is None
    assert len(await leaves(db)) == 1 and await audited(db) == ["package.yank"]
    assert await latest(db, "alice", "tool") is None  # its only release is yanked


async def test_unyanking_restores_the_version_and_is_logged(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    assert not (await status.unyank(people["alice"], "alice", "tool", "1.0.0")).changed  # not yanked
    await status.yank(people["alice"], "alice", "tool", "1.0.0", "oops")
    change = await status.unyank(people["alice"], "alice", "tool", "1.0.0")
    assert change.changed and not change.version["yanked"] and change.version["is_latest"]
    assert [leaf["kind"] for leaf in await leaves(db)] == ["yank", "unyank"]


async def test_deprecating_again_changes_something_only_with_a_new_reason(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    first = await status.deprecate(people["alice"], "alice", "tool", "1.0.0", "use 2.x")
    same = await status.deprecate(people["alice"], "alice", "tool", "1.0.0", "use 2.x")
    other = await status.deprecate(people["alice"], "alice", "tool", "1.0.0", "use 3.x")
    assert (first.changed, same.changed, other.changed) == (True, False, True)
    assert other.version["deprecation_reason"] == "use 3.x" and other.version["is_latest"]  # still installable
    assert [leaf["kind"] for leaf in await leaves(db)] == ["deprecate", "deprecate"]


@pytest.mark.parametrize("action", ["yank", "deprecate"])
@pytest.mark.parametrize("reason, code", [(None, "reason_required"), ("   ", "reason_required"),
                                          ("x" * 1001, "reason_too_long")])
async def test_yank_and_deprecate_need_a_reason_of_bounded_length(status, db, people, action, reason, code):
    await add_version(db, "alice", "tool", "1.0.0")
    with pytest.raises(InvalidInput) as refused:
        await getattr(status, action)(people["alice"], "alice", "tool", "1.0.0", reason)
    assert refused.value.code == code
    assert await leaves(db) == [] and await audited(db) == []


async def test_only_a_published_version_changes_status(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0", state="quarantined")
    with pytest.raises(Conflict) as refused:
        await status.yank(people["alice"], "alice", "tool", "1.0.0", "bad")
    assert refused.value.code == "not_published"


async def test_a_stranger_may_not_change_a_public_package_and_cannot_see_a_private_one(status, db, people):
    await add_version(db, "alice", "public-tool", "1.0.0")
    await add_version(db, "alice", "secret-tool", "1.0.0", visibility="private")
    with pytest.raises(Forbidden) as refused:
        await status.yank(people["stranger"], "alice", "public-tool", "1.0.0", "mine now")
    assert refused.value.code == "not_package_manager"
    with pytest.raises(NotFound) as hidden:
        await status.yank(people["stranger"], "alice", "secret-tool", "1.0.0", "mine now")
    with pytest.raises(NotFound) as missing:
        await status.yank(people["stranger"], "alice", "no-such-tool", "1.0.0", "mine now")
    assert hidden.value.code == missing.value.code == "no_such_package"
    with pytest.raises(NotFound) as no_version:
        await status.yank(people["alice"], "alice", "public-tool", "9.9.9", "bad")
    assert no_version.value.code == "no_such_version"
    assert await leaves(db) == []


async def test_an_orgs_publishers_manage_its_packages_and_its_members_do_not(status, db, people):
    await add_version(db, "acme", "tool", "1.0.0", visibility="org")
    with pytest.raises(Forbidden):
        await status.deprecate(people["mona"], "acme", "tool", "1.0.0", "old")
    assert (await status.deprecate(people["pia"], "acme", "tool", "1.0.0", "old")).changed
    with pytest.raises(NotFound):  # an org package is invisible outside the org
        await status.deprecate(people["stranger"], "acme", "tool", "1.0.0", "old")


async def test_status_leaves_of_packages_that_are_not_public_are_sealed(status, db, people):
    await add_version(db, "acme", "tool", "1.0.0", visibility="org")
    await add_version(db, "alice", "secret-tool", "1.0.0", visibility="private")
    await status.yank(people["pia"], "acme", "tool", "1.0.0", "bad")
    await status.yank(people["alice"], "alice", "secret-tool", "1.0.0", "bad")
    acme_id = await db.fetch_value("SELECT id FROM orgs WHERE slug = 'acme'")
    sealed = await leaves(db)
    assert [leaf["sealed_for"] for leaf in sealed] == [acme_id, PERSONAL_SEAL]
    assert all(set(leaf) == {"commitment", "kind", "sealed_for"} for leaf in sealed)  # no names in public


async def test_managed_packages_lists_the_callers_own_and_their_publishing_orgs(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    await add_version(db, "acme", "org-tool", "1.0.0", state="quarantined", visibility="org")
    names = [p["name"] for p in await status.managed_packages(people["pia"])]
    assert names == ["org-tool"]
    assert [p["name"] for p in await status.managed_packages(people["mona"])] == []
    listed = {p["name"]: p for p in await status.managed_packages(people["alice"])}
    assert set(listed) == {"tool", "org-tool"} and listed["org-tool"]["quarantined"] == 1


# --- the quarantine queue -------------------------------------------------------------------------------


async def test_releasing_publishes_with_two_leaves_and_makes_the_version_latest(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    await add_version(db, "alice", "tool", "1.1.0", state="quarantined")
    change = await status.release(people["root"], "alice", "tool", "1.1.0", "reviewed, fine")
    assert change.version["state"] == "published" and change.version["is_latest"]
    assert change.version["review_reason"] == "reviewed, fine" and change.version["ledger_index"] == 0
    publish, release = await leaves(db)
    assert (publish["kind"], release["kind"], release["actor"]) == ("publish", "quarantine-release", "root")
    assert await audited(db) == ["package.quarantine_release"]
    with pytest.raises(Conflict) as again:
        await status.release(people["root"], "alice", "tool", "1.1.0")
    assert again.value.code == "not_quarantined"


async def test_rejecting_needs_a_reason_keeps_the_number_taken_and_writes_no_leaf(status, db, people):
    await add_version(db, "alice", "tool", "1.0.0")
    await add_version(db, "alice", "tool", "2.0.0", state="quarantined")
    with pytest.raises(InvalidInput):
        await status.reject(people["root"], "alice", "tool", "2.0.0", "")
    change = await status.reject(people["root"], "alice", "tool", "2.0.0", "ships a credential")
    assert change.version["state"] == "rejected" and not change.version["is_latest"]
    assert await leaves(db) == [] and await audited(db) == ["package.quarantine_reject"]
    assert await latest(db, "alice", "tool") == "1.0.0"
    with pytest.raises(Conflict):
        await status.release(people["root"], "alice", "tool", "2.0.0")


@pytest.mark.parametrize("who", ["alice", "stranger"])
async def test_only_site_administrators_release_or_reject(status, db, people, who):
    await add_version(db, "alice", "tool", "1.0.0", state="quarantined")
    with pytest.raises(Forbidden):
        await status.release(people[who], "alice", "tool", "1.0.0")
    with pytest.raises(Forbidden):
        await status.reject(people[who], "alice", "tool", "1.0.0", "no")
    assert await db.fetch_value("SELECT state FROM versions") == "quarantined"


async def test_an_unknown_version_in_the_queue_is_not_found(status, people):
    with pytest.raises(NotFound):
        await status.release(people["root"], "alice", "tool", "1.0.0")


async def test_the_queue_lists_quarantined_versions_oldest_first_in_pages(status, db, people):
    for version in ("1.0.0", "1.1.0", "1.2.0"):
        await add_version(db, "alice", "tool", version, state="quarantined")
    await add_version(db, "alice", "tool", "2.0.0")
    first = await status.quarantined(limit=2)
    assert [item["version"] for item in first["items"]] == ["1.0.0", "1.1.0"]
    rest = await status.quarantined(limit=2, after_id=first["next_after"])
    assert [item["version"] for item in rest["items"]] == ["1.2.0"] and rest["next_after"] is None
