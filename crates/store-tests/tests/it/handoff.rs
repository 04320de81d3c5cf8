//! Hand-off to a person (`domain::Handoff`): the state machine through `update_handoff`, the
//! list of conversations waiting for (or with) staff, no agent turn for a message to them,
//! no agent reply once a person has the conversation, and staff replies.

use std::time::Duration;

use domain::jobs::JobKind;
use domain::{
    Channel, ConsentKeyword, ConversationId, Direction, Handoff, HandoffEvent, MessageId,
    MessageStatus, TenantId,
};
use store::{
    Contact, Conversation, Delivery, Lease, Page, QueueStats, RecordedInbound, ReplyMessage,
    StaffReply, StaffReplyOutcome, StoreError, StoredMessage, Stores,
};

use crate::{conformance, recorded, sms, tenant};

conformance!(
    every_event_moves_every_state_as_the_state_machine_says,
    the_wait_is_kept_from_request_to_take_and_cleared_on_release,
    handed_off_conversations_are_listed_longest_waiting_first,
    messages_to_a_conversation_with_a_person_start_no_turn,
    a_turns_reply_is_dropped_once_a_person_has_the_conversation,
    a_turns_reply_while_a_person_is_awaited_is_recorded,
    answers_without_a_turn_job_are_recorded_whoever_has_the_conversation,
    staff_sms_replies_take_the_conversation_and_go_through_the_outbox,
    staff_replies_to_opted_out_end_users_write_nothing,
    staff_web_chat_replies_are_stored,
    a_retried_staff_reply_is_recorded_once,
    staff_replies_to_another_tenants_conversation_are_not_found,
);

/// Claims and completes every due job, so a test sees only the jobs it makes.
async fn drain(s: &Stores) {
    for job in s
        .queue
        .claim("drain", 100, Duration::from_secs(30))
        .await
        .unwrap()
    {
        assert!(s.queue.complete(job.id, &job.lease).await.unwrap());
    }
}

/// An SMS end user with their conversation, their turn job done.
async fn sms_user(s: &Stores, t: TenantId, index: u8) -> RecordedInbound {
    let r = recorded(s, t, sms(index, &format!("SM{t}{index}"), b"hi")).await;
    drain(s).await;
    r
}

fn inline(mut m: store::InboundMessage, holder: &str) -> store::InboundMessage {
    m.turn.inline_holder = Some(holder.to_owned());
    m
}

async fn event(
    s: &Stores,
    t: TenantId,
    c: ConversationId,
    event: HandoffEvent,
    staff: Option<&str>,
) -> Conversation {
    s.data
        .update_handoff(t, c, event, staff)
        .await
        .unwrap()
        .expect("the tenant's conversation")
}

async fn conversation(s: &Stores, t: TenantId, c: ConversationId) -> Conversation {
    s.data.get_conversation(t, c).await.unwrap().unwrap()
}

async fn messages(s: &Stores, t: TenantId, c: ConversationId) -> Vec<StoredMessage> {
    s.data.list_messages(t, c, Page::default()).await.unwrap()
}

fn staff_reply(c: ConversationId, channel: Channel, delivery: Delivery) -> StaffReply {
    StaffReply {
        id: MessageId::new(),
        conversation_id: c,
        channel,
        body: b"this is Dana from the front desk".to_vec(),
        staff: "api-key:front-desk".into(),
        delivery,
    }
}

async fn every_event_moves_every_state_as_the_state_machine_says(s: &Stores) {
    use Handoff::{Bot, Human, Pending};
    use HandoffEvent::{Release, Request, Take};
    let t = tenant(s, "Acme", "+15550000001").await;
    let table = [
        (Bot, Request, Pending),
        (Pending, Request, Pending),
        (Human, Request, Human),
        (Bot, Take, Human),
        (Pending, Take, Human),
        (Human, Take, Human),
        (Bot, Release, Bot),
        (Pending, Release, Bot),
        (Human, Release, Bot),
    ];
    for (i, (from, ev, to)) in (1u8..).zip(table) {
        let c = sms_user(s, t, i).await.conversation_id;
        // Into `from`, by the events that lead there.
        let before = match from {
            Bot => conversation(s, t, c).await,
            Pending => event(s, t, c, Request, None).await,
            Human => event(s, t, c, Take, Some("staff:first")).await,
        };
        assert_eq!(before.handoff, from);
        assert_eq!(before.handoff_at.is_some(), from != Bot, "{from}");
        tokio::time::sleep(Duration::from_millis(3)).await;

        let after = event(s, t, c, ev, Some("staff:second")).await;
        let what = format!("{from} + {ev:?}");
        assert_eq!(after.handoff, to, "{what}");
        assert_eq!(after.handoff, from.after(ev), "{what}: as the domain says");
        let staff = match ev {
            Request => before.handoff_staff.clone(),
            Take => Some("staff:second".to_owned()),
            Release => None,
        };
        assert_eq!(after.handoff_staff, staff, "{what}");
        match (from, to) {
            (_, Bot) => assert_eq!(after.handoff_at, None, "{what}"),
            (Bot, _) => assert!(after.handoff_at.is_some(), "{what}"),
            _ => assert_eq!(after.handoff_at, before.handoff_at, "{what}: still waiting"),
        }
        // What came back is what is stored; the event wrote nothing else.
        assert_eq!(conversation(s, t, c).await, after, "{what}");
        assert_eq!(after.message_count, before.message_count);
        assert_eq!(after.last_message_at, before.last_message_at);
    }
}

