"""Real S3-protocol servers on 127.0.0.1 for blob store tests (loaded by tests/conftest.py).

- `moto_s3`: `moto_server` (PyPI moto[server]), started once per session. Accepts any credentials and
  does not check presigned URLs, so it proves protocol behaviour (ranges, multipart, paging).
- `s3rver`: `@20minutes/s3rver` (npm), started once per session. It verifies SigV4 signatures (header
  and presigned) and presigned expiry, so it proves the signing itself: wrong secrets and tampered
  or expired URLs must fail there. Installed into a cache folder on first use.

Both are stopped by their process id.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from mcpstore_appliance.blobs.sigv4 import EMPTY_SHA256, SigV4Signer
from mcpstore_appliance.config import S3Settings

S3RVER_PACKAGE = "@20minutes/s3rver@5.0.0"
S3RVER_KEY = "S3RVER"  # s3rver's built-in account: access key id and secret are both "S3RVER"


@dataclass(frozen=True)
class S3Peer:
    endpoint: str
    pid: int
    access_key_id: str
    secret_access_key: str

    def settings(self, bucket: str, **overrides) -> S3Settings:
        values = dict(endpoint=self.endpoint, bucket=bucket, access_key_id=self.access_key_id,
                      secret_access_key=self.secret_access_key, prefix="blobs/")
        return S3Settings(**{**values, **overrides})

    async def create_bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket (a signed PUT) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:20]}"
        host = self.endpoint.split("://", 1)[1]
        signer = SigV4Signer(self.access_key_id, self.secret_access_key, "us-east-1")
        headers = signer.sign_headers("PUT", host, f"/{name}", [], {}, EMPTY_SHA256)
        async with aiohttp.ClientSession() as session:
            async with session.put(f"{self.endpoint}/{name}", headers=headers) as response:
                assert response.status == 200, await response.text()
        return name


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_listening(port: int, process: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"S3 server exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"S3 server did not listen on {port} within {timeout} s: {log.read_text()[-2000:]}")


def _stop(process: subprocess.Popen) -> None:
    os.kill(process.pid, 15)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.kill(process.pid, 9)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory) -> Iterator[S3Peer]:
    port = _free_port()
    script = Path(sys.executable).with_name("moto_server")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "moto.server"]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*command, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out)
    try:
        _wait_listening(port, process, log)
        yield S3Peer(f"http://127.0.0.1:{port}", process.pid, "moto-access-key", "moto-secret-key")
    finally:
        _stop(process)


def _s3rver_install() -> Path:
    cache = Path(os.environ.get("MCPSTORE_TEST_CACHE", Path.home() / ".cache" / "mcpstore-tests")) / "s3rver"
    module = cache / "node_modules" / "@20minutes" / "s3rver"
    if not (module / "package.json").exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the s3rver test peer (see .ci/run)"
        subprocess.run([npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund", "--loglevel=error",
                        S3RVER_PACKAGE], check=True, timeout=600, stdin=subprocess.DEVNULL)
    return module


_S3RVER_LAUNCHER = """
const S3rver = require(process.argv[2]);
const server = new S3rver({address: '127.0.0.1', port: Number(process.argv[3]), directory: process.argv[4],
                           silent: true, vhostBuckets: false});
server.run().then(() => console.log('ready'));
process.on('SIGTERM', () => server.close().then(() => process.exit(0)));
"""


@pytest.fixture(scope="session")
def s3rver(tmp_path_factory) -> Iterator[S3Peer]:
    module = _s3rver_install()
    node = shutil.which("node")
    assert node, "node is needed to run the s3rver test peer"
    work = tmp_path_factory.mktemp("s3rver")
    (work / "launch.js").write_text(_S3RVER_LAUNCHER)
    port = _free_port()
    log = work / "s3rver.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([node, str(work / "launch.js"), str(module), str(port), str(work / "data")],
                                   stdout=out, stderr=out)
    try:
        _wait_listening(port, process, log)
        yield S3Peer(f"http://127.0.0.1:{port}", process.pid, S3RVER_KEY, S3RVER_KEY)
    finally:
        _stop(process)
