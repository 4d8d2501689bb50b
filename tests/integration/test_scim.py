"""SCIM 2.0 provisioning at /scim/v2/{org}/ against a running appliance: an IdP's calls (Entra ID's shapes),
deprovisioning that stops a token at once, groups -> org roles, SCIM tokens, and hostile input."""

from __future__ import annotations

import pytest

from mcpstore_appliance.web.auth import SESSION_COOKIE

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.fixture
async def org(appliance):
    """acme (owner: boss) with a SCIM token, and other (its own owner and SCIM token)."""
    _, boss_token = await appliance.user("boss")
    _, eve_token = await appliance.user("eve")
    boss, eve = appliance.client.with_token(boss_token), appliance.client.with_token(eve_token)
    assert (await boss.post("/api/orgs", json={"slug": "acme"}))[0] == 201
    assert (await eve.post("/api/orgs", json={"slug": "other"}))[0] == 201
    status, created, _ = await boss.post("/api/orgs/acme/scim-tokens", json={"name": "entra"})
    assert status == 201 and created["token"].startswith("mcpscim_") and created["scim_base_url"].endswith(
        "/scim/v2/acme")
    other = (await eve.post("/api/orgs/other/scim-tokens", json={"name": "okta"}))[1]["token"]
    return {"app": appliance, "boss": boss, "eve": eve, "token": created["token"], "token_id": created["id"],
            "other_token": other}


def scim(org, token=None):
    return org["app"].client.with_token(token or org["token"])


async def create_user(org, user_name="alice@acme.example", **extra):
    body = {"schemas": [USER], "userName": user_name, "externalId": f"ext-{user_name}", "active": True,
            "name": {"givenName": "Alice", "familyName": "Doe"},
            "emails": [{"value": user_name if "@" in user_name else "a@acme.example", "type": "work",
                        "primary": True}], **extra}
    status, user, response = await scim(org).post("/scim/v2/acme/Users", json=body,
                                                  headers={"Content-Type": "application/scim+json"})
    assert status == 201, user
    assert response.headers["Content-Type"].startswith("application/scim+json")
    return user


async def test_an_idp_provisions_a_user_who_becomes_a_member(org):
    user = await create_user(org)
    assert user["userName"] == "alice@acme.example" and user["externalId"] == "ext-alice@acme.example"
    assert user["active"] is True and user["name"]["givenName"] == "Alice" and user["id"].startswith("u-")
    members = (await org["boss"].get("/api/orgs/acme/members"))[1]
    assert {"alice": "member"}.items() <= {m["username"]: m["role"] for m in members["members"]}.items()
    # Entra ID finds users with eq filters, joined by and; the value is a bound parameter
    for query in ('userName eq "ALICE@acme.example"', 'externalId eq "ext-alice@acme.example" and active eq true'):
        status, found, _ = await scim(org).get("/scim/v2/acme/Users", params={"filter": query})
        assert status == 200 and found["totalResults"] == 1 and found["Resources"][0]["id"] == user["id"]
    status, found, _ = await scim(org).get("/scim/v2/acme/Users",
                                           params={"filter": 'userName eq "x\\" OR 1=1 --"'})
    assert status == 200 and found["totalResults"] == 0


async def test_username_is_unique_and_an_existing_account_is_never_taken_over(org):
    await create_user(org)
    status, body, _ = await scim(org).post("/scim/v2/acme/Users", json={"schemas": [USER],
                                                                      "userName": "Alice@acme.example"})
    assert status == 409 and body["scimType"] == "uniqueness" and body["schemas"] == [ERROR]
    # eve@example.com is an account acme's IdP did not create: not linked, not changed
    status, body, _ = await scim(org).post("/scim/v2/acme/Users", json={
        "schemas": [USER], "userName": "eve2", "emails": [{"value": "eve@example.com", "primary": True}]})
    assert status == 409 and body["scimType"] == "uniqueness"
    listed = (await scim(org).get("/scim/v2/acme/Users"))[1]
    assert listed["totalResults"] == 1


