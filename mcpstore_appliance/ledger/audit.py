"""Operator audit: recompute the whole tree from the stored leaves and check every stored row.

Checks, each problem reported with the index it concerns:
- leaves are dense (0..N-1) and there are exactly as many hash rows as N leaves need;
- every stored hash row equals the hash recomputed from the leaves (a changed leaf is named by its entry index,
  a changed hash row by its row index, without also blaming the ancestors that depend on it);
- every stored checkpoint is signed by the ledger key and its root is the recomputed root at its size, and no
  checkpoint claims more entries than exist (truncation);
- the lookup columns (kind, sha256, namespace, name, version) agree with the leaf; sealed leaves open.

The tree is checked in aligned chunks of 2^16 leaves, spread over worker processes; inside a chunk the stored
rows are the post-order of the chunk's subtree, so one bytes comparison checks them all and only a chunk that
differs is walked node by node. This is plain sqlite3 (read-only, works while the server runs), no asyncio.
"""

from __future__ import annotations

import gc
import hashlib
import json
import os
import sqlite3
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache
from operator import itemgetter, methodcaller
from pathlib import Path

from nacl.signing import SigningKey

from . import events as ev
from . import note as notes
from .checkpoint import open_checkpoint, parse_unverified
from .merkle import node_hash
from .storedhash import leaf_range, root_hash, root_indexes, stored_hash_count, stored_hash_index

CHUNK_LEVEL = 16
MAX_PROBLEMS = 100
LOOKUP_COLUMNS = ("kind", "sha256", "namespace", "name", "version")
_sha256 = hashlib.sha256
_digest = methodcaller("digest")
_first = itemgetter(0)


@dataclass
class AuditReport:
    size: int = 0
    checkpoints: int = 0
    latest_checkpoint: int | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, problem: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(problem)


def _connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    conn.execute("PRAGMA query_only=ON")
    return conn


def _fetch_column(cursor: sqlite3.Cursor) -> list[bytes]:
    out: list[bytes] = []
    while True:
        rows = cursor.fetchmany(8192)
        if not rows:
            return out
        out += map(bytes, map(_first, rows))


def _leaf_hashes(leaves: list[bytes]) -> list[bytes]:
    # map chains keep the per-item work in C: sha256(b"\x00" + data).digest()
    return list(map(_digest, map(_sha256, map(b"\x00".__add__, leaves))))


def _parents(level: list[bytes]) -> list[bytes]:
    pairs = map(bytes.__add__, level[0::2], level[1::2])
    return list(map(_digest, map(_sha256, map(b"\x01".__add__, pairs))))


@cache
def _post_order(k: int) -> tuple[tuple[int, int], ...]:
    """(level, j) of each stored row of a complete subtree of 2^k leaves, in stored (post-) order."""
    order = []
    for leaf in range(1 << k):
        order.append((0, leaf))
        level = 1
        while level <= k and (leaf + 1) % (1 << level) == 0:
            order.append((level, ((leaf + 1) >> level) - 1))
            level += 1
    return tuple(order)


@cache
def _post_order_getter(k: int) -> itemgetter:
    offsets = [0]
    for level in range(k + 1):
        offsets.append(offsets[-1] + (1 << (k - level)))
    positions = [offsets[level] + j for level, j in _post_order(k)]
    return itemgetter(*positions)


