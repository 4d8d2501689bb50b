"""`mcpstore ledger verify`: the whole tree recomputed from a real SQLite file; each tampering is named."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import sys

import pytest

from mcpstore_appliance.app import data_paths
from mcpstore_appliance.config import LedgerSettings
from mcpstore_appliance.db import Database, open_scan_connection
from mcpstore_appliance.keys import load_or_create_signing_key
from mcpstore_appliance.ledger import integrity, integrity_chunks, publish_event, service
from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger.integrity import IntegrityCheck
from mcpstore_appliance.ledger.service import Ledger
from mcpstore_appliance.ledger.storedhash import row_of

SIZE = 300
DATA = "data #1 ?"  # URI-special characters in the folder name must not matter


def event(i: int) -> dict:
    return publish_event(namespace="acme", name="tool", version=f"1.0.{i}", sha256=f"{i:064x}", size=i,
                         publisher="alice", signer_fingerprint=None, time="2026-01-01T00:00:00Z")


@pytest.fixture
async def ledger_db(tmp_path, monkeypatch):
    """A database with 300 leaves (a sealed one every 50), checkpoints at 100 and 300, and a lookup index in
    blocks of 16; returns (path, key)."""
    monkeypatch.setattr(service, "LOOKUP_BLOCK", 16)
    key = load_or_create_signing_key(tmp_path / "keys" / "ledger.key")
    db = await Database(tmp_path / DATA / "mcpstore.sqlite3").open()
    ledger = Ledger(db, key, "test.example/ledger", LedgerSettings(checkpoint_interval_seconds=0))
    for start in range(0, SIZE, 50):
        async with db.write() as tx:
            await ledger.append_many(tx, [event(i) for i in range(start, start + 49)])
            await ledger.append(tx, event(start + 49), org_id=7)  # a private release every 50 entries
        if start + 50 == 100:
            await ledger.ensure_checkpoint(100)
    await ledger.ensure_checkpoint(SIZE)
    await ledger.close()
    await db.close()
    return tmp_path / DATA / "mcpstore.sqlite3", key


def tamper(path, sql, params=()):
    conn = sqlite3.connect(path)
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def flip_byte(blob: bytes, at: int = 5) -> bytes:
    return blob[:at] + bytes([blob[at] ^ 1]) + blob[at + 1:]


def read(path, sql, params=()):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(params=[False, True], ids=["pure-python", "native"])
def hashing(request, monkeypatch):
    """Run each in-process audit on both paths: the pure-Python code (as without the C module) and the C module
    (which the test suite requires to be built: tests/unit/ledger/test_merkle_native.py)."""
    if request.param:
        assert integrity_chunks.native_available()
    else:
        monkeypatch.setattr(integrity_chunks, "_merkle_native", None)
    return request.param


both_paths = pytest.mark.usefixtures("hashing")


@pytest.fixture(params=[0, 4], ids=["one-chunk", "chunks-of-16"])
def chunk_level(request, monkeypatch):
    """Run each check with the real chunk size and with tiny chunks, so the cross-chunk levels are tested."""
    if request.param:
        monkeypatch.setattr(integrity, "CHUNK_LEVEL", request.param)
    return request.param


def run_audit(path, key, workers=2):
    return IntegrityCheck(path, key, workers=workers).run()


@both_paths
async def test_a_clean_ledger_verifies(ledger_db, chunk_level):
    path, key = ledger_db
    for workers in (1, 2):
        report = run_audit(path, key, workers)
        assert report.ok, report.problems
        assert (report.size, report.checkpoints, report.latest_checkpoint) == (SIZE, 2, SIZE)


@both_paths
async def test_a_changed_leaf_byte_is_named(ledger_db, chunk_level):
    path, key = ledger_db
    data = read(path, "SELECT data FROM ledger_leaves WHERE idx = 137")
    tamper(path, "UPDATE ledger_leaves SET data = ? WHERE idx = 137", (data.replace(b"1.0.137", b"1.0.138"),))
    report = run_audit(path, key)
    assert report.problems[0] == "entry 137: leaf data was changed (it no longer matches its stored leaf hash)"
    assert "entry 137: lookup keys do not match the leaf" in report.problems
    # checkpoints are read from stored (untouched) hashes, so only the changed entry is blamed
    assert len(report.problems) == 2



@both_paths
@pytest.mark.parametrize("fast_rows", [3, 8192])
async def test_a_newline_in_a_leaf_is_named_at_any_read_size(ledger_db, chunk_level, monkeypatch, fast_rows):
    """An intact chunk is read as newline-separated leaves, in parts of FAST_ROWS rows; a leaf holding a newline
    must still be named (by the row-wise check), and parts that cut a chunk must still verify a clean ledger."""
    monkeypatch.setattr(integrity_chunks, "FAST_ROWS", fast_rows)
    path, key = ledger_db
    assert run_audit(path, key, workers=1).ok
    conn = open_scan_connection(path)
    try:  # the clean chunk of 256 leaves passes the fast reader itself, not only the row-wise fallback
        assert integrity_chunks._check_chunk_fast(conn, 0, 8) == integrity_chunks._check_chunk_rows(conn, 0, 8)
    finally:
        conn.close()
    data = read(path, "SELECT data FROM ledger_leaves WHERE idx = 137")
    tamper(path, "UPDATE ledger_leaves SET data = ? WHERE idx = 137", (data.replace(b"1.0.137", b"1.0\n137"),))
    for workers in (1, 2):
        report = run_audit(path, key, workers)
        assert report.problems[0] == "entry 137: leaf data was changed (it no longer matches its stored leaf hash)"

@both_paths
async def test_a_leaf_that_is_no_longer_bytes_is_named(ledger_db, chunk_level):
    """SQLite keeps any type in any column: a number where the leaf's bytes were is named, not a crash."""
    path, key = ledger_db
    tamper(path, "UPDATE ledger_leaves SET data = 12345 WHERE idx = 137")
    for workers in (1, 2):
        report = IntegrityCheck(path, key, workers=workers, index=False).run()
        assert report.problems == ["entry 137: leaf data was changed (it no longer matches its stored leaf hash)"]


