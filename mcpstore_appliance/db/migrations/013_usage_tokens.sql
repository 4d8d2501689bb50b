-- Usage tokens (mcpstore_appliance/tokens): licence keys a buyer pastes into a bundle's user_config, the usage
-- tokens (EdDSA JWTs, 15 minutes) their servers exchange them for, per-call reservations and reports, revocations.

-- A licence key: shown once, stored as its sha256; one active key per buyer and package.
CREATE TABLE licence_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    package_id   INTEGER NOT NULL REFERENCES packages(id),
    key_hash     TEXT NOT NULL UNIQUE,
    prefix       TEXT NOT NULL,
    created_at   REAL NOT NULL,
    last_used_at REAL,
    revoked_at   REAL
);
CREATE UNIQUE INDEX licence_keys_one_active ON licence_keys(user_id, package_id) WHERE revoked_at IS NULL;

-- Every usage token issued. Per-call packages: `calls` pre-authorised calls were moved from the buyer's wallet
-- to their hold account (journal wallet account `hold:user:<id>`) at issue, `used` of them were billed, and the
-- rest goes back to the wallet when the token has expired (`released_at`).
CREATE TABLE usage_tokens (
    jti              TEXT PRIMARY KEY,
    licence_id       INTEGER REFERENCES licence_keys(id),
    user_id          INTEGER NOT NULL REFERENCES users(id),
    package_id       INTEGER NOT NULL REFERENCES packages(id),
    issued_at        REAL NOT NULL,
    expires_at       REAL NOT NULL,
    calls            INTEGER NOT NULL DEFAULT 0 CHECK (calls >= 0),
    used             INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= calls),
    price            INTEGER NOT NULL DEFAULT 0,     -- one call, in journal minor units (cents, msat)
    currency         TEXT,                           -- journal currency: usd, eur, msat
    creator          TEXT,
    creator_share_bp INTEGER NOT NULL DEFAULT 0,
    released_at      REAL
);
CREATE INDEX usage_tokens_unreleased ON usage_tokens(expires_at) WHERE released_at IS NULL AND calls > 0;
CREATE INDEX usage_tokens_by_licence ON usage_tokens(licence_id, expires_at);

-- Tokens revoked one by one (their licence key was revoked); listed until they would have expired anyway.
CREATE TABLE usage_revocations (
    jti        TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    revoked_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX usage_revocations_by_expiry ON usage_revocations(expires_at);
CREATE INDEX market_entitlements_by_revocation ON market_entitlements(revoked_at) WHERE revoked_at IS NOT NULL;
