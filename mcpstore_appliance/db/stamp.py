"""The commit stamp: a value that moves whenever the database may have changed, so caches can skip SQLite
while nothing was written."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .sync_reads import SyncReads

T = TypeVar("T")

# How stale a cached answer may be after another process (the `mcpstore admin` CLI, a restore) commits.
EXTERNAL_CHECK_SECONDS = 1.0


class CommitStamp:
    """This `Database`'s commit count (moved by its writer, free to read) and SQLite's `PRAGMA data_version`
    (which also sees other connections' and processes' commits but costs a call into SQLite, so it is read at
    most once per EXTERNAL_CHECK_SECONDS). Take the stamp BEFORE reading the data it guards: then a stamp
    never claims newer data than was read."""

    def __init__(self, reads: SyncReads):
        self._reads = reads
        self.commits = 0
        self._data_version = 0
        self._checked_at = float("-inf")

    def committed(self) -> None:
        """Called by the writer after COMMIT: a reader that sees the new count sees the new data."""
        self.commits += 1

    def __call__(self) -> tuple[int, int]:
        now = time.monotonic()
        if now - self._checked_at >= EXTERNAL_CHECK_SECONDS:
            self._data_version = self._reads.inline(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
            self._checked_at = now
        return self.commits, self._data_version


class PerStamp(Generic[T]):
    """A value read inline again only when the stamp has moved since it was last read (for example the
    catalog's search generation, which keys cached pages)."""

    def __init__(self, stamp: Callable[[], Hashable], read: Callable[[], T]):
        self._stamp, self._read = stamp, read
        self._cached: tuple[Hashable, T] | None = None

    def __call__(self) -> T:
        stamp = self._stamp()  # before the read it guards
        cached = self._cached
        if cached is None or cached[0] != stamp:
            cached = (stamp, self._read())
            self._cached = cached
        return cached[1]
