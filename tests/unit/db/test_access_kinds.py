"""The `Database` object's ways in, on a real SQLite file: pooled async reads, inline, bounded and threaded
synchronous reads, snapshots and a dedicated reader; every read connection is query-only."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from mcpstore_appliance.db import Database, TooBigForTheLoop, snapshot

COUNT_TO = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < ?) SELECT count(*) FROM r"


@pytest.fixture
async def db(tmp_path):
    database = await Database(tmp_path / "access.sqlite3").open()
    async with database.write() as tx:
        await tx.execute("CREATE TABLE t (x INTEGER)")
        await tx.execute_many("INSERT INTO t VALUES (?)", [(n,) for n in range(10)])
    yield database
    await database.close()


def _write(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO t VALUES (99)")


async def test_every_kind_of_read_sees_committed_data(db):
    assert await db.fetch_value("SELECT count(*) FROM t") == 10
    async with db.read() as reader:
        assert await reader.fetch_value("SELECT max(x) FROM t") == 9
    assert db.inline(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 10
    assert db.bounded(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 10
    assert await db.threaded(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 10
    with db.dedicated_reader() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 10
    async with db.write() as tx:
        await tx.execute("DELETE FROM t WHERE x >= 5")
    assert db.inline(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 5
    assert await db.threaded(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 5


async def test_threaded_reads_run_off_the_event_loop(db):
    loop_thread = threading.get_ident()
    assert db.inline(lambda c: threading.get_ident()) == loop_thread
    assert await db.threaded(lambda c: threading.get_ident()) != loop_thread


async def test_readers_are_query_only(db):
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await db.fetch_all("INSERT INTO t VALUES (99)")
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.inline(_write)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        db.bounded(_write)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        await db.threaded(_write)
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        with db.dedicated_reader() as conn:
            _write(conn)
    assert await db.fetch_value("SELECT count(*) FROM t") == 10  # nothing was written


async def test_a_bounded_read_past_its_budget_raises_and_leaves_the_connection_clean(db):
    db.loop_steps = 1000
    assert db.bounded(lambda c: c.execute(COUNT_TO, (10,)).fetchone()[0]) == 10
    with pytest.raises(TooBigForTheLoop):
        db.bounded(lambda c: c.execute(COUNT_TO, (100_000,)).fetchone())
    # The snapshot was closed and the budget removed: the connection is usable without limit afterwards.
    with pytest.raises(TooBigForTheLoop):
        db.bounded(lambda c: snapshot(c, lambda s: s.execute(COUNT_TO, (100_000,)).fetchone()))
    assert not db.inline(lambda c: c.in_transaction)
    assert db.inline(lambda c: c.execute(COUNT_TO, (100_000,)).fetchone()[0]) == 100_000


async def test_bounded_reads_do_not_hide_other_errors_and_callers_may_give_up_themselves(db):
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        db.bounded(lambda c: c.execute("SELECT * FROM missing").fetchall())

    def refuses(conn):
        raise TooBigForTheLoop()

    with pytest.raises(TooBigForTheLoop):
        db.bounded(refuses)


async def test_the_budget_covers_all_statements_of_a_call_and_ends_with_it(db):
    """The budget is for the whole call (SQLite counts progress steps per prepared statement across runs,
    so a per-statement budget would fire at random); the next call starts afresh."""
    db.loop_steps = 5000
    for _ in range(200):  # far more steps in all than one budget, over many calls
        assert db.bounded(lambda c: snapshot(c, lambda s: s.execute(COUNT_TO, (200,)).fetchone()[0])) == 200
    with pytest.raises(TooBigForTheLoop):
        db.bounded(lambda c: [c.execute(COUNT_TO, (200,)).fetchone() for _ in range(100)])
    assert not db.inline(lambda c: c.in_transaction)


async def test_a_snapshot_sees_one_state_while_the_writer_commits(db):
    def read_twice(conn):
        first = conn.execute("SELECT count(*) FROM t").fetchone()[0]
        other = sqlite3.connect(db.path, isolation_level=None)  # a commit between the two statements
        other.execute("INSERT INTO t VALUES (100)")
        other.close()
        return first, conn.execute("SELECT count(*) FROM t").fetchone()[0]

    assert db.inline(lambda c: snapshot(c, read_twice)) == (10, 10)
    assert db.inline(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 11


async def test_threaded_reads_refuse_after_close(tmp_path):
    db = await Database(tmp_path / "closed.sqlite3").open()
    await db.close()
    with pytest.raises(RuntimeError, match="closed"):
        await db.threaded(lambda c: c.execute("SELECT 1").fetchone())
