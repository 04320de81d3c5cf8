-- Hand-off as a state machine (domain::Handoff): who answers a conversation, the agents
-- ('bot'), nobody yet because a person was asked for ('pending'), or a member of staff
-- ('human'), and which member of staff took it. handoff_at stays the time the conversation
-- left the agents. Staff messages record who wrote them (messages.sent_by), and a tenant may
-- keep its own model settings (sealed by the application: they hold API keys).
ALTER TABLE conversations
    ADD COLUMN handoff TEXT NOT NULL DEFAULT 'bot' CHECK (handoff IN ('bot', 'pending', 'human')),
    ADD COLUMN handoff_staff TEXT;

-- A conversation marked for staff before this migration waits for a person. The table owner
-- runs migrations and is subject to row-level security like everyone else (FORCE), and no
-- tenant is set here: lift the policy for this one statement. The migration's transaction
-- holds the table's exclusive lock throughout, so no one else sees the table without it.
ALTER TABLE conversations NO FORCE ROW LEVEL SECURITY;
UPDATE conversations SET handoff = 'pending' WHERE handoff_at IS NOT NULL;
ALTER TABLE conversations FORCE ROW LEVEL SECURITY;

-- The conversations waiting for (or with) a person, longest waiting first; few rows.
CREATE INDEX conversations_handed_off ON conversations(tenant_id, handoff_at, id)
    WHERE handoff <> 'bot';

ALTER TABLE messages ADD COLUMN sent_by TEXT;

ALTER TABLE tenant_settings ADD COLUMN model_cipher BYTEA;

-- An inbound message to a conversation that is not the agents' (pending or human) is
-- recorded with no turn job and no inline turn. The hand-off state is read by the
-- conversation update that already holds the row lock, so it costs no extra round trip.
-- Signature and result are unchanged (0006).
CREATE OR REPLACE FUNCTION concierge_record_inbound(
    p_tenant UUID, p_now BIGINT, p_channel TEXT, p_body BYTEA, p_provider_sid TEXT,
    p_tenant_number TEXT, p_phone_index BYTEA, p_phone_cipher BYTEA, p_conversation UUID,
    p_keyword TEXT, p_set_opted_out BOOLEAN, p_wants_turn BOOLEAN, p_ids UUID[],
    p_job_kind TEXT, p_max_attempts INTEGER, p_inline_holder TEXT, p_lease_ms BIGINT)
