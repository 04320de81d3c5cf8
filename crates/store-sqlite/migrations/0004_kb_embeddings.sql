-- Vectors of knowledge-base entries, for semantic retrieval next to full-text search. One
-- per entry, made by one embedding model; derived data, recomputed from kb_entries (so not
-- in backups).
CREATE TABLE kb_embeddings (
    entry_id          BLOB PRIMARY KEY NOT NULL REFERENCES kb_entries(id) ON DELETE CASCADE,
    tenant_id         BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The vector space: vectors of different models cannot be compared.
    model             TEXT NOT NULL,
    dims              INTEGER NOT NULL CHECK (dims > 0),
    -- dims float32 numbers, little-endian.
    vector            BLOB NOT NULL CHECK (length(vector) = 4 * dims),
    -- SHA-256 of the title, a line feed and the body the vector was made from.
    content_hash      BLOB NOT NULL CHECK (length(content_hash) = 32),
    -- kb_entries.updated_at of the version the vector was made from, or -1 once the entry
    -- is edited: any other value than the entry's means the vector is stale.
    source_updated_at INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
) STRICT;
-- Search loads a tenant's vectors of one model.
CREATE INDEX kb_embeddings_tenant_model ON kb_embeddings(tenant_id, model);

-- An edit of the title or body makes the entry's vector stale at once, even within the
-- millisecond of the version it was made from.
CREATE TRIGGER kb_entries_embedding_stale AFTER UPDATE OF title, body ON kb_entries
    WHEN old.title IS NOT new.title OR old.body IS NOT new.body
BEGIN
    UPDATE kb_embeddings SET source_updated_at = -1 WHERE entry_id = new.id;
END;
