"""Users: creating and finding them, and who a user is as a caller."""

from __future__ import annotations

import pytest

from mcpstore_appliance.errors import Conflict, InvalidInput, NotFound

from .conftest import audit_actions


async def test_a_new_user_owns_the_namespace_of_their_name_and_is_audited(accounts, db):
    user = await accounts.create_user("Alice@Example.com ", "alice", None, display_name="  Alice A. ")
    assert (user.email, user.username, user.display_name, user.is_admin) == ("Alice@Example.com", "alice",
                                                                            "Alice A.", False)
    assert await db.fetch_value("SELECT user_id FROM namespaces WHERE name = 'alice'") == user.id
    assert await accounts.get_user(user.id) == user == await accounts.find_user("alice")
    assert await audit_actions(db) == ["user.create"]


@pytest.mark.parametrize("email, username, password, code", [
    ("not-an-email", "bob", None, "invalid_email"),
    ("bob@example.com", "Bob", None, "invalid_slug"),
    ("bob@example.com", "-bob", None, "invalid_slug"),
    ("bob@example.com", "b" * 40, None, "invalid_slug"),
    ("bob@example.com", "admin", None, "reserved_name"),
    ("bob@example.com", "bob", "short", "weak_password"),
])
async def test_bad_input_is_refused_and_creates_nothing(accounts, db, email, username, password, code):
    with pytest.raises(InvalidInput) as refused:
        await accounts.create_user(email, username, password)
    assert refused.value.code == code
    assert await accounts.user_count() == 0
    assert await db.fetch_value("SELECT count(*) FROM namespaces") == 0


async def test_an_email_or_a_name_is_taken_once(accounts):
    await accounts.create_user("carol@example.com", "carol", None)
    with pytest.raises(Conflict) as email_taken:
        await accounts.create_user("carol@example.com", "carol2", None)
    with pytest.raises(Conflict) as name_taken:
        await accounts.create_user("other@example.com", "carol", None)
    assert (email_taken.value.code, name_taken.value.code) == ("email_taken", "name_taken")
    await accounts.create_org(None, "acme", "Acme")
    with pytest.raises(Conflict) as org_name:
        await accounts.create_user("acme@example.com", "acme", None)  # an org's slug is a namespace too
    assert org_name.value.code == "name_taken"
    assert await accounts.user_count() == 1


async def test_missing_users_are_not_found(accounts):
    with pytest.raises(NotFound):
        await accounts.get_user(42)
    with pytest.raises(NotFound):
        await accounts.find_user("nobody")


async def test_users_are_listed_in_pages_by_id(accounts):
    made = [await accounts.create_user(f"u{i}@example.com", f"user{i}", None) for i in range(5)]
    first = await accounts.list_users(limit=2)
    rest = await accounts.list_users(limit=10, after_id=first[-1].id)
    assert [u.username for u in first + rest] == [u.username for u in made]


async def test_the_principal_of_a_user_carries_their_memberships(accounts, person):
    dave, dave_principal = await person("dave")
    assert dave_principal.memberships == {} and dave_principal.via == "password"
    org = await accounts.create_org(dave_principal, "dave-co", "Dave Co")
    again = await accounts.principal_for_user(dave.id)
    assert again.memberships == {org.id: "owner"} and again.org_slugs == {org.id: "dave-co"}
    assert not again.is_admin


async def test_an_admin_principal_administers_the_site(person):
    _, admin = await person("root", admin=True)
    _, plain = await person("plain")
    assert admin.is_admin and not plain.is_admin
