"""PATCH operations on a SCIM resource held as JSON, in the shapes IdPs send them."""

import pytest

from mcpstore_appliance.scim.errors import ScimError
from mcpstore_appliance.scim.patch import PATCH_SCHEMA, apply_patch
from mcpstore_appliance.scim.resources import GROUP_NAMES, USER_NAMES

USER = {"userName": "a", "active": True, "name": {"givenName": "A"},
        "emails": [{"value": "a@x.io", "type": "work", "primary": True}]}


def patch(resource, *operations, names=USER_NAMES):
    return apply_patch(resource, {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}, names)


def test_entra_id_shapes():
    result = patch(USER, {"op": "Replace", "path": "active", "value": "False"},
                   {"op": "Add", "path": 'emails[type eq "work"].value', "value": "b@x.io"},
                   {"op": "replace", "value": {"name.familyName": "B", "displayName": "A B"}})
    assert result["active"] == "False"  # read_user turns it into False
    assert result["emails"][0]["value"] == "b@x.io" and result["name"] == {"givenName": "A", "familyName": "B"}
    assert result["displayName"] == "A B"
    assert USER["emails"][0]["value"] == "a@x.io"  # the input is not changed


def test_members_are_added_and_removed():
    group = {"displayName": "admin", "members": [{"value": "u-1"}]}
    added = patch(group, {"op": "add", "path": "members", "value": [{"value": "u-2"}, {"value": "u-1"}]},
                  names=GROUP_NAMES)
    assert [m["value"] for m in added["members"]] == ["u-1", "u-2"]
    removed = patch(added, {"op": "remove", "path": 'members[value eq "u-1"]'}, names=GROUP_NAMES)
    assert [m["value"] for m in removed["members"]] == ["u-2"]
    assert patch(removed, {"op": "remove", "path": "members"}, names=GROUP_NAMES).get("members") is None


@pytest.mark.parametrize("body", [
    {"Operations": [{"op": "add", "path": "active", "value": True}]},
    {"schemas": [PATCH_SCHEMA], "Operations": []},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "copy", "path": "active"}]},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove"}]},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "value": "not an object"}]},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "password", "value": "x"}]},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "emails[[", "value": "x"}]},
    {"schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": 'emails[type eq "home"].value',
                                                "value": "x"}]},
])
def test_malformed_patches_are_refused(body):
    with pytest.raises(ScimError) as caught:
        apply_patch(USER, body, USER_NAMES)
    assert caught.value.status == 400