async def test_deprovisioning_revokes_tokens_and_sessions_at_once(org):
    app = org["app"]
    user = await create_user(org)
    accounts = app.services.accounts
    alice = await accounts.find_user("alice")
    token, _ = await accounts.create_token(await accounts.principal_for_user(alice.id), "laptop", ["read"])
    session_id, _ = await accounts.start_session(alice)
    as_alice = app.client.with_token(token)
    assert (await as_alice.get("/api/me"))[0] == 200
    assert (await app.client.get("/api/me", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"}))[0] == 200
    # Entra ID's first step: PATCH active=false (a string, capitalised)
    status, patched, _ = await scim(org).request("PATCH", f"/scim/v2/acme/Users/{user['id']}", json={
        "schemas": [PATCH], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
    assert status == 200 and patched["active"] is False
    status, body, _ = await as_alice.get("/api/me")
    assert status == 401 and body["error"]["code"] in ("token_revoked", "account_disabled")
    assert (await app.client.get("/api/me", headers={"Cookie": f"{SESSION_COOKIE}={session_id}"}))[0] == 401
    # still returned, inactive; Entra ID looks it up by filter
    found = (await scim(org).get("/scim/v2/acme/Users", params={"filter": 'userName eq "alice@acme.example"'}))[1]
    assert found["Resources"][0]["active"] is False
    # re-enabling does not bring the revoked token back
    await scim(org).request("PATCH", f"/scim/v2/acme/Users/{user['id']}", json={
        "schemas": [PATCH], "Operations": [{"op": "replace", "value": {"active": True}}]})
    assert (await as_alice.get("/api/me"))[0] == 401
    # then DELETE: gone from SCIM and the org, the account stays disabled
    assert (await scim(org).delete(f"/scim/v2/acme/Users/{user['id']}"))[0] == 204
    assert (await scim(org).get(f"/scim/v2/acme/Users/{user['id']}"))[0] == 404
    members = (await org["boss"].get("/api/orgs/acme/members"))[1]["members"]
    assert "alice" not in {m["username"] for m in members}
    assert await app.services.db.fetch_value("SELECT is_disabled FROM users WHERE username = 'alice'") == 1


async def test_patch_and_put_change_the_user(org):
    user = await create_user(org)
    path = f"/scim/v2/acme/Users/{user['id']}"
    status, patched, _ = await scim(org).request("PATCH", path, json={"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "name.familyName", "value": "Smith"},
        {"op": "add", "path": 'emails[type eq "work"].value', "value": "alice.smith@acme.example"},
        {"op": "remove", "path": "externalId"}]})
    assert status == 200, patched
    assert patched["name"] == {"givenName": "Alice", "familyName": "Smith"} and "externalId" not in patched
    assert patched["emails"][0]["value"] == "alice.smith@acme.example"
    assert (await org["app"].services.accounts.find_user("alice")).email == "alice.smith@acme.example"
    status, put, _ = await scim(org).put(path, json={"schemas": [USER], "userName": "alice@acme.example",
                                                     "displayName": "Alice S."})
    assert status == 200 and put["displayName"] == "Alice S." and "name" not in put and put["id"] == user["id"]


async def test_groups_named_after_roles_grant_them(org):
    alice = await create_user(org)
    bob = await create_user(org, "bob@acme.example")
    status, group, _ = await scim(org).post("/scim/v2/acme/Groups", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Publisher",
        "members": [{"value": alice["id"]}]})
    assert status == 201 and [m["value"] for m in group["members"]] == [alice["id"]]

    async def roles():
        members = (await org["boss"].get("/api/orgs/acme/members"))[1]["members"]
        return {m["username"]: m["role"] for m in members}

    assert (await roles())["alice"] == "publisher" and (await roles())["bob"] == "member"
    path = f"/scim/v2/acme/Groups/{group['id']}"
    await scim(org).request("PATCH", path, json={"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": bob["id"]}]},
        {"op": "remove", "path": f'members[value eq "{alice["id"]}"]'}]})
    assert (await roles())["alice"] == "member" and (await roles())["bob"] == "publisher"
    listed = (await scim(org).get("/scim/v2/acme/Groups", params={"excludedAttributes": "members"}))[1]
    assert listed["totalResults"] == 1 and "members" not in listed["Resources"][0]
    assert (await scim(org).delete(path))[0] == 204
    assert (await roles())["bob"] == "member" and (await roles())["boss"] == "owner"


