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
    v_result TEXT;
BEGIN
    FOR i IN 1 .. v_replies LOOP
        v_result := concierge_record_reply(
            r_tenant[i], r_now[i], r_conversation[i], r_in_reply_to[i], r_message[i],
            r_channel[i], r_body[i], r_status[i], r_status_rank[i], r_turn_job[i], r_holder[i],
            r_attempt[i], r_send_job[i], r_send_kind, r_send_key[i], r_send_max_attempts[i]);
        RETURN QUERY SELECT i, v_result, NULL::uuid, NULL::uuid, NULL::uuid, NULL::boolean,
                            NULL::boolean, NULL::uuid, NULL::boolean, NULL::text, NULL::text,
                            NULL::bytea, NULL::bigint;
    END LOOP;

    FOR i IN 1 .. COALESCE(array_length(i_tenant, 1), 0) LOOP
        IF i_provider_sid[i] IS NOT NULL THEN
            PERFORM set_config('app.tenant_id', i_tenant[i]::text, true);
            IF EXISTS (SELECT 1 FROM messages m
                        WHERE m.tenant_id = i_tenant[i] AND m.provider_sid = i_provider_sid[i]) THEN
                RETURN QUERY SELECT v_replies + i, 'duplicate'::text, NULL::uuid, NULL::uuid,
                                    NULL::uuid, NULL::boolean, NULL::boolean, NULL::uuid,
                                    NULL::boolean, NULL::text, NULL::text, NULL::bytea,
                                    NULL::bigint;
                CONTINUE;
            END IF;
        END IF;
        RETURN QUERY SELECT v_replies + i, r.outcome, r.message_id, r.conversation_id,
                            r.end_user_id, r.new_end_user, r.opted_out, r.turn_job, r.run_inline,
                            r.state_profile, r.state_agent, r.state_data, r.state_revision
          FROM concierge_record_inbound(
                   i_tenant[i], i_now[i], i_channel[i], i_body[i], i_provider_sid[i],
                   i_tenant_number[i], i_phone_index[i], i_phone_cipher[i], i_conversation[i],
                   i_keyword[i], i_set_opted_out[i], i_wants_turn[i],
                   i_ids[(i - 1) * 5 + 1 : i * 5], i_job_kind, i_max_attempts[i],
                   i_inline_holder[i], i_lease_ms[i]) r;
    END LOOP;
END $$;
