"""Re-check the audit log: every chain's links and hashes, its seals (signatures, and the head each one signed),
its pruning anchor, and the `audit-seal` leaves of the transparency ledger. The first problem of each chain is
named: the row that was changed, the sequence number that was removed, or the tail that was cut off.

Runs on a plain sqlite3 connection (a reader thread of the appliance, or the CLI), streaming rows in order.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict, dataclass, field
from typing import Any

from nacl.signing import VerifyKey

from ..ledger import events as ledger_events
from .chain import GENESIS, event_hash
from .seals import ANCHOR_FIELDS, SEAL_FIELDS, seal_hash, signature_ok


@dataclass(frozen=True)
class Problem:
    chain: int
    kind: str  # changed | removed | cut_off | bad_seal | bad_anchor
    seq: int | None
    event_id: str | None
    message: str


@dataclass
class Report:
    events: int = 0
    chains: int = 0
    seals: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "events": self.events, "chains": self.chains, "seals": self.seals,
                "problems": [asdict(p) for p in self.problems]}


def _dicts(conn: sqlite3.Connection, sql: str, params: tuple = ()) -> list[dict[str, Any]]:
    cursor = conn.execute(sql, params)
    names = [c[0] for c in cursor.description]
    return [dict(zip(names, row)) for row in cursor]


class _Chain:
    """What one chain's walk established: the hash at each sealed seq, and where the rows end."""

    def __init__(self, chain: int, anchor: dict[str, Any] | None):
        self.chain = chain
        self.anchor = anchor
        self.start = anchor["through_seq"] if anchor else 0
        self.last_seq = self.start
        self.problem: Problem | None = None
        self.hashes: dict[int, str] = {self.start: anchor["through_hash"] if anchor else GENESIS}

    def fail(self, kind: str, seq: int | None, event_id: str | None, message: str) -> None:
        if self.problem is None:
            self.problem = Problem(self.chain, kind, seq, event_id, message)


def _walk(chain: _Chain, rows, wanted: set[int]) -> int:
    prev_hash, expected, previous = chain.hashes[chain.start], chain.start + 1, None
    count = 0
    for row in rows:
        count += 1
        if chain.problem:
            continue
        if row["seq"] != expected:
            chain.fail("removed", expected, None, f"event seq {expected} of chain {chain.chain} was removed"
                       + (f" (after event {previous['event_id']})" if previous else ""))
            continue
        if row["prev_hash"] != prev_hash:
            culprit = previous or row
            chain.fail("changed", culprit["seq"], culprit["event_id"],
                       f"event seq {culprit['seq']} ({culprit['event_id']}) of chain {chain.chain} was changed")
            continue
        if row["hash"] != event_hash(prev_hash, row):
            chain.fail("changed", row["seq"], row["event_id"],
                       f"event seq {row['seq']} ({row['event_id']}) of chain {chain.chain} was changed")
            continue
        if row["seq"] in wanted:
            chain.hashes[row["seq"]] = row["hash"]
        prev_hash, expected, previous = row["hash"], expected + 1, row
        chain.last_seq = row["seq"]
    return count


def _check_sealed_point(chain: _Chain, last_seq: int, head_hash: str, what: str) -> None:
    if last_seq < chain.start:
        return  # pruned: the anchor speaks for it
    if last_seq > chain.last_seq:
        if chain.problem is None:
            chain.fail("cut_off", chain.last_seq + 1, None,
                       f"chain {chain.chain} was cut off: events seq {chain.last_seq + 1}..{last_seq} are gone "
                       f"({what} covers them)")
        return
    if chain.hashes.get(last_seq) != head_hash and chain.problem is None:
        chain.fail("changed", None, None, f"chain {chain.chain} does not match {what} at seq {last_seq}: "
                   "an event at or before it was changed")


def verify(conn: sqlite3.Connection, key: VerifyKey) -> Report:
    report = Report()
    seals_by_chain: dict[int, list[dict]] = {}
    for seal in _dicts(conn, "SELECT * FROM audit_seals ORDER BY id"):
        seals_by_chain.setdefault(seal["chain"], []).append(seal)
    ledger_seals = _ledger_seals(conn)
    anchors = {a["chain"]: a for a in _dicts(conn, "SELECT * FROM audit_anchors ORDER BY through_seq")}
    chains = {r[0] for r in conn.execute("SELECT DISTINCT chain FROM audit_events")} | set(seals_by_chain) \
        | set(anchors) | {s["chain"] for s in ledger_seals}
    report.seals = sum(len(s) for s in seals_by_chain.values())
    for number in sorted(chains):
        chain = _Chain(number, anchors.get(number))
        if chain.anchor and not signature_ok(key, chain.anchor, ANCHOR_FIELDS, "audit-anchor"):
            chain.fail("bad_anchor", chain.start, None, f"the pruning anchor of chain {number} is not validly signed")
        seals = seals_by_chain.get(number, [])
        wanted = {s["last_seq"] for s in seals} | {s["last_seq"] for s in ledger_seals if s["chain"] == number}
        cursor = conn.execute("SELECT * FROM audit_events WHERE chain = ? ORDER BY seq", (number,))
        names = [c[0] for c in cursor.description]
        report.events += _walk(chain, (dict(zip(names, row)) for row in cursor), wanted)
        _check_seals(chain, seals, key)
        known = {s["seal_hash"] for s in seals}
        for leaf in (s for s in ledger_seals if s["chain"] == number):
            if leaf["seal_sha256"] not in known and chain.problem is None:
                chain.fail("bad_seal", None, None, f"the seal logged at ledger index {leaf['index']} is missing")
            _check_sealed_point(chain, leaf["last_seq"], leaf["head_hash"], f"ledger entry {leaf['index']}")
        report.chains += 1
        if chain.problem:
            report.problems.append(chain.problem)
    return report


def _check_seals(chain: _Chain, seals: list[dict], key: VerifyKey) -> None:
    prev = "0" * 64
    for seal in seals:
        if not signature_ok(key, seal, SEAL_FIELDS, "audit-seal") or seal_hash(seal) != seal["seal_hash"] \
                or seal["prev_seal"] != prev:
            chain.fail("bad_seal", seal["last_seq"], None,
                       f"seal {seal['id']} of chain {chain.chain} is not validly signed or not linked")
            return
        prev = seal["seal_hash"]
        _check_sealed_point(chain, seal["last_seq"], seal["head_hash"], f"seal {seal['id']}")


def _ledger_seals(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The `audit-seal` events the ledger holds (a sealed leaf's event is its stored opening)."""
    found = []
    for index, data, opening in conn.execute(
            "SELECT idx, data, opening FROM ledger_leaves WHERE instr(CAST(COALESCE(opening, data) AS TEXT), ?) > 0"
            " ORDER BY idx", (f'"kind":"{ledger_events.AUDIT_SEAL}"',)):
        try:
            event = json.loads(opening if opening is not None else data)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("kind") == ledger_events.AUDIT_SEAL:
            found.append({**event, "index": index})
    return found
