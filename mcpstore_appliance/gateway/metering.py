"""Metering: every tools/call through the gateway becomes a row of `invocations` (who, which package and
version, outcome, duration). Rows are buffered and written in one transaction every few seconds rather than
one commit per call: every commit makes the catalog's in-memory answers read again (Database.stamp, db/stamp.py).

`on_call` is the billing hook's second half (gateway/billing.py): a per-call package's call was charged before
it ran, and a call that did not succeed is given back here; it runs for every call, before the row is buffered.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import audit

log = logging.getLogger("mcpstore.gateway")
FLUSH_SECONDS = 2.0
FLUSH_ROWS = 500


@dataclass(frozen=True)
class Invocation:
    user_id: int | None
    package_id: int
    version_id: int
    org_id: int | None
    tool: str
    via: str  # "mcp" or "invoke"
    outcome: str  # ok, tool_error, rpc_error, timeout, failed
    duration_ms: float
    at: float = 0.0
    charge: str | None = None  # what the billing charged for this call before it ran (gateway/billing.py)


CallHook = Callable[[Invocation], Awaitable[None]]


async def no_billing(invocation: Invocation) -> None:
    """The default billing hook: nothing to debit until the marketplace exists."""


class Meter:
    def __init__(self, db, on_call: CallHook = no_billing):
        self.db = db
        self.on_call = on_call
        self._rows: list[Invocation] = []
        self._task: asyncio.Task | None = None

    async def record(self, invocation: Invocation) -> None:
        invocation = Invocation(**{**invocation.__dict__, "at": invocation.at or time.time()})
        try:
            await self.on_call(invocation)
        finally:
            self._rows.append(invocation)
            if len(self._rows) >= FLUSH_ROWS:
                await self.flush()

    async def flush(self) -> int:
        rows, self._rows = self._rows, []
        if not rows:
            return 0
        counts: dict[int, int] = {}
        for row in rows:
            counts[row.package_id] = counts.get(row.package_id, 0) + 1
        async with self.db.write() as tx:
            await tx.execute_many(
                "INSERT INTO invocations (at, user_id, package_id, version_id, org_id, tool, via, outcome,"
                " duration_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.at, r.user_id, r.package_id, r.version_id, r.org_id, r.tool[:200], r.via, r.outcome,
                  round(r.duration_ms, 3)) for r in rows])
            await tx.execute_many("UPDATE packages SET invocations = invocations + ? WHERE id = ?",
                                  [(n, package_id) for package_id, n in counts.items()])
            await _audit_calls(tx, rows)
        return len(rows)

    def start(self) -> None:
        async def loop():
            while True:
                await asyncio.sleep(FLUSH_SECONDS)
                try:
                    await self.flush()
                except Exception:
                    log.exception("writing invocation records failed")

        self._task = asyncio.get_running_loop().create_task(loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
        await self.flush()


async def _audit_calls(tx, rows: list[Invocation]) -> None:
    """Each hosted call is an audit event in its package's org chain (site chain for personal packages), written
    with the metering rows: the call's own time is kept in the details (the event's time is the flush's)."""
    ids = sorted({r.user_id for r in rows if r.user_id is not None})
    names = {row["id"]: row["username"] for row in await tx.fetch_all(
        f"SELECT id, username FROM users WHERE id IN ({', '.join('?' * len(ids))})", ids)} if ids else {}
    refs = {row["id"]: f"{row['namespace']}/{row['name']}" for row in await tx.fetch_all(
        f"SELECT id, namespace, name FROM packages WHERE id IN ({', '.join('?' * len({r.package_id for r in rows}))})",
        sorted({r.package_id for r in rows}))}
    where = audit.context.Where("gateway")
    await audit.record_many(tx, [audit.Event(
        audit.Actor(r.user_id, names.get(r.user_id, "anonymous")), "package.call",
        f"{refs.get(r.package_id, r.package_id)}#{r.tool[:200]}", r.org_id,
        {"via": r.via, "at_ms": int(r.at * 1000), "duration_ms": round(r.duration_ms, 3), "version_id": r.version_id},
        "success" if r.outcome == "ok" else "failure", None if r.outcome == "ok" else r.outcome, where)
        for r in rows])
