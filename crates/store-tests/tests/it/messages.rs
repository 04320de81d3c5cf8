//! The message path: inbound claims, consent, replies, statuses, conversations, knowledge base.

use std::time::Duration;

use domain::jobs::JobKind;
use domain::{Channel, ConsentKeyword, Direction, Handoff, HandoffEvent, MessageStatus};
use store::{
    Contact, Delivery, InboundOutcome, KbEntryInput, Page, ReplyMessage, StatusUpdate, StoreError,
    Stores, TurnPlan,
};

use crate::{conformance, recorded, sms, tenant};

conformance!(
    first_contact_creates_user_and_conversation_once,
    replayed_provider_ids_are_stored_once,
    concurrent_deliveries_of_one_provider_id_record_one_message,
    handoffs_are_kept_from_the_first_request_and_cleared,
    consent_keywords_are_recorded_and_silence_turns,
    inline_replies_complete_the_turn_job,
    outbox_replies_enqueue_a_send_job,
    statuses_only_move_forward,
    web_chat_threads_continue_and_unknown_threads_are_not_found,
    knowledge_base_is_searchable_and_tenant_scoped,
    conversations_are_listed_per_tenant_with_pagination,
);

async fn first_contact_creates_user_and_conversation_once(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let a = recorded(s, t, sms(1, "SM1", b"hello")).await;
    assert!(a.new_end_user);
    assert!(a.turn_job.is_some());
    let b = recorded(s, t, sms(1, "SM2", b"again")).await;
    assert!(!b.new_end_user);
    assert_eq!(a.end_user_id, b.end_user_id);
    assert_eq!(a.conversation_id, b.conversation_id);
    let other = recorded(s, t, sms(2, "SM3", b"hi")).await;
    assert_ne!(other.end_user_id, a.end_user_id);

    let user = s
        .data
        .end_user_by_phone_index(t, &[1; 32])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.id, a.end_user_id);
    assert_eq!(user.phone_ciphertext, Some(vec![1, 1, 2]));
    let conv = s
        .data
        .get_conversation(t, a.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.message_count, 2);
    let msgs = s
        .data
        .list_messages(t, a.conversation_id, Page::default())
        .await
        .unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].body, b"again");
    assert_eq!(msgs[0].direction, Direction::Inbound);
    assert_eq!(msgs[0].status, MessageStatus::Received);
    assert_eq!(msgs[0].provider_sid.as_deref(), Some("SM2"));
    assert_eq!(s.queue.stats().await.unwrap().queued, 3);
}

async fn replayed_provider_ids_are_stored_once(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let first = recorded(s, t, sms(1, "SMdup", b"hello")).await;
    for _ in 0..3 {
        match s
            .data
            .record_inbound(t, sms(1, "SMdup", b"hello"))
            .await
            .unwrap()
        {
            InboundOutcome::Duplicate(d) => {
                assert_eq!(d.message_id, first.message_id);
                assert_eq!(d.conversation_id, first.conversation_id);
                assert!(d.reply.is_none());
            }
            InboundOutcome::Recorded(_) => panic!("a replay must not be recorded again"),
        }
    }
    // Even a replay from a brand-new contact leaves no end user behind.
    assert!(matches!(
        s.data
            .record_inbound(t, sms(9, "SMdup", b"x"))
            .await
            .unwrap(),
        InboundOutcome::Duplicate(_)
    ));
    assert!(
        s.data
            .end_user_by_phone_index(t, &[9; 32])
            .await
            .unwrap()
            .is_none()
    );
    let msgs = s
        .data
        .list_messages(t, first.conversation_id, Page::default())
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(s.queue.stats().await.unwrap().queued, 1);
    // The same provider id at another tenant is another message.
    let t2 = tenant(s, "Other", "+15550000002").await;
    recorded(s, t2, sms(1, "SMdup", b"hello")).await;
}