async fn the_wait_is_kept_from_request_to_take_and_cleared_on_release(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    let asked = event(s, t, c, HandoffEvent::Request, None).await;
    let since = asked.handoff_at.unwrap();
    assert_eq!(asked.handoff_staff, None);
    tokio::time::sleep(Duration::from_millis(5)).await;
    let taken = event(s, t, c, HandoffEvent::Take, Some("api-key:1")).await;
    assert_eq!(taken.handoff, Handoff::Human);
    assert_eq!(
        taken.handoff_at,
        Some(since),
        "the wait started with the request"
    );
    assert_eq!(taken.handoff_staff.as_deref(), Some("api-key:1"));
    // Another member of staff takes it over; a request while a person has it changes nothing.
    let over = event(s, t, c, HandoffEvent::Take, Some("api-key:2")).await;
    assert_eq!(over.handoff_staff.as_deref(), Some("api-key:2"));
    assert_eq!(over.handoff_at, Some(since));
    let asked_again = event(s, t, c, HandoffEvent::Request, None).await;
    assert_eq!(asked_again, over);

    // Another tenant can neither change nor see it; an unknown conversation is None.
    for ev in [
        HandoffEvent::Request,
        HandoffEvent::Take,
        HandoffEvent::Release,
    ] {
        assert!(
            s.data
                .update_handoff(other, c, ev, Some("intruder"))
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            s.data
                .update_handoff(t, ConversationId::new(), ev, Some("x"))
                .await
                .unwrap()
                .is_none()
        );
    }
    assert_eq!(conversation(s, t, c).await, over);
    assert!(
        s.data
            .list_handed_off(other, Page::default())
            .await
            .unwrap()
            .is_empty()
    );

    let released = event(s, t, c, HandoffEvent::Release, None).await;
    assert_eq!(released.handoff, Handoff::Bot);
    assert_eq!(released.handoff_at, None);
    assert_eq!(released.handoff_staff, None);
    // A new request starts a new wait.
    tokio::time::sleep(Duration::from_millis(3)).await;
    let anew = event(s, t, c, HandoffEvent::Request, None).await;
    assert!(anew.handoff_at.unwrap() > since);
}

async fn handed_off_conversations_are_listed_longest_waiting_first(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    // Conversations created in order (ids ascending), handed off in another order.
    let mut c = Vec::new();
    for i in 1..=5 {
        c.push(sms_user(s, t, i).await.conversation_id);
    }
    let c = c;
    let theirs = sms_user(s, other, 1).await.conversation_id;
    event(s, t, c[3], HandoffEvent::Request, None).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    event(s, t, c[1], HandoffEvent::Take, Some("staff")).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    event(s, t, c[0], HandoffEvent::Request, None).await;
    event(s, t, c[4], HandoffEvent::Request, None).await;
    event(s, t, c[4], HandoffEvent::Release, None).await;
    event(s, other, theirs, HandoffEvent::Request, None).await;
    // c[2] stays with the agents, c[4] went back to them.

    let listed = s.data.list_handed_off(t, Page::default()).await.unwrap();
    let ids: Vec<ConversationId> = listed.iter().map(|c| c.id).collect();
    assert_eq!(ids, [c[3], c[1], c[0]], "longest waiting first");
    assert!(
        listed
            .windows(2)
            .all(|w| w[0].handoff_at <= w[1].handoff_at)
    );
    assert_eq!(
        listed.iter().map(|c| c.handoff).collect::<Vec<_>>(),
        [Handoff::Pending, Handoff::Human, Handoff::Pending]
    );
    assert!(listed.iter().all(|c| c.tenant_id == t));
    let first = s.data.list_handed_off(t, Page::new(2, None)).await.unwrap();
    assert_eq!(first.iter().map(|c| c.id).collect::<Vec<_>>(), [c[3], c[1]]);
    let theirs_listed = s
        .data
        .list_handed_off(other, Page::default())
        .await
        .unwrap();
    assert_eq!(
        theirs_listed.iter().map(|c| c.id).collect::<Vec<_>>(),
        [theirs]
    );
}

