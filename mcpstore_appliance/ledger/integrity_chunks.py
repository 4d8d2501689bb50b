"""The operator's full ledger check, per chunk: recompute an aligned subtree of 2^k leaves from its stored leaves
and compare every stored hash (integrity.py runs the chunks, in worker processes when there are several).

A chunk's rows, joined in order, are the post-order of its subtree, so one bytes comparison checks all its stored
hashes and only a chunk that differs is walked node by node (naming the changed entry). The hashing of an intact
chunk runs in the optional C module `_merkle_native` when it was built (setup.py), else in the pure-Python code
here; both give the same results.
"""

from __future__ import annotations

import gc
import hashlib
import sqlite3
from collections.abc import Callable
from contextlib import contextmanager
from functools import cache
from itertools import chain
from operator import itemgetter, methodcaller
from pathlib import Path

from ..db import open_scan_connection
from ..memory import keep_freed_memory
from .merkle import HASH_SIZE
from .storedhash import Node, hashes_in_row, leaf_range, row_nodes

try:
    from . import _merkle_native
except ImportError:  # not built (no compiler or OpenSSL headers at install time): the pure-Python path
    _merkle_native = None

FAST_ROWS = 2048
_sha256 = hashlib.sha256
_digest = methodcaller("digest")
_first = itemgetter(0)
_second = itemgetter(1)
# Joins the rows' stored hashes when SQLite hands them over as one value. No proper suffix of it is a prefix of
# it, so two occurrences never overlap and counting them counts row boundaries (see _check_chunk_fast).
ROW_SEP = b"\xff" + bytes(15)


def native_available() -> bool:
    return _merkle_native is not None


def _use_native(native: bool | None) -> bool:
    """None: the C module when it was built; False: pure Python; True: the C module, which must be built."""
    if native and _merkle_native is None:
        raise RuntimeError("the ledger integrity check's C module (_merkle_native) was not built with this install")
    return native_available() if native is None else native


def _fetch_rows(cursor: sqlite3.Cursor) -> list[tuple]:
    out: list[tuple] = []
    while rows := cursor.fetchmany(8192):
        out += rows
    return out


def _leaf_hashes(leaves: list[bytes]) -> list[bytes]:
    # map chains keep the per-item work in C: sha256(b"\x00" + data).digest()
    return list(map(_digest, map(_sha256, map(b"\x00".__add__, leaves))))


def _parents(level: list[bytes]) -> list[bytes]:
    """The parents of a level, SHA-256(0x01 || left || right) for each pair."""
    # Two concatenations of small bytes come from Python's small-object allocator and are reused at once;
    # slices of one joined level cost more per node: its megabytes are fresh pages each time.
    pairs = iter(level)
    return [_sha256(b"\x01" + left + right).digest() for left, right in zip(pairs, pairs)]


def _levels(leaf_hashes: list[bytes]) -> list[list[bytes]]:
    levels = [leaf_hashes]
    while len(levels[-1]) > 1:
        levels.append(_parents(levels[-1]))
    return levels


@cache
def _rows_getter(k: int) -> Callable[[list[bytes]], tuple[bytes, ...]]:
    """Picks, from an aligned chunk's hashes level by level followed by ROW_SEP, each row's stored hashes (its
    leaf hash, then the nodes it completes: post-order) with ROW_SEP between rows: the chunk as stored."""
    offsets = [0]
    for level in range(k + 1):
        offsets.append(offsets[-1] + (1 << (k - level)))
    order = []
    for leaf in range(1 << k):
        if leaf:
            order.append(offsets[-1])  # the ROW_SEP after the last level
        order += [offsets[level] + j for level, j in row_nodes(leaf)[:k + 1]]
    return itemgetter(*order) if k else lambda flat: (flat[0],)


def _expected_rows(k: int, levels: list[list[bytes]]) -> bytes:
    return b"".join(_rows_getter(k)([*chain.from_iterable(levels), ROW_SEP]))


def _row_offset(rows: int) -> int:
    """Where row `rows` of an aligned chunk starts in `_expected_rows`: the first r rows hold 2r - popcount(r)
    hashes (one leaf hash each, plus one node per trailing 1-bit of each index + 1), each row then a ROW_SEP."""
    return HASH_SIZE * (2 * rows - rows.bit_count()) + len(ROW_SEP) * rows


def _upper(start: int, k: int, tail: bytes) -> dict[Node, bytes]:
    """The hashes above the chunk that its last row keeps after its own (nodes it completes beyond level k)."""
    last = start + (1 << k) - 1
    return {(level, ((last + 1) >> level) - 1): tail[(level - k - 1) * HASH_SIZE:][:HASH_SIZE]
            for level in range(k + 1, hashes_in_row(last))}


