"""Getting an account: sign-up as the settings allow, invitations, and the first administrator's setup link."""

from __future__ import annotations

import time

import pytest

from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.config import AccountSettings
from mcpstore_appliance.errors import Forbidden

from .conftest import PASSWORD


def service(db, mode: str) -> AccountService:
    return AccountService(db, AccountSettings(signup=mode))


async def test_open_sign_up_makes_a_plain_user(db):
    user = await service(db, "open").signup("ann@example.com", "ann", PASSWORD, ip="192.0.2.1")
    assert user.username == "ann" and not user.is_admin
    assert await db.fetch_value("SELECT actor FROM audit_events WHERE action = 'user.create'") == "anonymous"


async def test_closed_sign_up_refuses_everyone(db):
    with pytest.raises(Forbidden) as refused:
        await service(db, "closed").signup("ann@example.com", "ann", PASSWORD)
    assert refused.value.code == "signup_closed"
    assert await db.fetch_value("SELECT count(*) FROM users") == 0


async def test_invite_only_sign_up_needs_an_unused_unexpired_code(db, person):
    accounts = service(db, "invite")
    _, root = await person("root", admin=True)
    for code in (None, "made-up"):
        with pytest.raises(Forbidden) as refused:
            await accounts.signup("ann@example.com", "ann", PASSWORD, invite_code=code)
        assert refused.value.code == "invite_required"
    code = await accounts.create_invite(root, email="ann@example.com")
    assert (await accounts.signup("ann@example.com", "ann", PASSWORD, invite_code=code)).username == "ann"
    with pytest.raises(Forbidden):
        await accounts.signup("ben@example.com", "ben", PASSWORD, invite_code=code)  # used
    stale = await accounts.create_invite(root)
    async with db.write() as tx:
        await tx.execute("UPDATE invites SET expires_at = ? WHERE used_at IS NULL", (time.time() - 1,))
    with pytest.raises(Forbidden):
        await accounts.signup("ben@example.com", "ben", PASSWORD, invite_code=stale)


async def test_an_org_invite_makes_the_new_user_a_member_with_its_role(db, person):
    accounts = service(db, "invite")
    _, owner = await person("olga")
    org = await accounts.create_org(owner, "acme", "Acme")
    owner = await accounts.principal_for_user(owner.id)
    code = await accounts.create_invite(owner, org_slug="acme", role="publisher")
    user = await accounts.signup("ann@example.com", "ann", PASSWORD, invite_code=code)
    assert (await accounts.principal_for_user(user.id)).memberships == {org.id: "publisher"}


async def test_only_administrators_invite_to_the_registry_and_managers_to_an_org(accounts, person):
    _, plain = await person("plain")
    with pytest.raises(Forbidden):
        await accounts.create_invite(plain)
    _, owner = await person("olga")
    await accounts.create_org(owner, "acme", "Acme")
    await accounts.set_member(None, "acme", "plain", "member")
    plain = await accounts.principal_for_user(plain.id)
    with pytest.raises(Forbidden):
        await accounts.create_invite(plain, org_slug="acme")


async def test_the_setup_link_makes_the_first_administrator_once(accounts):
    code = await accounts.create_setup_link_if_fresh()
    assert code
    admin = await accounts.complete_setup(code, "root@example.com", "root", PASSWORD)
    assert admin.is_admin
    with pytest.raises(Forbidden) as refused:
        await accounts.complete_setup(code, "two@example.com", "two", PASSWORD)
    assert refused.value.code == "setup_used"
    assert await accounts.create_setup_link_if_fresh() is None  # there are users now


async def test_a_new_setup_link_replaces_an_older_one(accounts):
    old = await accounts.create_setup_link_if_fresh()
    new = await accounts.create_setup_link_if_fresh()
    with pytest.raises(Forbidden):
        await accounts.complete_setup(old, "root@example.com", "root", PASSWORD)
    assert (await accounts.complete_setup(new, "root@example.com", "root", PASSWORD)).is_admin
