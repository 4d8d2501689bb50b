"""Signed checkpoints ("seals") of each org's chain, and signed anchors of pruned prefixes.

A seal signs {chain, org_id, last_seq, head_hash, at_ms, prev_seal} with the appliance's audit key (Ed25519) and
is also appended to the transparency ledger as an `audit-seal` leaf (sealed, i.e. private, for an org's chain).
Anyone holding a later ledger checkpoint can then tell a log that lost its tail: the ledger still commits to a
seal of events that are gone. Modelled on CloudTrail's digests, each naming the previous one.
"""

from __future__ import annotations

import base64
import hashlib
import time
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from ..canonical import canonical_bytes
from ..db import Transaction
from ..ledger import events as ledger_events
from .chain import GENESIS

SEAL_FIELDS = ("chain", "org_id", "last_seq", "head_hash", "at_ms", "prev_seal")
ANCHOR_FIELDS = ("chain", "through_seq", "through_hash", "at_ms")


def key_id(key: VerifyKey) -> str:
    return hashlib.sha256(bytes(key)).hexdigest()[:16]


def _sign(key: SigningKey, body: dict[str, Any]) -> str:
    return base64.b64encode(key.sign(canonical_bytes(body)).signature).decode()


def signature_ok(key: VerifyKey, row: dict[str, Any], fields: tuple[str, ...], domain: str) -> bool:
    body = {"type": domain, **{name: row[name] for name in fields}}
    try:
        key.verify(canonical_bytes(body), base64.b64decode(row["signature"], validate=True))
        return True
    except (BadSignatureError, ValueError):
        return False


def seal_hash(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes({"type": "audit-seal", **{n: row[n] for n in SEAL_FIELDS}})).hexdigest()


def ledger_event(seal: dict[str, Any]) -> dict[str, Any]:
    """The ledger leaf of a seal: enough to check a chain against it without the seal row."""
    return {"kind": ledger_events.AUDIT_SEAL, "chain": seal["chain"], "last_seq": seal["last_seq"],
            "head_hash": seal["head_hash"], "seal_sha256": seal["seal_hash"], "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seal["at_ms"] // 1000))}


async def write_seal(tx: Transaction, key: SigningKey, ledger, chain: int, org_id: int | None,
                     last_seq: int, head_hash: str) -> dict[str, Any]:
    """Seal a chain at (last_seq, head_hash) inside the caller's transaction, with its ledger leaf."""
    prev = await tx.fetch_value("SELECT seal_hash FROM audit_seals WHERE chain = ? ORDER BY id DESC LIMIT 1",
                                (chain,), default=GENESIS)
    row = {"chain": chain, "org_id": org_id, "last_seq": last_seq, "head_hash": head_hash,
           "at_ms": time.time_ns() // 1_000_000, "prev_seal": prev}
    row["signature"] = _sign(key, {"type": "audit-seal", **row})
    row["key_id"] = key_id(key.verify_key)
    row["seal_hash"] = seal_hash(row)
    row["ledger_index"] = await ledger.append(tx, ledger_event(row), org_id=org_id)
    await tx.insert("audit_seals", row)
    return row


def signed_anchor(key: SigningKey, chain: int, through_seq: int, through_hash: str) -> dict[str, Any]:
    row = {"chain": chain, "through_seq": through_seq, "through_hash": through_hash,
           "at_ms": time.time_ns() // 1_000_000}
    return {**row, "signature": _sign(key, {"type": "audit-anchor", **row}), "key_id": key_id(key.verify_key)}