@cache
def _row_lengths(k: int) -> list[int]:
    """Byte length of each row of an aligned chunk of 2^k leaves (the last row may hold more, above the chunk)."""
    return [hashes_in_row(leaf) * HASH_SIZE for leaf in range(1 << k)]


@cache
def _keep_freed_memory() -> None:
    """The audit reuses ~1 MB buffers thousands of times (each group_concat value while SQLite builds it, its
    Python copy, a chunk's joined hashes): keep them in the heap (see memory.py), with the largest thresholds
    glibc accepts, as this process (the CLI command or an audit worker) is short-lived."""
    keep_freed_memory(mmap_threshold=32 << 20, trim_threshold=256 << 20)


def check_chunk(conn: sqlite3.Connection, start: int, k: int,
                native: bool | None = None) -> tuple[bytes, list[str], bool, dict[Node, bytes]]:
    """Verify the complete subtree of 2^k leaves at `start` (`native`: see `_use_native`).

    Returns its recomputed hash, the problems found, whether its own stored hash differs (so the nodes above
    are not blamed for a change inside it), and the stored hashes of higher nodes stored in its last row."""
    _keep_freed_memory()
    text_factory = conn.text_factory
    try:
        clean = _check_chunk_fast(conn, start, k, native)
        return clean if clean is not None else _check_chunk_rows(conn, start, k)
    finally:
        conn.text_factory = text_factory


@contextmanager
def _no_cycle_collector():
    """Chunks make millions of short-lived bytes objects and no cycles: the collector only costs time (also when
    re-enabled between chunks, as the allocations it counted meanwhile start a collection at once)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_worker_conn: sqlite3.Connection | None = None
_worker_native = False


def _open_worker_connection(db_path: str, native: bool) -> None:
    """An audit worker opens one connection for all its chunks: opening one reads the schema again."""
    global _worker_conn, _worker_native
    _worker_conn = open_scan_connection(Path(db_path))
    _worker_native = native
    gc.disable()  # as _no_cycle_collector, for the whole life of this worker process


def _check_chunk_in_worker(start: int, k: int) -> tuple[bytes, list[str], bool, dict[Node, bytes]]:
    assert _worker_conn is not None
    return check_chunk(_worker_conn, start, k, _worker_native)


_FAST_SQL = ("SELECT count(data) + count(hashes), group_concat(data, X'0A00'),"
             " group_concat(hashes, X'" + ROW_SEP.hex() + "')"
             " FROM ledger_leaves WHERE idx >= ? AND idx < ?")


def _py_leaf_hashes(joined: bytes, count: int) -> list[bytes] | None:
    """`_merkle_native.leaf_hashes` in Python: `count` leaves joined by 0A 00, or None."""
    leaves = joined.split(b"\n")
    if len(leaves) != count:
        return None
    leaves[0] = b"\x00" + leaves[0]
    return [_sha256(leaf).digest() for leaf in leaves]


def _py_chunk_rows(k: int, leaf_hashes: list[list[bytes]]) -> tuple[bytes, bytes]:
    """The chunk's root and its rows as stored, from its leaf hashes (lists of parts)."""
    levels = _levels(list(chain.from_iterable(leaf_hashes)))
    return levels[-1][0], _expected_rows(k, levels)


def _native_chunk_rows(k: int, leaf_hashes: list[bytes]) -> tuple[bytes, bytes]:
    expected = _merkle_native.stored_rows(b"".join(leaf_hashes), ROW_SEP)
    return expected[-HASH_SIZE:], expected  # the last row ends with the chunk's own hash


