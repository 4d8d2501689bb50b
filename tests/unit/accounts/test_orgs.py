"""Organizations, members and roles: who may manage members, an org keeps an owner, and a foreign org answers
like a missing one."""

from __future__ import annotations

import pytest

from mcpstore_appliance.errors import Conflict, Forbidden, InvalidInput, NotFound

from .conftest import audit_actions


@pytest.fixture
async def acme(accounts, person):
    """An org with an owner, an admin, a publisher and a member; returns their fresh principals by role."""
    _, owner = await person("olga")
    org = await accounts.create_org(owner, "acme", "Acme Inc")
    owner = await accounts.principal_for_user(owner.id)  # a principal is who the caller was when it was made
    people = {}
    for role, name in (("admin", "adam"), ("publisher", "pia"), ("member", "mona")):
        await person(name)
        await accounts.set_member(owner, "acme", name, role)
    for role, name in (("owner", "olga"), ("admin", "adam"), ("publisher", "pia"), ("member", "mona")):
        people[role] = await accounts.principal_for_user((await accounts.find_user(name)).id)
    return org, people


async def test_the_creator_owns_a_new_org_and_its_slug_is_a_namespace(accounts, db, acme):
    org, people = acme
    assert (org.slug, org.name) == ("acme", "Acme Inc")
    assert people["owner"].role_in(org.id) == "owner"
    assert await db.fetch_value("SELECT org_id FROM namespaces WHERE name = 'acme'") == org.id
    assert [(m.username, m.role) for m in await accounts.members(people["member"], "acme")] == [
        ("adam", "admin"), ("mona", "member"), ("olga", "owner"), ("pia", "publisher")]
    assert (await audit_actions(db)).count("org.member.set") == 3


async def test_an_org_slug_follows_the_name_rules_and_is_taken_once(accounts, person, acme):
    _, someone = await person("sam")
    with pytest.raises(InvalidInput):
        await accounts.create_org(someone, "Not A Slug", "x")
    with pytest.raises(Conflict):
        await accounts.create_org(someone, "acme", "again")
    with pytest.raises(Conflict):
        await accounts.create_org(someone, "sam", "a user's name")


async def test_a_foreign_org_answers_like_a_missing_one(accounts, person, acme):
    _, stranger = await person("stan")
    for slug in ("acme", "no-such-org"):
        with pytest.raises(NotFound) as hidden:
            await accounts.members(stranger, slug)
        assert hidden.value.message == f"no organization named {slug!r}"
    with pytest.raises(NotFound):
        await accounts.set_member(stranger, "acme", "stan", "member")


async def test_a_site_administrator_sees_every_org(accounts, person, acme):
    _, root = await person("root", admin=True)
    assert (await accounts.visible_org(root, "acme")).slug == "acme"


@pytest.mark.parametrize("role", ["publisher", "member"])
async def test_only_owners_and_admins_manage_members(accounts, person, acme, role):
    _, people = acme
    await person("newbie")
    with pytest.raises(Forbidden):
        await accounts.set_member(people[role], "acme", "newbie", "member")
    with pytest.raises(Forbidden):
        await accounts.remove_member(people[role], "acme", "mona" if role != "member" else "pia")


async def test_an_admin_manages_members_but_only_an_owner_makes_or_unmakes_owners(accounts, person, acme):
    _, people = acme
    await person("newbie")
    assert (await accounts.set_member(people["admin"], "acme", "newbie", "publisher")).role == "publisher"
    with pytest.raises(Forbidden):
        await accounts.set_member(people["admin"], "acme", "newbie", "owner")
    await accounts.set_member(people["owner"], "acme", "newbie", "owner")
    with pytest.raises(Forbidden):
        await accounts.set_member(people["admin"], "acme", "newbie", "member")
    with pytest.raises(Forbidden):
        await accounts.remove_member(people["admin"], "acme", "newbie")
    await accounts.remove_member(people["owner"], "acme", "newbie")


async def test_an_org_keeps_at_least_one_owner(accounts, acme):
    _, people = acme
    with pytest.raises(Conflict) as last:
        await accounts.set_member(people["owner"], "acme", "olga", "admin")
    assert last.value.code == "last_owner"
    with pytest.raises(Conflict):
        await accounts.remove_member(people["owner"], "acme", "olga")


async def test_a_member_may_leave_and_a_non_member_cannot_be_removed(accounts, person, acme):
    _, people = acme
    await accounts.remove_member(people["member"], "acme", "mona")
    await person("stan")
    with pytest.raises(NotFound):
        await accounts.remove_member(people["owner"], "acme", "stan")
    assert "mona" not in [m.username for m in await accounts.members(people["owner"], "acme")]


async def test_roles_are_checked(accounts, acme):
    _, people = acme
    with pytest.raises(InvalidInput):
        await accounts.set_member(people["owner"], "acme", "mona", "emperor")


async def test_operators_set_members_without_an_actor(accounts, db, person, acme):
    await person("ops")
    assert (await accounts.set_member(None, "acme", "ops", "auditor")).role == "auditor"
    assert await db.fetch_value("SELECT actor FROM audit_events ORDER BY id DESC LIMIT 1") == "system"


async def test_orgs_of_lists_the_callers_orgs_and_an_org_bound_token_sees_only_its_own(accounts, acme):
    org, people = acme
    owner = people["owner"]
    await accounts.create_org(owner, "second", "Second")
    owner = await accounts.principal_for_user(owner.id)
    assert [(o.slug, role) for o, role in await accounts.orgs_of(owner)] == [("acme", "owner"), ("second", "owner")]
    secret, _ = await accounts.create_token(owner, "bound", ["read", "account"], org_slug="acme")
    bound = await accounts.principal_for_token(secret)
    assert [o.slug for o, _ in await accounts.orgs_of(bound)] == ["acme"]
    with pytest.raises(Forbidden) as refused:
        await accounts.create_org(bound, "third", "Third")
    assert refused.value.code == "org_bound_token"
