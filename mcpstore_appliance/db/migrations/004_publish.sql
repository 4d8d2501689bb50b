-- Publish pipeline additions to the catalog schema (003): review and signature details, the icon blob,
-- and one version per semver precedence within a package.

-- Why the signature got its status ("pinned certificate", "issuer not trusted", ...), shown on package pages.
ALTER TABLE versions ADD COLUMN signature_reason TEXT;
-- sha256 of the bundle's icon (a PNG checked by inspection), stored as its own content-addressed blob.
ALTER TABLE versions ADD COLUMN icon_sha256 TEXT;
-- When an admin released or rejected a quarantined version, and the note they gave.
ALTER TABLE versions ADD COLUMN reviewed_at REAL;
ALTER TABLE versions ADD COLUMN review_reason TEXT;

-- `1.0.0+a` and `1.0.0+b` have the same precedence (build metadata is ignored), so they are the same release:
-- the second is refused like an exact duplicate. semver_key leaves build metadata out.
CREATE UNIQUE INDEX versions_one_per_precedence ON versions(package_id, semver_key);
