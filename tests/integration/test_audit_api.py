"""The audit log over HTTP on a real appliance: every event family is recorded with NIST AU-3's fields (what,
when in ms, where, source, outcome, who, target), org admins read their org's events and site admins all,
with filters and pages; exports (JSON Lines, CEF, syslog) are audited; foreign orgs are 404."""

from __future__ import annotations

import json
import re

import pytest

from tests.data.bundles import bundle_bytes
from tests.seed import bundle, make_org, manifest, publish

TS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
QUARANTINE = {".env": "API_URL=https://example.com\n"}  # a high finding: quarantined for review


@pytest.fixture
async def world(appliance):
    """alice owns acme (bob is its member, carol its auditor); eve owns evil; root is a site admin."""
    tokens = {}
    for name in ("alice", "bob", "carol", "eve"):
        _, tokens[name] = await appliance.user(name)
    _, tokens["root"] = await appliance.user("root", admin=True)
    await make_org(appliance, tokens["alice"], "acme", {"bob": "member", "carol": "auditor"})
    await make_org(appliance, tokens["eve"], "evil")
    return appliance, tokens


async def events(app, token, path="/api/orgs/acme/audit/events", **query):
    status, body, _ = await app.client.with_token(token).get(path, params=query)
    assert status == 200, body
    return body["events"]


def assert_au3(event, action, *, who, target=None, outcome="success"):
    """Every AU-3 field is there: what, when (UTC, ms), where, source, outcome, who, target."""
    assert event["action"] == action
    assert TS.match(event["ts"]), event["ts"]
    assert event["where"], event
    assert event["actor"]["ip"] == "127.0.0.1", event  # the source address of the request
    assert event["outcome"]["result"] == outcome
    assert event["actor"]["name"] == who
    assert event["target"] if target is None else event["target"] == target
    assert event["event_id"] and event["hash"] and event["request_id"]


async def find(app, token, action, path="/api/orgs/acme/audit/events"):
    found = await events(app, token, path, action=action)
    assert found, f"no {action} event"
    return found[0]


async def test_sign_in_and_its_failures(world):
    app, t = world
    status, _, _ = await app.client.post("/api/auth/token", json={"login": "bob", "password": "wrong"})
    assert status == 401
    status, _, _ = await app.client.post("/api/auth/token", json={"login": "bob", "password": "correct horse battery"},
                                         headers={"User-Agent": "audit-test/1"})
    assert status == 201
    logins = await events(app, t["root"], "/api/audit/events", action="user.login")
    assert [e["outcome"]["result"] for e in logins] == ["success", "failure"]  # newest first
    assert_au3(logins[1], "user.login", who="bob", target="bob", outcome="failure")
    assert logins[1]["outcome"]["reason"] == "bad_credentials"
    assert_au3(logins[0], "user.login", who="bob", target="bob")
    assert logins[0]["actor"]["user_agent"] == "audit-test/1" and logins[0]["where"] == "POST /api/auth/token"


async def test_token_creation_and_revocation(world):
    app, t = world
    client = app.client.with_token(t["bob"])
    status, body, _ = await client.post("/api/tokens", json={"name": "ci", "scopes": ["read"]})
    assert status == 201, body
    status, _, _ = await client.delete(f"/api/tokens/{body['id']}")
    assert status in (200, 204)
    for action in ("token.create", "token.revoke"):
        assert_au3(await find(app, t["root"], action, "/api/audit/events"), action, who="bob")


async def test_publish_yank_and_quarantine_decisions(world):
    app, t = world
    await publish(app, t["alice"], "tool", "1.0.0", namespace="acme")
    status, body, _ = await app.client.with_token(t["alice"]).post("/api/packages/acme/tool/versions/1.0.0/yank",
                                                                    json={"reason": "broken"})
    assert status == 200, body
    status, body, _ = await app.client.with_token(t["alice"]).post(
        "/api/packages", params={"namespace": "acme"}, data=bundle_bytes(manifest("tool", "1.1.0"), QUARANTINE),
        headers={"Content-Type": "application/octet-stream"})
    assert status == 201 and body["state"] == "quarantined", body
    status, body, _ = await app.client.with_token(t["root"]).post(
        "/api/admin/quarantine/acme/tool/1.1.0/release", json={})
    assert status == 200, body
    assert_au3(await find(app, t["alice"], "package.publish"), "package.publish", who="alice")
    assert_au3(await find(app, t["alice"], "package.yank"), "package.yank", who="alice", target="acme/tool@1.0.0")
    assert_au3(await find(app, t["carol"], "package.quarantine_release"), "package.quarantine_release", who="root")


