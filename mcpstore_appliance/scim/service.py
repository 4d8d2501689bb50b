"""SCIM provisioning of one org's users and groups, as its identity provider drives it (RFC 7644).

- A SCIM User is an appliance user this org's IdP created (`scim_users`), a member of the org. The IdP manages
  only the users it created: an existing account with the same e-mail is a 409, never taken over.
- `active=false` deprovisions at once: the account is disabled, its sessions deleted and its API tokens revoked
  in the same transaction, so a token stops working on its next request. The user is still returned, inactive.
  DELETE does the same, ends the membership and forgets the SCIM record (the account stays, disabled, so its
  name and packages are never handed to someone else).
- A SCIM Group is a named group of the org's SCIM users. Its members' org roles follow the org's group-to-role
  mapping (accounts/group_roles.py: groups named after a role, and any names the org's admin maps); a user in
  several gets the highest, one in none is a `member`, and `owner` is never granted by SCIM.
"""

from __future__ import annotations

import json
import secrets
import time

from .. import audit
from ..accounts.models import Org
from ..accounts.group_roles import role_for_groups, write_role
from ..accounts.users import free_username
from ..db import Database, Transaction
from .errors import ScimError
from .filters import to_sql
from .patch import apply_patch
from .resources import (EMAIL, GROUP_ID, GROUP_NAMES, USER_ID, USER_NAMES, GroupFields, UserFields, group_json,
                        read_group, read_user, user_json)

MAX_COUNT = 200
ACTOR = audit.Actor(None, "scim")
USER_COLUMNS = {"username": ("s.user_name", True), "externalid": ("s.external_id", False),
                "active": ("s.active", False), "displayname": ("s.display_name", False),
                "name.givenname": ("s.given_name", False), "name.familyname": ("s.family_name", False)}
GROUP_COLUMNS = {"displayname": ("g.display_name", True), "externalid": ("g.external_id", False)}
USER_SELECT = "SELECT s.*, u.username FROM scim_users s JOIN users u ON u.id = s.user_id"


def page(start: int, count: int | None) -> tuple[int, int]:
    """startIndex is 1-based (less than 1 means 1); count is capped, and a negative one means 0 (RFC 7644 3.4.2.4)."""
    return max(1, start), min(MAX_COUNT, max(0, MAX_COUNT if count is None else count))


