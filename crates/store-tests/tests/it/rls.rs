//! PostgreSQL row-level security: the second wall between tenants.

use sqlx::Connection;
use store::Page;

use crate::{recorded, sms, tenant};

#[tokio::test]
async fn without_the_tenant_setting_the_application_role_sees_nothing() {
    let db = testkit::TestDb::postgres().await;
    let s = db.stores();
    let t = tenant(&s, "Acme", "+15550000001").await;
    let r = recorded(&s, t, sms(1, "SM1", b"secret")).await;
    crate::agents::populate_agent_rows(&s, t, &r).await;
    let entry = s
        .data
        .add_kb_entry(
            t,
            store::KbEntryInput {
                title: "a".into(),
                body: "b".into(),
            },
        )
        .await
        .unwrap();
    s.data
        .put_kb_embedding(t, &entry, "model@1", &[0; 32], &[1.0])
        .await
        .unwrap();

    // The application role, outside a tenant transaction: every tenant table looks empty.
    let mut app = sqlx::PgConnection::connect(db.url()).await.unwrap();
    for table in [
        "end_users",
        "conversations",
        "messages",
        "kb_entries",
        "kb_embeddings",
        "agent_profiles",
        "tenant_settings",
        "conversation_state",
        "end_user_facts",
        "reminders",
        "turn_steps",
    ] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut app)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} visible without app.tenant_id");
    }
    // With another tenant's id set, still nothing; inserting into another tenant fails.
    let mut tx = app.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT set_config('app.tenant_id', '{}', true)",
        domain::TenantId::new()
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    assert_eq!(n, 0);
    let insert = sqlx::query("INSERT INTO kb_entries (id, tenant_id, title, body, created_at, updated_at) VALUES ($1, $2, 'x', 'y', 0, 0)")
        .bind(uuid::Uuid::now_v7())
        .bind(t.into_uuid())
        .execute(&mut *tx)
        .await;
    assert!(
        insert.is_err(),
        "WITH CHECK must refuse rows of another tenant"
    );
    drop(tx);

    // The superuser sees the rows really are there, and the body is what the app stored.
    let mut root = db.pg_superuser().await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
        .fetch_one(&mut root)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reminders")
        .fetch_one(&mut root)
        .await
        .unwrap();
    assert_eq!(n, 1);
    // And the app, through the store, sees its own tenant's rows.
    assert_eq!(
        s.data
            .list_messages(t, r.conversation_id, Page::default())
            .await
            .unwrap()
            .len(),
        1
    );
    db.cleanup().await;
}

/// Tables that hold a `tenant_id` but no tenant data, read before the tenant is known
/// (routing) or across tenants (the queue, whose payloads are ids only).
const WITHOUT_RLS: &[&str] = &["tenant_phone_numbers", "api_keys", "jobs"];

#[tokio::test]
async fn every_tenant_table_forces_row_level_security() {
    let db = testkit::TestDb::postgres().await;
    let mut root = db.pg_superuser().await.unwrap();
    // Name, RLS enabled, forced, the policy's USING and WITH CHECK expressions.
    type Security = (String, bool, bool, Option<String>, Option<String>);
    let tables: Vec<Security> = sqlx::query_as(
        "SELECT c.relname::text, c.relrowsecurity, c.relforcerowsecurity, \
                pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid) \
         FROM pg_class c \
         LEFT JOIN pg_policy p ON p.polrelid = c.oid AND p.polname = 'tenant_isolation' AND p.polcmd = '*' \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' \
           AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
         ORDER BY 1",
    )
    .fetch_all(&mut root)
    .await
    .unwrap();
    assert!(tables.iter().any(|(t, ..)| t == "reminders"), "{tables:?}");
    for (table, enabled, forced, using, check) in &tables {
        if WITHOUT_RLS.contains(&table.as_str()) {
            continue;
        }
        assert!(*enabled && *forced, "{table} must enable and force RLS");
        for expr in [using, check] {
            assert_eq!(
                expr.as_deref(),
                Some("(tenant_id = concierge_tenant())"),
                "{table} needs the tenant_isolation policy, for reads and writes"
            );
        }
    }
    drop(root);
    db.cleanup().await;
}
