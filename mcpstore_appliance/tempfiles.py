"""Temporary files that a crash may leave behind, and their sweeping.

A file in use is held: an advisory lock (flock) on it for as long as its writer needs it, released by the
kernel when the process dies. A sweep removes files older than a grace period that nobody holds, so a slow
upload is never swept, however long it takes, in this process or another one sharing the data folder. Where
flock does not exist (Windows), the grace period alone decides.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def hold(path: Path) -> int:
    """Mark `path` as in use until the returned descriptor is closed (by release() or by the process dying)."""
    fd = os.open(path, os.O_RDONLY)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH)  # shared: the sweep's exclusive try fails while any holder is alive
    return fd


def release(fd: int) -> None:
    os.close(fd)


def _held(path: str) -> bool:
    if fcntl is None:
        return False
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True  # gone already: nothing to remove
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # also releases our own lock
    return False


def remove_stale(folder: Path, max_age_seconds: float, prefixes: tuple[str, ...] = ("",)) -> int:
    """Remove the regular files in `folder` whose names start with one of `prefixes`, last written more than
    `max_age_seconds` ago and held by nobody; returns how many. Young files may belong to a write that does not
    hold its file (a blob store's short puts)."""
    cutoff = time.time() - max_age_seconds
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefixes):
            continue
        try:
            stat = entry.stat(follow_symlinks=False)
            if entry.is_file(follow_symlinks=False) and stat.st_mtime < cutoff and not _held(entry.path):
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed
