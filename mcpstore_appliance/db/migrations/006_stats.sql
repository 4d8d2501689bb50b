-- Download counts per package, version and UTC day: the publisher's chart and the per-version totals.
-- Written only by catalog/downloads.py, which buffers downloads in memory and folds them in periodically
-- (one transaction for all packages downloaded since the last fold), together with packages.downloads.
-- No request ever writes a row here.
CREATE TABLE download_days (
    package_id INTEGER NOT NULL REFERENCES packages(id) ON DELETE CASCADE,
    day        TEXT NOT NULL,                 -- 'YYYY-MM-DD', UTC
    version_id INTEGER NOT NULL REFERENCES versions(id),
    count      INTEGER NOT NULL,
    PRIMARY KEY (package_id, day, version_id)
) WITHOUT ROWID;
CREATE INDEX download_days_by_version ON download_days(version_id);
