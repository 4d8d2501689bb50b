"""RFC 6962 hashing and proofs: the CT reference vectors, transparency-dev's golden JSON, the stored-hash layout,
and property tests over every tree size up to 300."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpstore_appliance.ledger import storedhash as sh
from mcpstore_appliance.ledger.merkle import (
    EMPTY_ROOT,
    ProofError,
    consistency_proof_length,
    consistency_proof_reference,
    inclusion_proof_length,
    inclusion_proof_reference,
    leaf_hash,
    node_hash,
    root_reference,
    verify_consistency,
    verify_inclusion,
)

DATA = Path(__file__).parent / "tlog_testdata"

# google/certificate-transparency merkle_tree_test.cc, leaves numbered from 0.
INPUTS = [bytes.fromhex(h) for h in
          ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]]
LEAF_HASHES = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
L = {i: bytes.fromhex(h) for i, h in enumerate(LEAF_HASHES)}
N = {
    (0, 1): bytes.fromhex("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"),
    (2, 3): bytes.fromhex("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
    (4, 5): bytes.fromhex("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
    (6, 7): bytes.fromhex("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
    (0, 3): bytes.fromhex("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"),
    (4, 7): bytes.fromhex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"),
}


class MemoryTree:
    """The stored-hash layout in a dict: what the SQLite table holds, without SQLite."""

    def __init__(self, leaves: list[bytes] = ()):
        self.appender = sh.Appender(0, {})
        self.leaves: list[bytes] = []
        for leaf in leaves:
            self.add(leaf)

    def add(self, leaf: bytes) -> None:
        self.appender.add(leaf)
        self.leaves.append(leaf)

    def read(self, nodes):
        return {node: self.appender.known[node] for node in nodes}

    def root(self, size: int) -> bytes:
        return sh.read_root(size, self.read)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return sh.read_inclusion_proof(index, size, self.read)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return sh.read_consistency_proof(old, new, self.read)


def synthetic_leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


TREE_300 = MemoryTree(synthetic_leaves(300))
ROOTS_300 = [TREE_300.root(size) for size in range(301)]


# --- RFC 6962 reference vectors ------------------------------------------------------------------------


def test_leaf_hashes_and_roots_of_sizes_1_to_8():
    assert [leaf_hash(d).hex() for d in INPUTS] == LEAF_HASHES
    tree = MemoryTree([leaf_hash(d) for d in INPUTS])
    assert [tree.root(n).hex() for n in range(1, 9)] == ROOTS
    assert [root_reference(list(L.values())[:n]).hex() for n in range(1, 9)] == ROOTS
    assert base64.b64encode(tree.root(8)).decode() == "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    assert tree.root(0).hex() == EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_interior_nodes_of_the_8_leaf_tree():
    tree = MemoryTree([leaf_hash(d) for d in INPUTS])
    for (lo, hi), expected in N.items():
        level = (hi - lo + 1).bit_length() - 1
        assert tree.appender.known[(level, lo >> level)] == expected
        row, offset = sh.row_of((level, lo >> level))
        assert row == hi and dict(tree.appender.rows)[row][offset:offset + 32] == expected
    assert node_hash(N[(0, 3)], N[(4, 7)]).hex() == ROOTS[7]


@pytest.mark.parametrize("index,size,expected", [
    (5, 8, [L[4], N[(6, 7)], N[(0, 3)]]),
    (0, 1, []),
    (0, 8, [L[1], N[(2, 3)], N[(4, 7)]]),
    (2, 3, [N[(0, 1)]]),
    (1, 5, [L[0], N[(2, 3)], L[4]]),
])
def test_reference_inclusion_proofs(index, size, expected):
    tree = MemoryTree(list(L.values()))
    assert tree.inclusion(index, size) == expected
    assert inclusion_proof_reference(index, list(L.values())[:size]) == expected
    verify_inclusion(index, size, L[index], expected, bytes.fromhex(ROOTS[size - 1]))


@pytest.mark.parametrize("old,new,expected", [
    (6, 8, [N[(4, 5)], N[(6, 7)], N[(0, 3)]]),
    (1, 1, []),
    (1, 8, [L[1], N[(2, 3)], N[(4, 7)]]),
    (2, 5, [N[(2, 3)], L[4]]),
])
def test_reference_consistency_proofs(old, new, expected):
    tree = MemoryTree(list(L.values()))
    assert tree.consistency(old, new) == expected
    assert consistency_proof_reference(old, list(L.values())[:new]) == expected
    verify_consistency(old, new, bytes.fromhex(ROOTS[old - 1]), bytes.fromhex(ROOTS[new - 1]), expected)


# --- transparency-dev/merkle golden JSON -----------------------------------------------------------------


def _b64(value) -> bytes:
    return base64.b64decode(value) if value else b""


def _golden(kind: str):
    files = sorted((DATA / kind).rglob("*.json"))
    assert len(files) == 98  # the whole vendored set, so a lost file cannot go unnoticed
    return [pytest.param(json.loads(f.read_text()), id=str(f.relative_to(DATA))) for f in files]


@pytest.mark.parametrize("case", _golden("inclusion"))
def test_golden_inclusion(case):
    args = (case["leafIdx"], case["treeSize"], _b64(case["leafHash"]), [_b64(p) for p in case["proof"] or []],
            _b64(case["root"]))
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("case", _golden("consistency"))
def test_golden_consistency(case):
    args = (case["size1"], case["size2"], _b64(case["root1"]), _b64(case["root2"]),
            [_b64(p) for p in case["proof"] or []])
    if case["wantErr"]:
        with pytest.raises(ProofError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


# --- stored-hash layout ---------------------------------------------------------------------------------


def test_stored_hash_index_order():
    order = [(0, 0), (0, 1), (1, 0), (0, 2), (0, 3), (1, 1), (2, 0), (0, 4)]
    assert [sh.stored_hash_index(level, n) for level, n in order] == list(range(8))
    # Rows in leaf order hold the stored hashes in exactly Go's dense order.
    dense = [node for leaf in range(2000) for node in sh.row_nodes(leaf)]
    assert [sh.stored_hash_index(*node) for node in dense] == list(range(len(dense)))
    assert all(sh.row_of(node)[0] == leaf for leaf in range(2000) for node in sh.row_nodes(leaf))


def test_stored_hash_counts_and_appends():
    assert [sh.stored_hash_count(n) for n in (0, 1, 2, 3, 4, 8, 1024)] == [0, 1, 3, 4, 7, 15, 2047]
    tree = MemoryTree()
    stored = 0
    for n in range(300):
        tree.add(leaf_hash(bytes([n % 256])))
        index, blob = tree.appender.rows[-1]
        assert index == n and len(blob) == 32 * (1 + ((n + 1) & -(n + 1)).bit_length() - 1)  # leaf + ctz(n+1)
        stored += len(blob) // 32
        assert stored == sh.stored_hash_count(n + 1)


def test_proofs_read_a_logarithmic_number_of_hashes():
    size = 1_000_000
    assert len(sh.root_nodes(size)) == bin(size).count("1")
    for index in (0, 1, 123_456, 999_999):
        ranges = sh.inclusion_ranges(index, size)
        assert len(ranges) == inclusion_proof_length(index, size) <= 20
        assert len({sh.row_of(node)[0] for node in sh.ranges_nodes(ranges)}) <= 2 * 20
    for old in (1, 7, 500_000, 999_999):
        ranges = sh.consistency_ranges(old, size)
        assert len(ranges) == consistency_proof_length(old, size)
        assert len({sh.row_of(node)[0] for node in sh.ranges_nodes(ranges)}) <= 2 * 21


def test_storage_proofs_equal_the_rfc_definitions_up_to_64():
    leaves = synthetic_leaves(64)
    for size in range(1, 65):
        assert TREE_300.root(size) == root_reference(leaves[:size])
        for index in range(size):
            assert TREE_300.inclusion(index, size) == inclusion_proof_reference(index, leaves[:size])
        for old in range(1, size + 1):
            assert TREE_300.consistency(old, size) == consistency_proof_reference(old, leaves[:size])


def test_every_proof_verifies_for_every_size_up_to_300():
    leaves = TREE_300.leaves
    assert ROOTS_300[300] == root_reference(leaves)
    for size in range(1, 301):
        root = ROOTS_300[size]
        for index in range(size):
            verify_inclusion(index, size, leaves[index], TREE_300.inclusion(index, size), root)
        for old in range(1, size + 1):
            verify_consistency(old, size, ROOTS_300[old], root, TREE_300.consistency(old, size))


# --- property tests: any tampering fails --------------------------------------------------------------

sizes = st.integers(min_value=1, max_value=300)


@st.composite
def inclusion_cases(draw):
    size = draw(sizes)
    index = draw(st.integers(0, size - 1))
    return index, size, TREE_300.inclusion(index, size)


@st.composite
def consistency_cases(draw):
    new = draw(st.integers(2, 300))
    old = draw(st.integers(1, new - 1))
    return old, new, TREE_300.consistency(old, new)


def _flip(proof: list[bytes], position: int, bit: int) -> list[bytes]:
    tampered = list(proof)
    h = bytearray(tampered[position])
    h[bit // 8] ^= 1 << (bit % 8)
    tampered[position] = bytes(h)
    return tampered


@settings(max_examples=300, deadline=None)
@given(inclusion_cases(), st.data())
def test_inclusion_fails_for_any_flipped_bit(case, data):
    index, size, proof = case
    leaf, root = TREE_300.leaves[index], ROOTS_300[size]
    target = data.draw(st.sampled_from(["proof", "leaf", "root"] if proof else ["leaf", "root"]))
    bit = data.draw(st.integers(0, 255))
    if target == "proof":
        proof = _flip(proof, data.draw(st.integers(0, len(proof) - 1)), bit)
    elif target == "leaf":
        leaf = _flip([leaf], 0, bit)[0]
    else:
        root = _flip([root], 0, bit)[0]
    with pytest.raises(ProofError):
        verify_inclusion(index, size, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(inclusion_cases(), st.data())
def test_inclusion_fails_for_a_wrong_index_or_size(case, data):
    index, size, proof = case
    wrong_index = data.draw(st.integers(0, 400).filter(lambda i: i != index))
    with pytest.raises(ProofError):
        verify_inclusion(wrong_index, size, TREE_300.leaves[index], proof, ROOTS_300[size])
    # A proof for one tree size never verifies against the signed root of another size.
    wrong_size = data.draw(st.integers(1, 300).filter(lambda s: s != size))
    with pytest.raises(ProofError):
        verify_inclusion(index, wrong_size, TREE_300.leaves[index], proof, ROOTS_300[wrong_size])
    # ...nor against the same root claimed for another size, when that changes the path's shape.
    if inclusion_proof_length(index, wrong_size) != len(proof) or index >= wrong_size:
        with pytest.raises(ProofError):
            verify_inclusion(index, wrong_size, TREE_300.leaves[index], proof, ROOTS_300[size])


@settings(max_examples=300, deadline=None)
@given(inclusion_cases(), st.integers(0, 299))
def test_inclusion_fails_for_another_leaf(case, other):
    index, size, proof = case
    if TREE_300.leaves[other] == TREE_300.leaves[index]:
        return
    with pytest.raises(ProofError):
        verify_inclusion(index, size, TREE_300.leaves[other], proof, ROOTS_300[size])


@settings(max_examples=300, deadline=None)
@given(consistency_cases(), st.data())
def test_consistency_fails_for_any_flipped_bit(case, data):
    old, new, proof = case
    old_root, new_root = ROOTS_300[old], ROOTS_300[new]
    target = data.draw(st.sampled_from(["proof", "old_root", "new_root"]))
    bit = data.draw(st.integers(0, 255))
    if target == "proof":
        proof = _flip(proof, data.draw(st.integers(0, len(proof) - 1)), bit)
    elif target == "old_root":
        old_root = _flip([old_root], 0, bit)[0]
    else:
        new_root = _flip([new_root], 0, bit)[0]
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, new_root, proof)


@settings(max_examples=300, deadline=None)
@given(consistency_cases(), st.data())
def test_consistency_fails_for_wrong_sizes(case, data):
    old, new, proof = case
    wrong_old = data.draw(st.integers(0, 300).filter(lambda s: s != old))
    with pytest.raises(ProofError):
        verify_consistency(wrong_old, new, ROOTS_300[wrong_old], ROOTS_300[new], proof)
    wrong_new = data.draw(st.integers(1, 300).filter(lambda s: s != new))
    with pytest.raises(ProofError):
        verify_consistency(old, wrong_new, ROOTS_300[old], ROOTS_300[wrong_new], proof)


@settings(max_examples=200, deadline=None)
@given(consistency_cases(), st.data())
def test_consistency_fails_for_truncated_padded_or_reordered_proofs(case, data):
    old, new, proof = case
    old_root, new_root = ROOTS_300[old], ROOTS_300[new]
    change = data.draw(st.sampled_from(["truncate", "append", "prepend", "swap"]))
    if change == "truncate":
        proof = proof[:-1]
    elif change == "append":
        proof = proof + [new_root]
    elif change == "prepend":
        proof = [old_root] + proof
    else:
        if len(proof) < 2 or proof[0] == proof[-1]:
            proof = proof[:-1]
        else:
            proof = [proof[-1], *proof[1:-1], proof[0]]
    with pytest.raises(ProofError):
        verify_consistency(old, new, old_root, new_root, proof)


def test_hashes_must_be_32_bytes():
    proof = TREE_300.inclusion(3, 10)
    with pytest.raises(ProofError):
        verify_inclusion(3, 10, TREE_300.leaves[3][:31], proof, ROOTS_300[10])
    with pytest.raises(ProofError):
        verify_inclusion(3, 10, TREE_300.leaves[3], [proof[0] + b"\x00", *proof[1:]], ROOTS_300[10])
    with pytest.raises(ProofError):
        verify_consistency(3, 10, ROOTS_300[3], ROOTS_300[10][:16], TREE_300.consistency(3, 10))
    for bad in (-1, 10, 11):
        with pytest.raises(ProofError):
            verify_inclusion(bad, 10, TREE_300.leaves[3], proof, ROOTS_300[10])
