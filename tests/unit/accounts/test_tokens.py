"""API tokens, and the rule that a token never creates a token with more rights than itself: no scope it lacks,
no wider org binding and no later expiry."""

from __future__ import annotations

import time

import pytest

from mcpstore_appliance.accounts.models import SCOPES
from mcpstore_appliance.accounts.service import AccountService
from mcpstore_appliance.config import AccountSettings
from mcpstore_appliance.errors import Forbidden, InvalidInput, NotFound, RateLimited, Unauthenticated

from .conftest import audit_actions

DAY = 86400


@pytest.fixture
def account_settings() -> AccountSettings:
    return AccountSettings(token_max_days=30, token_requests_per_ip_per_minute=3)


async def token(accounts: AccountService, principal, *scopes: str, **kwargs):
    """(secret, info, the principal the new token authenticates as)."""
    secret, info = await accounts.create_token(principal, "t", list(scopes), **kwargs)
    return secret, info, await accounts.principal_for_token(secret)


async def test_a_token_authenticates_as_its_user_with_its_scopes(accounts, db, person):
    user, alice = await person("alice")
    secret, info, holder = await token(accounts, alice, "read", "publish")
    assert secret.startswith("mcps_") and info.prefix == secret[:12] and info.scopes == ["publish", "read"]
    assert holder.user == user and holder.scopes == {"read", "publish"} and holder.via == "token"
    assert 29 * DAY < holder.expires_at - time.time() <= 30 * DAY  # the longest allowed, by default
    assert secret not in str(await db.fetch_all("SELECT * FROM api_tokens"))  # stored only as a hash
    assert "token.create" in await audit_actions(db)


async def test_the_default_scope_is_read(accounts, person):
    _, alice = await person("alice")
    _, info, holder = await token(accounts, alice)
    assert info.scopes == ["read"] and holder.scopes == {"read"}


async def test_a_token_cannot_create_a_token_with_a_scope_it_lacks(accounts, person):
    _, alice = await person("alice")
    _, _, reader = await token(accounts, alice, "read", "account")
    with pytest.raises(Forbidden) as refused:
        await accounts.create_token(reader, "wider", ["read", "publish"])
    assert refused.value.code == "scope_not_allowed" and refused.value.details == {"missing": ["publish"]}
    _, _, narrower = await token(accounts, reader, "read")
    assert narrower.scopes == {"read"}


@pytest.mark.parametrize("scopes, error, code", [
    (["admin"], Forbidden, "scope_not_allowed"),  # not a site administrator
    (["read", "root"], InvalidInput, "invalid_input"),
])
async def test_unknown_or_administrative_scopes_are_refused(accounts, person, scopes, error, code):
    _, alice = await person("alice")
    with pytest.raises(error) as refused:
        await accounts.create_token(alice, "t", scopes)
    assert refused.value.code == code
    assert await accounts.list_tokens(alice) == []


async def test_an_administrator_may_create_an_admin_token(accounts, person):
    _, root = await person("root", admin=True)
    _, _, holder = await token(accounts, root, *SCOPES)
    assert holder.is_admin


async def test_a_token_cannot_outlive_the_token_that_creates_it(accounts, person):
    _, alice = await person("alice")
    _, _, short = await token(accounts, alice, "read", "account", expires_in_days=2)
    with pytest.raises(Forbidden) as refused:
        await accounts.create_token(short, "longer", ["read"], expires_in_days=3)
    assert refused.value.code == "expiry_not_allowed"
    _, _, default = await token(accounts, short, "read")  # the default is cut to the creator's expiry
    assert default.expires_at == short.expires_at
    _, _, shorter = await token(accounts, short, "read", expires_in_days=1)
    assert shorter.expires_at < short.expires_at


@pytest.mark.parametrize("days", [0, 31, -1, True, "7"])
async def test_the_lifetime_is_a_whole_number_of_days_within_the_maximum(accounts, person, days):
    _, alice = await person("alice")
    with pytest.raises(InvalidInput):
        await accounts.create_token(alice, "t", ["read"], expires_in_days=days)


@pytest.mark.parametrize("name", ["", "   ", "n" * 101])
async def test_a_token_needs_a_name(accounts, person, name):
    _, alice = await person("alice")
    with pytest.raises(InvalidInput):
        await accounts.create_token(alice, name, ["read"])


