//! SQLite implementation of the store: the embedded default. One process owns the database
//! file (WAL mode); writers queue on an in-process lock, then take the write lock up front
//! (`BEGIN IMMEDIATE`), so they never fail on a lock upgrade nor wait in the busy handler.

mod agents;
mod kb_embeddings;
mod queue;
mod rows;
mod snapshot;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::JobKind;
use domain::{
    ApiKeyId, Channel, ConsentKeyword, ConversationId, EndUserId, FactId, JobId, KbEntryId,
    MessageId, MessageStatus, PhoneNumber, ReminderId, TenantId,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use store::{
    ApiKey, Backend, ConsentEvent, Contact, Conversation, ConversationState, Delivery,
    DuplicateInbound, EndUser, Fact, InboundMessage, InboundOutcome, KbEntry, KbEntryInput, KbHit,
    MigrationStatus, NewApiKey, NewFact, NewReminder, NewTenant, NewTurnStep, OutboundSms, Page,
    RecordedInbound, Reminder, ReminderDelivery, ReplyMessage, StaffReply, StaffReplyOutcome,
    StatusUpdate, Store, StoreError, StoreResult, StoredDataKey, StoredMessage, StoredProfile,
    Tenant, TurnStep,
};
use tokio::sync::{Mutex, Notify, OwnedMutexGuard};

use crate::rows::{db_err, now_ms, read_kb, read_message, read_tenant_row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Wakes this process's workers when a job is enqueued (SQLite has one process).
    writer: Arc<Mutex<()>>,
    wake: Arc<Notify>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://path` or `sqlite::memory:`).
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid SQLite URL: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory");
        Self::connect_with(options).await
    }

    /// Opens the database file at `path`.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory");
        Self::connect_with(options).await
    }

    async fn connect_with(options: SqliteConnectOptions) -> StoreResult<Self> {
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Self {
            pool,
            writer: Arc::new(Mutex::new(())),
            wake: Arc::new(Notify::new()),
        })
    }

    /// Applies the embedded migrations.
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(e.to_string()))
    }

    #[must_use]
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// A write transaction. Writers queue on an in-process lock first, in arrival order,
    /// so they never meet SQLite's busy handler (which sleeps in growing steps and makes
    /// latency jumpy under load); `BEGIN IMMEDIATE` still guards against other processes.
    /// Keep the returned guard alive until the transaction ends.
    async fn write_tx(&self) -> StoreResult<(OwnedMutexGuard<()>, Transaction<'static, Sqlite>)> {
        let guard = self.writer.clone().lock_owned().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_err)?;
        Ok((guard, tx))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn tenant_numbers(
    executor: impl sqlx::SqliteExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<PhoneNumber>> {
    let rows = sqlx::query(
        "SELECT e164 FROM tenant_phone_numbers WHERE tenant_id = ? ORDER BY created_at, e164",
    )
    .bind(tenant.into_uuid())
    .fetch_all(executor)
    .await
    .map_err(db_err)?;
    rows.iter()
        .map(|r| {
            let raw: String = r.try_get("e164").map_err(db_err)?;
            PhoneNumber::parse(&raw).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect()
}

/// The columns `rows::read_conversation` reads, in a literal so queries stay `&'static str`.
macro_rules! conversation_columns {
    () => {
        "id, tenant_id, end_user_id, message_count, created_at, last_message_at, handoff, handoff_at, handoff_staff"
    };
}

const MESSAGE_COLUMNS: &str = "id, tenant_id, conversation_id, direction, channel, body_cipher, status, provider_sid, in_reply_to, error_code, created_at, sent_by";

/// The name a hand-off event goes by in SQL (see `handoff_set!`).
const fn handoff_event(event: domain::HandoffEvent) -> &'static str {
    match event {
        domain::HandoffEvent::Request => "request",
        domain::HandoffEvent::Take => "take",
        domain::HandoffEvent::Release => "release",
    }
}

/// The assignments that move a conversation by a hand-off event, as `Handoff::after` does:
/// `?1` the event (`handoff_event`), `?2` now, `?3` the member of staff. `handoff_at` is set
/// when the conversation leaves the agents (kept while it stays with a person) and cleared
/// on release; `take` records who took it, `request` keeps them, `release` clears them.
macro_rules! handoff_set {
    () => {
        "handoff = CASE ?1 WHEN 'request' THEN (CASE WHEN handoff = 'bot' THEN 'pending' ELSE handoff END) \
                           WHEN 'take' THEN 'human' ELSE 'bot' END, \
         handoff_at = CASE WHEN ?1 = 'release' THEN NULL ELSE COALESCE(handoff_at, ?2) END, \
         handoff_staff = CASE ?1 WHEN 'request' THEN handoff_staff WHEN 'take' THEN ?3 ELSE NULL END"
    };
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn migration_status(&self) -> StoreResult<MigrationStatus> {
        let known = MIGRATOR.iter().count();
        let exists: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let applied = if exists.is_some() {
            let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(db_err)?;
            usize::try_from(n).unwrap_or(0)
        } else {
            0
        };
        Ok(MigrationStatus { applied, known })
    }

    async fn create_tenant(&self, tenant: NewTenant) -> StoreResult<Tenant> {
        let id = TenantId::new();
        let now = now_ms();
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(id.into_uuid())
            .bind(tenant.name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for phone in &tenant.phone_numbers {
            let inserted = sqlx::query(
                "INSERT INTO tenant_phone_numbers (e164, tenant_id, created_at) VALUES (?, ?, ?) ON CONFLICT (e164) DO NOTHING",
            )
            .bind(phone.as_str())
            .bind(id.into_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if inserted.rows_affected() == 0 {
                return Err(StoreError::Conflict(format!(
                    "phone number {} is already assigned to a tenant",
                    phone.as_str()
                )));
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(Tenant {
            id,
            name: tenant.name,
            phone_numbers: tenant.phone_numbers,
            created_at: store::timestamp_from_ms(now),
        })
    }

    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let (id, name, created_at) = read_tenant_row(row)?;
            out.push(Tenant {
                id,
                name,
                phone_numbers: tenant_numbers(&self.pool, id).await?,
                created_at,
            });
        }
        Ok(out)
    }

    async fn get_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = ?")
            .bind(id.into_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        match row {
            None => Ok(None),
            Some(row) => {
                let (id, name, created_at) = read_tenant_row(&row)?;
                Ok(Some(Tenant {
                    id,
                    name,
                    phone_numbers: tenant_numbers(&self.pool, id).await?,
                    created_at,
                }))
            }
        }
    }

    async fn tenant_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Tenant>> {
        let tenant: Option<uuid::Uuid> =
            sqlx::query_scalar("SELECT tenant_id FROM tenant_phone_numbers WHERE e164 = ?")
                .bind(phone.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        match tenant {
            None => Ok(None),
            Some(id) => self.get_tenant(TenantId::from_uuid(id)).await,
        }
    }

    async fn data_key(&self, tenant: TenantId) -> StoreResult<Option<StoredDataKey>> {
        let row =
            sqlx::query("SELECT key_id, kek_id, wrapped FROM tenant_keys WHERE tenant_id = ?")
                .bind(tenant.into_uuid())
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        row.map(|r| rows::read_data_key(&r)).transpose()
    }

    async fn put_data_key(
        &self,
        tenant: TenantId,
        key: StoredDataKey,
    ) -> StoreResult<StoredDataKey> {
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, key_id, kek_id, wrapped, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (tenant_id) DO NOTHING",
        )
        .bind(tenant.into_uuid())
        .bind(i64::from(key.key_id))
        .bind(i64::from(key.kek_id))
        .bind(&key.wrapped)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let row =
            sqlx::query("SELECT key_id, kek_id, wrapped FROM tenant_keys WHERE tenant_id = ?")
                .bind(tenant.into_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows::read_data_key(&row)
    }

    async fn create_api_key(&self, tenant: TenantId, key: NewApiKey) -> StoreResult<ApiKey> {
        let id = ApiKeyId::new();
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO api_keys (id, tenant_id, prefix, digest, created_at) SELECT ?, id, ?, ?, ? FROM tenants WHERE id = ?",
        )
        .bind(id.into_uuid())
        .bind(&key.prefix)
        .bind(key.digest.as_slice())
        .bind(now)
        .bind(tenant.into_uuid())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(ApiKey {
            id,
            tenant_id: tenant,
            prefix: key.prefix,
            created_at: store::timestamp_from_ms(now),
        })
    }

    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> StoreResult<Option<ApiKey>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, prefix, created_at FROM api_keys WHERE digest = ? AND revoked_at IS NULL",
        )
        .bind(digest.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| rows::read_api_key(&r)).transpose()
    }

    async fn record_inbound(
        &self,
        tenant: TenantId,
        inbound: InboundMessage,
    ) -> StoreResult<InboundOutcome> {
        let now = now_ms();
        let t = tenant.into_uuid();
        let (_writer, mut tx) = self.write_tx().await?;

        if let Some(sid) = &inbound.provider_sid
            && let Some(dup) = duplicate(&mut tx, tenant, sid).await?
        {
            return Ok(InboundOutcome::Duplicate(dup));
        }

        // The end user and their conversation.
        // `seen`: when the end user was last seen (None for one created here).
        let (end_user_id, new_end_user, opted_out_before, conversation_id, seen) = match &inbound
            .contact
        {
            Contact::Phone { index, ciphertext } => {
                let found = sqlx::query(
                    "SELECT u.id AS uid, u.opted_out, u.last_seen_at, c.id AS cid FROM end_users u LEFT JOIN conversations c ON c.end_user_id = u.id WHERE u.tenant_id = ? AND u.phone_index = ?",
                )
                .bind(t)
                .bind(index.as_slice())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                match found {
                    Some(row) => {
                        let uid: uuid::Uuid = row.try_get("uid").map_err(db_err)?;
                        let opted: bool = row.try_get("opted_out").map_err(db_err)?;
                        let cid: Option<uuid::Uuid> = row.try_get("cid").map_err(db_err)?;
                        let seen: i64 = row.try_get("last_seen_at").map_err(db_err)?;
                        let user = EndUserId::from_uuid(uid);
                        let conv = match cid {
                            Some(c) => ConversationId::from_uuid(c),
                            None => insert_conversation(&mut tx, tenant, user, now).await?,
                        };
                        (user, false, opted, conv, Some(seen))
                    }
                    None => {
                        let user = EndUserId::new();
                        sqlx::query(
                            "INSERT INTO end_users (id, tenant_id, phone_index, phone_cipher, created_at, last_seen_at) VALUES (?, ?, ?, ?, ?, ?)",
                        )
                        .bind(user.into_uuid())
                        .bind(t)
                        .bind(index.as_slice())
                        .bind(ciphertext)
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                        let conv = insert_conversation(&mut tx, tenant, user, now).await?;
                        (user, true, false, conv, None)
                    }
                }
            }
            Contact::Conversation(cid) => {
                let row = sqlx::query(
                    "SELECT u.id AS uid, u.opted_out, u.last_seen_at FROM conversations c JOIN end_users u ON u.id = c.end_user_id WHERE c.tenant_id = ? AND c.id = ?",
                )
                .bind(t)
                .bind(cid.into_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?
                .ok_or(StoreError::NotFound)?;
                let uid: uuid::Uuid = row.try_get("uid").map_err(db_err)?;
                let opted: bool = row.try_get("opted_out").map_err(db_err)?;
                let seen: i64 = row.try_get("last_seen_at").map_err(db_err)?;
                (EndUserId::from_uuid(uid), false, opted, *cid, Some(seen))
            }
            Contact::Anonymous => {
                let user = EndUserId::new();
                sqlx::query(
                    "INSERT INTO end_users (id, tenant_id, created_at, last_seen_at) VALUES (?, ?, ?, ?)",
                )
                .bind(user.into_uuid())
                .bind(t)
                .bind(now)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let conv = insert_conversation(&mut tx, tenant, user, now).await?;
                (user, true, false, conv, None)
            }
        };

        // A known end user costs a read, not a write: last_seen_at is refreshed at most once
        // an hour (as on PostgreSQL), and opted_out only when a keyword changes it.
        let opted_out = ConsentKeyword::apply(inbound.keyword, opted_out_before);
        let stale = seen.is_some_and(|at| at < now.saturating_sub(3_600_000));
        if opted_out != opted_out_before || stale {
            sqlx::query("UPDATE end_users SET last_seen_at = ?, opted_out = ? WHERE id = ?")
                .bind(now)
                .bind(opted_out)
                .bind(end_user_id.into_uuid())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }

        let message_id = MessageId::new();
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, body_cipher, status, status_rank, provider_sid, created_at, updated_at) VALUES (?, ?, ?, 'inbound', ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(message_id.into_uuid())
        .bind(t)
        .bind(conversation_id.into_uuid())
        .bind(inbound.channel.as_str())
        .bind(&inbound.body)
        .bind(MessageStatus::Received.as_str())
        .bind(MessageStatus::Received.rank())
        .bind(inbound.provider_sid.as_deref())
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;

        // One turn per conversation: an inline turn takes the conversation's turn in the
        // same statement, if it is free; otherwise the worker waits for it. Only a
        // conversation the agents answer ('bot') gets a turn at all: the same statement says.
        let wants_turn = domain::consent::needs_turn(inbound.keyword, opted_out);
        let lease_ms = i64::try_from(inbound.turn.lease.as_millis()).unwrap_or(i64::MAX);
        let take = if wants_turn {
            inbound.turn.inline_holder.as_deref()
        } else {
            None
        };
        let turn = sqlx::query(
            "UPDATE conversations SET message_count = message_count + 1, last_message_at = ?1, \
             tenant_number = COALESCE(?2, tenant_number), \
             turn_holder = CASE WHEN ?3 IS NOT NULL AND handoff = 'bot' AND (turn_until IS NULL OR turn_until < ?1) THEN ?3 ELSE turn_holder END, \
             turn_until = CASE WHEN ?3 IS NOT NULL AND handoff = 'bot' AND (turn_until IS NULL OR turn_until < ?1) THEN ?4 ELSE turn_until END \
             WHERE id = ?5 \
             RETURNING ?3 IS NOT NULL AND handoff = 'bot' AND turn_holder IS ?3 AND turn_until IS ?4 AS inline, \
                       handoff = 'bot' AS agents",
        )
        .bind(now)
        .bind(inbound.tenant_number.as_ref().map(PhoneNumber::as_str))
        .bind(take)
        .bind(now.saturating_add(lease_ms))
        .bind(conversation_id.into_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let inline: bool = turn.try_get("inline").map_err(db_err)?;
        let agents: bool = turn.try_get("agents").map_err(db_err)?;

        if let Some(keyword) = inbound.keyword {
            sqlx::query(
                "INSERT INTO consent_events (id, tenant_id, end_user_id, keyword, message_id, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(uuid::Uuid::now_v7())
            .bind(t)
            .bind(end_user_id.into_uuid())
            .bind(keyword.as_str())
            .bind(message_id.into_uuid())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }

        let turn_job = if wants_turn && agents {
            let job = JobId::new();
            let plan = &inbound.turn;
            let (status, locked_until, holder) = if inline {
                (
                    "running",
                    Some(now.saturating_add(lease_ms)),
                    plan.inline_holder.as_deref(),
                )
            } else {
                ("queued", None, None)
            };
            sqlx::query(
                "INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at, max_attempts, locked_by, locked_until, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(job.into_uuid())
            .bind(t)
            .bind(JobKind::Turn.as_str())
            .bind(queue::turn_payload(conversation_id, message_id))
            .bind(format!("turn:{message_id}"))
            .bind(status)
            .bind(now)
            .bind(i64::from(plan.max_attempts))
            .bind(holder)
            .bind(locked_until)
            .bind(now)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            Some(job)
        } else {
            None
        };

        tx.commit().await.map_err(db_err)?;
        drop(_writer);
        if turn_job.is_some() && !inline {
            self.wake.notify_waiters();
        }
        // Read after the write, outside the writer's critical section.
        let state = if inline {
            agents::conversation_state(self, tenant, conversation_id).await?
        } else {
            store::ConversationState::default()
        };
        Ok(InboundOutcome::Recorded(RecordedInbound {
            message_id,
            conversation_id,
            end_user_id,
            new_end_user,
            opted_out,
            turn_job,
            inline,
            state,
        }))
    }

    async fn record_reply(&self, tenant: TenantId, reply: ReplyMessage) -> StoreResult<MessageId> {
        let now = now_ms();
        let (_writer, mut tx) = self.write_tx().await?;
        if let Some((job, lease)) = &reply.turn_job
            && !queue::complete_with(&mut *tx, *job, lease).await?
        {
            return Err(StoreError::Conflict(
                "the turn job is no longer held by this lease".into(),
            ));
        }
        // The turn's reply gives the conversation's turn back, under its lease holder
        // (inline) or "<lease holder>:<job id>" (worker). A turn's reply (one with a turn
        // job) to a conversation a person has is not recorded; other outbound messages
        // (consent keyword answers) are.
        let (inline_holder, worker_holder) = match &reply.turn_job {
            Some((job, lease)) => (
                Some(lease.holder.as_str()),
                Some(format!("{}:{job}", lease.holder)),
            ),
            None => (None, None),
        };
        let handoff: Option<String> = sqlx::query_scalar(
            "UPDATE conversations SET \
             message_count = message_count + CASE WHEN ?1 AND handoff = 'human' THEN 0 ELSE 1 END, \
             last_message_at = CASE WHEN ?1 AND handoff = 'human' THEN last_message_at ELSE ?2 END, \
             turn_holder = CASE WHEN turn_holder IN (?3, ?4) THEN NULL ELSE turn_holder END, \
             turn_until = CASE WHEN turn_holder IN (?3, ?4) THEN NULL ELSE turn_until END \
             WHERE tenant_id = ?5 AND id = ?6 RETURNING handoff",
        )
        .bind(reply.turn_job.is_some())
        .bind(now)
        .bind(inline_holder)
        .bind(worker_holder.as_deref())
        .bind(tenant.into_uuid())
        .bind(reply.conversation_id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let handoff = rows::parse_handoff(&handoff.ok_or(StoreError::NotFound)?)?;
        if reply.turn_job.is_some() && !handoff.agent_reply_allowed() {
            // The turn job is completed and the turn given back; the reply is dropped.
            tx.commit().await.map_err(db_err)?;
            return Err(StoreError::Conflict("conversation is with a person".into()));
        }
        let id = MessageId::new();
        insert_outbound(
            &mut tx,
            tenant,
            &Outbound {
                id,
                conversation: reply.conversation_id,
                in_reply_to: Some(reply.in_reply_to),
                channel: reply.channel,
                body: &reply.body,
                delivery: &reply.delivery,
                sent_by: None,
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        if matches!(reply.delivery, Delivery::Outbox { .. }) {
            self.wake.notify_waiters();
        }
        Ok(id)
    }

    async fn acquire_turn(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        holder: &str,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let now = now_ms();
        let (_writer, mut tx) = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE conversations SET turn_holder = ?, turn_until = ? \
             WHERE tenant_id = ? AND id = ? AND (turn_until IS NULL OR turn_until < ?)",
        )
        .bind(holder)
        .bind(now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX)))
        .bind(tenant.into_uuid())
        .bind(conversation.into_uuid())
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_turn(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        holder: &str,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "UPDATE conversations SET turn_holder = NULL, turn_until = NULL \
             WHERE tenant_id = ? AND id = ? AND turn_holder = ?",
        )
        .bind(tenant.into_uuid())
        .bind(conversation.into_uuid())
        .bind(holder)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn outbound_sms(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> StoreResult<Option<OutboundSms>> {
        let sql = format!(
            "SELECT m.{cols}, u.phone_cipher, u.opted_out, c.tenant_number FROM messages m JOIN conversations c ON c.id = m.conversation_id JOIN end_users u ON u.id = c.end_user_id WHERE m.tenant_id = ? AND m.id = ? AND m.direction = 'outbound'",
            cols = MESSAGE_COLUMNS.replace(", ", ", m.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(message.into_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let msg = read_message(&row)?;
        let to_ciphertext: Option<Vec<u8>> = row.try_get("phone_cipher").map_err(db_err)?;
        let opted_out: bool = row.try_get("opted_out").map_err(db_err)?;
        let number: Option<String> = row.try_get("tenant_number").map_err(db_err)?;
        let from = match number {
            Some(n) => {
                Some(PhoneNumber::parse(&n).map_err(|e| StoreError::Corrupt(e.to_string()))?)
            }
            None => tenant_numbers(&self.pool, tenant).await?.into_iter().next(),
        };
        Ok(Some(OutboundSms {
            message: msg,
            to_ciphertext,
            from,
            opted_out,
        }))
    }

    async fn set_message_status(
        &self,
        tenant: TenantId,
        message: MessageId,
        update: StatusUpdate,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE messages SET status = ?, status_rank = ?, provider_sid = COALESCE(?, provider_sid), error_code = COALESCE(?, error_code), updated_at = ? WHERE tenant_id = ? AND id = ? AND status_rank <= ?",
        )
        .bind(update.status.as_str())
        .bind(update.status.rank())
        .bind(update.provider_sid.as_deref())
        .bind(update.error_code.as_deref())
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(message.into_uuid())
        .bind(update.status.rank())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_status_by_provider_sid(
        &self,
        tenant: TenantId,
        provider_sid: &str,
        update: StatusUpdate,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE messages SET status = ?, status_rank = ?, error_code = COALESCE(?, error_code), updated_at = ? WHERE tenant_id = ? AND provider_sid = ? AND direction = 'outbound' AND status_rank <= ?",
        )
        .bind(update.status.as_str())
        .bind(update.status.rank())
        .bind(update.error_code.as_deref())
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(provider_sid)
        .bind(update.status.rank())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn end_user(&self, tenant: TenantId, id: EndUserId) -> StoreResult<Option<EndUser>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, phone_cipher, opted_out, created_at FROM end_users WHERE tenant_id = ? AND id = ?",
        )
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| rows::read_end_user(&r)).transpose()
    }

    async fn end_user_by_phone_index(
        &self,
        tenant: TenantId,
        index: &[u8; 32],
    ) -> StoreResult<Option<EndUser>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, phone_cipher, opted_out, created_at FROM end_users WHERE tenant_id = ? AND phone_index = ?",
        )
        .bind(tenant.into_uuid())
        .bind(index.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|r| rows::read_end_user(&r)).transpose()
    }

    async fn consent_history(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
    ) -> StoreResult<Vec<ConsentEvent>> {
        let rows = sqlx::query(
            "SELECT keyword, message_id, created_at FROM consent_events WHERE tenant_id = ? AND end_user_id = ? ORDER BY id",
        )
        .bind(tenant.into_uuid())
        .bind(end_user.into_uuid())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::read_consent).collect()
    }

    async fn list_conversations(
        &self,
        tenant: TenantId,
        page: Page,
    ) -> StoreResult<Vec<Conversation>> {
        let rows = sqlx::query(
            concat!("SELECT ", conversation_columns!(), " FROM conversations WHERE tenant_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"),
        )
        .bind(tenant.into_uuid())
        .bind(page.before)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::read_conversation).collect()
    }

    async fn get_conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE tenant_id = ? AND id = ?"
        ))
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(rows::read_conversation).transpose()
    }

    async fn update_handoff(
        &self,
        tenant: TenantId,
        id: ConversationId,
        event: domain::HandoffEvent,
        staff: Option<&str>,
    ) -> StoreResult<Option<Conversation>> {
        let (_writer, mut tx) = self.write_tx().await?;
        let row = sqlx::query(concat!(
            "UPDATE conversations SET ",
            handoff_set!(),
            " WHERE tenant_id = ?4 AND id = ?5 RETURNING ",
            conversation_columns!()
        ))
        .bind(handoff_event(event))
        .bind(now_ms())
        .bind(staff)
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.as_ref().map(rows::read_conversation).transpose()
    }

    async fn list_handed_off(
        &self,
        tenant: TenantId,
        page: Page,
    ) -> StoreResult<Vec<Conversation>> {
        // `handoff <> 'bot'` as in the partial index conversations_handed_off.
        let rows = sqlx::query(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE tenant_id = ? AND handoff <> 'bot' ORDER BY handoff_at, id LIMIT ?"
        ))
        .bind(tenant.into_uuid())
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(rows::read_conversation).collect()
    }

    async fn record_staff_reply(
        &self,
        tenant: TenantId,
        reply: StaffReply,
    ) -> StoreResult<StaffReplyOutcome> {
        let now = now_ms();
        let t = tenant.into_uuid();
        let (_writer, mut tx) = self.write_tx().await?;
        let row = sqlx::query(
            "SELECT u.opted_out, EXISTS (SELECT 1 FROM messages m \
                     WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id AND m.id = ?3) AS recorded \
             FROM conversations c JOIN end_users u ON u.id = c.end_user_id \
             WHERE c.tenant_id = ?1 AND c.id = ?2",
        )
        .bind(t)
        .bind(reply.conversation_id.into_uuid())
        .bind(reply.id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
        let already: bool = row.try_get("recorded").map_err(db_err)?;
        if already {
            // A retried request: the first one's message, and nothing more.
            let sql =
                format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND id = ?");
            let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(t)
                .bind(reply.id.into_uuid())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
            return Ok(StaffReplyOutcome::Recorded(read_message(&stored)?));
        }
        let opted_out: bool = row.try_get("opted_out").map_err(db_err)?;
        if opted_out && reply.channel == Channel::Sms {
            return Ok(StaffReplyOutcome::OptedOut);
        }
        // HandoffEvent::Take (see `handoff_set!`), and the counters of an outbound message.
        sqlx::query(
            "UPDATE conversations SET handoff = 'human', handoff_staff = ?1, \
             handoff_at = COALESCE(handoff_at, ?2), message_count = message_count + 1, last_message_at = ?2 \
             WHERE tenant_id = ?3 AND id = ?4",
        )
        .bind(&reply.staff)
        .bind(now)
        .bind(t)
        .bind(reply.conversation_id.into_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let stored = insert_outbound(
            &mut tx,
            tenant,
            &Outbound {
                id: reply.id,
                conversation: reply.conversation_id,
                in_reply_to: None,
                channel: reply.channel,
                body: &reply.body,
                delivery: &reply.delivery,
                sent_by: Some(&reply.staff),
            },
            now,
        )
        .await?;
        tx.commit().await.map_err(db_err)?;
        if matches!(reply.delivery, Delivery::Outbox { .. }) {
            self.wake.notify_waiters();
        }
        Ok(StaffReplyOutcome::Recorded(stored))
    }

    async fn list_messages(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        page: Page,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND conversation_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(conversation.into_uuid())
            .bind(page.before)
            .bind(page.before)
            .bind(i64::from(page.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?;
        rows.iter().map(read_message).collect()
    }

    async fn get_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> StoreResult<Option<StoredMessage>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(id.into_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(read_message).transpose()
    }

    async fn reply_to(
        &self,
        tenant: TenantId,
        inbound: MessageId,
    ) -> StoreResult<Option<StoredMessage>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND in_reply_to = ? ORDER BY id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(inbound.into_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        row.as_ref().map(read_message).transpose()
    }

    async fn add_kb_entry(&self, tenant: TenantId, entry: KbEntryInput) -> StoreResult<KbEntry> {
        let id = KbEntryId::new();
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO kb_entries (id, tenant_id, title, body, created_at, updated_at) SELECT ?, id, ?, ?, ?, ? FROM tenants WHERE id = ?",
        )
        .bind(id.into_uuid())
        .bind(&entry.title)
        .bind(&entry.body)
        .bind(now)
        .bind(now)
        .bind(tenant.into_uuid())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let at = store::timestamp_from_ms(now);
        Ok(KbEntry {
            id,
            tenant_id: tenant,
            title: entry.title,
            body: entry.body,
            created_at: at,
            updated_at: at,
        })
    }

    async fn update_kb_entry(
        &self,
        tenant: TenantId,
        id: KbEntryId,
        entry: KbEntryInput,
    ) -> StoreResult<KbEntry> {
        let done = sqlx::query(
            "UPDATE kb_entries SET title = ?, body = ?, updated_at = ? WHERE tenant_id = ? AND id = ?",
        )
        .bind(&entry.title)
        .bind(&entry.body)
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_kb_entry(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<()> {
        let done = sqlx::query("DELETE FROM kb_entries WHERE tenant_id = ? AND id = ?")
            .bind(tenant.into_uuid())
            .bind(id.into_uuid())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<Option<KbEntry>> {
        let row = sqlx::query(
            "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = ? AND id = ?",
        )
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.as_ref().map(read_kb).transpose()
    }

    async fn list_kb_entries(&self, tenant: TenantId, page: Page) -> StoreResult<Vec<KbEntry>> {
        let rows = sqlx::query(
            "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = ? AND (? IS NULL OR id < ?) ORDER BY id DESC LIMIT ?",
        )
        .bind(tenant.into_uuid())
        .bind(page.before)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter().map(read_kb).collect()
    }

    async fn record_model_usage(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        day: i64,
        usage: store::ModelUsage,
    ) -> StoreResult<()> {
        let (_writer, mut tx) = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO model_usage_daily (tenant_id, day, end_user_id, calls, input_tokens, output_tokens, cost_micros) \
             VALUES (?, ?, ?, ?, ?, ?, ?) \
             ON CONFLICT (tenant_id, day, end_user_id) DO UPDATE SET \
               calls = calls + excluded.calls, input_tokens = input_tokens + excluded.input_tokens, \
               output_tokens = output_tokens + excluded.output_tokens, cost_micros = cost_micros + excluded.cost_micros",
        )
        .bind(tenant.into_uuid())
        .bind(day)
        .bind(end_user.into_uuid())
        .bind(rows::to_i64(usage.calls))
        .bind(rows::to_i64(usage.input_tokens))
        .bind(rows::to_i64(usage.output_tokens))
        .bind(rows::to_i64(usage.cost_micros))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn model_usage_on(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        day: i64,
    ) -> StoreResult<store::UsageTotals> {
        let row = sqlx::query(
            "SELECT coalesce(sum(calls), 0) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens, \
                    coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cost_micros), 0) AS cost_micros, \
                    coalesce(sum(calls) FILTER (WHERE end_user_id = ?3), 0) AS u_calls, \
                    coalesce(sum(input_tokens) FILTER (WHERE end_user_id = ?3), 0) AS u_input_tokens, \
                    coalesce(sum(output_tokens) FILTER (WHERE end_user_id = ?3), 0) AS u_output_tokens, \
                    coalesce(sum(cost_micros) FILTER (WHERE end_user_id = ?3), 0) AS u_cost_micros \
             FROM model_usage_daily WHERE tenant_id = ?1 AND day = ?2",
        )
        .bind(tenant.into_uuid())
        .bind(day)
        .bind(end_user.into_uuid())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        rows::read_usage_totals(&row)
    }

    async fn put_profile(
        &self,
        tenant: TenantId,
        name: &str,
        source: &str,
    ) -> StoreResult<StoredProfile> {
        agents::put_profile(self, tenant, name, source).await
    }

    async fn get_profile(
        &self,
        tenant: TenantId,
        name: &str,
        version: Option<u32>,
    ) -> StoreResult<Option<StoredProfile>> {
        agents::get_profile(self, tenant, name, version).await
    }

    async fn list_profiles(&self, tenant: TenantId) -> StoreResult<Vec<StoredProfile>> {
        agents::list_profiles(self, tenant).await
    }

    async fn profile_versions(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> StoreResult<Vec<StoredProfile>> {
        agents::profile_versions(self, tenant, name).await
    }

    async fn default_profile(&self, tenant: TenantId) -> StoreResult<Option<String>> {
        agents::default_profile(self, tenant).await
    }

    async fn set_default_profile(&self, tenant: TenantId, name: Option<&str>) -> StoreResult<()> {
        agents::set_default_profile(self, tenant, name).await
    }

    async fn model_settings(&self, tenant: TenantId) -> StoreResult<Option<Vec<u8>>> {
        agents::model_settings(self, tenant).await
    }

    async fn set_model_settings(&self, tenant: TenantId, sealed: Option<&[u8]>) -> StoreResult<()> {
        agents::set_model_settings(self, tenant, sealed).await
    }

    async fn conversation_state(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> StoreResult<ConversationState> {
        agents::conversation_state(self, tenant, conversation).await
    }

    async fn save_conversation_state(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        state: &ConversationState,
    ) -> StoreResult<u64> {
        agents::save_conversation_state(self, tenant, conversation, state).await
    }

    async fn add_fact(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        fact: NewFact,
    ) -> StoreResult<Fact> {
        agents::add_fact(self, tenant, end_user, fact).await
    }

    async fn list_facts(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        limit: u32,
    ) -> StoreResult<Vec<Fact>> {
        agents::list_facts(self, tenant, end_user, limit).await
    }

    async fn delete_fact(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        fact: FactId,
    ) -> StoreResult<bool> {
        agents::delete_fact(self, tenant, end_user, fact).await
    }

    async fn create_reminder(
        &self,
        tenant: TenantId,
        reminder: NewReminder,
    ) -> StoreResult<Reminder> {
        agents::create_reminder(self, tenant, reminder).await
    }

    async fn get_reminder(
        &self,
        tenant: TenantId,
        id: ReminderId,
    ) -> StoreResult<Option<Reminder>> {
        agents::get_reminder(self, tenant, id).await
    }

    async fn list_reminders(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        all: bool,
        limit: u32,
    ) -> StoreResult<Vec<Reminder>> {
        agents::list_reminders(self, tenant, end_user, all, limit).await
    }

    async fn cancel_reminder(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        id: ReminderId,
    ) -> StoreResult<bool> {
        agents::cancel_reminder(self, tenant, end_user, id).await
    }

    async fn deliver_reminder(
        &self,
        tenant: TenantId,
        id: ReminderId,
        body: Vec<u8>,
        send_max_attempts: u32,
        job: (JobId, store::Lease),
    ) -> StoreResult<ReminderDelivery> {
        agents::deliver_reminder(self, tenant, id, body, send_max_attempts, job).await
    }

    async fn record_turn_step(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        turn: MessageId,
        step: NewTurnStep,
    ) -> StoreResult<()> {
        agents::record_turn_step(self, tenant, conversation, turn, step).await
    }

    async fn turn_steps(&self, tenant: TenantId, turn: MessageId) -> StoreResult<Vec<TurnStep>> {
        agents::turn_steps(self, tenant, turn).await
    }

    async fn export_snapshot(&self, sink: &mut dyn store::SnapshotSink) -> StoreResult<()> {
        snapshot::export(self, sink).await
    }

    async fn restore_snapshot(
        &self,
        source: &mut dyn store::SnapshotSource,
        commit: bool,
    ) -> StoreResult<store::RestoreCounts> {
        snapshot::restore(self, source, commit).await
    }

    async fn schema_columns(&self) -> StoreResult<Vec<(String, String)>> {
        snapshot::schema_columns(self).await
    }

    async fn search_kb(
        &self,
        tenant: TenantId,
        query: &str,
        limit: u32,
    ) -> StoreResult<Vec<KbHit>> {
        let Some(match_expr) = fts5_query(query) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT e.id, e.tenant_id, e.title, e.body, e.created_at, e.updated_at, bm25(kb_fts, 2.0, 1.0) AS rank FROM kb_fts JOIN kb_entries e ON e.rowid = kb_fts.rowid WHERE kb_fts MATCH ? AND e.tenant_id = ? ORDER BY rank LIMIT ?",
        )
        .bind(match_expr)
        .bind(tenant.into_uuid())
        .bind(i64::from(limit.clamp(1, 50)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let rank: f64 = r.try_get("rank").map_err(db_err)?;
                Ok(KbHit {
                    entry: read_kb(r)?,
                    score: -rank,
                })
            })
            .collect()
    }

    async fn get_kb_entries(
        &self,
        tenant: TenantId,
        ids: &[KbEntryId],
    ) -> StoreResult<Vec<KbEntry>> {
        kb_embeddings::get_entries(self, tenant, ids).await
    }

    async fn put_kb_embedding(
        &self,
        tenant: TenantId,
        entry: &KbEntry,
        model: &str,
        content_hash: &[u8; 32],
        vector: &[f32],
    ) -> StoreResult<()> {
        kb_embeddings::put(self, tenant, entry, model, content_hash, vector).await
    }

    async fn kb_embeddings(
        &self,
        tenant: TenantId,
        model: &str,
    ) -> StoreResult<Vec<(KbEntryId, Vec<f32>)>> {
        kb_embeddings::vectors(self, tenant, model).await
    }

    async fn kb_entries_to_embed(
        &self,
        tenant: TenantId,
        model: &str,
        page: Page,
    ) -> StoreResult<Vec<KbEntry>> {
        kb_embeddings::to_embed(self, tenant, model, page).await
    }
}

/// An outbound message to record: a turn's reply, a delivered reminder (which answers no
/// inbound message), or a member of staff's message.
pub(crate) struct Outbound<'a> {
    pub id: MessageId,
    pub conversation: ConversationId,
    pub in_reply_to: Option<MessageId>,
    pub channel: Channel,
    pub body: &'a [u8],
    pub delivery: &'a Delivery,
    /// The member of staff who wrote it; None for the agents' messages.
    pub sent_by: Option<&'a str>,
}

/// Records an outbound message in the tenant's conversation and, for outbox delivery,
/// enqueues its `send_sms` job; `NotFound` when the conversation is not the tenant's. The
/// caller counts the message in its conversation (with whatever else that update does) and
/// wakes workers after committing.
pub(crate) async fn insert_outbound(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    message: &Outbound<'_>,
    now: i64,
) -> StoreResult<StoredMessage> {
    let status = match message.delivery {
        Delivery::Inline => MessageStatus::RepliedInline,
        Delivery::Outbox { .. } => MessageStatus::Queued,
        Delivery::Stored => MessageStatus::Sent,
    };
    let id = message.id;
    let sql = format!(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, body_cipher, status, status_rank, in_reply_to, sent_by, created_at, updated_at) \
         SELECT ?, tenant_id, id, 'outbound', ?, ?, ?, ?, ?, ?, ?, ? FROM conversations WHERE tenant_id = ? AND id = ? \
         RETURNING {MESSAGE_COLUMNS}"
    );
    let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.into_uuid())
        .bind(message.channel.as_str())
        .bind(message.body)
        .bind(status.as_str())
        .bind(status.rank())
        .bind(message.in_reply_to.map(MessageId::into_uuid))
        .bind(message.sent_by)
        .bind(now)
        .bind(now)
        .bind(tenant.into_uuid())
        .bind(message.conversation.into_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?
        .ok_or(StoreError::NotFound)?;
    if let Delivery::Outbox { max_attempts } = message.delivery {
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at, max_attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant.into_uuid())
        .bind(JobKind::SendSms.as_str())
        .bind(queue::message_payload(id))
        .bind(format!("send_sms:{id}"))
        .bind(now)
        .bind(i64::from(*max_attempts))
        .bind(now)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    }
    read_message(&stored)
}

async fn insert_conversation(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    user: EndUserId,
    now: i64,
) -> StoreResult<ConversationId> {
    let id = ConversationId::new();
    sqlx::query(
        "INSERT INTO conversations (id, tenant_id, end_user_id, created_at, last_message_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(id.into_uuid())
    .bind(tenant.into_uuid())
    .bind(user.into_uuid())
    .bind(now)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(id)
}

async fn duplicate(
    tx: &mut Transaction<'static, Sqlite>,
    tenant: TenantId,
    sid: &str,
) -> StoreResult<Option<DuplicateInbound>> {
    let row = sqlx::query(
        "SELECT id, conversation_id FROM messages WHERE tenant_id = ? AND provider_sid = ? AND direction = 'inbound'",
    )
    .bind(tenant.into_uuid())
    .bind(sid)
    .fetch_optional(&mut **tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else { return Ok(None) };
    let id: uuid::Uuid = row.try_get("id").map_err(db_err)?;
    let conv: uuid::Uuid = row.try_get("conversation_id").map_err(db_err)?;
    let sql = format!(
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = ? AND in_reply_to = ? ORDER BY id LIMIT 1"
    );
    let reply = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.into_uuid())
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(Some(DuplicateInbound {
        message_id: MessageId::from_uuid(id),
        conversation_id: ConversationId::from_uuid(conv),
        reply: reply.as_ref().map(read_message).transpose()?,
    }))
}

/// Turns free text into a safe FTS5 query: each word becomes a quoted prefix term, joined
/// with OR so partial matches still rank. Returns None when nothing searchable is left.
fn fts5_query(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .take(32)
        .map(|w| format!("\"{}\"*", w.to_lowercase()))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" OR "))
    }
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn fts_queries_are_quoted_and_bounded() {
        assert_eq!(
            fts5_query("Opening hours?").as_deref(),
            Some("\"opening\"* OR \"hours\"*")
        );
        assert_eq!(
            fts5_query("\" OR NEAR(x) -- ;"),
            Some("\"or\"* OR \"near\"*".to_owned())
        );
        assert_eq!(fts5_query("?! a"), None);
    }
}
