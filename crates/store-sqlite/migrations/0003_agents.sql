-- The agent runtime: profiles (versioned TOML sources), the tenant's default profile, the
-- state an agent keeps between the turns of a conversation, long-term facts about end
-- users, reminders, and the steps of each turn (so a crashed turn resumes without repeating
-- a tool).

-- Every version of a profile is kept; the latest is the one in use.
CREATE TABLE agent_profiles (
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL CHECK (version > 0),
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
) STRICT;

-- Settings of a tenant, one row each (created on first write).
CREATE TABLE tenant_settings (
    tenant_id       BLOB PRIMARY KEY NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    -- The profile new conversations get; NULL: the built-in default.
    default_profile TEXT,
    updated_at      INTEGER NOT NULL
) STRICT;

-- The agent's state of one conversation, saved with optimistic concurrency on revision.
CREATE TABLE conversation_state (
    conversation_id BLOB PRIMARY KEY NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    profile         TEXT,
    agent           TEXT,
    -- Encrypted JSON; the store never reads it.
    data            BLOB,
    revision        INTEGER NOT NULL CHECK (revision > 0),
    updated_at      INTEGER NOT NULL
) STRICT;

-- Long-term facts about an end user (encrypted text). Ids come from the caller.
CREATE TABLE end_user_facts (
    id          BLOB PRIMARY KEY NOT NULL,
    tenant_id   BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id BLOB NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    text_cipher BLOB NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX end_user_facts_user ON end_user_facts(tenant_id, end_user_id, id);
CREATE INDEX end_user_facts_end_user ON end_user_facts(end_user_id);

-- Reminders an end user asked for. Each scheduled one has a `reminder` job due at due_at.
CREATE TABLE reminders (
    id              BLOB PRIMARY KEY NOT NULL,
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id     BLOB NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    conversation_id BLOB NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    channel         TEXT NOT NULL,
    text_cipher     BLOB NOT NULL,
    due_at          INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('scheduled', 'sent', 'cancelled', 'failed')),
    -- The message that delivered it. Not a foreign key, as on PostgreSQL: the reminder and
    -- its message live and die with their conversation.
    message_id      BLOB,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL
) STRICT;
CREATE INDEX reminders_user ON reminders(tenant_id, end_user_id, due_at);
CREATE INDEX reminders_end_user ON reminders(end_user_id);
CREATE INDEX reminders_conversation ON reminders(conversation_id);

-- The steps of the turn answering message_id (the inbound message), in order.
CREATE TABLE turn_steps (
    tenant_id       BLOB NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id BLOB NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    message_id      BLOB NOT NULL,
    seq             INTEGER NOT NULL CHECK (seq >= 0),
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    is_error        INTEGER NOT NULL,
    detail_cipher   BLOB,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (message_id, seq)
) STRICT;
CREATE INDEX turn_steps_conversation ON turn_steps(conversation_id);
