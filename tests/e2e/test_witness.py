"""Two appliances on loopback witnessing each other (C2SP tlog-witness), and the witness protocol's answers.

Each appliance is the real app on its own port with its own database and keys; cosignatures travel over HTTP
between them. A third "log" that exists only in this test (a key and an in-memory tree) drives the witness
endpoint through every answer the protocol defines, including forks.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from nacl.signing import SigningKey

from mcpstore_appliance.app import create_app
from mcpstore_appliance.cli.main import main
from mcpstore_appliance.keys import load_or_create_signing_key
from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger import publish_event
from mcpstore_appliance.ledger import storedhash as sh
from mcpstore_appliance.ledger.checkpoint import open_checkpoint, sign_checkpoint
from mcpstore_appliance.ledger.merkle import leaf_hash
from mcpstore_appliance.ledger.witness import format_request
from tests.conftest import free_port, make_settings
from mcpstore_appliance.web.keys import SERVICES

SYNTHETIC = "synthetic.test/log"


class Peer:
    def __init__(self, name: str, data_dir: Path, port: int):
        self.name, self.data_dir, self.port = name, data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.origin = f"{name}.test/ledger"
        self.witness_name = f"{name}.test/witness"
        keys = data_dir / "keys"
        self.ledger_vkey = notes.verifier_for(self.origin, load_or_create_signing_key(keys / "ledger.key")).vkey()
        self.witness_vkey = notes.verifier_for(self.witness_name, load_or_create_signing_key(keys / "witness.key"),
                                               notes.ALG_COSIGNATURE_V1).vkey()
        self.app = None

    def build(self, **ledger) -> None:
        """This peer's appliance with these ledger settings (not yet serving)."""
        self.app = create_app(make_settings(self.data_dir, port=self.port, ledger={
            "origin": self.origin, "witness_name": self.witness_name, "checkpoint_interval_seconds": 0, **ledger}))

    async def serve(self, aiohttp_server) -> None:
        await aiohttp_server(self.app, host="127.0.0.1", port=self.port)

    @property
    def ledger(self):
        return self.app[SERVICES].ledger

    async def append(self, count: int, tag: str) -> int:
        async with self.app[SERVICES].db.write() as tx:
            indices = await self.ledger.append_many(tx, [publish_event(
                namespace=self.name, name=f"{tag}{i}", version="1.0.0", sha256=f"{i:064x}", size=i, publisher="p",
                signer_fingerprint=None) for i in range(count)])
        await self.ledger.ensure_checkpoint(indices[-1] + 1)
        await self.ledger.collector.wait()
        return indices[-1] + 1


class SyntheticLog:
    """A log that lives in this test: a key and a stored-hash tree in memory."""

    def __init__(self, origin: str, seed: bytes):
        self.origin = origin
        self.key = SigningKey(seed)
        self.tree = sh.Appender(0, {})

    def vkey(self) -> str:
        return notes.verifier_for(self.origin, self.key).vkey()

    def grow(self, count: int, tag: bytes = b"") -> None:
        for _ in range(count):
            self.tree.add(leaf_hash(tag + self.tree.size.to_bytes(4, "big")))

    def read(self, indexes):
        return {i: self.tree.known[i] for i in indexes}

    def checkpoint(self, size: int | None = None, key: SigningKey | None = None, origin: str | None = None) -> str:
        size = self.tree.size if size is None else size
        return sign_checkpoint(origin or self.origin, size, sh.read_root(size, self.read), key or self.key).note

    def proof(self, old: int, new: int | None = None) -> list[bytes]:
        return sh.read_consistency_proof(old, self.tree.size if new is None else new, self.read)


@pytest.fixture
async def peers(tmp_path, aiohttp_server):
    a = Peer("a", tmp_path / "a", free_port())
    b = Peer("b", tmp_path / "b", free_port())
    log = SyntheticLog(SYNTHETIC, b"\x11" * 32)
    fresh = SyntheticLog("fresh.test/log", b"\x22" * 32)
    dead_witness = notes.verifier_for("dead.test/witness", SigningKey(b"\x33" * 32), notes.ALG_COSIGNATURE_V1)
    configs = {
        a: {"witnesses": [{"key": b.witness_vkey, "url": f"{b.url}/ledger/witness"},
                          {"name": "dead", "key": dead_witness.vkey(),
                           "url": f"http://127.0.0.1:{free_port()}/ledger/witness"}],
            "witnessed_logs": [{"key": b.ledger_vkey}]},
        b: {"witnesses": [{"key": a.witness_vkey, "url": f"{a.url}/ledger/witness"}],
            "witnessed_logs": [{"key": a.ledger_vkey}, {"key": log.vkey()}, {"name": fresh.origin,
                                                                            "key": fresh.vkey()}]},
    }
    for peer, ledger in configs.items():
        peer.build(**ledger)
        await peer.serve(aiohttp_server)
    async with aiohttp.ClientSession() as session:
        yield a, b, log, fresh, session


async def fetch(session, url) -> str:
    async with session.get(url) as response:
        assert response.status == 200, await response.text()
        return await response.text()


