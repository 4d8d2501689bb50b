"""The operator's full ledger check (`mcpstore ledger verify`): recompute the whole tree from the stored leaves
and check every stored hash, checkpoint and lookup key. Not the client's check of one bundle (client_check.py),
nor the audit log of user actions (the `audit` package).

Checks, each problem reported with the entry index it concerns:
- leaves are dense (0..N-1);
- every stored hash equals the hash recomputed from the leaves (a changed leaf is named by its index, a changed
  stored hash by the entry whose row holds it, without also blaming the ancestors that depend on it);
- every stored checkpoint is signed by the ledger key and its root is the recomputed root at its size, and no
  checkpoint claims more entries than exist (truncation);
- the lookup keys agree with the leaf, and sealed leaves open with their stored event (`index=True`).

The tree is checked in aligned chunks of 2^14 leaves (integrity_chunks.py) spread over worker processes (small,
so two workers share the work evenly); the parent combines their roots. Plain sqlite3, read-only: it works while
the server runs.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sqlite3
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from nacl.signing import SigningKey

from ..db import open_scan_connection
from . import events as ev
from . import note as notes
from . import service
from .checkpoint import open_checkpoint, parse_unverified
from .hash_reads import MAX_IN_PARAMS
from .integrity_chunks import (_check_chunk_in_worker, _no_cycle_collector, _open_worker_connection,
                               _rows_getter, _use_native, check_chunk, native_available)
from .merkle import HASH_SIZE, node_hash
from .storedhash import Node, leaf_range, root_hash, root_nodes, row_of

CHUNK_LEVEL = 14  # leaves per chunk: 2^CHUNK_LEVEL
INDEX_BATCH = 1 << 16
MAX_PROBLEMS = 100

__all__ = ["IntegrityCheck", "IntegrityReport", "check_index", "native_available"]


@dataclass
class IntegrityReport:
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


def check_index(db_path: str, lo: int, hi: int) -> list[str]:
    """Lookup keys agree with the leaf (or, for a sealed leaf, with its opening, which must match)."""
    conn = open_scan_connection(Path(db_path))
    problems = []
    try:
        cursor = conn.execute(
            "SELECT idx, data, sha_key, release_key, org_id, opening, salt FROM ledger_leaves"
            " WHERE idx >= ? AND idx < ? ORDER BY idx", (lo, hi))
        while rows := cursor.fetchmany(8192):
            for idx, data, sha_key, release_key, org_id, opening, salt in rows:
                if org_id is not None or opening is not None:
                    if opening is None or salt is None or not ev.opens(bytes(data), salt, bytes(opening)):
                        problems.append(f"entry {idx}: sealed leaf does not open with its stored event")
                        continue
                    data = opening
                try:
                    event = json.loads(data)
                except ValueError:
                    problems.append(f"entry {idx}: leaf is not JSON")
                    continue
                if not isinstance(event, dict) or ev.lookup_keys(event) != (sha_key, release_key):
                    problems.append(f"entry {idx}: lookup keys do not match the leaf")
    finally:
        conn.close()
    return problems


def _process_context():
    # fork is fastest, but forking a process that runs other threads (an aiosqlite worker, say) can deadlock
    # the child on a lock held at that moment; then start workers from a clean fork server instead.
    return multiprocessing.get_context("fork" if threading.active_count() == 1 else "forkserver")


def _chunks(size: int) -> list[tuple[int, int]]:
    """Aligned complete subtrees (start, k) covering [0, size), at most 2^CHUNK_LEVEL leaves each."""
    out, start = [], 0
    while start < size:
        k = min(CHUNK_LEVEL, (size - start).bit_length() - 1)
        out.append((start, k))
        start += 1 << k
    return out


def _read_nodes(conn: sqlite3.Connection, nodes: list[Node]) -> dict[Node, bytes]:
    wanted: dict[int, list[Node]] = {}
    for node in nodes:
        wanted.setdefault(row_of(node)[0], []).append(node)
    found: dict[Node, bytes] = {}
    rows = list(wanted)
    for i in range(0, len(rows), MAX_IN_PARAMS):
        part = rows[i:i + MAX_IN_PARAMS]
        for idx, blob in conn.execute(
                f"SELECT idx, hashes FROM ledger_leaves WHERE idx IN ({','.join('?' * len(part))})", part):
            for node in wanted[idx]:
                offset = row_of(node)[1]
                found[node] = bytes(blob[offset:offset + HASH_SIZE])
    return found


class IntegrityCheck:
    def __init__(self, db_path: Path, signing_key: SigningKey | None = None, workers: int | None = None,
                 index: bool = True, native: bool | None = None):
        self.db_path = Path(db_path)
        self.signing_key = signing_key
        self.workers = workers if workers is not None else min(2, os.cpu_count() or 1)
        self.index = index
        self.native = _use_native(native)  # whether intact chunks are hashed by the C module

    def run(self) -> IntegrityReport:
        report = IntegrityReport()
        conn = open_scan_connection(self.db_path)
        try:
            # COUNT(*) walks every row (a tenth of the whole audit); MIN and MAX of the key are two B-tree
            # descents, and the chunks find any row missing in between: count only then, to name the gaps.
            # (Each in its own subquery: SQLite descends the B-tree for a lone MIN or MAX only; both in one
            # SELECT scan every row.)
            first, top = conn.execute("SELECT (SELECT MIN(idx) FROM ledger_leaves),"
                                      " COALESCE((SELECT MAX(idx) FROM ledger_leaves) + 1, 0)").fetchone()
            tree = IntegrityReport()
            if first in (None, 0):
                self._check_tree_and_index(conn, top, tree)
            if first not in (None, 0) or any(p.endswith(": rows are missing") for p in tree.problems):
                top = self._check_counts(conn, report)
                tree = IntegrityReport() if not report.ok else tree
            for problem in tree.problems:
                report.add(problem)
            report.size = top
            self._check_checkpoints(conn, top, report)
        finally:
            conn.close()
        return report

    def _check_counts(self, conn: sqlite3.Connection, report: IntegrityReport) -> int:
        count, top = conn.execute("SELECT COUNT(*), COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetchone()
        if count != top:
            gaps = conn.execute(
                "SELECT idx + 1 FROM ledger_leaves WHERE idx + 1 < ? AND idx + 1 NOT IN (SELECT idx FROM ledger_leaves)"
                " ORDER BY idx LIMIT 10", (top,)).fetchall()
            first = conn.execute("SELECT MIN(idx) FROM ledger_leaves").fetchone()[0]
            missing = ([0] if first not in (None, 0) else []) + [g[0] for g in gaps]
            report.add(f"entries are missing: {', '.join(map(str, missing[:10]))}")
        return top

    def _check_tree_and_index(self, conn: sqlite3.Connection, size: int, report: IntegrityReport) -> None:
        chunks = _chunks(size)
        path = str(self.db_path)
        ranges = [(lo, min(lo + INDEX_BATCH, size)) for lo in range(0, size, INDEX_BATCH)] if self.index else []
        if self.workers > 1 and len(chunks) + len(ranges) > 1:
            for k in {k for _, k in chunks} if not self.native else ():
                _rows_getter(k)  # built once here, inherited by forked workers
            with ProcessPoolExecutor(self.workers, mp_context=_process_context(),
                                     initializer=_open_worker_connection, initargs=(path, self.native)) as pool:
                tree_jobs = [pool.submit(_check_chunk_in_worker, start, k) for start, k in chunks]
                index_jobs = [pool.submit(check_index, path, lo, hi) for lo, hi in ranges]
                lookup_problems = self._check_lookup_table(conn, size) if self.index else []
                results = [job.result() for job in tree_jobs]
                index_problems = [job.result() for job in index_jobs]
        else:
            with _no_cycle_collector():
                results = [check_chunk(conn, start, k, self.native) for start, k in chunks]
            index_problems = [check_index(path, lo, hi) for lo, hi in ranges]
            lookup_problems = self._check_lookup_table(conn, size) if self.index else []
        index_problems.append(lookup_problems)
        for _, problems, _, _ in results:
            for problem in problems:
                report.add(problem)
        self._check_upper_levels(chunks, results, report)
        for problems in index_problems:
            for problem in problems:
                report.add(problem)

    @staticmethod
    def _check_lookup_table(conn: sqlite3.Connection, size: int) -> list[str]:
        """The lookup index holds exactly the keys of every leaf in the completed blocks (checked in SQL)."""
        end = size // service.LOOKUP_BLOCK * service.LOOKUP_BLOCK
        problems = [f"lookup index entry ({key}, {idx}) does not match entry {idx}" for key, idx in conn.execute(
            "SELECT l.key, l.idx FROM ledger_lookup l LEFT JOIN ledger_leaves v ON v.idx = l.idx"
            " WHERE v.idx IS NULL OR l.idx >= ? OR l.block != l.idx / ?"
            " OR (l.key IS NOT v.sha_key AND l.key IS NOT v.release_key)"
            f" LIMIT {MAX_PROBLEMS}", (end, service.LOOKUP_BLOCK))]
        count = conn.execute("SELECT COUNT(*) FROM ledger_lookup").fetchone()[0]
        expected = conn.execute(
            "SELECT COUNT(sha_key) + COUNT(release_key) - COALESCE(SUM(sha_key = release_key), 0) FROM ledger_leaves"
            " WHERE idx < ?", (end,)).fetchone()[0]
        if count != expected and not problems:
            missing = [idx for (idx,) in conn.execute(
                "SELECT idx FROM ledger_leaves v WHERE idx < ? AND ("
                " (sha_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger_lookup"
                "     WHERE block = v.idx / ? AND key = v.sha_key AND idx = v.idx))"
                " OR (release_key IS NOT NULL AND NOT EXISTS (SELECT 1 FROM ledger_lookup"
                "     WHERE block = v.idx / ? AND key = v.release_key AND idx = v.idx)))"
                f" ORDER BY idx LIMIT {MAX_PROBLEMS}", (end, service.LOOKUP_BLOCK, service.LOOKUP_BLOCK))]
            problems += [f"entry {idx}: missing from the lookup index" for idx in missing]
        return problems

    @staticmethod
    def _check_upper_levels(chunks: list[tuple[int, int]], results: list, report: IntegrityReport) -> None:
        """Nodes above the chunk level join full chunks; recompute them from the chunks' hashes. As inside a
        chunk, a node is blamed only when its children are right (else the change is below it)."""
        stored: dict[Node, bytes] = {}
        for _, _, _, upper in results:
            stored.update(upper)
        full = [(h, differs) for (_, k), (h, _, differs, _) in zip(chunks, results) if k == CHUNK_LEVEL]
        level = CHUNK_LEVEL
        while len(full) > 1:
            level += 1
            pairs = list(zip(full[0::2], full[1::2]))
            full = []
            for n, ((left, left_bad), (right, right_bad)) in enumerate(pairs):
                h = node_hash(left, right)
                differs = stored.get((level, n)) != h
                if differs and not (left_bad or right_bad):
                    lo, hi = leaf_range(level, n)
                    report.add(f"entry {hi - 1}: its stored hash of level {level} (entries {lo}..{hi - 1}) "
                               "was changed")
                full.append((h, differs))

    def _check_checkpoints(self, conn: sqlite3.Connection, size: int, report: IntegrityReport) -> None:
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
            nodes = root_nodes(cp_size)
            hashes = _read_nodes(conn, nodes)
            if len(hashes) == len(nodes) and root_hash(cp_size, hashes) != parsed.root:
                report.add(f"checkpoint {cp_size}: its root does not match the tree")
