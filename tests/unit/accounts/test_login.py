"""Signing in with a password, and its throttling: per address (every attempt) and per account and address
(growing delays after failures, which never hold back the owner signing in from elsewhere)."""

from __future__ import annotations

import pytest

from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.config import AccountSettings
from mcpstore_appliance.errors import RateLimited, Unauthenticated

from .conftest import PASSWORD, audit_actions


@pytest.fixture
def account_settings() -> AccountSettings:
    return AccountSettings(login_failures_before_delay=2, login_attempts_per_ip_per_minute=6)


@pytest.fixture
async def erin(accounts: AccountService):
    user = await accounts.create_user("erin@example.com", "erin", PASSWORD)
    now = [1000.0]
    accounts.login_failures.clock = lambda: now[0]  # the delays' clock, moved by the test
    return user, now


async def test_a_user_signs_in_by_name_or_email_and_it_is_audited(accounts, db, erin):
    user, _ = erin
    assert await accounts.login("erin", PASSWORD, "192.0.2.1") == user
    assert await accounts.login("  erin@example.com ", PASSWORD, "192.0.2.1") == user
    assert (await audit_actions(db)).count("user.login") == 2


async def test_every_failure_gives_the_same_answer(accounts, erin):
    for login, password in (("erin", "wrong password!"), ("nobody", PASSWORD), ("", "")):
        with pytest.raises(Unauthenticated) as refused:
            await accounts.login(login, password, f"192.0.2.{len(login) + 10}")
        assert (refused.value.code, refused.value.message) == ("bad_credentials", "wrong email or password")


async def test_a_disabled_account_cannot_sign_in(accounts, db, erin):
    async with db.write() as tx:
        await tx.execute("UPDATE users SET is_disabled = 1 WHERE username = 'erin'")
    with pytest.raises(Unauthenticated):
        await accounts.login("erin", PASSWORD, "192.0.2.1")


async def test_failures_close_the_account_to_that_address_only_for_a_while(accounts, erin):
    user, now = erin
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            await accounts.login("erin", "a wrong guess", "192.0.2.66")
    with pytest.raises(RateLimited) as waiting:
        await accounts.login("erin", PASSWORD, "192.0.2.66")  # refused untried, even with the right password
    assert waiting.value.retry_after >= 1
    assert await accounts.login("erin", PASSWORD, "198.51.100.7") == user  # the owner, elsewhere
    now[0] += waiting.value.retry_after
    assert await accounts.login("erin", PASSWORD, "192.0.2.66") == user


async def test_an_address_gets_a_limited_number_of_attempts_a_minute(accounts, erin):
    user, _ = erin
    for _ in range(6):
        assert await accounts.login("erin", PASSWORD, "203.0.113.9") == user
    with pytest.raises(RateLimited):
        await accounts.login("erin", PASSWORD, "203.0.113.9")
    assert await accounts.login("erin", PASSWORD, "203.0.113.10") == user
