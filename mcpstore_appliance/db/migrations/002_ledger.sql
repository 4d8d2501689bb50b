-- Provenance ledger (RFC 6962 Merkle tree), its signed checkpoints, witness cosignatures and witness state.

-- One row per leaf, index from 0, dense and append-only. `data` is the exact leaf (canonical JSON of the event,
-- or of a sealed commitment for a private release). The other columns are lookup copies of event fields;
-- `mcpstore ledger verify` checks they agree with the leaf.
CREATE TABLE ledger_leaves (
    idx        INTEGER PRIMARY KEY,
    data       BLOB NOT NULL,
    kind       TEXT NOT NULL,
    sha256     TEXT,
    namespace  TEXT,
    name       TEXT,
    version    TEXT,
    org_id     INTEGER,          -- set for sealed (private) leaves; NULL for public ones
    opening    BLOB,             -- sealed leaves only: the event's canonical JSON
    salt       TEXT,             -- sealed leaves only: hex salt of the commitment
    created_at REAL NOT NULL
);
CREATE INDEX ledger_leaves_by_sha256 ON ledger_leaves(sha256);
CREATE INDEX ledger_leaves_by_release ON ledger_leaves(namespace, name, version);

-- Every complete-subtree hash in Go tlog's "stored hash" order (index = f(level, n)); about two rows per leaf.
CREATE TABLE ledger_hashes (
    idx  INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
);

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
