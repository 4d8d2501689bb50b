-- Search read model, derived from `packages` and each package's latest version (packages.latest_version_id,
-- maintained by catalog/service.py: refresh_latest).
--
-- Everything here is kept in sync by the triggers below, inside the transaction that changes the package, so
-- nothing that writes packages or versions has to call the search code: a publish, yank, release or status
-- change that moves latest_version_id re-indexes the package; a change of visibility, pricing, category,
-- rating or downloads is copied to the narrow row that search filters and sorts on. Versions are immutable,
-- so the latest version's metadata never changes under the index.

-- One narrow row per package: the columns search filters and sorts on, copied from `packages` (so a search
-- reads one table besides the full-text index) plus the version-derived ones. version_id is NULL while the
-- package has no installable version; such packages are left out of search but stay in the registry API's
-- listing of deleted versions.
CREATE TABLE package_search (
    package_id    INTEGER PRIMARY KEY REFERENCES packages(id) ON DELETE CASCADE,
    namespace     TEXT NOT NULL,
    name          TEXT NOT NULL,
    server_key    TEXT NOT NULL,                -- namespace || '/' || name: MCP Registry order and org filter
    visibility    TEXT NOT NULL,
    org_id        INTEGER,
    owner_user_id INTEGER,
    category      TEXT,
    pricing_model TEXT NOT NULL,
    price_amount  INTEGER NOT NULL,
    currency      TEXT,
    tier          TEXT NOT NULL,
    verified      INTEGER NOT NULL,
    rating        REAL NOT NULL,                -- rating_avg, or -1 when unrated (sorts last)
    rating_count  INTEGER NOT NULL,
    downloads     INTEGER NOT NULL,
    version_id    INTEGER,                      -- the latest version, NULL when none
    published_at  REAL,                         -- of the latest version: the "newest" sort
    platforms     TEXT NOT NULL DEFAULT '',     -- ',darwin,linux,' ; '' when the manifest names none (= any)
    runtimes      TEXT NOT NULL DEFAULT '',     -- ',node,' ; '' when none is named
    description   TEXT NOT NULL DEFAULT ''      -- of the latest version: the MCP Registry API's substring search
);
CREATE UNIQUE INDEX package_search_by_server_key ON package_search(server_key);
CREATE INDEX package_search_by_downloads ON package_search(downloads, package_id);
CREATE INDEX package_search_by_rating ON package_search(rating, rating_count, package_id);
CREATE INDEX package_search_by_name ON package_search(name, namespace, package_id);
CREATE INDEX package_search_by_newest ON package_search(published_at, package_id);
CREATE INDEX package_search_by_category ON package_search(category, downloads, package_id);
-- Covers the facet counts of a browse without text (GROUP BY in index order, no table reads).
CREATE INDEX package_search_facets ON package_search(visibility, category, pricing_model, platforms, runtimes,
                                                     version_id);

-- The static part of a search result as JSON, precomputed from the latest version, so a result page needs no
-- parsing of the (large) version metadata.
CREATE TABLE package_summary (
    package_id   INTEGER PRIMARY KEY REFERENCES packages(id) ON DELETE CASCADE,
    summary_json TEXT NOT NULL
);

-- Field weights are applied at query time with bm25(); the column order is the order of the weights.
CREATE VIRTUAL TABLE package_fts USING fts5(
    name, display_name, keywords, namespace, tools, description, author,
    tokenize = 'unicode61 remove_diacritics 2',
    prefix = '2 3'
);
-- The index's vocabulary (term, documents): the typo fallback suggests corrections from it.
CREATE VIRTUAL TABLE package_fts_vocab USING fts5vocab(package_fts, 'row');

-- Bumped whenever something a result, filter or facet depends on changes (download counts excepted).
-- Facet counts and recent result pages are cached per generation, so a publish shows in them at once.
CREATE TABLE search_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    generation INTEGER NOT NULL
);
INSERT INTO search_state (id, generation) VALUES (1, 0);

