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
from dataclasses import dataclass
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


async def record(tx: Transaction, actor: Actor, action: str, *, target: str | None = None,
                 org_id: int | None = None, details: dict[str, Any] | None = None,
                 outcome: Outcome = "success", reason: str | None = None, where: context.Where | None = None,
                 at_ms: int | None = None) -> int:
    """Append one event to its org's chain (site-wide events: chain 0) inside the caller's transaction.
    `where` and `at_ms`: for an event written after the request it belongs to (default: the request being
    served, and now)."""
    where = where or context.current()
    chain = chain_of(org_id)
    seq, prev_hash = await chain_head(tx, chain)
    at_ms = at_ms or time.time_ns() // 1_000_000
    row = {
        "event_id": uuid7(at_ms), "chain": chain, "seq": seq + 1, "at_ms": at_ms, "org_id": org_id,
        "actor_id": actor.id, "actor": actor.name, "action": action, "target": target,
        "outcome": outcome, "reason": reason, "ip": actor.ip or where.source, "location": where.location,
        "request_id": where.request_id, "user_agent": where.user_agent, "details": canonical_json(details or {}),
    }
    return await tx.insert("audit_events", {**row, "prev_hash": prev_hash, "hash": event_hash(prev_hash, row)})
