"""The audit log's tamper evidence on a real SQLite file: triggers refuse edits, and `verify` names the row that
was changed behind the triggers' back, removed from the middle, or cut off the tail (caught by the seals and by
the ledger's `audit-seal` leaves), and still passes after a prune."""

from __future__ import annotations

import sqlite3
import time

import pytest
from nacl.signing import SigningKey

from mcpstore_appliance import audit
from mcpstore_appliance.audit import Actor, context
from mcpstore_appliance.audit.service import AuditLog
from mcpstore_appliance.config import AuditSettings, LedgerSettings
from mcpstore_appliance.db import Database
from mcpstore_appliance.ledger.service import Ledger

ALICE = Actor(1, "alice", "10.0.0.1")


@pytest.fixture
async def log(tmp_path):
    db = await Database(tmp_path / "audit.sqlite3").open()
    ledger = Ledger(db, SigningKey.generate(), "unit.example/ledger", LedgerSettings(checkpoint_interval_seconds=0))
    await db.fetch_value("SELECT 1")
    async with db.write() as tx:  # two orgs, so two chains beside the site's
        for org_id, slug in ((1, "acme"), (2, "evil")):
            await tx.execute("INSERT INTO orgs (id, slug, name, created_at) VALUES (?, ?, ?, 0)", (org_id, slug, slug))
    service = AuditLog(db, ledger, SigningKey.generate(), AuditSettings())
    yield service
    await ledger.close()
    await db.close()


async def events(log: AuditLog, n: int, org_id: int | None = 1) -> None:
    for i in range(n):
        await log.record_now(ALICE, "package.publish", target=f"@acme/x@1.0.{i}", org_id=org_id)


def tamper(path, *statements: str) -> None:
    """Edit the file behind the appliance's back: drop the triggers, run the statements, restore the triggers."""
    conn = sqlite3.connect(path)
    triggers = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name LIKE 'audit_%'"
                            " AND tbl_name != 'audit_events_v1'").fetchall()
    for name, _ in triggers:
        conn.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        conn.execute(statement)
    for _, sql in triggers:
        conn.execute(sql)
    conn.commit()
    conn.close()


async def test_the_triggers_refuse_updates_and_deletes(log):
    await events(log, 2)
    await log.seal_pending()
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events",
                      "UPDATE audit_seals SET last_seq = 1", "DELETE FROM audit_seals"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with log.db.write() as tx:
                await tx.execute(statement)
    assert await log.db.fetch_value("SELECT count(*) FROM audit_events") == 2
    assert (await log.verify()).ok


