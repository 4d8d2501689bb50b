"""Version status over HTTP: yank / unyank / deprecate and "latest"; the admin quarantine queue."""

from __future__ import annotations

import json

import pytest

from mcpstore_appliance.bundles import SCANNERS, inspect_bundle
from mcpstore_appliance.bundles.scans import Scanner, ScanRun
from tests.integration.publish_support import (
    FAST_LEDGER,
    bundle,
    check_proof,
    make_org,
    publish,
    snapshot,
    user,
)


@pytest.fixture
async def app(start_app):
    return await start_app(ledger=FAST_LEDGER)


async def latest_version(app, namespace="alice", name="hello-node"):
    return await app.services.db.fetch_value(
        "SELECT v.version FROM packages p LEFT JOIN versions v ON v.id = p.latest_version_id"
        " WHERE p.namespace = ? AND p.name = ?", (namespace, name))


async def change(app, token, action, version, reason=None, ref="alice/hello-node"):
    body = {} if reason is None else {"reason": reason}
    status, answer, _ = await app.client.with_token(token).post(
        f"/api/packages/{ref}/versions/{version}/{action}", json=body)
    return status, answer


async def test_latest_follows_semver_and_skips_prereleases(app):
    _, token = await user(app, "alice")
    for version in ("1.0.0", "2.0.0-beta.1", "1.10.0", "1.9.0"):
        assert (await publish(app.client, bundle(version=version), token))[0] == 201
    assert await latest_version(app) == "1.10.0"  # numeric order, not text order; no pre-release


async def test_prerelease_is_latest_when_there_is_no_release(app):
    _, token = await user(app, "alice")
    await publish(app.client, bundle(version="1.0.0-alpha.2"), token)
    await publish(app.client, bundle(version="1.0.0-alpha.10"), token)
    assert await latest_version(app) == "1.0.0-alpha.10"
    await publish(app.client, bundle(version="0.9.0"), token)
    assert await latest_version(app) == "0.9.0"


async def test_yank_unyank_deprecate(app):
    _, token = await user(app, "alice")
    for version in ("1.0.0", "1.1.0"):
        await publish(app.client, bundle(version=version), token)
    leaves = (await snapshot(app))["leaves"]

    status, answer = await change(app, token, "yank", "1.1.0", "crashes on start")
    assert status == 200, answer
    assert answer["yanked"] is True and answer["yank_reason"] == "crashes on start" and answer["changed"] is True
    assert answer["is_latest"] is False and await latest_version(app) == "1.0.0"
    check_proof(app, answer["ledger"])
    assert json.loads(answer["ledger"]["leaf"])["kind"] == "yank"
    row = await app.services.db.fetch_one("SELECT state, sha256 FROM versions WHERE version = '1.1.0'")
    assert row["state"] == "published"  # still downloadable by exact version: only the status changed

    status, answer = await change(app, token, "yank", "1.1.0", "again")
    assert status == 200 and answer["changed"] is False  # idempotent: no second leaf
    assert (await snapshot(app))["leaves"] == leaves + 1

    status, answer = await change(app, token, "unyank", "1.1.0")
    assert status == 200 and answer["yanked"] is False and answer["is_latest"] is True
    assert await latest_version(app) == "1.1.0"

    status, answer = await change(app, token, "deprecate", "1.0.0", "use 1.1.0")
    assert status == 200 and answer["deprecated"] is True and answer["deprecation_reason"] == "use 1.1.0"
    assert json.loads(answer["ledger"]["leaf"])["reason"] == "use 1.1.0"
    assert (await snapshot(app))["leaves"] == leaves + 3
    actions = [r["action"] for r in await app.services.db.fetch_all(
        "SELECT action FROM audit_events WHERE action IN ('package.yank', 'package.unyank', 'package.deprecate')")]
    assert actions == ["package.yank", "package.unyank", "package.deprecate"]


