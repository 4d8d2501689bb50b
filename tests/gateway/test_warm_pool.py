"""The warm pool (gateway/warm_pool.py) on real bubblewrap sandboxes: after a version's first session, K
sandboxes are kept started; the next session takes one (the pool drops and refills, and the session's sandbox
is one that was warm) and works through the official `mcp` SDK; a caller with their own settings never gets a
warm one; versions left idle are reaped."""

from __future__ import annotations

import asyncio
import time

from tests.gateway.client import mcp_session
from tests.gateway.servers import hostile_bundle, publish_bundle


async def until(condition, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def warm_names(pool, version_id: int) -> set[str]:
    return {client.sandbox.name for client in pool._warm.get(version_id, [])}


async def test_a_new_session_takes_a_warm_sandbox_and_the_pool_refills(hosted_app):
    app = await hosted_app(warm_pool=2, warm_pool_idle_seconds=60)
    user, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    gateway = app.services.gateway
    pool = gateway.warm
    version_id = await app.services.db.fetch_value("SELECT id FROM versions")
    assert pool.size(version_id) == 0  # nothing is warm before anyone used the version

    async with mcp_session(app.base_url, "alice/hostile", token) as session:  # a cold start
        assert (await session.call_tool("echo", {"text": "cold"})).content[0].text == "cold"
    await until(lambda: pool.size(version_id) == 2)
    warm_before = warm_names(pool, version_id)

    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        [hosted] = [s for s in gateway.sessions.sessions.values() if s.version_id == version_id]
        assert hosted.client.sandbox.name in warm_before  # it took a warm one
        assert pool.size(version_id) <= 2 and hosted.client.sandbox.name not in warm_names(pool, version_id)
        await until(lambda: pool.size(version_id) == 2)  # refilled with a fresh one
        assert len(warm_names(pool, version_id) - warm_before) == 1
        assert (await session.call_tool("whoami", {})).content[0].text.startswith("uid=")
        await session.call_tool("put", {"name": "mine", "text": "secret"})

    # the next session's warm sandbox is a different one: nothing of the last session is left in it
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert (await session.call_tool("get", {"name": "mine"})).content[0].text == "missing"



async def test_a_caller_with_settings_of_their_own_is_started_cold(hosted_app):
    app = await hosted_app(warm_pool=1, warm_pool_idle_seconds=60)
    _, token = await app.user("alice")
    _, bob = await app.user("bob")
    region = {"region": {"type": "string", "title": "Region", "description": "r", "default": "us"}}
    await publish_bundle(app, token, hostile_bundle("keyed", env={"REGION": "${user_config.region}"},
                                                    user_config=region))
    pool, version_id = app.services.gateway.warm, await app.services.db.fetch_value("SELECT id FROM versions")
    async with mcp_session(app.base_url, "alice/keyed", token) as session:  # no settings: the default
        assert (await session.call_tool("env", {"name": "REGION"})).content[0].text == "us"
    await until(lambda: pool.size(version_id) == 1)
    status, _, _ = await app.client.with_token(bob).put("/api/packages/alice/keyed/user-config",
                                                        json={"region": "eu"})
    assert status == 200
    async with mcp_session(app.base_url, "alice/keyed", bob) as session:  # his own, so not the warm one
        assert (await session.call_tool("env", {"name": "REGION"})).content[0].text == "eu"
    async with mcp_session(app.base_url, "alice/keyed", token) as session:  # alice takes the warm one
        assert (await session.call_tool("env", {"name": "REGION"})).content[0].text == "us"


async def test_idle_versions_are_reaped(hosted_app):
    app = await hosted_app(warm_pool=1, warm_pool_idle_seconds=1)
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    pool = app.services.gateway.warm
    version_id = await app.services.db.fetch_value("SELECT id FROM versions")
    async with mcp_session(app.base_url, "alice/hostile", token):
        await until(lambda: pool.size(version_id) == 1)
    [warm] = pool._warm[version_id]
    await until(lambda: pool.size(version_id) == 0, seconds=10)  # the reaper's round after the idle second
    assert warm.closed is not None
