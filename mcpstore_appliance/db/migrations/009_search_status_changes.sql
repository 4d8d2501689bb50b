-- Status changes that a search must show at once: a package deleted, its visibility or owner changed, a version
-- yanked, deprecated or its review state changed. The search generation of 005_search.sql moves on these and on
-- every other change (a publish, an edit, a rating); a cached search page may outlive the others by a moment
-- (catalog/search/cache.py), never these.
ALTER TABLE search_state ADD COLUMN status_changes INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER search_status_package_delete AFTER DELETE ON packages
BEGIN
    UPDATE search_state SET status_changes = status_changes + 1 WHERE id = 1;
END;

CREATE TRIGGER search_status_package_access AFTER UPDATE OF visibility, org_id, owner_user_id ON packages
WHEN NEW.visibility IS NOT OLD.visibility OR NEW.org_id IS NOT OLD.org_id
    OR NEW.owner_user_id IS NOT OLD.owner_user_id
BEGIN
    UPDATE search_state SET status_changes = status_changes + 1 WHERE id = 1;
END;

CREATE TRIGGER search_status_version AFTER UPDATE OF state, yanked_at, deprecated_at ON versions
WHEN NEW.state IS NOT OLD.state OR NEW.yanked_at IS NOT OLD.yanked_at
    OR NEW.deprecated_at IS NOT OLD.deprecated_at
BEGIN
    UPDATE search_state SET status_changes = status_changes + 1 WHERE id = 1;
END;