async def test_yanking_every_release_leaves_no_latest(app):
    _, token = await user(app, "alice")
    await publish(app.client, bundle(version="1.0.0"), token)
    await change(app, token, "yank", "1.0.0", "bad")
    assert await latest_version(app) is None


async def test_status_change_refusals(app):
    _, alice = await user(app, "alice")
    _, bob = await user(app, "bob")
    await publish(app.client, bundle(version="1.0.0"), alice)
    await publish(app.client, bundle("secret-tool", "1.0.0"), alice, visibility="private")
    before = await snapshot(app)

    status, answer = await change(app, alice, "yank", "1.0.0")
    assert status == 400 and answer["error"]["code"] == "reason_required"
    status, answer = await change(app, alice, "deprecate", "1.0.0", "")
    assert status == 400 and answer["error"]["code"] == "reason_required"
    status, answer = await change(app, alice, "yank", "9.9.9", "x")
    assert status == 404 and answer["error"]["code"] == "no_such_version"
    status, answer = await change(app, bob, "yank", "1.0.0", "vandalism")
    assert status == 403 and answer["error"]["code"] == "not_package_manager"
    # A private package answers like a missing one: its name is not confirmed to outsiders.
    hidden = await change(app, bob, "yank", "1.0.0", "x", ref="alice/secret-tool")
    missing = await change(app, bob, "yank", "1.0.0", "x", ref="alice/no-such-tool")
    assert hidden[0] == missing[0] == 404
    assert hidden[1]["error"]["message"].replace("secret-tool", "X") == \
        missing[1]["error"]["message"].replace("no-such-tool", "X")
    _, reader = await user(app, "reader", scopes=("read",))
    status, answer = await change(app, reader, "yank", "1.0.0", "x")
    assert status == 403 and answer["error"]["code"] == "insufficient_scope"
    assert await snapshot(app) == before


async def test_org_publishers_manage_org_packages(app):
    owner, olga = await user(app, "olga")
    _, pat = await user(app, "pat")
    _, mem = await user(app, "mem")
    await make_org(app, "acme", owner, pat="publisher", mem="member")
    assert (await publish(app.client, bundle(), olga, namespace="acme"))[0] == 201
    status, answer = await change(app, mem, "yank", "1.0.0", "x", ref="acme/hello-node")
    assert status == 403  # a member sees org packages but may not change them
    status, answer = await change(app, pat, "yank", "1.0.0", "broken", ref="acme/hello-node")
    assert status == 200 and answer["yanked"] is True
    leaf = await app.services.db.fetch_one("SELECT * FROM ledger_leaves ORDER BY idx DESC LIMIT 1")
    # An org-visible package: the public leaf is a sealed commitment; the opening names the yank.
    assert leaf["org_id"] is not None and json.loads(leaf["opening"])["kind"] == "yank"
    assert b"hello-node" not in leaf["data"]


# --- quarantine ---------------------------------------------------------------------------------------------

QUARANTINE = {".env": "API_URL=https://example.com\n"}  # a high finding: quarantined for review