async fn messages_to_a_conversation_with_a_person_start_no_turn(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let first = sms_user(s, t, 1).await;
    let c = first.conversation_id;
    for (n, (ev, state)) in [
        (HandoffEvent::Request, Handoff::Pending),
        (HandoffEvent::Take, Handoff::Human),
    ]
    .into_iter()
    .enumerate()
    {
        event(s, t, c, ev, Some("staff")).await;
        let before = conversation(s, t, c).await;
        // Neither an inline turn nor one for the worker.
        for (i, holder) in [Some("inline:a"), None].into_iter().enumerate() {
            let mut m = sms(1, &format!("SMp{n}{i}"), b"still there?");
            m.turn.inline_holder = holder.map(str::to_owned);
            let r = recorded(s, t, m).await;
            assert_eq!(r.conversation_id, c);
            assert_eq!(r.turn_job, None, "{state}");
            assert!(!r.inline, "{state}");
            assert_eq!(r.state, store::ConversationState::default());
            assert_eq!(
                messages(s, t, c).await[0].id,
                r.message_id,
                "the message is recorded"
            );
        }
        assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
        let after = conversation(s, t, c).await;
        assert_eq!(after.message_count, before.message_count + 2);
        assert_eq!(after.handoff, state, "a message changes no hand-off");
        // The conversation's turn was not taken: a worker could take it.
        assert!(
            s.data
                .acquire_turn(t, c, "probe", Duration::from_secs(30))
                .await
                .unwrap()
        );
        s.data.release_turn(t, c, "probe").await.unwrap();
    }
    // Back with the agents: turns again, inline when asked.
    event(s, t, c, HandoffEvent::Release, None).await;
    let r = recorded(s, t, inline(sms(1, "SMback", b"thanks"), "inline:b")).await;
    assert!(r.inline);
    assert!(r.turn_job.is_some());
    assert_eq!(s.queue.stats().await.unwrap().running, 1);
    let queued = recorded(s, t, sms(2, "SMnew", b"hello")).await;
    assert!(queued.turn_job.is_some() && !queued.inline);
}

async fn a_turns_reply_is_dropped_once_a_person_has_the_conversation(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    // An inline turn holds the conversation's turn and its job when staff take over.
    let r = recorded(s, t, inline(sms(1, "SMq1", b"hours?"), "inline:a")).await;
    assert!(r.inline);
    let job = r.turn_job.unwrap();
    let c = r.conversation_id;
    event(s, t, c, HandoffEvent::Take, Some("staff")).await;
    let before = conversation(s, t, c).await;
    let reply = |holder: &str| ReplyMessage {
        conversation_id: c,
        in_reply_to: r.message_id,
        channel: Channel::Sms,
        body: b"we open at 9".to_vec(),
        delivery: Delivery::Outbox { max_attempts: 3 },
        turn_job: Some((
            job,
            Lease {
                holder: holder.into(),
                attempt: 0,
            },
        )),
    };
    // A lost lease writes nothing, as always: the job is still there, the turn still held.
    assert!(matches!(
        s.data.record_reply(t, reply("inline:b")).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert_eq!(s.queue.stats().await.unwrap().running, 1);
    assert!(
        !s.data
            .acquire_turn(t, c, "probe", Duration::from_secs(30))
            .await
            .unwrap()
    );

    let err = s.data.record_reply(t, reply("inline:a")).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("person")),
        "{err:?}"
    );
    assert!(s.data.reply_to(t, r.message_id).await.unwrap().is_none());
    assert_eq!(messages(s, t, c).await.len(), 1, "only the inbound message");
    let after = conversation(s, t, c).await;
    assert_eq!(after.message_count, before.message_count);
    assert_eq!(after.last_message_at, before.last_message_at);
    assert_eq!(after.handoff, Handoff::Human);
    // The turn job is done (and no send job was enqueued), and the turn is free.
    assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
    assert!(
        s.data
            .acquire_turn(t, c, "probe", Duration::from_secs(30))
            .await
            .unwrap()
    );

    // A worker's turn (holding the turn as "<holder>:<job>") is dropped the same way.
    s.data.release_turn(t, c, "probe").await.unwrap();
    event(s, t, c, HandoffEvent::Release, None).await;
    let r2 = recorded(s, t, sms(1, "SMq2", b"and Sunday?")).await;
    let claimed = s
        .queue
        .claim("worker:w", 10, Duration::from_secs(30))
        .await
        .unwrap();
    let lease = claimed[0].lease.clone();
    let holder = format!("{}:{}", lease.holder, claimed[0].id);
    assert!(
        s.data
            .acquire_turn(t, c, &holder, Duration::from_secs(30))
            .await
            .unwrap()
    );
    event(s, t, c, HandoffEvent::Take, Some("staff")).await;
    let err = s
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: c,
                in_reply_to: r2.message_id,
                channel: Channel::Sms,
                body: b"closed".to_vec(),
                delivery: Delivery::Outbox { max_attempts: 3 },
                turn_job: Some((claimed[0].id, lease)),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert!(s.data.reply_to(t, r2.message_id).await.unwrap().is_none());
    assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
    assert!(
        s.data
            .acquire_turn(t, c, "probe", Duration::from_secs(30))
            .await
            .unwrap()
    );
}

