"""The README's user flows against the PyInstaller binary, in a clean environment (no Python on PATH, an empty
HOME, a fresh data folder): start, first admin, publish a bundle packed by the official `mcpb` CLI, search,
download, `mcpstore verify`, backup and restore; SIGTERM ends `serve` with exit 0; the binary refuses a
database that a newer version migrated. The binary is built by packaging/build.sh (conftest.py)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mcpstore_appliance import __version__
from mcpstore_appliance.cli.main import build_parser
from tests.conftest import free_port
from tests.integration.test_cli_operator import migrated_by_a_newer_version
from tests.e2e.conftest import mcpb_cli, example_servers  # noqa: F401 (fixtures: the official mcpb CLI)
from tests.packaging.conftest import ROOT, clean_environment

PASSWORD = "choose a passphrase of 10 characters or more"
pytestmark = pytest.mark.e2e


class Binary:
    """`mcpstore` run by name from the clean PATH, in a working folder of its own."""

    def __init__(self, env: dict[str, str], cwd: Path):
        self.env, self.cwd = env, cwd

    def run(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(["mcpstore", *args], env=self.env, cwd=self.cwd, input=input, capture_output=True,
                                text=True, timeout=180)
        if check and result.returncode != 0:
            raise AssertionError(f"mcpstore {' '.join(args)} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def serve(self, *args: str) -> "Serving":
        return Serving(self, free_port(), args)


class Serving:
    def __init__(self, binary: Binary, port: int, args: tuple[str, ...]):
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(["mcpstore", "serve", "--port", str(port), *args], env=binary.env,
                                        cwd=binary.cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.output: list[str] = []
        threading.Thread(target=lambda: self.output.extend(self.process.stdout), daemon=True).start()
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"serve exited {self.process.returncode}:\n{''.join(self.output)}"
            assert time.monotonic() < deadline, f"serve did not answer /readyz:\n{''.join(self.output)}"
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                time.sleep(0.1)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def test_version_names_the_version_and_the_git_revision(binary, tmp_path):
    result = Binary(clean_environment(tmp_path, binary), tmp_path).run("--version")
    match = re.fullmatch(r"mcpstore (\S+) \(git ([0-9a-f]{12})(-dirty)?, built \S+Z\)\n", result.stdout)
    assert match and match[1] == __version__, result.stdout
    # the revision is a commit of this repository (the cache may hold a build of identical sources made at
    # an earlier commit)
    assert subprocess.run(["git", "cat-file", "-e", f"{match[2]}^{{commit}}"], cwd=ROOT).returncode == 0


def test_every_subcommand_is_registered_in_the_binary(binary, tmp_path):
    expected = sorted(build_parser()._subparsers._group_actions[0].choices)  # the in-process CLI's commands
    refused = Binary(clean_environment(tmp_path, binary), tmp_path).run("no-such-command", check=False)
    listed = re.search(r"invalid choice: 'no-such-command' \(choose from (.*)\)", refused.stderr)
    assert listed and sorted(re.findall(r"'([a-z-]+)'", listed[1])) == expected, refused.stderr


@pytest.mark.timeout(600)
def test_the_readme_flows_run_on_the_binary(binary, example_servers, tmp_path):  # noqa: F811
    work = tmp_path / "work"
    work.mkdir()
    mcpstore = Binary(clean_environment(tmp_path, binary), work)
    bundle = work / "hello-node.mcpb"
    bundle.write_bytes(example_servers["node"].read_bytes())  # packed by the official mcpb CLI

    server = mcpstore.serve()  # on ./mcpstore-data, created fresh
    assert "event loop: uvloop" in "".join(server.output)  # uvloop is in the binary
    try:
        mcpstore.run("admin", "create-user", "--admin", "--email", "you@example.com", "--username", "you",
                     "--password-stdin", input=PASSWORD + "\n")
        mcpstore.run("login", "--registry", server.url, "--login", "you", "--password-stdin", input=PASSWORD + "\n")
        published = mcpstore.run("publish", "hello-node.mcpb", "--pricing", "per_call", "--amount", "0.10",
                                 "--currency", "usd", "--tier", "hobbyist")
        assert "published you/hello-node@1.0.0" in published.stdout
        assert re.search(r"^you/hello-node@1\.0\.0 +0\.10 USD/call", mcpstore.run("search", "hello").stdout, re.M)
        mcpstore.run("download", "you/hello-node", "-o", "downloaded.mcpb")
        assert (work / "downloaded.mcpb").read_bytes() == bundle.read_bytes()
        assert "verified: downloaded.mcpb" in mcpstore.run("verify", "downloaded.mcpb", "--registry", server.url).stdout
        mcpstore.run("ledger", "verify")  # the full audit, with its worker processes, inside the binary
        mcpstore.run("backup", str(tmp_path / "backup"))  # while serving
    finally:
        assert server.stop() == 0, "".join(server.output)

    mcpstore.run("restore", str(tmp_path / "backup"), "--data", str(tmp_path / "restored"))
    restored = mcpstore.serve("--data", str(tmp_path / "restored"))
    try:
        # the restored accounts sign in, and the restored blobs download
        mcpstore.run("login", "--registry", restored.url, "--login", "you", "--password-stdin", input=PASSWORD + "\n")
        mcpstore.run("download", "you/hello-node", "-o", "again.mcpb", "--registry", restored.url)
        assert (work / "again.mcpb").read_bytes() == bundle.read_bytes()
        # the restored registry signs with the same ledger key that the first verify pinned
        assert "verified: again.mcpb" in mcpstore.run("verify", "again.mcpb", "--registry", restored.url).stdout
    finally:
        assert restored.stop() == 0, "".join(restored.output)


def test_the_binary_refuses_a_database_a_newer_version_migrated(binary, tmp_path):
    """A downgrade: the binary stops with one line and leaves the schema as it was (the same check runs from
    source in tests/integration/test_cli_operator.py)."""
    mcpstore = Binary(clean_environment(tmp_path, binary), tmp_path)
    mcpstore.run("admin", "create-user", "--email", "a@example.com", "--username", "alice", "--password-stdin",
                 "--data", "d", input=PASSWORD + "\n")
    schema = migrated_by_a_newer_version(tmp_path / "d" / "mcpstore.sqlite3")
    before = schema()
    result = mcpstore.run("serve", "--data", "d", "--port", str(free_port()), check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("error: the database was migrated by a newer mcpstore (schema 999;"), result.stderr
    assert "Traceback" not in result.stderr and schema() == before


def test_the_binary_serves_with_two_workers_and_carries_the_sandbox_filter(binary, tmp_path):
    """`serve --workers 2` from the binary (the supervisor starts the binary itself as its workers), and the
    seccomp filter built at packaging time, for hosts with no Python to build one (the container image)."""
    bundled = [path for path in Path(binary).resolve().parent.rglob("seccomp.bpf")]
    assert bundled and bundled[0].stat().st_size > 0 and bundled[0].stat().st_size % 8 == 0  # BPF instructions
    mcpstore = Binary(clean_environment(tmp_path, binary), tmp_path)
    server = mcpstore.serve("--workers", "2")
    try:
        seen, deadline = set(), time.monotonic() + 60
        while seen != {1, 2}:
            assert time.monotonic() < deadline, f"answered: {seen}\n{''.join(server.output)}"
            with urllib.request.urlopen(server.url + "/readyz", timeout=5) as response:  # a new connection each
                seen.add(json.loads(response.read())["worker"]["number"])
    finally:
        assert server.stop() == 0, "".join(server.output)
    assert "mcpstore supervisor: all workers stopped" in "".join(server.output)
