"""Mangled bundles never crash the inspector: every outcome is a report or errors.Unprocessable (a 4xx)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mcpstore_appliance.bundles import BundleLimits, BundleReport, SignatureTrust, inspect_bundle
from mcpstore_appliance.errors import Unprocessable
from tests.data.bundles import bundle_bytes, make_identity, make_png, node_manifest, sign_bytes

MANIFEST = node_manifest(icon="icon.png", tools=[{"name": "t"}], user_config={
    "k": {"type": "string", "title": "K", "description": "d", "default": "x"}})
EXTRA = {"icon.png": make_png(8, 8), "package.json": json.dumps({"name": "x", "dependencies": {}}),
         "nested.zip": bundle_bytes(node_manifest()), "server/lib.py": "import os\n"}
UNSIGNED = bundle_bytes(MANIFEST, EXTRA)
SIGNED = sign_bytes(UNSIGNED, make_identity("Fuzz Publisher"))
LIMITS = BundleLimits(max_uncompressed_bytes=8 * 1024 * 1024)


def judge(data: bytes) -> BundleReport | Unprocessable:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "b.mcpb"
        path.write_bytes(data)
        try:
            return inspect_bundle(path, LIMITS, SignatureTrust())
        except Unprocessable as exc:
            assert exc.code and exc.message and isinstance(exc.details, list)
            return exc


edits = st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]),
                           st.floats(min_value=0, max_value=1), st.integers(min_value=0, max_value=255)),
                 min_size=1, max_size=4)


def mangle(data: bytes, steps) -> bytes:
    out = bytearray(data)
    for kind, where, value in steps:
        if not out:
            break
        pos = min(int(where * len(out)), len(out) - 1)
        if kind == "flip":
            out[pos] ^= 1 << (value % 8)
        elif kind == "set":
            out[pos] = value
        elif kind == "cut":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = bytes([value]) * (value % 7 + 1)
        else:
            del out[pos:pos + value % 50 + 1]
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits, st.booleans())
@example([("flip", 0.54296875, 0)], True)  # found in CI: the certificate's version byte (InvalidVersion)
def test_mangled_bundles_give_a_report_or_a_clean_rejection(steps, signed):
    original = SIGNED if signed else UNSIGNED
    result = judge(mangle(original, steps))
    if signed and isinstance(result, BundleReport):
        # Whatever survived still verifies, so it must be byte-identical in the signed region.
        assert result.signature.status in {"self-signed", "unsigned"}


def test_the_unmangled_inputs_are_fine():
    assert judge(UNSIGNED).outcome == "published"
    assert judge(SIGNED).signature.status == "self-signed"
