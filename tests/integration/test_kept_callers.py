"""Signed-in callers kept between requests (AccountService.change_stamp), against a real app on a real port: a
token or session is read from the database once while nothing is committed, and every change that matters to
who the caller is (revocation, expiry, a disabled account, a new role, a logout, another process's commit)
is seen by the next request, or within a second for another process."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from mcpstore_appliance.accounts import tokens as accounts_tokens
from mcpstore_appliance.db import stamp as stamp_module
from tests.seed import FAST_LEDGER, make_org, publish


pytestmark = pytest.mark.usefixtures("exact_stamp")


@pytest.fixture
async def appliance(start_app):
    return await start_app(**FAST_LEDGER)


@pytest.fixture
def database_reads(appliance, monkeypatch):
    """How many reads the accounts service makes (a count around the real Database methods)."""
    reads = []
    db = appliance.services.accounts.db
    for name in ("fetch_one", "fetch_all"):
        real = getattr(db, name)

        async def counted(*args, _real=real, **kwargs):
            reads.append(args[0])
            return await _real(*args, **kwargs)

        monkeypatch.setattr(db, name, counted)
    return reads


async def me(appliance, token: str | None = None, **kwargs):
    status, body, _ = await appliance.client.with_token(token).get("/api/me", **kwargs)
    return status, body


async def test_a_token_and_a_session_are_read_once_while_nothing_changes(appliance, database_reads):
    user, token = await appliance.user("alice")
    session, _ = await appliance.services.accounts.start_session(user)
    cookie = {"Cookie": f"mcpstore_session={session}"}
    assert (await me(appliance, token))[0] == 200  # reads the token and writes its last use
    assert (await me(appliance, token))[0] == 200  # that write moved the stamp: read once more, then kept
    assert (await me(appliance, headers=cookie))[1]["via"] == "session"
    database_reads.clear()
    for _ in range(5):
        assert (await me(appliance, token))[1]["username"] == "alice"
        assert (await me(appliance, headers=cookie))[1]["username"] == "alice"
    assert database_reads == []  # neither the callers nor their organizations (/api/me lists them)


async def test_a_revoked_token_and_a_disabled_account_fail_at_once(appliance):
    _, owner = await appliance.user("ivan")
    client = appliance.client.with_token(owner)
    _, created, _ = await client.post("/api/tokens", json={"name": "ci", "scopes": ["read"]})
    for _ in range(2):
        assert (await me(appliance, created["token"]))[0] == 200
    assert (await client.delete(f"/api/tokens/{created['id']}"))[0] == 204
    status, body = await me(appliance, created["token"])
    assert status == 401 and body["error"]["code"] == "token_revoked"
    assert (await me(appliance, owner))[0] == 200
    async with appliance.services.db.write() as tx:
        await tx.execute("UPDATE users SET is_disabled = 1 WHERE username = 'ivan'")
    status, body = await me(appliance, owner)
    assert status == 401 and body["error"]["code"] == "account_disabled"


async def test_a_kept_token_still_expires(appliance):
    _, token = await appliance.user("erin")
    async with appliance.services.db.write() as tx:
        await tx.execute("UPDATE api_tokens SET expires_at = ?, last_used_at = ?", (time.time() + 1.5, time.time()))
    assert (await me(appliance, token))[0] == 200  # kept from here on
    await asyncio.sleep(1.6)
    status, body = await me(appliance, token)
    assert status == 401 and body["error"]["code"] == "token_expired"


async def org_package_and_outsider(appliance):
    """acme/internal, visible to acme's members, and max, not yet one, whose token is kept by now;
    returns (owner's token, max, max's token, the package's path)."""
    _, owner = await appliance.user("olga")
    member_user, member = await appliance.user("max")
    await make_org(appliance, owner, "acme")
    await publish(appliance, owner, "internal", namespace="acme", options={"visibility": "org"})
    path = "/api/packages/acme/internal"
    for _ in range(2):
        assert (await appliance.client.with_token(member).get(path))[0] == 404
    return owner, member_user, member, path


async def test_a_new_role_and_a_logout_are_seen_by_the_next_request(appliance):
    owner, member_user, member, path = await org_package_and_outsider(appliance)
    status, _, _ = await appliance.client.with_token(owner).put("/api/orgs/acme/members/max", json={"role": "member"})
    assert status == 200
    assert (await appliance.client.with_token(member).get(path))[0] == 200
    assert [(org["slug"], org["role"]) for org in (await me(appliance, member))[1]["orgs"]] == [("acme", "member")]
    await appliance.client.with_token(owner).put("/api/orgs/acme/members/max", json={"role": "publisher"})
    assert [org["role"] for org in (await me(appliance, member))[1]["orgs"]] == ["publisher"]
    session, _ = await appliance.services.accounts.start_session(member_user)
    cookie = {"Cookie": f"mcpstore_session={session}"}
    for _ in range(2):
        assert (await me(appliance, headers=cookie))[0] == 200
    await appliance.services.accounts.end_session(session)
    assert (await me(appliance, headers=cookie))[0] == 401


async def test_another_processs_change_is_seen_within_about_a_second(appliance, monkeypatch):
    """`mcpstore admin add-member` commits from its own process; the appliance sees other processes' commits
    through SQLite's data_version, read at most once a second."""
    monkeypatch.setattr(stamp_module, "EXTERNAL_CHECK_SECONDS", 1.0)  # the real interval
    _, _, member, path = await org_package_and_outsider(appliance)
    done = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "mcpstore_appliance.cli.main", "admin", "add-member", "acme", "max", "--role", "member",
        "--data", str(appliance.data_dir)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = []

    async def visible():
        seen.append((await appliance.client.with_token(member).get(path))[0])

    for _ in range(40):  # about 2 s
        await visible()
        if seen[-1] == 200:
            break
        await asyncio.sleep(0.05)
    assert seen[-1] == 200, seen


async def test_last_use_is_still_recorded(appliance, monkeypatch):
    monkeypatch.setattr(accounts_tokens, "LAST_USED_RESOLUTION", 0.05)
    _, token = await appliance.user("lee")

    async def last_used() -> float:
        return await appliance.services.db.fetch_value("SELECT last_used_at FROM api_tokens")

    assert (await me(appliance, token))[0] == 200
    first = await last_used()
    await me(appliance, token)
    await asyncio.sleep(0.1)
    await me(appliance, token)
    assert await last_used() > first