CREATE TRIGGER package_search_after_insert AFTER INSERT ON packages
BEGIN
    INSERT INTO package_search (package_id, namespace, name, server_key, visibility, org_id, owner_user_id,
                                category, pricing_model, price_amount, currency, tier, verified, rating,
                                rating_count, downloads)
    VALUES (NEW.id, NEW.namespace, NEW.name, NEW.namespace || '/' || NEW.name, NEW.visibility, NEW.org_id,
            NEW.owner_user_id, NEW.category, NEW.pricing_model, NEW.price_amount, NEW.currency, NEW.tier,
            NEW.verified, coalesce(NEW.rating_avg, -1), NEW.rating_count, NEW.downloads);
    -- A package inserted with a latest version already set: index it through the update trigger.
    UPDATE packages SET latest_version_id = NULL WHERE id = NEW.id AND NEW.latest_version_id IS NOT NULL;
    UPDATE packages SET latest_version_id = NEW.latest_version_id
     WHERE id = NEW.id AND NEW.latest_version_id IS NOT NULL;
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER package_search_after_delete AFTER DELETE ON packages
BEGIN
    DELETE FROM package_fts WHERE rowid = OLD.id;
    DELETE FROM package_summary WHERE package_id = OLD.id;
    DELETE FROM package_search WHERE package_id = OLD.id;
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER package_search_copy_columns AFTER UPDATE OF
    visibility, org_id, owner_user_id, category, pricing_model, price_amount, currency, tier, verified,
    rating_avg, rating_count, downloads ON packages
WHEN NEW.visibility IS NOT OLD.visibility OR NEW.org_id IS NOT OLD.org_id
    OR NEW.owner_user_id IS NOT OLD.owner_user_id OR NEW.category IS NOT OLD.category
    OR NEW.pricing_model IS NOT OLD.pricing_model OR NEW.price_amount IS NOT OLD.price_amount
    OR NEW.currency IS NOT OLD.currency OR NEW.tier IS NOT OLD.tier OR NEW.verified IS NOT OLD.verified
    OR NEW.rating_avg IS NOT OLD.rating_avg OR NEW.rating_count IS NOT OLD.rating_count
    OR NEW.downloads IS NOT OLD.downloads
BEGIN
    UPDATE package_search
       SET visibility = NEW.visibility, org_id = NEW.org_id, owner_user_id = NEW.owner_user_id,
           category = NEW.category, pricing_model = NEW.pricing_model, price_amount = NEW.price_amount,
           currency = NEW.currency, tier = NEW.tier, verified = NEW.verified,
           rating = coalesce(NEW.rating_avg, -1), rating_count = NEW.rating_count, downloads = NEW.downloads
     WHERE package_id = NEW.id;
END;

-- Download counts change often (every fold) and appear in no filter or facet: they do not bump the generation
-- (cached result pages are keyed by the fold count instead; see catalog/search.py).
CREATE TRIGGER package_search_generation AFTER UPDATE OF
    visibility, org_id, owner_user_id, category, pricing_model, price_amount, currency, tier, verified,
    rating_avg, rating_count, endpoint_url ON packages
WHEN NEW.visibility IS NOT OLD.visibility OR NEW.org_id IS NOT OLD.org_id
    OR NEW.owner_user_id IS NOT OLD.owner_user_id OR NEW.category IS NOT OLD.category
    OR NEW.pricing_model IS NOT OLD.pricing_model OR NEW.price_amount IS NOT OLD.price_amount
    OR NEW.currency IS NOT OLD.currency OR NEW.tier IS NOT OLD.tier OR NEW.verified IS NOT OLD.verified
    OR NEW.rating_avg IS NOT OLD.rating_avg OR NEW.rating_count IS NOT OLD.rating_count
    OR NEW.endpoint_url IS NOT OLD.endpoint_url