def check_chunk(db_path: str, start: int, k: int) -> tuple[bytes, list[str], bool]:
    """Verify the complete subtree of 2^k leaves at `start`.

    Returns its recomputed hash, the problems found, and whether its stored top row differs (so the rows above
    it are not blamed for a change inside it)."""
    gc.disable()  # millions of short-lived bytes objects; the cycle collector only costs time here
    try:
        conn = _connect(Path(db_path))
        size = 1 << k
        leaves = _fetch_column(conn.execute(
            "SELECT data FROM ledger_leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (start, start + size)))
        first_row = stored_hash_index(0, start)
        rows_needed = 2 * size - 1
        stored = _fetch_column(conn.execute(
            "SELECT hash FROM ledger_hashes WHERE idx >= ? AND idx < ? ORDER BY idx",
            (first_row, first_row + rows_needed)))
        if len(leaves) != size or len(stored) != rows_needed:
            conn.close()
            return b"", [f"entries {start}..{start + size - 1}: rows are missing (see the row counts)"], True
        levels = [_leaf_hashes(leaves)]
        while len(levels[-1]) > 1:
            levels.append(_parents(levels[-1]))
        flat = [h for level in levels for h in level]
        expected = _post_order_getter(k)(flat) if k else (flat[0],)
        if b"".join(expected) == b"".join(stored):
            problems, top_differs = [], False
        else:
            problems = _locate(start, k, levels, stored, first_row)
            top_differs = stored[-1] != levels[-1][0]  # the subtree's own hash is the last row of its post-order
        conn.close()
        return levels[-1][0], problems, top_differs
    finally:
        gc.enable()


def _locate(start: int, k: int, levels: list[list[bytes]], stored: list[bytes], first_row: int) -> list[str]:
    """Name the lowest rows that differ; ancestors that differ only because of them are not blamed again."""
    row_of = {node: first_row + i for i, node in enumerate(_post_order(k))}
    bad = {node for node, i in row_of.items() if stored[i - first_row] != levels[node[0]][node[1]]}
    problems = []
    for level, j in sorted(bad):
        if level > 0 and ((level - 1, 2 * j) in bad or (level - 1, 2 * j + 1) in bad):
            continue  # explained by a changed row below
        row = row_of[(level, j)]
        if level == 0:
            parent = (1, j // 2)
            entry = start + j
            if k == 0:
                problems.append(f"entry {entry}: leaf data does not match its stored hash (hash row {row})")
            elif parent in bad:
                problems.append(f"entry {entry}: leaf data was changed (it no longer hashes to hash row {row})")
            else:
                problems.append(f"hash row {row} (leaf hash of entry {entry}) was changed")
        else:
            lo, hi = leaf_range(level, (start >> level) + j)
            problems.append(f"hash row {row} (level {level}, entries {lo}..{hi - 1}) was changed")
    return problems


def _chunks(size: int) -> list[tuple[int, int]]:
    """Aligned complete subtrees (start, k) covering [0, size), at most 2^CHUNK_LEVEL leaves each."""
    out, start = [], 0
    while start < size:
        k = min(CHUNK_LEVEL, (size - start).bit_length() - 1)
        out.append((start, k))
        start += 1 << k
    return out


def _read_hashes(conn: sqlite3.Connection, indexes: list[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for i in range(0, len(indexes), 500):
        part = indexes[i:i + 500]
        marks = ",".join("?" * len(part))
        for idx, h in conn.execute(f"SELECT idx, hash FROM ledger_hashes WHERE idx IN ({marks})", part):
            found[idx] = bytes(h)
    return found


class Auditor:
    def __init__(self, db_path: Path, signing_key: SigningKey | None = None, workers: int | None = None):
        self.db_path = Path(db_path)
        self.signing_key = signing_key
        self.workers = workers if workers is not None else min(2, os.cpu_count() or 1)

    def run(self) -> AuditReport:
        report = AuditReport()
        conn = _connect(self.db_path)
        try:
            size = self._check_counts(conn, report)
            report.size = size
            if report.ok:
                self._check_tree(conn, size, report)
            self._check_checkpoints(conn, size, report)
            self._check_lookup_columns(conn, report)
        finally:
            conn.close()
        return report

    def _check_counts(self, conn: sqlite3.Connection, report: AuditReport) -> int:
        count, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetchone()
        if count != top:
            gaps = conn.execute(
                "SELECT idx + 1 FROM ledger_leaves WHERE idx + 1 < ? AND idx + 1 NOT IN (SELECT idx FROM ledger_leaves)"
                " ORDER BY idx LIMIT 10", (top,)).fetchall()
            first = conn.execute("SELECT MIN(idx) FROM ledger_leaves").fetchone()[0]
            missing = ([0] if first not in (None, 0) else []) + [g[0] for g in gaps]
            report.add(f"entries are missing: {', '.join(map(str, missing[:10]))}")
        rows, top_row = conn.execute("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM ledger_hashes").fetchone()
        wanted = stored_hash_count(top)
        if rows != wanted or top_row != wanted:
            report.add(f"the hash table has {rows} rows (highest {top_row - 1}); {top} entries need exactly {wanted}")
        return top

    def _check_tree(self, conn: sqlite3.Connection, size: int, report: AuditReport) -> None:
        chunks = _chunks(size)
        if self.workers > 1 and len(chunks) > 1:
            with ProcessPoolExecutor(self.workers) as pool:
                results = list(pool.map(check_chunk, [str(self.db_path)] * len(chunks),
                                        [s for s, _ in chunks], [k for _, k in chunks]))
        else:
            results = [check_chunk(str(self.db_path), s, k) for s, k in chunks]
        for _, problems, _ in results:
            for problem in problems:
                report.add(problem)
        # Rows above the chunk level join full chunks; recompute them from the chunk hashes. As inside a chunk,
        # a row is blamed only when its children's rows are right (else the change is below it).
        full = [(h, differs) for (_, k), (h, _, differs) in zip(chunks, results) if k == CHUNK_LEVEL]
        level = CHUNK_LEVEL
        while len(full) > 1:
            level += 1
            pairs = list(zip(full[0::2], full[1::2]))
            wanted = [stored_hash_index(level, n) for n in range(len(pairs))]
            stored = _read_hashes(conn, wanted)
            full = []
            for n, (row, ((left, left_bad), (right, right_bad))) in enumerate(zip(wanted, pairs)):
                h = node_hash(left, right)
                differs = stored.get(row) != h
                if differs and not (left_bad or right_bad):
                    lo, hi = leaf_range(level, n)
                    report.add(f"hash row {row} (level {level}, entries {lo}..{hi - 1}) was changed")
                full.append((h, differs))

    def _check_checkpoints(self, conn: sqlite3.Connection, size: int, report: AuditReport) -> None:
        rows = conn.execute("SELECT size, root, note FROM ledger_checkpoints ORDER BY size").fetchall()
        report.checkpoints = len(rows)
        report.latest_checkpoint = rows[-1][0] if rows else None
        for cp_size, root, note_text in rows:
            try:
                parsed = parse_unverified(note_text)
            except ValueError as exc:
                report.add(f"checkpoint {cp_size}: malformed note ({exc})")
                continue
            if parsed.size != cp_size or parsed.root != bytes(root):
                report.add(f"checkpoint {cp_size}: the note and its row disagree")
            if self.signing_key is not None:
                try:
                    open_checkpoint(note_text, [notes.verifier_for(parsed.origin, self.signing_key)])
                except ValueError as exc:
                    report.add(f"checkpoint {cp_size}: signature does not verify with the ledger key ({exc})")
            if cp_size > size:
                report.add(f"checkpoint {cp_size} covers more entries than exist ({size}): entries were removed")
                continue
            hashes = _read_hashes(conn, root_indexes(cp_size))
            if len(hashes) == len(set(root_indexes(cp_size))) and root_hash(cp_size, hashes) != parsed.root:
                report.add(f"checkpoint {cp_size}: its root does not match the tree")

    def _check_lookup_columns(self, conn: sqlite3.Connection, report: AuditReport) -> None:
        # Public leaves: compared inside SQLite (JSON1), which is far faster than parsing in Python.
        mismatch = " OR ".join(f"{c} IS NOT json_extract(t, '$.{c}')" for c in LOOKUP_COLUMNS)
        for (idx,) in conn.execute(
                f"SELECT idx FROM (SELECT idx, CAST(data AS TEXT) AS t, {', '.join(LOOKUP_COLUMNS)} FROM ledger_leaves"
                f" WHERE org_id IS NULL AND opening IS NULL)"
                f" WHERE CASE WHEN json_valid(t) THEN ({mismatch}) ELSE 1 END ORDER BY idx LIMIT {MAX_PROBLEMS}"):
            report.add(f"entry {idx}: lookup columns do not match the leaf")
        # Sealed leaves: the commitment must open with the stored event, whose fields fill the columns.
        cursor = conn.execute(
            f"SELECT idx, data, opening, salt, {', '.join(LOOKUP_COLUMNS)} FROM ledger_leaves"
            " WHERE org_id IS NOT NULL OR opening IS NOT NULL ORDER BY idx")
        for idx, data, opening, salt, *stored in cursor:
            if opening is None or salt is None or not ev.opens(bytes(data), salt, bytes(opening)):
                report.add(f"entry {idx}: sealed leaf does not open with its stored event")
                continue
            try:
                event = json.loads(bytes(opening))
            except ValueError:
                event = None
            if not isinstance(event, dict) or [event.get(c) for c in LOOKUP_COLUMNS] != stored:
                report.add(f"entry {idx}: lookup columns do not match the sealed event")
