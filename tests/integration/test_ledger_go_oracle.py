"""The ledger as Go's reference tlog code sees it (golang.org/x/mod/sumdb/note and tlog, from Debian).

The Go program in go_tlog_check/ reads a running appliance over HTTP only: it verifies the checkpoint with
note.Open, rebuilds the tree from our tlog-tiles with tlog.TileHashReader (which checks every tile against the
signed root), builds proofs itself and requires ours to be identical and accepted by CheckRecord/CheckTree.
Go and x/mod come from Debian packages; the fixture installs them when missing (as root, like CI).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mcpstore_appliance.ledger import publish_event

GO_SOURCE = Path(__file__).parent / "go_tlog_check"
GOPATH = Path("/usr/share/gocode")
PACKAGES = ["golang-go", "golang-golang-x-mod-dev"]


@pytest.fixture(scope="session")
def go_checker(tmp_path_factory) -> Path:
    if not shutil.which("go") or not (GOPATH / "src/golang.org/x/mod/sumdb/tlog").is_dir():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
            result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            assert result.returncode == 0, f"installing {PACKAGES} failed: {result.stderr[-2000:]}"
    binary = tmp_path_factory.mktemp("go") / "go_tlog_check"
    # GOPATH mode builds offline against Debian's copy of x/mod.
    result = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=GO_SOURCE, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH),
                                              "GOFLAGS": ""})
    assert result.returncode == 0, result.stderr
    return binary


async def test_go_tlog_accepts_our_checkpoint_tiles_and_proofs(start_app, go_checker):
    app = await start_app(ledger={"checkpoint_interval_seconds": 0})
    ledger = app.services.ledger
    size = 65_536 + 300  # a full level-1 tile of tiles, partial tiles on three levels
    for start in range(0, size, 2048):
        async with app.services.db.write() as tx:
            await ledger.append_many(tx, [publish_event(
                namespace="acme", name=f"tool{i}", version="1.0.0", sha256=hashlib.sha256(b"%d" % i).hexdigest(),
                size=i, publisher="alice", signer_fingerprint=None) for i in range(start, min(size, start + 2048))])
    await ledger.ensure_checkpoint(size)
    process = await asyncio.create_subprocess_exec(str(go_checker), app.base_url, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()[-3000:]
    assert f"checkpoint of size {size} verified" in stdout.decode()
    assert "19 proofs identical and accepted" in stdout.decode()
