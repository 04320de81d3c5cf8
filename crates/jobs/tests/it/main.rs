//! The worker path end to end: a turn that misses the inline budget is answered by the
//! worker through the outbox and the (fake) Twilio Messages API, on both backends.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::{TurnEngine, TurnError, TurnInput, TurnOutput};
use async_trait::async_trait;
use crypto::MasterKey;
use domain::{MessageStatus, PhoneNumber, TenantName};
use integrations::pacing::LocalPacer;
use integrations::twilio::{TwilioClient, TwilioConfig};
use messaging::{InboundKind, Messaging, MessagingConfig, Outbox, OutboxConfig, Vault};
use store::{NewTenant, Page};
use testkit::fake_twilio::FakeTwilio;
use tokio::sync::watch;

/// An engine slower than the inline budget.
struct Slow;

#[async_trait]
impl TurnEngine for Slow {
    async fn run(&self, input: TurnInput) -> Result<TurnOutput, TurnError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(TurnOutput {
            reply: Some(format!("you said: {}", input.text)),
            answered_by: "slow",
            tools: Vec::new(),
            agents: Vec::new(),
        })
    }
}

/// A deferred SMS turn and a running worker whose fake Twilio fails the first `failures`
/// sends with a 500.
struct Harness {
    stores: store::Stores,
    tenant: store::Tenant,
    vault: Arc<Vault>,
    twilio: FakeTwilio,
    stop: watch::Sender<bool>,
    worker: tokio::task::JoinHandle<()>,
}

async fn harness(db: &testkit::TestDb, failures: usize, send_max_attempts: u32) -> Harness {
    harness_with(db, failures, send_max_attempts, &[]).await
}

/// As [`harness`], with more messages from the same sender before the worker starts.
async fn harness_with(
    db: &testkit::TestDb,
    failures: usize,
    send_max_attempts: u32,
    more: &[&str],
) -> Harness {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stores = db.stores();
    let tenant = stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse("Acme").unwrap(),
            phone_numbers: vec![PhoneNumber::parse("+15550000001").unwrap()],
        })
        .await
        .unwrap();
    let vault = Arc::new(Vault::new(MasterKey::generate(), stores.data.clone()));
    let engine: Arc<dyn TurnEngine> = Arc::new(Slow);
    let messaging = Messaging::new(
        stores.clone(),
        vault.clone(),
        engine.clone(),
        MessagingConfig {
            inline_budget: Duration::from_millis(50),
            max_attempts: 5,
            node_id: "api".into(),
        },
    );
    let from = PhoneNumber::parse("+15557654321").unwrap();
    let to = PhoneNumber::parse("+15550000001").unwrap();
    let reply = messaging
        .receive_sms(&tenant, &from, &to, "SMslow1", "hello")
        .await
        .unwrap();
    assert_eq!(reply.outcome, InboundKind::Deferred);
    assert_eq!(reply.text, None);
    for (i, body) in more.iter().enumerate() {
        let reply = messaging
            .receive_sms(&tenant, &from, &to, &format!("SMmore{i}"), body)
            .await
            .unwrap();
        assert_eq!(reply.outcome, InboundKind::Deferred);
    }

    let twilio = FakeTwilio::start("ACtest", "secret").await;
    twilio.fail_next(failures, 500, None);
    let sender = Arc::new(
        TwilioClient::new(TwilioConfig {
            api_base: twilio.base_url(),
            ..TwilioConfig::new("ACtest", secrecy::SecretString::from("secret"))
        })
        .unwrap(),
    );
    let profiles = Arc::new(agent::Profiles::new(
        stores.data.clone(),
        "receptionist".into(),
        None,
    ));
    let outbox = Arc::new(
        Outbox::new(
            stores.clone(),
            vault.clone(),
            engine,
            sender,
            Arc::new(LocalPacer::new()),
            OutboxConfig {
                public_url: Some("https://concierge.example.com".into()),
                send_interval: Duration::from_millis(10),
                turn_timeout: Duration::from_secs(5),
                send_max_attempts,
            },
        )
        .with_profiles(profiles),
    );
    let runner = jobs::Runner::new(
        stores.queue.clone(),
        outbox,
        jobs::RunnerConfig {
            concurrency: 4,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(100),
            retry: domain::jobs::RetryPolicy {
                max_attempts: 5,
                base: Duration::from_millis(10),
                cap: Duration::from_millis(50),
            },
            node_id: "w1".into(),
            shutdown_grace: Duration::from_secs(5),
        },
    );
    let (stop, stopped) = watch::channel(false);
    let worker = tokio::spawn(runner.run(stopped));
    Harness {
        stores,
        tenant,
        vault,
        twilio,
        stop,
        worker,
    }
}

