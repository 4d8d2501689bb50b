"""Pure parts of the publish pipeline: receiving an upload under a cap, options, the fail-closed decision."""

from __future__ import annotations

import hashlib
import os
import time

import pytest

from mcpstore_appliance.bundles.model import (
    Author,
    BundleReport,
    Finding,
    PackageMetadata,
    SignatureInfo,
)
from mcpstore_appliance.catalog.pricing import Pricing
from mcpstore_appliance.catalog.publish_options import PublishOptions
from mcpstore_appliance.catalog.publish_result import check_name_and_version, decide, rejection
from mcpstore_appliance import tempfiles
from mcpstore_appliance.catalog.uploads import BLOCK_SIZE, spooled, sweep_stale
from mcpstore_appliance.errors import InvalidInput, TooLarge, Unprocessable


class Source:
    """An async chunk stream that counts how much of it was consumed."""

    def __init__(self, chunks: list[bytes], fail_after: int | None = None):
        self.chunks = chunks
        self.consumed = 0
        self.fail_after = fail_after

    async def __aiter__(self):
        for index, chunk in enumerate(self.chunks):
            if self.fail_after is not None and index == self.fail_after:
                raise ConnectionResetError("client went away")
            self.consumed += 1
            yield chunk


@pytest.mark.parametrize("sizes", [
    [300_000] * 10,  # crosses several blocks; a large tail goes to the worker threads
    [BLOCK_SIZE, 100],  # one whole block, then a small tail written inline
    [5_000],  # only a small tail
], ids=["blocks-and-large-tail", "block-and-small-tail", "small"])
async def test_spooled_hashes_and_always_removes_the_file(tmp_path, sizes):
    chunks = [os.urandom(size) for size in sizes]
    data = b"".join(chunks)
    async with spooled(Source(chunks), tmp_path, max_bytes=len(data)) as upload:
        assert upload.sha256 == hashlib.sha256(data).hexdigest() and upload.size == len(data)
        assert upload.path.read_bytes() == data
        assert oct(upload.path.stat().st_mode & 0o777) == "0o600"
    assert list(tmp_path.iterdir()) == []


async def test_cap_stops_reading_at_the_chunk_that_crosses_it(tmp_path):
    source = Source([b"x" * 1000] * 100)
    with pytest.raises(TooLarge) as info:
        async with spooled(source, tmp_path, max_bytes=4500):
            pass
    assert info.value.code == "upload_too_large"
    assert source.consumed == 5  # 5000 bytes: the fifth chunk crossed 4500; nothing after it was read
    assert list(tmp_path.iterdir()) == []


async def test_declared_size_over_the_cap_reads_nothing(tmp_path):
    source = Source([b"x"])
    with pytest.raises(TooLarge):
        async with spooled(source, tmp_path, max_bytes=10, declared_size=11):
            pass
    assert source.consumed == 0 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("chunks,declared", [([], None), ([b""], None), ([], 0)])
async def test_empty_body(tmp_path, chunks, declared):
    with pytest.raises(InvalidInput) as info:
        async with spooled(Source(chunks), tmp_path, max_bytes=10, declared_size=declared):
            pass
    assert info.value.code == "empty_body" and list(tmp_path.iterdir()) == []


async def test_broken_stream_and_failing_consumer_remove_the_file(tmp_path):
    with pytest.raises(ConnectionResetError):
        async with spooled(Source([b"a" * BLOCK_SIZE] * 4, fail_after=3), tmp_path, max_bytes=10**9):
            pass
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        async with spooled(Source([b"abc"]), tmp_path, max_bytes=10):
            raise RuntimeError("inspection failed")
    assert list(tmp_path.iterdir()) == []


def test_sweep_removes_only_old_upload_files(tmp_path):
    old, young, other = tmp_path / "upload-a.mcpb", tmp_path / "upload-b.mcpb", tmp_path / "keep.txt"
    for path in (old, young, other):
        path.write_bytes(b"x")
    past = time.time() - 7200
    os.utime(old, (past, past))
    os.utime(other, (past, past))
    assert sweep_stale(tmp_path, 3600) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt", "upload-b.mcpb"]