async def add_checkpoint(session, peer, body: bytes):
    async with session.post(f"{peer.url}/ledger/witness/add-checkpoint", data=body,
                            headers={"Content-Type": "text/plain"}) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


async def test_two_appliances_witness_each_other(peers, tmp_path, monkeypatch, capsys):
    a, b, _, _, session = peers
    assert (await fetch(session, f"{b.url}/ledger/witness/key")).strip() == b.witness_vkey
    b_witness = notes.parse_vkey(b.witness_vkey)
    a_witness = notes.parse_vkey(a.witness_vkey)

    await a.append(3, "first")
    served = await fetch(session, f"{a.url}/ledger/checkpoint")
    checkpoint = open_checkpoint(served, [notes.parse_vkey(a.ledger_vkey)], a.origin)
    assert checkpoint.size == 3
    cosigned = notes.cosignatures_by(notes.parse(served), [b_witness])
    assert set(cosigned) == {b.witness_name} and abs(cosigned[b.witness_name] - time.time()) < 300

    # A grows; B checks the consistency proof from 3 to 5 before cosigning again
    await a.append(2, "second")
    served = await fetch(session, f"{a.url}/ledger/checkpoint")
    assert open_checkpoint(served, [notes.parse_vkey(a.ledger_vkey)]).size == 5
    assert b.witness_name in notes.cosignatures_by(notes.parse(served), [b_witness])
    assert (await b.ledger.witness.state(a.origin))["size"] == 5
    assert await a.ledger.witness_progress(b.witness_name) == 5
    assert await a.ledger.witness_progress("dead") == 0  # the unreachable witness just has no cosignature

    # and the other way round
    await b.append(4, "bee")
    served = await fetch(session, f"{b.url}/ledger/checkpoint")
    assert a.witness_name in notes.cosignatures_by(notes.parse(served), [a_witness])

    # A forgets what B last cosigned: B answers 409 with its size, A retries from there
    async with a.app[SERVICES].db.write() as tx:
        await tx.execute("DELETE FROM ledger_witness_progress")
    outcome = await a.ledger.collector.collect(await a.ledger.ensure_checkpoint(5))
    assert outcome[b.witness_name] == "cosigned" and outcome["dead"].startswith("error")
    await a.append(1, "third")
    assert await a.ledger.witness_progress(b.witness_name) == 6

    # a client that demands B's cosignature accepts A's log
    monkeypatch.setenv("MCPSTORE_CONFIG_DIR", str(tmp_path / "client"))
    bundle = tmp_path / "x.mcpb"
    bundle.write_bytes(b"bundle bytes")
    async with a.app[SERVICES].db.write() as tx:
        await a.ledger.append(tx, publish_event(namespace="a", name="x", version="1", size=12, publisher="p",
                                                sha256=hashlib.sha256(b"bundle bytes").hexdigest(),
                                                signer_fingerprint=None))
    await a.ledger.ensure_checkpoint(7)
    await a.ledger.collector.wait()
    argv = ["verify", str(bundle), "--registry", a.url, "--witness", b.witness_vkey]
    assert await asyncio.to_thread(main, argv) == 0
    assert f"cosigned by: {b.witness_name}" in capsys.readouterr().out


async def test_an_unreachable_witness_is_asked_again_until_it_cosigns(tmp_path, aiohttp_server):
    """B is down when A signs its checkpoint. A asks again, backing off, and B's cosignature arrives once B is
    up, without a new checkpoint on A (on a quiet registry the next one may be days away)."""
    a, b = Peer("a", tmp_path / "a", free_port()), Peer("b", tmp_path / "b", free_port())
    a.build(witnesses=[{"key": b.witness_vkey, "url": f"{b.url}/ledger/witness"}], witness_retry_seconds=0.1)
    b.build(witnessed_logs=[{"key": a.ledger_vkey}])
    await a.serve(aiohttp_server)
    assert await a.append(2, "early") == 2
    assert await a.ledger.witness_progress(b.witness_name) == 0  # B is not running: nothing cosigned
    await b.serve(aiohttp_server)
    deadline = time.monotonic() + 30
    while await a.ledger.witness_progress(b.witness_name) < 2:
        assert time.monotonic() < deadline, "A never asked B again"
        await asyncio.sleep(0.05)
    assert (await a.ledger.latest_checkpoint()).size == 2  # the same checkpoint, now cosigned
    async with aiohttp.ClientSession() as session:
        served = await fetch(session, f"{a.url}/ledger/checkpoint")
    assert b.witness_name in notes.cosignatures_by(notes.parse(served), [notes.parse_vkey(b.witness_vkey)])


