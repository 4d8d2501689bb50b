"""The AuditLog service: events recorded outside a state change (sign-in failures, downloads, exports), queries
with filters for the views and exports, and the timer that seals chains with new events and prunes old ones."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from pathlib import Path

from nacl.signing import SigningKey

from ..config import AuditSettings
from ..db import Database
from ..errors import InvalidInput
from ..keys import load_or_create_signing_key
from . import Actor, Event, Outcome, record, record_many
from .chain import utc_ms
from .retention import prune
from .seals import key_id, write_seal
from .verify import Report, verify

log = logging.getLogger("mcpstore.audit")
MAX_PAGE = 500
FLUSH_SECONDS = 1.0  # buffered read events (downloads) are written this often
FLUSH_EVENTS = 200


@dataclass(frozen=True)
class Filters:
    org_id: int | None = None  # None: every chain (site administrators)
    actor: str | None = None
    action: str | None = None  # exact, or a prefix ending in "." ("package.")
    outcome: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None  # exclusive

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["1 = 1"], []
        for column, value in (("e.org_id", self.org_id), ("e.actor", self.actor), ("e.outcome", self.outcome)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.action:
            clauses.append("e.action LIKE ? ESCAPE '\\'" if self.action.endswith(".") else "e.action = ?")
            params.append(self.action.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                          if self.action.endswith(".") else self.action)
        if self.since_ms is not None:
            clauses.append("e.at_ms >= ?")
            params.append(self.since_ms)
        if self.until_ms is not None:
            clauses.append("e.at_ms < ?")
            params.append(self.until_ms)
        return " AND ".join(clauses), params


def event_view(row: dict[str, Any]) -> dict[str, Any]:
    """An event as the views and JSON exports show it (the fields of the reference's suggested event)."""
    return {
        "event_id": row["event_id"], "ts": utc_ms(row["at_ms"]), "org": row.get("org_slug"), "org_id": row["org_id"],
        "actor": {"id": row["actor_id"], "name": row["actor"], "ip": row["ip"], "user_agent": row["user_agent"]},
        "action": row["action"], "target": row["target"],
        "outcome": {"result": row["outcome"], "reason": row["reason"]},
        "where": row["location"], "request_id": row["request_id"], "details": json.loads(row["details"]),
        "chain": row["chain"], "seq": row["seq"], "prev_hash": row["prev_hash"], "hash": row["hash"],
    }


KEY_FILE = "audit.key"


def open_audit_log(db: Database, ledger, keys_dir: Path, settings: AuditSettings) -> "AuditLog":
    """The log with its own Ed25519 key (0600 in the data folder), apart from the ledger's so either can rotate."""
    return AuditLog(db, ledger, load_or_create_signing_key(keys_dir / KEY_FILE), settings)


class AuditLog:
    def __init__(self, db: Database, ledger, key: SigningKey, settings: AuditSettings):
        self.db = db
        self.ledger = ledger
        self.key = key
        self.settings = settings
        self._since_id = 0  # events up to this id were looked at by the last sealing run
        self._last_prune = 0.0
        self._last_seal = time.monotonic()
        self._pending: list[Event] = []
        self._task: asyncio.Task | None = None
        self._seals = True  # False in a worker process that is not the leader (worker_role.py)

    @property
    def key_id(self) -> str:
        return key_id(self.key.verify_key)

    async def record_now(self, actor: Actor, action: str, *, target: str | None = None, org_id: int | None = None,
                         details: dict[str, Any] | None = None, outcome: Outcome = "success",
                         reason: str | None = None) -> int:
        """An event that is not part of a state change (a failed sign-in, a download, an export)."""
        async with self.db.write() as tx:
            return await record(tx, actor, action, target=target, org_id=org_id, details=details,
                                outcome=outcome, reason=reason)

    async def events(self, filters: Filters, *, before_id: int | None = None, limit: int = 50) -> list[dict]:
        """Newest first; `before_id` is the cursor (the last id of the previous page)."""
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {MAX_PAGE}", code="invalid_limit")
        await self.flush()  # a reader sees the downloads up to now
        where, params = filters.where()
        if before_id is not None:
            where += " AND e.id < ?"
            params.append(before_id)
        rows = await self.db.fetch_all(
            "SELECT e.*, o.slug AS org_slug FROM audit_events e LEFT JOIN orgs o ON o.id = e.org_id"
            f" WHERE {where} ORDER BY e.id DESC LIMIT ?", (*params, limit))
        return rows

    async def all_events(self, filters: Filters, chunk: int = MAX_PAGE):
        """Every matching event, oldest first, in chunks (exports and reports)."""
        await self.flush()
        where, params = filters.where()
        after = 0
        while True:
            rows = await self.db.fetch_all(
                "SELECT e.*, o.slug AS org_slug FROM audit_events e LEFT JOIN orgs o ON o.id = e.org_id"
                f" WHERE {where} AND e.id > ? ORDER BY e.id LIMIT ?", (*params, after, chunk))
            for row in rows:
                yield row
            if len(rows) < chunk:
                return
            after = rows[-1]["id"]

    async def record_download(self, principal, package_id: int, ref: str) -> None:
        """A download by an org member (AU-2 for an org's managed software): in the package's org's chain, or,
        for a package outside any org, in each of the member's orgs. Anonymous and org-less downloads are
        counted (catalog/downloads.py), not audited. Buffered and written together about once a second (see
        `flush`), with the time and source of the download itself."""
        orgs = [principal.token_org_id] if principal.token_org_id else sorted(principal.memberships)
        if not orgs:
            return
        owner = self.db.inline(lambda c: c.execute("SELECT org_id FROM packages WHERE id = ?", (package_id,)).fetchone())
        actor = Actor(principal.id, principal.user.username)
        for org_id in [owner[0]] if owner and owner[0] else orgs:
            self._pending.append(Event(actor, "package.download", ref, org_id))
        if len(self._pending) >= FLUSH_EVENTS:
            await self.flush()

    async def flush(self) -> int:
        """Write the buffered read events in one transaction that leaves the caches' commit stamp alone: one
        commit per download would make every cached catalog answer read again (db/stamp.py). Events still
        buffered when the process dies are lost (at most FLUSH_SECONDS' worth); a clean stop flushes."""
        pending, self._pending = self._pending, []
        if pending:
            async with self.db.write(quiet=True) as tx:
                await record_many(tx, pending)
        return len(pending)

    # --- tamper evidence -----------------------------------------------------------------------------

    async def seal_pending(self) -> int:
        """Seal every chain with events newer than its last seal; returns how many seals were written."""
        await self.flush()
        async with self.db.write() as tx:
            heads = await tx.fetch_all(
                "SELECT e.chain, e.org_id, e.seq, e.hash, e.id FROM audit_events e JOIN ("
                " SELECT chain, MAX(seq) AS seq FROM audit_events WHERE id > ? GROUP BY chain) h"
                " ON h.chain = e.chain AND h.seq = e.seq", (self._since_id,))
            written = 0
            for head in heads:
                sealed = await tx.fetch_value("SELECT MAX(last_seq) FROM audit_seals WHERE chain = ?",
                                              (head["chain"],), default=0)
                if (sealed or 0) < head["seq"]:
                    await write_seal(tx, self.key, self.ledger, head["chain"], head["org_id"], head["seq"],
                                     head["hash"])
                    written += 1
            if heads:
                self._since_id = max(h["id"] for h in heads)
        return written

    async def verify(self) -> Report:
        await self.flush()
        return await self.db.threaded(lambda conn: verify(conn, self.key.verify_key))

    async def prune(self, now: float | None = None) -> int:
        """Drop events older than the retention period (none when it is 0); see retention.py."""
        days = self.settings.retention_days
        if not days:
            return 0
        await self.seal_pending()  # the anchor then sits at or before a sealed point
        cutoff_ms = int(((now or time.time()) - days * 86400) * 1000)
        return await prune(self.db, self.key, cutoff_ms)

    def start(self, *, seal: bool = True) -> None:
        """Write buffered events every FLUSH_SECONDS; with `seal`, also seal and prune on their intervals."""
        self._seals = seal
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="audit-seals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        try:
            await self.flush()
            if self._seals:
                await self.seal_pending()  # what arrived since the last run
        except Exception:
            log.exception("sealing the audit log on shutdown failed")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self.flush()
                if not self._seals:
                    continue
                if time.monotonic() - self._last_seal >= self.settings.seal_interval_seconds:
                    self._last_seal = time.monotonic()
                    await self.seal_pending()
                if time.monotonic() - self._last_prune >= self.settings.prune_interval_seconds:
                    self._last_prune = time.monotonic()
                    await self.prune()
            except Exception:  # a failed run is retried at the next tick; the log says why
                log.exception("writing, sealing or pruning the audit log failed")
