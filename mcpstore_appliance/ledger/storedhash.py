"""The "stored hash" layout of Go's sumdb/tlog: every complete-subtree hash in one dense append-only array.

The hash of the complete subtree at (level, n) -- leaves [n·2^level, (n+1)·2^level) -- lives at
`stored_hash_index(level, n)`. Appending leaf n writes its leaf hash plus one node hash per trailing 1-bit of n,
so the array grows by about two hashes per leaf and never changes afterwards. Any root or proof folds
O(log n) stored hashes.

Reading is split in two phases so the storage can be asynchronous: `*_indexes()` says which stored hashes a
computation needs (one batched query), then the matching builder folds them, given as a mapping index → hash.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence

from .merkle import EMPTY_ROOT, node_hash

Hashes = Mapping[int, bytes]


def stored_hash_index(level: int, n: int) -> int:
    for _ in range(level):
        n = 2 * n + 1
    i = 0
    while n > 0:
        i += n
        n >>= 1
    return i + level


def split_stored_hash_index(index: int) -> tuple[int, int]:
    """Inverse of stored_hash_index: the (level, n) stored at `index`."""
    n = index // 2
    index_n = stored_hash_index(0, n)
    while True:
        following = index_n + 1 + _ctz(n + 1)
        if following > index:
            break
        n += 1
        index_n = following
    level = index - index_n
    return level, n >> level


def stored_hash_count(size: int) -> int:
    """How many stored hashes a tree of `size` leaves has."""
    if size == 0:
        return 0
    count = stored_hash_index(0, size - 1) + 1
    i = size - 1
    while i & 1:
        count += 1
        i >>= 1
    return count


def leaf_range(level: int, n: int) -> tuple[int, int]:
    return n << level, (n + 1) << level


def _ctz(x: int) -> int:
    return (x & -x).bit_length() - 1


def _largest_pow2_at_most(n: int) -> tuple[int, int]:
    level = n.bit_length() - 1
    return 1 << level, level


# --- appending ---------------------------------------------------------------------------------------


def append_parent_indexes(n: int) -> list[int]:
    """Stored hashes (left siblings) needed to append leaf n, nearest first."""
    return [stored_hash_index(level, (n >> level) - 1) for level in range(_ctz(n + 1))]


def hashes_for_append(n: int, leaf: bytes, left_siblings: Sequence[bytes]) -> list[bytes]:
    """The stored hashes leaf n adds, in index order: its leaf hash, then one node per completed subtree."""
    out = [leaf]
    h = leaf
    for sibling in left_siblings:
        h = node_hash(sibling, h)
        out.append(h)
    return out


class Appender:
    """Appends many leaves in memory, reading each needed old hash at most once.

    `frontier` holds the complete subtrees covering [0, size) (see `subtree_indexes(0, size)`); every left
    sibling an append needs is either one of them or a hash produced earlier in the same batch.
    """

    def __init__(self, size: int, frontier: Hashes):
        self.size = size
        self.known: dict[int, bytes] = dict(frontier)
        self.rows: list[tuple[int, bytes]] = []

    def add(self, leaf: bytes) -> int:
        n = self.size
        h = leaf
        index = stored_hash_index(0, n)
        self.rows.append((index, h))
        self.known[index] = h
        for level in range(_ctz(n + 1)):
            h = node_hash(self.known[stored_hash_index(level, (n >> level) - 1)], h)
            index += 1  # the parents of leaf n follow its leaf hash directly in the array
            self.rows.append((index, h))
            self.known[index] = h
        self.size = n + 1
        return n


# --- subtrees and roots ----------------------------------------------------------------------------


def _subtrees(lo: int, hi: int) -> Iterator[tuple[int, int]]:
    """Split [lo, hi) into complete subtrees (level, n), left to right. `lo` must be aligned for the first."""
    while lo < hi:
        k, level = _largest_pow2_at_most(hi - lo)
        while lo & (k - 1):  # keep each piece aligned on its own size
            k >>= 1
            level -= 1
        yield level, lo >> level
        lo += k


def subtree_indexes(lo: int, hi: int) -> list[int]:
    return [stored_hash_index(level, n) for level, n in _subtrees(lo, hi)]


def subtree_hash(lo: int, hi: int, hashes: Hashes) -> bytes:
    """MTH(D[lo:hi]) for a range that is a subtree of the RFC 6962 tree (as proofs use them)."""
    parts = [hashes[i] for i in subtree_indexes(lo, hi)]
    h = parts[-1]
    for left in reversed(parts[:-1]):
        h = node_hash(left, h)
    return h


def root_indexes(size: int) -> list[int]:
    return subtree_indexes(0, size)


def root_hash(size: int, hashes: Hashes) -> bytes:
    return EMPTY_ROOT if size == 0 else subtree_hash(0, size, hashes)


# --- proofs: the same recursions as RFC 6962 §2.1.1 and §2.1.2, over [lo, hi) ranges ---------------------


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


def ranges_indexes(ranges: Sequence[tuple[int, int]]) -> list[int]:
    need: list[int] = []
    for lo, hi in ranges:
        need += subtree_indexes(lo, hi)
    return need


def ranges_hashes(ranges: Sequence[tuple[int, int]], hashes: Hashes) -> list[bytes]:
    return [subtree_hash(lo, hi, hashes) for lo, hi in ranges]


# --- convenience for synchronous readers (tests, the audit, the benchmark) -------------------------------

Reader = Callable[[Sequence[int]], Hashes]


def read_root(size: int, read: Reader) -> bytes:
    return root_hash(size, read(root_indexes(size)))


def read_inclusion_proof(index: int, size: int, read: Reader) -> list[bytes]:
    ranges = inclusion_ranges(index, size)
    return ranges_hashes(ranges, read(ranges_indexes(ranges)))


def read_consistency_proof(old: int, new: int, read: Reader) -> list[bytes]:
    ranges = consistency_ranges(old, new)
    return ranges_hashes(ranges, read(ranges_indexes(ranges)))
