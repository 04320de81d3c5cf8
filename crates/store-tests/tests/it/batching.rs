//! Many requests writing at once. PostgreSQL gathers concurrent message-path writes into
//! shared transactions (store-postgres's hot_batch.rs); every caller must still get exactly
//! the answer it would have had alone, whatever else was in its batch.

use std::collections::HashMap;
use std::time::Duration;

use domain::{Channel, MessageStatus};
use store::{
    Delivery, InboundMessage, InboundOutcome, Page, RecordedInbound, ReplyMessage, StoreError,
    StoreResult, Stores, TurnPlan,
};

use crate::{conformance, recorded, sms, tenant};

conformance!(concurrent_messages_and_replies_each_get_their_own_answer);

fn inline(mut m: InboundMessage, holder: &str) -> InboundMessage {
    m.turn = TurnPlan {
        inline_holder: Some(holder.to_owned()),
        lease: Duration::from_secs(30),
        max_attempts: 5,
    };
    m
}

async fn all<T: Send + 'static>(
    tasks: Vec<tokio::task::JoinHandle<StoreResult<T>>>,
) -> Vec<StoreResult<T>> {
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

async fn concurrent_messages_and_replies_each_get_their_own_answer(s: &Stores) {
    let a = tenant(s, "Acme", "+15550000001").await;
    let b = tenant(s, "Beta", "+15550000002").await;
    let old = recorded(s, a, sms(200, "SMold", b"earlier")).await;

    // Two messages from each of 20 Acme customers, one from each of 10 Beta customers, and
    // three replays of a message recorded before, all at once.
    let mut tasks = Vec::new();
    let mut keys = Vec::new();
    for user in 1..=20u8 {
        for n in 0..2 {
            let data = s.data.clone();
            let m = inline(
                sms(user, &format!("SMa{user}x{n}"), b"hi"),
                &format!("a{user}:{n}"),
            );
            keys.push((a, user, format!("a{user}:{n}")));
            tasks.push(tokio::spawn(async move { data.record_inbound(a, m).await }));
        }
    }
    for user in 1..=10u8 {
        let data = s.data.clone();
        let m = inline(sms(user, &format!("SMb{user}"), b"hi"), &format!("b{user}"));
        keys.push((b, user, format!("b{user}")));
        tasks.push(tokio::spawn(async move { data.record_inbound(b, m).await }));
    }
    for _ in 0..3 {
        let data = s.data.clone();
        tasks.push(tokio::spawn(async move {
            data.record_inbound(a, sms(200, "SMold", b"earlier")).await
        }));
    }
    let results = all(tasks).await;

    let (fresh, replays) = results.split_at(keys.len());
    for r in replays {
        match r.as_ref().unwrap() {
            InboundOutcome::Duplicate(d) => assert_eq!(d.message_id, old.message_id),
            InboundOutcome::Recorded(_) => panic!("a replay was recorded again"),
        }
    }
    let mut by_conversation: HashMap<_, Vec<(&(_, u8, String), RecordedInbound)>> = HashMap::new();
    for (key, r) in keys.iter().zip(fresh) {
        let InboundOutcome::Recorded(r) = r.as_ref().unwrap() else {
            panic!("a new message was taken for a replay");
        };
        assert!(r.turn_job.is_some());
        by_conversation
            .entry(r.conversation_id)
            .or_default()
            .push((key, r.clone()));
    }
    // One conversation per customer; of two messages at once, exactly one takes the turn.
    assert_eq!(by_conversation.len(), 30);
    for (conversation, msgs) in &by_conversation {
        let tenant = msgs[0].0.0;
        assert!(
            msgs.iter()
                .all(|(k, _)| k.0 == tenant && k.1 == msgs[0].0.1)
        );
        let expected = if tenant == a { 2 } else { 1 };
        assert_eq!(msgs.len(), expected);
        assert_eq!(msgs.iter().filter(|(_, r)| r.inline).count(), 1);
        let stored = s
            .data
            .list_messages(tenant, *conversation, Page::default())
            .await
            .unwrap();
        assert_eq!(stored.len(), expected);
    }

    // Now every inline turn answers at once, beside: a reply under a lease that is not the
    // job's, a reply to another tenant's conversation, and new messages.
    let mut tasks = Vec::new();
    let mut expect = Vec::new();
    for msgs in by_conversation.values() {
        let (key, r) = msgs.iter().find(|(_, r)| r.inline).unwrap();
        let (tenant, holder) = (key.0, key.2.clone());
        let data = s.data.clone();
        let reply = ReplyMessage {
            conversation_id: r.conversation_id,
            in_reply_to: r.message_id,
            channel: Channel::Sms,
            body: holder.as_bytes().to_vec(),
            delivery: Delivery::Inline,
            turn_job: Some((
                r.turn_job.unwrap(),
                store::Lease {
                    holder: holder.clone(),
                    attempt: 0,
                },
            )),
        };
        expect.push(Some((tenant, r.message_id, holder)));
        tasks.push(tokio::spawn(async move {
            data.record_reply(tenant, reply).await.map(Some)
        }));
    }
    let (_, r_b) = by_conversation
        .values()
        .flatten()
        .find(|(k, _)| k.0 == b)
        .unwrap();
    let foreign = ReplyMessage {
        conversation_id: r_b.conversation_id,
        in_reply_to: r_b.message_id,
        channel: Channel::Sms,
        body: b"not yours".to_vec(),
        delivery: Delivery::Outbox { max_attempts: 3 },
        turn_job: None,
    };
    let data = s.data.clone();
    expect.push(None);
    tasks.push(tokio::spawn(async move {
        data.record_reply(a, foreign).await.map(Some)
    }));
    let (_, r_a) = by_conversation
        .values()
        .flatten()
        .find(|(k, r)| k.0 == a && r.inline)
        .unwrap();
    let stolen = ReplyMessage {
        conversation_id: r_a.conversation_id,
        in_reply_to: r_a.message_id,
        channel: Channel::Sms,
        body: b"wrong lease".to_vec(),
        delivery: Delivery::Inline,
        turn_job: Some((
            r_a.turn_job.unwrap(),
            store::Lease {
                holder: "someone else".into(),
                attempt: 0,
            },
        )),
    };
    let data = s.data.clone();
    expect.push(None);
    tasks.push(tokio::spawn(async move {
        data.record_reply(a, stolen).await.map(Some)
    }));
    let mut late = Vec::new();
    for user in 21..=30u8 {
        let data = s.data.clone();
        late.push(tokio::spawn(async move {
            data.record_inbound(a, sms(user, &format!("SMlate{user}"), b"later"))
                .await
        }));
    }
    let replies = all(tasks).await;
    let n = replies.len();
    for (i, (result, expected)) in replies.into_iter().zip(&expect).enumerate() {
        match expected {
            Some((tenant, message, holder)) => {
                let id = result.unwrap().unwrap();
                let stored = s.data.reply_to(*tenant, *message).await.unwrap().unwrap();
                assert_eq!(stored.id, id);
                assert_eq!(stored.body, holder.as_bytes());
                assert_eq!(stored.status, MessageStatus::RepliedInline);
            }
            None if i == n - 2 => {
                assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
            }
            None => assert!(matches!(result, Err(StoreError::Conflict(_))), "{result:?}"),
        }
    }
    for r in all(late).await {
        assert!(matches!(r.unwrap(), InboundOutcome::Recorded(_)));
    }
    // Nothing of the refused replies was written: Beta's conversation holds its message and
    // its own reply, Acme's the message, the turn's reply and the second message.
    let stored = s
        .data
        .list_messages(b, r_b.conversation_id, Page::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2);
    assert!(stored.iter().all(|m| m.body != b"not yours"));
    let stored = s
        .data
        .list_messages(a, r_a.conversation_id, Page::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 3);
    assert!(stored.iter().all(|m| m.body != b"wrong lease"));
    // Left for the worker: Acme's 20 second messages (their turn was taken) and the 10 late
    // ones (no inline holder); every inline turn was completed by its reply.
    let stats = s.queue.stats().await.unwrap();
    assert_eq!(stats.queued, 30 + 1, "{stats:?}"); // + the earlier message's turn
    assert_eq!(stats.running, 0, "{stats:?}");
}

/// Records `count` messages with `body` from as many senders, all at once, on a fresh
/// PostgreSQL database; returns how many messages were stored and in how many transactions
/// (every row a transaction writes carries its `xmin`).
async fn record_at_once(count: u32, body: &[u8]) -> (i64, i64) {
    let db = testkit::TestDb::postgres().await;
    let s = db.stores();
    let t = tenant(&s, "Acme", "+15550000001").await;
    let tasks = (0..count)
        .map(|i| {
            let data = s.data.clone();
            let mut m = sms(1, &format!("SMbatch{i}"), body);
            let mut index = [0u8; 32];
            index[..4].copy_from_slice(&i.to_be_bytes());
            m.contact = store::Contact::Phone {
                index,
                ciphertext: vec![1],
            };
            tokio::spawn(async move { data.record_inbound(t, m).await })
        })
        .collect();
    for r in all(tasks).await {
        assert!(matches!(r.unwrap(), InboundOutcome::Recorded(_)));
    }
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(db.url())
        .await
        .unwrap();
    sqlx::query("SELECT set_config('app.tenant_id', $1, false)")
        .bind(t.to_string())
        .execute(&mut admin)
        .await
        .unwrap();
    let counts = sqlx::query_as("SELECT count(*), count(DISTINCT xmin::text) FROM messages")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    sqlx::Connection::close(admin).await.unwrap();
    db.cleanup().await;
    counts
}

/// On PostgreSQL the writes of concurrent requests share transactions: 200 messages at once
/// commit in far fewer transactions than 200.
#[tokio::test]
async fn postgres_commits_concurrent_messages_together() {
    let (messages, transactions) = record_at_once(200, b"hi").await;
    assert_eq!(messages, 200);
    assert!(
        transactions < 50,
        "200 concurrent messages took {transactions} transactions"
    );
}

/// A batch's message stays small (one TLS record): large messages travel in more, smaller
/// batches, and each is still recorded once.
#[tokio::test]
async fn postgres_batches_of_large_messages_are_split() {
    let (messages, transactions) = record_at_once(60, &[7u8; 4000]).await;
    assert_eq!(messages, 60);
    // 4 kB each: at most three share a 12 kB batch, so at least 20 transactions.
    assert!(
        (20..60).contains(&transactions),
        "60 large messages took {transactions} transactions"
    );
}
