"""The local disk blob store: content addressing, durability, ranges, streaming and bad input."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest

from mcpstore_appliance.blobs import BlobStore, LocalBlobStore, S3BlobStore, StoredBlob, open_blob_store
from mcpstore_appliance.config import ConfigError, load_settings
from mcpstore_appliance.errors import InvalidInput, NotFound


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(data: bytes, size: int = 65536):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store, digest, start=0, end=None) -> bytes:
    return b"".join([chunk async for chunk in store.open_range(digest, start, end)])


@pytest.fixture
def store(tmp_path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "blobs")


def temp_files(store: LocalBlobStore) -> list[str]:
    return sorted(os.listdir(store.tmp_dir))


async def test_put_stream_stores_bytes_at_their_content_address(store):
    data = os.urandom(300_000)
    blob = await store.put_stream(stream(data))
    assert blob == StoredBlob(sha(data), len(data))
    path = store.root / blob.sha256[:2] / blob.sha256[2:4] / blob.sha256
    assert path.read_bytes() == data
    assert path.stat().st_mode & 0o777 == 0o600  # private org bundles live here too
    assert await read_all(store, blob.sha256) == data
    assert await store.size(blob.sha256) == len(data) and await store.exists(blob.sha256)
    assert temp_files(store) == []
    assert isinstance(store, BlobStore)


async def test_empty_blob(store):
    blob = await store.put_stream(stream(b""))
    assert blob == StoredBlob(sha(b""), 0)
    assert await read_all(store, blob.sha256) == b""
    assert await read_all(store, blob.sha256, 0, 10) == b""


async def test_second_put_of_same_bytes_is_a_no_op(store, tmp_path):
    data = b"same bytes" * 1000
    first = await store.put_stream(stream(data))
    path = store.path_for(first.sha256)
    before = path.stat()
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns - 10**9))  # make any rewrite visible
    marked = path.stat()
    again = await store.put_stream(stream(data, 7))
    source = tmp_path / "same.bin"
    source.write_bytes(data)
    from_file = await store.put_file(source)
    assert first == again == from_file
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (marked.st_ino, marked.st_mtime_ns)
    assert [d async for d in store.list_digests()] == [first.sha256]
    assert temp_files(store) == []


async def test_concurrent_puts_of_the_same_bytes(store, tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 5)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    results = await asyncio.gather(
        *[store.put_stream(stream(data, 4096 * (i + 1))) for i in range(8)],
        *[store.put_file(source, sha(data)) for _ in range(4)],
    )
    assert set(results) == {StoredBlob(sha(data), len(data))}
    assert await read_all(store, sha(data)) == data
    assert [d async for d in store.list_digests()] == [sha(data)]
    assert temp_files(store) == []


async def test_put_file_on_the_same_file_system_links_and_verifies(store, tmp_path):
    data = os.urandom(200_000)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    blob = await store.put_file(source, sha(data))
    assert blob == StoredBlob(sha(data), len(data))
    stored = store.path_for(blob.sha256)
    assert stored.stat().st_ino == source.stat().st_ino  # hard link: no copy of the bytes
    source.unlink()  # the caller removes its temp file; the blob stays
    assert await read_all(store, blob.sha256) == data


async def test_put_file_across_file_systems_copies(tmp_path):
    shm = Path("/dev/shm")
    store = LocalBlobStore(tmp_path / "blobs")
    assert shm.stat().st_dev != store.root.stat().st_dev, "this test needs /dev/shm on another file system"
    source = shm / f"mcpstore-test-{os.getpid()}-{time.monotonic_ns()}"
    data = os.urandom(100_000)
    source.write_bytes(data)
    try:
        blob = await store.put_file(source)
        assert blob == StoredBlob(sha(data), len(data))
        assert source.stat().st_nlink == 1
        assert store.path_for(blob.sha256).read_bytes() == data
    finally:
        source.unlink()


async def test_put_file_with_a_wrong_digest_stores_nothing(store, tmp_path):
    source = tmp_path / "upload.bin"
    source.write_bytes(b"real content")
    claimed = sha(b"other content")
    with pytest.raises(InvalidInput) as info:
        await store.put_file(source, claimed)
    assert info.value.code == "digest_mismatch"
    assert not await store.exists(claimed)
    assert not await store.exists(sha(b"real content"))
    assert [d async for d in store.list_digests()] == []
    assert temp_files(store) == []
    assert source.read_bytes() == b"real content" and source.stat().st_nlink == 1


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
async def test_ranges_match_slicing_at_every_edge(tmp_path, chunk_size):
    store = LocalBlobStore(tmp_path / "blobs", chunk_size=chunk_size)
    data = bytes(range(10))
    digest = (await store.put_stream(stream(data))).sha256
    for start in range(0, 11):
        for end in [None, *range(start, 13)]:
            assert await read_all(store, digest, start, end) == data[start:end], (start, end)


@pytest.mark.parametrize("start,end", [(-1, None), (0, -1), (5, 4), (11, None), (11, 20)])
async def test_bad_ranges_are_invalid_input(store, start, end):
    digest = (await store.put_stream(stream(bytes(range(10))))).sha256
    with pytest.raises(InvalidInput):
        await read_all(store, digest, start, end)


async def test_absent_blob(store):
    digest = sha(b"never stored")
    with pytest.raises(NotFound):
        await read_all(store, digest)
    assert await store.size(digest) is None
    assert await store.exists(digest) is False
    assert await store.delete(digest) is False


async def test_delete(store):
    blob = await store.put_stream(stream(b"to be deleted"))
    assert await store.delete(blob.sha256) is True
    assert await store.exists(blob.sha256) is False
    assert await store.delete(blob.sha256) is False
    with pytest.raises(NotFound):
        await read_all(store, blob.sha256)


BAD_DIGESTS = [
    "../../../etc/passwd",
    "/etc/passwd",
    "ab/../" + "a" * 58,
    "A" * 64,  # uppercase is not the canonical form
    "a" * 63,
    "a" * 65,
    "a" * 64 + "\n",
    "g" * 64,
    "",
    None,
    64,
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
async def test_digest_arguments_must_be_64_lowercase_hex(store, tmp_path, digest):
    source = tmp_path / "upload.bin"
    source.write_bytes(b"x")
    calls = [
        lambda: read_all(store, digest),
        lambda: store.size(digest),
        lambda: store.exists(digest),
        lambda: store.delete(digest),
        lambda: store.presigned_url(digest, "x.mcpb"),
    ]
    if digest is not None:  # put_file(path, None) means "hash it for me"
        calls.append(lambda: store.put_file(source, digest))
    for call in calls:
        with pytest.raises(InvalidInput) as info:
            await call()
        assert info.value.code == "invalid_digest"
    assert sorted(p.name for p in store.root.iterdir()) == ["tmp"]  # nothing written anywhere


async def test_a_failing_stream_leaves_no_blob_and_no_temp_file(store):
    async def broken():
        yield b"first half of an upload"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(broken())
    assert [d async for d in store.list_digests()] == []
    assert temp_files(store) == []


async def test_a_cancelled_put_leaves_no_blob_and_no_temp_file(store):
    started = asyncio.Event()

    async def stalled():
        yield b"some bytes"
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.put_stream(stalled()))
    await started.wait()
    assert len(temp_files(store)) == 1  # the write was really in progress
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert [d async for d in store.list_digests()] == []
    assert temp_files(store) == []


CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from mcpstore_appliance.blobs import LocalBlobStore

    async def endless():
        for _ in range(4):
            yield b"x" * (1024 * 1024)
        Path(sys.argv[2]).write_text("written")
        await asyncio.sleep(3600)
        yield b"never"

    asyncio.run(LocalBlobStore(Path(sys.argv[1])).put_stream(endless()))
    """
)


