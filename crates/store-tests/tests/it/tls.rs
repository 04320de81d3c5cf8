//! PostgreSQL over TLS: `sslmode` in the database URL is honoured (rustls, ring provider).
//! The Debian server used here serves a self-signed ("snakeoil") certificate with `ssl = on`.

use store::Store;
use store_postgres::{PgSettings, PgStore};

fn with_sslmode(url: &str, mode: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}sslmode={mode}")
}

#[tokio::test]
async fn sslmode_require_encrypts_the_connection() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = testkit::TestDb::postgres().await;
    let store = PgStore::connect(&with_sslmode(db.url(), "require"), &PgSettings::default())
        .await
        .expect("TLS connection with sslmode=require");
    store.ping().await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(ssl, "the connection is not encrypted");
    store.close().await;
    db.cleanup().await;
}

#[tokio::test]
async fn sslmode_verify_full_refuses_an_untrusted_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = testkit::TestDb::postgres().await;
    let settings = PgSettings {
        acquire_timeout: std::time::Duration::from_secs(3),
        ..PgSettings::default()
    };
    let err = PgStore::connect(&with_sslmode(db.url(), "verify-full"), &settings)
        .await
        .err()
        .expect("a self-signed certificate must not verify");
    assert!(
        matches!(err, store::StoreError::Unavailable(_)),
        "unexpected error: {err:?}"
    );
    db.cleanup().await;
}
