"""The /ledger HTTP API on the real app: checkpoints, entries, lookups, proofs, tiles, and bad input."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json

import pytest

from mcpstore_appliance.ledger import note as notes
from mcpstore_appliance.ledger import publish_event, status_event
from mcpstore_appliance.ledger.checkpoint import open_checkpoint
from mcpstore_appliance.ledger.merkle import leaf_hash, node_hash, verify_consistency, verify_inclusion
from mcpstore_appliance.ledger.tiles import decode_entries
from mcpstore_appliance.web.openapi import undocumented_routes


def sha(i: int) -> str:
    return hashlib.sha256(f"bundle {i}".encode()).hexdigest()


def event(i: int) -> dict:
    return publish_event(namespace="acme", name=f"tool{i % 7}", version=f"1.0.{i}", sha256=sha(i), size=1000 + i,
                         publisher="alice", signer_fingerprint=None, time="2026-01-01T00:00:00Z")


async def append(app, events, org_id=None) -> list[int]:
    async with app.services.db.write() as tx:
        return await app.services.ledger.append_many(tx, events, org_id=org_id)


async def get_text(app, path):
    status, body, response = await app.client.get(path)
    return status, body.decode() if isinstance(body, bytes) else body, response


def b64d(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.fixture
async def ledger_app(start_app, tmp_path):
    # URI-special characters in the data folder: the ledger's read-only connection must still open it
    return await start_app(data_dir=tmp_path / "app data #1 ?", ledger={"checkpoint_interval_seconds": 0})


async def test_checkpoint_entries_lookup_and_inclusion_proofs(ledger_app):
    app = ledger_app
    assert await append(app, [event(i) for i in range(20)]) == list(range(20))
    status, key_text, response = await get_text(app, "/ledger/key")
    assert status == 200 and response.content_type == "text/plain"
    verifier = notes.parse_vkey(key_text.strip())
    status, note_text, response = await get_text(app, "/ledger/checkpoint")
    assert status == 200 and response.headers["Cache-Control"] == "no-cache"
    checkpoint = open_checkpoint(note_text, [verifier], app.services.ledger.origin)
    assert checkpoint.size == 20

    for index in range(20):
        status, entry, _ = await app.client.get(f"/ledger/entries/{index}")
        assert status == 200 and entry["event"] == event(index)
        assert entry["leaf"].encode() == json.dumps(event(index), sort_keys=True, separators=(",", ":")).encode()
        assert b64d(entry["leaf_hash"]) == leaf_hash(entry["leaf"].encode())
        status, proof, _ = await app.client.get(f"/ledger/proof/inclusion?index={index}")
        assert status == 200 and proof["tree_size"] == 20 and proof["checkpoint"] == checkpoint.note
        verify_inclusion(index, 20, leaf_hash(entry["leaf"].encode()), [b64d(h) for h in proof["inclusion_proof"]],
                         checkpoint.root)

    status, found, _ = await app.client.get(f"/ledger/lookup/{sha(7).upper()}")
    assert status == 200 and found["indices"] == [7]
    status, found, _ = await app.client.get("/ledger/release/acme/tool0/1.0.7")
    assert found["indices"] == [7]
    status, found, _ = await app.client.get(f"/ledger/lookup/{'0' * 64}")
    assert status == 200 and found["indices"] == []

    # a status change of the same bundle is found by the same lookup
    await append(app, [status_event("yank", namespace="acme", name="tool0", version="1.0.7", sha256=sha(7),
                                    reason="broken", time="2026-01-02T00:00:00Z")])
    status, found, _ = await app.client.get(f"/ledger/lookup/{sha(7)}")
    assert found["indices"] == [7, 20]

    # the service's proof_for gives the same proof the API gives
    proof = await app.services.ledger.proof_for(3, checkpoint)
    status, api_proof, _ = await app.client.get("/ledger/proof/inclusion?index=3&size=20")
    assert proof["inclusion_proof"] == api_proof["inclusion_proof"] and proof["checkpoint"] == checkpoint.note


async def test_consistency_proofs_between_checkpoints(ledger_app):
    app = ledger_app
    verifier = app.services.ledger.verifier
    await append(app, [event(i) for i in range(5)])
    first = open_checkpoint((await get_text(app, "/ledger/checkpoint"))[1], [verifier])
    for batch in range(3):
        await append(app, [event(100 + batch * 10 + i) for i in range(batch + 3)])
    second = open_checkpoint((await get_text(app, "/ledger/checkpoint"))[1], [verifier])
    assert (first.size, second.size) == (5, 5 + 3 + 4 + 5)
    status, answer, _ = await app.client.get(f"/ledger/proof/consistency?old={first.size}")
    assert status == 200 and answer["new"] == second.size
    assert b64d(answer["old_root"]) == first.root and b64d(answer["new_root"]) == second.root
    verify_consistency(first.size, second.size, first.root, second.root,
                       [b64d(h) for h in answer["consistency_proof"]])
    status, same, _ = await app.client.get(f"/ledger/proof/consistency?old={second.size}&new={second.size}")
    assert status == 200 and same["consistency_proof"] == []


async def test_tiles_rebuild_the_signed_root(ledger_app):
    app = ledger_app
    await append(app, [event(i) for i in range(300)])
    checkpoint = await app.services.ledger.ensure_checkpoint(300)

    async def fetch(path):
        status, body, response = await app.client.get("/ledger/" + path)
        assert status == 200, (path, body)
        assert response.content_type == "application/octet-stream"
        assert "immutable" in response.headers["Cache-Control"]
        return body

    level0 = await fetch("tile/0/000") + await fetch("tile/0/001.p/44")
    level1 = await fetch("tile/1/000.p/1")
    entries = decode_entries(await fetch("tile/entries/000")) + decode_entries(await fetch("tile/entries/001.p/44"))
    assert len(level0) == 300 * 32 and len(entries) == 300
    leaves = [level0[i:i + 32] for i in range(0, len(level0), 32)]
    assert leaves == [leaf_hash(e) for e in entries]
    assert json.loads(entries[123]) == event(123)

    def subtree(hashes):
        while len(hashes) > 1:
            hashes = [node_hash(a, b) for a, b in zip(hashes[0::2], hashes[1::2])]
        return hashes[0]

    assert level1 == subtree(leaves[:256])  # tile 1 holds the hash of each full level-0 tile
    # root of 300 = H(first 256, H(next 32, H(next 8, next 4)))
    right = node_hash(subtree(leaves[256:288]), node_hash(subtree(leaves[288:296]), subtree(leaves[296:300])))
    assert node_hash(level1, right) == checkpoint.root

    for missing in ("tile/0/001", "tile/0/002.p/1", "tile/entries/001", "tile/1/000", "tile/2/000.p/1"):
        status, body, _ = await app.client.get("/ledger/" + missing)
        assert status == 404 and body["error"]["code"] == "no_such_tile"


async def test_a_rolled_back_transaction_leaves_no_leaf(ledger_app):
    app = ledger_app
    await append(app, [event(0)])
    with pytest.raises(RuntimeError):
        async with app.services.db.write() as tx:
            assert await app.services.ledger.append(tx, event(1)) == 1
            raise RuntimeError("the catalog write failed")
    assert await app.services.ledger.tree_size() == 1
    assert await append(app, [event(2)]) == [1]
    status, entry, _ = await app.client.get("/ledger/entries/1")
    assert entry["event"] == event(2)
    checkpoint = await app.services.ledger.ensure_checkpoint(2)
    assert checkpoint.root == node_hash(leaf_hash(json.dumps(event(0), sort_keys=True, separators=(",", ":"))
                                                  .encode()), b64d(entry["leaf_hash"]))


async def test_private_releases_are_sealed_in_public_views(ledger_app):
    app = ledger_app
    secret = publish_event(namespace="megacorp", name="internal-tool", version="2.0.0", sha256=sha(999), size=5,
                           publisher="bob", signer_fingerprint=None)
    await append(app, [event(0)])
    [index] = await append(app, [secret], org_id=42)
    status, entry, _ = await app.client.get(f"/ledger/entries/{index}")
    assert status == 200 and entry["event"]["kind"] == "sealed"
    assert "megacorp" not in entry["leaf"] and "internal-tool" not in entry["leaf"]
    for path in (f"/ledger/lookup/{sha(999)}", "/ledger/release/megacorp/internal-tool/2.0.0"):
        status, found, _ = await app.client.get(path)
        assert status == 200 and found["indices"] == []
    status, bundle, _ = await app.client.get("/ledger/tile/entries/000.p/2")
    assert b"megacorp" not in bundle
    # the catalog, after its own visibility check, gets the opening that members can verify
    assert await app.services.ledger.lookup(sha(999)) == [index]
    proof = await app.services.ledger.proof_for(index)
    opening = proof["sealed"]
    assert json.loads(opening["event"]) == secret
    from mcpstore_appliance.ledger.events import opens
    assert opens(proof["leaf"].encode(), opening["salt"], opening["event"].encode())
    checkpoint = open_checkpoint(proof["checkpoint"], [app.services.ledger.verifier])
    verify_inclusion(index, checkpoint.size, leaf_hash(proof["leaf"].encode()),
                     [b64d(h) for h in proof["inclusion_proof"]], checkpoint.root)


BAD_REQUESTS = [
    ("/ledger/entries/-1", 400), ("/ledger/entries/abc", 400), ("/ledger/entries/1.5", 400),
    ("/ledger/entries/99999999999999999999999", 400), ("/ledger/entries/9223372036854775807", 404),
    ("/ledger/entries/10", 404),
    ("/ledger/lookup/xyz", 400), ("/ledger/lookup/" + "g" * 64, 400), ("/ledger/lookup/" + "a" * 65, 400),
    ("/ledger/proof/inclusion", 400), ("/ledger/proof/inclusion?index=", 400),
    ("/ledger/proof/inclusion?index=-1", 400), ("/ledger/proof/inclusion?index=ten", 400),
    ("/ledger/proof/inclusion?index=10", 404), ("/ledger/proof/inclusion?index=3&size=3", 400),
    ("/ledger/proof/inclusion?index=3&size=11", 400), ("/ledger/proof/inclusion?index=9&size=11", 400),
    ("/ledger/proof/inclusion?index=10&size=11", 400), ("/ledger/proof/consistency?old=10&new=11", 400), ("/ledger/proof/inclusion?index=0&size=0", 400),
    ("/ledger/proof/inclusion?index=0&size=1e3", 400), ("/ledger/proof/inclusion?index=0&size=" + "9" * 30, 400),
    ("/ledger/proof/consistency", 400), ("/ledger/proof/consistency?old=0&new=5", 400),
    ("/ledger/proof/consistency?old=6&new=5", 400), ("/ledger/proof/consistency?old=5&new=11", 400),
    ("/ledger/proof/consistency?old=-5", 400), ("/ledger/proof/consistency?old=x&new=5", 400),
    ("/ledger/proof/consistency?old=11", 400), ("/ledger/proof/consistency?old=3&new=" + "9" * 19, 400),
    ("/ledger/tile/0/1", 400), ("/ledger/tile/99/000", 400), ("/ledger/tile/0/000.p/0", 400),
    ("/ledger/tile/0/000.p/300", 400), ("/ledger/tile/0/x000/001", 400), ("/ledger/tile/0/000", 404),
    ("/ledger/tile/entries/000.p/11", 404), ("/ledger/tile/x", 400),
]


async def test_bad_input_is_a_clear_4xx_and_changes_nothing(ledger_app):
    app = ledger_app
    await append(app, [event(i) for i in range(10)])
    await app.services.ledger.ensure_checkpoint(10)
    checkpoints = await app.services.db.fetch_value("SELECT COUNT(*) FROM ledger_checkpoints")
    for path, expected in BAD_REQUESTS:
        status, body, response = await app.client.get(path)
        assert status == expected, (path, status, body)
        assert response.content_type == "application/json"
        assert body["error"]["code"] and body["error"]["message"], path
    assert await app.services.ledger.tree_size() == 10
    assert await app.services.db.fetch_value("SELECT COUNT(*) FROM ledger_checkpoints") == checkpoints


async def test_bad_events_are_refused_before_anything_is_written(ledger_app):
    from mcpstore_appliance.errors import InvalidInput

    app = ledger_app
    with pytest.raises(InvalidInput):
        await append(app, [event(0), {**event(1), "sha256": "not-a-hash"}])
    assert await app.services.ledger.tree_size() == 0
    assert await app.services.db.fetch_value("SELECT COUNT(*) FROM ledger_leaves") == 0


async def test_concurrent_publishers_share_checkpoints(start_app):
    interval = 0.2
    app = await start_app(ledger={"checkpoint_interval_seconds": interval})
    ledger = app.services.ledger
    loop = asyncio.get_running_loop()
    started = loop.time()

    async def publish(i):
        async with app.services.db.write() as tx:
            index = await ledger.append(tx, event(i))
        checkpoint = await ledger.ensure_checkpoint(index + 1)
        assert checkpoint.size > index
        proof = await ledger.proof_for(index, checkpoint)
        verify_inclusion(index, checkpoint.size, b64d(proof["leaf_hash"]),
                         [b64d(h) for h in proof["inclusion_proof"]], checkpoint.root)
        return checkpoint.size

    sizes = await asyncio.gather(*(publish(i) for i in range(40)))
    elapsed = loop.time() - started
    signed = await app.services.db.fetch_value("SELECT COUNT(*) FROM ledger_checkpoints")
    # Signatures are spaced by the interval, so 40 publishers cannot cause more than elapsed/interval + 1.
    assert 1 <= signed <= int(elapsed / interval) + 1
    assert len(set(sizes)) == signed and max(sizes) == 40


async def test_every_ledger_route_is_documented(ledger_app):
    assert undocumented_routes(ledger_app.app, ("/ledger",)) == []
    status, document, _ = await ledger_app.client.get("/api/openapi.json")
    assert {"/ledger/checkpoint", "/ledger/proof/inclusion", "/ledger/witness/add-checkpoint"} <= set(document["paths"])


async def test_a_tree_that_contradicts_a_signed_checkpoint_is_never_signed_again(ledger_app):
    import sqlite3

    app = ledger_app
    await append(app, [event(i) for i in range(8)])
    signed = await app.services.ledger.ensure_checkpoint(8)
    # a damaged row under the signed root (say, a bad restore), seen by a freshly started process
    conn = sqlite3.connect(app.services.db.path)
    blob = conn.execute("SELECT hashes FROM ledger_leaves WHERE idx = 7").fetchone()[0]  # holds node (3, 0)
    conn.execute("UPDATE ledger_leaves SET hashes = ? WHERE idx = 7", (blob[:96] + bytes([blob[96] ^ 1]) + blob[97:],))
    conn.commit()
    conn.close()
    app.services.ledger.hashes.forget()
    await append(app, [event(8)])
    status, body, _ = await app.client.get("/ledger/checkpoint")
    assert status == 503 and body["error"]["code"] == "ledger_inconsistent"
    assert "checkpoint 8" in body["error"]["message"] and "mcpstore ledger verify" in body["error"]["message"]
    assert await app.services.db.fetch_value("SELECT MAX(size) FROM ledger_checkpoints") == signed.size


async def test_lookups_across_indexed_blocks_and_the_open_block(ledger_app, monkeypatch):
    from mcpstore_appliance.ledger import service

    monkeypatch.setattr(service, "LOOKUP_BLOCK", 16)
    app = ledger_app
    for i in range(50):  # bundle 3 is published again (as another release) at 40, and yanked at 20 and 49
        if i in (20, 49):
            events = [status_event("yank", namespace="acme", name="tool3", version="1.0.3", sha256=sha(3))]
        else:
            events = [event(3 if i == 40 else i)]
        await append(app, events)
    assert await app.services.db.fetch_value("SELECT COUNT(*) FROM ledger_lookup") == 2 * 48
    status, found, _ = await app.client.get(f"/ledger/lookup/{sha(3)}")
    assert found["indices"] == [3, 20, 40, 49]
    status, found, _ = await app.client.get("/ledger/release/acme/tool3/1.0.3")
    assert found["indices"] == [3, 20, 40, 49]
    status, found, _ = await app.client.get(f"/ledger/lookup/{sha(41)}")
    assert found["indices"] == [41]
    status, found, _ = await app.client.get(f"/ledger/lookup/{sha(20)}")
    assert found["indices"] == []
