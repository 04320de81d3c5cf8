//! One turn per conversation: the inline turn takes the conversation's turn when its
//! message is recorded (if free), a reply gives it back, a worker takes it explicitly, and
//! an expired hold can be taken over.

use std::time::Duration;

use domain::Channel;
use store::{Delivery, Lease, ReplyMessage, Stores};

use crate::{conformance, recorded, sms, tenant};

fn inline(mut m: store::InboundMessage, holder: &str, lease: Duration) -> store::InboundMessage {
    m.turn.inline_holder = Some(holder.to_owned());
    m.turn.lease = lease;
    m
}

async fn one_inline_turn_per_conversation(stores: &Stores) {
    let t = tenant(stores, "Acme", "+15550000001").await;
    let first = recorded(
        stores,
        t,
        inline(sms(7, "SMt1", b"one"), "inline:a", Duration::from_secs(30)),
    )
    .await;
    assert!(first.inline, "a free conversation's turn is taken inline");
    // A second message while the first turn runs: recorded, its turn queued for the worker.
    let second = recorded(
        stores,
        t,
        inline(sms(7, "SMt2", b"two"), "inline:b", Duration::from_secs(30)),
    )
    .await;
    assert_eq!(second.conversation_id, first.conversation_id);
    assert!(!second.inline);
    let job = second.turn_job.expect("a turn job for the worker");
    let claimed = stores
        .queue
        .claim("worker:w", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        claimed.iter().any(|j| j.id == job),
        "queued, not leased inline"
    );
    // The worker cannot take the conversation's turn while the inline turn holds it.
    let conv = first.conversation_id;
    assert!(
        !stores
            .data
            .acquire_turn(t, conv, "worker:w:1", Duration::from_secs(30))
            .await
            .unwrap()
    );
    // The inline turn's reply gives it back.
    stores
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: conv,
                in_reply_to: first.message_id,
                channel: Channel::Sms,
                body: b"answer".to_vec(),
                delivery: Delivery::Inline,
                turn_job: Some((
                    first.turn_job.unwrap(),
                    Lease {
                        holder: "inline:a".into(),
                        attempt: 0,
                    },
                )),
            },
        )
        .await
        .unwrap();
    assert!(
        stores
            .data
            .acquire_turn(t, conv, "worker:w:1", Duration::from_secs(30))
            .await
            .unwrap()
    );
    // Held by the worker: the same name again does not take it twice, another neither;
    // releasing under another name changes nothing; the holder's release frees it.
    for name in ["worker:w:1", "worker:w:2"] {
        assert!(
            !stores
                .data
                .acquire_turn(t, conv, name, Duration::from_secs(30))
                .await
                .unwrap()
        );
    }
    stores
        .data
        .release_turn(t, conv, "worker:w:2")
        .await
        .unwrap();
    assert!(
        !stores
            .data
            .acquire_turn(t, conv, "worker:w:3", Duration::from_secs(30))
            .await
            .unwrap()
    );
    stores
        .data
        .release_turn(t, conv, "worker:w:1")
        .await
        .unwrap();
    let third = recorded(
        stores,
        t,
        inline(
            sms(7, "SMt3", b"three"),
            "inline:c",
            Duration::from_secs(30),
        ),
    )
    .await;
    assert!(third.inline, "free again");
}

async fn a_worker_reply_gives_the_turn_back(stores: &Stores) {
    let t = tenant(stores, "Acme", "+15550000001").await;
    let r = recorded(stores, t, sms(8, "SMw1", b"hello")).await;
    assert!(!r.inline, "no inline holder: the worker's turn");
    let job = r.turn_job.unwrap();
    let claimed = stores
        .queue
        .claim("worker:w", 10, Duration::from_secs(30))
        .await
        .unwrap();
    let lease = claimed.into_iter().find(|j| j.id == job).unwrap().lease;
    let holder = format!("{}:{job}", lease.holder);
    assert!(
        stores
            .data
            .acquire_turn(t, r.conversation_id, &holder, Duration::from_secs(30))
            .await
            .unwrap()
    );
    stores
        .data
        .record_reply(
            t,
            ReplyMessage {
                conversation_id: r.conversation_id,
                in_reply_to: r.message_id,
                channel: Channel::Sms,
                body: b"hi".to_vec(),
                delivery: Delivery::Outbox { max_attempts: 3 },
                turn_job: Some((job, lease)),
            },
        )
        .await
        .unwrap();
    assert!(
        stores
            .data
            .acquire_turn(t, r.conversation_id, "other", Duration::from_secs(30))
            .await
            .unwrap(),
        "the reply gave the turn back"
    );
}

async fn an_expired_hold_is_taken_over(stores: &Stores) {
    let t = tenant(stores, "Acme", "+15550000001").await;
    let first = recorded(
        stores,
        t,
        inline(
            sms(9, "SMe1", b"one"),
            "inline:dead",
            Duration::from_millis(1),
        ),
    )
    .await;
    assert!(first.inline);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let second = recorded(
        stores,
        t,
        inline(
            sms(9, "SMe2", b"two"),
            "inline:alive",
            Duration::from_secs(30),
        ),
    )
    .await;
    assert!(second.inline, "a crashed holder's turn expires");
    // Another tenant cannot touch this conversation's turn.
    let other = tenant(stores, "Other", "+15550000002").await;
    assert!(
        !stores
            .data
            .acquire_turn(other, second.conversation_id, "x", Duration::from_secs(30))
            .await
            .unwrap()
    );
    stores
        .data
        .release_turn(other, second.conversation_id, "inline:alive")
        .await
        .unwrap();
    assert!(
        !stores
            .data
            .acquire_turn(t, second.conversation_id, "y", Duration::from_secs(30))
            .await
            .unwrap(),
        "still held"
    );
}

/// An inline turn's message comes back with the conversation's agent state, read with it,
/// for the turn that follows.
async fn the_state_comes_with_the_message(stores: &Stores) {
    let t = tenant(stores, "Acme", "+15550000001").await;
    let first = recorded(stores, t, sms(5, "SMs1", b"one")).await;
    assert_eq!(first.state, store::ConversationState::default());
    let saved = store::ConversationState {
        profile: Some("assistant".into()),
        agent: Some("assistant".into()),
        data: Some(b"sealed".to_vec()),
        revision: 0,
    };
    let revision = stores
        .data
        .save_conversation_state(t, first.conversation_id, &saved)
        .await
        .unwrap();
    let second = recorded(
        stores,
        t,
        inline(sms(5, "SMs2", b"two"), "inline:s", Duration::from_secs(30)),
    )
    .await;
    assert!(second.inline);
    assert_eq!(second.state, store::ConversationState { revision, ..saved });
}

conformance!(
    the_state_comes_with_the_message,
    one_inline_turn_per_conversation,
    a_worker_reply_gives_the_turn_back,
    an_expired_hold_is_taken_over,
);
