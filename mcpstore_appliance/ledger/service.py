"""The ledger service: appends inside the caller's transaction, signed checkpoints, proofs, tiles, lookups.

Storage is the stored-hash layout (storedhash.py) in `ledger_leaves`, so an append writes about two rows and
reads at most log2(n) hashes, and a root or proof reads O(log n) rows in one query (hash_reads.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any

from nacl.signing import SigningKey

from ..config import LedgerSettings
from ..db import Database, Transaction
from ..errors import InvalidInput, NotFound
from . import events as ev
from . import note as notes
from . import storedhash as sh
from .checkpoint import Checkpoint, add_signature_lines, open_checkpoint, sign_checkpoint
from .entry import Entry, LedgerInconsistent, MayOpen
from .hash_reads import MissingHashes, StoredHashes
from .merkle import leaf_hash
from .tiles import TileRef, encode_entries
from .witness import Witness
from .witness_client import WitnessCollector

log = logging.getLogger("mcpstore.ledger")

LOOKUP_BLOCK = 8192  # leaves per lookup-index block (see _index_block)


class Ledger:
    def __init__(self, db: Database, signing_key: SigningKey, origin: str, settings: LedgerSettings,
                 *, witness: Witness | None = None):
        self.db = db
        self.origin = origin
        self.settings = settings
        self._signing_key = signing_key
        self._verifier = notes.verifier_for(origin, signing_key)
        self._checkpoint_lock = asyncio.Lock()
        self._latest: tuple[object, Checkpoint | None] | None = None  # (commit stamp, newest checkpoint)
        self._last_signed = float("-inf")  # monotonic time of our last signature
        self.hashes = StoredHashes(db)
        self.collector = WitnessCollector(self, settings.witnesses, settings.witness_retry_seconds)
        self.witness = witness  # set when this appliance cosigns other logs

    # --- keys -------------------------------------------------------------------------------------------

    def verifier_key(self) -> str:
        return self._verifier.vkey()

    @property
    def verifier(self) -> notes.Verifier:
        return self._verifier

    # --- appending (inside the caller's write transaction) ------------------------------------------------

    async def append(self, tx: Transaction, event: dict, *, org_id: int | None = None) -> int:
        """Append one event as a leaf; returns its index. `org_id` seals the leaf (private release)."""
        return (await self.append_many(tx, [event], org_id=org_id))[0]

    async def append_many(self, tx: Transaction, events: Iterable[dict], *, org_id: int | None = None) -> list[int]:
        """Append events in order inside the caller's transaction: one row per leaf, O(log n) reads in all."""
        rows = [self._leaf_row(event, org_id) for event in events]
        if not rows:
            return []
        size = await tx.fetch_value("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves")
        frontier = await self.hashes.in_transaction(tx, sh.root_nodes(size))
        appender = sh.Appender(size, frontier)
        for row in rows:
            appender.add(leaf_hash(row[0]))
        await tx.execute_many(
            "INSERT INTO ledger_leaves (idx, hashes, data, sha_key, release_key, org_id, opening, salt)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(index, hashes, *row) for (index, hashes), row in zip(appender.rows, rows)])
        for block in range(size // LOOKUP_BLOCK, appender.size // LOOKUP_BLOCK):
            await self._index_block(tx, block * LOOKUP_BLOCK)
        return [index for index, _ in appender.rows]

    @staticmethod
    async def _index_block(tx: Transaction, start: int) -> None:
        """Add a completed block's lookup keys to the index (see the ledger_lookup table for why by block)."""
        await tx.execute(
            "INSERT INTO ledger_lookup (block, key, idx) SELECT ?, key, idx FROM ("
            " SELECT sha_key AS key, idx FROM ledger_leaves WHERE idx >= ? AND idx < ? AND sha_key IS NOT NULL"
            " UNION SELECT release_key, idx FROM ledger_leaves WHERE idx >= ? AND idx < ? AND release_key IS NOT NULL"
            ") ORDER BY key, idx",
            (start // LOOKUP_BLOCK, start, start + LOOKUP_BLOCK, start, start + LOOKUP_BLOCK))

    @staticmethod
    def _leaf_row(event: dict, org_id: int | None) -> tuple:
        data = ev.encode(event)
        sha_key, release_key = ev.lookup_keys(event)
        if org_id is None:
            return data, sha_key, release_key, None, None, None
        sealed, salt = ev.seal(data)
        return sealed, sha_key, release_key, org_id, data, salt

    # --- reading hashes -------------------------------------------------------------------------------

    async def tree_size(self) -> int:
        """Committed leaves (O(log n): the primary key's last entry)."""
        return self.db.inline(lambda c: c.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves").fetchone()[0])

    async def root(self, size: int) -> bytes:
        return sh.root_hash(size, await self._read_for(size, sh.root_nodes(size)))

    async def _read_for(self, size: int, nodes: Sequence[sh.Node]) -> dict[sh.Node, bytes]:
        """Read the hashes a computation over the tree of `size` needs; a size beyond the tree is bad input."""
        try:
            return await self.hashes.committed(nodes)
        except MissingHashes:
            current = await self.tree_size()
            if size > current:
                raise InvalidInput(f"size {size} is larger than the tree ({current} entries)", code="out_of_range",
                                   details={"tree_size": current}) from None
            raise

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        if not 0 <= index < size:
            raise InvalidInput(f"index must be in [0, {size})", code="out_of_range")
        ranges = sh.inclusion_ranges(index, size)
        nodes = sh.ranges_nodes(ranges) + [(0, size - 1)]  # the last leaf's row proves the tree is that big
        return sh.ranges_hashes(ranges, await self._read_for(size, nodes))

    async def consistency_proof(self, old: int, new: int) -> list[bytes]:
        if not 0 < old <= new:
            raise InvalidInput("a consistency proof needs 0 < old <= new", code="out_of_range")
        ranges = sh.consistency_ranges(old, new)
        nodes = sh.ranges_nodes(ranges) + [(0, new - 1)]
        return sh.ranges_hashes(ranges, await self._read_for(new, nodes))

    # --- checkpoints ------------------------------------------------------------------------------------

    async def latest_checkpoint(self) -> Checkpoint | None:
        """The newest stored checkpoint, read again when the commit stamp moves (another worker process may have
        signed one)."""
        stamp = self.db.stamp()
        if self._latest is None or self._latest[0] != stamp:
            row = await self.db.fetch_one("SELECT note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
            self._latest = (stamp, None if row is None else self._open(row["note"]))
        return self._latest[1]

    def _open(self, note: str) -> Checkpoint | None:
        try:
            return open_checkpoint(note, [self._verifier], self.origin)
        except ValueError:
            return None  # signed by an earlier key or origin: the next ensure_checkpoint signs a fresh one

    async def ensure_checkpoint(self, min_size: int) -> Checkpoint:
        """A signed checkpoint covering at least `min_size` leaves; concurrent callers share one signature and
        signatures are spaced by `checkpoint_interval_seconds`, so a burst of publishes costs few signatures."""
        latest = await self.latest_checkpoint()
        if latest is not None and latest.size >= min_size:
            return latest
        async with self._checkpoint_lock:
            latest = await self.latest_checkpoint()
            if latest is not None and latest.size >= min_size:
                return latest
            wait = self._last_signed + self.settings.checkpoint_interval_seconds - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # let more appends land; they share the next checkpoint
            checkpoint = await self._sign(min_size)
        self.collector.schedule(checkpoint)
        return checkpoint

    async def _sign(self, min_size: int) -> Checkpoint:
        """Sign the current tree inside a write transaction: BEGIN IMMEDIATE makes signers take turns across
        worker processes, so each tree size is signed once and the tree cannot grow while its root is read."""
        async with self.db.write() as tx:
            size = await tx.fetch_value("SELECT COALESCE(MAX(idx) + 1, 0) FROM ledger_leaves")
            if size < min_size:
                raise NotFound(f"the ledger has {size} entries, fewer than {min_size}", code="out_of_range")
            last = await tx.fetch_one("SELECT size, root, note FROM ledger_checkpoints ORDER BY size DESC LIMIT 1")
            signed = None if last is None or last["size"] != size else self._open(last["note"])
            if signed is not None:  # another process signed this size a moment ago
                return signed
            await self._check_history(last, size)
            checkpoint = sign_checkpoint(self.origin, size, await self.root(size), self._signing_key)
            await tx.execute(
                "INSERT INTO ledger_checkpoints (size, root, note, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (size) DO UPDATE SET root = excluded.root, note = excluded.note,"
                " created_at = excluded.created_at",
                (size, checkpoint.root, checkpoint.note, time.time()))
        self._last_signed = time.monotonic()
        self._latest = (self.db.stamp(), checkpoint)  # the stamp after our commit
        return checkpoint

    async def _check_history(self, last: dict | None, size: int) -> None:
        """Refuse to sign a tree that does not extend the last signed one.

        Two signed checkpoints that are not consistent are proof of a forked log; if the stored tree no longer
        reproduces the last checkpoint's root (a bad restore, a tampered row), stop instead of signing."""
        if last is None:
            return
        if last["size"] > size or await self.root(last["size"]) != bytes(last["root"]):
            raise LedgerInconsistent(
                f"the stored ledger no longer extends checkpoint {last['size']}; refusing to sign a new "
                "checkpoint. Run `mcpstore ledger verify` to find the damaged rows.")

    async def checkpoint_at(self, size: int) -> Checkpoint | None:
        row = await self.db.fetch_one("SELECT note FROM ledger_checkpoints WHERE size = ?", (size,))
        if row is None:
            return None
        try:
            return open_checkpoint(row["note"], [self._verifier], self.origin)
        except ValueError:
            return None

    async def cosigned_note(self, checkpoint: Checkpoint) -> str:
        """The checkpoint note with every witness cosignature collected for it."""
        rows = await self.db.fetch_all("SELECT line FROM ledger_cosignatures WHERE size = ? ORDER BY witness",
                                       (checkpoint.size,))
        return add_signature_lines(checkpoint.note, [row["line"] for row in rows])

    async def store_cosignature(self, size: int, witness: str, line: str, timestamp: int) -> None:
        async with self.db.write() as tx:
            await tx.execute(
                "INSERT INTO ledger_cosignatures (size, witness, line, timestamp) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (size, witness) DO UPDATE SET line = excluded.line, timestamp = excluded.timestamp",
                (size, witness, line, timestamp))
            await tx.execute(
                "INSERT INTO ledger_witness_progress (witness, size, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (witness) DO UPDATE SET size = excluded.size, updated_at = excluded.updated_at",
                (witness, size, time.time()))

    async def witness_progress(self, witness: str) -> int:
        return await self.db.fetch_value("SELECT size FROM ledger_witness_progress WHERE witness = ?",
                                         (witness,), default=0)

    # --- proofs for clients -----------------------------------------------------------------------------

    async def proof_for(self, index: int, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
        """Everything a client needs to check entry `index` offline against a signed checkpoint."""
        if checkpoint is None:
            checkpoint = await self.ensure_checkpoint(index + 1)
        if not 0 <= index < checkpoint.size:
            raise InvalidInput(f"index {index} is not covered by a checkpoint of size {checkpoint.size}",
                               code="out_of_range")
        entry = await self.entry(index)
        proof = await self.inclusion_proof(index, checkpoint.size)
        result = {
            "leaf_index": index,
            "tree_size": checkpoint.size,
            "leaf_hash": notes.b64(entry.leaf_hash),
            "inclusion_proof": [notes.b64(h) for h in proof],
            "checkpoint": checkpoint.note,
            "leaf": entry.leaf.decode("utf-8"),
        }
        if entry.opening is not None:
            # Private release: callers only reach here after their own visibility check.
            result["sealed"] = {"salt": entry.salt, "event": entry.opening.decode("utf-8")}
        return result

    # --- entries and lookups --------------------------------------------------------------------------

    async def entry(self, index: int) -> Entry:
        row = await self.db.fetch_one("SELECT idx, data, org_id, opening, salt FROM ledger_leaves WHERE idx = ?",
                                      (index,))
        if row is None:
            raise NotFound(f"no ledger entry {index}", code="no_such_entry")
        data = bytes(row["data"])
        opening = None if row["opening"] is None else bytes(row["opening"])
        return Entry(row["idx"], data, leaf_hash(data), row["org_id"], opening, row["salt"])

    async def _candidates(self, column: str, key: int, public_only: bool,
                          may_open: MayOpen | None) -> list[tuple[int, dict]]:
        """Rows whose lookup hint matches, with their events (the hint is only a hint: callers confirm). A sealed
        row is returned only if `may_open` accepts its event (without it, all are: the catalog's own use)."""
        extra = " AND org_id IS NULL" if public_only else ""
        # Completed blocks are in the index; the block being filled is scanned by rowid (at most LOOKUP_BLOCK
        # rows). A stale size only starts the scan earlier, so nothing is missed while appends go on.
        blocks = (await self.tree_size()) // LOOKUP_BLOCK
        rows = await self.db.fetch_all(
            "WITH RECURSIVE b(n) AS (SELECT 0 WHERE ? > 0 UNION ALL SELECT n + 1 FROM b WHERE n + 1 < ?)"
            f" SELECT idx, data, opening FROM ledger_leaves WHERE idx IN"
            f" (SELECT l.idx FROM b JOIN ledger_lookup l ON l.block = b.n AND l.key = ?) AND {column} = ?{extra}"
            f" UNION SELECT idx, data, opening FROM ledger_leaves WHERE idx >= ? AND {column} = ?{extra} ORDER BY idx",
            (blocks, blocks, key, key, blocks * LOOKUP_BLOCK, key))
        found = []
        for row in rows:
            try:
                event = json.loads(row["opening"] if row["opening"] is not None else row["data"])
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if row["opening"] is None or may_open is None or may_open(event):
                found.append((row["idx"], event))
        return found

    async def lookup(self, sha256: str, *, public_only: bool = False, may_open: MayOpen | None = None) -> list[int]:
        """Indices of the entries about a bundle (its publish and status changes), oldest first. `public_only`
        leaves sealed (private) entries out; `may_open` keeps those whose event it accepts (a member's view)."""
        sha256 = sha256.lower()
        if not ev.SHA256_HEX.match(sha256):
            raise InvalidInput("sha256 must be 64 hex digits", code="invalid_sha256")
        key, _ = ev.lookup_keys({"sha256": sha256})
        return [i for i, event in await self._candidates("sha_key", key, public_only, may_open) if event.get("sha256") == sha256]

    async def lookup_release(self, namespace: str, name: str, version: str, *, public_only: bool = False,
                             may_open: MayOpen | None = None) -> list[int]:
        _, key = ev.lookup_keys({"namespace": namespace, "name": name, "version": version})
        return [i for i, event in await self._candidates("release_key", key, public_only, may_open)
                if (event.get("namespace"), event.get("name"), event.get("version")) == (namespace, name, version)]

    # --- tiles ------------------------------------------------------------------------------------------

    async def tile(self, ref: TileRef) -> bytes:
        size = await self.tree_size()
        if ref.leaves_needed() > size:
            raise NotFound("that tile does not exist yet", code="no_such_tile", details={"tree_size": size})
        if ref.is_entries:
            first = ref.n * 256
            rows = await self.db.fetch_all(
                "SELECT data FROM ledger_leaves WHERE idx >= ? AND idx < ? ORDER BY idx", (first, first + ref.width))
            return encode_entries([bytes(row["data"]) for row in rows])
        nodes = ref.hash_nodes()
        hashes = await self.hashes.committed(nodes, cache=False)
        return b"".join(hashes[node] for node in nodes)

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def close(self) -> None:
        await self.collector.close()
