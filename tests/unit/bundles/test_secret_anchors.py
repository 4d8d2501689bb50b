"""The fast anchor search must find exactly what a full overlapping Aho-Corasick search finds.

`anchor_hits` runs a leftmost-first search (SIMD prefilter, several GB/s) and re-examines only the bytes
around each hit; anchors that overlap one another or share a start ("sk-" and "sk-ant-", "AKIAKIA…") are the
cases a plain non-overlapping search would miss. The reference here is the slow overlapping search over the
whole window.
"""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from mcpstore_appliance.bundles.secret_rules import _ANCHORS, _OVERLAPPING, anchor_hits

FRAGMENTS = [anchor[:cut] for anchor in _ANCHORS for cut in range(1, len(anchor) + 1)]


def reference(window: bytes) -> list[tuple[int, int]]:
    return sorted(((index, pos) for index, pos, _ in _OVERLAPPING.find_matches_as_indexes(window, overlapping=True)),
                  key=lambda hit: (hit[1], hit[0]))


def test_overlapping_and_shared_start_anchors_are_all_found():
    window = b"xAKIAKIA sk-ant-api03 xoxb-xoxp-sk-sk_live_ -----BEGIN -----BEGIN AIzaAIza"
    hits = anchor_hits(window)
    assert hits == reference(window)
    found = {(_ANCHORS[index], pos) for index, pos in hits}
    assert (b"AKIA", 1) in found and (b"AKIA", 4) in found  # the second starts inside the first
    assert (b"sk-", 9) in found and (b"sk-ant-", 9) in found  # one start, two anchors


def test_random_binary_and_empty_windows():
    for window in (b"", os.urandom(1 << 16), bytes(1000)):
        assert anchor_hits(window) == reference(window)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=3)), max_size=40))
def test_matches_the_full_overlapping_search(pieces):
    window = b"".join(pieces)
    assert anchor_hits(window) == reference(window)
