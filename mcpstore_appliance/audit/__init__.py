"""Append-only, hash-chained audit events.

Callers record an event inside the same write transaction as the change it describes, so the log and
the state never disagree. Each event's hash is sha256 over the previous hash and the event's canonical
JSON, so deleting or editing a row (blocked by triggers anyway) breaks the chain visibly.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from ..canonical import canonical_json
from ..db import Transaction

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    id: int | None
    name: str
    ip: str | None = None


SYSTEM = Actor(None, "system")


def _event_hash(prev_hash: str, event: dict[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(event)).encode()).hexdigest()


async def record(tx: Transaction, actor: Actor, action: str, *, target: str | None = None,
                 org_id: int | None = None, details: dict[str, Any] | None = None) -> int:
    prev_hash = await tx.fetch_value("SELECT hash FROM audit_events ORDER BY id DESC LIMIT 1", default=GENESIS)
    event = {
        "at": time.time(), "actor_id": actor.id, "actor": actor.name, "action": action,
        "org_id": org_id, "target": target, "details": canonical_json(details or {}), "ip": actor.ip,
    }
    event_hash = _event_hash(prev_hash, event)
    return await tx.insert("audit_events", {**event, "prev_hash": prev_hash, "hash": event_hash})


def verify_chain(rows: list[dict[str, Any]]) -> int | None:
    """Return the id of the first event whose hash does not follow from the chain, or None."""
    prev_hash = GENESIS
    for row in rows:
        event = {key: row[key] for key in ("at", "actor_id", "actor", "action", "org_id", "target", "details", "ip")}
        if row["prev_hash"] != prev_hash or row["hash"] != _event_hash(prev_hash, event):
            return row["id"]
        prev_hash = row["hash"]
    return None