def _check_chunk_fast(conn: sqlite3.Connection, start: int, k: int, native: bool | None = None) -> tuple | None:
    """The common case, an intact chunk, from three aggregate values per FAST_ROWS rows instead of row tuples.

    Row tuples cost Python more than the hashing does; SQLite joins in C instead: the count of non-NULL leaves
    and hashes, every leaf separated by 0x0A 0x00 (so after a split on the newline each piece but the first
    already starts with the leaf prefix 0x00; canonical JSON has no raw newline), and every row's stored hashes
    separated by ROW_SEP. idx is the primary key, so a non-NULL leaf and hashes in as many rows as the range is
    wide means no row is missing (group_concat skips NULLs); then a split into exactly that many pieces means no
    leaf held a newline, and one separator fewer in the stored hashes (ROW_SEP cannot overlap itself) means none
    sits inside a row, so equal bytes mean every row holds exactly its own hashes. Anything else (a newline in a
    leaf, a missing or malformed row, a differing hash) returns None, and the row-wise check that names the
    entry runs."""
    size = 1 << k
    use_native = _use_native(native)
    hash_leaves = _merkle_native.leaf_hashes if use_native else _py_leaf_hashes
    conn.text_factory = bytes  # group_concat answers TEXT; keep its raw bytes
    leaf_hashes = []
    parts = []
    for lo in range(start, start + size, FAST_ROWS):
        hi = min(lo + FAST_ROWS, start + size)
        values, data, hashes = conn.execute(_FAST_SQL, (lo, hi)).fetchone()
        if values != 2 * (hi - lo):
            return None
        # hashed as read: a part's leaves are freed before the next part is split, so the allocator reuses
        # their memory instead of faulting in fresh pages for the whole chunk
        hashed = hash_leaves(data, hi - lo)
        if hashed is None:
            return None
        leaf_hashes.append(hashed)
        parts.append((lo - start, hi - start, hashes))
    root, expected = _native_chunk_rows(k, leaf_hashes) if use_native else _py_chunk_rows(k, leaf_hashes)
    above = (hashes_in_row(start + size - 1) - k - 1) * HASH_SIZE  # the last row's hashes beyond the chunk
    for first, end, stored in parts:
        offset = _row_offset(first)
        length = (_row_offset(end) - len(ROW_SEP) if end < size else len(expected)) - offset
        if (len(stored) != length + (above if end == size else 0) or stored.count(ROW_SEP) != end - first - 1
                or not expected.startswith(stored if end < size else stored[:length], offset)):
            return None
    return root, [], False, _upper(start, k, parts[-1][2][length:])


def _check_chunk_rows(conn: sqlite3.Connection, start: int, k: int) -> tuple[bytes, list[str], bool, dict[Node, bytes]]:
    """Row by row: slower, and names each entry whose leaf or stored hash differs."""
    conn.text_factory = bytes
    size = 1 << k
    rows = _fetch_rows(conn.execute(
        "SELECT data, hashes FROM ledger_leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, start + size)))
    if len(rows) != size:
        return b"", [f"entries {start}..{start + size - 1}: rows are missing"], True, {}
    # a NULL (or a number) where bytes belong is reported like any other change, as the bytes b""
    leaves = [data if isinstance(data, bytes) else b"" for data in map(_first, rows)]
    blobs = [blob if isinstance(blob, bytes) else b"" for blob in map(_second, rows)]
    levels = _levels(_leaf_hashes(leaves))
    expected = _expected_rows(k, levels)
    stored = ROW_SEP.join(blobs)
    upper = _upper(start, k, stored[len(expected):])
    # Byte lengths per row matter too: moving bytes between rows keeps the join but breaks every reader.
    lengths_ok = list(map(len, blobs[:-1])) == _row_lengths(k)[:-1]
    if lengths_ok and stored.startswith(expected) and len(stored) == len(expected) + len(upper) * HASH_SIZE:
        return levels[-1][0], [], False, upper
    problems, top_differs = _locate(start, k, levels, blobs)
    return levels[-1][0], problems, top_differs, upper


def _locate(start: int, k: int, levels: list[list[bytes]], blobs: list[bytes]) -> tuple[list[str], bool]:
    """Name the lowest stored hashes that differ; ancestors that differ only because of them are not blamed."""
    bad: set[Node] = set()
    problems = []
    for i, blob in enumerate(blobs):
        leaf = start + i
        count = hashes_in_row(leaf)
        if len(blob) != count * HASH_SIZE:
            problems.append(f"entry {leaf}: its stored hashes are malformed ({len(blob)} bytes)")
        for level in range(min(count, k + 1)):
            j = ((leaf + 1) >> level) - 1 - (start >> level)
            if blob[level * HASH_SIZE:(level + 1) * HASH_SIZE] != levels[level][j]:
                bad.add((level, j))
    for level, j in sorted(bad):
        if level > 0 and ((level - 1, 2 * j) in bad or (level - 1, 2 * j + 1) in bad):
            continue  # explained by a changed hash below
        if level == 0:
            entry = start + j
            if k == 0:
                problems.append(f"entry {entry}: leaf data does not match its stored leaf hash")
            elif (1, j // 2) in bad:
                problems.append(f"entry {entry}: leaf data was changed (it no longer matches its stored leaf hash)")
            else:
                problems.append(f"entry {entry}: its stored leaf hash was changed")
        else:
            lo, hi = leaf_range(level, (start >> level) + j)
            problems.append(f"entry {hi - 1}: its stored hash of level {level} (entries {lo}..{hi - 1}) was changed")
    return problems, (k, 0) in bad
