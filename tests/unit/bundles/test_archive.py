"""Safe ZIP reading: every bad-input case is rejected with a clear code and the offending entry's path."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import zipfile

import pytest

from mcpstore_appliance.bundles import BundleLimits, SignatureTrust, inspect_bundle
from mcpstore_appliance.errors import Unprocessable
from tests.data.bundles import (
    NODE_SERVER,
    bundle_bytes,
    central_records,
    entry_field,
    make_zip,
    node_manifest,
    patch_entry,
    valid_node_bundle,
)

MANIFEST = json.dumps(node_manifest())


@pytest.fixture
def inspect(tmp_path):
    counter = iter(range(10_000))

    def run(data: bytes, **limits):
        path = tmp_path / f"b{next(counter)}.mcpb"
        path.write_bytes(data)
        return inspect_bundle(path, BundleLimits(**limits), SignatureTrust())

    return run


@pytest.fixture
def rejected(inspect):
    def run(data: bytes, code: str, **limits) -> Unprocessable:
        with pytest.raises(Unprocessable) as caught:
            inspect(data, **limits)
        assert caught.value.code == code, (caught.value.code, caught.value.message, caught.value.details)
        assert caught.value.details and all({"path", "message"} <= set(d) for d in caught.value.details)
        return caught.value

    return run


def paths(error: Unprocessable) -> list[str]:
    return [d["path"] for d in error.details]


def test_a_valid_bundle_is_published(inspect):
    report = inspect(valid_node_bundle())
    assert report.outcome == "published"
    assert report.file_count == 2
    assert report.metadata.name == "hello-node"


# ------------------------------------------------------------------------------------- not a usable zip


def test_empty_file(rejected):
    rejected(b"", "bundle_empty")


def test_not_a_zip(rejected):
    rejected(b"#!/bin/sh\necho this is not a zip\n" * 10, "bundle_not_zip")


def test_truncated_zip(rejected):
    data = valid_node_bundle()
    rejected(data[: len(data) // 2], "bundle_truncated")


def test_truncated_inside_the_central_directory(rejected):
    data = valid_node_bundle()
    cd = central_records(data)[0]
    # Cut a slice out of the central directory but keep the end record: the directory no longer fits.
    rejected(data[:cd + 10] + data[cd + 30:], "bundle_corrupt")


def test_trailing_junk(rejected):
    rejected(valid_node_bundle() + b"some junk that is not a signature block", "bundle_trailing_data")


def test_trailing_junk_that_looks_like_half_a_signature(rejected):
    rejected(valid_node_bundle() + b"MCPB_SIG_V1\x05\x00\x00\x00abcde", "bundle_trailing_data")


def test_prepended_bytes(rejected):
    rejected(b"MZ-stub" * 10 + valid_node_bundle(), "bundle_corrupt")


def test_corrupt_entry_data_fails_its_crc(rejected):
    data = bytearray(bundle_bytes(node_manifest(), {"big.txt": os.urandom(5000)},
                                  compression=zipfile.ZIP_STORED))
    offset = bytes(data).find(b"big.txt") + 200
    data[offset] ^= 0xFF
    error = rejected(bytes(data), "bundle_corrupt")
    assert paths(error) == ["big.txt"]


def test_header_claiming_fewer_bytes_than_the_data_inflates_to(rejected):
    """Sizes in headers are not trusted: a lying size shows up as a CRC/length failure, not a silent cut."""
    data = bundle_bytes(node_manifest(), {"data.bin": b"A" * 100_000})
    index = [i for i, off in enumerate(central_records(data)) if data[off + 46:off + 54] == b"data.bin"][0]
    error = rejected(patch_entry(data, index, file_size=1000), "bundle_corrupt")
    assert paths(error) == ["data.bin"]


def test_overlapping_entries_are_rejected(rejected):
    data = bundle_bytes(node_manifest(), {"a.txt": "aaaa", "b.txt": "bbbb"})
    first = entry_field(data, 0, "header_offset")
    # Point the last entry at the first entry's bytes (the "overlapping files" zip bomb construction).
    error = rejected(patch_entry(data, 3, local=False, header_offset=first), "bundle_corrupt")
    assert "overlap" in error.message


def test_unsupported_compression_method(rejected):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_LZMA) as zf:
        zf.writestr("manifest.json", MANIFEST)
        zf.writestr("server/index.js", NODE_SERVER)
    rejected(buf.getvalue(), "bundle_unsafe_entry")


# ------------------------------------------------------------------------------------- names and entry kinds


@pytest.mark.parametrize("name", [
    "../evil.js", "server/../../evil.js", "/etc/passwd", "C:/Windows/evil.dll", "c:evil", "server\\index2.js",
    "..\\evil.js", "a//b.js", "./a.js", "a/./b.js", "bad\x01name", "file:stream",
])
def test_unsafe_entry_names(rejected, name):
    data = bundle_bytes(node_manifest(), {name: "x"})
    error = rejected(data, "bundle_unsafe_entry")
    assert paths(error) == [name]


def test_non_ascii_name_without_utf8_flag(rejected):
    data = bundle_bytes(node_manifest(), {"café.txt": "x"})
    index = [i for i, off in enumerate(central_records(data)) if b"caf" in data[off + 46:off + 60]][0]
    flags = entry_field(data, index, "flags")
    error = rejected(patch_entry(data, index, flags=flags & ~0x800), "bundle_unsafe_entry")
    assert "UTF-8" in error.details[0]["message"]


def test_utf8_names_with_the_flag_are_fine(inspect):
    report = inspect(bundle_bytes(node_manifest(), {"docs/café.md": "x"}))
    assert report.outcome == "published"


def test_symlink_entry(rejected):
    data = make_zip({"manifest.json": MANIFEST, "server/index.js": NODE_SERVER, "link": "/etc/passwd"},
                    modes={"link": 0o120777})
    error = rejected(data, "bundle_symlink")
    assert paths(error) == ["link"]


def test_fifo_entry(rejected):
    data = make_zip({"manifest.json": MANIFEST, "server/index.js": NODE_SERVER, "pipe": ""},
                    modes={"pipe": 0o010644})
    rejected(data, "bundle_unsafe_entry")


def test_encrypted_entry(rejected):
    data = bundle_bytes(node_manifest(), {"secret.bin": "x"})
    error = rejected(patch_entry(data, 2, flags=entry_field(data, 2, "flags") | 0x1), "bundle_encrypted")
    assert paths(error) == ["secret.bin"]


def test_exact_duplicate_names(rejected):
    data = make_zip([("manifest.json", MANIFEST), ("server/index.js", NODE_SERVER),
                     ("server/index.js", "evil()")])
    error = rejected(data, "bundle_duplicate_entry")
    assert paths(error) == ["server/index.js"]


def test_duplicate_manifest(rejected):
    data = make_zip([("manifest.json", MANIFEST), ("server/index.js", NODE_SERVER), ("manifest.json", "{}")])
    rejected(data, "bundle_duplicate_entry")


def test_case_folding_duplicates(rejected):
    data = make_zip({"manifest.json": MANIFEST, "server/index.js": NODE_SERVER, "Server/Index.js": "evil()"})
    error = rejected(data, "bundle_duplicate_entry")
    assert "case" in error.details[0]["message"]


def test_unicode_normalization_duplicates(rejected):
    data = make_zip({"manifest.json": MANIFEST, "server/index.js": NODE_SERVER,
                     "caf\u00e9.txt": "nfc", "cafe\u0301.txt": "nfd"})
    rejected(data, "bundle_duplicate_entry")


def test_a_file_that_is_also_a_directory(rejected):
    data = make_zip({"manifest.json": MANIFEST, "server/index.js": NODE_SERVER, "server": "x"})
    rejected(data, "bundle_duplicate_entry")


def test_directory_entries_are_accepted(inspect):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("server/", "")
        zf.writestr("manifest.json", MANIFEST)
        zf.writestr("server/index.js", NODE_SERVER)
    assert inspect(buf.getvalue()).outcome == "published"


# ------------------------------------------------------------------------------------- limits and bombs


def test_high_ratio_entry_is_a_zip_bomb(rejected):
    data = bundle_bytes(node_manifest(), {"bomb.txt": b"\0" * (20 * 1024 * 1024)})
    error = rejected(data, "bundle_compression_ratio")
    assert paths(error) == ["bomb.txt"]


def test_small_repetitive_files_are_not_bombs(inspect):
    report = inspect(bundle_bytes(node_manifest(), {"spaces.txt": b" " * 200_000}))
    assert report.outcome == "published"


def test_total_inflated_size_limit(rejected):
    data = bundle_bytes(node_manifest(), {f"f{i}.bin": os.urandom(300_000) for i in range(4)})
    rejected(data, "bundle_too_large", max_uncompressed_bytes=1_000_000)


def test_entry_count_limit(rejected):
    data = bundle_bytes(node_manifest(), {f"f{i}.txt": "x" for i in range(50)})
    rejected(data, "bundle_too_many_entries", max_entries=20)


def _nested_zip(depth: int, payload: dict[str, bytes]) -> bytes:
    data = make_zip(payload)
    for _ in range(depth - 1):
        data = make_zip({"inner.zip": data}, compression=zipfile.ZIP_STORED)
    return data


def test_nested_archives_beyond_the_nesting_limit(rejected):
    data = bundle_bytes(node_manifest(), {"a.zip": _nested_zip(3, {"x.txt": b"x"})})
    error = rejected(data, "bundle_nesting", max_nesting=2)
    assert error.details[0]["path"] == "a.zip!/inner.zip!/inner.zip"


def test_nested_zip_bomb_ratio_is_caught_inside(rejected):
    inner = make_zip({"zeros.bin": b"\0" * (20 * 1024 * 1024)})
    data = bundle_bytes(node_manifest(), {"lib/payload.zip": inner}, compression=zipfile.ZIP_STORED)
    error = rejected(data, "bundle_compression_ratio")
    assert paths(error) == ["lib/payload.zip!/zeros.bin"]


def test_nested_zip_entries_count_towards_the_entry_limit(rejected):
    inner = make_zip({f"f{i}.txt": b"x" for i in range(30)})
    rejected(bundle_bytes(node_manifest(), {"deps.zip": inner}), "bundle_too_many_entries", max_entries=20)


def test_nested_zip_inflated_bytes_count_towards_the_size_limit(rejected):
    inner = make_zip({f"f{i}.bin": os.urandom(300_000) for i in range(2)}, compression=zipfile.ZIP_STORED)
    outer = bundle_bytes(node_manifest(), {"deps.zip": inner}, compression=zipfile.ZIP_STORED)
    # The outer entry (600 KB) alone fits; with the nested entries counted (1.2 MB) it does not.
    rejected(outer, "bundle_too_large", max_uncompressed_bytes=1_000_000)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress], ids=["gzip", "bzip2", "xz"])
def test_compressed_stream_bombs_inside_the_bundle(rejected, compress):
    bomb = compress(b"\0" * (30 * 1024 * 1024))
    data = bundle_bytes(node_manifest(), {"data/blob.bin": bomb}, compression=zipfile.ZIP_STORED)
    error = rejected(data, "bundle_compression_ratio")
    assert paths(error) == ["data/blob.bin!"]


def test_nested_archives_within_limits_are_flagged_and_scanned(inspect):
    inner = make_zip({"pkg/__init__.py": b"x = 1\n", "pkg/keys.py": b"KEY = 'ghp_" + b"aZ3x9Q" * 6 + b"'\n"})
    report = inspect(bundle_bytes(node_manifest(), {"vendor.whl": inner, "notes.txt.gz": gzip.compress(b"hi")}))
    nested = {f.file: f for f in report.findings if f.check_id == "archive.nested"}
    assert set(nested) == {"vendor.whl", "notes.txt.gz"}
    secret = [f for f in report.findings if f.check_id == "secrets.github_token"]
    assert [f.file for f in secret] == ["vendor.whl!/pkg/keys.py"]


def test_a_corrupt_nested_archive_is_a_finding_not_a_rejection(inspect):
    broken = make_zip({"a.txt": b"hello"})[:-30]
    report = inspect(bundle_bytes(node_manifest(), {"fixtures/broken.zip": broken}))
    assert [f.check_id for f in report.findings if f.file == "fixtures/broken.zip"] == ["archive.nested_unreadable"]
    assert report.outcome == "published"


def test_nothing_is_extracted_outside_the_private_temp_folder(inspect, tmp_path, monkeypatch):
    """Even with a nested zip (the only thing ever written to disk), the work folder is removed afterwards."""
    work = tmp_path / "tmp"
    work.mkdir()
    monkeypatch.setenv("TMPDIR", str(work))
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", None)
    inner = make_zip({"big.bin": os.urandom(9 * 1024 * 1024)}, compression=zipfile.ZIP_STORED)  # > spool RAM
    data = bundle_bytes(node_manifest(), {"deps/inner.zip": inner},
                        compression=zipfile.ZIP_STORED)
    report = inspect(data)
    assert any(f.check_id == "archive.nested" for f in report.findings)
    assert list(work.iterdir()) == []


# ------------------------------------------------------------------------- several walker threads


def _large_bundle(extra: dict[str, bytes | str]) -> bytes:
    """Over PARALLEL_MIN_BYTES compressed, so the walk is split over threads; `extra` goes at the end."""
    files: dict[str, bytes | str] = {f"server/assets/a{i}.bin": os.urandom(3 * 1024 * 1024) for i in range(4)}
    return bundle_bytes(node_manifest(), {**files, **extra})


@pytest.fixture
def walk_threads(monkeypatch):
    from mcpstore_appliance.bundles import inspector

    def use(count: int) -> None:
        monkeypatch.setattr(inspector, "WALK_THREADS", count)
    return use


def test_split_runs_are_contiguous_balanced_and_complete():
    from mcpstore_appliance.bundles.archive_walk import PARALLEL_MIN_BYTES, split_runs

    infos = []
    for index, size in enumerate([5, 1, 1, 1, 4, 4, 2, 2]):
        info = zipfile.ZipInfo(f"f{index}")
        info.compress_size = size * PARALLEL_MIN_BYTES // 4
        infos.append(info)
    runs = split_runs(infos, 2)
    assert [i for run in runs for i in run] == infos
    largest = max(i.compress_size for i in infos)
    half = sum(i.compress_size for i in infos) / 2
    assert len(runs) == 2 and all(abs(sum(i.compress_size for i in run) - half) <= largest for run in runs)
    assert split_runs(infos[:1], 2) == [infos[:1]]  # small: one run
    assert split_runs([], 3) == []


def test_parallel_walk_reports_what_one_thread_reports(inspect, walk_threads):
    secret = "gh" + "p_" + "aZ3x9QmK7pLw2RtY8vNc4BdF6hJs1GkE5uIo"
    data = _large_bundle({"server/late.js": f"const token = '{secret}';\n",
                          "server/data.json.gz": gzip.compress(b'{"ok": true}' * 1000)})
    reports = []
    for threads in (1, 2, 4):
        walk_threads(threads)
        reports.append(inspect(data))
    one, *others = reports
    assert one.outcome == "rejected"  # a GitHub token in the publisher's own file is critical
    assert {f.check_id for f in one.findings} >= {"secrets.github_token", "archive.nested"}
    for report in others:
        assert (report.outcome, report.file_count, report.uncompressed_bytes) == \
            (one.outcome, one.file_count, one.uncompressed_bytes)
        assert sorted(map(repr, report.findings)) == sorted(map(repr, one.findings))


def test_parallel_walk_rejects_a_bomb_in_a_later_run(rejected, walk_threads):
    walk_threads(2)
    error = rejected(_large_bundle({"bomb.txt": b"\0" * (20 * 1024 * 1024)}), "bundle_compression_ratio")
    assert paths(error) == ["bomb.txt"]


def test_parallel_walk_reports_the_first_problem_in_archive_order(rejected, walk_threads):
    """A corrupt entry in the first run and a bomb in the last: whichever thread fails first, the answer is the
    one a front-to-back walk gives."""
    walk_threads(2)
    data = bytearray(_large_bundle({"bomb.txt": b"\0" * (20 * 1024 * 1024)}))
    offset = bytes(data).find(b"server/assets/a0.bin") + 64
    data[offset] ^= 0xFF  # inside the first entry's data: it fails its CRC
    error = rejected(bytes(data), "bundle_corrupt")
    assert paths(error) == ["server/assets/a0.bin"]
