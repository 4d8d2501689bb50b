-- SCIM 2.0 provisioning per org (accounts/scim.py). An org's IdP creates appliance users through SCIM; such a
-- user is managed by that org alone (scim_users), so its IdP can disable the account but never touch one it did
-- not create. Groups are the IdP's named groups; a group named after an org role grants that role.
CREATE TABLE scim_tokens (
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
CREATE INDEX scim_tokens_by_org ON scim_tokens(org_id);

CREATE TABLE scim_users (
    id           INTEGER PRIMARY KEY,        -- the SCIM id (immutable)
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id      INTEGER NOT NULL UNIQUE REFERENCES users(id) ON DELETE CASCADE,
    user_name    TEXT NOT NULL,
    external_id  TEXT,
    active       INTEGER,                    -- 1, 0 (deprovisioned) or NULL (not set: the account is enabled)
    given_name   TEXT,
    family_name  TEXT,
    formatted    TEXT,
    display_name TEXT,
    emails       TEXT NOT NULL DEFAULT '[]', -- JSON list of {value, type, primary} as the IdP sent it
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    UNIQUE (org_id, user_name COLLATE NOCASE)
);

CREATE TABLE scim_groups (
    id           INTEGER PRIMARY KEY,
    org_id       INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    display_name TEXT NOT NULL,
    external_id  TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    UNIQUE (org_id, display_name COLLATE NOCASE)
);

CREATE TABLE scim_group_members (
    group_id     INTEGER NOT NULL REFERENCES scim_groups(id) ON DELETE CASCADE,
    scim_user_id INTEGER NOT NULL REFERENCES scim_users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, scim_user_id)
) WITHOUT ROWID;
