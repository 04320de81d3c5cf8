-- Vectors of knowledge-base entries, for semantic retrieval next to full-text search. One
-- per entry, made by one embedding model; derived data, recomputed from kb_entries (so not
-- in backups). Tenant data: row-level security as in 0001.
CREATE TABLE kb_embeddings (
    entry_id          UUID PRIMARY KEY REFERENCES kb_entries(id) ON DELETE CASCADE,
    tenant_id         UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The vector space: vectors of different models cannot be compared.
    model             TEXT NOT NULL,
    dims              INTEGER NOT NULL CHECK (dims > 0),
    -- dims float32 numbers, little-endian.
    vector            BYTEA NOT NULL CHECK (length(vector) = 4 * dims),
    -- SHA-256 of the title, a line feed and the body the vector was made from.
    content_hash      BYTEA NOT NULL CHECK (length(content_hash) = 32),
    -- kb_entries.updated_at of the version the vector was made from, or -1 once the entry
    -- is edited: any other value than the entry's means the vector is stale.
    source_updated_at BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
-- Search loads a tenant's vectors of one model.
CREATE INDEX kb_embeddings_tenant_model ON kb_embeddings(tenant_id, model);

-- An edit of the title or body makes the entry's vector stale at once, even within the
-- millisecond of the version it was made from.
CREATE FUNCTION concierge_kb_embedding_stale() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE kb_embeddings SET source_updated_at = -1 WHERE entry_id = NEW.id;
    RETURN NULL;
END $$;
CREATE TRIGGER kb_entries_embedding_stale AFTER UPDATE OF title, body ON kb_entries
    FOR EACH ROW WHEN (OLD.title IS DISTINCT FROM NEW.title OR OLD.body IS DISTINCT FROM NEW.body)
    EXECUTE FUNCTION concierge_kb_embedding_stale();

ALTER TABLE kb_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE kb_embeddings FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON kb_embeddings
    USING (tenant_id = concierge_tenant()) WITH CHECK (tenant_id = concierge_tenant());
