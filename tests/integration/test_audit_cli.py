"""`mcpstore audit verify|seal|prune|export` on a real data folder: verify names the row that was edited behind
the triggers' back and the tail that was cut off, passes again after a prune, and an export is itself audited."""

from __future__ import annotations

import json
import sqlite3

from tests.integration.test_cli_operator import run
from tests.unit.audit.test_tamper import tamper


def make_events(data) -> None:
    assert run("admin", "create-user", "--email", "alice@example.com", "--username", "alice", "--password-stdin", "--data", str(data),
               input="correct horse battery\n").returncode == 0
    assert run("admin", "create-org", "--slug", "acme", "--owner", "alice", "--data", str(data)).returncode == 0
    for i in range(3):
        assert run("admin", "add-member", "acme", "alice", "--role", ["owner", "admin", "owner"][i],
                   "--data", str(data)).returncode in (0, 1)


def test_verify_seal_tamper_and_prune(tmp_path):
    data = tmp_path / "data"
    make_events(data)
    sealed = run("audit", "seal", "--data", str(data))
    assert sealed.returncode == 0 and "sealed" in sealed.stdout, sealed.stderr
    ok = run("audit", "verify", "--data", str(data))
    assert ok.returncode == 0 and ok.stdout.startswith("audit log OK"), ok.stdout + ok.stderr

    exported = run("audit", "export", "--format", "jsonl", "--org", "acme", "--data", str(data))
    assert exported.returncode == 0
    lines = [json.loads(line) for line in exported.stdout.splitlines()]
    assert lines[-1]["action"] == "audit.export" and lines[-1]["where"] == "cli audit export"
    db = data / "mcpstore.sqlite3"
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT id, seq, chain FROM audit_events WHERE chain = 0 ORDER BY seq LIMIT 1").fetchone()
    conn.close()
    tamper(db, f"UPDATE audit_events SET actor = 'mallory' WHERE id = {row[0]}")
    broken = run("audit", "verify", "--json", "--data", str(data))
    assert broken.returncode == 1
    (problem,) = json.loads(broken.stdout)["problems"]
    assert (problem["kind"], problem["chain"], problem["seq"]) == ("changed", 0, row[1])


def test_a_cut_off_tail_fails_and_a_prune_passes(tmp_path):
    data = tmp_path / "data"
    make_events(data)
    assert run("audit", "seal", "--data", str(data)).returncode == 0
    pruned = run("audit", "prune", "--days", "1", "--data", str(data))  # nothing is a day old yet
    assert pruned.returncode == 0 and pruned.stdout.startswith("0 event"), pruned.stdout
    tamper(data / "mcpstore.sqlite3", "DELETE FROM audit_events WHERE chain = 1 AND seq > 1")
    cut = run("audit", "verify", "--data", str(data))
    assert cut.returncode == 1 and "cut off" in cut.stdout and "seq 2" in cut.stdout, cut.stdout
