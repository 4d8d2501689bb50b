"""No blob or temp file outlives a refused, failed or killed publish: a failed publish takes its blobs back, and
a sweep at start and periodically removes what a crash left, never what an upload in flight still needs."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time

import aiohttp
import pytest

from mcpstore_appliance.catalog.orphans import remove_if_unreferenced
from tests.conftest import free_port
from tests.data.bundles import PNG_1PX
from tests.seed import eventually
from tests.integration.publish_support import (
    FAST_LEDGER,
    OCTET,
    ServerProcess,
    bundle,
    publish,
    sha256,
    snapshot,
    user,
)
from tests.integration.test_publish_atomicity import FailingLedger, _make_token


@pytest.fixture
async def app(start_app):
    return await start_app(ledger=FAST_LEDGER)


def age(path, seconds: float = 7200) -> None:
    past = time.time() - seconds
    os.utime(path, (past, past))


def blob_path(app, digest: str):
    return app.data_dir / "blobs" / digest[:2] / digest[2:4] / digest


# --- a failed publish takes its blobs back -----------------------------------------------------------------

async def test_a_failure_inside_the_transaction_leaves_no_blob_but_keeps_a_shared_one(app):
    _, token = await user(app, "alice")
    with_icon = {"icon": "icon.png"}
    first = bundle(version="1.0.0", extra={"server/index.js": "x", "icon.png": PNG_1PX}, **with_icon)
    assert (await publish(app.client, first, token))[0] == 201
    before = await snapshot(app)
    services = app.services
    real = services.publisher.ledger
    services.publisher.ledger = FailingLedger(services.db, services.keys.ledger, real.origin, real.settings)
    second = bundle(version="1.1.0", extra={"server/index.js": "x", "icon.png": PNG_1PX}, **with_icon)
    status, body = await publish(app.client, second, token)
    assert status == 500, body
    # The bundle's blob is gone again; the icon it shares with 1.0.0 stays.
    assert await snapshot(app) == before
    services.publisher.ledger = real
    assert (await publish(app.client, second, token))[0] == 201


async def test_a_version_taken_inside_the_transaction_leaves_no_blob(app, monkeypatch):
    _, token = await user(app, "alice")

    async def early_check_saw_nothing(*args):
        return None  # as if the other publish committed right after the early check

    monkeypatch.setattr(app.services.publisher, "_precheck_free", early_check_saw_nothing)
    assert (await publish(app.client, bundle(description="first"), token))[0] == 201
    before = await snapshot(app)
    status, body = await publish(app.client, bundle(description="second"), token)
    assert status == 409 and body["error"]["code"] == "version_exists"
    assert await snapshot(app) == before


async def test_a_blob_swept_between_storing_and_committing_is_stored_again(app, monkeypatch):
    """The race the write lock leaves open: the sweep (or another publish's clean-up) deletes the blob just before
    this publish commits. The publish finds it gone right after its commit and stores it again."""
    _, token = await user(app, "alice")
    publisher = app.services.publisher
    real_commit = publisher._commit
    data = bundle()

    async def swept_first(*args, **kwargs):
        assert await remove_if_unreferenced(app.services.db, app.services.blobs, sha256(data))
        return await real_commit(*args, **kwargs)

    monkeypatch.setattr(publisher, "_commit", swept_first)
    status, body = await publish(app.client, data, token)
    assert status == 201, body
    status, downloaded, _ = await app.client.get("/api/packages/alice/hello-node/versions/1.0.0/download")
    assert status == 200 and downloaded == data


# --- the sweep ------------------------------------------------------------------------------------------------

async def test_the_sweep_removes_old_orphans_and_temp_files_and_nothing_else(app):
    _, token = await user(app, "alice")
    published = bundle()
    assert (await publish(app.client, published, token))[0] == 201
    blobs = app.services.blobs
    old_orphan = (await blobs.put_stream(_chunks(b"left by a crash"))).sha256
    young_orphan = (await blobs.put_stream(_chunks(b"a publish about to commit"))).sha256
    for digest in (old_orphan, sha256(published)):
        age(blob_path(app, digest))
    stale_upload, fresh_upload = app.data_dir / "tmp" / "upload-a.mcpb", app.data_dir / "tmp" / "upload-b.mcpb"
    stale_put = app.data_dir / "blobs" / "tmp" / "put-crashed"
    for path in (stale_upload, fresh_upload, stale_put):
        path.write_bytes(b"partial")
    age(stale_upload), age(stale_put)

    await eventually(lambda: app.services.sweeper.sweeps >= 1)  # the start-up sweep is done: counts are ours
    assert await app.services.sweeper.sweep() == {"temp_files": 2, "orphan_blobs": 1}
    assert sorted([d async for d in blobs.list_digests()]) == sorted([sha256(published), young_orphan])
    assert fresh_upload.exists() and not stale_upload.exists() and not stale_put.exists()
    status, downloaded, _ = await app.client.get("/api/packages/alice/hello-node/versions/1.0.0/download")
    assert status == 200 and downloaded == published


async def test_an_upload_slower_than_the_grace_period_survives_sweeps(start_app):
    app = await start_app(ledger=FAST_LEDGER, storage={"sweep_interval_seconds": 0.05, "sweep_grace_seconds": 0.1})
    _, token = await user(app, "alice")
    data = bundle(extra={"server/index.js": "x", "server/blob.bin": os.urandom(200_000)})
    sweeper = app.services.sweeper
    swept_during_upload = []

    async def trickle():
        first = sweeper.sweeps
        for start in range(0, len(data), 8192):  # small chunks: the file is written only at the end
            yield data[start:start + 8192]
            await asyncio.sleep(0.03)
        swept_during_upload.append(sweeper.sweeps - first)

    async with aiohttp.ClientSession() as session:
        async with session.post(app.base_url + "/api/packages", data=trickle(),
                                headers={**OCTET, "Authorization": f"Bearer {token}"}) as response:
            body = await response.json()
    assert response.status == 201, body
    assert swept_during_upload[0] >= 5  # the file was older than the grace period at several sweeps
    assert body["sha256"] == sha256(data)
    assert (await snapshot(app))["temp_files"] == []


async def test_s3_orphans_and_spool_files_are_swept(start_app, moto_s3):
    bucket = await moto_s3.create_bucket()
    s3 = moto_s3.settings(bucket).model_dump(mode="json")
    s3["secret_access_key"] = moto_s3.secret_access_key
    app = await start_app(ledger=FAST_LEDGER, storage={"backend": "s3", "s3": s3})
    _, token = await user(app, "alice")
    published = bundle()
    assert (await publish(app.client, published, token))[0] == 201
    blobs = app.services.blobs
    orphan = (await blobs.put_stream(_chunks(b"left by a crash"))).sha256
    assert abs(await blobs.modified_at(orphan) - time.time()) < 120
    assert await blobs.modified_at("0" * 64) is None
    spool = app.data_dir / "tmp" / "s3-put-crashed"
    spool.write_bytes(b"partial")
    age(spool)
    sweeper = app.services.sweeper
    await eventually(lambda: sweeper.sweeps >= 1)
    assert await sweeper.sweep() == {"temp_files": 1, "orphan_blobs": 0}  # the orphan is younger than an hour
    sweeper.grace = 0
    assert await sweeper.sweep() == {"temp_files": 0, "orphan_blobs": 1}
    assert [d async for d in blobs.list_digests()] == [sha256(published)]


async def _chunks(data: bytes):
    yield data


# --- a server killed in the middle of a publish -------------------------------------------------------------

async def test_server_killed_between_storing_the_blob_and_committing_leaves_nothing_after_the_sweep(tmp_path):
    """SIGKILL while the publish waits for the database's write lock (held here by another connection, as a
    second process of the appliance would), that is after its blob was stored and before the version commits.
    The restarted server's start-up sweep removes the orphan blob and the upload file; the retry publishes."""
    data_dir = tmp_path / "data"
    token = await asyncio.to_thread(_make_token, data_dir)
    headers = {**OCTET, "Authorization": f"Bearer {token}"}
    data = bundle()
    env = {"MCPSTORE_STORAGE__SWEEP_GRACE_SECONDS": "0"}
    server = await ServerProcess(data_dir, free_port(), env=env).start()
    blob = data_dir / "blobs" / sha256(data)[:2] / sha256(data)[2:4] / sha256(data)
    holder = sqlite3.connect(data_dir / "mcpstore.sqlite3", isolation_level=None, timeout=10)
    locked = asyncio.Event()

    async def body():
        yield data[:100]
        await locked.wait()  # the request is past authentication (which writes) and its upload has begun
        yield data[100:]

    try:
        async with aiohttp.ClientSession() as session:
            task = asyncio.ensure_future(session.post(server.base_url + "/api/packages", data=body(),
                                                      headers=headers))
            deadline = time.monotonic() + 20
            while not list((data_dir / "tmp").glob("upload-*")) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            holder.execute("BEGIN IMMEDIATE")
            locked.set()
            while not blob.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert blob.exists(), "the publish never stored its blob"
            assert list((data_dir / "tmp").glob("upload-*")), "the upload file is gone before the commit"
            server.kill()
            holder.execute("ROLLBACK")
            with pytest.raises(aiohttp.ClientError):
                await task
        assert blob.exists() and list((data_dir / "tmp").glob("upload-*"))  # what the crash left

        await server.start()
        deadline = time.monotonic() + 20
        while (blob.exists() or list((data_dir / "tmp").glob("upload-*"))) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not blob.exists() and not list((data_dir / "tmp").glob("upload-*"))
        assert holder.execute("SELECT count(*) FROM versions").fetchone()[0] == 0
        assert holder.execute("SELECT count(*) FROM ledger_leaves").fetchone()[0] == 0
        async with aiohttp.ClientSession() as session:
            async with session.post(server.base_url + "/api/packages", data=data, headers=headers) as response:
                body = await response.json()
                assert response.status == 201 and body["ledger"]["leaf_index"] == 0, body
        assert blob.exists()
    finally:
        holder.close()
        server.stop()
