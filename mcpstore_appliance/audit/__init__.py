"""The audit log: append-only, hash-chained per organization, sealed by signed checkpoints.

Callers record an event inside the same write transaction as the change it describes, so the log and the state
never disagree (`record`). Each event carries NIST AU-3's fields: what (`action`), when (`at_ms`, UTC), where
(`location`), source (`ip`), outcome, who (`actor`), and the target; where/source come from the request being
served (context.py). The rest of the package:

- chain.py      the per-org hash chain and the event id
- seals.py      Ed25519-signed checkpoints of each chain, also logged in the transparency ledger
- verify.py     re-checks chains, seals and anchors; names the first row changed, removed or cut off
- service.py    the AuditLog service: queries with filters, sealing timer, events outside a transaction
- retention.py  pruning old events behind a signed anchor, so the chain stays verifiable
- export.py     JSON Lines, CEF, RFC 5424 syslog (pushed over TCP with octet counting)
- report.py     the compliance report's data
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from ..canonical import canonical_json
from ..db import Transaction
from . import context
from .chain import GENESIS, chain_of, event_hash, uuid7

Outcome = Literal["success", "failure"]


@dataclass(frozen=True)
class Actor:
    id: int | None
    name: str
    ip: str | None = None


SYSTEM = Actor(None, "system")
ANONYMOUS = Actor(None, "anonymous")


async def chain_head(tx: Transaction, chain: int) -> tuple[int, str]:
    """(seq, hash) of a chain's last event; after a prune that removed everything, its anchor's."""
    row = await tx.fetch_one("SELECT seq, hash FROM audit_events WHERE chain = ? ORDER BY seq DESC LIMIT 1", (chain,))
    if row is None:
        row = await tx.fetch_one("SELECT through_seq AS seq, through_hash AS hash FROM audit_anchors"
                                 " WHERE chain = ? ORDER BY through_seq DESC LIMIT 1", (chain,))
    return (row["seq"], row["hash"]) if row else (0, GENESIS)


@dataclass(frozen=True)
class Event:
    """One event to record, with where and when it happened (they are taken when the Event is made)."""

    actor: Actor
    action: str
    target: str | None = None
    org_id: int | None = None
    details: dict[str, Any] | None = None
    outcome: Outcome = "success"
    reason: str | None = None
    where: context.Where = field(default_factory=context.current)
    at_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def row(self, seq: int, prev_hash: str) -> dict[str, Any]:
        row = {
            "event_id": uuid7(self.at_ms), "chain": chain_of(self.org_id), "seq": seq, "at_ms": self.at_ms,
            "org_id": self.org_id, "actor_id": self.actor.id, "actor": self.actor.name, "action": self.action,
            "target": self.target, "outcome": self.outcome, "reason": self.reason,
            "ip": self.actor.ip or self.where.source, "location": self.where.location,
            "request_id": self.where.request_id, "user_agent": self.where.user_agent,
            "details": canonical_json(self.details or {}),
        }
        return {**row, "prev_hash": prev_hash, "hash": event_hash(prev_hash, row)}


async def record(tx: Transaction, actor: Actor, action: str, *, target: str | None = None,
                 org_id: int | None = None, details: dict[str, Any] | None = None,
                 outcome: Outcome = "success", reason: str | None = None, where: context.Where | None = None) -> int:
    """Append one event to its org's chain (site-wide events: chain 0) inside the caller's transaction.
    `where`: for work done apart from the request it belongs to (default: the request being served)."""
    event = Event(actor, action, target, org_id, details, outcome, reason, where or context.current())
    seq, prev_hash = await chain_head(tx, chain_of(org_id))
    return await tx.insert("audit_events", event.row(seq + 1, prev_hash))


async def record_many(tx: Transaction, events: list[Event]) -> None:
    """Append events in order with one read of each chain's head and one insert statement (a batch of
    buffered read events costs a few round trips to the writer, not three per event)."""
    heads: dict[int, tuple[int, str]] = {}
    rows = []
    for event in events:
        chain = chain_of(event.org_id)
        seq, prev_hash = heads.get(chain) or await chain_head(tx, chain)
        row = event.row(seq + 1, prev_hash)
        heads[chain] = (row["seq"], row["hash"])
        rows.append(row)
    if rows:
        columns = list(rows[0])
        await tx.execute_many(f"INSERT INTO audit_events ({', '.join(columns)}) VALUES "
                              f"({', '.join(':' + c for c in columns)})", rows)
