"""Web sessions, and the cache of the callers behind sessions and tokens (CallerCache): a caller is read once
while the change stamp stays the same, and again as soon as it moves."""

from __future__ import annotations

import time

import pytest

from mcpstore_appliance.accounts.models import SESSION_SCOPES
from mcpstore_appliance.accounts.service import AccountService


async def test_a_session_is_its_user_with_every_scope_and_a_csrf_token(accounts, db, person):
    user, _ = await person("alice")
    session_id, csrf = await accounts.start_session(user)
    principal, session_csrf = await accounts.principal_for_session(session_id)
    assert principal.user == user and principal.scopes == SESSION_SCOPES and principal.via == "session"
    assert session_csrf == csrf and csrf != session_id
    assert session_id not in str(await db.fetch_all("SELECT * FROM web_sessions"))  # stored only as a hash


async def test_an_ended_expired_or_unknown_session_is_nobody(accounts, db, person):
    user, _ = await person("alice")
    ended, _ = await accounts.start_session(user)
    expired, _ = await accounts.start_session(user)
    await accounts.end_session(ended)
    async with db.write() as tx:
        await tx.execute("UPDATE web_sessions SET expires_at = ?", (time.time() - 1,))
    for session_id in (ended, expired, "unknown", "", "x" * 101):
        assert await accounts.principal_for_session(session_id) is None


async def test_a_disabled_account_has_no_session(accounts, db, person):
    user, _ = await person("alice")
    session_id, _ = await accounts.start_session(user)
    async with db.write() as tx:
        await tx.execute("UPDATE users SET is_disabled = 1 WHERE id = ?", (user.id,))
    assert await accounts.principal_for_session(session_id) is None


async def test_callers_are_cached_while_the_stamp_stays_and_read_again_when_it_moves(db, account_settings):
    stamp = [0]
    accounts = AccountService(db, account_settings, change_stamp=lambda: stamp[0])
    user = await accounts.create_user("bob@example.com", "bob", None)
    session_id, _ = await accounts.start_session(user)
    principal = await accounts.principal_for_user(user.id)
    secret, _ = await accounts.create_token(principal, "t", ["read"])
    assert await accounts.principal_for_session(session_id) is not None
    await accounts.principal_for_token(secret)
    async with db.write() as tx:  # changed behind the cache's back: the stamp does not move
        await tx.execute("DELETE FROM web_sessions")
        await tx.execute("UPDATE api_tokens SET revoked_at = 1")
    assert await accounts.principal_for_session(session_id) is not None
    assert (await accounts.principal_for_token(secret)).user == user
    stamp[0] += 1
    assert await accounts.principal_for_session(session_id) is None
    with pytest.raises(Exception, match="revoked"):
        await accounts.principal_for_token(secret)


async def test_the_stamp_can_be_given_after_the_service_is_built(db, account_settings):
    accounts = AccountService(db, account_settings)
    accounts.change_stamp = lambda: "fixed"
    assert accounts.callers.stamp() == "fixed"
