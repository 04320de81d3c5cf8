//! Per-test databases. SQLite: a file in a temporary directory. PostgreSQL: a new database
//! cloned from a migrated template, owned by and reached through an ordinary role
//! (`concierge_test`: no superuser, no BYPASSRLS), so row-level security applies in tests
//! exactly as in production.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::PgConnection;
use store::Stores;
use store_postgres::{PgSettings, PgStore};
use store_sqlite::SqliteStore;
use tokio::sync::OnceCell;

/// The superuser URL used to create roles and databases. `CONCIERGE_TEST_PG_ADMIN_URL`
/// overrides the default (local trust authentication).
#[must_use]
pub fn pg_admin_url() -> String {
    std::env::var("CONCIERGE_TEST_PG_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

const APP_ROLE: &str = "concierge_test";

fn with_db(url: &str, db: &str, user: Option<&str>) -> String {
    let (base, _) = url.rsplit_once('/').expect("a database URL has a path");
    match user {
        Some(user) => {
            let (scheme, rest) = base.split_once("://").expect("scheme");
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            format!("{scheme}://{user}@{host}/{db}")
        }
        None => format!("{base}/{db}"),
    }
}

async fn admin() -> PgConnection {
    let url = pg_admin_url();
    PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL is required for these tests and is not reachable at {url}: {e}. \
             Start it (see CONTRIBUTING.md) or set CONCIERGE_TEST_PG_ADMIN_URL."
        )
    })
}

/// The template database for this build's migrations, created once per process.
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let mut conn = admin().await;
            // One creator at a time across test processes.
            sqlx::query("SELECT pg_advisory_lock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            let role_exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                    .bind(APP_ROLE)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if !role_exists {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            }
            drop_stale(&mut conn).await;
            let name = format!("concierge_tpl_{}", migrations_fingerprint());
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                    .bind(&name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
            if !exists {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE {name} OWNER {APP_ROLE}"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
                let url = with_db(&pg_admin_url(), &name, Some(APP_ROLE));
                let store = PgStore::connect(&url, &PgSettings::default())
                    .await
                    .expect("connect to template");
                store.migrate().await.expect("migrate template");
                store.close().await;
            }
            sqlx::query("SELECT pg_advisory_unlock(727274)")
                .execute(&mut conn)
                .await
                .unwrap();
            name
        })
        .await
}

/// Test databases are named with their creation time; ones older than an hour are left
/// over from killed runs and are dropped.
async fn drop_stale(conn: &mut PgConnection) {
    let now = jiff::Timestamp::now().as_second();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'concierge_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap();
    for name in names {
        let created = name.split('_').nth(2).and_then(|s| s.parse::<i64>().ok());
        if created.is_some_and(|t| now - t > 3600) {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut *conn)
            .await;
        }
    }
}

fn migrations_fingerprint() -> String {
    // Changes whenever a migration is added or changed, so a stale template is never reused.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in store_postgres::migration_checksums().flat_map(|c| c.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A database for one test, on one backend.
pub enum TestDb {
    Sqlite {
        store: SqliteStore,
        url: String,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: PgStore,
        url: String,
        name: String,
    },
}

impl TestDb {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("concierge.db");
        let store = SqliteStore::open(&path).await.expect("open SQLite");
        store.migrate().await.expect("migrate SQLite");
        let url = format!("sqlite://{}", path.display());
        Self::Sqlite {
            store,
            url,
            _dir: dir,
        }
    }

    pub async fn postgres() -> Self {
        let template = template().await;
        let name = format!(
            "concierge_t_{}_{}",
            jiff::Timestamp::now().as_second(),
            uuid::Uuid::new_v4().simple()
        );
        let mut conn = admin().await;
        // CREATE DATABASE ... TEMPLATE fails while another session is connected to the
        // template; template connections are short, so retry briefly.
        let mut tries = 0;
        loop {
            let created = sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE DATABASE {name} TEMPLATE {template} OWNER {APP_ROLE}"
            )))
            .execute(&mut conn)
            .await;
            match created {
                Ok(_) => break,
                Err(e) if tries < 50 => {
                    tries += 1;
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("cannot create test database: {e}"),
            }
        }
        let url = with_db(&pg_admin_url(), &name, Some(APP_ROLE));
        let store = PgStore::connect(
            &url,
            &PgSettings {
                max_connections: 8,
                ..PgSettings::default()
            },
        )
        .await
        .expect("connect to test database");
        Self::Postgres { store, url, name }
    }

    /// Both backends, for tests that must hold on each.
    pub async fn each() -> [Self; 2] {
        [Self::sqlite().await, Self::postgres().await]
    }

    #[must_use]
    pub fn stores(&self) -> Stores {
        match self {
            Self::Sqlite { store, .. } => Stores::new(store.clone()),
            Self::Postgres { store, .. } => Stores::new(store.clone()),
        }
    }

    /// The URL the application would be configured with.
    #[must_use]
    pub fn url(&self) -> &str {
        match self {
            Self::Sqlite { url, .. } | Self::Postgres { url, .. } => url,
        }
    }

    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite { .. } => "sqlite",
            Self::Postgres { .. } => "postgres",
        }
    }

    /// A superuser connection to this test's PostgreSQL database (bypasses RLS), for
    /// checking what is really stored.
    pub async fn pg_superuser(&self) -> Option<PgConnection> {
        match self {
            Self::Postgres { name, .. } => Some(
                PgConnection::connect(&with_db(&pg_admin_url(), name, None))
                    .await
                    .expect("superuser connection"),
            ),
            Self::Sqlite { .. } => None,
        }
    }

    /// Drops a PostgreSQL test database (SQLite's directory goes with the value).
    pub async fn cleanup(self) {
        if let Self::Postgres { store, name, .. } = self {
            store.close().await;
            let mut conn = admin().await;
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}
