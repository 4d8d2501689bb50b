"""`mcpstore serve --workers 2` as an operator runs it: two processes on one port and one data folder.

Publishes go to both workers at once (each request on a new connection, which the kernel hands to either
worker); afterwards every version is readable from both, the ledger is one sequence with no gaps and one leaf
per release, and `mcpstore ledger verify` is clean. Then the same with a worker killed in the middle of the
publishes: the supervisor starts it again, and no publish is lost or logged twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import aiohttp
import pytest

from mcpstore_appliance.ledger.events import PUBLISH
from tests.integration.publish_support import bundle
from tests.integration.test_cli_operator import PASSWORD, Server, run

SETTINGS = {
    "MCPSTORE_LEDGER__CHECKPOINT_INTERVAL_SECONDS": "0",  # every publish signs a checkpoint: races show
    "MCPSTORE_HOSTED__PUBLISH_CHECK": "false",  # dozens of sandbox start-up checks at once are not the subject
}


def start_two_workers(data: Path) -> tuple[Server, str]:
    assert run("admin", "create-user", "--admin", "--email", "ops@example.com", "--username", "ops",
               "--password-stdin", "--data", str(data), input=PASSWORD + "\n").returncode == 0
    token = run("admin", "create-token", "ops", "--scopes", "read,publish", "--data", str(data)).stdout.strip()
    server = Server(data, "--workers", "2", env=SETTINGS)
    server.wait_ready()
    return server, token


async def fresh(method: str, url: str, **kwargs) -> tuple[int, dict]:
    """One request on a connection of its own."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as client:
        async with client.request(method, url, **kwargs) as response:
            return response.status, json.loads(await response.read() or b"{}")


async def workers_answering(server: Server, want: int = 2, within: float = 30.0) -> dict[int, int]:
    """{worker number: pid} of the workers that answer fresh /readyz requests, once `want` of them have (or
    what answered by the deadline)."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + within
    while len(seen) < want and time.monotonic() < deadline:
        try:
            status, body = await fresh("GET", server.url + "/readyz")
        except aiohttp.ClientError:  # between a worker's death and its replacement
            continue
        if status == 200:
            seen[body["worker"]["number"]] = body["worker"]["pid"]
    return seen


async def publish_all(server: Server, token: str, names: list[str]) -> dict[str, int | str]:
    """Publish one package per name, all at once; {name: HTTP status, or the connection error's class}."""
    async def one(name: str) -> int | str:
        try:
            status, _ = await fresh("POST", server.url + "/api/packages", data=bundle(name=name),
                                    headers={"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/octet-stream"})
            return status
        except aiohttp.ClientError as exc:  # the worker serving it was killed
            return type(exc).__name__
    return dict(zip(names, await asyncio.gather(*(one(name) for name in names))))


async def readable_everywhere(server: Server, names: list[str], within: float = 1.5) -> None:
    """Each package answers 200 from fresh connections (both workers) within `within` seconds of the publishes."""
    deadline = time.monotonic() + within
    for name in names:
        while True:
            statuses = [(await fresh("GET", f"{server.url}/api/packages/ops/{name}"))[0] for _ in range(4)]
            if statuses == [200] * 4:
                break
            assert time.monotonic() < deadline, f"{name}: {statuses}"
            await asyncio.sleep(0.05)


async def until_published(server: Server, count: int, within: float = 60.0) -> None:
    """Wait until `count` packages are listed: the publishes are under way."""
    deadline = time.monotonic() + within
    while True:
        status, body = await fresh("GET", server.url + "/api/packages?q=pkg", headers={"Cache-Control": "no-cache"})
        if status == 200 and body["total"] >= count:
            return
        assert time.monotonic() < deadline, (status, body)
        await asyncio.sleep(0.02)


def check_ledger(data: Path) -> list[str]:
    """The one ledger: leaves 0..n-1, one publish leaf per stored version and none twice; returns the names."""
    with sqlite3.connect(f"file:{data / 'mcpstore.sqlite3'}?mode=ro", uri=True) as db:
        indices = [row[0] for row in db.execute("SELECT idx FROM ledger_leaves ORDER BY idx")]
        events = [json.loads(row[0]) for row in db.execute("SELECT data FROM ledger_leaves ORDER BY idx")]
        versions = db.execute("SELECT p.name FROM versions v JOIN packages p ON p.id = v.package_id").fetchall()
        sizes = [row[0] for row in db.execute("SELECT size FROM ledger_checkpoints")]
    assert indices == list(range(len(indices)))
    published = [event["name"] for event in events if event.get("kind") == PUBLISH]
    assert len(published) == len(set(published)), "a release was logged twice"
    assert sorted(published) == sorted(name for (name,) in versions)
    assert len(sizes) == len(set(sizes)) and max(sizes) <= len(indices)
    verify = run("ledger", "verify", "--data", str(data))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    return published


def test_two_workers_share_publishes_reads_and_one_ledger(tmp_path):
    data = tmp_path / "data"
    server, token = start_two_workers(data)
    try:
        assert set(asyncio.run(workers_answering(server))) == {1, 2}
        names = [f"pkg-{i}" for i in range(24)]
        results = asyncio.run(publish_all(server, token, names))
        assert set(results.values()) == {201}, results
        asyncio.run(readable_everywhere(server, names))
        assert sorted(check_ledger(data)) == sorted(names)
        assert os.stat(data / "run").st_mode & 0o777 == 0o700
    finally:
        assert server.stop() == 0
    assert "mcpstore supervisor: all workers stopped" in "".join(server.lines)
    assert not any((data / "run").glob("*.sock.lock"))


def test_a_worker_killed_mid_publish_is_restarted_and_nothing_is_lost_or_doubled(tmp_path):
    data = tmp_path / "data"
    server, token = start_two_workers(data)
    try:
        pids = asyncio.run(workers_answering(server))
        victim = pids[2]

        async def publish_while_killing() -> dict:
            names = [f"pkg-{i}" for i in range(60)]
            publishing = asyncio.ensure_future(publish_all(server, token, names))
            await until_published(server, 3)  # the publishes are under way
            os.kill(victim, signal.SIGKILL)
            results = await publishing
            restarted = await workers_answering(server)  # the supervisor started worker 2 again
            assert restarted.get(2) not in (None, victim), restarted
            return results

        results = asyncio.run(publish_while_killing())
        assert set(results.values()) - {201}, "the kill came too late to cut a publish short"
        landed = check_ledger(data)
        assert {name for name, status in results.items() if status == 201} <= set(landed)
        again = asyncio.run(publish_all(server, token, [name for name in results if name not in landed]))
        assert set(again.values()) <= {201}, again
        asyncio.run(readable_everywhere(server, list(results)))
        assert sorted(check_ledger(data)) == sorted(results)
    finally:
        assert server.stop() == 0
    log = "".join(server.lines)
    assert "worker 2 exited (code -9)" in log and log.count("worker 2 of 2 started") == 2