BEGIN
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER package_search_after_latest AFTER UPDATE OF latest_version_id ON packages
WHEN NEW.latest_version_id IS NOT OLD.latest_version_id
BEGIN
    UPDATE package_search
       SET version_id = NEW.latest_version_id,
           published_at = (SELECT v.published_at FROM versions v WHERE v.id = NEW.latest_version_id),
           platforms = coalesce((SELECT ',' || group_concat(j.value, ',') || ','
                                   FROM versions v, json_each(v.platforms) j WHERE v.id = NEW.latest_version_id), ''),
           runtimes = coalesce((SELECT ',' || group_concat(j.value, ',') || ','
                                  FROM versions v, json_each(v.runtimes) j WHERE v.id = NEW.latest_version_id), ''),
           description = coalesce((SELECT json_extract(v.metadata_json, '$.description')
                                     FROM versions v WHERE v.id = NEW.latest_version_id), '')
     WHERE package_id = NEW.id;
    DELETE FROM package_fts WHERE rowid = NEW.id;
    DELETE FROM package_summary WHERE package_id = NEW.id;
    INSERT INTO package_summary (package_id, summary_json)
    SELECT NEW.id, json_object(
               'version', v.version,
               'display_name', coalesce(nullif(json_extract(v.metadata_json, '$.display_name'), ''), NEW.name),
               'description', coalesce(json_extract(v.metadata_json, '$.description'), ''),
               'author', json(coalesce(json_extract(v.metadata_json, '$.author'), '{}')),
               'tools', json(coalesce((SELECT json_group_array(json_extract(t.value, '$.name'))
                                         FROM json_each(v.metadata_json, '$.tools') t), '[]')),
               'keywords', json(coalesce(json_extract(v.metadata_json, '$.keywords'), '[]')),
               'license', json_extract(v.metadata_json, '$.license'),
               'compatibility', json_object('platforms', json(v.platforms), 'runtimes', json(v.runtimes)),
               'server_type', json_extract(v.metadata_json, '$.server_type'),
               'prerelease', json(CASE WHEN v.is_prerelease THEN 'true' ELSE 'false' END),
               'deprecated', json(CASE WHEN v.deprecated_at IS NULL THEN 'false' ELSE 'true' END),
               'signature_status', v.signature_status,
               'icon_sha256', v.icon_sha256,
               'sha256', v.sha256,
               'size', v.size,
               'published_at', v.published_at)
      FROM versions v WHERE v.id = NEW.latest_version_id;
    INSERT INTO package_fts (rowid, name, display_name, keywords, namespace, tools, description, author)
    SELECT NEW.id, NEW.name,
           coalesce(json_extract(v.metadata_json, '$.display_name'), ''),
           coalesce((SELECT group_concat(k.value, ' ') FROM json_each(v.metadata_json, '$.keywords') k), ''),
           NEW.namespace,
           coalesce((SELECT group_concat(coalesce(json_extract(t.value, '$.name'), '') || ' '
                                         || coalesce(json_extract(t.value, '$.description'), ''), ' ')
                       FROM json_each(v.metadata_json, '$.tools') t), '') || ' ' ||
           coalesce((SELECT group_concat(coalesce(json_extract(t.value, '$.name'), '') || ' '
                                         || coalesce(json_extract(t.value, '$.description'), ''), ' ')
                       FROM json_each(v.metadata_json, '$.prompts') t), ''),
           coalesce(json_extract(v.metadata_json, '$.description'), ''),
           coalesce(json_extract(v.metadata_json, '$.author.name'), '')
      FROM versions v WHERE v.id = NEW.latest_version_id;
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

-- Deprecating (or un-deprecating) the latest version flips the flag in its summary.
CREATE TRIGGER package_search_after_deprecate AFTER UPDATE OF deprecated_at ON versions
WHEN (NEW.deprecated_at IS NULL) <> (OLD.deprecated_at IS NULL)
BEGIN
    UPDATE package_summary
       SET summary_json = json_set(summary_json, '$.deprecated',
                                   json(CASE WHEN NEW.deprecated_at IS NULL THEN 'false' ELSE 'true' END))
     WHERE package_id = NEW.package_id
       AND NEW.id = (SELECT latest_version_id FROM packages WHERE id = NEW.package_id);
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

-- Any other change to a version (a new one that does not become latest, a yank, a review) moves the generation
-- too: the MCP Registry listing shows every version with its status.
CREATE TRIGGER package_search_after_version_insert AFTER INSERT ON versions
BEGIN
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

CREATE TRIGGER package_search_after_version_status AFTER UPDATE OF state, yanked_at, yank_reason ON versions
BEGIN
    UPDATE search_state SET generation = generation + 1 WHERE id = 1;
END;

-- Packages that existed before this migration: add their rows, then let the latest-version trigger index them
-- (clearing and restoring latest_version_id fires it once per package; no other column changes).
INSERT INTO package_search (package_id, namespace, name, server_key, visibility, org_id, owner_user_id, category,
                            pricing_model, price_amount, currency, tier, verified, rating, rating_count, downloads)
SELECT id, namespace, name, namespace || '/' || name, visibility, org_id, owner_user_id, category, pricing_model,
       price_amount, currency, tier, verified, coalesce(rating_avg, -1), rating_count, downloads
  FROM packages;
CREATE TEMP TABLE search_backfill AS SELECT id, latest_version_id FROM packages WHERE latest_version_id IS NOT NULL;
UPDATE packages SET latest_version_id = NULL WHERE id IN (SELECT id FROM search_backfill);
UPDATE packages SET latest_version_id = (SELECT b.latest_version_id FROM search_backfill b WHERE b.id = packages.id)
 WHERE id IN (SELECT id FROM search_backfill);
DROP TABLE search_backfill;
