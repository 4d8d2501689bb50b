"""SCIM resources as JSON: reading a User or Group body into checked values, and writing the stored rows back
out (RFC 7643). Only what the appliance keeps is read; other attributes in a body are ignored, as RFC 7644
3.3 allows."""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from typing import Any

from .errors import ScimError

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
# Ids are unique across both kinds (RFC 7643 3.1): a kind's prefix, then its row id.
USER_ID, GROUP_ID = "u-", "g-"
MAX_TEXT = 256
MAX_EMAILS = 10
MAX_MEMBERS = 10_000
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s]{2,}$")
# lower-cased attribute names -> their spelling here (PATCH paths and filters are case-insensitive)
USER_NAMES = {n.lower(): n for n in ("userName", "externalId", "active", "name", "displayName", "emails",
                                     "givenName", "familyName", "formatted", "value", "type", "primary",
                                     "groups", "id", "schemas", "meta")}
GROUP_NAMES = {n.lower(): n for n in ("displayName", "externalId", "members", "value", "display", "$ref", "type",
                                      "id", "schemas", "meta")}


@dataclass(frozen=True)
class UserFields:
    user_name: str
    external_id: str | None
    active: bool | None  # None: not set by the IdP (the account stays enabled)
    given_name: str | None
    family_name: str | None
    formatted: str | None
    display_name: str | None
    emails: list[dict]

    @property
    def primary_email(self) -> str | None:
        chosen = [e for e in self.emails if e.get("primary")] or self.emails
        return chosen[0]["value"] if chosen else None


@dataclass(frozen=True)
class GroupFields:
    display_name: str
    external_id: str | None
    member_ids: list[int]


def _text(body: dict, key: str, *, required: bool = False) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_TEXT:
        raise ScimError(400, "invalidValue", f"{key} must be a string of 1-{MAX_TEXT} characters")
    return value.strip()


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # Entra ID sends "False" in PATCH
        return value.lower() == "true"
    raise ScimError(400, "invalidValue", f"{key} must be true or false")


def read_user(body: Any) -> UserFields:
    if not isinstance(body, dict):
        raise ScimError(400, "invalidSyntax", "a User is a JSON object")
    body = {USER_NAMES.get(k.lower(), k): v for k, v in body.items()}
    name = body.get("name") or {}
    if not isinstance(name, dict):
        raise ScimError(400, "invalidValue", "name is an object")
    name = {USER_NAMES.get(k.lower(), k): v for k, v in name.items()}
    return UserFields(_text(body, "userName", required=True), _text(body, "externalId"),
                      None if body.get("active") is None else _bool(body["active"], "active"), _text(name, "givenName"),
                      _text(name, "familyName"), _text(name, "formatted"), _text(body, "displayName"),
                      _emails(body.get("emails")))


def _emails(value: Any) -> list[dict]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_EMAILS:
        raise ScimError(400, "invalidValue", f"emails is a list of at most {MAX_EMAILS}")
    emails = []
    for item in value:
        if not isinstance(item, dict) or not isinstance(item.get("value"), str) or not EMAIL.match(item["value"]):
            raise ScimError(400, "invalidValue", "each email has a value that is an email address")
        email = {"value": item["value"]}
        if item.get("type") is not None:
            email["type"] = _text(item, "type")
        if item.get("primary") is not None:
            email["primary"] = _bool(item["primary"], "primary")
        emails.append(email)
    return emails


def read_group(body: Any) -> GroupFields:
    if not isinstance(body, dict):
        raise ScimError(400, "invalidSyntax", "a Group is a JSON object")
    body = {GROUP_NAMES.get(k.lower(), k): v for k, v in body.items()}
    members = body.get("members") or []
    if not isinstance(members, list) or len(members) > MAX_MEMBERS:
        raise ScimError(400, "invalidValue", f"members is a list of at most {MAX_MEMBERS}")
    ids = []
    for member in members:
        value = member.get("value") if isinstance(member, dict) else None
        number = value.removeprefix(USER_ID) if isinstance(value, str) and value.startswith(USER_ID) else ""
        if not number.isdigit() or len(number) > 18:
            raise ScimError(400, "invalidValue", "each member's value is the id of a User of this organization")
        ids.append(int(number))
    return GroupFields(_text(body, "displayName", required=True), _text(body, "externalId"), sorted(set(ids)))


def _time(stamp: float) -> str:
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="milliseconds")


def _meta(kind: str, row: dict, scim_id: str, base: str) -> dict:
    return {"resourceType": kind, "created": _time(row["created_at"]), "lastModified": _time(row["updated_at"]),
            "location": f"{base}/{kind}s/{scim_id}", "version": f'W/"{int(row["updated_at"] * 1000)}"'}


def user_json(row: dict, groups: list[dict], base: str) -> dict:
    """`row`: a scim_users row joined with its user (username, display_name); `groups`: {id, display_name}."""
    name = {k: row[c] for k, c in (("givenName", "given_name"), ("familyName", "family_name"),
                                   ("formatted", "formatted")) if row[c] is not None}
    scim_id = f"{USER_ID}{row['id']}"
    out = {"schemas": [USER_SCHEMA], "id": scim_id, "userName": row["user_name"],
           "meta": _meta("User", row, scim_id, base)}
    if row["active"] is not None:
        out["active"] = bool(row["active"])
    if row["external_id"] is not None:
        out["externalId"] = row["external_id"]
    if name:
        out["name"] = name
    if row["display_name"] is not None:
        out["displayName"] = row["display_name"]
    if emails := json.loads(row["emails"]):
        out["emails"] = emails
    if groups:
        out["groups"] = [{"value": f"{GROUP_ID}{g['id']}", "display": g["display_name"],
                          "$ref": f"{base}/Groups/{GROUP_ID}{g['id']}",
                          "type": "direct"} for g in groups]
    return out


def group_json(row: dict, members: list[dict], base: str) -> dict:
    """`members`: the ids of the group's users (each as its id and $ref: members are Users only)."""
    scim_id = f"{GROUP_ID}{row['id']}"
    out = {"schemas": [GROUP_SCHEMA], "id": scim_id, "displayName": row["display_name"],
           "members": [{"value": f"{USER_ID}{m['id']}", "$ref": f"{base}/Users/{USER_ID}{m['id']}"}
                       for m in members],
           "meta": _meta("Group", row, scim_id, base)}
    if row["external_id"] is not None:
        out["externalId"] = row["external_id"]
    return out


ALWAYS = frozenset({"schemas", "id", "meta"})


def project(resource: dict, attributes: str | None, excluded: str | None) -> dict:
    """The `attributes` / `excludedAttributes` query parameters (top-level attributes; Entra ID asks groups
    without their members this way)."""
    def names(text: str) -> set[str]:
        return {part.strip().split(":")[-1].split(".")[0].lower() for part in text.split(",") if part.strip()}

    if attributes:
        wanted = names(attributes)
        return {k: v for k, v in resource.items() if k in ALWAYS or k.lower() in wanted}
    if excluded:
        dropped = names(excluded)
        return {k: v for k, v in resource.items() if k in ALWAYS or k.lower() not in dropped}
    return resource


def list_response(resources: list[dict], total: int, start: int) -> dict:
    return {"schemas": [LIST_SCHEMA], "totalResults": total, "startIndex": start,
            "itemsPerPage": len(resources), "Resources": resources}
