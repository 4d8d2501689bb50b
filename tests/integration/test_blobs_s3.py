"""The S3 blob store against real S3-protocol servers on 127.0.0.1.

moto_server (fixture `moto_s3`) exercises the protocol: ranges, multipart, paging, dedup, presigned
GET. moto accepts any signature, so the signing itself is proven against s3rver (fixture `s3rver`),
which recomputes SigV4 for headers and presigned URLs and enforces presigned expiry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest
from aiohttp.abc import AbstractResolver

from mcpstore_appliance.blobs import S3BlobStore, S3Error, StoredBlob
from mcpstore_appliance.blobs.sigv4 import EMPTY_SHA256, SigV4Signer
from mcpstore_appliance.errors import InvalidInput, NotFound

MiB = 1024 * 1024
MULTIPART = {"multipart_threshold_bytes": 5 * MiB, "part_size_bytes": 5 * MiB}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def stream(data: bytes, size: int = 256 * 1024):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def read_all(store, digest, start=0, end=None) -> bytes:
    return b"".join([chunk async for chunk in store.open_range(digest, start, end)])


class Requests(list):
    """(method, path, query) of every request a store sends, seen through aiohttp's tracing, and the most
    that were in flight at once."""

    in_flight = most_in_flight = 0

    def named(self, method: str, query_key: str | None = None) -> list:
        return [r for r in self if r[0] == method and (query_key is None or query_key in r[2])]


def traced_session(requests: Requests, resolver: AbstractResolver | None = None,
                   on_end=None) -> aiohttp.ClientSession:
    async def started(session, context, params):
        requests.append((params.method, params.url.path, parse_qs(params.url.query_string, keep_blank_values=True)))
        requests.in_flight += 1
        requests.most_in_flight = max(requests.most_in_flight, requests.in_flight)

    async def ended(session, context, params):
        requests.in_flight -= 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(started)
    trace.on_request_end.append(ended)
    trace.on_request_exception.append(ended)
    if on_end:
        trace.on_request_end.append(on_end)
    connector = aiohttp.TCPConnector(resolver=resolver) if resolver else None
    return aiohttp.ClientSession(trace_configs=[trace], connector=connector, auto_decompress=False)


@pytest.fixture
async def make_store(tmp_path):
    """make_store(peer, **settings) -> (store, requests) on a fresh bucket of that peer."""
    opened: list = []

    async def make(peer, *, bucket: str | None = None, session_args: dict | None = None, store_args=None,
                   **overrides):
        bucket = bucket or await peer.create_bucket()
        requests = Requests()
        session = traced_session(requests, **(session_args or {}))
        store = S3BlobStore(peer.settings(bucket, **overrides), spool_dir=tmp_path / "spool", session=session,
                            **(store_args or {}))
        opened.append((store, session))
        return store, requests

    yield make
    for store, session in opened:
        await store.close()
        await session.close()


async def raw(peer, method: str, path: str, query: list[tuple[str, str]] = ()) -> tuple[int, bytes]:
    """A signed request outside the store, to look at the bucket directly."""
    host = peer.endpoint.split("://", 1)[1]
    signer = SigV4Signer(peer.access_key_id, peer.secret_access_key, "us-east-1")
    headers = signer.sign_headers(method, host, path, query, {}, EMPTY_SHA256)
    from mcpstore_appliance.blobs.sigv4 import canonical_query
    url = peer.endpoint + path + (f"?{canonical_query(query)}" if query else "")
    async with aiohttp.ClientSession() as session:
        async with session.request(method, url, headers=headers) as response:
            return response.status, await response.read()


async def pending_uploads(peer, bucket: str) -> list[str]:
    status, body = await raw(peer, "GET", f"/{bucket}", [("uploads", "")])
    assert status == 200, body
    return [e.text for e in ET.fromstring(body).findall("{*}Upload/{*}UploadId")]


# -- protocol behaviour (moto) -----------------------------------------------------------------


async def test_roundtrip_at_the_content_address(moto_s3, make_store):
    store, _ = await make_store(moto_s3)
    data = os.urandom(700_000)
    blob = await store.put_stream(stream(data))
    assert blob == StoredBlob(sha(data), len(data))
    assert await store.size(blob.sha256) == len(data) and await store.exists(blob.sha256)
    assert await read_all(store, blob.sha256) == data
    status, body = await raw(moto_s3, "GET", f"/{store.bucket}/blobs/{blob.sha256}")
    assert (status, body) == (200, data)  # keyed <prefix><sha256>
    assert os.listdir(store.spool_dir) == []


async def test_ranges_match_slicing_at_every_edge(moto_s3, make_store):
    store, _ = await make_store(moto_s3)
    data = bytes(range(10))
    digest = (await store.put_stream(stream(data))).sha256
    for start in range(0, 11):
        for end in [None, *range(start, 13)]:
            assert await read_all(store, digest, start, end) == data[start:end], (start, end)
    for start, end in [(11, None), (11, 20), (-1, None), (5, 4)]:
        with pytest.raises(InvalidInput):
            await read_all(store, digest, start, end)
    empty = (await store.put_stream(stream(b""))).sha256
    assert await read_all(store, empty) == b"" and await read_all(store, empty, 0, 5) == b""


async def test_absent_blob_and_delete(moto_s3, make_store):
    store, _ = await make_store(moto_s3)
    absent = sha(b"never stored")
    with pytest.raises(NotFound):
        await read_all(store, absent)
    with pytest.raises(NotFound):
        await read_all(store, absent, 3, 3)
    assert await store.size(absent) is None and await store.exists(absent) is False
    assert await store.delete(absent) is False
    blob = await store.put_stream(stream(b"short-lived"))
    assert await store.delete(blob.sha256) is True
    assert await store.exists(blob.sha256) is False
    with pytest.raises(InvalidInput):
        await store.size("../" + "a" * 61)


async def test_second_put_of_same_bytes_uploads_nothing(moto_s3, make_store, tmp_path):
    store, requests = await make_store(moto_s3, **MULTIPART)
    small, large = os.urandom(1000), os.urandom(6 * MiB)
    for data in (small, large):
        await store.put_stream(stream(data))
    source = tmp_path / "large.bin"
    source.write_bytes(large)
    requests.clear()
    assert await store.put_stream(stream(small)) == StoredBlob(sha(small), len(small))
    assert await store.put_file(source, sha(large)) == StoredBlob(sha(large), len(large))
    assert await store.put_file(source) == StoredBlob(sha(large), len(large))
    assert [r[0] for r in requests] == ["HEAD", "HEAD", "HEAD"]


async def test_list_digests_pages_and_skips_foreign_keys(moto_s3, make_store):
    bucket = await moto_s3.create_bucket()
    store, requests = await make_store(moto_s3, bucket=bucket, store_args={"list_page_size": 2})
    other, _ = await make_store(moto_s3, bucket=bucket, prefix="other/")
    digests = sorted([(await store.put_stream(stream(bytes([i]) * 10))).sha256 for i in range(5)])
    await other.put_stream(stream(b"outside the prefix"))
    assert await store.ping()  # leaves the .ping marker under the prefix
    requests.clear()
    assert sorted([d async for d in store.list_digests()]) == digests
    assert len(requests.named("GET", "list-type")) >= 3


async def test_multipart_upload_of_a_12_mib_object(moto_s3, make_store, tmp_path):
    store, requests = await make_store(moto_s3, **MULTIPART)
    data = os.urandom(12 * MiB)
    blob = await store.put_stream(stream(data, MiB))
    assert blob == StoredBlob(sha(data), len(data))
    assert len(requests.named("POST", "uploads")) == 1
    assert sorted(r[2]["partNumber"][0] for r in requests.named("PUT", "partNumber")) == ["1", "2", "3"]
    assert len(requests.named("POST", "uploadId")) == 1
    assert await store.size(blob.sha256) == len(data)
    assert await read_all(store, blob.sha256) == data
    boundary = 5 * MiB
    assert await read_all(store, blob.sha256, boundary - 10, boundary + 10) == data[boundary - 10 : boundary + 10]
    assert await pending_uploads(moto_s3, store.bucket) == []


async def test_multipart_with_wrong_digest_is_aborted(moto_s3, make_store, tmp_path):
    store, requests = await make_store(moto_s3, **MULTIPART)
    source = tmp_path / "upload.bin"
    data = os.urandom(12 * MiB)
    source.write_bytes(data)
    claimed = sha(b"something else")
    with pytest.raises(InvalidInput):
        await store.put_file(source, claimed)
    assert len(requests.named("DELETE", "uploadId")) == 1
    assert await pending_uploads(moto_s3, store.bucket) == []
    assert not await store.exists(claimed) and not await store.exists(sha(data))


async def test_multipart_failing_midway_is_aborted(moto_s3, make_store, tmp_path):
    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(12 * MiB))

    async def shrink_after_first_part(session, context, params):
        if "partNumber" in params.url.query:
            with open(source, "r+b") as fh:
                fh.truncate(6 * MiB)  # the next part cannot be read: the upload fails midway

    store, requests = await make_store(moto_s3, session_args={"on_end": shrink_after_first_part}, **MULTIPART,
                                       upload_concurrency=1)  # one part at a time: exactly one part was sent
    with pytest.raises(OSError, match="shrank"):
        await store.put_file(source)
    assert len(requests.named("PUT", "partNumber")) == 1
    assert len(requests.named("DELETE", "uploadId")) == 1
    assert await pending_uploads(moto_s3, store.bucket) == []
    assert [d async for d in store.list_digests()] == []


async def test_multipart_parts_go_several_at_a_time_and_assemble_in_order(moto_s3, make_store, tmp_path):
    store, requests = await make_store(moto_s3, **MULTIPART, upload_concurrency=3)
    source = tmp_path / "upload.bin"
    data = os.urandom(27 * MiB)  # six parts, the last one short
    source.write_bytes(data)
    blob = await store.put_file(source, sha(data))
    assert sorted(int(r[2]["partNumber"][0]) for r in requests.named("PUT", "partNumber")) == [1, 2, 3, 4, 5, 6]
    assert requests.most_in_flight == 3
    assert await read_all(store, blob.sha256) == data
    assert await pending_uploads(moto_s3, store.bucket) == []


async def test_concurrent_multipart_failing_midway_cancels_the_other_parts_and_aborts(moto_s3, make_store,
                                                                                    tmp_path):
    source = tmp_path / "upload.bin"
    source.write_bytes(os.urandom(30 * MiB))

    async def shrink_after_first_part(session, context, params):
        if "partNumber" in params.url.query:
            with open(source, "r+b") as fh:
                fh.truncate(11 * MiB)  # parts that start past 10 MiB cannot be read whole any more

    store, requests = await make_store(moto_s3, session_args={"on_end": shrink_after_first_part}, **MULTIPART,
                                       upload_concurrency=2)
    with pytest.raises(OSError, match="shrank"):
        await store.put_file(source)
    assert len(requests.named("PUT", "partNumber")) < 6
    # The abort may meet a cancelled part upload the server is still storing (moto then answers 500) and is
    # retried, as S3's documentation says an abort may need to be ("part uploads in progress might or might not
    # succeed"): what must hold is that no request is left running and the upload is gone.
    assert 1 <= len(requests.named("DELETE", "uploadId")) <= store.client.attempts and requests.in_flight == 0
    assert await pending_uploads(moto_s3, store.bucket) == []
    assert [d async for d in store.list_digests()] == []


async def test_single_put_with_wrong_digest_leaves_nothing(moto_s3, make_store, tmp_path):
    store, _ = await make_store(moto_s3)
    source = tmp_path / "upload.bin"
    source.write_bytes(b"real content")
    claimed = sha(b"claimed content")
    with pytest.raises(InvalidInput):
        await store.put_file(source, claimed)
    assert not await store.exists(claimed)
    assert [d async for d in store.list_digests()] == []


async def test_a_broken_upload_stream_uploads_nothing(moto_s3, make_store):
    store, requests = await make_store(moto_s3)

    async def broken():
        yield b"half an upload"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.put_stream(broken())
    assert requests == [] and os.listdir(store.spool_dir) == []


async def test_downloads_stream_in_chunks(moto_s3, make_store):
    store, _ = await make_store(moto_s3, store_args={"chunk_size": 64 * 1024})
    data = os.urandom(3 * MiB)
    digest = (await store.put_stream(stream(data))).sha256
    sizes = [len(chunk) async for chunk in store.open_range(digest)]
    assert sum(sizes) == len(data) and max(sizes) <= 64 * 1024 and len(sizes) >= 48


async def test_presigned_urls_follow_the_setting(moto_s3, make_store):
    off, _ = await make_store(moto_s3)
    blob = await off.put_stream(stream(b"bundle bytes"))
    assert await off.presigned_url(blob.sha256, "demo-1.0.0.mcpb") is None

    on, _ = await make_store(moto_s3, bucket=off.bucket, presign_redirects=True, presign_ttl_seconds=300)
    url = await on.presigned_url(blob.sha256, "demo-1.0.0.mcpb")
    assert parse_qs(urlsplit(url).query)["X-Amz-Expires"] == ["300"]
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        assert await response.read() == b"bundle bytes"
        assert response.headers["Content-Disposition"] == 'attachment; filename="demo-1.0.0.mcpb"'


class LoopbackResolver(AbstractResolver):
    """Every name is 127.0.0.1: stands in for the wildcard DNS a virtual-host S3 endpoint has."""

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        return None


async def test_virtual_host_addressing(moto_s3, make_store):
    bucket = await moto_s3.create_bucket()
    port = moto_s3.endpoint.rsplit(":", 1)[1]
    store, requests = await make_store(moto_s3, bucket=bucket, endpoint=f"http://s3.blobs.test:{port}",
                                       addressing_style="virtual", session_args={"resolver": LoopbackResolver()})
    assert store.client.host == f"{bucket}.s3.blobs.test:{port}"
    blob = await store.put_stream(stream(b"virtual host"))
    assert requests[-1][1] == f"/blobs/{blob.sha256}"  # no bucket in the path
    assert await read_all(store, blob.sha256, 8) == b"host"
    assert [d async for d in store.list_digests()] == [blob.sha256]
    status, body = await raw(moto_s3, "GET", f"/{bucket}/blobs/{blob.sha256}")  # same object, path-style
    assert (status, body) == (200, b"virtual host")


async def test_a_missing_bucket_is_an_s3_error_not_a_missing_blob(moto_s3, make_store):
    store, _ = await make_store(moto_s3, bucket="no-such-bucket-here")
    with pytest.raises(S3Error) as info:
        await read_all(store, sha(b"x"))
    assert info.value.code == "NoSuchBucket" and "NoSuchBucket" in str(info.value)
    with pytest.raises(S3Error, match="NoSuchBucket"):
        [d async for d in store.list_digests()]
    with pytest.raises(S3Error, match="NoSuchBucket"):
        await store.put_stream(stream(b"x"))
    assert await store.ping() is False


async def test_an_unreachable_endpoint_is_a_clear_error(make_store, moto_s3):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]
    store, _ = await make_store(moto_s3, bucket="bucket", endpoint=f"http://127.0.0.1:{closed_port}",
                                store_args={"attempts": 2})
    with pytest.raises(S3Error) as info:
        await store.size(sha(b"x"))
    assert info.value.code == "ConnectionError" and f"127.0.0.1:{closed_port}" in str(info.value)
    assert await store.ping() is False


# -- signatures (s3rver recomputes and checks every SigV4 signature) ----------------------------


async def test_signed_requests_are_accepted_by_a_verifying_server(s3rver, make_store):
    # A prefix that needs encoding in paths and queries. (No !'()*: s3rver encodes those in query
    # values the JavaScript way, unlike S3 and botocore; the unit tests pin them against botocore.)
    store, _ = await make_store(s3rver, prefix="blobs t/ü+x/", **MULTIPART)
    small, large = b"signed small object", os.urandom(12 * MiB)
    for data in (small, large):
        blob = await store.put_stream(stream(data, MiB))
        assert await store.size(blob.sha256) == len(data)
        assert await read_all(store, blob.sha256, 3, 9) == data[3:9]
    assert await read_all(store, sha(large)) == large
    assert sorted([d async for d in store.list_digests()]) == sorted([sha(small), sha(large)])
    assert await store.ping() is True
    assert await store.delete(sha(small)) is True and await store.exists(sha(small)) is False


async def test_presigned_urls_are_verified_and_expire(s3rver, make_store):
    store, _ = await make_store(s3rver, presign_redirects=True, presign_ttl_seconds=600)
    blob = await store.put_stream(stream(b"presigned bytes"))
    other = await store.put_stream(stream(b"other bytes"))
    url = await store.presigned_url(blob.sha256, "demo-1.0.0.mcpb")
    signature = parse_qs(urlsplit(url).query)["X-Amz-Signature"][0]
    tampered = {
        "signature": url.replace(signature, signature[::-1]),
        "other object": url.replace(blob.sha256, other.sha256),
        "longer expiry": url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000"),
        "other filename": url.replace("demo-1.0.0.mcpb", "evil.exe"),
    }
    past = datetime.now(timezone.utc) - timedelta(hours=2)
    expired = store.presign_get(blob.sha256, filename="demo-1.0.0.mcpb", expires_seconds=60, now=past)
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as response:
            assert response.status == 200
            assert await response.read() == b"presigned bytes"
            assert response.headers["Content-Disposition"] == 'attachment; filename="demo-1.0.0.mcpb"'
        for name, bad in tampered.items():
            async with session.get(bad) as response:
                assert response.status == 403, name
                assert b"SignatureDoesNotMatch" in await response.read(), name
        async with session.get(expired) as response:
            assert response.status == 403
            assert b"Request has expired" in await response.read()


async def test_a_wrong_secret_key_is_a_clear_error_that_hides_the_secret(s3rver, make_store, caplog):
    good, _ = await make_store(s3rver)
    blob = await good.put_stream(stream(b"guarded"))
    secret = "wrong-secret-d41d8cd98f00b204"
    bad, _ = await make_store(s3rver, bucket=good.bucket, secret_access_key=secret, store_args={"attempts": 1})
    caplog.set_level(logging.DEBUG)
    errors = []
    for call in (lambda: read_all(bad, blob.sha256), lambda: bad.put_stream(stream(b"new bytes")),
                 lambda: bad.size(blob.sha256)):
        with pytest.raises(S3Error) as info:
            await call()
        assert info.value.status == 403
        errors.append(info.value)
    assert errors[0].code == "SignatureDoesNotMatch" and "SignatureDoesNotMatch" in str(errors[0])
    # A put starts with HEAD (dedup), and HEAD answers have no error body: the message says what to check.
    assert "credentials" in str(errors[1]) and "credentials" in str(errors[2])
    assert await bad.ping() is False
    shown = " ".join([*(str(e) for e in errors), *(repr(e) for e in errors), repr(bad), caplog.text])
    assert secret not in shown
    assert await good.exists(sha(b"new bytes")) is False
