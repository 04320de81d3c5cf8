-- Hand-off as a state machine (domain::Handoff): who answers a conversation, the agents
-- ('bot'), nobody yet because a person was asked for ('pending'), or a member of staff
-- ('human'), and which member of staff took it. handoff_at stays the time the conversation
-- left the agents. Staff messages record who wrote them (messages.sent_by), and a tenant may
-- keep its own model settings (sealed by the application: they hold API keys).
ALTER TABLE conversations ADD COLUMN handoff TEXT NOT NULL DEFAULT 'bot'
    CHECK (handoff IN ('bot', 'pending', 'human'));
ALTER TABLE conversations ADD COLUMN handoff_staff TEXT;

-- A conversation marked for staff before this migration waits for a person.
UPDATE conversations SET handoff = 'pending' WHERE handoff_at IS NOT NULL;

-- The conversations waiting for (or with) a person, longest waiting first; few rows.
CREATE INDEX conversations_handed_off ON conversations(tenant_id, handoff_at, id)
    WHERE handoff <> 'bot';

ALTER TABLE messages ADD COLUMN sent_by TEXT;

ALTER TABLE tenant_settings ADD COLUMN model_cipher BLOB;
