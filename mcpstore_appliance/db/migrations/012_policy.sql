-- Group policy of organizations (policy/): every change is a new version row, never an update, so what a
-- device was told at any time can be shown again. Device tokens let an org's managed devices (pushed by MDM)
-- read that org's policy and nothing else; only their sha256 is kept.
CREATE TABLE org_policies (
    id          INTEGER PRIMARY KEY,
    org_id      INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    version     INTEGER NOT NULL CHECK (version >= 1),
    document    TEXT NOT NULL,               -- canonical JSON of the Policy
    sha256      TEXT NOT NULL,               -- of `document`
    created_by  INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at  REAL NOT NULL,
    UNIQUE (org_id, version)
);

CREATE TABLE device_tokens (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,       -- sha256 hex of the secret; the secret is shown once
    prefix       TEXT NOT NULL,
    created_by   INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);
CREATE INDEX device_tokens_by_org ON device_tokens(org_id);
