"""Publishing is atomic: concurrent publishes of one version, a failure inside the transaction, a process
killed in the middle of an upload. Each leaves either nothing or the whole version, and a retry succeeds."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import aiohttp
import pytest

from mcpstore_appliance.bundles import inspect_bundle
from mcpstore_appliance.ledger.service import Ledger
from tests.conftest import free_port
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


@pytest.fixture
async def app(start_app):
    return await start_app(ledger=FAST_LEDGER)


def _statuses(results) -> list[int]:
    return sorted(status for status, _ in results)


async def test_two_simultaneous_publishes_exactly_one_wins(app):
    _, token = await user(app, "alice")
    # Both inspections finish before either goes on, so both pass the early check and race for the writer.
    barrier = threading.Barrier(2, timeout=30)

    def inspect_in_step(path, limits, trust, **kw):
        report = inspect_bundle(path, limits, trust, **kw)
        barrier.wait()
        return report

    app.services.publisher._inspector = inspect_in_step
    first, second = bundle(description="first"), bundle(description="second")
    results = await asyncio.gather(publish(app.client, first, token), publish(app.client, second, token))
    assert _statuses(results) == [201, 409], results
    loser = next(body for status, body in results if status == 409)
    assert loser["error"]["code"] == "version_exists"
    winner = next(body for status, body in results if status == 201)
    state = await snapshot(app)
    assert state["versions"] == 1 and state["packages"] == 1 and state["leaves"] == 1
    assert state["publish_audit"] == 1 and state["temp_files"] == []
    row = await app.services.db.fetch_one("SELECT sha256 FROM versions")
    assert row["sha256"] == winner["sha256"]


async def test_many_simultaneous_publishes_of_same_bytes(app):
    _, token = await user(app, "alice")
    data = bundle()
    results = await asyncio.gather(*(publish(app.client, data, token) for _ in range(4)))
    assert _statuses(results) == [201, 409, 409, 409]
    state = await snapshot(app)
    assert state["versions"] == 1 and state["leaves"] == 1 and state["blobs"] == [sha256(data)]


class FailingLedger(Ledger):
    """The real ledger, except that appending fails: the publish transaction dies after the blob put."""

    async def append(self, tx, event, *, org_id=None):
        await super().append(tx, event, org_id=org_id)  # the leaf rows are written, then rolled back
        raise RuntimeError("simulated failure inside the publish transaction")


async def test_failure_inside_the_transaction_leaves_nothing_and_retry_succeeds(app):
    _, token = await user(app, "alice")
    services = app.services
    real = services.publisher.ledger
    services.publisher.ledger = FailingLedger(services.db, services.keys.ledger, real.origin, real.settings)
    data = bundle()
    before = await snapshot(app)

    status, body = await publish(app.client, data, token)
    assert status == 500 and body["error"]["code"] == "internal"
    after = await snapshot(app)
    # No package, version, ledger leaf, audit event, blob or temp file.
    assert after == before
    assert 'mcpstore_publishes_total{outcome="error"} 1' in services.metrics.render()

    services.publisher.ledger = real
    status, body = await publish(app.client, data, token)
    assert status == 201, body
    assert body["ledger"]["leaf_index"] == 0  # the failed attempt left no leaf behind
    state = await snapshot(app)
    assert state["versions"] == 1 and state["leaves"] == 1 and state["blobs"] == [sha256(data)]


# --- a process killed mid-upload ------------------------------------------------------------------------------

def _make_token(data_dir) -> str:
    """Create a user and token with the operator's in-process services (the server is stopped)."""
    from mcpstore_appliance.app import build_services, close_services
    from mcpstore_appliance.config import load_settings

    async def work():
        services = await build_services(load_settings(environ={}, data_dir=str(data_dir)))
        try:
            created = await services.accounts.create_user("k@example.com", "kim", None)
            principal = await services.accounts.principal_for_user(created.id)
            return (await services.accounts.create_token(principal, "t", ["read", "publish"]))[0]
        finally:
            await close_services(services)

    return asyncio.run(work())


async def test_server_killed_during_upload_then_retry_succeeds(tmp_path):
    data_dir = tmp_path / "data"
    token = await asyncio.to_thread(_make_token, data_dir)
    headers = {**OCTET, "Authorization": f"Bearer {token}"}
    data = bundle(extra={"server/blob.bin": os.urandom(3 * 1024 * 1024)})
    server = await ServerProcess(data_dir, free_port()).start()
    try:
        sent = asyncio.Event()

        async def slow_body():
            yield data[: len(data) // 2]
            sent.set()
            await asyncio.sleep(30)  # the server dies while waiting for the rest
            yield data[len(data) // 2:]

        async def upload():
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.post(server.base_url + "/api/packages", data=slow_body(),
                                            headers=headers) as response:
                        return response.status
                except aiohttp.ClientError:
                    return None

        task = asyncio.create_task(upload())
        await sent.wait()
        deadline = time.monotonic() + 10
        while not any((data_dir / "tmp").glob("upload-*")) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert any((data_dir / "tmp").glob("upload-*")), "the upload never reached the server's temp file"
        server.kill()
        task.cancel()

        await server.start()
        async with aiohttp.ClientSession() as session:
            async with session.post(server.base_url + "/api/packages", data=data, headers=headers) as response:
                body = await response.json()
                assert response.status == 201, body
                assert body["sha256"] == sha256(data) and body["ledger"]["leaf_index"] == 0
    finally:
        server.stop()


async def test_the_check_inside_the_transaction_refuses_a_race_the_early_check_missed(app, monkeypatch):
    _, token = await user(app, "alice")

    async def early_check_saw_nothing(*args):
        return None  # as if the other publish committed right after the early check

    monkeypatch.setattr(app.services.publisher, "_precheck_free", early_check_saw_nothing)
    assert (await publish(app.client, bundle(description="first"), token))[0] == 201
    status, body = await publish(app.client, bundle(description="second"), token)
    assert status == 409 and body["error"]["code"] == "version_exists"
    state = await snapshot(app)
    assert state["versions"] == 1 and state["leaves"] == 1 and state["publish_audit"] == 1


async def test_client_disconnecting_mid_upload_leaves_nothing(app):
    _, token = await user(app, "alice")
    before = await snapshot(app)
    data = bundle(extra={"server/blob.bin": os.urandom(512 * 1024)})
    host, port = app.base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write((f"POST /api/packages HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Type: application/octet-stream\r\nContent-Length: {len(data)}\r\n\r\n").encode())
    writer.write(data[: len(data) // 2])
    await writer.drain()
    deadline = time.monotonic() + 10
    while not any((app.data_dir / "tmp").glob("upload-*")) and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert any((app.data_dir / "tmp").glob("upload-*")), "the upload never reached the server's temp file"
    writer.close()  # the publisher's connection drops with half the bundle sent
    await writer.wait_closed()
    while (await snapshot(app))["temp_files"] and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert await snapshot(app) == before
    status, body = await publish(app.client, data, token)  # and the retry goes through
    assert status == 201, body
