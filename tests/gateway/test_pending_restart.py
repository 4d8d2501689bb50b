"""A hosted check still pending when the appliance stops (catalog/pending_checks.py): the next start begins it
again from the stored bundle and the version ends published; with hosted execution off after the restart, the
version is quarantined with a finding that says why. Real appliances on real ports over one data folder, real
bubblewrap."""

from __future__ import annotations

import sqlite3
from contextlib import asynccontextmanager

import aiohttp
import pytest

from mcpstore_appliance.app import create_app
from tests.conftest import Client, RunningApp, make_settings, serve_app, stop_app
from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.servers import publish_bundle
from tests.gateway.test_publish_check import settled, slow_bundle

CHECKING = {"backend": "bubblewrap", "publish_check": True, "publish_check_seconds": 1,
            "publish_check_pending_seconds": 30}


@asynccontextmanager
async def appliance(data_dir, hosted):
    app = create_app(make_settings(data_dir, hosted=hosted))
    runner, site = await serve_app(app)
    try:
        async with aiohttp.ClientSession() as session:
            base = f"http://127.0.0.1:{site.port}"
            yield RunningApp(base, app, Client(base, session), data_dir, site)
    finally:
        await stop_app(runner, site)


async def publish_pending(data_dir) -> str:
    """Publish a slow server, stop the appliance while its check runs; the publisher's token."""
    async with appliance(data_dir, CHECKING) as app:
        _, token = await app.user("alice")
        result = await publish_bundle(app, token, slow_bundle("slow", "slow:3"))
        assert result["state"] == "pending"
    with sqlite3.connect(data_dir / "mcpstore.sqlite3") as db:  # stopped: the row stays for the next start
        assert db.execute("SELECT attempts FROM hosted_checks").fetchall() == [(1,)]
    return token


@pytest.fixture
def bwrap():
    if reason := bubblewrap_missing():
        pytest.skip(reason)


async def test_a_pending_check_is_resumed_after_a_restart(tmp_path, bwrap):
    token = await publish_pending(tmp_path / "data")
    async with appliance(tmp_path / "data", CHECKING) as app:
        assert await settled(app, token, "alice/slow") == "published"
    with sqlite3.connect(tmp_path / "data" / "mcpstore.sqlite3") as db:
        assert db.execute("SELECT count(*) FROM hosted_checks").fetchone() == (0,)


async def test_a_pending_check_that_cannot_resume_quarantines_and_says_why(tmp_path, bwrap):
    token = await publish_pending(tmp_path / "data")
    async with appliance(tmp_path / "data", {"backend": "off"}) as app:
        assert await settled(app, token, "alice/slow") == "quarantined"
        _, admin = await app.user("root", admin=True)
        [item] = (await app.client.with_token(admin).get("/api/admin/quarantine"))[1]["items"]
    [finding] = [f for f in item["findings"] if f["check_id"] == "hosted.interrupted"]
    assert "interrupted by a restart" in finding["message"] and "the check is off now" in finding["message"]
