"""The `Ledger` service on a real SQLite file: appends inside the caller's transaction, roots and proofs against
the RFC 6962 reference, signed checkpoints, lookups with sealed (private) leaves, tiles, and the refusal to sign a
tree that contradicts a signed checkpoint."""

from __future__ import annotations

import base64
import json
import sqlite3

import pytest
from nacl.signing import SigningKey

from mcpstore_appliance.config import LedgerSettings
from mcpstore_appliance.db import Database
from mcpstore_appliance.errors import InvalidInput, NotFound
from mcpstore_appliance.ledger import events as ev
from mcpstore_appliance.ledger import publish_event
from mcpstore_appliance.ledger.checkpoint import open_checkpoint
from mcpstore_appliance.ledger.entry import LedgerInconsistent
from mcpstore_appliance.ledger.merkle import (consistency_proof_reference, inclusion_proof_reference, leaf_hash,
                                              root_reference, verify_inclusion)
from mcpstore_appliance.ledger.service import Ledger
from mcpstore_appliance.ledger.tiles import TileRef

ORIGIN = "unit.example/ledger"


def event(i: int) -> dict:
    return publish_event(namespace="acme", name="tool", version=f"1.0.{i}", sha256=f"{i:064x}", size=i,
                         publisher="alice", signer_fingerprint=None, time="2026-01-01T00:00:00Z")


@pytest.fixture
async def ledger(tmp_path):
    db = await Database(tmp_path / "ledger.sqlite3").open()
    service = Ledger(db, SigningKey.generate(), ORIGIN, LedgerSettings(checkpoint_interval_seconds=0))
    yield service
    await service.close()
    await db.close()


async def append(ledger: Ledger, events: list[dict], org_id: int | None = None) -> list[int]:
    async with ledger.db.write() as tx:
        return await ledger.append_many(tx, events, org_id=org_id)


def leaves_of(events: list[dict]) -> list[bytes]:
    return [ev.encode(e) for e in events]


def hashes_of(events: list[dict]) -> list[bytes]:
    """The leaf hashes, which the RFC 6962 reference functions take."""
    return [leaf_hash(leaf) for leaf in leaves_of(events)]


async def test_appends_give_dense_indices_and_the_reference_root_and_proofs(ledger):
    events = [event(i) for i in range(13)]
    assert await append(ledger, events[:5]) == [0, 1, 2, 3, 4]
    assert await append(ledger, events[5:]) == list(range(5, 13))
    leaves = hashes_of(events)
    assert await ledger.tree_size() == 13
    for size in (1, 5, 8, 13):
        assert await ledger.root(size) == root_reference(leaves[:size])
    assert await ledger.inclusion_proof(6, 13) == inclusion_proof_reference(6, leaves)
    assert await ledger.consistency_proof(5, 13) == consistency_proof_reference(5, leaves)


async def test_an_append_in_a_rolled_back_transaction_leaves_nothing(ledger):
    await append(ledger, [event(0)])
    with pytest.raises(RuntimeError):
        async with ledger.db.write() as tx:
            await ledger.append(tx, event(1))
            raise RuntimeError("the publish failed")
    assert await ledger.tree_size() == 1
    assert await append(ledger, [event(2)]) == [1]


async def test_proofs_beyond_the_tree_or_out_of_range_are_bad_input(ledger):
    await append(ledger, [event(i) for i in range(4)])
    with pytest.raises(InvalidInput) as excinfo:
        await ledger.inclusion_proof(1, 9)
    assert excinfo.value.code == "out_of_range" and excinfo.value.details == {"tree_size": 4}
    for call in (ledger.inclusion_proof(4, 4), ledger.consistency_proof(0, 4), ledger.consistency_proof(3, 2)):
        with pytest.raises(InvalidInput):
            await call
    with pytest.raises(NotFound):
        await ledger.entry(4)


async def test_a_checkpoint_is_signed_once_per_size_and_its_proofs_verify(ledger):
    events = [event(i) for i in range(6)]
    await append(ledger, events)
    checkpoint = await ledger.ensure_checkpoint(6)
    assert await ledger.ensure_checkpoint(3) is checkpoint  # an older size is covered by the latest one
    opened = open_checkpoint(checkpoint.note, [ledger.verifier], ORIGIN)
    assert (opened.size, opened.root) == (6, root_reference(hashes_of(events)))
    proof = await ledger.proof_for(2, checkpoint)
    verify_inclusion(2, 6, hashes_of(events)[2], [base64.b64decode(h) for h in proof["inclusion_proof"]],
                     opened.root)
    with pytest.raises(NotFound):
        await ledger.ensure_checkpoint(7)


async def test_lookups_find_a_bundle_and_sealed_leaves_only_for_who_may_open_them(ledger):
    await append(ledger, [event(1), event(2)])
    [sealed] = await append(ledger, [event(3)], org_id=7)
    assert await ledger.lookup(f"{2:064x}") == [1]
    assert await ledger.lookup(f"{3:064x}") == [sealed]  # the catalog's own use: every leaf
    assert await ledger.lookup(f"{3:064x}", public_only=True) == []
    assert await ledger.lookup(f"{3:064x}", may_open=lambda e: False) == []
    assert await ledger.lookup(f"{3:064x}", may_open=lambda e: e["version"] == "1.0.3") == [sealed]
    assert await ledger.lookup_release("acme", "tool", "1.0.1") == [0]
    entry = await ledger.entry(sealed)
    assert entry.org_id == 7 and entry.opened_event() == event(3)
    assert "1.0.3" not in entry.leaf.decode()  # the public leaf is only a commitment
    assert json.loads(entry.member_view()["sealed"]["event"]) == event(3)
    with pytest.raises(InvalidInput):
        await ledger.lookup("not-a-hash")


async def test_tiles_hold_the_entries_and_do_not_exist_before_their_leaves(ledger):
    await append(ledger, [event(i) for i in range(3)])
    entries = await ledger.tile(TileRef(level=None, n=0, width=3))
    assert all(leaf in entries for leaf in leaves_of([event(i) for i in range(3)]))
    with pytest.raises(NotFound):
        await ledger.tile(TileRef(level=None, n=0, width=4))


async def test_a_tree_that_contradicts_a_signed_checkpoint_is_not_signed_again(ledger):
    await append(ledger, [event(i) for i in range(4)])
    await ledger.ensure_checkpoint(4)
    conn = sqlite3.connect(ledger.db.path)  # a damaged row under the signed root, as after a bad restore
    conn.execute("UPDATE ledger_leaves SET hashes = zeroblob(length(hashes)) WHERE idx = 3")
    conn.commit()
    conn.close()
    ledger.hashes.forget()
    await append(ledger, [event(4)])
    with pytest.raises(LedgerInconsistent):
        await ledger.ensure_checkpoint(5)
