-- Group commit for the message path. When several requests of one process record inbound
-- messages or replies at the same time, the store sends them to PostgreSQL as one call of
-- this function: one round trip and one commit for the whole batch instead of one each. Each
-- operation runs exactly as its single-operation function (0007) would, in order: replies
-- first (a reply gives a conversation's turn back, so a message that arrives beside it can
-- take the turn at once), then inbound messages.
--
-- The arrays are parallel, one element per operation; i_ids holds five ids per inbound
-- message (see concierge_record_inbound). Every result row names its operation: replies
-- 1..R, inbound messages R+1..R+I.
--
-- An inbound message whose provider id is already recorded is answered 'duplicate' without
-- writing anything, so a replayed webhook does not abort the batch. Any error (a concurrent
-- duplicate, a conversation that is not the tenant's) rolls the whole batch back; the store
-- then runs each operation on its own, so every caller gets its own answer.
CREATE FUNCTION concierge_hot_batch(
    r_tenant UUID[], r_now BIGINT[], r_conversation UUID[], r_in_reply_to UUID[],
    r_message UUID[], r_channel TEXT[], r_body BYTEA[], r_status TEXT[],
    r_status_rank SMALLINT[], r_turn_job UUID[], r_holder TEXT[], r_attempt INTEGER[],
    r_send_job UUID[], r_send_kind TEXT, r_send_key TEXT[], r_send_max_attempts INTEGER[],
    i_tenant UUID[], i_now BIGINT[], i_channel TEXT[], i_body BYTEA[], i_provider_sid TEXT[],
    i_tenant_number TEXT[], i_phone_index BYTEA[], i_phone_cipher BYTEA[],
    i_conversation UUID[], i_keyword TEXT[], i_set_opted_out BOOLEAN[],
    i_wants_turn BOOLEAN[], i_ids UUID[], i_job_kind TEXT, i_max_attempts INTEGER[],
    i_inline_holder TEXT[], i_lease_ms BIGINT[])
RETURNS TABLE (op INTEGER, outcome TEXT, message_id UUID, conversation_id UUID, end_user_id UUID,
               new_end_user BOOLEAN, opted_out BOOLEAN, turn_job UUID, run_inline BOOLEAN,
               state_profile TEXT, state_agent TEXT, state_data BYTEA, state_revision BIGINT)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_replies INTEGER := COALESCE(array_length(r_tenant, 1), 0);
    v_tenant UUID;
    v_ids UUID[];
    r RECORD;
BEGIN
    -- Each operation's arguments come out of one unnest (the arrays are read once, not once
    -- per operation) and reach its function as plain values.
    FOR r IN
        SELECT * FROM unnest(r_tenant, r_now, r_conversation, r_in_reply_to, r_message,
                             r_channel, r_body, r_status, r_status_rank, r_turn_job, r_holder,
                             r_attempt, r_send_job, r_send_key, r_send_max_attempts)
                 WITH ORDINALITY AS a(tenant, now, conversation, in_reply_to, message, channel,
                                      body, status, status_rank, turn_job, holder, attempt,
                                      send_job, send_key, send_max_attempts, n)
    LOOP
        op := r.n::integer;
        outcome := concierge_record_reply(
            r.tenant, r.now, r.conversation, r.in_reply_to, r.message, r.channel, r.body,
            r.status, r.status_rank, r.turn_job, r.holder, r.attempt, r.send_job, r_send_kind,
            r.send_key, r.send_max_attempts);
        RETURN NEXT;
    END LOOP;

    v_tenant := NULL;
    FOR r IN
        SELECT * FROM unnest(i_tenant, i_now, i_channel, i_body, i_provider_sid,
                             i_tenant_number, i_phone_index, i_phone_cipher, i_conversation,
                             i_keyword, i_set_opted_out, i_wants_turn, i_max_attempts,
                             i_inline_holder, i_lease_ms)
                 WITH ORDINALITY AS a(tenant, now, channel, body, provider_sid, tenant_number,
                                      phone_index, phone_cipher, conversation, keyword,
                                      set_opted_out, wants_turn, max_attempts, inline_holder,
                                      lease_ms, n)
    LOOP
        -- A provider id already stored is a replay: answered 'duplicate', nothing written.
        -- (A probe of the unique index per message: a set-based probe's cached plan could
        -- go stale as the table grows.)
        IF r.tenant IS DISTINCT FROM v_tenant THEN
            PERFORM set_config('app.tenant_id', r.tenant::text, true);
            v_tenant := r.tenant;
        END IF;
        IF r.provider_sid IS NOT NULL
           AND EXISTS (SELECT 1 FROM messages m
                        WHERE m.tenant_id = r.tenant AND m.provider_sid = r.provider_sid) THEN
            RETURN QUERY SELECT v_replies + r.n::integer, 'duplicate'::text, NULL::uuid,
                                NULL::uuid, NULL::uuid, NULL::boolean, NULL::boolean,
                                NULL::uuid, NULL::boolean, NULL::text, NULL::text,
                                NULL::bytea, NULL::bigint;
            CONTINUE;
        END IF;
        v_ids := i_ids[(r.n::integer - 1) * 5 + 1 : r.n::integer * 5];
        RETURN QUERY SELECT v_replies + r.n::integer, x.outcome, x.message_id,
                            x.conversation_id, x.end_user_id, x.new_end_user, x.opted_out,
                            x.turn_job, x.run_inline, x.state_profile, x.state_agent,
                            x.state_data, x.state_revision
          FROM concierge_record_inbound(
                   r.tenant, r.now, r.channel, r.body, r.provider_sid, r.tenant_number,
                   r.phone_index, r.phone_cipher, r.conversation, r.keyword, r.set_opted_out,
                   r.wants_turn, v_ids, i_job_kind,
                   r.max_attempts, r.inline_holder, r.lease_ms) x;
    END LOOP;
END $$;
