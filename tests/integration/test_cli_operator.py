"""The operator commands as a user runs them: `mcpstore serve` on an empty folder, admin, backup, restore."""

from __future__ import annotations

import json
import os
import sqlite3
import signal
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

MCPSTORE = [sys.executable, "-m", "mcpstore_appliance.cli.main"]
PASSWORD = "correct horse battery"


def run(*args: str, input: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*MCPSTORE, *args], input=input, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


class Server:
    def __init__(self, data: Path, *extra: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([*MCPSTORE, "serve", "--data", str(data), "--port", str(self.port), *extra],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self.errors: list[str] = []  # stderr, read as it comes: a full pipe would block the server's logging
        self.readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                        for stream, into in ((self.process.stdout, self.lines), (self.process.stderr, self.errors))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                for reader in self.readers:  # they take the last lines
                    reader.join(timeout=5)
                raise AssertionError(f"serve exited: {''.join(self.errors)}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("serve did not become ready")

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


def get_json(url: str, token: str | None = None):
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_version():
    result = run("--version")
    assert result.returncode == 0 and result.stdout.startswith("mcpstore ")


def test_serve_on_empty_folder_creates_everything_and_reuses_it(tmp_path):
    data = tmp_path / "fresh"
    server = Server(data)
    try:
        server.wait_ready()
        assert (data / "mcpstore.sqlite3").exists() and (data / "blobs").is_dir()
        for key in ("ledger.key", "jwt.key"):
            assert stat.S_IMODE((data / "keys" / key).stat().st_mode) == 0o600
        time.sleep(0.2)
        output = "".join(server.lines)
        assert "setup?code=" in output and "mcpstore admin create-user --admin" in output
    finally:
        assert server.stop() == 0
    key_before = (data / "keys" / "ledger.key").read_bytes()

    assert run("admin", "create-user", "--admin", "--email", "root@example.com", "--username", "root",
               "--password-stdin", "--data", str(data), input=PASSWORD + "\n").returncode == 0
    again = Server(data)
    try:
        again.wait_ready()
        time.sleep(0.2)
        assert "setup?code=" not in "".join(again.lines)  # not fresh any more
        assert (data / "keys" / "ledger.key").read_bytes() == key_before
    finally:
        again.stop()


def test_serve_runs_on_uvloop_by_default_and_on_asyncio_when_configured(tmp_path):
    for env, expected in (({}, "event loop: uvloop"), ({"MCPSTORE_SERVER__EVENT_LOOP": "asyncio"},
                                                       "event loop: asyncio")):
        server = Server(tmp_path / "loop", env=env)
        try:
            server.wait_ready()
            assert get_json(server.url + "/healthz")["status"] == "ok"
            listening = next(line for line in server.lines if line.startswith("mcpstore listening on"))
            assert listening.rstrip().endswith(expected + ")")
        finally:
            assert server.stop() == 0


def test_serve_stops_with_one_line_when_uvloop_is_required_but_missing(tmp_path):
    # A sitecustomize that hides uvloop, as on a platform where it does not build.
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['uvloop'] = None\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(hide), os.environ.get("PYTHONPATH")]))}
    result = run("serve", "--data", str(tmp_path / "d"), "--port", "0",
                 env={**env, "MCPSTORE_SERVER__EVENT_LOOP": "uvloop"})
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ('error: server.event_loop is "uvloop" but uvloop is not '
                                                      'installed (pip install uvloop, or set it to "auto" or '
                                                      '"asyncio")')
    assert not (tmp_path / "d").exists()
    server = Server(tmp_path / "fallback", env=env)  # auto falls back to asyncio
    try:
        server.wait_ready()
        assert any("event loop: asyncio)" in line for line in server.lines)
    finally:
        assert server.stop() == 0


