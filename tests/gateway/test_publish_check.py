"""At publish, a hosted bundle is started once in a real bubblewrap sandbox (gateway/publish_check.py): a server
that matches its manifest is published; one whose tools differ, that does not start, or that hangs is
quarantined with the reason in its findings; tools without arguments that fail are reported."""

from __future__ import annotations

import asyncio
import time

from tests.data.bundles import bundle_bytes, python_manifest
from tests.gateway.servers import SERVER, publish_bundle

# The test server's tools/list names every tool it has; each manifest below declares some of them.
CALM = ("echo", "whoami", "writes", "garbage")  # the tools that answer when called without arguments


def bundle(name: str, declared: tuple[str, ...], server: str = SERVER, **manifest_extra) -> bytes:
    manifest = python_manifest(tools=[{"name": t, "description": t} for t in declared])
    manifest["name"] = name
    manifest.update(manifest_extra)
    return bundle_bytes(manifest, {"server/main.py": server})


def findings(result: dict) -> dict[str, str]:
    """check id -> its messages, one per line (hosted checks only)."""
    found: dict[str, str] = {}
    for f in result["findings"]:
        if f["check_id"].startswith("hosted."):
            found[f["check_id"]] = (found.get(f["check_id"], "") + "\n" + f["message"]).strip()
    return found


def calm_server() -> str:
    """The test server with only its harmless tools (the others would be called without arguments)."""
    return SERVER.replace("TOOLS = {", "TOOLS = {k: v for k, v in {").replace(
        '''    "sleep": lambda a: time.sleep(float(a["seconds"])) or "slept",
}''', '''    "sleep": lambda a: time.sleep(float(a["seconds"])) or "slept",
}.items() if k in %r}''' % (CALM,))


async def test_a_server_matching_its_manifest_is_published(hosted_app):
    app = await hosted_app(publish_check=True)
    _, token = await app.user("alice")
    result = await publish_bundle(app, token, bundle("calm", CALM, calm_server()))
    assert result["state"] == "published", result["findings"]
    assert findings(result) == {}


async def test_tools_that_differ_from_the_manifest_quarantine_the_version(hosted_app):
    app = await hosted_app(publish_check=True)
    _, token = await app.user("alice")
    result = await publish_bundle(app, token, bundle("differs", ("echo", "whoami", "invented"), calm_server()))
    assert result["state"] == "quarantined"
    message = findings(result)["hosted.tools_mismatch"]
    assert message.endswith("declared but not served: invented; served but not declared: garbage, writes")
    # a quarantined version is not callable
    status, _, _ = await app.client.with_token(token).post("/api/invoke/alice/differs",
                                                           json={"tool": "echo", "arguments": {"text": "x"}})
    assert status == 404


def slow_bundle(name: str, mode: str, declared: tuple[str, ...] = CALM) -> bytes:
    manifest = python_manifest(tools=[{"name": t, "description": t} for t in declared])
    manifest["name"] = name
    manifest["server"]["mcp_config"]["env"] = {"HOSTILE_MODE": mode}
    return bundle_bytes(manifest, {"server/main.py": calm_server()})


async def state_of(app, token: str, ref: str) -> str:
    status, body, _ = await app.client.with_token(token).get(f"/api/packages/{ref}/versions")
    assert status == 200, body
    return body["versions"][0]["state"]


async def settled(app, token: str, ref: str, seconds: float = 30) -> str:
    deadline = time.monotonic() + seconds
    while (state := await state_of(app, token, ref)) == "pending" and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    return state


