"""A bounded schemathesis run against a real appliance with seeded data: every operation of /api/openapi.json,
and the MCP Registry API against the registry's own OpenAPI (tests/data/mcp-registry-openapi.yaml). Zero 5xx and
zero responses that contradict the documents (schema, status code, content type).

Both runs go at once, each for RUN_SECONDS (coverage, fuzzing and stateful phases until the time is spent).
Path parameters are drawn from the seeded catalog half of the time (the rest is fuzzed), so the answers of real
packages, versions, organizations, blobs and ledger entries are checked too. (Schemathesis never sends a path
parameter holding a '/', which every registry server name does: the per-server registry reads are checked
against the registry's document by test_registry_api.py instead.) The run's credentials are a read+publish
token that cannot take itself away: the token-revoking operation is pinned to a decoy token, and the token is
checked to work after the run. A failure prints schemathesis' report with the seed and a curl line to replay.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from tests.seed import FAST_LEDGER, bundle_for, deprecate, make_org, publish, yank

RUN_SECONDS = 100
REGISTRY_SPEC = Path(__file__).parents[1] / "data" / "mcp-registry-openapi.yaml"
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
# The registry's document lists few error statuses (tests/data/mcp-registry-openapi.yaml says why): its status
# codes are not checked, the shape of every answer it describes is.
REGISTRY_CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"
PREFIX = "com.example.mcp"

pytestmark = pytest.mark.fuzz


async def seed(app) -> dict:
    alice_user, alice = await app.user("alice")
    _, bob = await app.user("bob")
    for version in ("1.0.0", "1.1.0", "2.0.0-beta.1"):
        await publish(app, alice, "weather", version, description="Weather forecasts",
                      homepage="https://weather.example.com", keywords=["weather"])
    await yank(app, alice, "alice", "weather", "1.0.0")
    await deprecate(app, alice, "alice", "weather", "1.1.0", "use 2.x")
    await publish(app, bob, "notes", description="x" * 300, options={"pricing": "per_call", "amount": "0.10",
                                                                        "currency": "usd", "tier": "hobbyist"})
    await make_org(app, alice, "acme", {"bob": "publisher"})
    await publish(app, alice, "internal", namespace="acme")
    accounts = app.services.accounts
    principal = await accounts.principal_for_user(alice_user.id)
    _, decoy = await accounts.create_token(principal, "decoy", ["read"])
    fuzzer, info = await accounts.create_token(principal, "schemathesis", ["read", "publish"])
    return {"token": fuzzer, "token_id": info.id, "decoy_id": decoy.id,
            "digests": [bundle_for("weather", v, description="Weather forecasts",
                                   homepage="https://weather.example.com", keywords=["weather"])[1]
                        for v in ("1.0.0", "1.1.0")]}


def config(seeded: dict) -> str:
    """schemathesis.toml: seeded values for path parameters, and the 501s the registry API answers by design."""
    dictionaries = {
        "namespaces": ["alice", "bob", "acme"], "names": ["weather", "notes", "internal"],
        "versions": ["1.0.0", "1.1.0", "2.0.0-beta.1", "latest"], "slugs": ["acme"], "users": ["bob", "alice"],
        "digests": seeded["digests"], "indexes": ["0", "1", "2"], "decoys": [str(seeded["decoy_id"])],
    }
    bindings = {"namespace": "namespaces", "name": "names", "version": "versions", "slug": "slugs",
                "username": "users", "sha256": "digests", "index": "indexes"}
    lines = []
    for name, values in dictionaries.items():
        lines += [f"[dictionaries.{name}]", f"values = {json.dumps(values)}", ""]
    lines.append("[parameters]")
    lines += [f'"path.{param}" = {{ dictionary = "{name}", probability = 0.5 }}' for param, name in bindings.items()]
    lines += ['"path.token_id" = { dictionary = "decoys", probability = 1.0 }  # never the run\'s own token', "",
              "[[operations]]", r'include-path-regex = "^/v0(\\.1)?/(publish|servers/\\{[a-zA-Z_]+\\}/versions/'
              r'\\{version\\})$"', 'include-method-regex = "^(POST|PUT|DELETE)$"',
              '# a read-only registry answers 501 there, as the official one does for DELETE',
              'checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", "501"]']
    return "\n".join(lines) + "\n"


async def schemathesis(folder: Path, location: str, base_url: str, token: str, checks: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(folder / "schemathesis.toml"), "run",
        location, "--url", base_url, "-H", f"Authorization: Bearer {token}", "--checks", checks,
        "--max-time", str(RUN_SECONDS), "--request-timeout", "10", "--no-color", "--output-truncate", "true",
        cwd=folder, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=RUN_SECONDS + 120)
    return process.returncode, output.decode(errors="replace")


async def test_schemathesis_finds_no_server_error_and_no_schema_violation(start_app, tmp_path):
    app = await start_app(registry={"name_prefix": PREFIX}, **FAST_LEDGER)
    seeded = await seed(app)
    (tmp_path / "schemathesis.toml").write_text(config(seeded))
    runs = {"appliance": (app.base_url + "/api/openapi.json", CHECKS),
            "registry": (str(REGISTRY_SPEC), REGISTRY_CHECKS)}
    results = await asyncio.gather(*(schemathesis(tmp_path, location, app.base_url, seeded["token"], checks)
                                     for location, checks in runs.values()))
    for name, (code, output) in zip(runs, results):
        assert code == 0 and "Tested:" in output, f"schemathesis ({name}) found problems:\n{output[-12000:]}"
        print(f"schemathesis ({name}):", *[line for line in output.splitlines() if "generated" in line or
                                             line.startswith(("Seed:", "  Tested:"))], sep="\n  ")
    status, me, _ = await app.client.with_token(seeded["token"]).get("/api/me")
    assert status == 200 and me["username"] == "alice", "the run lost its own credentials"
