"""The hash chain of one org's events: hash = sha256(prev_hash || canonical JSON of the event's columns).

`HASHED` names every stored column a hash covers (all but `id`, `prev_hash` and `hash`), so editing any field of
a row, or the link to its predecessor, shows when the chain is recomputed.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from typing import Any

from ..canonical import canonical_json

GENESIS = "0" * 64
HASHED = ("event_id", "chain", "seq", "at_ms", "org_id", "actor_id", "actor", "action", "target", "outcome",
          "reason", "ip", "location", "request_id", "user_agent", "details")


def chain_of(org_id: int | None) -> int:
    return org_id or 0


def event_hash(prev_hash: str, row: dict[str, Any]) -> str:
    body = canonical_json({key: row[key] for key in HASHED})
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def uuid7(now_ms: int | None = None) -> str:
    """A time-ordered UUID (RFC 9562 version 7): consumers deduplicate on it, and it sorts by time."""
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    value = (ms & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big") & ((1 << 80) - 1)
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC variant
    return str(uuid.UUID(int=value))


def utc_ms(at_ms: int) -> str:
    """RFC 3339 UTC with milliseconds (AU-8)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at_ms // 1000)) + f".{at_ms % 1000:03d}Z"