async fn concurrent_deliveries_of_one_provider_id_record_one_message(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    // Eight deliveries of the same new contact's message at once (a webhook retried while
    // the first attempt is still running): one wins, the others are duplicates of it.
    let attempts = (0..8).map(|_| {
        let data = s.data.clone();
        tokio::spawn(async move { data.record_inbound(t, sms(4, "SMrace", b"hi")).await })
    });
    let mut recorded = Vec::new();
    let mut duplicates = Vec::new();
    for handle in attempts.collect::<Vec<_>>() {
        match handle.await.unwrap().unwrap() {
            InboundOutcome::Recorded(r) => recorded.push(r),
            InboundOutcome::Duplicate(d) => duplicates.push(d),
        }
    }
    assert_eq!(recorded.len(), 1, "exactly one delivery is recorded");
    assert_eq!(duplicates.len(), 7);
    for d in &duplicates {
        assert_eq!(d.message_id, recorded[0].message_id);
    }
    let msgs = s
        .data
        .list_messages(t, recorded[0].conversation_id, Page::default())
        .await
        .unwrap();
    assert_eq!(msgs.len(), 1);
    let stats = s.queue.stats().await.unwrap();
    assert_eq!(stats.queued, 1, "{stats:?}");
}

async fn handoffs_are_kept_from_the_first_request_and_cleared(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let r = recorded(s, t, sms(1, "SMh1", b"a human please")).await;
    let fresh = s
        .data
        .get_conversation(t, r.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fresh.handoff, Handoff::Bot);
    assert_eq!(fresh.handoff_at, None);

    let first = s
        .data
        .update_handoff(t, r.conversation_id, HandoffEvent::Request, None)
        .await
        .unwrap()
        .expect("the tenant's conversation");
    assert_eq!(first.handoff, Handoff::Pending);
    let since = first.handoff_at.expect("marked");
    tokio::time::sleep(Duration::from_millis(5)).await;
    // Asking again keeps the first time: the wait is measured from the first request.
    let again = s
        .data
        .update_handoff(t, r.conversation_id, HandoffEvent::Request, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.handoff_at, Some(since));
    assert_eq!(again.handoff, Handoff::Pending);
    let listed = s.data.list_conversations(t, Page::default()).await.unwrap();
    assert_eq!(listed[0].handoff_at, Some(since));
    assert_eq!(listed[0].handoff, Handoff::Pending);

    // Another tenant can neither see nor change it.
    assert!(
        s.data
            .update_handoff(other, r.conversation_id, HandoffEvent::Release, None)
            .await
            .unwrap()
            .is_none()
    );
    let cleared = s
        .data
        .update_handoff(t, r.conversation_id, HandoffEvent::Release, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cleared.handoff_at, None);
    assert_eq!(cleared.handoff, Handoff::Bot);
    assert!(
        s.data
            .update_handoff(
                t,
                domain::ConversationId::new(),
                HandoffEvent::Request,
                None
            )
            .await
            .unwrap()
            .is_none()
    );
}

async fn consent_keywords_are_recorded_and_silence_turns(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let mut stop = sms(1, "SM1", b"STOP");
    stop.keyword = Some(ConsentKeyword::OptOut);
    let r = recorded(s, t, stop).await;
    assert!(r.opted_out);
    assert!(r.turn_job.is_none(), "a keyword gets no agent turn");
    let r2 = recorded(s, t, sms(1, "SM2", b"are you there?")).await;
    assert!(r2.opted_out);
    assert!(
        r2.turn_job.is_none(),
        "an opted-out number gets no agent turn"
    );
    let mut start = sms(1, "SM3", b"START");
    start.keyword = Some(ConsentKeyword::OptIn);
    assert!(!recorded(s, t, start).await.opted_out);
    let mut help = sms(1, "SM4", b"HELP");
    help.keyword = Some(ConsentKeyword::Help);
    let h = recorded(s, t, help).await;
    assert!(!h.opted_out && h.turn_job.is_none());
    assert!(
        recorded(s, t, sms(1, "SM5", b"book me"))
            .await
            .turn_job
            .is_some()
    );
    let ledger = s.data.consent_history(t, r.end_user_id).await.unwrap();
    let kinds: Vec<_> = ledger.iter().map(|e| e.keyword).collect();
    assert_eq!(
        kinds,
        vec![
            ConsentKeyword::OptOut,
            ConsentKeyword::OptIn,
            ConsentKeyword::Help
        ]
    );
    assert_eq!(ledger[0].message_id, Some(r.message_id));
    assert!(
        !s.data
            .end_user(t, r.end_user_id)
            .await
            .unwrap()
            .unwrap()
            .opted_out
    );
}