class ScimService:
    def __init__(self, db: Database):
        self.db = db

    async def search(self, org: Org, kinds: list[str], filter_text, start: int, count: int | None,
                     base: str) -> tuple[list[dict], int]:
        """One list over `kinds` ("Users", "Groups") in turn, for GET /Users, /Groups and POST /.search: the
        page starts at `start` (1-based) in their concatenation. Returns (resources, totalResults)."""
        if not isinstance(filter_text, str):
            raise ScimError(400, "invalidFilter", "filter is a string")
        found, total, start = [], 0, max(1, start)
        remaining = count
        for kind in kinds:
            listing = self.list_users if kind == "Users" else self.list_groups
            page, kind_total = await listing(org, filter_text, max(1, start - total), remaining, base)
            if start - total <= kind_total:
                found += page
                remaining = None if remaining is None else remaining - len(page)
            total += kind_total
        return found, total

    # ---- users --------------------------------------------------------------------------------------

    async def list_users(self, org: Org, filter_text: str, start: int, count: int | None, base: str):
        where, params = to_sql(filter_text, USER_COLUMNS)
        start, count = page(start, count)
        async with self.db.read() as q:
            total = await q.fetch_value(f"SELECT count(*) FROM scim_users s WHERE s.org_id = ? AND ({where})",
                                        (org.id, *params))
            rows = await q.fetch_all(f"{USER_SELECT} WHERE s.org_id = ? AND ({where}) ORDER BY s.id LIMIT ? OFFSET ?",
                                     (org.id, *params, count, start - 1))
            return [await self._user_json(q, row, base) for row in rows], total

    async def get_user(self, org: Org, scim_id: str, base: str) -> dict:
        async with self.db.read() as q:
            return await self._user_json(q, await _user_row(q, org, scim_id), base)

    async def _user_json(self, q, row: dict, base: str) -> dict:
        groups = await q.fetch_all(
            "SELECT g.id, g.display_name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id"
            " WHERE m.scim_user_id = ? ORDER BY g.id", (row["id"],))
        return user_json(row, groups, base)

    async def create_user(self, org: Org, body, base: str) -> dict:
        fields = read_user(body)
        async with self.db.write() as tx:
            await _user_name_free(tx, org, fields.user_name)
            email = await _free_email(tx, fields)
            username = await free_username(tx, fields.user_name)
            now = time.time()
            user_id = await tx.insert("users", {
                "email": email, "username": username, "display_name": (fields.display_name or username)[:100],
                "password_hash": None, "is_admin": 0, "created_at": now, "is_disabled": int(fields.active is False)})
            await tx.insert("namespaces", {"name": username, "user_id": user_id})
            await tx.insert("memberships", {"org_id": org.id, "user_id": user_id, "role": "member",
                                            "created_at": now})
            scim_id = await tx.insert("scim_users", {"org_id": org.id, "user_id": user_id, "created_at": now,
                                                     **_user_columns(fields, now)})
            await audit.record(tx, ACTOR, "scim.user.create", org_id=org.id, target=username,
                               details={"userName": fields.user_name, "active": fields.active})
        return await self.get_user(org, f"{USER_ID}{scim_id}", base)

    async def replace_user(self, org: Org, scim_id: str, body, base: str) -> dict:
        await self._write_user(org, scim_id, lambda current: read_user(body))
        return await self.get_user(org, scim_id, base)

    async def patch_user(self, org: Org, scim_id: str, body, base: str) -> dict:
        current = await self.get_user(org, scim_id, base)
        fields = read_user(apply_patch(current, body, USER_NAMES))
        await self._write_user(org, scim_id, lambda row: fields)
        return await self.get_user(org, scim_id, base)

    async def _write_user(self, org: Org, scim_id: str, new_fields) -> None:
        async with self.db.write() as tx:
            row = await _user_row(tx, org, scim_id)
            fields: UserFields = new_fields(row)
            if fields.user_name.lower() != row["user_name"].lower():
                await _user_name_free(tx, org, fields.user_name)
            email = await _free_email(tx, fields, row["user_id"])
            now = time.time()
            await tx.execute(
                "UPDATE scim_users SET user_name = ?, external_id = ?, active = ?, given_name = ?, family_name = ?,"
                " formatted = ?, display_name = ?, emails = ?, updated_at = ? WHERE id = ?",
                (*_user_columns(fields, now).values(), row["id"]))
            await tx.execute("UPDATE users SET email = ?, display_name = ? WHERE id = ?",
                             (email, (fields.display_name or row["username"])[:100], row["user_id"]))
            if (row["active"] != 0) != (fields.active is not False):  # None (not set) counts as enabled
                await _set_active(tx, org, row, fields.active is not False)

    async def delete_user(self, org: Org, scim_id: str) -> None:
        async with self.db.write() as tx:
            row = await _user_row(tx, org, scim_id)
            await _set_active(tx, org, row, False)
            await tx.execute("DELETE FROM memberships WHERE org_id = ? AND user_id = ?", (org.id, row["user_id"]))
            await tx.execute("DELETE FROM scim_users WHERE id = ?", (row["id"],))
            await audit.record(tx, ACTOR, "scim.user.delete", org_id=org.id, target=row["username"])

    # ---- groups -------------------------------------------------------------------------------------

    async def list_groups(self, org: Org, filter_text: str, start: int, count: int | None, base: str):
        where, params = to_sql(filter_text, GROUP_COLUMNS)
        start, count = page(start, count)
        async with self.db.read() as q:
            total = await q.fetch_value(f"SELECT count(*) FROM scim_groups g WHERE g.org_id = ? AND ({where})",
                                        (org.id, *params))
            rows = await q.fetch_all(f"SELECT g.* FROM scim_groups g WHERE g.org_id = ? AND ({where})"
                                     " ORDER BY g.id LIMIT ? OFFSET ?", (org.id, *params, count, start - 1))
            return [await _group_json(q, row, base) for row in rows], total

    async def get_group(self, org: Org, group_id: str, base: str) -> dict:
        async with self.db.read() as q:
            return await _group_json(q, await _group_row(q, org, group_id), base)

    async def create_group(self, org: Org, body, base: str) -> dict:
        fields = read_group(body)
        async with self.db.write() as tx:
            await _group_name_free(tx, org, fields.display_name)
            now = time.time()
            group_id = await tx.insert("scim_groups", {"org_id": org.id, "display_name": fields.display_name,
                                                       "external_id": fields.external_id, "created_at": now,
                                                       "updated_at": now})
            await _set_members(tx, org, group_id, fields, [])
            await audit.record(tx, ACTOR, "scim.group.create", org_id=org.id, target=fields.display_name)
        return await self.get_group(org, f"{GROUP_ID}{group_id}", base)

    async def replace_group(self, org: Org, group_id: str, body, base: str) -> dict:
        await self._write_group(org, group_id, read_group(body))
        return await self.get_group(org, group_id, base)

    async def patch_group(self, org: Org, group_id: str, body, base: str) -> dict:
        current = await self.get_group(org, group_id, base)
        await self._write_group(org, group_id, read_group(apply_patch(current, body, GROUP_NAMES)))
        return await self.get_group(org, group_id, base)

    async def _write_group(self, org: Org, group_id: str, fields: GroupFields) -> None:
        async with self.db.write() as tx:
            row = await _group_row(tx, org, group_id)
            if fields.display_name.lower() != row["display_name"].lower():
                await _group_name_free(tx, org, fields.display_name)
            await tx.execute("UPDATE scim_groups SET display_name = ?, external_id = ?, updated_at = ? WHERE id = ?",
                             (fields.display_name, fields.external_id, time.time(), row["id"]))
            before = await _member_user_ids(tx, row["id"])
            await tx.execute("DELETE FROM scim_group_members WHERE group_id = ?", (row["id"],))
            await _set_members(tx, org, row["id"], fields, before)
            await audit.record(tx, ACTOR, "scim.group.update", org_id=org.id, target=fields.display_name,
                               details={"members": len(fields.member_ids)})

    async def delete_group(self, org: Org, group_id: str) -> None:
        async with self.db.write() as tx:
            row = await _group_row(tx, org, group_id)
            before = await _member_user_ids(tx, row["id"])
            await tx.execute("DELETE FROM scim_groups WHERE id = ?", (row["id"],))
            await _sync_roles(tx, org, before)
            await audit.record(tx, ACTOR, "scim.group.delete", org_id=org.id, target=row["display_name"])


