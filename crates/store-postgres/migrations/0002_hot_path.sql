-- The message hot path as server-side functions: each phase of an inbound message is one
-- statement, so one network round trip and one commit, instead of a transaction of four or
-- five statements. The functions are SECURITY INVOKER (the default): they run as the
-- application role, under row-level security, with app.tenant_id set for the statement's
-- own transaction only (set_config(..., true) ends with it, so nothing leaks to the next
-- user of the pooled connection). Decisions stay in Rust: the caller passes the ids, the
-- ciphertexts, the opt-out value a keyword sets and whether the message wants a turn.

-- Records one inbound message: the end user (found by blind index, or created), the
-- conversation, the claim on the provider's message id, the consent event, the counters and
-- the turn job. A known end user costs one indexed read, not a write: last_seen_at is
-- refreshed at most once an hour. Outcomes:
--   'recorded'   written; the other columns say what was written
--   'not_found'  p_conversation names no conversation of this tenant: nothing written
-- A provider id claimed before raises SQLSTATE CCDUP, which rolls the whole statement back
-- (a replay leaves no trace); the caller then reads the first delivery.
-- p_ids: the new end user, conversation, message, job and consent event ids, in that order.
CREATE FUNCTION concierge_record_inbound(
    p_tenant UUID, p_now BIGINT, p_channel TEXT, p_body BYTEA, p_provider_sid TEXT,
    p_tenant_number TEXT, p_phone_index BYTEA, p_phone_cipher BYTEA, p_conversation UUID,
    p_keyword TEXT, p_set_opted_out BOOLEAN, p_wants_turn BOOLEAN, p_ids UUID[],
    p_job_kind TEXT, p_max_attempts INTEGER, p_inline_holder TEXT, p_lease_ms BIGINT)
RETURNS TABLE (outcome TEXT, message_id UUID, conversation_id UUID, end_user_id UUID,
               new_end_user BOOLEAN, opted_out BOOLEAN, turn_job UUID)
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
            RETURN QUERY SELECT 'not_found'::text, NULL::uuid, NULL::uuid, NULL::uuid, false, false, NULL::uuid;
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

    UPDATE conversations
       SET message_count = message_count + 1, last_message_at = p_now,
           tenant_number = COALESCE(p_tenant_number, tenant_number)
     WHERE id = v_conv;

    -- Turn jobs carry no idempotency key: the message claim above already makes them unique.
    IF p_wants_turn AND NOT v_after THEN
        v_job := p_ids[4];
        INSERT INTO jobs (id, tenant_id, kind, payload, status, run_at, max_attempts,
                          locked_by, locked_until, created_at, updated_at)
        VALUES (v_job, p_tenant, p_job_kind,
                jsonb_build_object('conversation_id', v_conv, 'message_id', p_ids[3]),
                CASE WHEN p_inline_holder IS NULL THEN 'queued' ELSE 'running' END, p_now,
                p_max_attempts, p_inline_holder,
                CASE WHEN p_inline_holder IS NULL THEN NULL ELSE p_now + p_lease_ms END,
                p_now, p_now);
    END IF;

    RETURN QUERY SELECT 'recorded'::text, p_ids[3], v_conv, v_user, v_new, v_after, v_job;
END $$;

-- Records one reply and, when the reply ends a turn, completes that turn's job under its
-- lease, in one statement. Outcomes: 'recorded'; 'lease_lost' (the job is no longer held
-- by this lease: nothing written, another worker owns the turn). A conversation that does
-- not exist raises SQLSTATE CCNF0, rolling back the job deletion with it.
-- When p_send_job is set, a send job (the outbox) is queued for the reply.
CREATE FUNCTION concierge_record_reply(
    p_tenant UUID, p_now BIGINT, p_conversation UUID, p_in_reply_to UUID, p_message UUID,
    p_channel TEXT, p_body BYTEA, p_status TEXT, p_status_rank SMALLINT,
    p_turn_job UUID, p_holder TEXT, p_attempt INTEGER,
    p_send_job UUID, p_send_kind TEXT, p_send_key TEXT, p_send_max_attempts INTEGER)
RETURNS TEXT
LANGUAGE plpgsql AS $$
#variable_conflict use_column
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

    UPDATE conversations c SET message_count = c.message_count + 1, last_message_at = p_now
     WHERE c.tenant_id = p_tenant AND c.id = p_conversation;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conversation not found' USING ERRCODE = 'CCNF0';
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

-- Full-text search of a tenant's knowledge base in one round trip (no explicit transaction).
CREATE FUNCTION concierge_search_kb(p_tenant UUID, p_query TEXT, p_limit INTEGER)
RETURNS TABLE (id UUID, tenant_id UUID, title TEXT, body TEXT, created_at BIGINT,
               updated_at BIGINT, rank FLOAT8)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    RETURN QUERY
        SELECT k.id, k.tenant_id, k.title, k.body, k.created_at, k.updated_at,
               ts_rank(k.search, q)::float8 AS rank
          FROM kb_entries k, to_tsquery('simple', p_query) q
         WHERE k.tenant_id = p_tenant AND k.search @@ q
         ORDER BY 7 DESC, k.id
         LIMIT p_limit;
END $$;

-- A page of a conversation's messages, newest first, in one round trip (the agent loads the
-- recent history on every turn).
CREATE FUNCTION concierge_list_messages(p_tenant UUID, p_conversation UUID, p_before UUID,
                                        p_limit INTEGER)
RETURNS SETOF messages
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('app.tenant_id', p_tenant::text, true);
    RETURN QUERY
        SELECT * FROM messages m
         WHERE m.tenant_id = p_tenant AND m.conversation_id = p_conversation
           AND (p_before IS NULL OR m.id < p_before)
         ORDER BY m.id DESC
         LIMIT p_limit;
END $$;
