-- Users, organizations, namespaces, memberships, API tokens, web sessions, invites, setup links.
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    username      TEXT NOT NULL UNIQUE,          -- also the user's personal namespace
    display_name  TEXT NOT NULL,
    password_hash TEXT,                          -- argon2id string; NULL for SSO-only users
    is_admin      INTEGER NOT NULL DEFAULT 0,
    is_disabled   INTEGER NOT NULL DEFAULT 0,
    created_at    REAL NOT NULL
);

CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- One name space shared by users and orgs, so a user and an org can never take the same namespace.
CREATE TABLE namespaces (
    name    TEXT PRIMARY KEY,
    user_id INTEGER REFERENCES users(id) ON DELETE CASCADE,
    org_id  INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    CHECK ((user_id IS NULL) <> (org_id IS NULL))
);

CREATE TABLE memberships (
    org_id     INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'publisher', 'member', 'auditor')),
    created_at REAL NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX memberships_by_user ON memberships(user_id);

CREATE TABLE api_tokens (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id       INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,   -- sha256 hex of the secret; the secret is shown once
    prefix       TEXT NOT NULL,          -- first characters, to tell tokens apart in lists
    scopes       TEXT NOT NULL,          -- space separated: read publish admin
    created_at   REAL NOT NULL,
    expires_at   REAL,
    last_used_at REAL,
    revoked_at   REAL
);
CREATE INDEX api_tokens_by_user ON api_tokens(user_id);

CREATE TABLE web_sessions (
    id_hash    TEXT PRIMARY KEY,         -- sha256 hex of the cookie value
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX web_sessions_by_user ON web_sessions(user_id);

CREATE TABLE invites (
    code_hash  TEXT PRIMARY KEY,
    email      TEXT COLLATE NOCASE,
    org_id     INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
    role       TEXT,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at    REAL
);

-- One-time link printed on a fresh data folder to create the first admin.
CREATE TABLE setup_links (
    code_hash  TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    used_at    REAL
);
