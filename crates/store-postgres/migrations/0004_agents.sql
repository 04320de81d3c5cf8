-- The agent runtime: profiles (versioned TOML sources), the tenant's default profile, the
-- state an agent keeps between the turns of a conversation, long-term facts about end
-- users, reminders, and the steps of each turn (so a crashed turn resumes without repeating
-- a tool). Every table holds tenant data: row-level security as in 0001.

-- Every version of a profile is kept; the latest is the one in use.
CREATE TABLE agent_profiles (
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version > 0),
    source      TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name, version)
);

-- Settings of a tenant, one row each (created on first write).
CREATE TABLE tenant_settings (
    tenant_id       UUID PRIMARY KEY REFERENCES tenants(id) ON DELETE CASCADE,
    -- The profile new conversations get; NULL: the built-in default.
    default_profile TEXT,
    updated_at      BIGINT NOT NULL
);

-- The agent's state of one conversation, saved with optimistic concurrency on revision.
CREATE TABLE conversation_state (
    conversation_id UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    profile         TEXT,
    agent           TEXT,
    -- Encrypted JSON; the store never reads it.
    data            BYTEA,
    revision        BIGINT NOT NULL CHECK (revision > 0),
    updated_at      BIGINT NOT NULL,
    -- As messages: one key checks both the conversation and its tenant.
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
);
-- Backups read one tenant at a time.
CREATE INDEX conversation_state_tenant ON conversation_state(tenant_id, conversation_id);

-- Long-term facts about an end user (encrypted text). Ids come from the caller.
CREATE TABLE end_user_facts (
    id          UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id UUID NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    text_cipher BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX end_user_facts_user ON end_user_facts(tenant_id, end_user_id, id);
-- Deleting an end user finds their facts without the tenant.
CREATE INDEX end_user_facts_end_user ON end_user_facts(end_user_id);

-- Reminders an end user asked for. Each scheduled one has a `reminder` job due at due_at.
CREATE TABLE reminders (
    id              UUID PRIMARY KEY,
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    end_user_id     UUID NOT NULL REFERENCES end_users(id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL,
    channel         TEXT NOT NULL,
    text_cipher     BYTEA NOT NULL,
    due_at          BIGINT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('scheduled', 'sent', 'cancelled', 'failed')),
    -- The message that delivered it. Not a foreign key, as messages.in_reply_to: the
    -- reminder and its message live and die with their conversation.
    message_id      UUID,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL,
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX reminders_user ON reminders(tenant_id, end_user_id, due_at);
CREATE INDEX reminders_end_user ON reminders(end_user_id);
CREATE INDEX reminders_conversation ON reminders(conversation_id);

-- The steps of the turn answering message_id (the inbound message), in order. message_id is
-- not a foreign key: steps live and die with their conversation, as replies do.
CREATE TABLE turn_steps (
    tenant_id       UUID NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,
    conversation_id UUID NOT NULL,
    message_id      UUID NOT NULL,
    seq             BIGINT NOT NULL CHECK (seq >= 0),
    kind            TEXT NOT NULL,
    name            TEXT NOT NULL,
    is_error        BOOLEAN NOT NULL,
    detail_cipher   BYTEA,
    created_at      BIGINT NOT NULL,
    PRIMARY KEY (message_id, seq),
    FOREIGN KEY (tenant_id, conversation_id) REFERENCES conversations(tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX turn_steps_conversation ON turn_steps(tenant_id, conversation_id);

DO $$
DECLARE t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['agent_profiles', 'tenant_settings', 'conversation_state',
                             'end_user_facts', 'reminders', 'turn_steps']
    LOOP
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = concierge_tenant()) WITH CHECK (tenant_id = concierge_tenant())', t);
    END LOOP;
END $$;