def test_bad_config_stops_startup_with_one_line_and_starts_nothing(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[server]\nprot = 8080\n")
    result = run("serve", "--data", str(tmp_path / "d"), "--config", str(config))
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: config: unknown key 'server.prot' in {config} or MCPSTORE_* environment"
    assert not (tmp_path / "d").exists()
    result = run("serve", "--data", str(tmp_path / "d"), env={"MCPSTORE_ACCOUNTS__SIGNUP": "maybe"})
    assert result.returncode == 1 and "'accounts.signup'" in result.stderr and not (tmp_path / "d").exists()


def migrated_by_a_newer_version(database: Path):
    """Record migration 999 as a later version would; returns a snapshot of the schema to compare."""
    with sqlite3.connect(database) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, 'from_the_future', 0)")

    def schema() -> list:
        with sqlite3.connect(database) as conn:
            return [*conn.execute("SELECT * FROM schema_migrations ORDER BY 1"),
                    *conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY 2")]

    return schema


def test_an_older_version_refuses_a_database_a_newer_one_migrated(tmp_path):
    """A downgrade (an older binary on a newer schema) stops with one line and leaves the database as it was."""
    data = tmp_path / "d"
    assert run("admin", "create-user", "--email", "a@example.com", "--username", "alice", "--password-stdin",
               "--data", str(data), input=PASSWORD + "\n").returncode == 0
    schema = migrated_by_a_newer_version(data / "mcpstore.sqlite3")
    before = schema()
    result = run("serve", "--data", str(data), "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.startswith("error: the database was migrated by a newer mcpstore (schema 999;"), result.stderr
    assert "restore a backup" in result.stderr and "Traceback" not in result.stderr
    assert schema() == before


def test_health_probes_readyz_at_the_port_serve_uses(tmp_path):
    """`mcpstore health` (the container's HEALTHCHECK) finds the port from the same MCPSTORE_* variables."""
    server = Server(tmp_path / "h")
    server.wait_ready()
    try:
        probe = run("health", env={"MCPSTORE_SERVER__PORT": str(server.port), "MCPSTORE_SERVER__HOST": "0.0.0.0"})
        assert probe.returncode == 0 and probe.stdout.startswith("200 "), probe
        assert run("health", "--url", server.url).returncode == 0
    finally:
        assert server.stop() == 0
    refused = run("health", "--url", server.url)
    assert refused.returncode == 1 and refused.stderr.startswith(f"unhealthy: {server.url}/readyz:"), refused


def test_sigterm_finishes_requests_in_flight(tmp_path):
    data = tmp_path / "graceful"
    assert run("admin", "create-user", "--email", "s@example.com", "--username", "slow", "--password-stdin",
               "--data", str(data), input=PASSWORD + "\n").returncode == 0
    server = Server(data)
    server.wait_ready()
    # A password login costs an argon2id hash: start several, then SIGTERM while they run.
    results: list[int] = []

    def login():
        body = json.dumps({"login": "slow", "password": PASSWORD, "name": "t"}).encode()
        request = urllib.request.Request(server.url + "/api/auth/token", data=body,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                results.append(response.status)
        except OSError as exc:
            results.append(getattr(exc, "code", 0))

    threads = [threading.Thread(target=login) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    assert server.stop() == 0
    for thread in threads:
        thread.join()
    assert results.count(201) >= 1 and all(code == 201 for code in results if code)


def test_admin_commands(tmp_path):
    data = str(tmp_path / "admin")
    assert run("admin", "create-user", "--admin", "--email", "a@example.com", "--username", "ann",
               "--password-stdin", "--data", data, input=PASSWORD + "\n").returncode == 0
    assert run("admin", "create-user", "--email", "b@example.com", "--username", "ben",
               "--password-stdin", "--data", data, input=PASSWORD + "\n").returncode == 0
    result = run("admin", "create-user", "--email", "b@example.com", "--username", "ben2",
                 "--password-stdin", "--data", data, input=PASSWORD + "\n")
    assert result.returncode == 1 and "already exists" in result.stderr
    assert run("admin", "create-org", "--slug", "acme", "--owner", "ann", "--data", data).returncode == 0
    result = run("admin", "add-member", "acme", "ben", "--role", "publisher", "--data", data)
    assert result.returncode == 0 and "ben is now publisher of acme" in result.stdout
    result = run("admin", "add-member", "acme", "nobody", "--data", data)
    assert result.returncode == 1 and "no user named 'nobody'" in result.stderr
    token = run("admin", "create-token", "ben", "--scopes", "read", "--data", data)
    assert token.returncode == 0 and token.stdout.startswith("mcps_")
    listing = run("admin", "list-users", "--data", data)
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == ["ann", "ben"]

    server = Server(Path(data))
    try:
        server.wait_ready()
        me = get_json(server.url + "/api/me", token.stdout.strip())
        assert me["username"] == "ben" and me["scopes"] == ["read"] and me["orgs"][0]["role"] == "publisher"
    finally:
        server.stop()


def test_backup_while_serving_and_restore(tmp_path):
    data = tmp_path / "live"
    assert run("admin", "create-user", "--email", "c@example.com", "--username", "cat", "--password-stdin",
               "--data", str(data), input=PASSWORD + "\n").returncode == 0
    blob_file = tmp_path / "blob.bin"
    blob_file.write_bytes(os.urandom(4096))
    import asyncio

    from mcpstore_appliance.blobs import open_blob_store
    from mcpstore_appliance.config import load_settings

    async def put():
        store = open_blob_store(load_settings(environ={}, data_dir=str(data)))
        try:
            return await store.put_file(blob_file)
        finally:
            await store.close()

    stored = asyncio.run(put())
    server = Server(data)
    try:
        server.wait_ready()
        backup = tmp_path / "backup"
        result = run("backup", str(backup), "--data", str(data))
        assert result.returncode == 0, result.stderr
        assert "backing up database" in result.stderr  # long work says what it does
    finally:
        server.stop()
    assert stored.sha256 in (backup / "blobs.txt").read_text()
    assert run("backup", str(backup), "--data", str(data)).returncode == 1  # never overwrites a backup

    restored = tmp_path / "restored"
    result = run("restore", str(backup), "--data", str(restored))
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((restored / "keys" / "ledger.key").stat().st_mode) == 0o600
    assert (restored / "keys" / "ledger.key").read_bytes() == (data / "keys" / "ledger.key").read_bytes()
    assert run("restore", str(backup), "--data", str(restored)).returncode == 1  # refuses a non-empty folder

    token = run("admin", "create-token", "cat", "--data", str(restored)).stdout.strip()
    server = Server(restored)
    try:
        server.wait_ready()
        assert get_json(server.url + "/api/me", token)["username"] == "cat"
    finally:
        server.stop()

    async def fetch():
        store = open_blob_store(load_settings(environ={}, data_dir=str(restored)))
        try:
            return b"".join([chunk async for chunk in store.open_range(stored.sha256)])
        finally:
            await store.close()

    assert asyncio.run(fetch()) == blob_file.read_bytes()


def test_a_stop_signal_as_soon_as_the_port_answers_still_shuts_down_cleanly(tmp_path):
    """The port answers before start-up has finished (the setup link of a fresh folder is written after it):
    a SIGTERM from a supervisor in that window ends the process with its clean shutdown, not by the signal."""
    server = Server(tmp_path / "d")
    deadline = time.monotonic() + 30
    while not any(line.startswith("mcpstore listening on") for line in server.lines):
        assert server.process.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.001)
    assert server.stop() == 0
    server.readers[0].join(timeout=5)  # the last lines are read after the exit
    assert "mcpstore shutting down" in "".join(server.lines)