async def test_downloads_by_org_members(world):
    app, t = world
    await publish(app, t["alice"], "tool", "1.0.0", namespace="acme")
    status, _, _ = await app.client.with_token(t["bob"]).get("/api/packages/acme/tool/versions/1.0.0/download")
    assert status == 200
    status, _, _ = await app.client.get("/api/packages/acme/tool/versions/1.0.0/download")
    assert status == 404  # a private package: nothing for anonymous callers, nothing audited
    downloads = await events(app, t["alice"], action="package.download")
    assert len(downloads) == 1
    assert_au3(downloads[0], "package.download", who="bob", target="acme/tool@1.0.0")


async def test_policy_and_role_changes(world):
    app, t = world
    client = app.client.with_token(t["alice"])
    status, body, _ = await client.put("/api/orgs/acme/policy", json={"policy": {"require_signature": True}})
    assert status == 200, body
    status, body, _ = await client.put("/api/orgs/acme/members/bob", json={"role": "publisher"})
    assert status == 200, body
    assert_au3(await find(app, t["alice"], "policy.update"), "policy.update", who="alice", target="acme")
    assert_au3(await find(app, t["alice"], "org.member.set"), "org.member.set", who="alice", target="bob")


async def test_purchases_are_audited_and_the_report_totals_match_the_journal(world):
    app, t = world
    await publish(app, t["alice"], "paid", "1.0.0", namespace="acme",
                  options={"pricing": "subscription", "amount": "5.00", "currency": "usd"})
    status, body, _ = await app.client.with_token(t["alice"]).post(
        "/api/packages/acme/paid/grants", json={"user": "eve", "reference": "INV-1", "amount": "5.00"})
    assert status == 201, body
    assert_au3(await find(app, t["alice"], "market.grant"), "market.grant", who="alice")
    status, page, _ = await app.client.with_token(t["alice"]).get("/orgs/acme/audit/report")
    assert status in (302, 303, 401, 403)  # pages are for browser sessions


async def test_reading_is_scoped_and_foreign_orgs_are_404(world):
    app, t = world
    mine = await events(app, t["eve"], "/api/orgs/evil/audit/events")
    assert {e["org"] for e in mine} == {"evil"}
    for path in ("/api/orgs/acme/audit/events", "/api/orgs/acme/audit/export", "/api/orgs/nosuch/audit/events"):
        status, body, _ = await app.client.with_token(t["eve"]).get(path)
        assert status == 404 and body["error"]["code"] == "not_found", (path, body)
    status, body, _ = await app.client.with_token(t["bob"]).get("/api/orgs/acme/audit/events")
    assert status == 403  # a plain member does not read the audit log
    assert await events(app, t["carol"])  # the auditor does
    status, body, _ = await app.client.with_token(t["alice"]).get("/api/audit/events")
    assert status == 403  # the whole site's: site administrators only
    site = await events(app, t["root"], "/api/audit/events")
    assert {"acme", "evil", None} <= {e["org"] for e in site}
    only = await events(app, t["root"], "/api/audit/events", org="evil")
    assert {e["org"] for e in only} == {"evil"}


async def test_filters_and_pages(world):
    app, t = world
    for i in range(5):
        await app.client.with_token(t["alice"]).put("/api/orgs/acme/members/bob",
                                                    json={"role": "publisher" if i % 2 else "member"})
    first = await events(app, t["alice"], action="org.member.set", limit="2")
    status, body, _ = await app.client.with_token(t["alice"]).get("/api/orgs/acme/audit/events",
                                                                   params={"action": "org.member.set", "limit": "2"})
    assert body["next"] and len(body["events"]) == 2
    status, second, _ = await app.client.with_token(t["alice"]).get("/api/orgs/acme/audit/events" + body["next"])
    assert status == 200 and second["events"][0]["seq"] < first[-1]["seq"]
    assert {e["actor"]["name"] for e in await events(app, t["alice"], actor="alice")} == {"alice"}
    assert await events(app, t["alice"], outcome="failure") == []
    assert len(await events(app, t["alice"], action="org.")) >= 7  # a prefix ending in "."
    assert await events(app, t["alice"], since="2999-01-01") == []
    assert await events(app, t["alice"], until="2000-01-01") == []
    for bad in ({"outcome": "maybe"}, {"since": "yesterday"}, {"limit": "0"}, {"limit": "x"}, {"before": "-1"},
                {"actor": "a" * 201}, {"until": "2026-13-45"}):
        status, body, _ = await app.client.with_token(t["alice"]).get("/api/orgs/acme/audit/events", params=bad)
        assert status == 400 and body["error"]["code"], (bad, body)


