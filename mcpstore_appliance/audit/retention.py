"""Retention: drop a chain's events older than the cut-off, after a signed anchor records the last pruned
event's seq and hash. The delete trigger lets through only rows an anchor covers (migration 016), and
verify.py starts the chain at the anchor, so `audit verify` still passes after a prune and still catches
everything after it."""

from __future__ import annotations

from nacl.signing import SigningKey

from ..db import Database
from . import SYSTEM, record
from .seals import signed_anchor


async def prune(db: Database, key: SigningKey, cutoff_ms: int) -> int:
    """Prune every chain's events older than `cutoff_ms`; returns how many were deleted (the prune is audited)."""
    deleted = 0
    async with db.write() as tx:
        ends = await tx.fetch_all("SELECT chain, MAX(seq) AS seq FROM audit_events WHERE at_ms < ? GROUP BY chain",
                                  (cutoff_ms,))
        for end in ends:
            through_hash = await tx.fetch_value("SELECT hash FROM audit_events WHERE chain = ? AND seq = ?",
                                                (end["chain"], end["seq"]))
            await tx.insert("audit_anchors", signed_anchor(key, end["chain"], end["seq"], through_hash))
            deleted += await tx.changes("DELETE FROM audit_events WHERE chain = ? AND seq <= ?",
                                        (end["chain"], end["seq"]))
        if deleted:
            await record(tx, SYSTEM, "audit.prune", details={"events": deleted, "chains": len(ends),
                                                           "before_ms": cutoff_ms})
    return deleted
