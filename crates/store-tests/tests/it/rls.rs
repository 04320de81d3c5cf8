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
    s.data
        .add_kb_entry(
            t,
            store::KbEntryInput {
                title: "a".into(),
                body: "b".into(),
            },
        )
        .await
        .unwrap();

    // The application role, outside a tenant transaction: every tenant table looks empty.
    let mut app = sqlx::PgConnection::connect(db.url()).await.unwrap();
    for table in ["end_users", "conversations", "messages", "kb_entries"] {
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
