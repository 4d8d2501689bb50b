"""Bundles packed by the official `mcpb` CLI (a Node and a Python server), published, and called by the
official MCP SDK through the hosted endpoint, on bubblewrap and on Docker (a private dockerd started by the
`dockerd` fixture, the runtime image built by packaging/build-runtime-image.sh)."""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import example_servers, mcpb_cli  # noqa: F401  (session fixtures: the real CLI)
from tests.gateway.client import mcp_session
from tests.gateway.conftest import bubblewrap_missing
from tests.gateway.servers import SERVER, TOOL_NAMES, hostile_bundle, publish_bundle

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="session")
def python_server(mcpb_cli, tmp_path_factory):  # noqa: F811
    """The hostile test server (tests/gateway/servers.py) as a Python bundle packed by the real CLI."""
    root = tmp_path_factory.mktemp("mcpb-hosted") / "hosted-python"
    manifest = mcpb_cli.init(root)
    (root / "server").mkdir(exist_ok=True)
    (root / "server" / "main.py").write_text(SERVER)
    manifest["name"] = "hosted-python"
    manifest["server"] = {"type": "python", "entry_point": "server/main.py",
                          "mcp_config": {"command": "python3", "args": ["${__dirname}/server/main.py"]}}
    manifest["tools"] = [{"name": name, "description": name} for name in TOOL_NAMES]
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return mcpb_cli.pack(root, root.parent / "hosted-python.mcpb")


async def call_both(app, example_servers, python_server) -> None:  # noqa: F811
    _, token = await app.user("alice")
    await publish_bundle(app, token, example_servers["node"].read_bytes())
    await publish_bundle(app, token, python_server.read_bytes())
    async with mcp_session(app.base_url, "alice/hello-node", token) as node:
        assert [tool.name for tool in (await node.list_tools()).tools] == ["echo"]
        result = await node.call_tool("echo", {"text": "hi"})
        assert '"arguments":{"text":"hi"}' in result.content[0].text
    async with mcp_session(app.base_url, "alice/hosted-python", token) as python:
        assert {tool.name for tool in (await python.list_tools()).tools} == set(TOOL_NAMES)
        assert (await python.call_tool("echo", {"text": "py"})).content[0].text == "py"


async def test_mcpb_bundles_on_bubblewrap(start_app, example_servers, python_server):  # noqa: F811
    if bubblewrap_missing():
        pytest.skip(bubblewrap_missing())
    await call_both(await start_app(hosted={"backend": "bubblewrap"}), example_servers, python_server)


async def test_mcpb_bundles_on_docker(start_app, example_servers, python_server, dockerd):  # noqa: F811
    app = await start_app(hosted={"backend": "docker", "docker_host": dockerd, "docker_image": "mcpstore-runtime:skeleton",
                                  "docker_mount_host_usr": True})
    await call_both(app, example_servers, python_server)


async def test_docker_contains_a_hostile_server(start_app, dockerd):
    app = await start_app(hosted={"backend": "docker", "docker_host": dockerd, "docker_image": "mcpstore-runtime:skeleton",
                                  "docker_mount_host_usr": True})
    _, token = await app.user("alice")
    await publish_bundle(app, token, hostile_bundle())
    from mcp.shared.exceptions import MCPError
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert session and (await session.call_tool("whoami", {})).content[0].text == "uid=65534"
        assert (await session.call_tool("writes", {})).content[0].text == "/tmp/x"
        forked = (await session.call_tool("forks", {})).content[0].text
        assert int(forked.split()[1].rstrip(",")) < 64, forked
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("alloc", {})
        assert raised.value.error.code == -32002 and "out of memory" in raised.value.error.message
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        with pytest.raises(MCPError) as raised:
            await session.call_tool("loop", {})
        assert raised.value.error.code == -32001
    async with mcp_session(app.base_url, "alice/hostile", token) as session:
        assert (await session.call_tool("echo", {"text": "alive"})).content[0].text == "alive"
