"""The policy editor page of org admins: a preview of what a draft allows and refuses among the org's packages
(nothing saved), saving as a new audited version, CSRF, and refusals for members, strangers and bad drafts."""

from __future__ import annotations

import html

import pytest

from mcpstore_appliance.web.auth import SESSION_COOKIE
from tests.seed import make_org, publish

DRAFT = {"allowed": "acme/tool ^1.0.0", "minimum_versions": "", "blocked_packages": "acme/old",
         "blocked_publishers": "", "auto_install": "acme/tool", "allow_hosted_servers": "on"}


@pytest.fixture
async def world(start_app):
    app = await start_app()
    alice, alice_token = await app.user("alice")
    bob, _ = await app.user("bob")
    eve, _ = await app.user("eve")
    await make_org(app, alice_token, "acme", {"bob": "member"})
    await publish(app, alice_token, "tool", namespace="acme")
    await publish(app, alice_token, "old", namespace="acme")
    return {"app": app, "alice": alice, "bob": bob, "eve": eve}


async def browser(world, who: str):
    """(headers with the session cookie, the session's CSRF token)."""
    session_id, csrf = await world["app"].services.accounts.start_session(world[who])
    return {"Cookie": f"{SESSION_COOKIE}={session_id}", "Accept": "text/html"}, csrf


async def _versions(app) -> int:
    return await app.services.db.fetch_value("SELECT count(*) FROM org_policies")


async def test_preview_shows_decisions_and_saves_nothing(world):
    app = world["app"]
    headers, csrf = await browser(world, "alice")
    status, body, _ = await app.client.get("/orgs/acme/policy", headers=headers)
    assert status == 200 and b"Group policy" in body and b'name="csrf_token"' in body
    status, body, _ = await app.client.post("/orgs/acme/policy", headers=headers,
                                            data={**DRAFT, "csrf_token": csrf, "action": "preview"})
    page = html.unescape(body.decode())
    assert status == 200, page[:500]
    assert "acme/old" in page and "blocked_package" in page and "is blocked by your organization" in page
    assert "allowed, installed automatically" in page  # acme/tool
    assert await _versions(app) == 0


async def test_saving_makes_an_audited_version(world):
    app = world["app"]
    headers, csrf = await browser(world, "alice")
    status, _, response = await app.client.post("/orgs/acme/policy", headers=headers, allow_redirects=False,
                                                data={**DRAFT, "csrf_token": csrf, "action": "save",
                                                      "expected_version": "0"})
    assert status == 303 and response.headers["Location"].startswith("/orgs/acme/policy")
    assert await _versions(app) == 1
    events = await app.services.db.fetch_all("SELECT actor FROM audit_events WHERE action = 'policy.update'")
    assert [e["actor"] for e in events] == ["alice"]
    org = await app.services.accounts.get_org("acme")
    policy = (await app.services.policy.current(org)).policy
    assert policy.allowed == {"acme/tool": "^1.0.0"} and policy.blocked_packages == ["acme/old"]
    assert policy.allow_hosted_servers and not policy.require_signature and not policy.allow_remote_servers
    # a second save from the same (now stale) page is refused, and nothing changes
    status, body, _ = await app.client.post("/orgs/acme/policy", headers=headers,
                                            data={**DRAFT, "require_signature": "on", "csrf_token": csrf,
                                                  "action": "save", "expected_version": "0"})
    assert status == 409 and b"changed meanwhile" in body
    assert await _versions(app) == 1


@pytest.mark.parametrize("who, form, status", [
    ("alice", {**DRAFT, "action": "save"}, 403),  # no CSRF token
    ("alice", {**DRAFT, "allowed": "acme/tool >=banana", "action": "save"}, 400),
    ("alice", {**DRAFT, "blocked_publishers": "Not A Slug!", "action": "preview"}, 400),
    ("alice", {**DRAFT, "minimum_versions": "acme/tool", "action": "save"}, 400),
    ("bob", {**DRAFT, "action": "save"}, 403),  # a member, not an admin
    ("eve", {**DRAFT, "action": "preview"}, 404),  # a stranger: the org looks missing
])
async def test_refusals_change_nothing(world, who, form, status):
    app = world["app"]
    headers, csrf = await browser(world, who)
    data = form if status == 403 and who == "alice" else {**form, "csrf_token": csrf}
    got, body, _ = await app.client.post("/orgs/acme/policy", headers=headers, data=data)
    assert got == status, body[:300]
    assert await _versions(app) == 0
    assert await app.services.db.fetch_value("SELECT count(*) FROM audit_events WHERE action = 'policy.update'") == 0


async def test_only_admins_open_the_editor(world):
    app = world["app"]
    for who, status in (("bob", 403), ("eve", 404)):
        headers, _ = await browser(world, who)
        assert (await app.client.get("/orgs/acme/policy", headers=headers))[0] == status
    status, _, response = await app.client.get("/orgs/acme/policy", headers={"Accept": "text/html"},
                                               allow_redirects=False)
    assert status == 303 and response.headers["Location"].startswith("/login")
