"""`mcpstore verify FILE.mcpb` against real appliances over HTTP, including registries that misbehave.

Misbehaviour comes from real sources where it can: a second appliance with its own key (different key), an
appliance restored from an old backup that then diverged (forked log). Where only a man in the middle could
produce it (a flipped signature or proof byte), a small forwarding proxy between the client and the appliance
alters the answer; the proxy is the network, not a stand-in for our code.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import stat
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from mcpstore_appliance.cli.main import main
from mcpstore_appliance.ledger import publish_event, status_event
from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger.checkpoint import parse_unverified
from tests.seed import bundle_for, make_org, publish

ORIGIN = "registry.test/ledger"


class Proxy:
    """Forwards every request to `upstream`; `tamper(path, body)` may alter answers on the way back."""

    def __init__(self):
        self.upstream = ""
        self.tamper = None
        self.app = web.Application()
        self.app.router.add_route("*", "/{tail:.*}", self.forward)

    async def forward(self, request: web.Request) -> web.Response:
        credentials = {k: v for k, v in request.headers.items() if k.lower() == "authorization"}
        async with aiohttp.ClientSession() as session:
            async with session.request(request.method, self.upstream + request.path_qs,
                                       data=await request.read(), headers=credentials) as answer:
                body = await answer.read()
                content_type = answer.headers.get("Content-Type", "application/octet-stream")
        if self.tamper:
            body = self.tamper(request.path, body)
        return web.Response(status=answer.status, body=body, headers={"Content-Type": content_type})


class World:
    def __init__(self, tmp_path: Path, start_app, proxy_url: str, proxy: Proxy):
        self.tmp = tmp_path
        self.start_app = start_app
        self.proxy_url = proxy_url
        self.proxy = proxy
        self.files: dict[str, Path] = {}

    def bundle(self, name: str) -> Path:
        path = self.tmp / f"{name}.mcpb"
        if not path.exists():
            path.write_bytes(hashlib.sha256(name.encode()).digest() * 1000)
        return path

    async def publish(self, app, name: str, version: str = "1.0.0", file: str | None = None) -> int:
        data = self.bundle(file or name).read_bytes()
        event = publish_event(namespace="acme", name=name, version=version, sha256=hashlib.sha256(data).hexdigest(),
                              size=len(data), publisher="alice", signer_fingerprint=None)
        async with app.services.db.write() as tx:
            index = await app.services.ledger.append(tx, event)
        await app.services.ledger.ensure_checkpoint(index + 1)
        return index

    async def verify(self, *args: str) -> int:
        return await asyncio.to_thread(main, ["verify", *args, "--registry", self.proxy_url])

    def trust(self) -> dict:
        return json.loads((self.tmp / "config" / "ledger-trust.json").read_text())["registries"][self.proxy_url]


@pytest.fixture
async def world(tmp_path, start_app, aiohttp_server, monkeypatch):
    monkeypatch.setenv("MCPSTORE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("MCPSTORE_REGISTRY", raising=False)
    monkeypatch.delenv("MCPSTORE_TOKEN", raising=False)
    proxy = Proxy()
    server = await aiohttp_server(proxy.app, host="127.0.0.1")
    w = World(tmp_path, start_app, str(server.make_url("")).rstrip("/"), proxy)
    w.a = await start_app(ledger={"origin": ORIGIN, "checkpoint_interval_seconds": 0})
    proxy.upstream = w.a.base_url
    await w.publish(w.a, "tool")
    await w.publish(w.a, "other")
    return w


async def test_first_use_pins_the_key_and_later_runs_follow_the_log(world, capsys):
    assert await world.verify(str(world.bundle("tool"))) == 0
    out = capsys.readouterr().out
    assert "pinned ledger key registry.test/ledger+" in out and "(first use)" in out
    assert "verified:" in out and "acme/tool@1.0.0, published by alice" in out
    assert "ledger entry 0 is included in registry.test/ledger checkpoint of size 2" in out
    trust_file = world.tmp / "config" / "ledger-trust.json"
    assert stat.S_IMODE(trust_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(trust_file.parent.stat().st_mode) == 0o700
    assert world.trust()["key"] == world.a.services.ledger.verifier_key()
    assert parse_unverified(world.trust()["checkpoint"]).size == 2

    # the log grows; the next run proves consistency from the kept checkpoint and keeps the newer one
    async with world.a.services.db.write() as tx:
        data = world.bundle("tool").read_bytes()
        await world.a.services.ledger.append(tx, status_event(
            "yank", namespace="acme", name="tool", version="1.0.0", sha256=hashlib.sha256(data).hexdigest(),
            reason="leaks tokens"))
    await world.publish(world.a, "third")
    assert await world.verify(str(world.bundle("tool"))) == 0
    out = capsys.readouterr().out
    assert "pinned" not in out and "note: entry 2 records 'yank'" in out and "leaks tokens" in out
    assert parse_unverified(world.trust()["checkpoint"]).size == 4

    # the installed console command, as a user runs it
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mcpstore_appliance.cli.main", "verify", str(world.bundle("third")),
        "--registry", world.proxy_url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MCPSTORE_CONFIG_DIR": str(world.tmp / "config")})
    stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr
    assert b"acme/third@1.0.0" in stdout


async def test_unknown_bundle_and_bytes_that_do_not_match(world, capsys):
    assert await world.verify(str(world.bundle("never-published"))) == 3
    assert "unknown bundle" in capsys.readouterr().err
    # the file of `other` offered as acme/tool@1.0.0: the ledger recorded other bytes for that release
    assert await world.verify(str(world.bundle("other")), "--package", "acme/tool@1.0.0") == 4
    err = capsys.readouterr().err
    assert "bytes mismatch" in err and "acme/tool@1.0.0" in err
    assert await world.verify(str(world.bundle("tool")), "--package", "acme/tool@1.0.0") == 0
    assert await world.verify(str(world.bundle("tool")), "--package", "acme/tool@9.9.9") == 3
    # a registry whose lookup points at another bundle's entry is caught the same way
    world.proxy.tamper = lambda path, body: body.replace(b'"indices": [0]', b'"indices": [1]')
    assert await world.verify(str(world.bundle("tool"))) == 4


def _flip_first_proof_hash(path: str, body: bytes) -> bytes:
    if path != "/ledger/proof/inclusion":
        return body
    answer = json.loads(body)
    first = bytearray(notes.unb64(answer["inclusion_proof"][0]))
    first[0] ^= 1
    answer["inclusion_proof"][0] = notes.b64(bytes(first))
    return json.dumps(answer).encode()


def _flip_signature_byte(path: str, body: bytes) -> bytes:
    if path != "/ledger/checkpoint":
        return body
    text, signature = body.decode().split("\n\n")
    name, encoded = signature.rstrip("\n").rsplit(" ", 1)
    raw = bytearray(notes.unb64(encoded))
    raw[20] ^= 1  # inside the signature, after the 4-byte key id
    return f"{text}\n\n{name} {notes.b64(bytes(raw))}\n".encode()


async def test_bad_proof_and_bad_signature(world, capsys):
    assert await world.verify(str(world.bundle("tool"))) == 0
    world.proxy.tamper = _flip_first_proof_hash
    assert await world.verify(str(world.bundle("tool"))) == 5
    assert "bad proof" in capsys.readouterr().err
    world.proxy.tamper = _flip_signature_byte
    assert await world.verify(str(world.bundle("tool"))) == 6
    assert "bad signature" in capsys.readouterr().err


async def test_different_key(world, capsys):
    assert await world.verify(str(world.bundle("tool"))) == 0
    pinned = world.trust()
    impostor = await world.start_app(ledger={"origin": ORIGIN, "checkpoint_interval_seconds": 0})
    await world.publish(impostor, "tool")
    world.proxy.upstream = impostor.base_url
    assert await world.verify(str(world.bundle("tool"))) == 7
    assert "different key" in capsys.readouterr().err
    assert world.trust() == pinned  # a failed run never replaces the pin or the kept checkpoint

    # pinning the impostor's key explicitly is the operator's call; then the real registry is the stranger
    impostor_key = impostor.services.ledger.verifier_key()
    assert await world.verify(str(world.bundle("tool")), "--key", impostor_key) == 0
    assert world.trust()["key"] == impostor_key
    world.proxy.upstream = world.a.base_url
    assert await world.verify(str(world.bundle("tool"))) == 7
    key_file = world.tmp / "a.vkey"
    key_file.write_text(world.a.services.ledger.verifier_key() + "\n")
    assert await world.verify(str(world.bundle("tool")), "--key", str(key_file)) == 0
    assert await world.verify(str(world.bundle("tool")), "--key", "not-a-key") == 1


async def test_a_forked_log_is_caught(world, capsys):
    assert await world.verify(str(world.bundle("tool"))) == 0
    # The operator restores yesterday's backup (same key, size 2) and the two copies then diverge.
    restored = world.tmp / "restored"
    restored.mkdir(parents=True)
    await world.a.services.db.backup_to(restored / "mcpstore.sqlite3")
    shutil.copytree(world.a.data_dir / "keys", restored / "keys")  # with its folders (keys/usage/)
    await world.publish(world.a, "third")
    assert await world.verify(str(world.bundle("tool"))) == 0
    kept = world.trust()
    assert parse_unverified(kept["checkpoint"]).size == 3

    fork = await world.start_app(data_dir=restored, ledger={"origin": ORIGIN, "checkpoint_interval_seconds": 0})
    assert fork.services.ledger.verifier_key() == world.a.services.ledger.verifier_key()
    await world.publish(fork, "evil", file="third-but-different")
    await world.publish(fork, "more")
    world.proxy.upstream = fork.base_url
    assert await world.verify(str(world.bundle("tool"))) == 8
    err = capsys.readouterr().err
    assert "inconsistent log" in err and "forked" in err
    assert world.trust() == kept


async def test_witness_quorum_is_required_when_asked(world, capsys):
    witness = notes.verifier_for("witness.test", SigningKey(b"\x01" * 32), notes.ALG_COSIGNATURE_V1).vkey()
    assert await world.verify(str(world.bundle("tool")), "--witness", witness) == 9
    assert "witness.test" in capsys.readouterr().err
    assert await world.verify(str(world.bundle("tool")), "--witness", witness, "--quorum", "0") == 0
    assert await world.verify(str(world.bundle("tool")), "--witness", "junk") == 1


async def test_unreachable_registry_is_a_plain_error(world, capsys, tmp_path):
    assert await asyncio.to_thread(main, ["verify", str(world.bundle("tool")), "--registry",
                                          "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
    assert await world.verify(str(tmp_path / "missing.mcpb")) == 1


async def test_members_verify_their_private_bundles_and_nobody_else_sees_them(world, capsys, monkeypatch):
    """A private (org) release is sealed in the log. Its members' `mcpstore verify` (with their token) gets the
    sealed entry in the lookup and its opening, checks the opening against the commitment the log recorded,
    and verifies inclusion as for any bundle; anonymous callers and other users get "unknown bundle"."""
    app = world.a
    _, alice = await app.user("alice")
    _, bob = await app.user("bob")
    _, eve = await app.user("eve")
    await make_org(app, alice, "initech", members={"bob": "member"})
    await publish(app, alice, "tps-report", "1.0.0", namespace="initech", options={"visibility": "org"})
    await app.services.ledger.ensure_checkpoint(await app.services.ledger.tree_size())
    data, sha256 = bundle_for("tps-report", "1.0.0")
    path = world.tmp / "tps-report.mcpb"
    path.write_bytes(data)

    assert await world.verify(str(path)) == 3  # anonymous: the log shows only a commitment
    assert "unknown bundle" in capsys.readouterr().err
    for token in (eve, alice, bob):  # eve is in no org; alice owns it; bob is a member
        monkeypatch.setenv("MCPSTORE_TOKEN", token)
        code = await world.verify(str(path), "--package", "initech/tps-report@1.0.0")
        out, err = capsys.readouterr()
        if token == eve:
            assert code == 3 and "no entry for initech/tps-report@1.0.0" in err
            continue
        assert code == 0, err
        assert "initech/tps-report@1.0.0, published by alice" in out
        assert await world.verify(str(path)) == 0
        capsys.readouterr()

    # the HTTP views behind it
    [index] = await app.services.ledger.lookup(sha256)
    for token, sees in ((None, False), (eve, False), (bob, True)):
        client = app.client.with_token(token)
        status, found, _ = await client.get(f"/ledger/lookup/{sha256}")
        assert status == 200 and found["indices"] == ([index] if sees else [])
        status, entry, _ = await client.get(f"/ledger/entries/{index}")
        assert status == 200 and entry["event"]["kind"] == "sealed" and ("sealed" in entry) == sees
        assert "tps-report" not in entry["leaf"]

    # an opening that does not match the commitment (a registry lying to a member) is caught
    monkeypatch.setenv("MCPSTORE_TOKEN", bob)
    world.proxy.tamper = lambda path, body: body.replace(b'\\"size\\":', b'\\"size\\":1') \
        if path.startswith("/ledger/entries/") else body
    assert await world.verify(str(path)) == 5
    assert "does not match the commitment" in capsys.readouterr().err
    world.proxy.tamper = lambda path, body: body.replace(b'"sealed":', b'"unsealed":') \
        if path.startswith("/ledger/entries/") else body
    assert await world.verify(str(path)) == 10
    assert "sent no opening" in capsys.readouterr().err