async def test_exports_are_audited_in_each_format(world):
    app, t = world
    client = app.client.with_token(t["alice"])
    for fmt in ("jsonl", "cef", "syslog"):
        status, body, response = await client.get("/api/orgs/acme/audit/export", params={"format": fmt})
        assert status == 200, body
        text = body.decode() if isinstance(body, bytes) else "\n".join(json.dumps(b) for b in [body])
        lines = [line for line in text.splitlines() if line]
        assert lines, fmt
        if fmt == "jsonl":
            assert all(json.loads(line)["org"] == "acme" for line in lines)
        elif fmt == "cef":
            assert all(line.startswith("CEF:0|mcpstore|mcpstore appliance|") for line in lines)
        else:
            assert all(re.match(r"^<1(10|08)>1 \d{4}-\d\d-\d\dT[\d:.]+Z \S+ mcpstore - \S+ \[mcpstore@32473 ", line)
                       for line in lines), lines[0]
    exports = await events(app, t["alice"], action="audit.export")
    assert [json.loads(json.dumps(e["details"]))["format"] for e in exports] == ["syslog", "cef", "jsonl"]
    assert_au3(exports[0], "audit.export", who="alice", target="acme")
    status, body, _ = await client.get("/api/orgs/acme/audit/export", params={"format": "xml"})
    assert status == 400 and body["error"]["code"] == "invalid_format"
    status, body, _ = await client.post("/api/orgs/acme/audit/push")
    assert status == 409 and body["error"]["code"] == "syslog_not_configured"


async def test_hosted_calls_through_the_metering_hook(world):
    """The gateway's meter writes each tools/call's audit event with its rows (no sandbox needed for that)."""
    from mcpstore_appliance.gateway.metering import Invocation, Meter

    app, t = world
    await publish(app, t["alice"], "tool", "1.0.0", namespace="acme")
    db = app.services.db
    ids = await db.fetch_one("SELECT p.id AS package_id, v.id AS version_id, p.org_id FROM packages p"
                             " JOIN versions v ON v.package_id = p.id WHERE p.name = 'tool'")
    bob = await db.fetch_value("SELECT id FROM users WHERE username = 'bob'")
    meter = Meter(db)
    await meter.record(Invocation(bob, ids["package_id"], ids["version_id"], ids["org_id"], "echo", "mcp", "ok", 3.5))
    await meter.record(Invocation(bob, ids["package_id"], ids["version_id"], ids["org_id"], "echo", "invoke",
                                  "timeout", 5000.0))
    assert await meter.flush() == 2
    calls = await events(app, t["alice"], action="package.call")
    assert [(c["outcome"]["result"], c["outcome"]["reason"]) for c in calls] == [("failure", "timeout"), ("success", None)]
    assert calls[1]["actor"]["name"] == "bob" and calls[1]["target"] == "acme/tool#echo" and calls[1]["where"] == "gateway"
    assert calls[1]["details"]["via"] == "mcp" and calls[1]["details"]["at_ms"] > 0


async def test_a_serving_appliance_seals_new_events_by_itself(start_app):
    import asyncio

    app = await start_app(audit={"seal_interval_seconds": 0.5})
    _, alice = await app.user("alice")
    await make_org(app, alice, "acme")
    db = app.services.db
    for _ in range(300):  # no timing assert: wait (up to 30 s) for the timer's seal
        if await db.fetch_value("SELECT count(*) FROM audit_seals") >= 2:
            break
        await asyncio.sleep(0.1)
    seals = await db.fetch_all("SELECT chain, last_seq, ledger_index FROM audit_seals ORDER BY id")
    assert {s["chain"] for s in seals} >= {0, 1} and all(s["ledger_index"] is not None for s in seals)
    from mcpstore_appliance.web.api_audit import AUDIT

    assert (await app.app[AUDIT].verify()).ok