async def test_a_process_killed_mid_put_leaves_no_blob(tmp_path):
    root, marker = tmp_path / "blobs", tmp_path / "marker"
    child = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(root), str(marker)])
    try:
        for _ in range(600):
            if marker.exists() or child.poll() is not None:
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), "the writer never got going"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = LocalBlobStore(root)
    leftovers = temp_files(store)
    assert len(leftovers) == 1 and (store.tmp_dir / leftovers[0]).stat().st_size > 0
    assert [d async for d in store.list_digests()] == []
    # The debris does not get in the way of storing, reading or listing.
    blob = await store.put_stream(stream(b"after the crash"))
    assert await read_all(store, blob.sha256) == b"after the crash"
    assert [d async for d in store.list_digests()] == [blob.sha256]
    # A sweep removes it once it is old enough to belong to no live write.
    assert store.sweep_temp(max_age_seconds=3600) == 0
    old = time.time() - 2 * 3600
    os.utime(store.tmp_dir / leftovers[0], (old, old))
    assert store.sweep_temp(max_age_seconds=3600) == 1
    assert temp_files(store) == []


async def test_list_digests_ignores_foreign_files(store):
    digests = sorted([(await store.put_stream(stream(bytes([i]) * 100))).sha256 for i in range(5)])
    (store.root / "README").write_text("not a blob")
    (store.root / digests[0][:2] / digests[0][2:4] / "notes.txt").write_text("not a blob")
    (store.root / "zz").mkdir()
    (store.tmp_dir / ("f" * 64)).write_bytes(b"a temp file with a digest-like name")
    assert sorted([d async for d in store.list_digests()]) == digests