async fn a_turns_reply_while_a_person_is_awaited_is_recorded(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = recorded(s, t, inline(sms(1, "SMw1", b"a person please"), "inline:a")).await;
    let c = r.conversation_id;
    // The turn itself asks for a person, then tells the customer one will follow up.
    event(s, t, c, HandoffEvent::Request, None).await;
    let id = s
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: c,
                in_reply_to: r.message_id,
                channel: Channel::Sms,
                body: b"a colleague will text you".to_vec(),
                delivery: Delivery::Outbox { max_attempts: 3 },
                turn_job: Some((
                    r.turn_job.unwrap(),
                    Lease {
                        holder: "inline:a".into(),
                        attempt: 0,
                    },
                )),
            },
        )
        .await
        .unwrap();
    let stored = s.data.reply_to(t, r.message_id).await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.sent_by, None, "an agent's reply");
    let sends = s
        .queue
        .claim("worker", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].kind, JobKind::SendSms.as_str());
    let after = conversation(s, t, c).await;
    assert_eq!(after.handoff, Handoff::Pending);
    assert_eq!(after.message_count, 2);
    assert!(
        s.data
            .acquire_turn(t, c, "probe", Duration::from_secs(30))
            .await
            .unwrap(),
        "the turn was given back"
    );
}

/// Answers that are not a turn's (a consent keyword's confirmation, which carriers require)
/// are recorded even when a person has the conversation.
async fn answers_without_a_turn_job_are_recorded_whoever_has_the_conversation(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    event(s, t, c, HandoffEvent::Take, Some("staff")).await;
    let mut stop = sms(1, "SMstop", b"STOP");
    stop.keyword = Some(ConsentKeyword::OptOut);
    let r = recorded(s, t, stop).await;
    assert!(r.turn_job.is_none());
    let id = s
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: c,
                in_reply_to: r.message_id,
                channel: Channel::Sms,
                body: b"you are unsubscribed".to_vec(),
                delivery: Delivery::Inline,
                turn_job: None,
            },
        )
        .await
        .unwrap();
    let stored = s.data.reply_to(t, r.message_id).await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.status, MessageStatus::RepliedInline);
    assert_eq!(conversation(s, t, c).await.handoff, Handoff::Human);
}