def _user_columns(fields: UserFields, now: float) -> dict:
    return {"user_name": fields.user_name, "external_id": fields.external_id, "active": _flag(fields.active),
            "given_name": fields.given_name, "family_name": fields.family_name, "formatted": fields.formatted,
            "display_name": fields.display_name, "emails": json.dumps(fields.emails), "updated_at": now}


def _flag(active: bool | None) -> int | None:
    return None if active is None else int(active)


def _id(text: str, prefix: str) -> int:
    """A resource id from the path: the kind's prefix and digits, else it names nothing (404, like a missing one)."""
    number = text.removeprefix(prefix) if isinstance(text, str) and text.startswith(prefix) else ""
    if not number.isdigit() or len(number) > 18:
        raise ScimError(404, None, "no such resource")
    return int(number)


async def _user_row(q, org: Org, scim_id: str) -> dict:
    row = await q.fetch_one(f"{USER_SELECT} WHERE s.id = ? AND s.org_id = ?", (_id(scim_id, USER_ID), org.id))
    if row is None:
        raise ScimError(404, None, f"no User {scim_id}")
    return row


async def _group_row(q, org: Org, group_id: str) -> dict:
    row = await q.fetch_one("SELECT * FROM scim_groups WHERE id = ? AND org_id = ?", (_id(group_id, GROUP_ID), org.id))
    if row is None:
        raise ScimError(404, None, f"no Group {group_id}")
    return row


