//! The agent runtime's storage: profiles and the default profile, conversation state, facts,
//! reminders (with their jobs and delivery) and turn steps, each tenant's alone.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::JobKind;
use domain::{
    Channel, ConversationId, Direction, EndUserId, FactId, MessageStatus, ReminderId, TenantId,
};
use jiff::{SignedDuration, Timestamp};
use store::snapshot::{Cell, Row, TableSpec};
use store::{
    ClaimedJob, Contact, ConversationState, NewFact, NewReminder, NewTurnStep, RecordedInbound,
    Reminder, ReminderDelivery, ReminderStatus, SnapshotSink, StoreError, Stores,
};

use crate::{conformance, recorded, sms, tenant};

conformance!(
    profile_versions_count_per_name_and_tenant,
    concurrent_profile_puts_take_distinct_versions,
    the_default_profile_is_set_and_cleared,
    model_settings_are_set_cleared_and_kept_per_tenant,
    conversation_state_saves_with_optimistic_revisions,
    concurrent_first_saves_of_a_state_keep_one,
    facts_are_listed_newest_first_and_kept_per_end_user,
    reminders_schedule_one_job_due_at_their_time,
    reminders_are_listed_by_due_time_and_cancelled,
    sms_reminders_are_delivered_through_the_outbox,
    web_chat_reminders_are_stored_without_a_send_job,
    cancelled_reminders_are_skipped,
    reminders_to_opted_out_end_users_fail,
    a_lost_lease_delivers_nothing,
    turn_steps_are_recorded_once_per_seq_and_in_order,
    agent_rows_are_the_tenants_alone,
);

/// Claims and completes every due job (the turn jobs inbound messages enqueue), so a test
/// sees only the jobs it makes.
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

/// An anonymous web chat visitor with their conversation, their turn job done.
async fn web_user(s: &Stores, t: TenantId) -> RecordedInbound {
    let mut m = sms(0, "", b"hello");
    m.channel = Channel::WebChat;
    m.provider_sid = None;
    m.contact = Contact::Anonymous;
    let r = recorded(s, t, m).await;
    drain(s).await;
    r
}

fn reminder(r: &RecordedInbound, channel: Channel, due_in: SignedDuration) -> NewReminder {
    NewReminder {
        id: ReminderId::new(),
        end_user_id: r.end_user_id,
        conversation_id: r.conversation_id,
        channel,
        text: b"dentist at 3".to_vec(),
        // Whole milliseconds, as stored.
        due_at: Timestamp::from_millisecond((Timestamp::now() + due_in).as_millisecond()).unwrap(),
        max_attempts: 3,
    }
}

/// Claims the due jobs and returns the one of `kind` (the others are left leased).
async fn claim_kind(s: &Stores, kind: JobKind) -> Option<ClaimedJob> {
    s.queue
        .claim("worker", 100, Duration::from_secs(30))
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.kind == kind.as_str())
}

/// The `jobs` table as a snapshot exports it.
#[derive(Default)]
struct Jobs {
    current: Option<&'static TableSpec>,
    rows: Vec<Row>,
}

#[async_trait]
impl SnapshotSink for Jobs {
    async fn table(&mut self, table: &'static TableSpec) -> Result<(), String> {
        self.current = Some(table);
        Ok(())
    }
    async fn row(&mut self, row: Row) -> Result<(), String> {
        if self.current.is_some_and(|t| t.name == "jobs") {
            self.rows.push(row);
        }
        Ok(())
    }
}

/// Every stored job, as (kind, idempotency key, run_at, max_attempts, tenant).
async fn jobs(s: &Stores) -> Vec<(String, Option<String>, i64, i64, Option<uuid::Uuid>)> {
    let mut sink = Jobs::default();
    s.data.export_snapshot(&mut sink).await.unwrap();
    let spec = store::snapshot::table("jobs").unwrap();
    let at = |row: &Row, name: &str| row[spec.column(name).unwrap()].clone();
    sink.rows
        .iter()
        .map(|row| {
            let text = |c: Cell| match c {
                Cell::Text(t) => Some(t),
                _ => None,
            };
            let int = |c: Cell| match c {
                Cell::Int(v) => v,
                other => panic!("not an integer: {other:?}"),
            };
            (
                text(at(row, "kind")).unwrap(),
                text(at(row, "idempotency_key")),
                int(at(row, "run_at")),
                int(at(row, "max_attempts")),
                at(row, "tenant_id").as_uuid(),
            )
        })
        .collect()
}

