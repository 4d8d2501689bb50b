"""`mcpstore search`, `mcpstore info` and `mcpstore download` against a real appliance."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from mcpstore_appliance.cli.main import main
from tests.seed import FAST_LEDGER, bundle_for, publish


@pytest.fixture
async def appliance(start_app, tmp_path, monkeypatch):
    app = await start_app(**FAST_LEDGER)
    monkeypatch.setenv("MCPSTORE_CONFIG_DIR", str(tmp_path / "cli-config"))
    monkeypatch.setenv("MCPSTORE_REGISTRY", app.base_url)
    monkeypatch.delenv("MCPSTORE_TOKEN", raising=False)
    _, token = await app.user("alice")
    await publish(app, token, "weather", "1.0.0", description="Weather forecasts", keywords=["weather"],
                  tools=[{"name": "get_forecast", "description": "Forecast for a city"}],
                  user_config={"api_key": {"type": "string", "title": "Key", "description": "k", "sensitive": True}})
    await publish(app, token, "weather", "1.1.0", description="Weather forecasts, faster", keywords=["weather"],
                  options={"pricing": "per_call", "amount": "0.05", "currency": "usd"})
    await publish(app, token, "notes", description="Plain notes")
    app.token = token
    return app


async def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(argv))  # the CLI blocks; the app keeps serving on the loop
    out, err = capsys.readouterr()
    return code, out, err


async def test_search(appliance, capsys):
    code, out, _ = await run(capsys, "search", "weather")
    assert code == 0
    assert "alice/weather@1.1.0" in out and "0.05 USD/call" in out and "1 of 1 package(s)" in out
    code, out, _ = await run(capsys, "search", "wether")
    assert code == 0 and "showing results for: weather" in out
    code, out, _ = await run(capsys, "search", "--sort", "name", "--limit", "1")
    assert code == 0 and "alice/notes" in out and "1 of 2 package(s)" in out and "--cursor " in out
    cursor = out.split("--cursor ")[1].split()[0]
    code, out, _ = await run(capsys, "search", "--sort", "name", "--limit", "1", "--cursor", cursor)
    assert code == 0 and "alice/weather@1.1.0" in out and "--cursor" not in out
    code, out, _ = await run(capsys, "search", "--pricing", "free")
    assert code == 0 and "alice/notes" in out and "alice/weather" not in out  # 1.1.0 made it paid
    code, out, _ = await run(capsys, "search", "nothing-like-this-exists")
    assert code == 0 and "no packages found" in out
    code, _, err = await run(capsys, "search", "--limit", "500")
    assert code == 1 and "limit must be between 1 and 100" in err


async def test_info(appliance, capsys):
    code, out, _ = await run(capsys, "info", "alice/weather")
    assert code == 0
    assert "latest:     1.1.0" in out and "signature:  unsigned" in out and "ledger:     leaf" in out
    code, out, _ = await run(capsys, "info", "alice/weather", "--json")
    assert code == 0 and '"id": "alice/weather"' in out
    code, _, err = await run(capsys, "info", "alice/nope")
    assert code == 1 and "no package alice/nope" in err
    code, _, err = await run(capsys, "info", "not a name")
    assert code == 1 and "is not a package name" in err


async def test_download(appliance, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MCPSTORE_TOKEN", appliance.token)  # weather is paid from 1.1.0: its creator may download
    data, sha256 = bundle_for("weather", "1.0.0", description="Weather forecasts", keywords=["weather"],
                              tools=[{"name": "get_forecast", "description": "Forecast for a city"}],
                              user_config={"api_key": {"type": "string", "title": "Key", "description": "k",
                                                       "sensitive": True}})
    target = tmp_path / "out" / "w.mcpb"
    code, out, _ = await run(capsys, "download", "alice/weather@1.0.0", "-o", str(target))
    assert code == 0 and f"sha256:{sha256}" in out
    assert target.read_bytes() == data
    latest = tmp_path / "latest.mcpb"
    code, out, _ = await run(capsys, "download", "alice/weather", "--output", str(latest))
    assert code == 0 and hashlib.sha256(latest.read_bytes()).hexdigest() in out
    code, _, err = await run(capsys, "download", "alice/weather@9.9.9", "-o", str(tmp_path / "x.mcpb"))
    assert code == 1 and "no version" in err and not (tmp_path / "x.mcpb").exists()
    assert [p.name for p in target.parent.iterdir()] == ["w.mcpb"]  # no partial files left behind
