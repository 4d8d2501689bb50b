-- The MCP Registry API's `search` is a substring match over a server's name and description
-- (catalog/registry_view.py). In name order, a common substring fills a page within a few rows, but a rare
-- one read every package of the catalog (~250 ms at 100,000 packages). A trigram index (FTS5's `trigram`
-- tokenizer: any substring of 3 or more characters, case-insensitive) finds a rare one's few packages at once.
-- It indexes the rows of package_search (external content: no second copy of the text), kept in step by the
-- triggers below; the query still applies the substring condition itself, so the index only narrows it.
CREATE VIRTUAL TABLE registry_text USING fts5(
    server_key, description, content = 'package_search', content_rowid = 'package_id', tokenize = 'trigram');

CREATE TRIGGER registry_text_after_insert AFTER INSERT ON package_search
BEGIN
    INSERT INTO registry_text (rowid, server_key, description)
        VALUES (NEW.package_id, NEW.server_key, NEW.description);
END;

CREATE TRIGGER registry_text_after_delete AFTER DELETE ON package_search
BEGIN
    INSERT INTO registry_text (registry_text, rowid, server_key, description)
        VALUES ('delete', OLD.package_id, OLD.server_key, OLD.description);
END;

CREATE TRIGGER registry_text_after_update AFTER UPDATE OF server_key, description ON package_search
WHEN NEW.server_key IS NOT OLD.server_key OR NEW.description IS NOT OLD.description
BEGIN
    INSERT INTO registry_text (registry_text, rowid, server_key, description)
        VALUES ('delete', OLD.package_id, OLD.server_key, OLD.description);
    INSERT INTO registry_text (rowid, server_key, description)
        VALUES (NEW.package_id, NEW.server_key, NEW.description);
END;

INSERT INTO registry_text (registry_text) VALUES ('rebuild');