async def test_the_orgs_group_mapping_gives_roles_to_any_group_name(org):
    """An org admin maps IdP group names to roles (the setting SAML shares); SCIM membership follows it, and a
    changed mapping applies to SCIM users at once. Bad mappings change nothing."""
    alice = await create_user(org)
    boss = org["boss"]
    assert (await boss.put("/api/orgs/acme/group-roles", json={"mappings": {"Engineering": "publisher"}}))[0] == 200
    status, group, _ = await scim(org).post("/scim/v2/acme/Groups", json={
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "engineering",
        "members": [{"value": alice["id"]}]})
    assert status == 201

    async def role():
        members = (await boss.get("/api/orgs/acme/members"))[1]["members"]
        return {m["username"]: m["role"] for m in members}["alice"]

    assert await role() == "publisher"  # names match regardless of case
    status, body, _ = await boss.put("/api/orgs/acme/group-roles", json={"mappings": {"ENGINEERING": "admin",
                                                                                      "publisher": "member"}})
    assert status == 200 and body["mappings"] == {"ENGINEERING": "admin", "publisher": "member"}
    assert await role() == "admin"
    for bad in ({"Engineering": "owner"}, {"Engineering": "root"}, {"a": "admin", "A": "member"}, {"": "admin"},
                {f"g{n}": "member" for n in range(201)}):
        status, body, _ = await boss.put("/api/orgs/acme/group-roles", json={"mappings": bad})
        assert status == 400 and body["error"]["code"] == "invalid_mapping", body
    assert (await boss.get("/api/orgs/acme/group-roles"))[1]["mappings"] == {"ENGINEERING": "admin",
                                                                             "publisher": "member"}
    assert await role() == "admin"
    # a member who is not an admin, and another org's owner, cannot read or change it
    assert (await org["eve"].put("/api/orgs/acme/group-roles", json={"mappings": {}}))[0] == 404
    await boss.put("/api/orgs/acme/members/eve", json={"role": "publisher"})
    assert (await org["eve"].put("/api/orgs/acme/group-roles", json={"mappings": {}}))[0] == 403
    assert (await org["eve"].get("/api/orgs/acme/group-roles"))[0] == 403
    changes = await org["app"].services.db.fetch_value(
        "SELECT count(*) FROM audit_events WHERE action = 'org.group_roles.set'")
    assert changes == 2


async def test_pagination(org):
    for n in range(5):
        await create_user(org, f"user{n}@acme.example")
    page = (await scim(org).get("/scim/v2/acme/Users", params={"startIndex": "2", "count": "2"}))[1]
    assert page["totalResults"] == 5 and page["startIndex"] == 2 and page["itemsPerPage"] == 2
    assert [r["userName"] for r in page["Resources"]] == ["user1@acme.example", "user2@acme.example"]


async def test_another_orgs_token_and_foreign_orgs_change_nothing(org):
    user = await create_user(org)
    other = org["other_token"]
    for method, path in (("GET", "/scim/v2/acme/Users"), ("GET", f"/scim/v2/acme/Users/{user['id']}"),
                         ("DELETE", f"/scim/v2/acme/Users/{user['id']}"), ("GET", "/scim/v2/nosuch/Users")):
        status, body, _ = await scim(org, other).request(method, path)
        assert status == 401 and body["schemas"] == [ERROR], (method, path)
    # other's own endpoint does not see acme's user
    assert (await scim(org, other).get(f"/scim/v2/other/Users/{user['id']}"))[0] == 404
    # a user's API token is not a SCIM token; no token at all is a 401
    boss_token = org["boss"].token
    assert (await scim(org, boss_token).get("/scim/v2/acme/Users"))[0] == 401
    assert (await org["app"].client.get("/scim/v2/acme/Users"))[0] == 401
    assert (await scim(org).get(f"/scim/v2/acme/Users/{user['id']}"))[1]["active"] is True
    # eve manages "other", not acme's tokens
    assert (await org["eve"].get("/api/orgs/acme/scim-tokens"))[0] == 404


async def test_a_revoked_scim_token_stops_working(org):
    assert (await scim(org).get("/scim/v2/acme/Users"))[0] == 200
    listed = (await org["boss"].get("/api/orgs/acme/scim-tokens"))[1]["scim_tokens"]
    assert [t["name"] for t in listed] == ["entra"] and "token" not in listed[0]
    assert (await org["boss"].delete(f"/api/orgs/acme/scim-tokens/{org['token_id']}"))[0] == 204
    assert (await scim(org).get("/scim/v2/acme/Users"))[0] == 401


