"""`mcpstore policy check FILE.mcpb --org acme` against a real appliance."""

from __future__ import annotations

import asyncio

import pytest

from mcpstore_appliance.cli.main import main
from tests.seed import FAST_LEDGER, bundle_for, make_org, publish


@pytest.fixture
async def appliance(start_app, tmp_path, monkeypatch):
    app = await start_app(**FAST_LEDGER)
    monkeypatch.setenv("MCPSTORE_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.setenv("MCPSTORE_REGISTRY", app.base_url)
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    await make_org(app, alice, "acme", {"bob": "member"})
    await publish(app, alice, "tool", namespace="acme")
    await publish(app, alice, "other", namespace="acme")
    status, body, _ = await app.client.with_token(alice).put("/api/orgs/acme/policy", json={"policy": {
        "allow_only_listed": True, "allowed": {"acme/tool": "^1.0.0"}, "auto_install": ["acme/tool"]}})
    assert status == 200, body
    monkeypatch.setenv("MCPSTORE_TOKEN", bob)  # a member, not an admin
    return app


async def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))
    out, err = capsys.readouterr()
    return code, out, err


async def test_policy_check_says_whether_and_why(appliance, capsys, tmp_path):
    for name in ("tool", "other"):
        (tmp_path / f"{name}.mcpb").write_bytes(bundle_for(name)[0])
    (tmp_path / "stranger.mcpb").write_bytes(b"PK not a published bundle")
    code, out, _ = await run(capsys, "policy", "check", str(tmp_path / "tool.mcpb"), "--org", "acme")
    assert code == 0 and out.startswith("allowed: acme/tool 1.0.0 by the policy of acme") and "automatically" in out
    code, out, _ = await run(capsys, "policy", "check", str(tmp_path / "other.mcpb"), "--org", "acme")
    assert code == 4 and "refused: acme/other 1.0.0" in out and "not on your organization's list" in out
    assert "[not_allowlisted]" in out
    code, out, _ = await run(capsys, "policy", "check", str(tmp_path / "stranger.mcpb"), "--org", "acme")
    assert code == 4 and "[unknown_bundle]" in out
    code, _, err = await run(capsys, "policy", "check", str(tmp_path / "tool.mcpb"), "--org", "nosuch")
    assert code == 1 and "404" in err
    code, _, err = await run(capsys, "policy", "check", str(tmp_path / "missing.mcpb"), "--org", "acme")
    assert code == 1 and "cannot read" in err
