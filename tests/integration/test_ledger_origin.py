"""The ledger's origin (the checkpoint's first line and its key's name, which clients pin) is fixed when the
data folder is first used and survives restarts on other ports; changing it is an explicit operator command
that warns; a config that asks for another origin stops the start. Driven through the real `mcpstore` CLI."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_cli_operator import Server, get_json, run


def ledger_of(data: Path, *extra: str, env: dict | None = None) -> dict:
    """Start `mcpstore serve` on a fresh port, read /ledger (origin, key, signed checkpoint), stop it."""
    server = Server(data, *extra, env=env)
    try:
        server.wait_ready()
        info = get_json(server.url + "/ledger")
        info["port"] = server.port
        return info
    finally:
        assert server.stop() == 0


def test_the_origin_stays_when_the_appliance_restarts_on_another_port(tmp_path):
    data = tmp_path / "data"
    first = ledger_of(data)
    again = ledger_of(data)
    assert first["port"] != again["port"]
    assert first["origin"] == again["origin"] == f"127.0.0.1:{first['port']}/ledger"
    assert again["verifier_key"] == first["verifier_key"]  # what clients pinned still verifies
    assert again["checkpoint"].startswith(first["origin"] + "\n")
    assert (data / "keys" / "ledger.origin").read_text() == first["origin"] + "\n"
    keys = run("ledger", "keys", "--data", str(data))
    assert keys.stdout.splitlines()[0] == f"ledger  {first['verifier_key']}"


def test_a_different_origin_in_the_config_stops_the_start(tmp_path):
    data = tmp_path / "data"
    origin = ledger_of(data)["origin"]
    server = Server(data, env={"MCPSTORE_LEDGER__ORIGIN": "elsewhere.example/ledger"})
    assert server.process.wait(timeout=60) != 0
    for reader in server.readers:  # they take the last lines
        reader.join(timeout=5)
    message = "".join(server.errors)
    assert "elsewhere.example/ledger" in message and "mcpstore ledger set-origin" in message, message
    assert ledger_of(data, env={"MCPSTORE_LEDGER__ORIGIN": origin})["origin"] == origin  # the same one is fine


def test_changing_the_origin_is_explicit_and_warns(tmp_path):
    data = tmp_path / "data"
    before = ledger_of(data)
    refused = run("ledger", "set-origin", "mcp.example.com/ledger", "--data", str(data), input="")
    assert refused.returncode == 1 and "add --yes" in refused.stderr
    assert "will reject checkpoints" in refused.stderr and before["verifier_key"] in refused.stderr
    assert ledger_of(data)["origin"] == before["origin"]  # nothing changed

    bad = run("ledger", "set-origin", "has space", "--yes", "--data", str(data))
    assert bad.returncode == 1 and "without spaces" in bad.stderr

    changed = run("ledger", "set-origin", "mcp.example.com/ledger", "--yes", "--data", str(data))
    assert changed.returncode == 0, changed.stderr
    assert "will reject checkpoints" in changed.stderr and "restart" in changed.stdout
    after = ledger_of(data)
    assert after["origin"] == "mcp.example.com/ledger" and after["checkpoint"].startswith("mcp.example.com/ledger\n")
    assert after["verifier_key"].startswith("mcp.example.com/ledger+") and after["verifier_key"] in changed.stdout


def test_a_folder_from_before_the_origin_was_kept_keeps_the_origin_of_its_checkpoints(tmp_path):
    data = tmp_path / "data"
    old = ledger_of(data)
    (data / "keys" / "ledger.origin").unlink()  # as an earlier version left it
    assert ledger_of(data)["origin"] == old["origin"]
    assert (data / "keys" / "ledger.origin").read_text() == old["origin"] + "\n"
