"""The one visibility rule, said twice: as SQL (`visible_clause`, for queries) and in Python (`can_see`, for a
row in hand). They must agree on every (caller, package) pair, or a cached answer and a query would disagree
about who may see a package. Hypothesis generates both sides; SQLite evaluates the clause on a real table."""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpstore_appliance.accounts.models import ROLES, SCOPES, Principal, User
from mcpstore_appliance.catalog.visibility import can_manage, can_see, visible_clause

USERS = (1, 2, 3)
ORGS = (10, 11, 12)

packages = st.fixed_dictionaries({
    "visibility": st.sampled_from(("public", "org", "private")),
    "org_id": st.one_of(st.none(), st.sampled_from(ORGS)),
    "owner_user_id": st.one_of(st.none(), st.sampled_from(USERS)),
})


@st.composite
def principals(draw):
    user_id = draw(st.sampled_from(USERS))
    memberships = draw(st.dictionaries(st.sampled_from(ORGS), st.sampled_from(ROLES), max_size=3))
    return Principal(
        User(user_id, f"u{user_id}@example.com", f"u{user_id}", "", draw(st.booleans()), 0.0),
        frozenset(draw(st.sets(st.sampled_from(SCOPES)))),
        memberships, {org: f"org{org}" for org in memberships},
        token_org_id=draw(st.one_of(st.none(), st.sampled_from(ORGS))), via=draw(st.sampled_from(("token", "session"))))


DB = sqlite3.connect(":memory:")
DB.execute("CREATE TABLE packages (visibility TEXT, org_id INTEGER, owner_user_id INTEGER)")


def sql_sees(principal: Principal | None, package: dict) -> bool:
    DB.execute("DELETE FROM packages")
    DB.execute("INSERT INTO packages VALUES (:visibility, :org_id, :owner_user_id)", package)
    clause, params = visible_clause(principal)
    return DB.execute(f"SELECT count(*) FROM packages p WHERE {clause}", params).fetchone()[0] == 1


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.none(), principals()), packages)
def test_the_sql_clause_and_the_python_check_agree(principal, package):
    assert sql_sees(principal, package) == can_see(principal, package)


@settings(max_examples=150, deadline=None)
@given(principals(), packages)
def test_who_manages_a_package_also_sees_it(principal, package):
    if can_manage(principal, package):
        assert can_see(principal, package)


@settings(max_examples=150, deadline=None)
@given(principals(), packages)
def test_a_bound_token_reaches_nothing_private_outside_its_org(principal, package):
    if principal.token_org_id is None or package["visibility"] == "public":
        return
    if can_see(principal, package) or can_manage(principal, package):
        assert package["org_id"] == principal.token_org_id


def test_anonymous_callers_see_public_packages_only():
    for visibility in ("public", "org", "private"):
        package = {"visibility": visibility, "org_id": 10, "owner_user_id": None}
        assert can_see(None, package) == sql_sees(None, package) == (visibility == "public")