async fn profile_versions_count_per_name_and_tenant(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let front1 = s.data.put_profile(t, "front-desk", "v = 1").await.unwrap();
    assert_eq!(front1.version, 1);
    assert_eq!(front1.name, "front-desk");
    let front2 = s.data.put_profile(t, "front-desk", "v = 2").await.unwrap();
    assert_eq!(front2.version, 2);
    let sales = s.data.put_profile(t, "sales", "s = 1").await.unwrap();
    assert_eq!(sales.version, 1, "versions count per name");
    let theirs = s.data.put_profile(other, "front-desk", "o").await.unwrap();
    assert_eq!(theirs.version, 1, "and per tenant");

    let latest = s
        .data
        .get_profile(t, "front-desk", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest, front2);
    let first = s
        .data
        .get_profile(t, "front-desk", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, front1);
    assert_eq!(first.source, "v = 1");
    assert!(
        s.data
            .get_profile(t, "front-desk", Some(3))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.data.get_profile(t, "nope", None).await.unwrap().is_none());
    // Names are stored as given: no case folding.
    assert!(
        s.data
            .get_profile(t, "Front-Desk", None)
            .await
            .unwrap()
            .is_none()
    );

    let listed = s.data.list_profiles(t).await.unwrap();
    assert_eq!(listed, vec![front2.clone(), sales.clone()]);
    let versions = s.data.profile_versions(t, "front-desk").await.unwrap();
    assert_eq!(versions, vec![front2, front1], "newest first");
    assert!(s.data.profile_versions(t, "nope").await.unwrap().is_empty());
    assert_eq!(s.data.list_profiles(other).await.unwrap(), vec![theirs]);
    assert!(matches!(
        s.data
            .put_profile(TenantId::new(), "x", "y")
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
}

async fn concurrent_profile_puts_take_distinct_versions(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let puts: Vec<_> = (0..4)
        .map(|i| {
            let data = s.data.clone();
            tokio::spawn(async move { data.put_profile(t, "front", &format!("n = {i}")).await })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for put in puts {
        versions.insert(put.await.unwrap().unwrap().version);
    }
    assert_eq!(versions, BTreeSet::from([1, 2, 3, 4]));
    assert_eq!(s.data.profile_versions(t, "front").await.unwrap().len(), 4);
}

async fn the_default_profile_is_set_and_cleared(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    assert_eq!(s.data.default_profile(t).await.unwrap(), None);
    s.data.set_default_profile(t, Some("front")).await.unwrap();
    assert_eq!(
        s.data.default_profile(t).await.unwrap().as_deref(),
        Some("front")
    );
    s.data.set_default_profile(t, Some("sales")).await.unwrap();
    assert_eq!(
        s.data.default_profile(t).await.unwrap().as_deref(),
        Some("sales")
    );
    assert_eq!(s.data.default_profile(other).await.unwrap(), None);
    s.data.set_default_profile(t, None).await.unwrap();
    assert_eq!(s.data.default_profile(t).await.unwrap(), None);
    assert!(matches!(
        s.data
            .set_default_profile(TenantId::new(), Some("x"))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
}

async fn model_settings_are_set_cleared_and_kept_per_tenant(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    assert_eq!(s.data.model_settings(t).await.unwrap(), None);
    // The settings row may already exist (a default profile): both settings are kept.
    s.data.set_default_profile(t, Some("front")).await.unwrap();
    s.data
        .set_model_settings(t, Some(b"sealed:v1"))
        .await
        .unwrap();
    assert_eq!(
        s.data.model_settings(t).await.unwrap().as_deref(),
        Some(&b"sealed:v1"[..])
    );
    assert_eq!(
        s.data.default_profile(t).await.unwrap().as_deref(),
        Some("front")
    );
    s.data
        .set_model_settings(t, Some(b"sealed:v2"))
        .await
        .unwrap();
    s.data.set_default_profile(t, Some("sales")).await.unwrap();
    assert_eq!(
        s.data.model_settings(t).await.unwrap().as_deref(),
        Some(&b"sealed:v2"[..]),
        "setting the default profile keeps the model settings"
    );
    // Another tenant's are its own, and a first write creates the settings row.
    assert_eq!(s.data.model_settings(other).await.unwrap(), None);
    s.data
        .set_model_settings(other, Some(b"theirs"))
        .await
        .unwrap();
    assert_eq!(s.data.default_profile(other).await.unwrap(), None);
    assert_eq!(
        s.data.model_settings(t).await.unwrap().as_deref(),
        Some(&b"sealed:v2"[..])
    );
    s.data.set_model_settings(t, None).await.unwrap();
    assert_eq!(s.data.model_settings(t).await.unwrap(), None);
    assert_eq!(
        s.data.default_profile(t).await.unwrap().as_deref(),
        Some("sales")
    );
    assert_eq!(
        s.data.model_settings(other).await.unwrap().as_deref(),
        Some(&b"theirs"[..])
    );
    for sealed in [Some(&b"x"[..]), None] {
        assert!(matches!(
            s.data
                .set_model_settings(TenantId::new(), sealed)
                .await
                .unwrap_err(),
            StoreError::NotFound
        ));
    }
    assert_eq!(s.data.model_settings(TenantId::new()).await.unwrap(), None);
}

async fn conversation_state_saves_with_optimistic_revisions(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let r = sms_user(s, t, 1).await;
    let c = r.conversation_id;
    assert_eq!(
        s.data.conversation_state(t, c).await.unwrap(),
        ConversationState::default()
    );
    let mut state = ConversationState {
        profile: Some("front".into()),
        agent: Some("booking".into()),
        data: Some(vec![1, 2, 3]),
        revision: 0,
    };
    assert_eq!(
        s.data.save_conversation_state(t, c, &state).await.unwrap(),
        1
    );
    let stored = s.data.conversation_state(t, c).await.unwrap();
    assert_eq!(
        stored,
        ConversationState {
            revision: 1,
            ..state.clone()
        }
    );
    // A second "first save" lost the race.
    assert!(matches!(
        s.data
            .save_conversation_state(t, c, &state)
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
    state.revision = 1;
    state.agent = None;
    state.data = None;
    assert_eq!(
        s.data.save_conversation_state(t, c, &state).await.unwrap(),
        2
    );
    // Saving from a stale read is refused and changes nothing.
    let stale = ConversationState {
        agent: Some("stale".into()),
        ..state.clone()
    };
    assert!(matches!(
        s.data
            .save_conversation_state(t, c, &stale)
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
    let stored = s.data.conversation_state(t, c).await.unwrap();
    assert_eq!(stored.revision, 2);
    assert_eq!(stored.agent, None);
    assert_eq!(stored.data, None);
    assert_eq!(stored.profile.as_deref(), Some("front"));

    // Another tenant's conversation, or none at all, is not found; nothing leaks.
    assert_eq!(
        s.data.conversation_state(other, c).await.unwrap(),
        ConversationState::default()
    );
    for revision in [0, 2] {
        let attempt = ConversationState {
            revision,
            ..state.clone()
        };
        assert!(matches!(
            s.data
                .save_conversation_state(other, c, &attempt)
                .await
                .unwrap_err(),
            StoreError::NotFound
        ));
        assert!(matches!(
            s.data
                .save_conversation_state(t, ConversationId::new(), &attempt)
                .await
                .unwrap_err(),
            StoreError::NotFound
        ));
    }
    assert_eq!(s.data.conversation_state(t, c).await.unwrap().revision, 2);
}

async fn concurrent_first_saves_of_a_state_keep_one(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let c = sms_user(s, t, 1).await.conversation_id;
    let saves: Vec<_> = (0..4u8)
        .map(|i| {
            let data = s.data.clone();
            tokio::spawn(async move {
                let state = ConversationState {
                    data: Some(vec![i]),
                    ..ConversationState::default()
                };
                (i, data.save_conversation_state(t, c, &state).await)
            })
        })
        .collect();
    let mut won = Vec::new();
    for save in saves {
        match save.await.unwrap() {
            (i, Ok(revision)) => {
                assert_eq!(revision, 1);
                won.push(i);
            }
            (_, Err(StoreError::Conflict(_))) => {}
            (_, Err(e)) => panic!("a lost race is a conflict, not {e:?}"),
        }
    }
    assert_eq!(won.len(), 1, "exactly one first save wins");
    let stored = s.data.conversation_state(t, c).await.unwrap();
    assert_eq!(stored.data, Some(vec![won[0]]));
}

async fn facts_are_listed_newest_first_and_kept_per_end_user(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let a = sms_user(s, t, 1).await.end_user_id;
    let b = sms_user(s, t, 2).await.end_user_id;
    let fact = |text: &str| NewFact {
        id: FactId::new(),
        text: text.as_bytes().to_vec(),
    };
    let mut added = Vec::new();
    for text in ["likes mornings", "has a dog", "prefers French"] {
        let f = fact(text);
        let stored = s.data.add_fact(t, a, f.clone()).await.unwrap();
        assert_eq!(stored.id, f.id);
        assert_eq!(stored.end_user_id, a);
        assert_eq!(stored.text, f.text);
        added.push(stored);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let listed = s.data.list_facts(t, a, 10).await.unwrap();
    let newest_first: Vec<_> = added.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    assert_eq!(s.data.list_facts(t, a, 2).await.unwrap(), newest_first[..2]);
    assert_eq!(s.data.list_facts(t, a, 0).await.unwrap().len(), 1);

    // The same id again returns the stored fact and writes nothing.
    let again = NewFact {
        id: added[0].id,
        text: b"something else".to_vec(),
    };
    assert_eq!(
        s.data.add_fact(t, a, again.clone()).await.unwrap(),
        added[0]
    );
    assert_eq!(s.data.list_facts(t, a, 10).await.unwrap().len(), 3);
    // Another end user cannot take, read or forget it.
    assert!(matches!(
        s.data.add_fact(t, b, again.clone()).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert!(s.data.list_facts(t, b, 10).await.unwrap().is_empty());
    assert!(!s.data.delete_fact(t, b, added[0].id).await.unwrap());
    // Nor can another tenant, even naming the end user.
    assert!(matches!(
        s.data.add_fact(other, a, fact("x")).await.unwrap_err(),
        StoreError::NotFound
    ));
    assert!(s.data.list_facts(other, a, 10).await.unwrap().is_empty());
    assert!(!s.data.delete_fact(other, a, added[0].id).await.unwrap());
    assert!(matches!(
        s.data
            .add_fact(t, EndUserId::new(), fact("x"))
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));

    assert!(s.data.delete_fact(t, a, added[1].id).await.unwrap());
    assert!(!s.data.delete_fact(t, a, added[1].id).await.unwrap());
    let left: Vec<_> = s
        .data
        .list_facts(t, a, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.id)
        .collect();
    assert_eq!(left, vec![added[2].id, added[0].id]);
}

async fn reminders_schedule_one_job_due_at_their_time(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let later = reminder(&r, Channel::Sms, SignedDuration::from_hours(1));
    let stored = s.data.create_reminder(t, later.clone()).await.unwrap();
    assert_eq!(
        stored,
        Reminder {
            id: later.id,
            end_user_id: r.end_user_id,
            conversation_id: r.conversation_id,
            channel: Channel::Sms,
            text: later.text.clone(),
            due_at: later.due_at,
            status: ReminderStatus::Scheduled,
            message_id: None,
            created_at: stored.created_at,
        }
    );
    assert_eq!(
        s.data.get_reminder(t, later.id).await.unwrap(),
        Some(stored.clone())
    );
    // The same id again: the stored reminder, no second job.
    let mut retried = later.clone();
    retried.due_at += SignedDuration::from_hours(5);
    assert_eq!(s.data.create_reminder(t, retried).await.unwrap(), stored);
    assert_eq!(
        jobs(s).await,
        vec![(
            JobKind::Reminder.as_str().to_owned(),
            Some(format!("reminder:{}", later.id)),
            later.due_at.as_millisecond(),
            3,
            Some(t.into_uuid()),
        )]
    );
    // Not due yet: nobody can claim it.
    assert!(claim_kind(s, JobKind::Reminder).await.is_none());

    let due = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, due.clone()).await.unwrap();
    let job = claim_kind(s, JobKind::Reminder)
        .await
        .expect("a due reminder");
    assert_eq!(job.payload, serde_json::json!({ "reminder_id": due.id }));
    assert_eq!(job.tenant_id, Some(t));
    assert_eq!(job.max_attempts, 3);
    assert_eq!(s.queue.stats().await.unwrap().queued, 1);

    // The conversation must be the end user's, and both the tenant's.
    let someone = sms_user(s, t, 2).await;
    let mut mismatched = reminder(&r, Channel::Sms, SignedDuration::from_hours(1));
    mismatched.conversation_id = someone.conversation_id;
    assert!(matches!(
        s.data.create_reminder(t, mismatched).await.unwrap_err(),
        StoreError::NotFound
    ));
    let mut nowhere = reminder(&r, Channel::Sms, SignedDuration::from_hours(1));
    nowhere.conversation_id = ConversationId::new();
    assert!(matches!(
        s.data.create_reminder(t, nowhere).await.unwrap_err(),
        StoreError::NotFound
    ));
    let other = tenant(s, "Other", "+15550000002").await;
    assert!(matches!(
        s.data
            .create_reminder(
                other,
                reminder(&r, Channel::Sms, SignedDuration::from_hours(1))
            )
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
    // An id taken by another tenant's reminder is not overwritten nor shown.
    let theirs = sms_user(s, other, 3).await;
    let mut clash = reminder(&theirs, Channel::Sms, SignedDuration::from_hours(1));
    clash.id = later.id;
    assert!(matches!(
        s.data.create_reminder(other, clash).await.unwrap_err(),
        StoreError::Conflict(_)
    ));
    assert_eq!(
        s.data.get_reminder(t, later.id).await.unwrap(),
        Some(stored)
    );
    assert_eq!(jobs(s).await.len(), 2);
}

async fn reminders_are_listed_by_due_time_and_cancelled(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let someone = sms_user(s, t, 2).await;
    let mut made = Vec::new();
    for hours in [3, 1, 2] {
        let new = reminder(&r, Channel::Sms, SignedDuration::from_hours(hours));
        made.push(s.data.create_reminder(t, new).await.unwrap());
    }
    s.data
        .create_reminder(
            t,
            reminder(&someone, Channel::Sms, SignedDuration::from_mins(5)),
        )
        .await
        .unwrap();
    let ids = |list: Vec<Reminder>| list.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let listed = s
        .data
        .list_reminders(t, r.end_user_id, false, 10)
        .await
        .unwrap();
    assert_eq!(ids(listed), vec![made[1].id, made[2].id, made[0].id]);
    assert_eq!(
        ids(s
            .data
            .list_reminders(t, r.end_user_id, false, 0)
            .await
            .unwrap()),
        vec![made[1].id]
    );

    // Only the end user who asked can cancel, and only once.
    assert!(
        !s.data
            .cancel_reminder(t, someone.end_user_id, made[1].id)
            .await
            .unwrap()
    );
    assert!(
        s.data
            .cancel_reminder(t, r.end_user_id, made[1].id)
            .await
            .unwrap()
    );
    assert!(
        !s.data
            .cancel_reminder(t, r.end_user_id, made[1].id)
            .await
            .unwrap()
    );
    assert!(
        !s.data
            .cancel_reminder(t, r.end_user_id, ReminderId::new())
            .await
            .unwrap()
    );
    assert_eq!(
        ids(s
            .data
            .list_reminders(t, r.end_user_id, false, 10)
            .await
            .unwrap()),
        vec![made[2].id, made[0].id]
    );
    let all = s
        .data
        .list_reminders(t, r.end_user_id, true, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].id, made[1].id);
    assert_eq!(all[0].status, ReminderStatus::Cancelled);
    assert_eq!(
        s.data
            .get_reminder(t, made[1].id)
            .await
            .unwrap()
            .unwrap()
            .status,
        ReminderStatus::Cancelled
    );
}

async fn sms_reminders_are_delivered_through_the_outbox(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let before = s
        .data
        .get_conversation(t, r.conversation_id)
        .await
        .unwrap()
        .unwrap();
    let new = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    let job = claim_kind(s, JobKind::Reminder).await.unwrap();
    let outcome = s
        .data
        .deliver_reminder(
            t,
            new.id,
            b"reminder: dentist".to_vec(),
            4,
            (job.id, job.lease),
        )
        .await
        .unwrap();
    let ReminderDelivery::Delivered(message) = outcome else {
        panic!("expected a delivery, got {outcome:?}");
    };

    let stored = s.data.get_message(t, message).await.unwrap().unwrap();
    assert_eq!(stored.conversation_id, r.conversation_id);
    assert_eq!(stored.direction, Direction::Outbound);
    assert_eq!(stored.channel, Channel::Sms);
    assert_eq!(stored.status, MessageStatus::Queued);
    assert_eq!(stored.body, b"reminder: dentist");
    assert_eq!(stored.in_reply_to, None);
    let after = s
        .data
        .get_conversation(t, r.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.message_count, before.message_count + 1);
    assert!(after.last_message_at >= before.last_message_at);

    let sent = s.data.get_reminder(t, new.id).await.unwrap().unwrap();
    assert_eq!(sent.status, ReminderStatus::Sent);
    assert_eq!(sent.message_id, Some(message));

    // The reminder job is gone; the send job is queued, as for an outbox reply.
    let claimed = s
        .queue
        .claim("sender", 10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    assert_eq!(claimed[0].kind, JobKind::SendSms.as_str());
    assert_eq!(claimed[0].max_attempts, 4);
    assert_eq!(claimed[0].tenant_id, Some(t));
    assert_eq!(
        claimed[0].payload,
        serde_json::json!({ "message_id": message })
    );
    let out = s.data.outbound_sms(t, message).await.unwrap().unwrap();
    assert_eq!(out.message.id, message);
    assert_eq!(out.to_ciphertext, Some(vec![1, 1, 2]));
    assert_eq!(out.from, Some(crate::phone("+15550000001")));
    assert!(!out.opted_out);
    assert!(
        s.queue
            .complete(claimed[0].id, &claimed[0].lease)
            .await
            .unwrap()
    );
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
}

async fn web_chat_reminders_are_stored_without_a_send_job(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = web_user(s, t).await;
    let new = reminder(&r, Channel::WebChat, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    let job = claim_kind(s, JobKind::Reminder).await.unwrap();
    let ReminderDelivery::Delivered(message) = s
        .data
        .deliver_reminder(t, new.id, b"psst".to_vec(), 4, (job.id, job.lease))
        .await
        .unwrap()
    else {
        panic!("expected a delivery");
    };
    let stored = s.data.get_message(t, message).await.unwrap().unwrap();
    assert_eq!(stored.channel, Channel::WebChat);
    assert_eq!(stored.direction, Direction::Outbound);
    assert_eq!(stored.status, MessageStatus::Sent, "as a stored reply");
    assert_eq!(
        s.data
            .get_reminder(t, new.id)
            .await
            .unwrap()
            .unwrap()
            .message_id,
        Some(message)
    );
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
}

async fn cancelled_reminders_are_skipped(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let new = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    assert!(
        s.data
            .cancel_reminder(t, r.end_user_id, new.id)
            .await
            .unwrap()
    );
    // The job is left for the worker, which finds nothing to do.
    let job = claim_kind(s, JobKind::Reminder).await.unwrap();
    assert_eq!(
        s.data
            .deliver_reminder(t, new.id, b"x".to_vec(), 4, (job.id, job.lease))
            .await
            .unwrap(),
        ReminderDelivery::Skipped
    );
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
    let conv = s
        .data
        .get_conversation(t, r.conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conv.message_count, 1, "nothing recorded");
    let stored = s.data.get_reminder(t, new.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReminderStatus::Cancelled);
    assert_eq!(stored.message_id, None);

    // A reminder that is gone (or was never there) is skipped too.
    let job = s
        .queue
        .enqueue(store::NewJob {
            kind: JobKind::Reminder,
            tenant_id: Some(t),
            payload: serde_json::json!({ "reminder_id": ReminderId::new() }),
            idempotency_key: None,
            run_at: None,
            max_attempts: 1,
        })
        .await
        .unwrap()
        .0;
    let claimed = claim_kind(s, JobKind::Reminder).await.unwrap();
    assert_eq!(claimed.id, job);
    assert_eq!(
        s.data
            .deliver_reminder(t, ReminderId::new(), b"x".to_vec(), 4, (job, claimed.lease))
            .await
            .unwrap(),
        ReminderDelivery::Skipped
    );
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
}

async fn reminders_to_opted_out_end_users_fail(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let new = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    let mut stop = sms(1, "SMstop", b"STOP");
    stop.keyword = Some(domain::ConsentKeyword::OptOut);
    assert!(recorded(s, t, stop).await.opted_out);
    let count = s
        .data
        .get_conversation(t, r.conversation_id)
        .await
        .unwrap()
        .unwrap()
        .message_count;

    let job = claim_kind(s, JobKind::Reminder).await.unwrap();
    assert_eq!(
        s.data
            .deliver_reminder(t, new.id, b"x".to_vec(), 4, (job.id, job.lease))
            .await
            .unwrap(),
        ReminderDelivery::OptedOut
    );
    let stored = s.data.get_reminder(t, new.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReminderStatus::Failed);
    assert_eq!(stored.message_id, None);
    assert_eq!(
        s.data
            .get_conversation(t, r.conversation_id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        count,
        "no message recorded"
    );
    assert_eq!(s.queue.stats().await.unwrap(), store::QueueStats::default());
    assert!(
        !s.data
            .cancel_reminder(t, r.end_user_id, new.id)
            .await
            .unwrap(),
        "a failed reminder is no longer scheduled"
    );
}

async fn a_lost_lease_delivers_nothing(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let new = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    let stale = s
        .queue
        .claim("w-dead", 10, Duration::from_millis(1))
        .await
        .unwrap()
        .remove(0);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let live = claim_kind(s, JobKind::Reminder).await.unwrap();
    assert_eq!(live.id, stale.id);

    let err = s
        .data
        .deliver_reminder(t, new.id, b"x".to_vec(), 4, (stale.id, stale.lease))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let stored = s.data.get_reminder(t, new.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReminderStatus::Scheduled);
    assert_eq!(stored.message_id, None);
    assert_eq!(
        s.data
            .get_conversation(t, r.conversation_id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
    let stats = s.queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 1), "the job stays held");

    // The live holder delivers it.
    assert!(matches!(
        s.data
            .deliver_reminder(t, new.id, b"x".to_vec(), 4, (live.id, live.lease.clone()))
            .await
            .unwrap(),
        ReminderDelivery::Delivered(_)
    ));
    // And only once: its lease is spent with the job.
    assert!(matches!(
        s.data
            .deliver_reminder(t, new.id, b"x".to_vec(), 4, (live.id, live.lease))
            .await
            .unwrap_err(),
        StoreError::Conflict(_)
    ));
}

async fn turn_steps_are_recorded_once_per_seq_and_in_order(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let r = sms_user(s, t, 1).await;
    let step = |seq: u32, kind: &str, name: &str, detail: Option<&[u8]>| NewTurnStep {
        seq,
        kind: kind.into(),
        name: name.into(),
        is_error: kind == "tool" && detail.is_none(),
        detail: detail.map(<[u8]>::to_vec),
    };
    for s2 in [
        step(
            1,
            "tool",
            "search_knowledge_base",
            Some(b"{\"q\":\"hours\"}"),
        ),
        step(0, "model", "front", None),
        step(2, "tool", "book", None),
    ] {
        s.data
            .record_turn_step(t, r.conversation_id, r.message_id, s2)
            .await
            .unwrap();
    }
    // A resumed turn records step 1 again: the first record stands.
    s.data
        .record_turn_step(
            t,
            r.conversation_id,
            r.message_id,
            step(1, "handoff", "other", None),
        )
        .await
        .unwrap();
    let steps = s.data.turn_steps(t, r.message_id).await.unwrap();
    let seen: Vec<_> = steps
        .iter()
        .map(|s| (s.seq, s.kind.as_str(), s.name.as_str(), s.is_error))
        .collect();
    assert_eq!(
        seen,
        vec![
            (0, "model", "front", false),
            (1, "tool", "search_knowledge_base", false),
            (2, "tool", "book", true),
        ]
    );
    assert_eq!(steps[1].detail.as_deref(), Some(&b"{\"q\":\"hours\"}"[..]));
    assert_eq!(steps[0].detail, None);
    // Another turn has its own steps.
    assert!(
        s.data
            .turn_steps(t, domain::MessageId::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.data
            .record_turn_step(
                t,
                ConversationId::new(),
                r.message_id,
                step(3, "model", "x", None)
            )
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
}

async fn agent_rows_are_the_tenants_alone(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Other", "+15550000002").await;
    let r = sms_user(s, t, 1).await;
    s.data.put_profile(t, "front", "x").await.unwrap();
    s.data.set_default_profile(t, Some("front")).await.unwrap();
    let new = reminder(&r, Channel::Sms, SignedDuration::from_secs(-1));
    s.data.create_reminder(t, new.clone()).await.unwrap();
    s.data
        .record_turn_step(
            t,
            r.conversation_id,
            r.message_id,
            NewTurnStep {
                seq: 0,
                kind: "model".into(),
                name: "front".into(),
                is_error: false,
                detail: None,
            },
        )
        .await
        .unwrap();

    assert!(
        s.data
            .get_profile(other, "front", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.data.list_profiles(other).await.unwrap().is_empty());
    assert!(
        s.data
            .profile_versions(other, "front")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(s.data.default_profile(other).await.unwrap(), None);
    assert!(s.data.get_reminder(other, new.id).await.unwrap().is_none());
    assert!(
        s.data
            .list_reminders(other, r.end_user_id, true, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !s.data
            .cancel_reminder(other, r.end_user_id, new.id)
            .await
            .unwrap()
    );
    assert!(
        s.data
            .turn_steps(other, r.message_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        s.data
            .record_turn_step(
                other,
                r.conversation_id,
                domain::MessageId::new(),
                NewTurnStep {
                    seq: 0,
                    kind: "model".into(),
                    name: "x".into(),
                    is_error: false,
                    detail: None,
                },
            )
            .await
            .unwrap_err(),
        StoreError::NotFound
    ));
    // Delivering under another tenant finds no reminder: nothing is written to this one's.
    let job = claim_kind(s, JobKind::Reminder).await.unwrap();
    assert_eq!(
        s.data
            .deliver_reminder(other, new.id, b"x".to_vec(), 4, (job.id, job.lease))
            .await
            .unwrap(),
        ReminderDelivery::Skipped
    );
    let stored = s.data.get_reminder(t, new.id).await.unwrap().unwrap();
    assert_eq!(stored.status, ReminderStatus::Scheduled);
    assert_eq!(
        s.data
            .get_conversation(t, r.conversation_id)
            .await
            .unwrap()
            .unwrap()
            .message_count,
        1
    );
}

/// Deleting a tenant, an end user or a conversation takes the agent rows with it.
#[tokio::test]
async fn postgres_deletes_cascade_to_agent_rows() {
    let db = testkit::TestDb::postgres().await;
    let s = db.stores();
    let t = tenant(&s, "Acme", "+15550000001").await;
    let r = sms_user(&s, t, 1).await;
    let kept = sms_user(&s, t, 2).await;
    for who in [&r, &kept] {
        populate_agent_rows(&s, t, who).await;
    }
    let mut root = db.pg_superuser().await.unwrap();
    let per_user = [
        "conversation_state",
        "end_user_facts",
        "reminders",
        "turn_steps",
    ];
    for table in per_user {
        assert_eq!(count(&mut root, table).await, 2, "{table}");
    }
    sqlx::query("DELETE FROM end_users WHERE id = $1")
        .bind(r.end_user_id.into_uuid())
        .execute(&mut root)
        .await
        .unwrap();
    for table in per_user {
        assert_eq!(
            count(&mut root, table).await,
            1,
            "{table} after the end user"
        );
    }
    sqlx::query("DELETE FROM tenants WHERE id = $1")
        .bind(t.into_uuid())
        .execute(&mut root)
        .await
        .unwrap();
    for table in per_user
        .iter()
        .chain(&["agent_profiles", "tenant_settings"])
    {
        assert_eq!(count(&mut root, table).await, 0, "{table} after the tenant");
    }
    drop(root);
    db.cleanup().await;
}

async fn count(root: &mut sqlx::PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(root)
        .await
        .unwrap()
}

/// One row of each agent table for `who` (and the tenant's profile and settings).
pub async fn populate_agent_rows(s: &Stores, t: TenantId, who: &RecordedInbound) {
    s.data.put_profile(t, "front", "x = 1").await.unwrap();
    s.data.set_default_profile(t, Some("front")).await.unwrap();
    s.data
        .save_conversation_state(
            t,
            who.conversation_id,
            &ConversationState {
                profile: Some("front".into()),
                agent: None,
                data: Some(vec![7; 8]),
                revision: 0,
            },
        )
        .await
        .unwrap();
    s.data
        .add_fact(
            t,
            who.end_user_id,
            NewFact {
                id: FactId::new(),
                text: b"likes tea".to_vec(),
            },
        )
        .await
        .unwrap();
    s.data
        .create_reminder(
            t,
            reminder(who, Channel::Sms, SignedDuration::from_hours(2)),
        )
        .await
        .unwrap();
    s.data
        .record_turn_step(
            t,
            who.conversation_id,
            who.message_id,
            NewTurnStep {
                seq: 0,
                kind: "tool".into(),
                name: "search_knowledge_base".into(),
                is_error: true,
                detail: Some(vec![1, 2]),
            },
        )
        .await
        .unwrap();
}
