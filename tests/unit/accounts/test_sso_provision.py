"""The SSO building blocks on a real SQLite file: the org's group-to-role mapping (accounts/group_roles.py) and
the just-in-time account step any SSO protocol shares (accounts/sso_provision.py)."""

from __future__ import annotations

import pytest

from mcpstore_appliance import audit
from mcpstore_appliance.accounts.group_roles import role_for_groups
from mcpstore_appliance.accounts.sso_provision import provision_sso_user
from mcpstore_appliance.errors import Forbidden, InvalidInput


@pytest.fixture
async def acme(accounts, person):
    _, owner = await person("boss")
    return await accounts.create_org(owner, "acme", "Acme"), await accounts.create_org(owner, "other", "Other")


async def test_roles_come_from_role_names_and_the_orgs_mapping(accounts, db, acme):
    org, other = acme
    await accounts.group_roles.replace(audit.SYSTEM, org, {"Engineering": "publisher", "admin": "member"})
    async with db.read() as q:
        assert await role_for_groups(q, org.id, []) == "member"
        assert await role_for_groups(q, org.id, ["ENGINEERING", "auditor"]) == "publisher"
        assert await role_for_groups(q, org.id, ["admin"]) == "member"  # the org mapped the role name otherwise
        assert await role_for_groups(q, org.id, ["owner", "Owners"]) == "member"  # never owner
        assert await role_for_groups(q, other.id, ["Engineering", "admin"]) == "admin"  # another org's mapping
    with pytest.raises(InvalidInput):
        await accounts.group_roles.replace(audit.SYSTEM, org, {"Engineering": "owner"})
    assert await accounts.group_roles.get(org) == {"Engineering": "publisher", "admin": "member"}


async def test_a_new_account_then_the_same_one_and_never_someone_elses(accounts, db, acme, person):
    org, other = acme
    async with db.write() as tx:
        first = await provision_sso_user(tx, org, "Ann.Lee@acme.example", "Ann Lee", ["publisher"], protocol="saml")
    role = "SELECT role FROM memberships WHERE org_id = ? AND user_id = ?"
    assert await db.fetch_value(role, (org.id, first.id)) == "publisher"
    async with db.write() as tx:
        again = await provision_sso_user(tx, org, "ann.lee@ACME.example", "", [], protocol="saml")
    assert first.id == again.id and first.username == "ann-lee" and first.display_name == "Ann Lee"
    assert await db.fetch_value(role, (org.id, first.id)) == "member"  # the groups of the latest sign-in decide
    await person("carol")  # a password account
    for target_org, email in ((org, "carol@example.com"), (other, "Ann.Lee@acme.example")):
        with pytest.raises(Forbidden) as refused:
            async with db.write() as tx:
                await provision_sso_user(tx, target_org, email, "", ["admin"], protocol="saml")
        assert refused.value.code == "sso_account_exists"
    with pytest.raises(InvalidInput):
        async with db.write() as tx:
            await provision_sso_user(tx, org, "not-an-address", "", [], protocol="saml")
    assert await db.fetch_value("SELECT count(*) FROM memberships WHERE org_id = ?", (other.id,)) == 1  # boss


async def test_a_proven_domain_signs_in_through_its_own_orgs_idp_only(accounts, db, acme, person):
    org, other = acme
    await person("dave")  # dave@example.com, a password account
    async with db.write() as tx:
        await tx.insert("org_domains", {"org_id": org.id, "domain": "example.com", "token": "t", "verified_at": 1.0,
                                        "method": "dns", "require_sso": 1, "created_at": 1.0})
    with pytest.raises(Forbidden) as refused:
        async with db.write() as tx:
            await provision_sso_user(tx, other, "dave@example.com", "", [], protocol="saml")
    assert refused.value.code == "domain_owned"
    async with db.write() as tx:  # the org that proved the domain vouches for its addresses: the account is linked
        user = await provision_sso_user(tx, org, "dave@example.com", "", [], protocol="saml")
    assert user.username == "dave"
