"""Provenance ledger: an RFC 6962 transparency log of every release, with C2SP signed checkpoints.

- merkle.py            hashing and proof verification (RFC 6962 / 9162)
- storedhash.py        the stored-hash layout: O(log n) appends, roots and proofs over a dense hash array
- note.py              signed notes, verifier keys, cosignatures (C2SP signed-note, tlog-cosignature)
- checkpoint.py        tlog-checkpoint bodies
- tiles.py             tlog-tiles paths and entry bundles
- events.py            ledger events and their canonical JSON leaves
- entry.py             an entry as stored, and the errors the readers share
- hash_reads.py        reading stored hashes, with the cache of committed ones
- service.py           `Ledger`: appends in the caller's transaction, checkpoints, proofs, lookups, tiles
- origin.py            the log's origin, fixed in the data folder on first start
- witness.py           this appliance as a tlog-witness for other logs
- witness_client.py    collecting cosignatures from our witnesses
- integrity.py         the operator's full check (`mcpstore ledger verify`): recompute everything, name tampering
- integrity_chunks.py  its per-chunk work, in worker processes
- client_check.py      the client's check (`mcpstore verify`) of one bundle against a registry's ledger

Not to be confused with the `audit` package: the append-only log of user actions.
"""

from .checkpoint import Checkpoint
from .events import publish_event, status_event
from .service import Entry, Ledger
from .witness import Witness, default_witness_name

__all__ = ["Checkpoint", "Entry", "Ledger", "Witness", "default_witness_name", "publish_event", "status_event"]