@pytest.mark.parametrize("body, scim_type", [
    ({"schemas": [USER]}, "invalidValue"),
    ({"schemas": [USER], "userName": ""}, "invalidValue"),
    ({"schemas": [USER], "userName": "x" * 300}, "invalidValue"),
    ({"schemas": [USER], "userName": "ok", "active": "maybe"}, "invalidValue"),
    ({"schemas": [USER], "userName": "ok", "emails": [{"value": "not-an-address"}]}, "invalidValue"),
    ({"schemas": [USER], "userName": "ok", "name": "a string"}, "invalidValue"),
    ([1, 2], "invalidSyntax"),
])
async def test_bad_users_are_refused_and_change_nothing(org, body, scim_type):
    status, answer, _ = await scim(org).post("/scim/v2/acme/Users", json=body)
    assert status == 400 and answer["scimType"] == scim_type and answer["schemas"] == [ERROR]
    assert (await scim(org).get("/scim/v2/acme/Users"))[1]["totalResults"] == 0


@pytest.mark.parametrize("query, scim_type", [
    ('userName co "a"', "invalidFilter"), ('userName eq "a" or userName eq "b"', "invalidFilter"),
    ('password eq "a"', "invalidFilter"), ("userName eq", "invalidFilter"), ('x' * 2000, "invalidFilter"),
])
async def test_unsupported_filters_are_refused(org, query, scim_type):
    status, answer, _ = await scim(org).get("/scim/v2/acme/Users", params={"filter": query})
    assert status == 400 and answer["scimType"] == scim_type


async def test_bad_patches_are_refused_and_change_nothing(org):
    user = await create_user(org)
    path = f"/scim/v2/acme/Users/{user['id']}"
    for body in ({"Operations": []}, {"schemas": [PATCH], "Operations": [{"op": "explode", "path": "active"}]},
                 {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "nope", "value": 1}]},
                 {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "active", "value": "maybe"}]},
                 {"schemas": [PATCH], "Operations": [{"op": "remove", "path": "userName"}]}):
        status, answer, _ = await scim(org).request("PATCH", path, json=body)
        assert status == 400 and answer["schemas"] == [ERROR], body
    assert (await scim(org).get(path))[1] == user
    status, _, _ = await scim(org).post("/scim/v2/acme/Users", data=b"{not json",
                                        headers={"Content-Type": "application/scim+json"})
    assert status == 400


async def test_discovery(org):
    config = (await scim(org).get("/scim/v2/acme/ServiceProviderConfig"))[1]
    assert config["patch"]["supported"] is True and config["filter"]["supported"] is True
    types = (await scim(org).get("/scim/v2/acme/ResourceTypes"))[1]
    assert {t["id"] for t in types["Resources"]} == {"User", "Group"}
    schemas = (await scim(org).get("/scim/v2/acme/Schemas"))[1]
    assert {s["name"] for s in schemas["Resources"]} == {"User", "Group"}
    assert (await scim(org).get(f"/scim/v2/acme/Schemas/{USER}"))[1]["id"] == USER


async def test_a_body_over_the_size_limit_is_a_scim_413_and_changes_nothing(org):
    big = b'{"schemas": ["' + USER.encode() + b'"], "userName": "' + b"x" * 2_000_000 + b'"}'
    status, answer, _ = await scim(org).post("/scim/v2/acme/Users", data=big,
                                             headers={"Content-Type": "application/scim+json"})
    assert status == 413 and answer["schemas"] == [ERROR]
    assert (await scim(org).get("/scim/v2/acme/Users"))[1]["totalResults"] == 0


async def test_other_methods_and_paths_are_scim_errors(org):
    status, answer, _ = await scim(org).request("PATCH", "/scim/v2/acme/ServiceProviderConfig", json={})
    assert status == 405 and answer["schemas"] == [ERROR]
    status, answer, _ = await scim(org).get("/scim/v2/acme/Bulk")
    assert status == 404 and answer["schemas"] == [ERROR]
    assert (await scim(org, org["other_token"]).get("/scim/v2/acme/Bulk"))[0] == 401
