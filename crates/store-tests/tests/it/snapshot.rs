//! Logical snapshots (backup and restore): every table covered, consistent export, restore
//! across backends, all or nothing.

use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::JobKind;
use store::snapshot::{Cell, NOT_BACKED_UP, Row, TABLES, TableSpec};
use store::{
    Delivery, KbEntryInput, NewApiKey, NewJob, ReplyMessage, SnapshotSink, SnapshotSource,
    StaffReply, StaffReplyOutcome, StoreError, StoredDataKey, Stores,
};
use testkit::TestDb;

use crate::{conformance, recorded, sms, tenant};

conformance!(
    every_table_is_backed_up_or_deliberately_left_out,
    restore_refuses_a_database_with_data,
    a_dry_run_restores_nothing,
    a_failing_source_leaves_nothing_behind,
    rows_that_do_not_fit_the_schema_are_refused,
    a_snapshot_without_newer_tables_restores,
    a_snapshot_without_newer_columns_restores,
    model_usage_adds_up_per_day_tenant_and_end_user,
);

/// A snapshot in memory: tables in order, each with its rows.
#[derive(Clone, Debug, Default, PartialEq)]
struct Snapshot(Vec<(&'static str, Vec<Row>)>);

#[async_trait]
impl SnapshotSink for Snapshot {
    async fn table(&mut self, table: &'static TableSpec) -> Result<(), String> {
        self.0.push((table.name, Vec::new()));
        Ok(())
    }
    async fn row(&mut self, row: Row) -> Result<(), String> {
        self.0.last_mut().ok_or("row before table")?.1.push(row);
        Ok(())
    }
}

impl Snapshot {
    fn rows(&self, table: &str) -> &[Row] {
        &self.0.iter().find(|(t, _)| *t == table).unwrap().1
    }

    fn source(&self) -> Replay {
        Replay {
            tables: self.0.clone(),
            at: None,
            fail_at_finish: false,
        }
    }
}

struct Replay {
    tables: Vec<(&'static str, Vec<Row>)>,
    at: Option<usize>,
    fail_at_finish: bool,
}

#[async_trait]
impl SnapshotSource for Replay {
    async fn next_table(&mut self) -> Result<Option<&'static TableSpec>, String> {
        let next = self.at.map_or(0, |i| i + 1);
        self.at = Some(next);
        Ok(self
            .tables
            .get(next)
            .map(|(name, _)| store::snapshot::table(name).unwrap()))
    }
    async fn next_rows(&mut self, max: usize) -> Result<Vec<Row>, String> {
        let rows = &mut self.tables[self.at.unwrap()].1;
        let n = rows.len().min(max);
        Ok(rows.drain(..n).collect())
    }
    async fn finish(&mut self) -> Result<(), String> {
        if self.fail_at_finish {
            Err("checksum mismatch".into())
        } else {
            Ok(())
        }
    }
}

async fn export(s: &Stores) -> Snapshot {
    let mut snap = Snapshot::default();
    s.data.export_snapshot(&mut snap).await.unwrap();
    snap
}

/// Two tenants with a bit of everything: keys, an API key, a conversation with a reply, a
/// consent event, knowledge, a hand-off (one waiting, one taken by staff with their message),
/// model settings, agent rows (a profile, settings, conversation state, a fact, a reminder
/// due later, a turn step), and jobs (running, due later, dead).
async fn populate(s: &Stores) {
    for (name, number, user) in [("Acme", "+15550000001", 1u8), ("Bolt", "+15550000002", 2)] {
        let t = tenant(s, name, number).await;
        s.data
            .put_data_key(
                t,
                StoredDataKey {
                    key_id: u32::from(user),
                    kek_id: 99,
                    wrapped: vec![user; 60],
                },
            )
            .await
            .unwrap();
        s.data
            .create_api_key(
                t,
                NewApiKey {
                    prefix: format!("ck_{name}"),
                    digest: [user; 32],
                },
            )
            .await
            .unwrap();
        let inbound = recorded(s, t, sms(user, &format!("SM{name}1"), b"hello")).await;
        let mut stop = sms(user, &format!("SM{name}2"), b"STOP");
        stop.keyword = Some(domain::ConsentKeyword::OptOut);
        s.data.record_inbound(t, stop).await.unwrap();
        s.data
            .record_reply(
                t,
                ReplyMessage {
                    conversation_id: inbound.conversation_id,
                    in_reply_to: inbound.message_id,
                    channel: domain::Channel::Sms,
                    body: b"hi there".to_vec(),
                    delivery: Delivery::Outbox { max_attempts: 3 },
                    turn_job: None,
                },
            )
            .await
            .unwrap();
        s.data
            .add_kb_entry(
                t,
                KbEntryInput {
                    title: format!("{name} hours"),
                    body: "Open 9 to 5, Monday to Friday.".into(),
                },
            )
            .await
            .unwrap();
        if name == "Acme" {
            s.data
                .update_handoff(
                    t,
                    inbound.conversation_id,
                    domain::HandoffEvent::Request,
                    None,
                )
                .await
                .unwrap();
        } else {
            // A member of staff takes the conversation by writing to it (on the web: the
            // SMS end user opted out).
            let sent = s
                .data
                .record_staff_reply(
                    t,
                    StaffReply {
                        id: domain::MessageId::new(),
                        conversation_id: inbound.conversation_id,
                        channel: domain::Channel::WebChat,
                        body: b"a person here".to_vec(),
                        staff: format!("api-key:{name}"),
                        delivery: Delivery::Stored,
                    },
                )
                .await
                .unwrap();
            assert!(matches!(sent, StaffReplyOutcome::Recorded(_)));
        }
        s.data
            .set_model_settings(t, Some(&[user; 24]))
            .await
            .unwrap();
        crate::agents::populate_agent_rows(s, t, &inbound).await;
    }
    s.queue
        .enqueue(NewJob {
            kind: JobKind::SendSms,
            tenant_id: None,
            payload: serde_json::json!({"later": true, "n": [1, 2]}),
            idempotency_key: Some("later".into()),
            run_at: Some(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(3)),
            max_attempts: 3,
        })
        .await
        .unwrap();
    // Claim whatever is due: those jobs are running when the snapshot is taken.
    let claimed = s
        .queue
        .claim("worker:test", 100, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!claimed.is_empty());
    let first = &claimed[0];
    s.queue
        .dead_letter(first.id, &first.lease, "gave up")
        .await
        .unwrap();
}

fn column<'a>(table: &str, row: &'a Row, name: &str) -> &'a Cell {
    &row[store::snapshot::table(table).unwrap().column(name).unwrap()]
}

