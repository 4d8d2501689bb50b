-- Hosted bundles whose publish-time check (gateway/publish_check.py) outlived the publish: the check goes on in
-- the background (catalog/pending_checks.py). The version is stored quarantined meanwhile, so that nothing can
-- install or call it and a crash leaves it closed; while its row is here it is shown as pending ("checking").
CREATE TABLE hosted_checks (
    version_id  INTEGER PRIMARY KEY REFERENCES versions(id),
    then_state  TEXT NOT NULL CHECK (then_state IN ('published', 'quarantined')),  -- the state without the check
    started_at  REAL NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 1  -- restarts resume a check from the stored bundle a few times only
);

-- When an OAuth grant's tokens were last used (web/pages/grants.py lists them); written at most once a minute.
ALTER TABLE oauth_grants ADD COLUMN last_used_at REAL;
