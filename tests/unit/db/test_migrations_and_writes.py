import asyncio
import re
import sqlite3

import pytest

from mcpstore_appliance.db import Database
from mcpstore_appliance.db.migrations_runner import apply_migrations, discover


async def test_open_applies_migrations_once_and_sets_pragmas(tmp_path):
    db = await Database(tmp_path / "x.sqlite3").open()
    try:
        versions = [r["version"] for r in await db.fetch_all("SELECT version FROM schema_migrations ORDER BY 1")]
        assert versions == [number for number, _, _ in discover()]
        assert await db.fetch_value("PRAGMA journal_mode") == "wal"
        assert await db.fetch_value("PRAGMA foreign_keys") == 1
        assert await db.fetch_value("PRAGMA busy_timeout") == 5000
    finally:
        await db.close()
    again = await Database(tmp_path / "x.sqlite3").open()  # a second start applies nothing new
    try:
        assert await again.fetch_value("SELECT count(*) FROM schema_migrations") == len(versions)
    finally:
        await again.close()


async def test_an_upgrade_says_which_migrations_it_applies_and_a_new_database_stays_quiet(tmp_path, caplog):
    """Start-up may spend seconds in a migration that rebuilds an index (008 at 100k packages: ~3 s): an
    operator upgrading sees which one runs; creating a new database prints nothing."""
    import aiosqlite

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text("CREATE TABLE a (x INTEGER);")
    caplog.set_level("INFO", logger="mcpstore.migrations")
    async with aiosqlite.connect(tmp_path / "u.sqlite3", isolation_level=None) as conn:
        assert await apply_migrations(conn, folder) == [1]
        assert caplog.messages == []
        (folder / "002_index.sql").write_text("CREATE INDEX a_x ON a (x);")
        assert await apply_migrations(conn, folder) == [2]
    assert caplog.messages[0] == "upgrading the database: migration 002_index"
    assert re.fullmatch(r"migration 002_index applied in \d+\.\d s", caplog.messages[1])


async def test_a_failing_migration_leaves_nothing_behind(tmp_path):
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_ok.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "002_broken.sql").write_text("CREATE TABLE b (x INTEGER);\nTHIS IS NOT SQL;")
    import aiosqlite

    async with aiosqlite.connect(tmp_path / "m.sqlite3", isolation_level=None) as conn:
        with pytest.raises(sqlite3.OperationalError):
            await apply_migrations(conn, folder)
        tables = {row[0] async for row in await conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert "a" in tables and "b" not in tables
        recorded = [row[0] async for row in await conn.execute("SELECT version FROM schema_migrations")]
        assert recorded == [1]


async def test_write_rolls_back_on_error_and_serializes(tmp_path):
    db = await Database(tmp_path / "y.sqlite3").open()
    try:
        async with db.write() as tx:
            await tx.execute("CREATE TABLE counter (n INTEGER)")
            await tx.execute("INSERT INTO counter VALUES (0)")
        with pytest.raises(RuntimeError):
            async with db.write() as tx:
                await tx.execute("UPDATE counter SET n = 100")
                raise RuntimeError("boom")
        assert await db.fetch_value("SELECT n FROM counter") == 0

        async def bump():
            async with db.write() as tx:
                n = await tx.fetch_value("SELECT n FROM counter")
                await asyncio.sleep(0)
                await tx.execute("UPDATE counter SET n = ?", (n + 1,))

        await asyncio.gather(*(bump() for _ in range(50)))
        assert await db.fetch_value("SELECT n FROM counter") == 50  # no lost updates
    finally:
        await db.close()


async def test_readers_cannot_write(tmp_path):
    db = await Database(tmp_path / "z.sqlite3").open()
    try:
        with pytest.raises(sqlite3.OperationalError):
            await db.fetch_all("CREATE TABLE nope (x INTEGER)")
    finally:
        await db.close()


async def test_a_database_migrated_by_a_newer_version_is_refused_and_left_alone(tmp_path):
    import aiosqlite

    from mcpstore_appliance.config import ConfigError

    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text("CREATE TABLE a (x INTEGER);")
    (folder / "002_second.sql").write_text("CREATE TABLE b (x INTEGER);")
    async with aiosqlite.connect(tmp_path / "n.sqlite3", isolation_level=None) as conn:
        assert await apply_migrations(conn, folder) == [1, 2]
        (folder / "002_second.sql").unlink()  # the older version knows only 001
        with pytest.raises(ConfigError, match=r"migrated by a newer mcpstore \(schema 002; this version knows up to 001\)"):
            await apply_migrations(conn, folder)
        recorded = [row[0] async for row in await conn.execute("SELECT version FROM schema_migrations ORDER BY 1")]
        assert recorded == [1, 2]
