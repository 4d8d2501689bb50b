"""The change stamp that lets cached package pages skip SQLite: this process's commit count moves on every
committed write (not on a rolled-back one), and other processes' commits are seen through data_version."""

import sqlite3

import pytest

from mcpstore_appliance.catalog import reader as reader_module
from mcpstore_appliance.catalog.reader import CatalogReader
from mcpstore_appliance.db import Database, commit_count


async def test_commit_count_moves_on_commit_only(tmp_path):
    db = await Database(tmp_path / "c.sqlite3").open()
    try:
        before = commit_count()
        async with db.write() as tx:
            await tx.execute("CREATE TABLE t (x INTEGER)")
        assert commit_count() == before + 1
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await tx.execute("INSERT INTO t VALUES (1)")
                raise RuntimeError("roll back")
        assert commit_count() == before + 1
        assert await db.fetch_value("SELECT count(*) FROM t") == 0
    finally:
        await db.close()


async def test_stamp_sees_own_and_other_process_commits(tmp_path, monkeypatch):
    db = await Database(tmp_path / "s.sqlite3").open()
    reader = CatalogReader(db.path)
    try:
        first = reader.stamp()
        assert reader.stamp() == first  # nothing committed: unchanged
        async with db.write() as tx:
            await tx.execute("CREATE TABLE t (x INTEGER)")
        assert reader.stamp() != first  # our own commit: seen at once, no SQLite call needed
        monkeypatch.setattr(reader_module, "EXTERNAL_CHECK_SECONDS", 0.0)  # check data_version every time
        second = reader.stamp()
        other = sqlite3.connect(db.path, isolation_level=None)  # another process's connection, as the CLI's
        other.execute("INSERT INTO t VALUES (1)")
        other.close()
        assert reader.stamp() != second
    finally:
        reader.close()
        await db.close()


async def test_search_generation_is_read_again_only_when_the_stamp_moves(tmp_path, monkeypatch):
    """Repeated searches and listings key their cached pages by the search generation without a query while
    nothing was committed; our own commits and (after EXTERNAL_CHECK_SECONDS) other processes' are seen."""
    db = await Database(tmp_path / "g.sqlite3").open()  # migrated: search_state holds the generation
    reader = CatalogReader(db.path)
    queries = []
    try:
        generation = reader.search_generation()
        reader.inline(lambda c: c.set_trace_callback(queries.append))
        assert reader.search_generation() == generation and not any("search_state" in q for q in queries)
        async with db.write() as tx:
            await tx.execute("UPDATE search_state SET generation = generation + 1 WHERE id = 1")
        assert reader.search_generation() == generation + 1  # our own commit: at once
        monkeypatch.setattr(reader_module, "EXTERNAL_CHECK_SECONDS", 0.0)
        other = sqlite3.connect(db.path, isolation_level=None)  # another process's connection, as the CLI's
        other.execute("UPDATE search_state SET generation = generation + 1 WHERE id = 1")
        other.close()
        assert reader.search_generation() == generation + 2
    finally:
        reader.inline(lambda c: c.set_trace_callback(None))
        reader.close()
        await db.close()