async fn round_trip(from: TestDb, to: TestDb) {
    let (a, b) = (from.stores(), to.stores());
    populate(&a).await;
    let before = export(&a).await;
    assert_eq!(
        before.0.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
        TABLES.iter().map(|t| t.name).collect::<Vec<_>>()
    );
    // Both tenants' rows are exported, row-level security notwithstanding.
    assert_eq!(before.rows("tenants").len(), 2);
    assert_eq!(before.rows("tenant_keys").len(), 2);
    assert_eq!(before.rows("end_users").len(), 2);
    assert_eq!(before.rows("messages").len(), 7);
    assert_eq!(before.rows("consent_events").len(), 2);
    // The hand-off states, the staff member and their message, the model settings.
    let handoffs: Vec<(&Cell, &Cell)> = before
        .rows("conversations")
        .iter()
        .map(|r| {
            (
                column("conversations", r, "handoff"),
                column("conversations", r, "handoff_staff"),
            )
        })
        .collect();
    assert_eq!(
        handoffs,
        [
            (&Cell::Text("pending".into()), &Cell::Null),
            (
                &Cell::Text("human".into()),
                &Cell::Text("api-key:Bolt".into())
            )
        ]
    );
    assert_eq!(
        before
            .rows("messages")
            .iter()
            .filter(|r| *column("messages", r, "sent_by") == Cell::Text("api-key:Bolt".into()))
            .count(),
        1
    );
    assert!(before.rows("tenant_settings").iter().all(
        |r| matches!(column("tenant_settings", r, "model_cipher"), Cell::Bytes(b) if b.len() == 24)
    ));
    assert_eq!(before.rows("kb_entries").len(), 2);
    for table in [
        "agent_profiles",
        "tenant_settings",
        "conversation_state",
        "end_user_facts",
        "reminders",
        "turn_steps",
    ] {
        assert_eq!(before.rows(table).len(), 2, "{table}");
    }
    let running = before
        .rows("jobs")
        .iter()
        .filter(|r| *column("jobs", r, "status") == Cell::Text("running".into()))
        .count();
    assert!(running > 0, "the fixture has running jobs");

    let counts = b
        .data
        .restore_snapshot(&mut before.source(), true)
        .await
        .unwrap();
    assert_eq!(
        counts.total(),
        before.0.iter().map(|(_, r)| r.len() as u64).sum::<u64>()
    );
    // Jobs that were running may have run since: parked, not run again.
    assert_eq!(counts.parked_jobs, running as u64);
    let after = export(&b).await;
    for (table, rows) in &before.0 {
        let restored = after.rows(table);
        if *table == "jobs" {
            assert_eq!(rows.len(), restored.len());
            for (old, new) in rows.iter().zip(restored) {
                let status = column("jobs", new, "status");
                let was = column("jobs", old, "status");
                let expected = if *was == Cell::Text("running".into()) {
                    assert_eq!(
                        *column("jobs", new, "last_error"),
                        Cell::Text(store::snapshot::PARKED_ON_RESTORE.into())
                    );
                    Cell::Text("dead".into())
                } else {
                    was.clone()
                };
                assert_eq!(*status, expected);
                assert_eq!(*column("jobs", new, "locked_by"), Cell::Null);
                assert_eq!(column("jobs", old, "id"), column("jobs", new, "id"));
                // jsonb keeps its own key order: compare documents, not texts.
                let json = |c: &Cell| match c {
                    Cell::Json(t) => serde_json::from_str::<serde_json::Value>(t).unwrap(),
                    other => panic!("not JSON: {other:?}"),
                };
                assert_eq!(
                    json(column("jobs", old, "payload")),
                    json(column("jobs", new, "payload"))
                );
            }
        } else {
            assert_eq!(rows, restored, "table {table}");
        }
    }

    // The restored database works: routing, search, and the queue.
    let acme = b
        .data
        .tenant_by_phone(&crate::phone("+15550000001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        b.data.search_kb(acme.id, "hours", 5).await.unwrap().len(),
        1
    );
    assert!(b.data.api_key_by_digest(&[1; 32]).await.unwrap().is_some());
    let claimed = b
        .queue
        .claim("worker:after", 100, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(
        claimed.is_empty(),
        "nothing that may have run already runs again"
    );
    let stats = b.queue.stats().await.unwrap();
    assert_eq!(
        stats.queued, 3,
        "the jobs scheduled for later (a send, two reminders) still wait"
    );
    assert_eq!(stats.dead, running as u64 + 1);
    from.cleanup().await;
    to.cleanup().await;
}

#[tokio::test]
async fn sqlite_to_sqlite() {
    round_trip(TestDb::sqlite().await, TestDb::sqlite().await).await;
}

#[tokio::test]
async fn sqlite_to_postgres() {
    round_trip(TestDb::sqlite().await, TestDb::postgres().await).await;
}

#[tokio::test]
async fn postgres_to_sqlite() {
    round_trip(TestDb::postgres().await, TestDb::sqlite().await).await;
}

#[tokio::test]
async fn postgres_to_postgres() {
    round_trip(TestDb::postgres().await, TestDb::postgres().await).await;
}

async fn every_table_is_backed_up_or_deliberately_left_out(s: &Stores) {
    use store::snapshot::COLUMNS_NOT_BACKED_UP;
    let columns = s.data.schema_columns().await.unwrap();
    assert!(columns.len() > 50, "{columns:?}");
    for (table, column) in &columns {
        if NOT_BACKED_UP.contains(&table.as_str())
            || COLUMNS_NOT_BACKED_UP.contains(&(table.as_str(), column.as_str()))
        {
            continue;
        }
        let spec = TABLES.iter().find(|t| t.name == table).unwrap_or_else(|| {
            panic!("table {table} is neither in store::snapshot::TABLES nor in NOT_BACKED_UP")
        });
        assert!(
            spec.column(column).is_some(),
            "column {table}.{column} is not in store::snapshot::TABLES: backups would drop it"
        );
    }
    // And every column of the list exists.
    for table in TABLES {
        for column in table.columns {
            assert!(
                columns
                    .iter()
                    .any(|(t, c)| t == table.name && c == column.name),
                "{}.{} is in TABLES but not in the schema",
                table.name,
                column.name
            );
        }
    }
    for table in TABLES {
        assert!(
            table
                .order_by
                .split(", ")
                .all(|c| table.column(c).is_some()),
            "{} orders by a column it has",
            table.name
        );
    }
}

async fn restore_refuses_a_database_with_data(s: &Stores) {
    populate(s).await;
    let snap = export(s).await;
    let err = s
        .data
        .restore_snapshot(&mut snap.source(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(export(s).await.rows("tenants").len(), 2);
}

async fn a_dry_run_restores_nothing(s: &Stores) {
    let source = TestDb::sqlite().await;
    populate(&source.stores()).await;
    let snap = export(&source.stores()).await;
    let counts = s
        .data
        .restore_snapshot(&mut snap.source(), false)
        .await
        .unwrap();
    assert!(counts.total() > 10);
    assert!(s.data.list_tenants().await.unwrap().is_empty());
    assert_eq!(s.queue.stats().await.unwrap().queued, 0);
}

async fn a_failing_source_leaves_nothing_behind(s: &Stores) {
    let source = TestDb::sqlite().await;
    populate(&source.stores()).await;
    let snap = export(&source.stores()).await;
    let mut failing = snap.source();
    failing.fail_at_finish = true;
    let err = s
        .data
        .restore_snapshot(&mut failing, true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Snapshot(ref m) if m.contains("checksum")),
        "{err:?}"
    );
    assert!(s.data.list_tenants().await.unwrap().is_empty());

    // Tables out of order are refused.
    let mut swapped = snap.clone();
    let at = |name: &str| swapped.0.iter().position(|(t, _)| *t == name).unwrap();
    let (consent, kb) = (at("consent_events"), at("kb_entries"));
    swapped.0.swap(consent, kb);
    let err = s
        .data
        .restore_snapshot(&mut swapped.source(), true)
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Snapshot(ref m) if m.contains("out of order")),
        "{err:?}"
    );
    assert!(s.data.list_tenants().await.unwrap().is_empty());
    // And the database still takes a good one.
    s.data
        .restore_snapshot(&mut snap.source(), true)
        .await
        .unwrap();
    assert_eq!(s.data.list_tenants().await.unwrap().len(), 2);
}

/// A snapshot from an older release lacks the tables added since: they stay empty.
async fn a_snapshot_without_newer_tables_restores(s: &Stores) {
    let source = TestDb::sqlite().await;
    populate(&source.stores()).await;
    let mut snap = export(&source.stores()).await;
    snap.0
        .retain(|(t, _)| *t != "model_usage_daily" && *t != "jobs");
    let counts = s
        .data
        .restore_snapshot(&mut snap.source(), true)
        .await
        .unwrap();
    assert!(counts.tables.iter().all(|(t, _)| *t != "jobs"));
    assert_eq!(s.data.list_tenants().await.unwrap().len(), 2);
    assert_eq!(s.queue.stats().await.unwrap().queued, 0);
    source.cleanup().await;
}

/// A snapshot from a release before hand-off states, staff messages and model settings: its
/// rows lack those columns, and restore them filled as the migrations fill stored rows (a
/// conversation marked for staff waits for a person; the rest is empty).
async fn a_snapshot_without_newer_columns_restores(s: &Stores) {
    let added = [
        ("conversations", "handoff"),
        ("conversations", "handoff_staff"),
        ("messages", "sent_by"),
        ("tenant_settings", "model_cipher"),
    ];
    let source = TestDb::sqlite().await;
    populate(&source.stores()).await;
    let snap = export(&source.stores()).await;
    let mut older = Snapshot::default();
    for (name, rows) in &snap.0 {
        let spec = store::snapshot::table(name).unwrap();
        let kept: Vec<usize> = (0..spec.columns.len())
            .filter(|&i| !added.contains(&(*name, spec.columns[i].name)))
            .collect();
        let columns: Vec<&str> = kept.iter().map(|&i| spec.columns[i].name).collect();
        let layout = spec.layout(&columns).unwrap();
        assert_eq!(layout.is_current(), kept.len() == spec.columns.len());
        // As a backup reader does: the older release's values, into this release's rows.
        let rows = rows
            .iter()
            .map(|r| layout.row(kept.iter().map(|&i| r[i].clone()).collect()))
            .collect::<Result<Vec<Row>, String>>()
            .unwrap();
        older.0.push((name, rows));
    }
    s.data
        .restore_snapshot(&mut older.source(), true)
        .await
        .unwrap();
    let after = export(s).await;
    for row in after.rows("conversations") {
        assert_ne!(*column("conversations", row, "handoff_at"), Cell::Null);
        assert_eq!(
            *column("conversations", row, "handoff"),
            Cell::Text("pending".into())
        );
        assert_eq!(*column("conversations", row, "handoff_staff"), Cell::Null);
    }
    assert!(
        after
            .rows("messages")
            .iter()
            .all(|r| *column("messages", r, "sent_by") == Cell::Null)
    );
    for row in after.rows("tenant_settings") {
        assert_eq!(*column("tenant_settings", row, "model_cipher"), Cell::Null);
        assert_eq!(
            *column("tenant_settings", row, "default_profile"),
            Cell::Text("front".into())
        );
    }
    // Everything else came through unchanged.
    for (table, rows) in &snap.0 {
        if *table == "jobs" {
            continue;
        }
        let spec = store::snapshot::table(table).unwrap();
        let strip = |rows: &[Row]| -> Vec<Row> {
            rows.iter()
                .map(|r| {
                    r.iter()
                        .zip(spec.columns)
                        .filter(|(_, c)| !added.contains(&(*table, c.name)))
                        .map(|(cell, _)| cell.clone())
                        .collect()
                })
                .collect()
        };
        assert_eq!(strip(rows), strip(after.rows(table)), "{table}");
    }
    // The restored conversations wait for a person.
    for tenant in s.data.list_tenants().await.unwrap() {
        let waiting = s
            .data
            .list_handed_off(tenant.id, store::Page::default())
            .await
            .unwrap();
        assert_eq!(waiting.len(), 1, "{}", tenant.name.as_str());
        assert_eq!(waiting[0].handoff, domain::Handoff::Pending);
    }
    source.cleanup().await;
}

async fn rows_that_do_not_fit_the_schema_are_refused(s: &Stores) {
    let source = TestDb::sqlite().await;
    populate(&source.stores()).await;
    let snap = export(&source.stores()).await;

    // A text where an id belongs.
    let mut bad = snap.clone();
    bad.0[0].1[0][0] = Cell::Text("not an id".into());
    let err = s
        .data
        .restore_snapshot(&mut bad.source(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Snapshot(_)), "{err:?}");

    // A message whose conversation is not in the snapshot: the constraint refuses it.
    let mut orphan = snap.clone();
    let conversations = orphan
        .0
        .iter()
        .position(|(t, _)| *t == "conversations")
        .unwrap();
    orphan.0[conversations].1.clear();
    let err = s
        .data
        .restore_snapshot(&mut orphan.source(), true)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Snapshot(_)), "{err:?}");
    assert!(s.data.list_tenants().await.unwrap().is_empty());
    source.cleanup().await;
}

