-- The audit log, rebuilt with NIST AU-3's fields and one hash chain per organization (audit/).
-- The old single-chain table is kept as it was (renamed, still append-only) so its history stays checkable;
-- new events go to the new table.
DROP TRIGGER audit_events_no_update;
DROP TRIGGER audit_events_no_delete;
ALTER TABLE audit_events RENAME TO audit_events_v1;
DROP INDEX IF EXISTS audit_by_org;
CREATE INDEX audit_v1_by_org ON audit_events_v1(org_id, id);
CREATE TRIGGER audit_events_v1_no_update BEFORE UPDATE ON audit_events_v1
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_v1_no_delete BEFORE DELETE ON audit_events_v1
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;

-- chain: the org's id, or 0 for site-wide events (org_id NULL); seq counts 1, 2, ... within a chain.
-- hash = sha256(prev_hash || canonical JSON of every other column but id) (audit/chain.py).
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    event_id    TEXT NOT NULL UNIQUE,                   -- time-ordered UUID (v7)
    chain       INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    at_ms       INTEGER NOT NULL,                       -- when: Unix time in milliseconds, UTC
    org_id      INTEGER,
    actor_id    INTEGER,                                -- who
    actor       TEXT NOT NULL,                          -- username, "system" or "anonymous"
    action      TEXT NOT NULL,                          -- what: category.operation
    target      TEXT,                                   -- the object acted on
    outcome     TEXT NOT NULL CHECK (outcome IN ('success', 'failure')),
    reason      TEXT,                                   -- why it failed
    ip          TEXT,                                   -- source address
    location    TEXT,                                   -- where: the appliance's surface (e.g. "POST /api/tokens", "cli")
    request_id  TEXT,
    user_agent  TEXT,
    details     TEXT NOT NULL DEFAULT '{}',             -- canonical JSON
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    UNIQUE (chain, seq)
);
CREATE INDEX audit_by_org ON audit_events(org_id, id);
CREATE INDEX audit_by_time ON audit_events(at_ms);

-- Signed checkpoints of a chain (audit/seals.py): {chain, last_seq, head_hash, at_ms, prev_seal}, Ed25519,
-- each also logged as a ledger leaf (ledger_index) so a cut-off tail shows against the transparency log.
CREATE TABLE audit_seals (
    id           INTEGER PRIMARY KEY,
    chain        INTEGER NOT NULL,
    org_id       INTEGER,
    last_seq     INTEGER NOT NULL,
    head_hash    TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    prev_seal    TEXT NOT NULL,                         -- the chain's previous seal hash (zeros for the first)
    seal_hash    TEXT NOT NULL UNIQUE,                  -- sha256 of the signed body
    key_id       TEXT NOT NULL,
    signature    TEXT NOT NULL,                         -- base64 Ed25519 over the body's canonical JSON
    ledger_index INTEGER
);
CREATE INDEX audit_seals_by_chain ON audit_seals(chain, last_seq);

-- Retention (audit/retention.py): a signed anchor records the pruned prefix's last seq and hash, and only rows an
-- anchor covers may be deleted; the chain then verifies from the anchor.
CREATE TABLE audit_anchors (
    id           INTEGER PRIMARY KEY,
    chain        INTEGER NOT NULL,
    through_seq  INTEGER NOT NULL,
    through_hash TEXT NOT NULL,
    at_ms        INTEGER NOT NULL,
    key_id       TEXT NOT NULL,
    signature    TEXT NOT NULL
);
CREATE INDEX audit_anchors_by_chain ON audit_anchors(chain, through_seq);

CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (SELECT 1 FROM audit_anchors a WHERE a.chain = OLD.chain AND a.through_seq >= OLD.seq)
BEGIN SELECT RAISE(ABORT, 'audit events are append-only (only a pruned prefix may be deleted)'); END;
CREATE TRIGGER audit_seals_no_update BEFORE UPDATE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit seals are append-only'); END;
CREATE TRIGGER audit_seals_no_delete BEFORE DELETE ON audit_seals
BEGIN SELECT RAISE(ABORT, 'audit seals are append-only'); END;
CREATE TRIGGER audit_anchors_no_update BEFORE UPDATE ON audit_anchors
BEGIN SELECT RAISE(ABORT, 'audit anchors are append-only'); END;
CREATE TRIGGER audit_anchors_no_delete BEFORE DELETE ON audit_anchors
BEGIN SELECT RAISE(ABORT, 'audit anchors are append-only'); END;
