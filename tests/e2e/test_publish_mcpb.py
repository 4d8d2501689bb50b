"""Bundles packed and signed by the official mcpb 2.1.2 CLI, published with `mcpstore publish` run as a
subprocess against a server in its own process on a real port: statuses, fingerprints, sha256s, rejection of
a tampered signature, yank, and the 409 that follows."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.conftest import free_port
from tests.integration.publish_support import ServerProcess

PASSWORD = "correct horse battery staple"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Publisher:
    """One person at a terminal: their own config folder, running the `mcpstore` command."""

    def __init__(self, name: str, registry: str, home: Path):
        self.name, self.registry = name, registry
        self.env = {**os.environ, "MCPSTORE_CONFIG_DIR": str(home / name)}
        self.env.pop("MCPSTORE_TOKEN", None)
        self.env.pop("MCPSTORE_REGISTRY", None)

    def run(self, *args: str | Path, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "mcpstore_appliance.cli.main", *map(str, args)],
                              input=stdin, capture_output=True, text=True, env=self.env, timeout=120)

    def login(self) -> None:
        result = self.run("login", "--registry", self.registry, "--login", self.name, "--password-stdin",
                          stdin=PASSWORD + "\n")
        assert result.returncode == 0, result.stderr

    def publish(self, bundle: Path, *args: str, json_output: bool = True) -> subprocess.CompletedProcess:
        return self.run("publish", bundle, *args, *(["--json"] if json_output else []))


@pytest.fixture
async def registry(tmp_path):
    server = await ServerProcess(tmp_path / "data", free_port()).start()
    async with aiohttp.ClientSession() as session:
        for name in ("alice", "bob", "carol"):
            async with session.post(server.base_url + "/api/signup", json={
                    "email": f"{name}@example.com", "username": name, "password": PASSWORD}) as response:
                assert response.status == 201, await response.text()
    yield server
    server.stop()


@pytest.fixture
def people(registry, tmp_path) -> dict[str, Publisher]:
    people = {name: Publisher(name, registry.base_url, tmp_path / "home") for name in ("alice", "bob", "carol")}
    for person in people.values():
        person.login()
    return people


async def test_publish_bundles_made_by_mcpb(registry, people, example_servers, mcpb_cli, tmp_path):
    alice, bob, carol = people["alice"], people["bob"], people["carol"]

    # The node server, unsigned, with the human output and its progress bar.
    result = alice.publish(example_servers["node"], "--pricing", "per_call", "--amount", "0.10", "--currency",
                           "usd", "--tier", "hobbyist", "--category", "developer-tools", json_output=False)
    assert result.returncode == 0, result.stderr
    node_sha = sha256(example_servers["node"])
    assert f"published alice/hello-node@1.0.0 on {registry.base_url}" in result.stdout
    assert f"sha256     sha256:{node_sha}" in result.stdout
    assert "signature  unsigned" in result.stdout
    assert "pricing    per_call 0.10 usd, tier hobbyist" in result.stdout
    assert "ledger     index 0 (tree size 1)" in result.stdout
    assert "findings   none" in result.stdout
    assert "uploading hello-node.mcpb" in result.stderr and "100.0%" in result.stderr

    # The python server.
    result = alice.publish(example_servers["python"])
    assert result.returncode == 0, result.stderr
    python = json.loads(result.stdout)
    assert (python["name"], python["state"], python["signature"]["status"]) == ("hello-python", "published",
                                                                                 "unsigned")
    assert python["sha256"] == sha256(example_servers["python"]) and python["ledger"]["leaf_index"] == 1

    # Signed with `mcpb sign --self-signed`: status and the certificate's fingerprint.
    result = bob.publish(example_servers["signed"])
    assert result.returncode == 0, result.stderr
    signed = json.loads(result.stdout)
    cert = x509.load_pem_x509_certificate(mcpb_cli.self_signed_cert.read_bytes())
    assert signed["state"] == "published"
    assert signed["signature"]["status"] == "self-signed"
    assert signed["signature"]["fingerprint"] == cert.fingerprint(hashes.SHA256()).hex()
    assert signed["signature"]["subject"] == "C=US,O=MCPB Extensions,CN=MCPB Self-Signed Certificate"
    assert signed["sha256"] == sha256(example_servers["signed"])
    assert signed["unsigned_sha256"] == node_sha  # the zip inside is the node bundle, byte for byte

    # A byte flipped inside the signed zip: invalid, rejected, nothing stored.
    flipped = tmp_path / "flipped.mcpb"
    data = bytearray(example_servers["signed"].read_bytes())
    data[len(data) // 4] ^= 0x01
    flipped.write_bytes(bytes(data))
    result = carol.publish(flipped)
    assert result.returncode == 1
    assert "invalid signature" in result.stderr and "nothing was stored" in result.stderr

    # `mcpb unsign` gives back the unsigned bundle: the same sha256 (and so the same stored blob).
    unsigned = tmp_path / "unsigned.mcpb"
    shutil.copyfile(example_servers["signed"], unsigned)
    mcpb_cli.unsign(unsigned)
    result = carol.publish(unsigned)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == node_sha

    # Yank with the CLI, then the version stays taken.
    result = alice.run("yank", "alice/hello-node", "1.0.0", "--reason", "wrong endpoint")
    assert result.returncode == 0, result.stderr
    assert "yanked alice/hello-node@1.0.0 (ledger index" in result.stdout
    result = alice.run("deprecate", "alice/hello-python", "1.0.0", "--reason", "use hello-node 2")
    assert result.returncode == 0 and "deprecated alice/hello-python@1.0.0" in result.stdout
    result = alice.publish(example_servers["node"])
    assert result.returncode == 1
    assert "409" in result.stderr and "already exists (yanked)" in result.stderr
    result = bob.run("yank", "alice/hello-python", "1.0.0", "--reason", "not mine")
    assert result.returncode == 1 and "403" in result.stderr

    async with aiohttp.ClientSession() as session:
        async with session.get(registry.base_url + "/ledger/checkpoint") as response:
            assert response.status == 200
            # alice x2, bob, carol publish + yank + deprecate; the rejected upload is not in the log.
            assert (await response.text()).splitlines()[1] == "6"


async def test_quarantine_exit_code_and_cli_errors(registry, people, example_servers, tmp_path):
    alice = people["alice"]
    result = alice.publish(tmp_path / "missing.mcpb")
    assert result.returncode == 1 and "no such file" in result.stderr
    result = alice.publish(example_servers["node"], "--pricing", "free", "--amount", "3")
    assert result.returncode == 1 and "free package has no amount" in result.stderr
    result = alice.publish(example_servers["node"], "--tier", "pro", "--endpoint", "http://plain.example.com")
    assert result.returncode == 1 and "https" in result.stderr
    result = alice.run("yank", "hello-node", "1.0.0", "--reason", "x")
    assert result.returncode == 1 and "namespace/name" in result.stderr

    # A bundle with an .env file is quarantined: exit code 3, no ledger entry yet.
    source = tmp_path / "with-env"
    shutil.unpack_archive(example_servers["node"], source, "zip")
    (source / ".env").write_text("API_URL=https://example.com\n")
    quarantined = tmp_path / "with-env.mcpb"
    shutil.make_archive(str(quarantined.with_suffix("")), "zip", source)
    quarantined.with_suffix(".zip").rename(quarantined)
    result = alice.publish(quarantined, json_output=False)
    assert result.returncode == 3, result.stderr
    assert "quarantined alice/hello-node@1.0.0" in result.stdout
    assert "secrets.env_file" in result.stdout and "none yet" in result.stdout
