"""Downloads over HTTP: content-addressed and versioned URLs, caching headers, ranges, digests, redirects to
presigned S3 URLs, and download counting that never writes per request."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import aiohttp
import pytest

from mcpstore_appliance.catalog.downloads import DownloadCounter
from mcpstore_appliance.cli.main import main
from mcpstore_appliance.lru import LRU
from mcpstore_appliance.web import bundle_files, sendfile
from tests.seed import FAST_LEDGER, bundle_for, counted, publish, set_package, yank


@pytest.fixture
async def appliance(start_app):
    return await start_app(**FAST_LEDGER)


async def published(app, name: str = "tool", version: str = "1.0.0", **fields) -> tuple[str, bytes, str]:
    _, token = await app.user("alice") if not getattr(app, "_alice", None) else (None, app._alice)
    app._alice = token
    data, sha256 = bundle_for(name, version, **fields)
    body = await publish(app, token, name, version, **fields)
    assert body["sha256"] == sha256
    return token, data, sha256


async def downloads_of(app, name: str = "tool") -> int:
    return await app.services.db.fetch_value("SELECT downloads FROM packages WHERE name = ?", (name,))


async def test_versioned_and_content_addressed_urls(appliance):
    _, data, sha256 = await published(appliance, long_description="x" * 5000)
    for path in ("/api/packages/alice/tool/versions/1.0.0/download", f"/bundles/{sha256}.mcpb"):
        status, body, response = await appliance.client.get(path)
        assert status == 200 and body == data
        headers = response.headers
        assert headers["ETag"] == f'"{sha256}"'
        assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert headers["Content-Disposition"] == 'attachment; filename="tool-1.0.0.mcpb"'
        assert headers["Repr-Digest"] == "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
        assert headers["Accept-Ranges"] == "bytes" and int(headers["Content-Length"]) == len(data)
        assert headers["Content-Type"] == "application/zip"
        status, _, response = await appliance.client.get(path, headers={"If-None-Match": f'"{sha256}"'})
        assert status == 304 and response.headers["ETag"] == f'"{sha256}"'
        status, body, response = await appliance.client.request("HEAD", path)
        assert status == 200 and not body and int(response.headers["Content-Length"]) == len(data)


async def test_anonymous_bundle_by_hash_follows_changes_at_once(appliance):
    """Anonymous answers by hash are kept between commits: a yank and a package made private show at once."""
    token, data, sha256 = await published(appliance)
    path = f"/bundles/{sha256}.mcpb"
    for _ in range(2):  # the second answer comes from what the first one kept
        status, body, response = await appliance.client.get(path)
        assert status == 200 and body == data and "X-Mcpstore-Yanked" not in response.headers
    await yank(appliance, token, "alice", "tool", "1.0.0")
    status, body, response = await appliance.client.get(path)
    assert status == 200 and body == data and response.headers["X-Mcpstore-Yanked"] == "true"
    await set_package(appliance, "alice", "tool", visibility="private")
    status, body, _ = await appliance.client.get(path)
    assert status == 404 and body["error"]["code"] == "no_such_bundle"
    status, body, _ = await appliance.client.with_token(token).get(path)
    assert status == 200 and body == data  # its owner still gets it

async def test_ranges(appliance):
    _, data, sha256 = await published(appliance)
    path = f"/bundles/{sha256}.mcpb"
    size = len(data)
    for header, start, end in (("bytes=0-9", 0, 10), ("bytes=10-", 10, size), ("bytes=-20", size - 20, size),
                               (f"bytes=5-{size + 100}", 5, size), ("bytes=-100000", 0, size)):
        status, body, response = await appliance.client.get(path, headers={"Range": header})
        assert status == 206, header
        assert body == data[start:end], header
        assert response.headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}"
        assert response.headers["Repr-Digest"].startswith("sha-256=:")  # of the whole file, also on a 206
    for header in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
        status, body, response = await appliance.client.get(path, headers={"Range": header})
        assert status == 416, header
        assert response.headers["Content-Range"] == f"bytes */{size}"
        assert body["error"]["code"] == "range_not_satisfiable"
    # Malformed ranges, other units and several ranges are ignored: the whole file (RFC 9110 allows it).
    for header in ("bytes=abc", "bytes=9-3", "items=0-1", "bytes=0-1,5-6", "bytes=", "bytes=--1"):
        status, body, _ = await appliance.client.get(path, headers={"Range": header})
        assert status == 200 and body == data, header
    # If-Range with another validator: the client's copy is stale, so it gets everything.
    status, body, _ = await appliance.client.get(path, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert status == 200 and body == data
    status, body, _ = await appliance.client.get(path, headers={"Range": "bytes=0-9", "If-Range": f'"{sha256}"'})
    assert status == 206 and body == data[:10]


async def test_local_blobs_go_out_with_sendfile_and_stream_when_no_worker_is_free(appliance, monkeypatch):
    _, data, sha256 = await published(appliance, long_description="y" * 20000)
    path = f"/bundles/{sha256}.mcpb"
    monkeypatch.setattr(bundle_files, "SMALL_BUNDLE_BYTES", 0)  # this bundle is small: make it a large one
    sends = sendfile.slots.sends
    status, body, _ = await appliance.client.get(path)
    assert status == 200 and body == data and sendfile.slots.sends == sends + 1
    status, body, _ = await appliance.client.get(path, headers={"Range": "bytes=100-"})
    assert status == 206 and body == data[100:] and sendfile.slots.sends == sends + 2
    # Every worker busy: streamed instead. (The limit is lowered rather than in_use raised: the worker of the
    # send before may still be releasing its slot after the client has read the last byte.)
    monkeypatch.setattr(sendfile.slots, "limit", 0)
    status, body, _ = await appliance.client.get(path, headers={"Range": "bytes=7-"})
    assert status == 206 and body == data[7:] and sendfile.slots.sends == sends + 2
    monkeypatch.undo()  # small again: the whole bundle is answered from memory, not with sendfile
    status, body, response = await appliance.client.get(path)
    assert status == 200 and body == data and sendfile.slots.sends == sends + 2
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["Content-Type"] == "application/zip" and response.headers["ETag"] == f'"{sha256}"'
    monkeypatch.setattr(bundle_files, "_small_bundles", LRU(4))  # forget it: the disk is read again
    # a blob missing from the disk is still a clean 404-class answer, not a broken transfer
    appliance.services.blobs.local_file(sha256).unlink()
    status, body, _ = await appliance.client.get(path)
    assert status == 404 and body["error"]["code"] == "not_found", (status, body)


async def test_unknown_bundles_and_yanked_versions(appliance):
    token, data, sha256 = await published(appliance)
    for path in ("/bundles/" + "0" * 64 + ".mcpb", "/bundles/" + sha256.upper() + ".mcpb", "/bundles/abc.mcpb",
                 "/bundles/" + sha256 + "0.mcpb"):
        status, body, _ = await appliance.client.get(path)
        assert status == 404 and body["error"]["code"] == "no_such_bundle", path
    await yank(appliance, token, "alice", "tool", "1.0.0")
    # A yanked version stays downloadable by exact version (lockfiles), marked as yanked.
    status, body, response = await appliance.client.get("/api/packages/alice/tool/versions/1.0.0/download")
    assert status == 200 and body == data and response.headers["X-Mcpstore-Yanked"] == "true"


async def test_counts_are_buffered_then_folded(appliance):
    _, data, sha256 = await published(appliance)
    counter = appliance.services.discovery.downloads
    for path in ("/api/packages/alice/tool/versions/1.0.0/download", f"/bundles/{sha256}.mcpb") * 3:
        status, _, _ = await appliance.client.get(path)
        assert status == 200
    # Not counted: a resumed download, a HEAD, a 304, a 416.
    await appliance.client.get(f"/bundles/{sha256}.mcpb", headers={"Range": "bytes=10-"})
    await appliance.client.request("HEAD", f"/bundles/{sha256}.mcpb")
    await appliance.client.get(f"/bundles/{sha256}.mcpb", headers={"If-None-Match": f'"{sha256}"'})
    await appliance.client.get(f"/bundles/{sha256}.mcpb", headers={"Range": f"bytes={len(data)}-"})
    # Counted: a range request from the first byte (download managers start that way).
    await appliance.client.get(f"/bundles/{sha256}.mcpb", headers={"Range": "bytes=0-99"})
    await counted(counter, 7)
    assert await downloads_of(appliance) == 0  # nothing written per request
    status, before, _ = await appliance.client.get("/api/packages?q=tool")  # cached for a few seconds...
    assert before["packages"][0]["downloads"] == 0
    assert await counter.flush() == 7
    assert counter.pending == 0 and await downloads_of(appliance) == 7
    status, after, _ = await appliance.client.get("/api/packages?q=tool")  # ...but a fold moves the cache key
    assert after["packages"][0]["downloads"] == 7
    status, body, _ = await appliance.client.get("/api/packages/alice/tool")
    assert body["stats"]["downloads"] == 7 and body["stats"]["downloads_30d"] == 7
    status, body, _ = await appliance.client.get("/api/packages/alice/tool/stats?days=7")
    assert status == 200 and len(body["days"]) == 7 and body["days"][-1]["count"] == 7
    assert sum(day["count"] for day in body["days"]) == 7
    by_version = await counter.by_version(await appliance.services.db.fetch_value("SELECT id FROM packages"))
    assert list(by_version.values()) == [7]
    for query in ("days=0", "days=367", "days=x", "weeks=2"):
        status, _, _ = await appliance.client.get(f"/api/packages/alice/tool/stats?{query}")
        assert status == 400, query


async def test_one_update_per_package_per_fold(appliance):
    """The fold adds each package's total once; many downloads of one package are one row update."""
    await published(appliance)
    counter = appliance.services.discovery.downloads
    statements: list[str] = []
    writer = appliance.services.db._writer  # the one writer connection: every write passes through it
    await writer.set_trace_callback(statements.append)
    try:
        for _ in range(50):
            await appliance.client.get("/api/packages/alice/tool/versions/1.0.0/download")
        await counted(counter, 50)
        assert not [s for s in statements if "downloads" in s]
        await counter.flush()
    finally:
        await writer.set_trace_callback(None)
    # (the trace repeats a statement at the start of each trigger it fires, hence the set)
    updates = {s for s in statements if s.startswith("UPDATE packages SET downloads")}
    assert updates == {"UPDATE packages SET downloads = downloads + 50 WHERE id = 1"}
    assert await downloads_of(appliance) == 50


