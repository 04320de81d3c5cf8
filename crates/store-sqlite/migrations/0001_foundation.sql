-- Foundation schema (SQLite). Timestamps are unix milliseconds; ids are UUIDv7 as 16-byte blobs.

CREATE TABLE tenants (
    id          BLOB PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

-- Routing: which tenant owns a number. Numbers of businesses, not of end users.
CREATE TABLE tenant_phone_numbers (
    e164        TEXT PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX tenant_phone_numbers_tenant ON tenant_phone_numbers(tenant_id);

CREATE TABLE tenant_keys (
    tenant_id   BLOB PRIMARY KEY NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    key_id      INTEGER NOT NULL,
    kek_id      INTEGER NOT NULL,
    wrapped     BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE staff_users (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    email_index     BLOB NOT NULL,
    email_cipher    BLOB NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'staff')),
    created_at      INTEGER NOT NULL,
    UNIQUE (tenant_id, email_index)
) STRICT;

CREATE TABLE api_keys (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL,
    digest      BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
) STRICT;

CREATE TABLE end_users (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    phone_index     BLOB,
    phone_cipher    BLOB,
    email_index     BLOB,
    email_cipher    BLOB,
    opted_out       INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    last_seen_at    INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX end_users_phone ON end_users(tenant_id, phone_index) WHERE phone_index IS NOT NULL;
CREATE UNIQUE INDEX end_users_email ON end_users(tenant_id, email_index) WHERE email_index IS NOT NULL;

-- One conversation history per end user and tenant, across channels.
CREATE TABLE conversations (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id     BLOB NOT NULL UNIQUE REFERENCES end_users(id) ON DELETE CASCADE,
    tenant_number   TEXT,
    message_count   INTEGER NOT NULL DEFAULT 0,
    created_at      INTEGER NOT NULL,
    last_message_at INTEGER NOT NULL,
    -- Set while the conversation waits for a member of staff (a hand-off); NULL otherwise.
    handoff_at      INTEGER
) STRICT;
CREATE INDEX conversations_tenant ON conversations(tenant_id, id);

-- The (tenant_id, provider_sid) key is the inbound claim: a replayed webhook cannot insert twice.
CREATE TABLE messages (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id BLOB NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    direction       TEXT NOT NULL CHECK (direction IN ('inbound', 'outbound')),
    channel         TEXT NOT NULL,
    body_cipher     BLOB NOT NULL,
    status          TEXT NOT NULL,
    status_rank     INTEGER NOT NULL,
    provider_sid    TEXT,
    in_reply_to     BLOB REFERENCES messages(id) ON DELETE SET NULL,
    error_code      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX messages_provider_sid ON messages(tenant_id, provider_sid) WHERE provider_sid IS NOT NULL;
CREATE INDEX messages_conversation ON messages(conversation_id, id);
CREATE INDEX messages_reply ON messages(in_reply_to) WHERE in_reply_to IS NOT NULL;

-- Append-only consent ledger; end_users.opted_out is the current state.
CREATE TABLE consent_events (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id BLOB NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    keyword     TEXT NOT NULL CHECK (keyword IN ('opt_out', 'opt_in', 'help')),
    message_id  BLOB REFERENCES messages(id) ON DELETE SET NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX consent_events_user ON consent_events(end_user_id, id);

CREATE TABLE kb_entries (
    rowid       INTEGER PRIMARY KEY,
    id          BLOB NOT NULL UNIQUE,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX kb_entries_tenant ON kb_entries(tenant_id, id);

CREATE VIRTUAL TABLE kb_fts USING fts5(
    title, body, content='kb_entries', content_rowid='rowid', tokenize='unicode61 remove_diacritics 2'
);
CREATE TRIGGER kb_entries_ai AFTER INSERT ON kb_entries BEGIN
    INSERT INTO kb_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);
END;
CREATE TRIGGER kb_entries_ad AFTER DELETE ON kb_entries BEGIN
    INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES ('delete', old.rowid, old.title, old.body);
END;
CREATE TRIGGER kb_entries_au AFTER UPDATE ON kb_entries BEGIN
    INSERT INTO kb_fts(kb_fts, rowid, title, body) VALUES ('delete', old.rowid, old.title, old.body);
    INSERT INTO kb_fts(rowid, title, body) VALUES (new.rowid, new.title, new.body);
END;

-- The durable queue. status: queued | running | dead. Finished jobs are deleted.
CREATE TABLE jobs (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB REFERENCES tenants(id) ON DELETE CASCADE,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    idempotency_key TEXT UNIQUE,
    status          TEXT NOT NULL CHECK (status IN ('queued', 'running', 'dead')),
    run_at          INTEGER NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    locked_by       TEXT,
    locked_until    INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX jobs_due ON jobs(status, run_at);