def test_sweep_leaves_a_held_upload_file_however_old(tmp_path):
    path = tmp_path / "upload-slow.mcpb"
    path.write_bytes(b"x")
    os.utime(path, (0, 0))
    held = tempfiles.hold(path)
    try:
        assert sweep_stale(tmp_path, 0) == 0 and path.exists()
    finally:
        tempfiles.release(held)
    assert sweep_stale(tmp_path, 0) == 1 and not path.exists()  # released, as by a process that died


# --- options -------------------------------------------------------------------------------------------------

def test_options_absent_mean_keep():
    options = PublishOptions.parse({})
    assert options == PublishOptions(None, None, None, None, None)
    assert PublishOptions.parse({"namespace": "", "pricing": ""}) == options


def test_options_parsed():
    options = PublishOptions.parse({"namespace": "acme", "pricing": "per_call", "amount": "0.10", "currency": "eur",
                                    "visibility": "org", "category": "developer-tools", "changelog": "fixes"})
    assert options.pricing == Pricing("per_call", 10, "eur", "hobbyist", None)
    assert (options.namespace, options.visibility, options.category, options.changelog) == (
        "acme", "org", "developer-tools", "fixes")


@pytest.mark.parametrize("raw,code", [
    ({"prcing": "free"}, "unknown_option"),
    ({"visibility": "everyone"}, "invalid_visibility"),
    ({"category": "a" * 41}, "invalid_category"),
    ({"category": "-x"}, "invalid_category"),
    ({"changelog": "x" * 20_001}, "option_too_long"),
    ({"namespace": "x" * 3000}, "option_too_long"),
    ({"amount": "1"}, "invalid_pricing"),  # an amount alone means pricing free with an amount: refused
])
def test_bad_options(raw, code):
    with pytest.raises(InvalidInput) as info:
        PublishOptions.parse(raw)
    assert info.value.code == code


# --- the decision ------------------------------------------------------------------------------------------

def report(outcome="published", status="unsigned", findings=(), scanner_errors=()) -> BundleReport:
    meta = PackageMetadata(name="hello", version="1.0.0", display_name="Hello", description="d",
                           long_description=None, author=Author("A"), manifest_version="0.2", server_type="node",
                           entry_point="server/index.js")
    return BundleReport(manifest={}, metadata=meta, signature=SignatureInfo(status), findings=tuple(findings),
                        outcome=outcome, unsigned_sha256="0" * 64, scanner_errors=tuple(scanner_errors))


HIGH = Finding("secrets.env_file", "high", ".env", "environment file")


@pytest.mark.parametrize("kwargs,require_signature,expected", [
    ({}, False, "published"),
    ({"status": "self-signed"}, False, "published"),
    ({"outcome": "quarantined", "findings": [HIGH]}, False, "quarantined"),
    ({"outcome": "rejected"}, False, "rejected"),
    # Fail closed even if the inspector's own verdict were wrong:
    ({"scanner_errors": ["secrets"]}, False, "quarantined"),
    ({"outcome": "passed"}, False, "quarantined"),
    ({"status": "invalid"}, False, "rejected"),
    ({"status": "unknown"}, False, "rejected"),
    ({}, True, "rejected"),
    ({"status": "signed"}, True, "published"),
])
def test_decide(kwargs, require_signature, expected):
    assert decide(report(**kwargs), require_signature) == expected


def test_rejection_lists_findings():
    critical = Finding("secrets.private_key", "critical", "server/key.pem", "private key")
    error = rejection(report("rejected", findings=[critical, HIGH]))
    assert isinstance(error, Unprocessable) and error.code == "bundle_rejected"
    assert error.details[0] == {"path": "server/key.pem", "check_id": "secrets.private_key",
                                "severity": "critical", "message": "private key"}
    assert "private key" in error.message
    assert rejection(report("rejected")).details  # never an empty explanation


@pytest.mark.parametrize("name,version", [("Hello", "1.0.0"), ("hello world", "1.0.0"), ("../x", "1.0.0"),
                                          ("hello", "1.0"), ("hello", "01.0.0"), ("a" * 65, "1.0.0")])
def test_catalog_keys_are_rechecked(name, version):
    with pytest.raises(Unprocessable) as info:
        check_name_and_version(name, version)
    assert info.value.code == "invalid_manifest"


def test_catalog_keys_accepted():
    assert str(check_name_and_version("my-tool.v2_x", "1.2.3-rc.1+build.5")) == "1.2.3-rc.1+build.5"