async fn model_usage_adds_up_per_day_tenant_and_end_user(s: &Stores) {
    use store::{ModelUsage, utc_day};
    let t = tenant(s, "Acme", "+15550000001").await;
    let other = tenant(s, "Bolt", "+15550000002").await;
    let a = recorded(s, t, sms(1, "SMa", b"hi")).await.end_user_id;
    let b = recorded(s, t, sms(2, "SMb", b"hi")).await.end_user_id;
    let c = recorded(s, other, sms(3, "SMc", b"hi")).await.end_user_id;
    let today = utc_day(jiff::Timestamp::now());
    let one = ModelUsage {
        calls: 1,
        input_tokens: 100,
        output_tokens: 20,
        cost_micros: 350,
    };
    for (tenant, user, day) in [
        (t, a, today),
        (t, a, today),
        (t, b, today),
        (t, a, today - 1),
        (other, c, today),
    ] {
        s.data
            .record_model_usage(tenant, user, day, one)
            .await
            .unwrap();
    }
    let totals = s.data.model_usage_on(t, a, today).await.unwrap();
    assert_eq!(totals.end_user.calls, 2);
    assert_eq!(totals.end_user.cost_micros, 700);
    assert_eq!(
        totals.tenant.calls, 3,
        "both end users, that day, that tenant only"
    );
    assert_eq!(totals.tenant.input_tokens, 300);
    assert_eq!(totals.tenant.output_tokens, 60);
    let empty = s.data.model_usage_on(t, a, today + 1).await.unwrap();
    assert_eq!(empty, store::UsageTotals::default());
    // Another tenant's end user is not this tenant's.
    let cross = s.data.model_usage_on(t, c, today).await.unwrap();
    assert_eq!(cross.end_user, ModelUsage::default());
    // The usage is in the snapshot.
    assert_eq!(export(s).await.rows("model_usage_daily").len(), 4);
}

/// Operators often connect as a superuser, which bypasses row-level security: the export
/// must still write each tenant's rows once.
#[tokio::test]
async fn postgres_export_as_a_superuser_writes_each_row_once() {
    let db = TestDb::postgres().await;
    populate(&db.stores()).await;
    let as_app = export(&db.stores()).await;
    let (_, name) = db.url().rsplit_once('/').unwrap();
    let admin = testkit::pg_admin_url();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let superuser = store_postgres::PgStore::connect(
        &format!("{base}/{name}"),
        &store_postgres::PgSettings::default(),
    )
    .await
    .unwrap();
    let stores = Stores::new(superuser.clone());
    let as_superuser = export(&stores).await;
    assert_eq!(as_superuser.rows("kb_entries").len(), 2);
    assert_eq!(as_superuser.rows("messages").len(), 7);
    assert_eq!(as_superuser, as_app);
    superuser.close().await;
    db.cleanup().await;
}
