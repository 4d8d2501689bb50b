"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.

Pure functions over bytes. The verifiers follow RFC 9162 §2.1.3.2 and §2.1.4.2 and are strict: every hash must
be 32 bytes and a proof must have exactly the length its sizes imply, so padded, truncated or re-ordered proofs
fail. The recursive `*_reference` functions are the RFC's own definitions over a full list of leaves; they are the
yardstick the stored-hash implementation (storedhash.py) is tested against.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


class ProofError(ValueError):
    """A proof, hash or size that does not verify. The message says which check failed."""


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def split_point(n: int) -> int:
    """The largest power of two strictly less than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof_length(index: int, size: int) -> int:
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner + border


def consistency_proof_length(old: int, new: int) -> int:
    if old == new:
        return 0
    fork = ((old - 1) ^ (new - 1)).bit_length()
    border = ((old - 1) >> fork).bit_count()
    shift = (old & -old).bit_length() - 1
    return (0 if old & (old - 1) == 0 else 1) + (fork - shift) + border


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, (bytes, bytearray)) or len(value) != HASH_SIZE:
        raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")


def root_from_inclusion_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that `proof` implies for `leaf` at `index` in a tree of `size` (RFC 9162 §2.1.3.2)."""
    if index < 0 or size <= 0 or index >= size:
        raise ProofError(f"index {index} is outside a tree of size {size}")
    _check_hash(leaf, "leaf hash")
    if len(proof) != inclusion_proof_length(index, size):
        raise ProofError(f"proof has {len(proof)} hashes, expected {inclusion_proof_length(index, size)}")
    fn, sn, r = index, size - 1, leaf
    for position, p in enumerate(proof):
        _check_hash(p, f"proof hash {position}")
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    return r


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> None:
    """Raise ProofError unless `proof` shows `leaf` at `index` in the tree of `size` with `root`."""
    _check_hash(root, "root")
    if root_from_inclusion_proof(index, size, leaf, proof) != root:
        raise ProofError("inclusion proof does not lead to the root")


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """Raise ProofError unless `proof` shows the tree (old, old_root) is a prefix of (new, new_root).

    Edge cases (reference §3): old == 0 is an error (nothing to be consistent with), old > new fails, and equal
    sizes need an empty proof and equal roots.
    """
    if old <= 0 or old > new:
        raise ProofError(f"no consistency proof exists from size {old} to size {new}")
    if old == new:
        if proof:
            raise ProofError("equal sizes need an empty proof")
        if old_root != new_root:
            raise ProofError("equal sizes with different roots")
        return
    _check_hash(old_root, "old root")
    _check_hash(new_root, "new root")
    expected = consistency_proof_length(old, new)
    if len(proof) != expected:
        raise ProofError(f"proof has {len(proof)} hashes, expected {expected}")
    for position, p in enumerate(proof):
        _check_hash(p, f"proof hash {position}")
    path = list(proof)
    if old & (old - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("proof is shorter than the path to the root")
    if fr != old_root:
        raise ProofError("consistency proof does not lead to the old root")
    if sr != new_root:
        raise ProofError("consistency proof does not lead to the new root")


# --- RFC 6962 §2.1 definitions over a full list of leaf hashes (reference implementation for tests) ---


def root_reference(leaves: Sequence[bytes]) -> bytes:
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = split_point(n)
    return node_hash(root_reference(leaves[:k]), root_reference(leaves[k:]))


def inclusion_proof_reference(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    n = len(leaves)
    if n <= 1:
        return []
    k = split_point(n)
    if index < k:
        return inclusion_proof_reference(index, leaves[:k]) + [root_reference(leaves[k:])]
    return inclusion_proof_reference(index - k, leaves[k:]) + [root_reference(leaves[:k])]


def consistency_proof_reference(old: int, leaves: Sequence[bytes]) -> list[bytes]:
    def subproof(m: int, d: Sequence[bytes], complete: bool) -> list[bytes]:
        n = len(d)
        if m == n:
            return [] if complete else [root_reference(d)]
        k = split_point(n)
        if m <= k:
            return subproof(m, d[:k], complete) + [root_reference(d[k:])]
        return subproof(m - k, d[k:], False) + [root_reference(d[:k])]

    return subproof(old, leaves, True)