@both_paths
@pytest.mark.parametrize("level,n", [(0, 64), (1, 10), (2, 3), (5, 1), (7, 0)])
async def test_a_changed_stored_hash_is_named(ledger_db, chunk_level, level, n):
    path, key = ledger_db
    row, offset = row_of((level, n))
    blob = read(path, "SELECT hashes FROM ledger_leaves WHERE idx = ?", (row,))
    tamper(path, "UPDATE ledger_leaves SET hashes = ? WHERE idx = ?", (flip_byte(blob, offset + 3), row))
    report = run_audit(path, key)
    if level == 0:
        expected = f"entry {n}: its stored leaf hash was changed"
    else:
        lo, hi = n << level, (n + 1) << level
        expected = f"entry {hi - 1}: its stored hash of level {level} (entries {lo}..{hi - 1}) was changed"
    assert report.problems[0] == expected
    # a hash that a checkpoint root folds is also reported by that checkpoint; nothing else is blamed
    assert all(p == expected or p.startswith("checkpoint ") for p in report.problems)


@both_paths
async def test_bytes_moved_between_rows_are_caught(ledger_db, chunk_level):
    path, key = ledger_db
    first = read(path, "SELECT hashes FROM ledger_leaves WHERE idx = 6")  # 1 hash
    second = read(path, "SELECT hashes FROM ledger_leaves WHERE idx = 7")  # 4 hashes
    tamper(path, "UPDATE ledger_leaves SET hashes = ? WHERE idx = 6", (first + second[:32],))
    tamper(path, "UPDATE ledger_leaves SET hashes = ? WHERE idx = 7", (second[32:],))
    report = run_audit(path, key)
    assert "entry 6: its stored hashes are malformed (64 bytes)" in report.problems
    assert "entry 7: its stored hashes are malformed (96 bytes)" in report.problems


@both_paths
async def test_removed_rows_are_reported(ledger_db):
    path, key = ledger_db
    tamper(path, "DELETE FROM ledger_leaves WHERE idx = 299")
    report = run_audit(path, key)
    assert report.problems == [f"checkpoint {SIZE} covers more entries than exist (299): entries were removed"]
    tamper(path, "DELETE FROM ledger_leaves WHERE idx = 150")
    report = run_audit(path, key)
    assert "entries are missing: 150" in report.problems


@both_paths
async def test_tampered_checkpoints_lookup_keys_and_sealed_leaves_are_reported(ledger_db):
    path, key = ledger_db
    note = read(path, "SELECT note FROM ledger_checkpoints WHERE size = 100")
    body, signature = note.split("\n\n")
    raw = signature.split(" ")[-1]
    forged = body + "\n\n" + signature.replace(raw, ("B" if raw[0] != "B" else "C") + raw[1:])
    tamper(path, "UPDATE ledger_checkpoints SET note = ? WHERE size = 100", (forged,))
    tamper(path, "UPDATE ledger_leaves SET sha_key = sha_key + 1 WHERE idx = 12")
    tamper(path, "UPDATE ledger_leaves SET opening = ? WHERE idx = 49",
           (read(path, "SELECT opening FROM ledger_leaves WHERE idx = 49").replace(b"acme", b"evil"),))
    report = run_audit(path, key)
    assert any(p.startswith("checkpoint 100: signature does not verify") for p in report.problems)
    assert "entry 12: lookup keys do not match the leaf" in report.problems
    assert "entry 49: sealed leaf does not open with its stored event" in report.problems
    assert any(p.startswith("lookup index entry (") and p.endswith("entry 12") for p in report.problems)
    assert len(report.problems) == 4