async def test_a_check_outliving_the_publish_leaves_the_version_pending_then_published(hosted_app):
    app = await hosted_app(publish_check=True, publish_check_seconds=1.5, publish_check_pending_seconds=30)
    alice, token = await app.user("alice")
    _, other = await app.user("bob")
    _, admin = await app.user("root", admin=True)
    started = time.monotonic()
    result = await publish_bundle(app, token, slow_bundle("slow", "slow:4"))
    assert result["state"] == "pending" and result["ledger"] is None
    assert time.monotonic() - started < 4  # the publish did not wait for the check
    # pending: its publisher sees it checking; nobody can install or call it; others do not see it at all
    assert await state_of(app, token, "alice/slow") == "pending"
    session_id, _ = await app.services.accounts.start_session(alice)
    status, html, _ = await app.client.get("/dashboard/packages/alice/slow", headers={
        "Cookie": f"mcpstore_session={session_id}", "Accept": "text/html"})
    assert status == 200 and "checking: the server is being started in the sandbox" in html.decode()
    bob = app.client.with_token(other)
    assert (await bob.get("/api/packages/alice/slow/versions"))[1]["versions"] == []
    assert "alice/slow" not in str((await bob.get("/api/search?q=slow"))[1])
    assert (await bob.get("/api/packages/alice/slow/versions/1.0.0/download"))[0] == 404
    assert "alice/slow" not in str((await app.client.get("/v0.1/servers?search=slow"))[1])
    assert (await bob.post("/api/invoke/alice/slow", json={"tool": "echo", "arguments": {"text": "x"}}))[0] == 404
    queue = (await app.client.with_token(admin).get("/api/admin/quarantine"))[1]
    assert queue["items"] == []  # not for review while it is being checked
    status, body, _ = await app.client.with_token(admin).post("/api/admin/quarantine/alice/slow/1.0.0/release")
    assert status == 409 and "still running" in body["error"]["message"]
    # the check ends in the background: published, with its ledger leaf, and callable
    assert await settled(app, token, "alice/slow") == "published"
    status, version, _ = await bob.get("/api/packages/alice/slow/versions/1.0.0")
    assert status == 200 and version["ledger_index"] is not None
    status, body, _ = await bob.post("/api/invoke/alice/slow", json={"tool": "echo", "arguments": {"text": "hi"}})
    assert status == 200 and body["result"]["content"][0]["text"] == "hi"


async def test_a_pending_check_that_finds_a_mismatch_quarantines_with_its_finding(hosted_app):
    app = await hosted_app(publish_check=True, publish_check_seconds=1, publish_check_pending_seconds=30)
    _, token = await app.user("alice")
    _, admin = await app.user("root", admin=True)
    result = await publish_bundle(app, token, slow_bundle("odd", "slow:2", ("echo", "whoami", "invented")))
    assert result["state"] == "pending"
    assert await settled(app, token, "alice/odd") == "quarantined"
    queue = (await app.client.with_token(admin).get("/api/admin/quarantine"))[1]
    [item] = queue["items"]
    assert any(f["check_id"] == "hosted.tools_mismatch" and "invented" in f["message"] for f in item["findings"])


async def test_a_server_that_never_answers_is_quarantined_after_the_longer_limit(hosted_app):
    app = await hosted_app(publish_check=True, publish_check_seconds=1, publish_check_pending_seconds=3,
                           init_timeout_seconds=10)
    _, token = await app.user("alice")
    _, admin = await app.user("root", admin=True)
    result = await publish_bundle(app, token, slow_bundle("silent", "silent"))
    assert result["state"] == "pending"
    assert await settled(app, token, "alice/silent") == "quarantined"
    [item] = (await app.client.with_token(admin).get("/api/admin/quarantine"))[1]["items"]
    assert any(f["check_id"] == "hosted.timeout" and "over 3 s" in f["message"] for f in item["findings"])


async def test_a_server_that_crashes_at_start_is_quarantined(hosted_app):
    app = await hosted_app(publish_check=True)
    _, token = await app.user("alice")
    result = await publish_bundle(app, token, bundle("broken", CALM, "import sys\nsys.exit(7)\n"))
    assert result["state"] == "quarantined"
    assert "did not initialise" in findings(result)["hosted.start_failed"]


async def test_tools_failing_without_arguments_are_reported(hosted_app):
    app = await hosted_app(publish_check=True)
    _, token = await app.user("alice")
    failing = calm_server().replace('"whoami": lambda a: f"uid={os.getuid()}",', '"whoami": lambda a: a["who"],')
    result = await publish_bundle(app, token, bundle("failing", CALM, failing))
    assert "tool 'whoami' failed when called without arguments" in findings(result)["hosted.tool_error"]
    assert result["state"] == "published"  # medium: reported, not blocking


async def test_a_server_needing_settings_is_not_started_and_says_why(hosted_app):
    app = await hosted_app(publish_check=True)
    _, token = await app.user("alice")
    fields = {"api_key": {"type": "string", "title": "Key", "description": "k", "required": True, "sensitive": True}}
    result = await publish_bundle(app, token, bundle("keyed", CALM, calm_server(), user_config=fields))
    assert result["state"] == "published"
    assert "api_key" in findings(result)["hosted.not_started"]
