"""Read-only SQLite connections for the catalog's hot read paths (search, package data, the registry API).

Why not `Database`'s aiosqlite readers: every aiosqlite call is a hop to a worker thread and back, which costs
more than the indexed lookups these endpoints make (measured: one aiosqlite query per request runs at about
30% of a bare aiohttp server, the same query on a plain sqlite3 connection at about 80%). So:

- `inline(fn)` runs `fn(conn)` right on the event loop thread. Only for short, indexed, LIMITed queries
  (a package by its unique key, one page of versions); they take tens of microseconds.
- `await run(fn)` runs `fn(conn)` on a small pool of threads, each with its own connection. For queries whose
  cost grows with the catalog (full-text search, facet counts). sqlite3 releases the GIL while SQLite works,
  so these run in parallel with the event loop.
- `bounded(fn)` tries `fn(conn)` on the event loop thread with a budget of SQLite work; past it
  (or when `fn` itself decides the work is too big) it raises `TooBigForTheLoop` and the caller redoes the
  work with `run`. For reads that are short when caches are warm but not always (a search): the hop to a
  reader thread and back, and the GIL hand-offs while a thread fetches rows, cost more than such a read.

Both see the writer's committed data (WAL mode); `fn` may wrap several statements in BEGIN/COMMIT to read one
snapshot. Connections are opened read-only (`PRAGMA query_only`).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from ..db import commit_count

T = TypeVar("T")

# How stale a cached answer may be after another process (the `mcpstore admin` CLI, a restore) commits.
EXTERNAL_CHECK_SECONDS = 1.0
# SQLite virtual-machine steps the statements of one `bounded` call may take together (0.1-0.3 us each: a few
# ms at most), counted by a progress handler every TICK_STEPS steps.
LOOP_STEPS = 20_000
TICK_STEPS = 1000


class TooBigForTheLoop(Exception):
    """A read ran past its budget of SQLite steps (`within_steps`). From `CatalogReader.bounded`: the work
    should run on a reader thread instead."""


def connect_readonly(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA cache_size=-64000")  # 64 MB page cache per connection
    # Reads through a memory map skip a system call per page: the search joins touch many small rows.
    conn.execute("PRAGMA mmap_size=1073741824")
    return conn


class CatalogReader:
    def __init__(self, path: Path, threads: int = 2):
        self.path = Path(path)
        self._inline: sqlite3.Connection | None = None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="catalog-read")
        self._closed = False
        self._data_version = 0
        self._checked_at = float("-inf")
        self._generation: tuple[tuple[int, int] | None, int] = (None, 0)  # (stamp it was read at, generation)
        self.loop_steps = LOOP_STEPS

    def stamp(self) -> tuple[int, int]:
        """A value that changes whenever the database may have changed: this process's commit count
        (immediate, free) and SQLite's `PRAGMA data_version`, which also sees other processes' commits but
        costs a call into SQLite, so it is read at most once per EXTERNAL_CHECK_SECONDS. Take the stamp
        BEFORE reading the data it guards: then a stamp never claims newer data than was read."""
        commits = commit_count()
        now = time.monotonic()
        if now - self._checked_at >= EXTERNAL_CHECK_SECONDS:
            self._data_version = self.inline(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
            self._checked_at = now
        return commits, self._data_version

    def search_generation(self) -> int:
        """The catalog's search generation (moved by the triggers of 005_search.sql on every change a search
        or a listing can see), read from SQLite again only when `stamp()` says the database may have changed:
        a repeated search or listing then keys its cached page without a query."""
        stamp = self.stamp()
        read_at, generation = self._generation
        if read_at != stamp:
            generation = self.inline(
                lambda c: c.execute("SELECT generation FROM search_state WHERE id = 1").fetchone()[0])
            self._generation = (stamp, generation)
        return generation

    def _thread_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_readonly(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._inline is None:
            self._inline = connect_readonly(self.path)
        return fn(self._inline)

    def bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """`fn(conn)` on the event loop thread; once its statements have taken `loop_steps` VM steps in all,
        SQLite's progress handler interrupts the running one and TooBigForTheLoop is raised (as `fn` may
        raise it itself). Only for read-only work whose partial run has no effect."""
        if self._inline is None:
            self._inline = connect_readonly(self.path)
        return within_steps(self._inline, self.loop_steps, fn)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("catalog reader is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._thread_conn()))

    def close(self) -> None:
        self._closed = True
        self._executor.shutdown(wait=True)
        with self._lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        if self._inline is not None:
            self._inline.close()
            self._inline = None


def within_steps(conn: sqlite3.Connection, steps: int, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn(conn)`, its statements interrupted by SQLite's progress handler once they have taken about `steps`
    VM steps in all: TooBigForTheLoop then. Only for read-only work whose partial run has no effect."""
    every = max(1, min(TICK_STEPS, steps))
    allowed, ticks = steps // every, 0

    def tick() -> bool:  # a true answer interrupts the running statement
        nonlocal ticks
        ticks += 1
        return ticks > allowed

    conn.set_progress_handler(tick, every)
    try:
        return fn(conn)
    except sqlite3.OperationalError as exc:
        if ticks > allowed:
            raise TooBigForTheLoop() from exc
        raise
    finally:
        conn.set_progress_handler(None, 0)
        if conn.in_transaction:  # the budget ran out during a snapshot's COMMIT
            conn.execute("COMMIT")


def snapshot(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run several statements against one consistent snapshot."""
    conn.execute("BEGIN")
    try:
        return work(conn)
    finally:
        conn.execute("COMMIT")


def rows(conn: sqlite3.Connection, sql: str, params: Any = ()) -> list[sqlite3.Row]:
    return conn.execute(sql, params).fetchall()


def row(conn: sqlite3.Connection, sql: str, params: Any = ()) -> sqlite3.Row | None:
    return conn.execute(sql, params).fetchone()