@both_paths
async def test_the_lookup_index_is_checked(ledger_db):
    path, key = ledger_db
    assert read(path, "SELECT COUNT(*) FROM ledger_lookup") == 2 * 288  # 18 full blocks, two keys per leaf
    tamper(path, "DELETE FROM ledger_lookup WHERE idx = 33 AND key = (SELECT sha_key FROM ledger_leaves WHERE idx = 33)")
    tamper(path, "UPDATE ledger_lookup SET key = key + 1 WHERE idx = 77 AND key = "
                 "(SELECT release_key FROM ledger_leaves WHERE idx = 77)")
    report = run_audit(path, key)
    assert report.problems[0].startswith("lookup index entry (") and report.problems[0].endswith("entry 77")
    tamper(path, "UPDATE ledger_lookup SET key = key - 1 WHERE idx = 77 AND key - 1 = "
                 "(SELECT release_key FROM ledger_leaves WHERE idx = 77)")
    assert run_audit(path, key).problems == ["entry 33: missing from the lookup index"]
    tamper(path, "INSERT INTO ledger_lookup (block, key, idx) VALUES (18, 5, 299)")  # beyond the indexed blocks
    assert run_audit(path, key).problems[0] == "lookup index entry (5, 299) does not match entry 299"


async def test_both_paths_report_exactly_the_same(ledger_db, chunk_level):
    """The C module and the pure-Python code: the same report for a clean ledger and after each tampering."""
    path, key = ledger_db

    def reports():
        return [IntegrityCheck(path, key, workers=workers, native=native).run()
                for native in (False, True) for workers in (1, 2)]

    tamperings = [
        ("UPDATE ledger_leaves SET data = CAST(replace(CAST(data AS TEXT), '1.0.21', '1.0.22') AS BLOB)"
         " WHERE idx = 21", ()),
        ("UPDATE ledger_leaves SET hashes = ? WHERE idx = 95",
         (flip_byte(read(path, "SELECT hashes FROM ledger_leaves WHERE idx = 95"), 70),)),
        ("UPDATE ledger_leaves SET data = data || X'0A00' WHERE idx = 180", ()),
        ("UPDATE ledger_leaves SET hashes = substr(hashes, 1, 40) WHERE idx = 250", ()),
    ]
    assert IntegrityCheck(path, key, native=True).native and not IntegrityCheck(path, key, native=False).native
    for sql, params in [(None, ()), *tamperings]:
        if sql:
            tamper(path, sql, params)
        first, *others = reports()
        assert (first.ok, first.size) == (sql is None, SIZE)
        for other in others:
            assert (other.problems, other.size, other.checkpoints) == (first.problems, first.size, first.checkpoints)


async def test_ledger_verify_command(ledger_db, tmp_path):
    path, key = ledger_db
    data = tmp_path / DATA
    shutil.move(str(tmp_path / "keys"), str(data / "keys"))
    assert data_paths_for(data)["db"] == path
    tamper(path, "DELETE FROM ledger_lookup")  # the command runs with the real block size: 300 leaves, no block
    command = [sys.executable, "-m", "mcpstore_appliance.cli.main", "ledger", "verify", "--data", str(data)]
    ok = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert f"ledger OK: {SIZE} entries" in ok.stdout and "2 checkpoints (latest size 300)" in ok.stdout
    assert "hashing in C" in ok.stdout  # the suite requires the C module built (see tests/unit/ledger/test_merkle_native.py)

    leaf = read(path, "SELECT data FROM ledger_leaves WHERE idx = 201")
    tamper(path, "UPDATE ledger_leaves SET data = ? WHERE idx = 201", (flip_byte(leaf, 40),))
    bad = subprocess.run([*command, "--skip-index"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "entry 201: leaf data was changed" in bad.stdout
    assert "ledger verification FAILED" in bad.stderr

    missing = subprocess.run([*command[:-1], str(tmp_path / "nowhere")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 1 and "no database" in missing.stderr

    keys = subprocess.run([*command[:3], "ledger", "keys", "--data", str(data)], capture_output=True, text=True,
                          timeout=60)
    expected = notes.verifier_for("127.0.0.1:8080/ledger", key).vkey()  # the origin of default settings
    assert keys.returncode == 0 and keys.stdout == f"ledger  {expected}\n"


def data_paths_for(data_dir):
    from mcpstore_appliance.config import load_settings

    return data_paths(load_settings(environ={}, data_dir=str(data_dir)))
