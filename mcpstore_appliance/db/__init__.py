"""SQLite access: one serialized writer, a small pool of read connections, migrations at start.

Writes go through `async with db.write() as tx:`: the single writer connection runs `BEGIN IMMEDIATE`,
the block's statements, then `COMMIT` (or `ROLLBACK` on any exception). Writes are serialized by an
asyncio lock so transactions stay short and never interleave. Reads use separate connections so they
run concurrently with the writer (WAL mode).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from ..private_files import PRIVATE_FILE_MODE, close_to_others, private_file
from .migrations_runner import apply_migrations

Params = Sequence[Any] | dict[str, Any]

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)

# Commits made by any `Database` of this process. Read caches compare it to skip SQLite entirely while
# nothing was written (PRAGMA data_version costs a lock round trip per call); commits by other processes
# are not counted here, so those caches still check data_version now and then.
_commits = 0


def commit_count() -> int:
    """How many write transactions this process has committed (any Database instance)."""
    return _commits


def row_to_dict(row: sqlite3.Row | None) -> dict[str, Any] | None:
    return None if row is None else dict(row)


class Queries:
    """Read helpers shared by the pool and by write transactions.

    Each helper is one trip to the connection's thread (`execute_fetchall`): with aiosqlite the
    trips, not SQLite, dominate the cost of a small indexed query. `fetch_one` and `fetch_value` are
    for queries that return at most a few rows.
    """

    conn: aiosqlite.Connection

    async def fetch_one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        rows = await self.conn.execute_fetchall(sql, params)
        return dict(rows[0]) if rows else None

    async def fetch_all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        return [dict(row) for row in await self.conn.execute_fetchall(sql, params)]

    async def fetch_value(self, sql: str, params: Params = (), default: Any = None) -> Any:
        rows = await self.conn.execute_fetchall(sql, params)
        return rows[0][0] if rows else default


class Transaction(Queries):
    """The write side of one transaction."""

    def __init__(self, conn: aiosqlite.Connection):
        self.conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the last inserted row id."""
        cursor = await self.conn.execute(sql, params)  # not closed explicitly: saves a thread trip
        return cursor.lastrowid

    async def execute_many(self, sql: str, rows: Iterable[Params]) -> None:
        await self.conn.executemany(sql, rows)

    async def changes(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return how many rows it changed."""
        cursor = await self.conn.execute(sql, params)
        return cursor.rowcount

    async def insert(self, table: str, values: dict[str, Any]) -> int:
        columns = ", ".join(values)
        marks = ", ".join(f":{name}" for name in values)
        return await self.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", values)


class _Reader(Queries):
    def __init__(self, conn: aiosqlite.Connection):
        self.conn = conn


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN/COMMIT ourselves
    conn.row_factory = sqlite3.Row
    for pragma in PRAGMAS:
        await conn.execute(pragma)
    return conn


class Database:
    def __init__(self, path: Path, readers: int = 4):
        self.path = Path(path)
        self.reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[_Reader] = asyncio.Queue()
        self._all_readers: list[_Reader] = []

    async def open(self) -> "Database":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's mode.
        private_file(self.path)
        for suffix in ("-wal", "-shm"):  # left open by an earlier version
            close_to_others(self.path.with_name(self.path.name + suffix), PRIVATE_FILE_MODE)
        self._writer = await _connect(self.path)
        await apply_migrations(self._writer)
        for _ in range(self.reader_count):
            reader = _Reader(await _connect(self.path))
            await reader.conn.execute("PRAGMA query_only=ON")
            self._all_readers.append(reader)
            self._readers.put_nowait(reader)
        return self

    async def close(self) -> None:
        for reader in self._all_readers:
            await reader.conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        global _commits
        assert self._writer is not None, "database is not open"
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._writer)
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")
                _commits += 1  # after COMMIT: a reader that sees the new count sees the new data

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Queries]:
        """A read connection for several queries that should see one snapshot."""
        reader = await self._readers.get()
        try:
            await reader.conn.execute("BEGIN")
            try:
                yield reader
            finally:
                await reader.conn.execute("COMMIT")
        finally:
            self._readers.put_nowait(reader)

    async def fetch_one(self, sql: str, params: Params = ()) -> dict[str, Any] | None:
        async with self._reader() as reader:
            return await reader.fetch_one(sql, params)

    async def fetch_all(self, sql: str, params: Params = ()) -> list[dict[str, Any]]:
        async with self._reader() as reader:
            return await reader.fetch_all(sql, params)

    async def fetch_value(self, sql: str, params: Params = (), default: Any = None) -> Any:
        async with self._reader() as reader:
            return await reader.fetch_value(sql, params, default)

    @asynccontextmanager
    async def _reader(self) -> AsyncIterator[_Reader]:
        reader = await self._readers.get()
        try:
            yield reader
        finally:
            self._readers.put_nowait(reader)

    async def ping(self) -> bool:
        return await self.fetch_value("SELECT 1") == 1

    async def backup_to(self, destination: Path) -> None:
        """Online backup: a consistent copy even while the writer is busy."""
        assert self._writer is not None
        target = await aiosqlite.connect(private_file(destination))
        try:
            await self._writer.backup(target)
        finally:
            await target.close()
