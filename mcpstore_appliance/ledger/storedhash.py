"""Stored complete-subtree hashes (Go sumdb/tlog's "stored hash" layout), grouped by the append that made them.

The hash of the complete subtree at node (level, n) -- leaves [n·2^level, (n+1)·2^level) -- becomes known when its
last leaf, ((n+1) << level) - 1, is appended. So appending leaf i stores its leaf hash plus one node hash per
trailing 1-bit of i, and we keep those 1 + ctz(i+1) hashes together in leaf i's row (about two hashes per leaf;
in Go's dense array they are exactly the indexes `stored_hash_index(0, i)` onwards). Nothing is ever rewritten,
and any root or proof folds O(log n) stored hashes from O(log n) rows.

Reading is split in two phases so storage can be asynchronous: `*_nodes()` says which stored hashes a
computation needs (one batched query), then the matching builder folds them, given as a mapping node → hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from .merkle import EMPTY_ROOT, HASH_SIZE, node_hash

Node = tuple[int, int]  # (level, n)
Hashes = Mapping[Node, bytes]


def _ctz(x: int) -> int:
    return (x & -x).bit_length() - 1


def row_of(node: Node) -> tuple[int, int]:
    """(leaf row, byte offset) where the hash of `node` is stored."""
    level, n = node
    return ((n + 1) << level) - 1, level * HASH_SIZE


def hashes_in_row(leaf: int) -> int:
    return 1 + _ctz(leaf + 1)


def row_nodes(leaf: int) -> list[Node]:
    """The nodes whose hashes leaf `leaf`'s row holds, in order."""
    return [(level, ((leaf + 1) >> level) - 1) for level in range(hashes_in_row(leaf))]


def leaf_range(level: int, n: int) -> tuple[int, int]:
    return n << level, (n + 1) << level


# --- Go tlog's dense index, for reference and for tests that compare with it ---------------------------


def stored_hash_index(level: int, n: int) -> int:
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def stored_hash_count(size: int) -> int:
    """How many stored hashes a tree of `size` leaves has (the sum of hashes_in_row over its rows)."""
    if size == 0:
        return 0
    count = stored_hash_index(0, size - 1) + 1
    i = size - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


# --- appending ---------------------------------------------------------------------------------------


class Appender:
    """Appends leaves in memory, reading each needed old hash at most once.

    `frontier` holds the complete subtrees covering [0, size) (`root_nodes(size)`); every left sibling an append
    needs is one of them or a hash made earlier in the same batch. `rows` collects (leaf index, hashes blob).
    """

    def __init__(self, size: int, frontier: Hashes):
        self.size = size
        self.known: dict[Node, bytes] = dict(frontier)
        self.rows: list[tuple[int, bytes]] = []

    def add(self, leaf: bytes) -> int:
        n = self.size
        h = leaf
        parts = [h]
        self.known[(0, n)] = h
        for level in range(_ctz(n + 1)):
            h = node_hash(self.known[(level, (n >> level) - 1)], h)
            parts.append(h)
            self.known[(level + 1, n >> (level + 1))] = h
        self.rows.append((n, b"".join(parts)))
        self.size = n + 1
        return n


# --- subtrees and roots ----------------------------------------------------------------------------


def _subtrees(lo: int, hi: int) -> Iterator[Node]:
    """Split [lo, hi) into complete subtrees, left to right (each aligned on its own size)."""
    while lo < hi:
        level = (hi - lo).bit_length() - 1
        while lo & ((1 << level) - 1):
            level -= 1
        yield level, lo >> level
        lo += 1 << level


def subtree_nodes(lo: int, hi: int) -> list[Node]:
    return list(_subtrees(lo, hi))


def subtree_hash(lo: int, hi: int, hashes: Hashes) -> bytes:
    """MTH(D[lo:hi]) for a range that is a subtree of the RFC 6962 tree (as proofs use them)."""
    parts = [hashes[node] for node in _subtrees(lo, hi)]
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def root_nodes(size: int) -> list[Node]:
    return subtree_nodes(0, size)


def root_hash(size: int, hashes: Hashes) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, hashes)


# --- proofs: the recursions of RFC 6962 §2.1.1 and §2.1.2 over [lo, hi) ranges -------------------------


def _inclusion_ranges(index: int, lo: int, hi: int, out: list[tuple[int, int]]) -> None:
    if hi - lo <= 1:
        return
    k = 1 << ((hi - lo - 1).bit_length() - 1)
    if index < lo + k:
        _inclusion_ranges(index, lo, lo + k, out)
        out.append((lo + k, hi))
    else:
        _inclusion_ranges(index, lo + k, hi, out)
        out.append((lo, lo + k))


def _consistency_ranges(m: int, lo: int, hi: int, complete: bool, out: list[tuple[int, int]]) -> None:
    if m == hi:
        if not complete:
            out.append((lo, hi))
        return
    k = 1 << ((hi - lo - 1).bit_length() - 1)
    if m <= lo + k:
        _consistency_ranges(m, lo, lo + k, complete, out)
        out.append((lo + k, hi))
    else:
        _consistency_ranges(m, lo + k, hi, False, out)
        out.append((lo, lo + k))


def inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    _inclusion_ranges(index, 0, size, out)
    return out


def consistency_ranges(old: int, new: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    if 0 < old < new:
        _consistency_ranges(old, 0, new, True, out)
    return out


def ranges_nodes(ranges: Sequence[tuple[int, int]]) -> list[Node]:
    need: list[Node] = []
    for lo, hi in ranges:
        need += _subtrees(lo, hi)
    return need


def ranges_hashes(ranges: Sequence[tuple[int, int]], hashes: Hashes) -> list[bytes]:
    return [subtree_hash(lo, hi, hashes) for lo, hi in ranges]


# --- convenience for synchronous readers (tests, the audit) -----------------------------------------------

Reader = Callable[[Sequence[Node]], Hashes]


def read_root(size: int, read: Reader) -> bytes:
    return root_hash(size, read(root_nodes(size)))


def read_inclusion_proof(index: int, size: int, read: Reader) -> list[bytes]:
    ranges = inclusion_ranges(index, size)
    return ranges_hashes(ranges, read(ranges_nodes(ranges)))


def read_consistency_proof(old: int, new: int, read: Reader) -> list[bytes]:
    ranges = consistency_ranges(old, new)
    return ranges_hashes(ranges, read(ranges_nodes(ranges)))