async def test_events_carry_au3_fields_and_chain_per_org(log):
    context.bind(context.Where("POST /api/packages", "192.0.2.7", "req-1", "curl/8"))
    await events(log, 2, org_id=1)
    await events(log, 1, org_id=2)
    await log.record_now(audit.ANONYMOUS, "user.login", target="bob", outcome="failure", reason="bad_credentials")
    rows = await log.db.fetch_all("SELECT * FROM audit_events ORDER BY id")
    assert [(r["chain"], r["seq"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (0, 1)]
    assert rows[1]["prev_hash"] == rows[0]["hash"] and rows[2]["prev_hash"] == "0" * 64
    failed = rows[3]
    assert (failed["outcome"], failed["reason"], failed["actor"], failed["location"], failed["request_id"],
            failed["user_agent"]) == ("failure", "bad_credentials", "anonymous", "POST /api/packages", "req-1", "curl/8")
    assert failed["ip"] == "192.0.2.7" and rows[0]["ip"] == "10.0.0.1"  # the actor's own address wins
    assert abs(failed["at_ms"] - time.time() * 1000) < 60_000 and len(failed["event_id"]) == 36
    assert (await log.verify()).ok


async def test_seals_are_signed_and_logged_in_the_ledger(log):
    await events(log, 3)
    await events(log, 1, org_id=None)
    assert await log.seal_pending() == 2
    assert await log.seal_pending() == 0  # nothing new
    seals = await log.db.fetch_all("SELECT * FROM audit_seals ORDER BY id")
    assert {(s["chain"], s["last_seq"]) for s in seals} == {(1, 3), (0, 1)}
    leaves = await log.db.fetch_all("SELECT org_id, data, opening FROM ledger_leaves ORDER BY idx")
    assert len(leaves) == 2
    org_leaf = next(leaf for leaf in leaves if leaf["org_id"] == 1)
    assert b"audit-seal" in org_leaf["opening"] and b"audit-seal" not in org_leaf["data"]  # private: a commitment
    report = await log.verify()
    assert report.ok and report.seals == 2 and report.events == 4


async def test_an_edited_row_is_named(log, tmp_path):
    await events(log, 5)
    await log.seal_pending()
    third = await log.db.fetch_one("SELECT * FROM audit_events WHERE chain = 1 AND seq = 3")
    tamper(tmp_path / "audit.sqlite3", f"UPDATE audit_events SET actor = 'mallory' WHERE id = {third['id']}")
    (problem,) = (await log.verify()).problems
    assert (problem.kind, problem.chain, problem.seq, problem.event_id) == ("changed", 1, 3, third["event_id"])


async def test_a_row_edited_with_its_hash_recomputed_is_named(log, tmp_path):
    await events(log, 4)
    second = await log.db.fetch_one("SELECT * FROM audit_events WHERE chain = 1 AND seq = 2")
    forged = {**second, "actor": "mallory"}
    new_hash = audit.event_hash(forged["prev_hash"], forged)
    tamper(tmp_path / "audit.sqlite3", f"UPDATE audit_events SET actor = 'mallory', hash = '{new_hash}'"
                                       f" WHERE id = {second['id']}")
    (problem,) = (await log.verify()).problems
    assert (problem.kind, problem.seq, problem.event_id) == ("changed", 2, second["event_id"])


async def test_a_removed_middle_row_is_named(log, tmp_path):
    await events(log, 5)
    tamper(tmp_path / "audit.sqlite3", "DELETE FROM audit_events WHERE chain = 1 AND seq = 2")
    (problem,) = (await log.verify()).problems
    assert (problem.kind, problem.chain, problem.seq) == ("removed", 1, 2)


async def test_a_cut_off_tail_is_caught_by_the_seal(log, tmp_path):
    await events(log, 5)
    await log.seal_pending()
    tamper(tmp_path / "audit.sqlite3", "DELETE FROM audit_events WHERE chain = 1 AND seq >= 4")
    (problem,) = (await log.verify()).problems
    assert (problem.kind, problem.chain, problem.seq) == ("cut_off", 1, 4)


async def test_a_cut_off_tail_with_its_seals_removed_is_caught_by_the_ledger(log, tmp_path):
    await events(log, 3)
    await log.seal_pending()
    await events(log, 2)
    await log.seal_pending()
    tamper(tmp_path / "audit.sqlite3", "DELETE FROM audit_events WHERE chain = 1 AND seq >= 4",
           "DELETE FROM audit_seals WHERE chain = 1 AND last_seq = 5")
    (problem,) = (await log.verify()).problems
    assert problem.chain == 1 and problem.kind in ("cut_off", "bad_seal")
    assert "ledger" in problem.message


async def test_a_prune_keeps_the_chain_verifiable(log, tmp_path):
    log.settings = AuditSettings(retention_days=1)
    await events(log, 4)
    await events(log, 2, org_id=2)
    await log.seal_pending()
    assert await log.prune(now=time.time() + 2 * 86400) == 6  # all of them are older than a day by then
    await events(log, 2)  # the chain goes on from the anchor
    await log.seal_pending()
    report = await log.verify()
    assert report.ok, report.problems
    rows = await log.db.fetch_all("SELECT chain, seq, action FROM audit_events ORDER BY id")
    assert [(r["chain"], r["seq"]) for r in rows] == [(0, 1), (1, 5), (1, 6)]  # the prune itself is audited
    # an anchor cannot be forged to delete more: the signature does not verify
    tamper(tmp_path / "audit.sqlite3", "INSERT INTO audit_anchors (chain, through_seq, through_hash, at_ms, key_id,"
                                       " signature) VALUES (1, 6, 'x', 0, 'k', 'AAAA')",
           "DELETE FROM audit_events WHERE chain = 1")
    kinds = {p.kind for p in (await log.verify()).problems}
    assert "bad_anchor" in kinds
