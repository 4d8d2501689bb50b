-- The curated mirror (catalog/mirror.py): releases an admin imported from an upstream registry, verified
-- against the upstream's signed ledger and re-checked by this appliance's own scans.

-- Upstream registries and the ledger key pinned for each (given by the admin, or the key served when the
-- upstream was added, recorded as such); `checkpoint` is the newest upstream checkpoint verified, so that a
-- later one is accepted only with a consistency proof from it.
CREATE TABLE mirror_upstreams (
    id          INTEGER PRIMARY KEY,
    url         TEXT NOT NULL UNIQUE,         -- base URL, normalized (scheme://host[:port][/path], no slash at the end)
    ledger_key  TEXT NOT NULL,                -- signed-note verifier key name+id+base64
    pinned      TEXT NOT NULL CHECK (pinned IN ('given', 'first-use')),
    checkpoint  TEXT,
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  REAL NOT NULL
);

-- Where a mirrored version came from: written in the version's own publish transaction, never changed.
CREATE TABLE mirror_provenance (
    version_id      INTEGER PRIMARY KEY REFERENCES versions(id),
    upstream_id     INTEGER NOT NULL REFERENCES mirror_upstreams(id),
    upstream_url    TEXT NOT NULL,
    upstream_release TEXT NOT NULL,            -- namespace/name@version at the upstream
    leaf_index      INTEGER NOT NULL,          -- of the upstream's publish leaf
    leaf            TEXT NOT NULL,             -- that leaf, verbatim
    tree_size       INTEGER NOT NULL,
    checkpoint      TEXT NOT NULL,             -- the upstream's signed checkpoint, verbatim
    inclusion_proof TEXT NOT NULL,             -- JSON list of base64 hashes
    sha256          TEXT NOT NULL,
    mirrored_by     INTEGER REFERENCES users(id) ON DELETE SET NULL,
    mirrored_at     REAL NOT NULL,
    UNIQUE (upstream_id, upstream_release)
);

-- A local package that follows an upstream package: `mirror check` looks there for newer versions.
CREATE TABLE mirror_follows (
    package_id          INTEGER PRIMARY KEY REFERENCES packages(id),
    upstream_id         INTEGER NOT NULL REFERENCES mirror_upstreams(id),
    upstream_namespace  TEXT NOT NULL,
    upstream_name       TEXT NOT NULL
);

-- Newer upstream versions found by `mirror check`: nothing is imported until an admin approves.
CREATE TABLE mirror_pending (
    id          INTEGER PRIMARY KEY,
    package_id  INTEGER NOT NULL REFERENCES packages(id),
    version     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'approved', 'rejected')),
    found_at    REAL NOT NULL,
    decided_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    decided_at  REAL,
    reason      TEXT,
    UNIQUE (package_id, version)
);