async fn staff_sms_replies_take_the_conversation_and_go_through_the_outbox(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let c = r.conversation_id;
    let before = conversation(s, t, c).await;
    assert_eq!(before.handoff, Handoff::Bot);
    tokio::time::sleep(Duration::from_millis(3)).await;
    let reply = staff_reply(c, Channel::Sms, Delivery::Outbox { max_attempts: 4 });
    let StaffReplyOutcome::Recorded(sent) =
        s.data.record_staff_reply(t, reply.clone()).await.unwrap()
    else {
        panic!("recorded");
    };
    assert_eq!(sent.id, reply.id);
    assert_eq!(sent.tenant_id, t);
    assert_eq!(sent.conversation_id, c);
    assert_eq!(sent.direction, Direction::Outbound);
    assert_eq!(sent.channel, Channel::Sms);
    assert_eq!(sent.body, reply.body);
    assert_eq!(sent.status, MessageStatus::Queued);
    assert_eq!(sent.in_reply_to, None);
    assert_eq!(sent.provider_sid, None);
    assert_eq!(sent.sent_by.as_deref(), Some("api-key:front-desk"));
    // Every read of the message says who wrote it; the customer's message says nobody.
    assert_eq!(s.data.get_message(t, sent.id).await.unwrap().unwrap(), sent);
    let listed = messages(s, t, c).await;
    assert_eq!(listed, [sent.clone(), listed[1].clone()]);
    assert_eq!(listed[1].sent_by, None);
    let out = s.data.outbound_sms(t, sent.id).await.unwrap().unwrap();
    assert_eq!(out.message, sent);
    assert_eq!(out.to_ciphertext, Some(vec![1, 1, 2]));

    // Writing to the customer takes the conversation.
    let after = conversation(s, t, c).await;
    assert_eq!(after.handoff, Handoff::Human);
    assert_eq!(after.handoff_staff.as_deref(), Some("api-key:front-desk"));
    assert!(after.handoff_at.is_some());
    assert_eq!(after.message_count, before.message_count + 1);
    assert!(after.last_message_at > before.last_message_at);

    // One send job, as an agent's reply gets.
    let jobs = s
        .queue
        .claim("worker", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].kind, JobKind::SendSms.as_str());
    assert_eq!(jobs[0].max_attempts, 4);
    assert_eq!(jobs[0].tenant_id, Some(t));
    assert_eq!(
        jobs[0].payload,
        serde_json::json!({ "message_id": sent.id })
    );

    // A second member of staff writing takes it over; the wait keeps its start.
    let mut next = staff_reply(c, Channel::Sms, Delivery::Outbox { max_attempts: 4 });
    next.staff = "api-key:manager".into();
    s.data.record_staff_reply(t, next).await.unwrap();
    let again = conversation(s, t, c).await;
    assert_eq!(again.handoff_staff.as_deref(), Some("api-key:manager"));
    assert_eq!(again.handoff_at, after.handoff_at);
}

async fn staff_replies_to_opted_out_end_users_write_nothing(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    let mut stop = sms(1, "SMstop", b"STOP");
    stop.keyword = Some(ConsentKeyword::OptOut);
    assert!(recorded(s, t, stop).await.opted_out);
    event(s, t, c, HandoffEvent::Request, None).await;
    let before = conversation(s, t, c).await;
    let reply = staff_reply(c, Channel::Sms, Delivery::Outbox { max_attempts: 4 });
    assert_eq!(
        s.data.record_staff_reply(t, reply.clone()).await.unwrap(),
        StaffReplyOutcome::OptedOut
    );
    assert_eq!(
        conversation(s, t, c).await,
        before,
        "not taken, not counted"
    );
    assert_eq!(messages(s, t, c).await.len(), 2);
    assert!(s.data.get_message(t, reply.id).await.unwrap().is_none());
    assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
}

async fn staff_web_chat_replies_are_stored(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let mut m = sms(0, "", b"hello");
    m.channel = Channel::WebChat;
    m.provider_sid = None;
    m.contact = Contact::Anonymous;
    let c = recorded(s, t, m).await.conversation_id;
    drain(s).await;
    let StaffReplyOutcome::Recorded(sent) = s
        .data
        .record_staff_reply(t, staff_reply(c, Channel::WebChat, Delivery::Stored))
        .await
        .unwrap()
    else {
        panic!("recorded");
    };
    assert_eq!(sent.status, MessageStatus::Sent);
    assert_eq!(sent.channel, Channel::WebChat);
    assert_eq!(sent.sent_by.as_deref(), Some("api-key:front-desk"));
    assert_eq!(messages(s, t, c).await[0], sent);
    assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
    let after = conversation(s, t, c).await;
    assert_eq!(after.handoff, Handoff::Human);
    assert_eq!(after.message_count, 2);
}

async fn a_retried_staff_reply_is_recorded_once(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    let reply = staff_reply(c, Channel::Sms, Delivery::Outbox { max_attempts: 4 });
    let first = s.data.record_staff_reply(t, reply.clone()).await.unwrap();
    let counted = conversation(s, t, c).await;
    for _ in 0..2 {
        assert_eq!(
            s.data.record_staff_reply(t, reply.clone()).await.unwrap(),
            first
        );
    }
    assert_eq!(messages(s, t, c).await.len(), 2);
    assert_eq!(conversation(s, t, c).await, counted);
    assert_eq!(s.queue.stats().await.unwrap().queued, 1, "one send job");
}

async fn staff_replies_to_another_tenants_conversation_are_not_found(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    let before = conversation(s, t, c).await;
    for (tenant, conversation) in [(other, c), (t, ConversationId::new())] {
        let err = s
            .data
            .record_staff_reply(
                tenant,
                staff_reply(
                    conversation,
                    Channel::Sms,
                    Delivery::Outbox { max_attempts: 4 },
                ),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }
    assert_eq!(conversation(s, t, c).await, before);
    assert_eq!(messages(s, t, c).await.len(), 1);
    assert_eq!(s.queue.stats().await.unwrap(), QueueStats::default());
}
