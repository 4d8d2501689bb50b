"""At publish, a hosted bundle is started once in a real bubblewrap sandbox (gateway/publish_check.py): a server
that matches its manifest is published; one whose tools differ, that does not start, or that hangs is
quarantined with the reason in its findings; tools without arguments that fail are reported."""

from __future__ import annotations

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


async def test_a_server_that_never_answers_is_quarantined_within_the_budget(hosted_app):
    app = await hosted_app(publish_check=True, publish_check_seconds=3, init_timeout_seconds=10)
    _, token = await app.user("alice")
    manifest_env = {"HOSTILE_MODE": "silent"}
    manifest = python_manifest(tools=[{"name": t, "description": t} for t in CALM])
    manifest["name"] = "silent"
    manifest["server"]["mcp_config"]["env"] = manifest_env
    silent = bundle_bytes(manifest, {"server/main.py": calm_server()})
    result = await publish_bundle(app, token, silent)
    assert result["state"] == "quarantined"
    assert "over 3 s" in findings(result)["hosted.timeout"]


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
