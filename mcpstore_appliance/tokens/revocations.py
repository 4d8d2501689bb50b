"""The revocation list of usage tokens, public at /.well-known/mcpstore-revocations.json for validators.

Two kinds of entries, each kept only while a token it refuses could still be valid (TOKEN_SECONDS plus skew):
- `jti`: single tokens, revoked with the licence key they were issued for (usage_revocations);
- `subjects`: {sub, mcp, revoked_at}: every token of that user for that package issued at or before
  `revoked_at`. They are derived from the market's own state, so every way access ends is covered without a
  hook in each: an entitlement revoked (refund, dispute, a manager's revoke) or a subscription period that ended
  (a cancelled subscription). A user who still has access otherwise just exchanges their licence key again.

The list is rebuilt at most once a second (at once after a licence key is revoked here); the appliance's own
checks use the same snapshot.
"""

from __future__ import annotations

import hashlib
import json
import time

from .keyring import SKEW_SECONDS, TOKEN_SECONDS

WINDOW = TOKEN_SECONDS + SKEW_SECONDS
REBUILD_SECONDS = 1.0
MAX_AGE_SECONDS = 15  # with a validator's 30 s refresh, a refunded buyer is refused within 45 s

ENDED_SQL = (
    "SELECT e.scope, e.user_id, e.org_id, e.id, p.namespace || '/' || p.name AS mcp,"
    " coalesce(e.revoked_at, e.period_end) AS at FROM market_entitlements e JOIN packages p ON p.id = e.package_id"
    " WHERE e.revoked_at > ? OR (e.revoked_at IS NULL AND e.period_end > ? AND e.period_end <= ?)")


class Revocations:
    def __init__(self, db):
        self.db = db
        self._built = 0.0
        self._jtis: frozenset[str] = frozenset()
        self._subjects: dict[tuple[str, str], float] = {}
        self.body = b""
        self.etag = ""

    def invalidate(self) -> None:
        """Rebuild on the next look (a revocation made by this process)."""
        self._built = 0.0

    async def current(self) -> "Revocations":
        if time.monotonic() - self._built >= REBUILD_SECONDS:
            await self._rebuild()
        return self

    async def _rebuild(self) -> None:
        now = time.time()
        jtis = frozenset(r["jti"] for r in await self.db.fetch_all(
            "SELECT jti FROM usage_revocations WHERE expires_at > ?", (now - SKEW_SECONDS,)))
        subjects: dict[tuple[str, str], float] = {}
        for row in await self.db.fetch_all(ENDED_SQL, (now - WINDOW, now - WINDOW, now)):
            for user_id in await self._users_of(row):
                key = (f"user:{user_id}", row["mcp"])
                subjects[key] = max(subjects.get(key, 0.0), row["at"])
        document = {"generated_at": int(now), "max_age": MAX_AGE_SECONDS, "jti": sorted(jtis),
                    "subjects": [{"sub": sub, "mcp": mcp, "revoked_at": at}
                                 for (sub, mcp), at in sorted(subjects.items())]}
        self.body = json.dumps(document, separators=(",", ":")).encode()
        # the ETag leaves out generated_at: the same entries are the same list
        self.etag = '"' + hashlib.sha256(json.dumps([document["jti"], document["subjects"]]).encode()).hexdigest()[:32] + '"'
        self._jtis, self._subjects, self._built = jtis, subjects, time.monotonic()

    async def _users_of(self, row: dict) -> list[int]:
        if row["scope"] == "user":
            return [row["user_id"]]
        if row["scope"] == "seats":
            sql, param = "SELECT user_id FROM market_seats WHERE entitlement_id = ?", row["id"]
        else:
            sql, param = "SELECT user_id FROM memberships WHERE org_id = ?", row["org_id"]
        return [r["user_id"] for r in await self.db.fetch_all(sql, (param,))]

    def is_revoked(self, claims: dict) -> bool:
        if claims["jti"] in self._jtis:
            return True
        at = self._subjects.get((claims["sub"], claims["mcp"]))
        return at is not None and claims["iat"] <= at
