-- Hosted execution: every tools/call through the gateway (MCP endpoint or invoke API) is metered here, for
-- the creator's dashboard, the invocation counts in search and per-call billing. Written in batches by
-- gateway/metering.py; packages.invocations is bumped in the same transaction.
CREATE TABLE invocations (
    id           INTEGER PRIMARY KEY,
    at           REAL NOT NULL,
    user_id      INTEGER REFERENCES users(id),
    package_id   INTEGER NOT NULL REFERENCES packages(id),
    version_id   INTEGER NOT NULL REFERENCES versions(id),
    org_id       INTEGER,                                -- tenancy: the package's org, NULL for a personal one
    tool         TEXT NOT NULL,
    via          TEXT NOT NULL CHECK (via IN ('mcp', 'invoke')),
    outcome      TEXT NOT NULL CHECK (outcome IN ('ok', 'tool_error', 'rpc_error', 'timeout', 'failed')),
    duration_ms  REAL NOT NULL
);
CREATE INDEX invocations_by_package ON invocations(package_id, at);
CREATE INDEX invocations_by_user ON invocations(user_id, at);