async def test_a_failing_witness_is_asked_again_but_a_refusal_is_not(tmp_path, aiohttp_server):
    """In front of B, the network answers 503 twice (an overloaded witness): A asks again until B cosigns. A
    witness that refuses (4xx, here: it does not witness A's log) is not asked again until the next round."""
    a, b = Peer("a", tmp_path / "a", free_port()), Peer("b", tmp_path / "b", free_port())
    attempts: list[int] = []

    async def overloaded_then_forward(request: web.Request) -> web.Response:
        attempts.append(len(attempts))
        if len(attempts) <= 2:
            return web.Response(status=503, text="try later")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{b.url}{request.path}", data=await request.read(),
                                    headers={"Content-Type": "text/plain"}) as answer:
                return web.Response(status=answer.status, body=await answer.read(),
                                    content_type=answer.content_type)

    front = web.Application()
    front.router.add_post("/{tail:.*}", overloaded_then_forward)
    front_server = await aiohttp_server(front, host="127.0.0.1")
    refusing = Peer("c", tmp_path / "c", free_port())  # witnesses nobody
    a.build(witnesses=[{"name": "b", "key": b.witness_vkey, "url": str(front_server.make_url("/ledger/witness"))},
                       {"name": "c", "key": refusing.witness_vkey, "url": f"{refusing.url}/ledger/witness"}],
            witness_retry_seconds=0.05)
    b.build(witnessed_logs=[{"key": a.ledger_vkey}])
    refusing.build()
    for peer in (a, b, refusing):
        await peer.serve(aiohttp_server)
    await a.append(3, "busy")
    deadline = time.monotonic() + 30
    while await a.ledger.witness_progress("b") < 3:
        assert time.monotonic() < deadline, f"B never cosigned after {len(attempts)} attempts"
        await asyncio.sleep(0.05)
    assert len(attempts) == 3  # two 503s, then the cosignature
    assert "c" not in a.ledger.collector.retrying() and await a.ledger.witness_progress("c") == 0


async def test_witness_protocol_answers(peers):
    _, b, log, fresh, session = peers
    witness = notes.parse_vkey(b.witness_vkey)
    log.grow(4)

    def cosignature_ok(text: str, checkpoint_note: str) -> None:
        body = checkpoint_note.split("\n\n")[0] + "\n"
        signature = notes.parse(body + "\n" + text).signatures[0]
        assert notes.verify_cosignature(body, signature, witness) > 0

    first = log.checkpoint()
    status, content_type, text = await add_checkpoint(session, b, format_request(0, [], first))
    assert status == 200 and content_type.startswith("text/plain")
    cosignature_ok(text, first)

    # `old` must be the size the witness last cosigned: it says which one
    status, content_type, text = await add_checkpoint(session, b, format_request(0, [], first))
    assert (status, text) == (409, "4\n") and content_type.startswith("text/x.tlog.size")
    # the same checkpoint again from the right size is fine
    status, _, text = await add_checkpoint(session, b, format_request(4, [], first))
    assert status == 200

    log.grow(4)
    grown = log.checkpoint()
    status, _, text = await add_checkpoint(session, b, format_request(4, log.proof(4), grown))
    assert status == 200
    cosignature_ok(text, grown)

    async def refused(body: bytes, expected: int) -> str:
        status, _, text = await add_checkpoint(session, b, body)
        assert status == expected, text
        assert (await b.ledger.witness.state(SYNTHETIC))["size"] == 8  # nothing changed
        return text

    # old > new
    await refused(format_request(8, [], log.checkpoint(6)), 400)
    # a flipped bit in the proof
    log.grow(2)
    proof = log.proof(8)
    proof[0] = bytes([proof[0][0] ^ 1]) + proof[0][1:]
    assert "consistency" in await refused(format_request(8, proof, log.checkpoint()), 422)
    # a fork: the log signs a size-8 tree with other leaves, and a size-10 tree grown from it
    fork = SyntheticLog(SYNTHETIC, b"\x11" * 32)
    fork.grow(8, tag=b"fork")
    await refused(format_request(8, [], fork.checkpoint()), 422)
    fork.grow(2)
    await refused(format_request(8, fork.proof(8), fork.checkpoint()), 422)
    # a proof is refused with old 0 (for a log the witness has never seen)
    fresh.grow(3)
    status, _, _ = await add_checkpoint(session, b, format_request(0, [b"\x00" * 32], fresh.checkpoint()))
    assert status == 422
    # a checkpoint for a followed origin but signed by a foreign key, or of an unknown origin
    stranger = SigningKey(b"\x44" * 32)
    await refused(format_request(8, [], log.checkpoint(key=stranger)), 403)
    await refused(format_request(0, [], log.checkpoint(key=stranger, origin="unknown.test/log")), 404)
    # malformed requests
    for body in (b"", b"old 8\n", b"old x\n\n" + grown.encode(), b"old 8\n\nnot a note\n",
                 b"old 8\nnot-base64!\n\n" + grown.encode(), b"\xff\xfe\n\n",
                 format_request(8, [], grown.replace("\n8\n", "\n08\n"))):
        await refused(body, 400)
    await refused(b"old 8\n\n" + b"x" * 70_000, 413)
    # the good path still works afterwards
    status, _, text = await add_checkpoint(session, b, format_request(8, log.proof(8), log.checkpoint()))
    assert status == 200 and (await b.ledger.witness.state(SYNTHETIC))["size"] == 10