RETURNS TABLE (outcome TEXT, message_id UUID, conversation_id UUID, end_user_id UUID,
               new_end_user BOOLEAN, opted_out BOOLEAN, turn_job UUID, run_inline BOOLEAN,
               state_profile TEXT, state_agent TEXT, state_data BYTEA, state_revision BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_user UUID;
    v_conv UUID;
    v_seen BIGINT;
    v_new BOOLEAN := false;
    v_before BOOLEAN := false;
    v_after BOOLEAN;
    v_job UUID;
    v_want_inline BOOLEAN;
    v_inline BOOLEAN := false;
    v_agents BOOLEAN := true;
    v_state conversation_state%ROWTYPE;
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);

    IF p_phone_index IS NOT NULL THEN
        SELECT u.id, u.opted_out, u.last_seen_at, c.id INTO v_user, v_before, v_seen, v_conv
          FROM end_users u LEFT JOIN conversations c ON c.end_user_id = u.id
         WHERE u.tenant_id = p_tenant AND u.phone_index = p_phone_index;
        IF NOT FOUND THEN
            -- First contact. ON CONFLICT covers two first messages racing each other.
            INSERT INTO end_users AS u (id, tenant_id, phone_index, phone_cipher, created_at, last_seen_at)
            VALUES (p_ids[1], p_tenant, p_phone_index, p_phone_cipher, p_now, p_now)
            ON CONFLICT (tenant_id, phone_index) WHERE phone_index IS NOT NULL
            DO UPDATE SET last_seen_at = EXCLUDED.last_seen_at
            RETURNING u.id, u.opted_out, (u.xmax = 0) INTO v_user, v_before, v_new;
            SELECT c.id INTO v_conv FROM conversations c WHERE c.end_user_id = v_user;
        ELSIF v_seen < p_now - 3600000 THEN
            UPDATE end_users SET last_seen_at = p_now WHERE id = v_user;
        END IF;
    ELSIF p_conversation IS NOT NULL THEN
        SELECT u.id, u.opted_out INTO v_user, v_before
          FROM conversations c JOIN end_users u ON u.id = c.end_user_id
         WHERE c.tenant_id = p_tenant AND c.id = p_conversation;
        IF NOT FOUND THEN
            RETURN QUERY SELECT 'not_found'::text, NULL::uuid, NULL::uuid, NULL::uuid, false, false, NULL::uuid, false,
                                NULL::text, NULL::text, NULL::bytea, NULL::bigint;
            RETURN;
        END IF;
        v_conv := p_conversation;
    ELSE
        INSERT INTO end_users (id, tenant_id, created_at, last_seen_at)
        VALUES (p_ids[1], p_tenant, p_now, p_now);
        v_user := p_ids[1];
        v_new := true;
    END IF;

    IF v_conv IS NULL THEN
        INSERT INTO conversations AS c (id, tenant_id, end_user_id, tenant_number, created_at, last_message_at)
        VALUES (p_ids[2], p_tenant, v_user, p_tenant_number, p_now, p_now)
        ON CONFLICT (end_user_id) DO UPDATE SET last_message_at = EXCLUDED.last_message_at
        RETURNING c.id INTO v_conv;
    END IF;

    INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, body_cipher,
                          status, status_rank, provider_sid, created_at, updated_at)
    VALUES (p_ids[3], p_tenant, v_conv, 'inbound', p_channel, p_body, 'received', 0,
            p_provider_sid, p_now, p_now)
    ON CONFLICT (tenant_id, provider_sid) WHERE provider_sid IS NOT NULL DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'provider message id already claimed' USING ERRCODE = 'CCDUP';
    END IF;

    v_after := COALESCE(p_set_opted_out, v_before);
    IF p_keyword IS NOT NULL THEN
        INSERT INTO consent_events (id, tenant_id, end_user_id, keyword, message_id, created_at)
        VALUES (p_ids[5], p_tenant, v_user, p_keyword, p_ids[3], p_now);
        IF v_after IS DISTINCT FROM v_before THEN
            UPDATE end_users SET opted_out = v_after WHERE id = v_user;
        END IF;
    END IF;

    -- The row lock of this update serialises messages of one conversation: exactly one of
    -- two concurrent messages takes a free turn; the other's turn waits for the worker. It
    -- also orders the message against a hand-off: only a conversation the agents answer
    -- ('bot') gets a turn.
    v_want_inline := p_wants_turn AND NOT v_after AND p_inline_holder IS NOT NULL;
    UPDATE conversations c
       SET message_count = c.message_count + 1, last_message_at = p_now,
           tenant_number = COALESCE(p_tenant_number, c.tenant_number),
           turn_holder = CASE WHEN v_want_inline AND c.handoff = 'bot'
                               AND (c.turn_until IS NULL OR c.turn_until < p_now)
                              THEN p_inline_holder ELSE c.turn_holder END,
           turn_until = CASE WHEN v_want_inline AND c.handoff = 'bot'
                              AND (c.turn_until IS NULL OR c.turn_until < p_now)
                             THEN p_now + p_lease_ms ELSE c.turn_until END
     WHERE c.id = v_conv
    RETURNING v_want_inline AND c.handoff = 'bot' AND c.turn_holder = p_inline_holder
              AND c.turn_until = p_now + p_lease_ms,
              c.handoff = 'bot'
      INTO v_inline, v_agents;

    -- Turn jobs carry no idempotency key: the message claim above already makes them unique.
    IF p_wants_turn AND NOT v_after AND v_agents THEN
        v_job := p_ids[4];
        INSERT INTO jobs (id, tenant_id, kind, payload, status, run_at, max_attempts,
                          locked_by, locked_until, created_at, updated_at)
        VALUES (v_job, p_tenant, p_job_kind,
                jsonb_build_object('conversation_id', v_conv, 'message_id', p_ids[3]),
                CASE WHEN v_inline THEN 'running' ELSE 'queued' END, p_now,
                p_max_attempts, CASE WHEN v_inline THEN p_inline_holder END,
                CASE WHEN v_inline THEN p_now + p_lease_ms END,
                p_now, p_now);
    END IF;

    -- The inline turn that follows needs the conversation's agent state: read it here, in
    -- the same round trip.
    IF v_inline THEN
        SELECT * INTO v_state FROM conversation_state s WHERE s.conversation_id = v_conv;
    END IF;

    RETURN QUERY SELECT 'recorded'::text, p_ids[3], v_conv, v_user, v_new, v_after, v_job, v_inline,
                        v_state.profile, v_state.agent, v_state.data, v_state.revision;
