-- The appliance as the OAuth 2.1 authorisation server of its hosted MCP endpoints (oauth/).
-- Clients register themselves (RFC 7591, public clients only); codes, access and refresh tokens are stored as
-- sha256 hashes. A grant is one user's consent for one client and one resource: every token issued under it
-- belongs to it, so a replayed code or refresh token revokes the whole grant at once.
CREATE TABLE oauth_clients (
    client_id      TEXT PRIMARY KEY,
    client_name    TEXT NOT NULL,
    redirect_uris  TEXT NOT NULL,               -- JSON list, matched exactly at authorisation
    metadata_json  TEXT NOT NULL,               -- what the registration answered
    created_at     REAL NOT NULL
);

CREATE TABLE oauth_grants (
    id          INTEGER PRIMARY KEY,
    client_id   TEXT NOT NULL REFERENCES oauth_clients(client_id) ON DELETE CASCADE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    resource    TEXT NOT NULL,                  -- the token audience: {base_url}/mcp/{namespace}/{name}
    scope       TEXT NOT NULL,
    created_at  REAL NOT NULL,
    revoked_at  REAL
);
CREATE INDEX oauth_grants_by_user ON oauth_grants(user_id);

CREATE TABLE oauth_codes (
    code_hash       TEXT PRIMARY KEY,
    grant_id        INTEGER NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    redirect_uri    TEXT NOT NULL,
    code_challenge  TEXT NOT NULL,              -- S256 only
    expires_at      REAL NOT NULL,
    used_at         REAL
);

CREATE TABLE oauth_tokens (
    token_hash  TEXT PRIMARY KEY,
    grant_id    INTEGER NOT NULL REFERENCES oauth_grants(id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN ('access', 'refresh')),
    expires_at  REAL NOT NULL,
    used_at     REAL                            -- a refresh token is used once (rotation)
);
CREATE INDEX oauth_tokens_by_grant ON oauth_tokens(grant_id);
CREATE INDEX oauth_tokens_by_expiry ON oauth_tokens(expires_at);
CREATE INDEX oauth_codes_by_expiry ON oauth_codes(expires_at);