async def test_an_org_bound_token_only_creates_tokens_bound_to_its_org(accounts, person):
    _, alice = await person("alice")
    acme = await accounts.create_org(alice, "acme", "Acme")
    await accounts.create_org(alice, "other", "Other")
    alice = await accounts.principal_for_user(alice.id)
    _, info, bound = await token(accounts, alice, "read", "account", org_slug="acme")
    assert info.org == "acme" and bound.token_org_id == acme.id
    with pytest.raises(Forbidden) as refused:
        await accounts.create_token(bound, "elsewhere", ["read"], org_slug="other")
    assert refused.value.code == "org_bound_token"
    _, info, child = await token(accounts, bound, "read")  # asked for no org: bound to its own anyway
    assert info.org == "acme" and child.token_org_id == acme.id
    assert {t.org for t in await accounts.list_tokens(bound)} == {"acme"}


async def test_site_administration_cannot_be_bound_to_an_org(accounts, person):
    _, root = await person("root", admin=True)
    await accounts.create_org(root, "acme", "Acme")
    root = await accounts.principal_for_user(root.id)
    with pytest.raises(InvalidInput):
        await accounts.create_token(root, "t", ["read", "admin"], org_slug="acme")


async def test_a_token_is_bound_only_to_an_org_of_its_holder(accounts, person):
    _, alice = await person("alice")
    _, bob = await person("bob")
    await accounts.create_org(alice, "acme", "Acme")
    with pytest.raises(Forbidden):
        await accounts.create_token(bob, "t", ["read"], org_slug="acme")
    with pytest.raises(NotFound):
        await accounts.create_token(bob, "t", ["read"], org_slug="no-such-org")


async def test_a_revoked_token_stops_working_and_only_its_holder_revokes_it(accounts, db, person):
    _, alice = await person("alice")
    _, bob = await person("bob")
    secret, info, _ = await token(accounts, alice, "read")
    with pytest.raises(NotFound):
        await accounts.revoke_token(bob, info.id)
    await accounts.revoke_token(alice, info.id)
    with pytest.raises(Unauthenticated) as refused:
        await accounts.principal_for_token(secret)
    assert refused.value.code == "token_revoked"
    with pytest.raises(NotFound):
        await accounts.revoke_token(alice, info.id)  # once
    assert (await accounts.list_tokens(alice))[0].revoked
    assert "token.revoke" in await audit_actions(db)


async def test_an_org_bound_token_revokes_only_tokens_bound_to_its_org(accounts, person):
    _, alice = await person("alice")
    await accounts.create_org(alice, "acme", "Acme")
    alice = await accounts.principal_for_user(alice.id)
    _, personal, _ = await token(accounts, alice, "read")
    _, _, bound = await token(accounts, alice, "read", "account", org_slug="acme")
    with pytest.raises(NotFound):
        await accounts.revoke_token(bound, personal.id)


@pytest.mark.parametrize("secret, code", [
    ("not-a-token", "invalid_token"),
    ("mcps_" + "x" * 300, "invalid_token"),
    ("mcps_unknown", "invalid_token"),
])
async def test_malformed_and_unknown_tokens_are_refused(accounts, secret, code):
    with pytest.raises(Unauthenticated) as refused:
        await accounts.principal_for_token(secret)
    assert refused.value.code == code


async def test_an_expired_token_or_a_disabled_account_is_refused(accounts, db, person):
    _, alice = await person("alice")
    expired, info, _ = await token(accounts, alice, "read")
    live, _, _ = await token(accounts, alice, "read")
    async with db.write() as tx:
        await tx.execute("UPDATE api_tokens SET expires_at = ? WHERE id = ?", (time.time() - 1, info.id))
    with pytest.raises(Unauthenticated) as refused:
        await accounts.principal_for_token(expired)
    assert refused.value.code == "token_expired"
    async with db.write() as tx:
        await tx.execute("UPDATE users SET is_disabled = 1 WHERE username = 'alice'")
    with pytest.raises(Unauthenticated) as refused:
        await accounts.principal_for_token(live)
    assert refused.value.code == "account_disabled"


async def test_token_requests_are_limited_per_address(accounts, person):
    _, alice = await person("alice")
    for i in range(3):
        await accounts.create_token(alice, f"t{i}", ["read"], ip="192.0.2.5")
    with pytest.raises(RateLimited):
        await accounts.create_token(alice, "one too many", ["read"], ip="192.0.2.5")
    assert len(await accounts.list_tokens(alice)) == 3
