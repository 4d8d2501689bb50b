"""The commit stamp that lets caches skip SQLite: it moves at once on this Database's commits (not on a
rolled-back one) and, through SQLite's data_version, on other connections' and processes' commits within
EXTERNAL_CHECK_SECONDS."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time

import pytest

from mcpstore_appliance.db import Database
from mcpstore_appliance.db import stamp as stamp_module
from mcpstore_appliance.catalog.discovery import read_search_generation


@pytest.fixture
async def db(tmp_path):
    database = await Database(tmp_path / "s.sqlite3").open()
    async with database.write() as tx:
        await tx.execute("CREATE TABLE t (x INTEGER)")
    yield database
    await database.close()


def commit_elsewhere(path, sql: str = "INSERT INTO t VALUES (1)") -> None:
    """A commit from another process, as the `mcpstore admin` CLI makes."""
    subprocess.run([sys.executable, "-c", f"import sqlite3; c = sqlite3.connect({str(path)!r}, isolation_level=None);"
                    f" c.execute({sql!r}); c.close()"], check=True, timeout=60)


async def test_the_stamp_moves_on_this_databases_commit_only(db):
    first = db.stamp()
    assert db.stamp() == first  # nothing committed: unchanged
    async with db.write() as tx:
        await tx.execute("INSERT INTO t VALUES (1)")
    second = db.stamp()
    assert second != first  # our own commit: seen at once, without waiting for the data_version check
    with pytest.raises(RuntimeError):
        async with db.write() as tx:
            await tx.execute("INSERT INTO t VALUES (2)")
            raise RuntimeError("roll back")
    assert db.stamp() == second
    assert await db.fetch_value("SELECT count(*) FROM t") == 1


async def test_another_process_commit_is_seen_within_the_check_interval(db):
    before = db.stamp()
    commit_elsewhere(db.path)
    deadline = time.monotonic() + stamp_module.EXTERNAL_CHECK_SECONDS + 1.0
    while db.stamp() == before:
        assert time.monotonic() < deadline, "another process's commit was not seen within the interval"
        time.sleep(0.05)


async def test_another_process_commit_is_seen_at_once_without_the_interval(db, monkeypatch):
    monkeypatch.setattr(stamp_module, "EXTERNAL_CHECK_SECONDS", 0.0)  # check data_version every time
    before = db.stamp()
    commit_elsewhere(db.path)
    assert db.stamp() != before


async def test_per_stamp_values_are_read_again_only_when_the_stamp_moves(tmp_path, monkeypatch):
    """The catalog keys cached pages by the search generation without a query while nothing was committed."""
    db = await Database(tmp_path / "g.sqlite3").open()  # migrated: search_state holds the generation
    queries: list[str] = []
    try:
        generation = db.per_stamp(read_search_generation)
        start = generation()
        db.inline(lambda c: c.set_trace_callback(queries.append))
        assert generation() == start and not any("search_state" in q for q in queries)
        async with db.write() as tx:
            await tx.execute("UPDATE search_state SET generation = generation + 1 WHERE id = 1")
        assert generation() == start + 1  # our own commit: at once
        monkeypatch.setattr(stamp_module, "EXTERNAL_CHECK_SECONDS", 0.0)
        other = sqlite3.connect(db.path, isolation_level=None)  # another connection's commit
        other.execute("UPDATE search_state SET generation = generation + 1 WHERE id = 1")
        other.close()
        assert generation() == start + 2
    finally:
        db.inline(lambda c: c.set_trace_callback(None))
        await db.close()


async def test_two_databases_keep_their_own_commit_counts(tmp_path):
    """No module-level counter: each Database counts its own commits."""
    one = await Database(tmp_path / "one.sqlite3").open()
    two = await Database(tmp_path / "two.sqlite3").open()
    try:
        async with one.write() as tx:
            await tx.execute("CREATE TABLE t (x INTEGER)")
        assert one.stamp.commits == 1 and two.stamp.commits == 0
    finally:
        await one.close()
        await two.close()
