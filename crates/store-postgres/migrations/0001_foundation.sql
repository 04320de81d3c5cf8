-- Foundation schema (PostgreSQL). Timestamps are unix milliseconds (BIGINT) as on SQLite,
-- so backups move between backends unchanged. Ids are UUIDv7.
--
-- Row-level security: every table holding tenant data has a policy comparing tenant_id with
-- the transaction setting app.tenant_id, and FORCE ROW LEVEL SECURITY so the policy holds
-- even for the table owner. Routing tables read before the tenant is known (tenants,
-- tenant_phone_numbers, api_keys holding only SHA-256 digests) and the cross-tenant job
-- queue (payloads are ids only) have no policy. Superusers and BYPASSRLS roles skip RLS:
-- the application must connect as an ordinary role (docs/DATABASE.md).

CREATE FUNCTION concierge_now_ms() RETURNS BIGINT
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

CREATE FUNCTION concierge_tenant() RETURNS UUID
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::UUID $$;

CREATE TABLE tenants (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE tenant_phone_numbers (
    e164        TEXT PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);
CREATE INDEX tenant_phone_numbers_tenant ON tenant_phone_numbers(tenant_id);

CREATE TABLE tenant_keys (
    tenant_id   UUID PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    key_id      BIGINT NOT NULL,
    kek_id      BIGINT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE staff_users (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email_index     BYTEA NOT NULL,
    email_cipher    BYTEA NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    created_at      BIGINT NOT NULL,
    UNIQUE (tenant_id, email_index)
);

CREATE TABLE api_keys (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL,
    digest      BYTEA NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX api_keys_tenant ON api_keys(tenant_id);

CREATE TABLE end_users (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_index     BYTEA,
    phone_cipher    BYTEA,
    email_index     BYTEA,
    email_cipher    BYTEA,
    opted_out       BOOLEAN NOT NULL DEFAULT false,
    created_at      BIGINT NOT NULL,
    last_seen_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX end_users_phone ON end_users(tenant_id, phone_index) WHERE phone_index IS NOT NULL;
CREATE UNIQUE INDEX end_users_email ON end_users(tenant_id, email_index) WHERE email_index IS NOT NULL;

CREATE TABLE conversations (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id     UUID NOT NULL UNIQUE REFERENCES end_users(id) ON DELETE CASCADE,
    tenant_number   TEXT,
    message_count   BIGINT NOT NULL DEFAULT 0,
    created_at      BIGINT NOT NULL,
    last_message_at BIGINT NOT NULL,
    -- Set while the conversation waits for a member of staff (a hand-off); NULL otherwise.
    handoff_at      BIGINT
);
-- Unique so messages can reference (tenant_id, id): one foreign key that checks both the
-- conversation and that it belongs to the message's tenant.
CREATE UNIQUE INDEX conversations_tenant ON conversations(tenant_id, id);

CREATE TABLE messages (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL,
    conversation_id UUID NOT NULL,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel         TEXT NOT NULL,
    body_cipher     BYTEA NOT NULL,
    status          TEXT NOT NULL,
    status_rank     SMALLINT NOT NULL,
    provider_sid    TEXT,
    -- Not a foreign key: a reply and its inbound message live and die with their
    -- conversation, and the check would lock the inbound row on every reply.
    in_reply_to     UUID,
    error_code      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    -- The tenant comes through the conversation: the hot insert path checks one key, and no
    -- message can name another tenant's conversation.
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX messages_provider_sid ON messages(tenant_id, provider_sid) WHERE provider_sid IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, id);
CREATE INDEX messages_reply ON messages(in_reply_to) WHERE in_reply_to IS NOT NULL;

CREATE TABLE consent_events (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id UUID NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    keyword     TEXT NOT NULL CHECK (keyword IN ('opt_out', 'opt_in', 'help')),
    message_id  UUID REFERENCES messages(id) ON DELETE SET NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX consent_events_user ON consent_events(end_user_id, id);

-- 'simple' configuration: no language-specific stemming, so English and French entries
-- are matched alike; prefix matching comes from the query side.
CREATE TABLE kb_entries (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    search      TSVECTOR GENERATED ALWAYS AS (
        setweight(to_tsvector('simple', title), 'A') || setweight(to_tsvector('simple', body), 'B')
    ) STORED
);
CREATE INDEX kb_entries_tenant ON kb_entries(tenant_id, id);
CREATE INDEX kb_entries_search ON kb_entries USING GIN (search);

CREATE TABLE jobs (
    id              UUID PRIMARY KEY,
    -- Not a foreign key: every inbound message enqueues a job, and the check would take a
    -- share lock on the tenant's row each time. Deleting a tenant deletes its jobs
    -- explicitly; a job whose tenant is gone is discarded by the worker.
    tenant_id       UUID,
    kind            TEXT NOT NULL,
    payload         JSONB NOT NULL,
    idempotency_key TEXT,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'dead')),
    run_at          BIGINT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    locked_by       TEXT,
    locked_until    BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX jobs_idempotency ON jobs(idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_queued ON jobs(run_at) WHERE status = 'queued';
CREATE INDEX jobs_running ON jobs(locked_until) WHERE status = 'running';

-- Wake workers in every process when a job becomes claimable now.
CREATE FUNCTION concierge_jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('concierge_jobs', NEW.kind);
    RETURN NULL;
END $$;
CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status ON jobs
    FOR EACH ROW WHEN (NEW.status = 'queued' AND NEW.run_at <= concierge_now_ms())
    EXECUTE FUNCTION concierge_jobs_notify();

DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['tenant_keys', 'staff_users', 'end_users', 'conversations',
                             'messages', 'consent_events', 'kb_entries']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = concierge_tenant()) WITH CHECK (tenant_id = concierge_tenant())', t);
    END LOOP;
END $$;
