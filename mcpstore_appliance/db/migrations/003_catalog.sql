-- Packages, their immutable versions, and the append-only audit log.
-- (namespace, name, version) is taken forever: rows in `versions` are never deleted; yank, deprecate,
-- quarantine release and reject change status columns only.

CREATE TABLE packages (
    id                 INTEGER PRIMARY KEY,
    namespace          TEXT NOT NULL REFERENCES namespaces(name),
    name               TEXT NOT NULL,
    org_id             INTEGER REFERENCES orgs(id),     -- tenancy: the owning org, NULL for a personal namespace
    owner_user_id      INTEGER REFERENCES users(id),    -- the owning user for a personal namespace
    visibility         TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'org', 'private')),
    category           TEXT,
    pricing_model      TEXT NOT NULL DEFAULT 'free' CHECK (pricing_model IN ('free', 'per_call', 'subscription')),
    price_amount       INTEGER NOT NULL DEFAULT 0,      -- minor units (cents, satoshis)
    currency           TEXT CHECK (currency IS NULL OR currency IN ('usd', 'eur', 'sat')),
    tier               TEXT NOT NULL DEFAULT 'hobbyist' CHECK (tier IN ('hobbyist', 'pro')),
    endpoint_url       TEXT,                            -- pro tier: the publisher's own https endpoint
    latest_version_id  INTEGER,                         -- highest published, non-yanked, non-pre-release
    verified           INTEGER NOT NULL DEFAULT 0,
    downloads          INTEGER NOT NULL DEFAULT 0,      -- folded from download events, never +1 per request
    invocations        INTEGER NOT NULL DEFAULT 0,
    rating_avg         REAL,
    rating_count       INTEGER NOT NULL DEFAULT 0,
    created_at         REAL NOT NULL,
    updated_at         REAL NOT NULL,
    UNIQUE (namespace, name)
);
CREATE INDEX packages_by_org ON packages(org_id);

CREATE TABLE versions (
    id                   INTEGER PRIMARY KEY,
    package_id           INTEGER NOT NULL REFERENCES packages(id),
    version              TEXT NOT NULL,
    semver_key           TEXT NOT NULL,                 -- sortable form of the version (see catalog.semver)
    is_prerelease        INTEGER NOT NULL DEFAULT 0,
    state                TEXT NOT NULL CHECK (state IN ('published', 'quarantined', 'rejected')),
    yanked_at            REAL,
    yank_reason          TEXT,
    deprecated_at        REAL,
    deprecation_reason   TEXT,
    sha256               TEXT NOT NULL,
    size                 INTEGER NOT NULL,
    unsigned_sha256      TEXT,
    manifest_version     TEXT,
    manifest_json        TEXT NOT NULL,
    metadata_json        TEXT NOT NULL,                 -- the extracted PackageMetadata
    platforms            TEXT NOT NULL DEFAULT '[]',    -- JSON list
    runtimes             TEXT NOT NULL DEFAULT '[]',    -- JSON list
    signature_status     TEXT NOT NULL CHECK (signature_status IN ('unsigned', 'signed', 'self-signed')),
    signer_subject       TEXT,
    signer_issuer        TEXT,
    signer_not_before    TEXT,
    signer_not_after     TEXT,
    signer_fingerprint   TEXT,
    findings_json        TEXT NOT NULL DEFAULT '[]',
    changelog            TEXT,
    pricing_model        TEXT NOT NULL DEFAULT 'free',
    price_amount         INTEGER NOT NULL DEFAULT 0,
    currency             TEXT,
    tier                 TEXT NOT NULL DEFAULT 'hobbyist',
    endpoint_url         TEXT,
    publisher_user_id    INTEGER REFERENCES users(id),
    ledger_index         INTEGER,
    published_at         REAL NOT NULL,
    updated_at           REAL NOT NULL,
    reviewed_by          INTEGER REFERENCES users(id),  -- admin who released or rejected a quarantined version
    UNIQUE (package_id, version)
);
CREATE INDEX versions_by_sha256 ON versions(sha256);
CREATE INDEX versions_by_state ON versions(state);
CREATE INDEX versions_by_package_semver ON versions(package_id, semver_key);

-- Append-only, hash-chained audit events: each row's hash covers the previous row's hash.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    at          REAL NOT NULL,
    actor_id    INTEGER,
    actor       TEXT NOT NULL,                          -- username, "system", or "anonymous"
    action      TEXT NOT NULL,                          -- e.g. user.login, package.publish, token.create
    org_id      INTEGER,
    target      TEXT,
    details     TEXT NOT NULL DEFAULT '{}',             -- canonical JSON
    ip          TEXT,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_by_org ON audit_events(org_id, id);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