async def test_quarantine_release_flow(app):
    _, alice = await user(app, "alice")
    _, admin = await user(app, "root", admin=True)
    await publish(app.client, bundle(version="1.0.0"), alice)
    status, body = await publish(app.client, bundle(version="1.1.0", extra=QUARANTINE), alice)
    assert status == 201, body
    assert body["state"] == "quarantined" and body["ledger"] is None and body["is_latest"] is False
    assert any(f["check_id"] == "secrets.env_file" for f in body["findings"])
    assert await latest_version(app) == "1.0.0"
    leaves = (await snapshot(app))["leaves"]
    assert leaves == 1  # only the published 1.0.0 is in the log
    status, answer = await change(app, alice, "yank", "1.1.0", "x")
    assert status == 409 and answer["error"]["code"] == "not_published"

    status, page, _ = await app.client.with_token(alice).get("/api/admin/quarantine")
    assert status == 403
    status, page, _ = await app.client.with_token(admin).get("/api/admin/quarantine")
    assert status == 200
    [item] = page["items"]
    assert (item["namespace"], item["name"], item["version"]) == ("alice", "hello-node", "1.1.0")
    assert item["publisher"] == "alice" and item["findings"] and page["next_after"] is None

    path = "/api/admin/quarantine/alice/hello-node/1.1.0"
    status, answer, _ = await app.client.with_token(alice).post(path + "/release", json={})
    assert status == 403
    status, answer, _ = await app.client.with_token(admin).post(path + "/release", json={"note": "env file is fine"})
    assert status == 200, answer
    assert answer["state"] == "published" and answer["is_latest"] is True
    check_proof(app, answer["ledger"])
    kinds = [json.loads(r["data"])["kind"] for r in await app.services.db.fetch_all(
        "SELECT data FROM ledger_leaves WHERE idx >= ? ORDER BY idx", (leaves,))]
    assert kinds == ["publish", "quarantine-release"]
    assert json.loads(answer["ledger"]["leaf"])["publisher"] == "alice"
    assert await latest_version(app) == "1.1.0"
    status, answer, _ = await app.client.with_token(admin).post(path + "/release", json={})
    assert status == 409 and answer["error"]["code"] == "not_quarantined"
    status, page, _ = await app.client.with_token(admin).get("/api/admin/quarantine")
    assert page["items"] == []


async def test_quarantine_reject_keeps_the_version_taken(app):
    _, alice = await user(app, "alice")
    _, admin = await user(app, "root", admin=True)
    await publish(app.client, bundle(extra=QUARANTINE), alice)
    path = "/api/admin/quarantine/alice/hello-node/1.0.0"
    status, answer, _ = await app.client.with_token(admin).post(path + "/reject", json={})
    assert status == 400 and answer["error"]["code"] == "reason_required"
    status, answer, _ = await app.client.with_token(admin).post(path + "/reject", json={"reason": "leaks config"})
    assert status == 200 and answer["state"] == "rejected" and answer["review_reason"] == "leaks config"
    assert (await snapshot(app))["leaves"] == 0  # never visible, never in the log
    assert await latest_version(app) is None
    status, body = await publish(app.client, bundle(), alice)
    assert status == 409 and "rejected" in body["error"]["message"]


async def test_quarantine_pages(app):
    _, alice = await user(app, "alice")
    _, admin = await user(app, "root", admin=True)
    for version in ("1.0.0", "1.0.1", "1.0.2"):
        await publish(app.client, bundle(version=version, extra=QUARANTINE), alice)
    status, page, _ = await app.client.with_token(admin).get("/api/admin/quarantine", params={"limit": "2"})
    assert [i["version"] for i in page["items"]] == ["1.0.0", "1.0.1"] and page["next_after"]
    status, page, _ = await app.client.with_token(admin).get(
        "/api/admin/quarantine", params={"limit": "2", "after": str(page["next_after"])})
    assert [i["version"] for i in page["items"]] == ["1.0.2"] and page["next_after"] is None
    status, page, _ = await app.client.with_token(admin).get("/api/admin/quarantine", params={"limit": "x"})
    assert status == 400


async def test_a_crashing_scanner_quarantines_never_publishes(app):
    _, alice = await user(app, "alice")

    def explode(view):
        raise RuntimeError("scanner bug")

    crashing = [*SCANNERS, Scanner("explodes", "bundle", explode)]
    app.services.publisher._inspector = lambda path, limits, trust, **kw: inspect_bundle(
        path, limits, trust, scan_run=ScanRun(crashing), **kw)
    status, body = await publish(app.client, bundle(), alice)
    assert status == 201, body
    assert body["state"] == "quarantined" and body["scanner_errors"] == ["explodes"]
    assert body["ledger"] is None and await latest_version(app) is None
