"""A user's OAuth grants as the user sees them (web/pages/grants.py): which application may call which hosted
endpoint, since when, and when it last did; and revoking one, which ends its access and refresh tokens at once
(the resource server and the token endpoint both refuse a token of a revoked grant)."""

from __future__ import annotations

import time
from typing import Any

from .. import audit
from ..accounts.models import Principal
from ..audit import Actor
from ..errors import NotFound

TOUCH_SECONDS = 60.0  # "last used" is written at most this often per grant: a call is not a database write


class Grants:
    def __init__(self, db, base_url: str):
        self.db = db
        self.base_url = base_url

    async def of(self, principal: Principal, limit: int = 200) -> list[dict[str, Any]]:
        """The user's grants still in force, newest first."""
        rows = await self.db.fetch_all(
            "SELECT g.id, g.resource, g.scope, g.created_at, g.last_used_at, c.client_name, c.client_id"
            " FROM oauth_grants g JOIN oauth_clients c ON c.client_id = g.client_id"
            " WHERE g.user_id = ? AND g.revoked_at IS NULL ORDER BY g.id DESC LIMIT ?", (principal.id, limit))
        return [{**row, "package": self._package(row["resource"]), "scopes": row["scope"].split()} for row in rows]

    def _package(self, resource: str) -> str:
        """namespace/name of a hosted endpoint's URL (the resource of every grant this server makes)."""
        prefix = f"{self.base_url}/mcp/"
        return resource[len(prefix):] if resource.startswith(prefix) else resource

    async def revoke(self, principal: Principal, grant_id: int, ip: str | None = None) -> None:
        """Revoke one of the user's own grants; another user's, or an unknown one, is not found (nothing
        tells whether it exists)."""
        now = time.time()
        async with self.db.write() as tx:
            row = await tx.fetch_one(
                "SELECT g.id, g.resource, g.client_id, c.client_name FROM oauth_grants g"
                " JOIN oauth_clients c ON c.client_id = g.client_id"
                " WHERE g.id = ? AND g.user_id = ? AND g.revoked_at IS NULL", (grant_id, principal.id))
            if row is None:
                raise NotFound("no such application access", code="no_such_grant")
            await tx.execute("UPDATE oauth_grants SET revoked_at = ? WHERE id = ?", (now, grant_id))
            await audit.record(tx, Actor(principal.id, principal.user.username, ip), "oauth.grant_revoke",
                               target=row["client_id"],
                               details={"client_name": row["client_name"], "resource": row["resource"]})

    async def touch(self, grant_id: int, last_used_at: float | None) -> None:
        now = time.time()
        if last_used_at is None or now - last_used_at >= TOUCH_SECONDS:
            async with self.db.write() as tx:
                await tx.execute("UPDATE oauth_grants SET last_used_at = ? WHERE id = ?", (now, grant_id))
