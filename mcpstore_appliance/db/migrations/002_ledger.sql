-- Provenance ledger (RFC 6962 Merkle tree), its signed checkpoints, witness cosignatures and witness state.

-- One row per leaf, index from 0, dense and append-only.
--   hashes: the stored hashes this append created, in Go tlog's stored-hash order: the leaf hash, then one hash
--           per complete subtree the leaf closes (1 + trailing ones of idx), 32 bytes each. Every complete-subtree
--           hash of the tree lives in exactly one row, so roots and proofs read O(log n) rows.
--   data:   the exact leaf: canonical JSON of the event, or of a sealed commitment for a private release.
--   sha_key, release_key: lookup keys (first 8 bytes, as a signed integer, of the bundle sha256 and of
--           sha256(namespace NUL name NUL version)); lookups confirm every candidate against the leaf itself.
CREATE TABLE ledger_leaves (
    idx         INTEGER PRIMARY KEY,
    hashes      BLOB NOT NULL,
    data        BLOB NOT NULL,
    sha_key     INTEGER,
    release_key INTEGER,
    org_id      INTEGER,          -- set for sealed (private) leaves; NULL for public ones
    opening     BLOB,             -- sealed leaves only: the event's canonical JSON
    salt        TEXT              -- sealed leaves only: hex salt of the commitment
);

-- The lookup index: (block, key, leaf) for both keys of every leaf in completed blocks of 8192 leaves, written a
-- block at a time by the append that completes it. Keyed by block first, a new block lands at the end of the
-- B-tree (sequential pages) instead of one random page per key, which would dominate the cost of an append at
-- millions of leaves; a lookup probes each block's part (one index seek per 8192 leaves) and scans the open
-- block by rowid. (WITHOUT ROWID: the primary key is the whole row. Drop the clause for other databases.)
CREATE TABLE ledger_lookup (
    block INTEGER NOT NULL,
    key   INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    PRIMARY KEY (block, key, idx)
) WITHOUT ROWID;

-- Every checkpoint this log signed (C2SP signed note text).
CREATE TABLE ledger_checkpoints (
    size       INTEGER PRIMARY KEY,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- Cosignature lines that configured witnesses returned for our checkpoints.
CREATE TABLE ledger_cosignatures (
    size       INTEGER NOT NULL,
    witness    TEXT NOT NULL,
    line       TEXT NOT NULL,
    timestamp  INTEGER NOT NULL,
    PRIMARY KEY (size, witness)
);

-- The size each witness last cosigned for our log (the `old` of the next add-checkpoint request).
CREATE TABLE ledger_witness_progress (
    witness    TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    updated_at REAL NOT NULL
);

-- As a witness for other logs: the latest checkpoint cosigned per origin.
CREATE TABLE ledger_witnessed (
    origin     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    root       BLOB NOT NULL,
    note       TEXT NOT NULL,
    updated_at REAL NOT NULL
);