async def _group_json(q, row: dict, base: str) -> dict:
    members = await q.fetch_all(
        "SELECT s.id FROM scim_group_members m JOIN scim_users s ON s.id = m.scim_user_id"
        " WHERE m.group_id = ? ORDER BY s.id", (row["id"],))
    return group_json(row, members, base)


async def _user_name_free(tx: Transaction, org: Org, user_name: str) -> None:
    if await tx.fetch_value("SELECT 1 FROM scim_users WHERE org_id = ? AND user_name = ? COLLATE NOCASE",
                            (org.id, user_name)):
        raise ScimError(409, "uniqueness", f"a User with userName {user_name!r} exists")


async def _group_name_free(tx: Transaction, org: Org, name: str) -> None:
    if await tx.fetch_value("SELECT 1 FROM scim_groups WHERE org_id = ? AND display_name = ? COLLATE NOCASE",
                            (org.id, name)):
        raise ScimError(409, "uniqueness", f"a Group named {name!r} exists")


async def _free_email(tx: Transaction, fields: UserFields, user_id: int | None = None) -> str:
    """The account's e-mail: the primary one, else userName when it is an address, else a placeholder that
    cannot receive mail. One that belongs to another account is refused: SCIM never takes an account over."""
    email = fields.primary_email or (fields.user_name if EMAIL.match(fields.user_name) else None)
    if email is None:
        if user_id is not None:
            return await tx.fetch_value("SELECT email FROM users WHERE id = ?", (user_id,))
        return f"scim-{secrets.token_hex(8)}@scim.invalid"
    if await tx.fetch_value("SELECT 1 FROM users WHERE email = ? AND id IS NOT ?", (email, user_id)):
        raise ScimError(409, "uniqueness", "another account has this e-mail address")
    return email


async def _set_active(tx: Transaction, org: Org, row: dict, active: bool) -> None:
    """Enable or deprovision the account. Deprovisioning ends its sessions and revokes its tokens in the same
    transaction; the callers' cache is keyed by the commit stamp, so nothing cached outlives it."""
    now = time.time()
    await tx.execute("UPDATE users SET is_disabled = ? WHERE id = ?", (int(not active), row["user_id"]))
    if not active:
        await tx.execute("DELETE FROM web_sessions WHERE user_id = ?", (row["user_id"],))
        await tx.execute("UPDATE api_tokens SET revoked_at = ? WHERE user_id = ? AND revoked_at IS NULL",
                         (now, row["user_id"]))
    await audit.record(tx, ACTOR, "scim.user.activate" if active else "scim.user.deprovision", org_id=org.id,
                       target=row["username"])


async def _member_user_ids(tx: Transaction, group_id: int) -> list[int]:
    rows = await tx.fetch_all("SELECT scim_user_id FROM scim_group_members WHERE group_id = ?", (group_id,))
    return [r["scim_user_id"] for r in rows]


async def _set_members(tx: Transaction, org: Org, group_id: int, fields: GroupFields, before: list[int]) -> None:
    for scim_id in fields.member_ids:
        if not await tx.fetch_value("SELECT 1 FROM scim_users WHERE id = ? AND org_id = ?", (scim_id, org.id)):
            raise ScimError(400, "invalidValue", f"no User {scim_id} in this organization")
        await tx.execute("INSERT INTO scim_group_members (group_id, scim_user_id) VALUES (?, ?)", (group_id, scim_id))
    await _sync_roles(tx, org, sorted(set(before) | set(fields.member_ids)))


async def _sync_roles(tx: Transaction, org: Org, scim_ids: list[int]) -> None:
    """Each user's org role from the groups they are in, through the org's group-to-role mapping
    (accounts/group_roles.py; owners are left alone)."""
    for scim_id in scim_ids:
        names = await tx.fetch_all(
            "SELECT g.display_name AS name FROM scim_group_members m JOIN scim_groups g ON g.id = m.group_id"
            " WHERE m.scim_user_id = ?", (scim_id,))
        user_id = await tx.fetch_value("SELECT user_id FROM scim_users WHERE id = ?", (scim_id,))
        if user_id is not None:
            await write_role(tx, org.id, user_id, await role_for_groups(tx, org.id, [n["name"] for n in names]))