async fn inline_replies_complete_the_turn_job(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let mut m = sms(1, "SM1", b"hours?");
    m.turn = TurnPlan {
        inline_holder: Some("api:1".into()),
        lease: Duration::from_secs(30),
        max_attempts: 5,
    };
    let r = recorded(s, t, m).await;
    let job = r.turn_job.unwrap();
    // Leased to the API: no worker can take it while the lease holds.
    assert!(
        s.queue
            .claim("worker", 10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
    let lease = store::Lease {
        holder: "api:1".into(),
        attempt: 0,
    };
    let wrong = store::Lease {
        holder: "api:2".into(),
        attempt: 0,
    };
    let reply = |lease: store::Lease| ReplyMessage {
        conversation_id: r.conversation_id,
        in_reply_to: r.message_id,
        channel: Channel::Sms,
        body: b"9 to 5".to_vec(),
        delivery: Delivery::Inline,
        turn_job: Some((job, lease)),
    };
    assert!(matches!(
        s.data.record_reply(t, reply(wrong)).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    let id = s.data.record_reply(t, reply(lease)).await.unwrap();
    let stored = s.data.reply_to(t, r.message_id).await.unwrap().unwrap();
    assert_eq!(stored.id, id);
    assert_eq!(stored.status, MessageStatus::RepliedInline);
    assert_eq!(stored.direction, Direction::Outbound);
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
    // A replay now carries the recorded reply.
    match s
        .data
        .record_inbound(t, sms(1, "SM1", b"hours?"))
        .await
        .unwrap()
    {
        InboundOutcome::Duplicate(d) => assert_eq!(d.reply.unwrap().body, b"9 to 5"),
        InboundOutcome::Recorded(_) => panic!("replay recorded"),
    }
}

async fn outbox_replies_enqueue_a_send_job(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = recorded(s, t, sms(1, "SM1", b"hi")).await;
    let claimed = s
        .queue
        .claim("w1", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].kind, JobKind::Turn.as_str());
    assert_eq!(
        claimed[0].payload["message_id"],
        serde_json::json!(r.message_id)
    );
    let reply_id = s
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: r.conversation_id,
                in_reply_to: r.message_id,
                channel: Channel::Sms,
                body: b"later".to_vec(),
                delivery: Delivery::Outbox { max_attempts: 4 },
                turn_job: Some((claimed[0].id, claimed[0].lease.clone())),
            },
        )
        .await
        .unwrap();
    let sends = s
        .queue
        .claim("w1", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(sends.len(), 1);
    assert_eq!(sends[0].kind, JobKind::SendSms.as_str());
    assert_eq!(sends[0].max_attempts, 4);
    assert_eq!(sends[0].payload["message_id"], serde_json::json!(reply_id));
    let out = s.data.outbound_sms(t, reply_id).await.unwrap().unwrap();
    assert_eq!(out.message.status, MessageStatus::Queued);
    assert_eq!(out.to_ciphertext, Some(vec![1, 1, 2]));
    assert_eq!(out.from, Some(crate::phone("+15550000001")));
    assert!(!out.opted_out);
    assert!(
        s.data
            .outbound_sms(t, r.message_id)
            .await
            .unwrap()
            .is_none(),
        "inbound is not sendable"
    );
}

async fn statuses_only_move_forward(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = recorded(s, t, sms(1, "SM1", b"hi")).await;
    let id = s
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: r.conversation_id,
                in_reply_to: r.message_id,
                channel: Channel::Sms,
                body: b"x".to_vec(),
                delivery: Delivery::Outbox { max_attempts: 3 },
                turn_job: None,
            },
        )
        .await
        .unwrap();
    let up = |status, sid: Option<&str>| StatusUpdate {
        status,
        provider_sid: sid.map(str::to_owned),
        error_code: None,
    };
    assert!(
        s.data
            .set_message_status(t, id, up(MessageStatus::Sent, Some("SMout")))
            .await
            .unwrap()
    );
    assert!(
        s.data
            .set_status_by_provider_sid(t, "SMout", up(MessageStatus::Delivered, None))
            .await
            .unwrap()
    );
    assert!(
        !s.data
            .set_status_by_provider_sid(t, "SMout", up(MessageStatus::Sent, None))
            .await
            .unwrap()
    );
    assert!(
        !s.data
            .set_status_by_provider_sid(t, "SMnope", up(MessageStatus::Sent, None))
            .await
            .unwrap()
    );
    let other = tenant(s, "Other", "+15550000002").await;
    assert!(
        !s.data
            .set_status_by_provider_sid(other, "SMout", up(MessageStatus::Read, None))
            .await
            .unwrap()
    );
    let m = s.data.get_message(t, id).await.unwrap().unwrap();
    assert_eq!(m.status, MessageStatus::Delivered);
    assert_eq!(m.provider_sid.as_deref(), Some("SMout"));
}

