"""The ledger audit's C module (`_merkle_native`) against hashlib and the pure-Python audit code.

The test suite requires the module to be built (`pip install -e '.[test]'` builds it where a C compiler and
OpenSSL's headers exist; .ci/run installs both): an install that silently fell back to pure Python fails here at
import instead of passing with the slow path.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mcpstore_appliance.ledger import _merkle_native as native
from mcpstore_appliance.ledger import integrity_chunks as chunks
from mcpstore_appliance.ledger.integrity import IntegrityCheck
from mcpstore_appliance.ledger.merkle import leaf_hash, root_reference
from mcpstore_appliance.ledger.storedhash import Appender

SEP = chunks.ROW_SEP


def joined(leaves: list[bytes]) -> bytes:
    return b"\n\x00".join(leaves)  # as SQLite's group_concat(data, X'0A00') joins them


def appender_rows(leaf_hashes: list[bytes], sep: bytes) -> bytes:
    """The stored rows of leaves 0..n-1 as the ledger writes them (storedhash.Appender), joined by sep."""
    appender = Appender(0, {})
    for h in leaf_hashes:
        appender.add(h)
    return sep.join(blob for _, blob in appender.rows)


def test_the_audit_uses_it_by_default():
    assert chunks.native_available()
    assert IntegrityCheck("unused.sqlite3").native
    assert not IntegrityCheck("unused.sqlite3", native=False).native


def test_asking_for_it_without_it_is_an_error(monkeypatch):
    monkeypatch.setattr(chunks, "_merkle_native", None)
    assert not IntegrityCheck("unused.sqlite3").native
    with pytest.raises(RuntimeError, match="not built"):
        IntegrityCheck("unused.sqlite3", native=True)


def test_leaf_hashes_are_rfc6962_leaf_hashes():
    leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b'{"a":1}', bytes(range(11, 256)) * 3]
    assert native.leaf_hashes(joined(leaves), len(leaves)) == b"".join(map(leaf_hash, leaves))
    assert native.leaf_hashes(b"", 1) == hashlib.sha256(b"\x00").digest()
    # any contiguous buffer is read
    assert native.leaf_hashes(bytearray(b"ab\n\x00cd"), 2) == leaf_hash(b"ab") + leaf_hash(b"cd")
    assert native.leaf_hashes(memoryview(b"xab"), 1) == leaf_hash(b"xab")


def test_leaf_hashes_answer_none_unless_the_count_matches():
    data = joined([b"one", b"two", b"three"])
    assert native.leaf_hashes(data, 2) is None
    assert native.leaf_hashes(data, 4) is None
    assert native.leaf_hashes(joined([b"a\nb", b"c"]), 2) is None  # a leaf holding a newline
    assert native.leaf_hashes(b"", 2) is None
    assert native.leaf_hashes(b"\n", 2) == leaf_hash(b"") + hashlib.sha256(b"").digest()  # as bytes.split
    assert native.leaf_hashes(data, len(data) + 2) is None  # more pieces than the bytes can hold
    assert native.leaf_hashes(data, 2**62) is None  # their hashes would not fit in memory either


@pytest.mark.parametrize("count, error", [(0, ValueError), (-1, ValueError), (2**63, OverflowError)])
def test_leaf_hashes_reject_impossible_counts(count, error):
    with pytest.raises(error):
        native.leaf_hashes(b"a\n\x00b", count)


@pytest.mark.parametrize("args", [("text", 1), (None, 1), (b"a", "1"), (b"a",), (b"a", 1, 2)])
def test_leaf_hashes_reject_wrong_arguments(args):
    with pytest.raises(TypeError):
        native.leaf_hashes(*args)


def test_stored_rows_match_the_audits_pure_python_layout_and_the_ct_root():
    inputs = [bytes.fromhex(h) for h in ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                          "606162636465666768696a6b6c6d6e6f"]]
    hashes = b"".join(map(leaf_hash, inputs))
    rows = native.stored_rows(hashes, SEP)
    assert rows == chunks._expected_rows(3, chunks._levels(chunks._leaf_hashes(inputs)))
    assert rows[-32:] == root_reference(list(map(leaf_hash, inputs)))
    assert rows[-32:].hex() == "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"  # RFC 6962 CT


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 64, 100, 1023])
def test_stored_rows_of_any_number_of_leaves_are_what_the_appender_stores(n):
    hashes = [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]
    for sep in (SEP, b"", b"|"):
        assert native.stored_rows(b"".join(hashes), sep) == appender_rows(hashes, sep)


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64 + 5])
def test_stored_rows_reject_lengths_that_are_not_whole_hashes(length):
    with pytest.raises(ValueError, match="multiple of 32"):
        native.stored_rows(bytes(length), SEP)


@pytest.mark.parametrize("args", [("x" * 32, SEP), (bytes(32), None), (bytes(32),), (bytes(32), SEP, 1)])
def test_stored_rows_reject_wrong_arguments(args):
    with pytest.raises(TypeError):
        native.stored_rows(*args)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=40), st.integers(-2, 2))
def test_leaf_hashes_equal_the_pure_python_ones(leaves, off_by):
    """Leaves may hold newlines and NUL bytes; the count may be wrong: both paths agree on every answer."""
    data, count = joined(leaves), max(1, len(leaves) + off_by)
    pure = chunks._py_leaf_hashes(data, count)
    assert native.leaf_hashes(data, count) == (None if pure is None else b"".join(pure))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200), st.integers(1, 12))
def test_leaf_hashes_equal_the_pure_python_ones_on_any_bytes(data, count):
    pure = chunks._py_leaf_hashes(data, count)
    assert native.leaf_hashes(data, count) == (None if pure is None else b"".join(pure))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 8), st.binary(min_size=1, max_size=8))
def test_stored_rows_equal_the_pure_python_chunk(k, seed):
    """A chunk of 2^k random leaf hashes: the same rows and root as the pure-Python levels give."""
    hashes = [hashlib.sha256(seed + i.to_bytes(2, "big")).digest() for i in range(1 << k)]
    assert chunks._native_chunk_rows(k, [b"".join(hashes)]) == chunks._py_chunk_rows(k, [hashes])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300), st.binary(max_size=20))
def test_stored_rows_equal_the_appenders_for_any_size(hashes, sep):
    assert native.stored_rows(b"".join(hashes), sep) == appender_rows(hashes, sep)