END $$;

-- A turn's reply (one that completes a turn job) to a conversation a person has taken
-- ('human') is not recorded: the turn job is still completed under its lease and the turn
-- given back, and the outcome is 'with_person'. Outbound messages without a turn job (consent
-- keyword answers, delivered reminders) are recorded whoever has the conversation. In
-- 'pending' a turn's reply is recorded (it tells the customer a person will follow up).
-- Signature and result are unchanged (0006).
CREATE OR REPLACE FUNCTION concierge_record_reply(
    p_tenant UUID, p_now BIGINT, p_conversation UUID, p_in_reply_to UUID, p_message UUID,
    p_channel TEXT, p_body BYTEA, p_status TEXT, p_status_rank SMALLINT,
    p_turn_job UUID, p_holder TEXT, p_attempt INTEGER,
    p_send_job UUID, p_send_kind TEXT, p_send_key TEXT, p_send_max_attempts INTEGER)
RETURNS TEXT
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_withheld BOOLEAN;
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);

    IF p_turn_job IS NOT NULL THEN
        DELETE FROM jobs j
         WHERE j.id = p_turn_job AND j.status = 'running' AND j.locked_by = p_holder
           AND j.attempts = p_attempt;
        IF NOT FOUND THEN
            RETURN 'lease_lost';
        END IF;
    END IF;

    -- A turn's reply gives the conversation's turn back when this turn holds it: an inline
    -- turn holds it under its lease holder, a worker's under '<lease holder>:<job id>'. The
    -- row lock orders the reply against a member of staff taking the conversation.
    UPDATE conversations c
       SET message_count = c.message_count
                           + CASE WHEN p_turn_job IS NOT NULL AND c.handoff = 'human' THEN 0 ELSE 1 END,
           last_message_at = CASE WHEN p_turn_job IS NOT NULL AND c.handoff = 'human'
                                  THEN c.last_message_at ELSE p_now END,
           turn_holder = CASE WHEN p_turn_job IS NOT NULL
                               AND c.turn_holder IN (p_holder, p_holder || ':' || p_turn_job::text)
                              THEN NULL ELSE c.turn_holder END,
           turn_until = CASE WHEN p_turn_job IS NOT NULL
                              AND c.turn_holder IN (p_holder, p_holder || ':' || p_turn_job::text)
                             THEN NULL ELSE c.turn_until END
     WHERE c.tenant_id = p_tenant AND c.id = p_conversation
    RETURNING p_turn_job IS NOT NULL AND c.handoff = 'human' INTO v_withheld;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'CCNF0';
    END IF;
    IF v_withheld THEN
        RETURN 'with_person';
    END IF;

    INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, body_cipher,
                          status, status_rank, in_reply_to, created_at, updated_at)
    VALUES (p_message, p_tenant, p_conversation, 'outbound', p_channel, p_body, p_status,
            p_status_rank, p_in_reply_to, p_now, p_now);

    IF p_send_job IS NOT NULL THEN
        INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at,
                          max_attempts, created_at, updated_at)
        VALUES (p_send_job, p_tenant, p_send_kind, jsonb_build_object('message_id', p_message),
                p_send_key, 'queued', p_now, p_send_max_attempts, p_now, p_now);
    END IF;
    RETURN 'recorded';
END $$;