async fn web_chat_threads_continue_and_unknown_threads_are_not_found(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let mut first = sms(0, "", b"hello");
    first.channel = Channel::WebChat;
    first.provider_sid = None;
    first.contact = Contact::Anonymous;
    let a = recorded(s, t, first.clone()).await;
    assert!(a.new_end_user);
    let mut next = first.clone();
    next.contact = Contact::Conversation(a.conversation_id);
    let b = recorded(s, t, next.clone()).await;
    assert_eq!(a.conversation_id, b.conversation_id);
    next.contact = Contact::Conversation(domain::ConversationId::new());
    assert!(matches!(
        s.data.record_inbound(t, next.clone()).await.unwrap_err(),
        StoreError::NotFound
    ));
    // Another tenant's conversation is not found either.
    let other = tenant(s, "Other", "+15550000002").await;
    next.contact = Contact::Conversation(a.conversation_id);
    assert!(matches!(
        s.data.record_inbound(other, next).await.unwrap_err(),
        StoreError::NotFound
    ));
}

async fn knowledge_base_is_searchable_and_tenant_scoped(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let entry = |title: &str, body: &str| KbEntryInput {
        title: title.into(),
        body: body.into(),
    };
    let hours = s
        .data
        .add_kb_entry(
            t,
            entry("Opening hours", "We are open Monday to Friday, 9am to 5pm."),
        )
        .await
        .unwrap();
    s.data
        .add_kb_entry(t, entry("Parking", "Free parking behind the building."))
        .await
        .unwrap();
    s.data
        .add_kb_entry(t, entry("Tarifs", "Le détartrage coûte 80 euros."))
        .await
        .unwrap();
    s.data
        .add_kb_entry(other, entry("Opening hours", "Never open."))
        .await
        .unwrap();

    let hits = s.data.search_kb(t, "When are you open?", 3).await.unwrap();
    assert_eq!(hits[0].entry.id, hours.id);
    assert!(hits.iter().all(|h| h.entry.tenant_id == t));
    assert_eq!(
        s.data.search_kb(t, "parking", 3).await.unwrap()[0]
            .entry
            .title,
        "Parking"
    );
    assert_eq!(
        s.data.search_kb(t, "détartrage", 3).await.unwrap()[0]
            .entry
            .title,
        "Tarifs"
    );
    assert!(s.data.search_kb(t, "zebra", 3).await.unwrap().is_empty());
    assert!(
        s.data
            .search_kb(t, "\" OR 1=1 -- NEAR(", 3)
            .await
            .unwrap()
            .is_empty()
    );

    let updated = s
        .data
        .update_kb_entry(
            t,
            hours.id,
            entry("Opening hours", "Open on Saturdays too."),
        )
        .await
        .unwrap();
    assert_eq!(updated.body, "Open on Saturdays too.");
    assert_eq!(
        s.data.search_kb(t, "saturdays", 3).await.unwrap()[0]
            .entry
            .id,
        hours.id
    );
    assert!(matches!(
        s.data
            .update_kb_entry(other, hours.id, entry("x", "y"))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
    assert!(matches!(
        s.data.delete_kb_entry(other, hours.id).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(
        s.data
            .get_kb_entry(other, hours.id)
            .await
            .unwrap()
            .is_none()
    );
    s.data.delete_kb_entry(t, hours.id).await.unwrap();
    assert!(
        s.data
            .search_kb(t, "saturdays", 3)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.data
            .list_kb_entries(t, Page::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert!(matches!(
        s.data
            .add_kb_entry(domain::TenantId::new(), entry("a", "b"))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
}

async fn conversations_are_listed_per_tenant_with_pagination(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    for i in 0..5u8 {
        recorded(s, t, sms(i + 1, &format!("SM{i}"), b"hi")).await;
    }
    recorded(s, other, sms(1, "SMx", b"hi")).await;
    let first = s
        .data
        .list_conversations(t, Page::new(3, None))
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let rest = s
        .data
        .list_conversations(t, Page::new(3, Some(*first[2].id.as_uuid())))
        .await
        .unwrap();
    assert_eq!(rest.len(), 2);
    assert!(rest.iter().all(|c| c.tenant_id == t));
    assert_eq!(
        s.data
            .list_conversations(other, Page::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        s.data
            .get_conversation(other, first[0].id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.data
            .list_messages(other, first[0].id, Page::default())
            .await
            .unwrap()
            .is_empty()
    );
}