async def test_background_fold_and_shutdown_flush(appliance, tmp_path):
    await published(appliance)
    row = await appliance.services.db.fetch_one("SELECT package_id, id FROM versions")
    package_id, version_id = row["package_id"], row["id"]
    fast = DownloadCounter(appliance.services.db, interval=0.05)
    fast.start()
    fast.record(package_id, version_id)
    for _ in range(200):  # waits for the periodic fold (no timing assertion: only that it happens)
        if await downloads_of(appliance) == 1:
            break
        await asyncio.sleep(0.05)
    assert await downloads_of(appliance) == 1
    fast.record(package_id, version_id)
    fast.record(package_id, version_id)
    fast.interval = 3600
    await fast.stop()  # folds what is left
    assert await downloads_of(appliance) == 3


async def test_counts_survive_a_restart(start_app, tmp_path):
    data_dir = tmp_path / "kept"
    app = await start_app(data_dir=data_dir, **FAST_LEDGER)
    _, token = await app.user("alice")
    await publish(app, token, "tool")
    for _ in range(4):
        await app.client.get("/api/packages/alice/tool/versions/1.0.0/download")
    await counted(app.services.discovery.downloads, 4)  # the last may be counted after the client has it
    await app.app.shutdown()
    await app.app.cleanup()  # the app's own shutdown folds the buffer
    again = await start_app(data_dir=data_dir, **FAST_LEDGER)
    status, body, _ = await again.client.get("/api/packages/alice/tool")
    assert body["stats"]["downloads"] == 4


