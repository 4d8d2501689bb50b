"""Helpers shared by the publish integration tests: upload a bundle, snapshot what the appliance stored."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp

from mcpstore_appliance.accounts.credentials import secret_hash
from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger.checkpoint import open_checkpoint
from mcpstore_appliance.ledger.merkle import leaf_hash, verify_inclusion
from tests.data.bundles import bundle_bytes, node_manifest

OCTET = {"Content-Type": "application/octet-stream"}
FAST_LEDGER = {"checkpoint_interval_seconds": 0}  # sign a checkpoint per publish instead of batching for 1 s


def bundle(name: str = "hello-node", version: str = "1.0.0", extra: dict | None = None, **manifest: Any) -> bytes:
    """A valid node bundle (manifest + server/index.js) with the given name and version."""
    return bundle_bytes(node_manifest(name=name, version=version, **manifest), extra)


async def publish(client, data, token: str | None = None, headers: dict | None = None, **query: str):
    c = client.with_token(token) if token else client
    params = {k: v for k, v in query.items() if v is not None}
    status, body, _ = await c.post("/api/packages", params=params, data=data, headers={**OCTET, **(headers or {})})
    return status, body


async def snapshot(app) -> dict[str, Any]:
    """Everything a publish could leave behind: rows, ledger leaves, audit events, blobs and temp files."""
    db = app.services.db
    blobs = [digest async for digest in app.services.blobs.list_digests()]
    temp_files = []
    for folder in (app.data_dir / "tmp", app.data_dir / "blobs" / "tmp"):
        if folder.exists():
            temp_files += [f"{folder.name}/{name}" for name in os.listdir(folder)]
    return {
        "packages": await db.fetch_value("SELECT count(*) FROM packages"),
        "versions": await db.fetch_value("SELECT count(*) FROM versions"),
        "leaves": await db.fetch_value("SELECT count(*) FROM ledger_leaves"),
        "publish_audit": await db.fetch_value("SELECT count(*) FROM audit_events WHERE action LIKE 'package.%'"),
        "blobs": sorted(blobs),
        "temp_files": sorted(temp_files),
    }


async def assert_nothing_stored(app, before: dict[str, Any]) -> None:
    after = await snapshot(app)
    assert after == before
    assert after["temp_files"] == []


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def expire_token(app, token: str) -> None:
    async with app.services.db.write() as tx:
        await tx.execute("UPDATE api_tokens SET expires_at = 1 WHERE token_hash = ?", (secret_hash(token),))


def check_proof(app, proof: dict[str, Any]) -> None:
    """The proof in a response verifies against the signed checkpoint it names, under the ledger's key."""
    ledger = app.services.ledger
    checkpoint = open_checkpoint(proof["checkpoint"], [ledger.verifier], ledger.origin)
    assert checkpoint.size == proof["tree_size"]
    verify_inclusion(proof["leaf_index"], proof["tree_size"], leaf_hash(proof["leaf"].encode()),
                     [notes.unb64(h) for h in proof["inclusion_proof"]], checkpoint.root)


def data_path(app, *parts: str) -> Path:
    return Path(app.data_dir, *parts)


async def make_org(app, slug: str, owner, **members: str):
    """An org owned by `owner` (a User) with `username=role` members, set up as the system would."""
    accounts = app.services.accounts
    org = await accounts.create_org(None, slug, slug.title(), owner=owner)
    for username, role in members.items():
        await accounts.set_member(None, slug, username, role)
    return org


async def user(app, username: str, *, admin: bool = False, scopes: tuple[str, ...] = ("read", "publish")):
    """Like RunningApp.user, without a password: these tests only use API tokens, and skipping the argon2
    hash keeps them fast."""
    accounts = app.services.accounts
    created = await accounts.create_user(f"{username}@example.com", username, None, is_admin=admin)
    principal = await accounts.principal_for_user(created.id)
    token, _ = await accounts.create_token(principal, "test", list(scopes) + (["admin"] if admin else []))
    return created, token


# --- a server in its own process (for kill -9 and CLI tests) ---------------------------------------------------

class ServerProcess:
    """`mcpstore serve` as a subprocess on a fixed port (so a restart keeps the URL)."""

    def __init__(self, data_dir: Path, port: int, env: dict[str, str] | None = None, preexec_fn=None):
        self.data_dir, self.port, self.env, self.preexec_fn = data_dir, port, env or {}, preexec_fn
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    async def start(self) -> "ServerProcess":
        env = {**os.environ, "MCPSTORE_LEDGER__CHECKPOINT_INTERVAL_SECONDS": "0",
               "MCPSTORE_SERVER__ACCESS_LOG": "false",
               # the test bundles' servers are not real: no publish-time start in a sandbox (as make_settings)
               "MCPSTORE_HOSTED__BACKEND": "off", **self.env}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcpstore_appliance.cli.main", "serve", "--data", str(self.data_dir),
             "--port", str(self.port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=self.preexec_fn)
        async with aiohttp.ClientSession() as session:
            for _ in range(600):
                if self.proc.poll() is not None:
                    raise AssertionError(self.proc.stdout.read().decode(errors="replace"))
                try:
                    async with session.get(self.base_url + "/readyz") as response:
                        if response.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("server did not become ready")

    def kill(self) -> None:
        """SIGKILL: no cleanup code runs, as in a crash or power loss."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
