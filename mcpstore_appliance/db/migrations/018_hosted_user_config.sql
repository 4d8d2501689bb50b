-- Hosted execution: each user's user_config values for a hosted package, sealed (gateway/user_config.py:
-- XChaCha20-Poly1305 under keys/user_config.key, bound to the user and package ids). Never shared between users.
CREATE TABLE hosted_user_config (
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    package_id  INTEGER NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    sealed      BLOB NOT NULL,
    updated_at  REAL NOT NULL,
    PRIMARY KEY (user_id, package_id)
) WITHOUT ROWID;
