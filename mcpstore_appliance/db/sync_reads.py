"""Synchronous read-only sqlite3 connections for the hot read paths, owned by `Database` (see the package page).

- `inline(fn)`: `fn(conn)` on the event-loop thread, for short indexed LIMITed reads.
- `bounded(fn)`: the same with a budget of SQLite VM steps; past it TooBigForTheLoop is raised and the caller
  redoes the work with `threaded`.
- `await threaded(fn)`: `fn(conn)` on a small pool of threads, each with its own connection, for work whose cost
  grows with the catalog (sqlite3 releases the GIL while SQLite works).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

# SQLite VM steps the statements of one `bounded` call may take together (a few ms at most), counted by a
# progress handler every TICK_STEPS steps.
LOOP_STEPS = 20_000
TICK_STEPS = 1000


class TooBigForTheLoop(Exception):
    """A read ran past its budget of SQLite steps (`within_steps`): it should run on a reader thread instead."""


def read_only_uri(path: Path | str) -> str:
    """An SQLite URI opening `path` read-only (percent-encoded, so any folder name works)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def connect_readonly(path: Path | str) -> sqlite3.Connection:
    """A query-only connection with a large page cache and a memory map (the search joins touch many small
    rows; reads through a map skip a system call per page). Also used by worker processes that cannot share
    the `Database` object (the operator's full ledger check)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA query_only=ON")
    conn.execute("PRAGMA cache_size=-64000")  # 64 MB page cache per connection
    conn.execute("PRAGMA mmap_size=1073741824")
    return conn


class SyncReads:
    """The synchronous read connections of one database file: one for the event loop, one per reader thread."""

    def __init__(self, path: Path, threads: int = 2):
        self.path = Path(path)
        self.loop_steps = LOOP_STEPS
        self._inline: sqlite3.Connection | None = None
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="db-read")
        self._closed = False

    def _loop_conn(self) -> sqlite3.Connection:
        if self._inline is None:
            self._inline = connect_readonly(self.path)
        return self._inline

    def _thread_conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect_readonly(self.path)
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def inline(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return fn(self._loop_conn())

    def bounded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return within_steps(self._loop_conn(), self.loop_steps, fn)

    async def threaded(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise RuntimeError("the database is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: fn(self._thread_conn()))

    @contextmanager
    def dedicated(self) -> Iterator[sqlite3.Connection]:
        """A read connection of its own for a caller's own thread (a background rebuild), closed afterwards."""
        conn = connect_readonly(self.path)
        try:
            yield conn
        finally:
            conn.close()

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



def open_scan_connection(path: Path | str) -> sqlite3.Connection:
    """A plain read-only connection (tuples, no memory map: a sequential scan through read() was a few per cent
    cheaper than faulting the pages in) for bulk scans outside the `Database` object: the operator's full ledger
    check and its worker processes, which cannot share connections."""
    conn = sqlite3.connect(read_only_uri(path), uri=True)
    conn.execute("PRAGMA query_only=ON")
    return conn