async def test_reads_and_writes_stream_in_bounded_memory(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs", chunk_size=256 * 1024)
    total = 24 * 1024 * 1024

    async def generated():
        for i in range(total // 65536):
            yield bytes([i % 256]) * 65536

    tracemalloc.start()
    try:
        blob = await store.put_stream(generated())
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        sizes = [len(chunk) async for chunk in store.open_range(blob.sha256)]
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert blob.size == total and sum(sizes) == total
    assert max(sizes) <= 256 * 1024
    assert write_peak < 4 * 1024 * 1024 and read_peak < 4 * 1024 * 1024


async def test_ping_reports_an_unwritable_store(store):
    assert await store.ping() is True
    store.tmp_dir.rmdir()
    store.tmp_dir.write_text("a file where the temp folder should be")
    assert await store.ping() is False


async def test_presigned_url_is_none_for_local_blobs(store):
    blob = await store.put_stream(stream(b"x"))
    assert await store.presigned_url(blob.sha256, "x.mcpb") is None


async def test_open_blob_store_follows_settings(tmp_path):
    settings = load_settings(environ={}, data_dir=str(tmp_path / "data"))
    store = open_blob_store(settings)
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "data" / "blobs"
    blob = await store.put_stream(stream(b"hello"))
    assert (tmp_path / "data" / "blobs" / blob.sha256[:2] / blob.sha256[2:4] / blob.sha256).exists()

    s3 = load_settings(environ={}, data_dir=str(tmp_path / "data"), storage={
        "backend": "s3", "s3": {"endpoint": "http://127.0.0.1:9", "bucket": "bundles",
                                "access_key_id": "AK", "secret_access_key": "SK"}})
    s3_store = open_blob_store(s3)
    assert isinstance(s3_store, S3BlobStore)
    await s3_store.close()

    incomplete = load_settings(environ={}, data_dir=str(tmp_path / "data"), storage={"backend": "s3"})
    with pytest.raises(ConfigError, match="storage.s3.bucket"):
        open_blob_store(incomplete)


async def test_trusted_put_file_links_without_rehashing_and_untrusted_still_checks(tmp_path):
    """A caller that hashed the bytes while writing them (the publish upload) vouches for the digest."""
    import hashlib

    from mcpstore_appliance.blobs import LocalBlobStore
    from mcpstore_appliance.errors import InvalidInput

    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "upload.bin"
    source.write_bytes(b"bundle bytes" * 1000)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    stored = await store.put_file(source, digest, trusted=True)
    assert stored.sha256 == digest and stored.size == 12000
    assert store.path_for(digest).read_bytes() == source.read_bytes()

    other = tmp_path / "other.bin"
    other.write_bytes(b"different")
    with pytest.raises(InvalidInput):
        await store.put_file(other, digest)  # without trust, a wrong digest is caught
    assert store.path_for(digest).read_bytes() == source.read_bytes()