async fn deferred_turns_are_sent_by_the_worker(db: &testkit::TestDb, fail_first: bool) {
    let Harness {
        stores,
        tenant,
        twilio,
        stop,
        worker,
        ..
    } = harness(db, usize::from(fail_first), 5).await;

    let sent = twilio.wait_for_sent(1, Duration::from_secs(10)).await;
    assert_eq!(
        sent.len(),
        1,
        "the worker sends the reply through the Messages API"
    );
    assert_eq!(sent[0].to, "+15557654321");
    assert_eq!(sent[0].from, "+15550000001");
    assert_eq!(sent[0].body, "you said: hello");
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some("https://concierge.example.com/webhooks/twilio/status")
    );

    // The reply is recorded with the provider's id; the queue drains.
    let conversations = stores
        .data
        .list_conversations(tenant.id, Page::default())
        .await
        .unwrap();
    let mut reply_row = None;
    for _ in 0..50 {
        let msgs = stores
            .data
            .list_messages(tenant.id, conversations[0].id, Page::default())
            .await
            .unwrap();
        if let Some(m) = msgs
            .into_iter()
            .find(|m| m.provider_sid.as_deref() == Some(sent[0].sid.as_str()))
        {
            reply_row = Some(m);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply_row = reply_row.expect("reply stored with the provider sid");
    assert_eq!(reply_row.status, MessageStatus::Sent);
    // A status callback moves it forward.
    assert!(
        messaging::apply_status(&stores, tenant.id, &sent[0].sid, "delivered", None)
            .await
            .unwrap()
    );
    // The runner records completion after the provider answered, so the
    // queue drains a moment after the reply row appears: poll, don't race.
    let mut stats = stores.queue.stats().await.unwrap();
    for _ in 0..100 {
        if (stats.queued, stats.running, stats.dead) == (0, 0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = stores.queue.stats().await.unwrap();
    }
    assert_eq!((stats.queued, stats.running, stats.dead), (0, 0, 0));
    stop.send(true).unwrap();
    worker.await.unwrap();
    // Exactly one message went out, even with a retried provider failure.
    assert_eq!(twilio.sent().len(), 1);
}

/// Every send fails: once its attempts are spent the job is dead-lettered and the message
/// is marked failed, never left `queued`.
async fn exhausted_sends_mark_the_message_failed(db: &testkit::TestDb) {
    let h = harness(db, 100, 2).await;
    let conversations = h
        .stores
        .data
        .list_conversations(h.tenant.id, Page::default())
        .await
        .unwrap();
    let mut reply = None;
    for _ in 0..200 {
        let msgs = h
            .stores
            .data
            .list_messages(h.tenant.id, conversations[0].id, Page::default())
            .await
            .unwrap();
        reply = msgs.into_iter().find(|m| m.status == MessageStatus::Failed);
        if reply.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = reply.expect("the reply is marked failed");
    assert_eq!(reply.error_code.as_deref(), Some("retries_exhausted"));
    let mut stats = h.stores.queue.stats().await.unwrap();
    for _ in 0..100 {
        if stats.dead == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = h.stores.queue.stats().await.unwrap();
    }
    assert_eq!((stats.queued, stats.dead), (0, 1), "{stats:?}");
    assert!(h.twilio.sent().is_empty());
    h.stop.send(true).unwrap();
    h.worker.await.unwrap();
}

#[tokio::test]
async fn sqlite_exhausted_sends_mark_the_message_failed() {
    let db = testkit::TestDb::sqlite().await;
    exhausted_sends_mark_the_message_failed(&db).await;
}

#[tokio::test]
async fn postgres_exhausted_sends_mark_the_message_failed() {
    let db = testkit::TestDb::postgres().await;
    exhausted_sends_mark_the_message_failed(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_deferred_turns_are_sent_by_the_worker() {
    let db = testkit::TestDb::sqlite().await;
    deferred_turns_are_sent_by_the_worker(&db, false).await;
}

#[tokio::test]
async fn postgres_deferred_turns_are_sent_by_the_worker_after_a_provider_error() {
    let db = testkit::TestDb::postgres().await;
    deferred_turns_are_sent_by_the_worker(&db, true).await;
    db.cleanup().await;
}

/// Counts backups; each takes a little while, so two workers would overlap if both ran one.
#[derive(Default)]
struct CountingBackup(std::sync::atomic::AtomicUsize);

#[async_trait]
impl jobs::Maintenance for CountingBackup {
    async fn backup(&self) -> Result<(), String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(())
    }
}

/// Two worker processes, each scheduling the daily backup and able to run it: the day's job
/// is enqueued once and run once, and the next day's is waiting afterwards.
async fn the_daily_backup_runs_once_across_workers(db: &testkit::TestDb) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let stores = db.stores();
    let backups = Arc::new(CountingBackup::default());
    let (stop, stopped) = watch::channel(false);
    let at = (jiff::Timestamp::now() + jiff::SignedDuration::from_secs(2))
        .to_zoned(jiff::tz::TimeZone::UTC)
        .time();
    let mut tasks = Vec::new();
    for node in ["w1", "w2"] {
        let vault = Arc::new(Vault::new(MasterKey::generate(), stores.data.clone()));
        let sender = Arc::new(
            TwilioClient::new(TwilioConfig {
                api_base: "http://127.0.0.1:9".into(),
                ..TwilioConfig::new("ACtest", secrecy::SecretString::from("secret"))
            })
            .unwrap(),
        );
        let outbox = Arc::new(Outbox::new(
            stores.clone(),
            vault,
            Arc::new(Slow),
            sender,
            Arc::new(LocalPacer::new()),
            OutboxConfig {
                public_url: None,
                send_interval: Duration::from_millis(10),
                turn_timeout: Duration::from_secs(5),
                send_max_attempts: 3,
            },
        ));
        let runner = jobs::Runner::new(
            stores.queue.clone(),
            outbox,
            jobs::RunnerConfig {
                concurrency: 2,
                lease: Duration::from_secs(30),
                poll_interval: Duration::from_millis(100),
                retry: domain::jobs::RetryPolicy::default(),
                node_id: node.into(),
                shutdown_grace: Duration::from_secs(5),
            },
        )
        .with_maintenance(backups.clone());
        tasks.push(tokio::spawn(runner.run(stopped.clone())));
        tasks.push(tokio::spawn(jobs::schedule_daily(
            stores.queue.clone(),
            domain::jobs::JobKind::Backup,
            at,
            3,
            stopped.clone(),
        )));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let stats = stores.queue.stats().await.unwrap();
        let ran = backups.0.load(std::sync::atomic::Ordering::SeqCst);
        // Done: the day's job ran and the next day's is queued.
        if ran >= 1 && stats.running == 0 && stats.queued == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ran {ran}, stats {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a second run every chance to happen.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(backups.0.load(std::sync::atomic::Ordering::SeqCst), 1);
    let stats = stores.queue.stats().await.unwrap();
    assert_eq!(
        (stats.queued, stats.dead),
        (1, 0),
        "tomorrow's backup waits"
    );
    stop.send(true).unwrap();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test]
async fn sqlite_the_daily_backup_runs_once_across_workers() {
    let db = testkit::TestDb::sqlite().await;
    the_daily_backup_runs_once_across_workers(&db).await;
}

#[tokio::test]
async fn postgres_the_daily_backup_runs_once_across_workers() {
    let db = testkit::TestDb::postgres().await;
    the_daily_backup_runs_once_across_workers(&db).await;
    db.cleanup().await;
}

/// A reminder is texted when it is due, from the tenant's number, and recorded in the
/// conversation; a cancelled one is not sent.
async fn reminders_are_texted_when_due(db: &testkit::TestDb) {
    let h = harness(db, 0, 5).await;
    h.twilio.wait_for_sent(1, Duration::from_secs(10)).await;
    let conversation = h
        .stores
        .data
        .list_conversations(h.tenant.id, Page::default())
        .await
        .unwrap()[0]
        .clone();
    let key = h.vault.data_key(h.tenant.id).await.unwrap();
    let due = jiff::Timestamp::now() + jiff::SignedDuration::from_millis(700);
    let new = |text: &str| store::NewReminder {
        id: domain::ReminderId::new(),
        end_user_id: conversation.end_user_id,
        conversation_id: conversation.id,
        channel: domain::Channel::Sms,
        text: key.encrypt_str(h.tenant.id, agent::tools::columns::REMINDER, text),
        due_at: due,
        max_attempts: 3,
    };
    let kept = h
        .stores
        .data
        .create_reminder(h.tenant.id, new("Rappel : appeler Marc"))
        .await
        .unwrap();
    let cancelled = h
        .stores
        .data
        .create_reminder(h.tenant.id, new("never sent"))
        .await
        .unwrap();
    assert!(
        h.stores
            .data
            .cancel_reminder(h.tenant.id, conversation.end_user_id, cancelled.id)
            .await
            .unwrap()
    );
    let sent = h.twilio.wait_for_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].body, "Rappel : appeler Marc");
    assert_eq!(sent[1].to, "+15557654321");
    assert_eq!(sent[1].from, "+15550000001");
    let mut status = None;
    for _ in 0..100 {
        let r = h
            .stores
            .data
            .get_reminder(h.tenant.id, kept.id)
            .await
            .unwrap()
            .unwrap();
        if r.status == store::ReminderStatus::Sent {
            status = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let delivered = status.expect("reminder marked sent");
    let message = h
        .stores
        .data
        .get_message(h.tenant.id, delivered.message_id.unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.conversation_id, conversation.id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        h.twilio.sent().len(),
        2,
        "the cancelled reminder is not sent"
    );
    h.stop.send(true).unwrap();
    h.worker.await.unwrap();
}

/// A hand-off texts the staff numbers of the conversation's profile; without numbers it
/// completes quietly.
async fn staff_are_texted_on_hand_off(db: &testkit::TestDb) {
    let h = harness(db, 0, 5).await;
    h.twilio.wait_for_sent(1, Duration::from_secs(10)).await;
    let conversation = h
        .stores
        .data
        .list_conversations(h.tenant.id, Page::default())
        .await
        .unwrap()[0]
        .clone();
    let profile = r#"
name = "desk"
entry = "a"
[staff]
notify_sms = ["+15559990000"]
[agents.a]
instructions = "Help."
tools = ["hand_off_to_human"]
"#;
    h.stores
        .data
        .put_profile(h.tenant.id, "desk", profile)
        .await
        .unwrap();
    h.stores
        .data
        .set_default_profile(h.tenant.id, Some("desk"))
        .await
        .unwrap();
    h.stores
        .data
        .update_handoff(
            h.tenant.id,
            conversation.id,
            domain::HandoffEvent::Request,
            None,
        )
        .await
        .unwrap();
    h.stores
        .queue
        .enqueue(store::NewJob {
            kind: domain::jobs::JobKind::NotifyStaff,
            tenant_id: Some(h.tenant.id),
            payload: serde_json::json!({"conversation_id": conversation.id}),
            idempotency_key: None,
            run_at: None,
            max_attempts: 3,
        })
        .await
        .unwrap();
    let sent = h.twilio.wait_for_sent(2, Duration::from_secs(10)).await;
    assert_eq!(sent[1].to, "+15559990000");
    assert_eq!(sent[1].from, "+15550000001");
    assert!(
        sent[1].body.contains(&conversation.id.to_string()),
        "{}",
        sent[1].body
    );
    h.stop.send(true).unwrap();
    h.worker.await.unwrap();
}

#[tokio::test]
async fn sqlite_reminders_are_texted_when_due() {
    reminders_are_texted_when_due(&testkit::TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_reminders_are_texted_when_due() {
    let db = testkit::TestDb::postgres().await;
    reminders_are_texted_when_due(&db).await;
    db.cleanup().await;
}

#[tokio::test]
async fn sqlite_staff_are_texted_on_hand_off() {
    staff_are_texted_on_hand_off(&testkit::TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_staff_are_texted_on_hand_off() {
    let db = testkit::TestDb::postgres().await;
    staff_are_texted_on_hand_off(&db).await;
    db.cleanup().await;
}

/// Messages that arrive before the worker answers are coalesced: one turn answers the
/// newest with the others in its history, and one SMS goes out.
async fn queued_messages_are_coalesced_into_one_turn(db: &testkit::TestDb) {
    let h = harness_with(db, 0, 5, &["second", "third"]).await;
    let sent = h.twilio.wait_for_sent(1, Duration::from_secs(15)).await;
    assert_eq!(sent[0].body, "you said: third");
    // The two older turns were skipped, not answered late.
    let mut stats = h.stores.queue.stats().await.unwrap();
    for _ in 0..100 {
        if (stats.queued, stats.running) == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = h.stores.queue.stats().await.unwrap();
    }
    assert_eq!((stats.queued, stats.running, stats.dead), (0, 0, 0));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.twilio.sent().len(), 1, "one answer for three messages");
    h.stop.send(true).unwrap();
    h.worker.await.unwrap();
}

#[tokio::test]
async fn sqlite_queued_messages_are_coalesced_into_one_turn() {
    queued_messages_are_coalesced_into_one_turn(&testkit::TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_queued_messages_are_coalesced_into_one_turn() {
    let db = testkit::TestDb::postgres().await;
    queued_messages_are_coalesced_into_one_turn(&db).await;
    db.cleanup().await;
}