async def test_presigned_redirect_with_s3(start_app, moto_s3, tmp_path, monkeypatch):
    bucket = await moto_s3.create_bucket()
    s3 = {**moto_s3.settings(bucket, presign_redirects=True).model_dump(mode="json")}
    s3 = {k: (v.get_secret_value() if hasattr(v, "get_secret_value") else v) for k, v in s3.items()}
    app = await start_app(storage={"backend": "s3", "s3": s3}, **FAST_LEDGER)
    _, token = await app.user("alice")
    data, sha256 = bundle_for("tool")
    await publish(app, token, "tool")
    status, _, response = await app.client.get("/api/packages/alice/tool/versions/1.0.0/download",
                                               allow_redirects=False)
    assert status == 302 and response.headers["ETag"] == f'"{sha256}"'
    location = response.headers["Location"]
    assert location.startswith(moto_s3.endpoint) and "X-Amz-Signature" in location
    async with aiohttp.ClientSession() as session, session.get(location) as direct:
        assert direct.status == 200 and await direct.read() == data
    assert app.services.discovery.downloads.pending == 1  # a redirect is a download too
    # `mcpstore download` follows the redirect to the blob store and checks the sha256.
    target = tmp_path / "tool.mcpb"
    monkeypatch.setenv("MCPSTORE_CONFIG_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("MCPSTORE_REGISTRY", app.base_url)
    code = await asyncio.to_thread(main, ["download", "alice/tool@1.0.0", "-o", str(target)])
    assert code == 0 and target.read_bytes() == data
