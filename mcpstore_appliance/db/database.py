"""`Database`: the single writer, the pooled aiosqlite readers, the synchronous reads and the commit stamp."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from ..private_files import PRIVATE_FILE_MODE, close_to_others, private_file
from .migrations_runner import apply_migrations
from .stamp import CommitStamp, PerStamp
from .sync_reads import SyncReads

T = TypeVar("T")

Params = Sequence[Any] | dict[str, Any]

PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    "PRAGMA busy_timeout=5000",
    "PRAGMA synchronous=NORMAL",
)

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
    """Every connection to one SQLite file; which access to use when is on the package page (db/__init__.py)."""

    def __init__(self, path: Path, readers: int = 4, read_threads: int = 2):
        self.path = Path(path)
        self.reader_count = readers
        self._writer: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()
        self._readers: asyncio.Queue[_Reader] = asyncio.Queue()
        self._all_readers: list[_Reader] = []
        self._sync = SyncReads(self.path, read_threads)
        self.stamp = CommitStamp(self._sync)

    async def open(self) -> "Database":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created 0600 before SQLite opens it: SQLite gives its -wal and -shm files the database file's mode.
        private_file(self.path)
        for suffix in ("-wal", "-shm"):  # left open by an earlier version
            close_to_others(self.path.with_name(self.path.name + suffix), PRIVATE_FILE_MODE)
        self._writer = await _connect(self.path)
        try:
            await apply_migrations(self._writer)
            for _ in range(self.reader_count):
                reader = _Reader(await _connect(self.path))
                self._all_readers.append(reader)
                await reader.conn.execute("PRAGMA query_only=ON")
                self._readers.put_nowait(reader)
        except BaseException:
            await self.close()  # each connection runs a thread that would keep the process alive
            raise
        return self

    async def close(self) -> None:
        self._sync.close()
        for reader in self._all_readers:
            await reader.conn.close()
        self._all_readers.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None

    @asynccontextmanager
    async def write(self, *, quiet: bool = False) -> AsyncIterator[Transaction]:
        """`quiet`: the transaction writes only what no stamp-keyed cache reads (the audit log's read events),
        so it leaves the commit stamp alone instead of making every cached answer read again."""
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
                if not quiet:
                    self.stamp.committed()

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

    # --- synchronous reads (see the package page) ------------------------------------------------------------

    def inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the event-loop thread: only short, indexed, LIMITed reads."""
        return self._sync.inline(fn)

    def bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the event-loop thread within `loop_steps` SQLite VM steps, else TooBigForTheLoop.
        Only for read-only work whose partial run has no effect."""
        return self._sync.bounded(fn)

    async def threaded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on a reader thread: catalog-sized work (full-text search, facet counts)."""
        return await self._sync.threaded(fn)

    def dedicated_reader(self) -> AbstractContextManager[sqlite3.Connection]:
        """`with db.dedicated_reader() as conn:` a read connection of its own for a background thread."""
        return self._sync.dedicated()

    @property
    def loop_steps(self) -> int:
        return self._sync.loop_steps

    @loop_steps.setter
    def loop_steps(self, steps: int) -> None:
        self._sync.loop_steps = steps

    def per_stamp(self, read: Callable[[sqlite3.Connection], T]) -> Callable[[], T]:
        """A callable giving `read(conn)` run inline, read again only when the commit stamp has moved."""
        return PerStamp(self.stamp, lambda: self.inline(read))

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
