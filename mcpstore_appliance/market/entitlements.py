"""Who may use a paid package: entitlements per major version (1.x buyers get every 1.y.z), for one user, a
whole org, or named seats of an org; subscriptions until the end of their paid period.

`covers` is synchronous over a plain sqlite3 connection so that the catalog's in-loop readers (downloads and
update checks, catalog/package_view.py) can ask it without the catalog importing this package: app.py hands it
over as a function.
"""

from __future__ import annotations

import calendar
import json
import sqlite3
import time
from datetime import datetime, timezone

ACTIVE = ("e.package_id = ? AND e.major = ? AND e.revoked_at IS NULL AND (e.period_end IS NULL OR e.period_end > ?)")


def covers(conn: sqlite3.Connection, user_id: int, org_ids: frozenset[int] | set[int], package_id: int,
           major: int, now: float | None = None) -> bool:
    """Whether some active entitlement gives `user_id` (a member of `org_ids`) access to `major`."""
    orgs = sorted(org_ids)
    org_clause = f"(e.scope = 'org' AND e.org_id IN ({','.join('?' * len(orgs))}))" if orgs else "0"
    row = conn.execute(
        f"SELECT 1 FROM market_entitlements e WHERE {ACTIVE} AND ((e.scope = 'user' AND e.user_id = ?)"
        f" OR {org_clause} OR (e.scope = 'seats' AND EXISTS (SELECT 1 FROM market_seats s"
        "  WHERE s.entitlement_id = e.id AND s.user_id = ?))) LIMIT 1",
        (package_id, major, time.time() if now is None else now, user_id, *orgs, user_id)).fetchone()
    return row is not None


def add_month(ts: float) -> float:
    """The same time one calendar month later (31 January -> 28/29 February)."""
    moment = datetime.fromtimestamp(ts, timezone.utc)
    year, month = (moment.year + 1, 1) if moment.month == 12 else (moment.year, moment.month + 1)
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day).timestamp()


async def grant(tx, *, package_id: int, major: int, kind: str, scope: str, user_id: int | None,
                org_id: int | None, order_id: int | None = None, reference: str | None = None,
                period_end: float | None = None, seats: list[int] = ()) -> int:
    entitlement = await tx.insert("market_entitlements", {
        "package_id": package_id, "major": major, "kind": kind, "scope": scope,
        "user_id": user_id if scope == "user" else None, "org_id": None if scope == "user" else org_id,
        "order_id": order_id, "reference": reference, "period_end": period_end, "created_at": time.time()})
    await tx.execute_many("INSERT OR IGNORE INTO market_seats (entitlement_id, user_id) VALUES (?, ?)",
                          [(entitlement, seat) for seat in seats])
    return entitlement


async def extend_for_order(tx, order: dict, now: float) -> int:
    """The order's entitlement, made on its first payment and moved one month on by each subscription period
    (from its current end, or from now when it had lapsed)."""
    existing = await tx.fetch_one("SELECT id, period_end FROM market_entitlements WHERE order_id = ?",
                                  (order["id"],))
    if order["kind"] == "subscription":
        start = max(now, existing["period_end"] or now) if existing else now
        period_end = add_month(start)
    else:
        period_end = None
    if existing is not None:
        await tx.execute("UPDATE market_entitlements SET period_end = ?, revoked_at = NULL WHERE id = ?",
                         (period_end, existing["id"]))
        return existing["id"]
    kind = {"subscription": "subscription", "credits": "per_call"}.get(order["kind"], "purchase")
    return await grant(tx, package_id=order["package_id"], major=order["major"], kind=kind, scope=order["scope"],
                       user_id=order["buyer_user_id"], org_id=order["buyer_org_id"], order_id=order["id"],
                       period_end=period_end, seats=json.loads(order["seats"]))


async def revoke(tx, entitlement_id: int) -> bool:
    return bool(await tx.changes("UPDATE market_entitlements SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                                 (time.time(), entitlement_id)))


async def revoke_for_order(tx, order_id: int) -> bool:
    return bool(await tx.changes("UPDATE market_entitlements SET revoked_at = ? WHERE order_id = ?"
                                 " AND revoked_at IS NULL", (time.time(), order_id)))


async def active_kind(db, user_id: int, org_ids: frozenset[int], package_id: int) -> str | None:
    """The kind of an active entitlement (any major) giving `user_id` access to the package, or None: what a usage
    token's `tier` says. Async, for the services; `covers` above is the catalog's synchronous form."""
    orgs = sorted(org_ids)
    org_clause = f"(e.scope = 'org' AND e.org_id IN ({','.join('?' * len(orgs))}))" if orgs else "0"
    return await db.fetch_value(
        "SELECT e.kind FROM market_entitlements e WHERE e.package_id = ? AND e.revoked_at IS NULL"
        f" AND (e.period_end IS NULL OR e.period_end > ?) AND ((e.scope = 'user' AND e.user_id = ?) OR {org_clause}"
        " OR (e.scope = 'seats' AND EXISTS (SELECT 1 FROM market_seats s WHERE s.entitlement_id = e.id"
        "  AND s.user_id = ?))) ORDER BY e.period_end IS NOT NULL, e.id LIMIT 1",
        (package_id, time.time(), user_id, *orgs, user_id))
