-- Semantic-version sort keys (versions.semver_key, see catalog/semver.py Version.sort_key) separate their fields
-- and end each pre-release identifier with ',' instead of '.'. '.' sorts after '-', so "1.0.0-alpha-x" sorted
-- before "1.0.0-alpha", against semver precedence (an identifier precedes any longer one it starts); ',' sorts
-- before every character an identifier may hold. The old key with every '.' made ',' is exactly the new key.
UPDATE versions SET semver_key = replace(semver_key, '.', ',');

-- The latest version may change where two such pre-releases were the highest (as refresh_latest chooses it:
-- the highest published, non-yanked release, else pre-release). Only packages whose choice changes are
-- updated; their search rows follow through the triggers of 005_search.sql.
UPDATE packages SET
    latest_version_id = (SELECT v.id FROM versions v
                         WHERE v.package_id = packages.id AND v.state = 'published' AND v.yanked_at IS NULL
                         ORDER BY v.is_prerelease ASC, v.semver_key DESC LIMIT 1),
    updated_at = (julianday('now') - 2440587.5) * 86400.0
WHERE latest_version_id IS NOT (SELECT v.id FROM versions v
                                WHERE v.package_id = packages.id AND v.state = 'published' AND v.yanked_at IS NULL
                                ORDER BY v.is_prerelease ASC, v.semver_key DESC LIMIT 1);
