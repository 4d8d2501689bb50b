-- Pro-tier packages' own endpoints: the last answer to an MCP initialize (gateway/endpoint_health.py). Shown on
-- the package page; /v0.1 lists the endpoint as a remote unless its last check failed.
CREATE TABLE endpoint_checks (
    package_id    INTEGER PRIMARY KEY REFERENCES packages(id) ON DELETE CASCADE,
    endpoint_url  TEXT NOT NULL,        -- the URL checked (a changed URL is checked again at once)
    checked_at    REAL NOT NULL,
    ok            INTEGER NOT NULL CHECK (ok IN (0, 1)),
    latency_ms    REAL NOT NULL,
    detail        TEXT NOT NULL
);

-- /v0.1 listings show the result at once (009_search_status_changes.sql): a failing endpoint stops being
-- offered, a recovered one is offered again. Checks that change nothing move nothing.
CREATE TRIGGER endpoint_check_first AFTER INSERT ON endpoint_checks
WHEN NEW.ok = 0
BEGIN
    UPDATE search_state SET generation = generation + 1, status_changes = status_changes + 1 WHERE id = 1;
END;

CREATE TRIGGER endpoint_check_changed AFTER UPDATE OF ok ON endpoint_checks
WHEN NEW.ok IS NOT OLD.ok
BEGIN
    UPDATE search_state SET generation = generation + 1, status_changes = status_changes + 1 WHERE id = 1;
END;
