//! PostgreSQL implementation of the store: the production backend. Every transaction that
//! touches tenant data first sets `app.tenant_id`, which the row-level security policies
//! compare against (see `migrations/`); the job queue claims with `FOR UPDATE SKIP LOCKED`
//! and wakes workers in every process through `LISTEN/NOTIFY`.

mod agents;
mod hot_batch;
mod kb_embeddings;
mod queue;
mod rows;
mod snapshot;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::jobs::JobKind;
use domain::{
    ApiKeyId, Channel, ConversationId, EndUserId, FactId, JobId, KbEntryId, MessageId,
    MessageStatus, PhoneNumber, ReminderId, TenantId,
};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use store::{
    ApiKey, Backend, ConsentEvent, Conversation, ConversationState, Delivery, DuplicateInbound,
    EndUser, Fact, InboundMessage, InboundOutcome, KbEntry, KbEntryInput, KbHit, MigrationStatus,
    NewApiKey, NewFact, NewReminder, NewTenant, NewTurnStep, OutboundSms, Page, Reminder,
    ReminderDelivery, ReplyMessage, StaffReply, StaffReplyOutcome, StatusUpdate, Store, StoreError,
    StoreResult, StoredDataKey, StoredMessage, StoredProfile, Tenant, TurnStep,
};
use tokio::sync::{Notify, OnceCell};

use crate::hot_batch::{HotPath, InboundArgs, ReplyArgs, ReplyOutcome};
use crate::rows::{db_err, now_ms, read_kb, read_message, read_tenant_row};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The checksum of every embedded migration, in order (for tools that cache migrated
/// databases, such as the test kit's template database).
pub fn migration_checksums() -> impl Iterator<Item = &'static [u8]> {
    MIGRATOR.iter().map(|m| &*m.checksum)
}

/// Pool sizing and timeouts.
#[derive(Clone, Debug)]
pub struct PgSettings {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// Server-side limit for any one statement.
    pub statement_timeout: Duration,
}

impl Default for PgSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15),
        }
    }
}

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    wake: Arc<Notify>,
    listener: Arc<OnceCell<()>>,
    /// Batches the message path's writes (hot_batch.rs).
    hot: HotPath,
}

impl PgStore {
    pub async fn connect(url: &str, settings: &PgSettings) -> StoreResult<Self> {
        let statement_timeout = settings.statement_timeout.as_millis().to_string();
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("concierge")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .min_connections(1)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options.clone())
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        // The message path's batches have connections of their own (hot_batch.rs), opened
        // when first needed.
        let batches = PgPoolOptions::new()
            .max_connections(u32::try_from(hot_batch::IN_FLIGHT).unwrap_or(2))
            .min_connections(0)
            .acquire_timeout(settings.acquire_timeout)
            .connect_lazy_with(options);
        Ok(Self {
            hot: HotPath::start(batches, pool.clone()),
            pool,
            wake: Arc::new(Notify::new()),
            listener: Arc::new(OnceCell::new()),
        })
    }

    /// Applies the embedded migrations (under an advisory lock, so replicas can race safely).
    pub async fn migrate(&self) -> StoreResult<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Database(e.to_string()))
    }

    #[must_use]
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.hot.close().await;
        self.pool.close().await;
    }

    /// A transaction bound to one tenant: row-level security sees only its rows. `BEGIN` and
    /// the setting travel in one round trip (the id is a formatted UUID, so it is safe to
    /// inline).
    async fn tenant_tx(&self, tenant: TenantId) -> StoreResult<Transaction<'static, Postgres>> {
        let begin = format!("BEGIN; SELECT set_config('app.tenant_id', '{tenant}', true)");
        self.pool
            .begin_with(sqlx::AssertSqlSafe(begin))
            .await
            .map_err(db_err)
    }

    async fn write_tx(&self) -> StoreResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db_err)
    }
}

async fn tenant_numbers(
    executor: impl sqlx::PgExecutor<'_>,
    tenant: TenantId,
) -> StoreResult<Vec<PhoneNumber>> {
    let rows = sqlx::query(
        "SELECT e164 FROM tenant_phone_numbers WHERE tenant_id = $1 ORDER BY created_at, e164",
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

/// One outbound message for `concierge_record_reply` (migrations/0002_hot_path.sql): a turn's
/// reply, or a delivered reminder (no inbound message it answers, no turn job).
pub(crate) struct ReplyCall<'a> {
    pub conversation: ConversationId,
    pub in_reply_to: Option<MessageId>,
    pub id: MessageId,
    pub channel: Channel,
    pub body: Vec<u8>,
    pub delivery: &'a Delivery,
    pub turn_job: Option<&'a (JobId, store::Lease)>,
}

/// The status an outbound message starts with, by how it reaches the end user.
pub(crate) const fn reply_status(delivery: &Delivery) -> MessageStatus {
    match delivery {
        Delivery::Inline => MessageStatus::RepliedInline,
        Delivery::Outbox { .. } => MessageStatus::Queued,
        Delivery::Stored => MessageStatus::Sent,
    }
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
/// `$1` the event (`handoff_event`), `$2` now, `$3` the member of staff. `handoff_at` is set
/// when the conversation leaves the agents (kept while it stays with a person) and cleared
/// on release; `take` records who took it, `request` keeps them, `release` clears them.
macro_rules! handoff_set {
    () => {
        "handoff = CASE $1::text WHEN 'request' THEN (CASE WHEN handoff = 'bot' THEN 'pending' ELSE handoff END) \
                                 WHEN 'take' THEN 'human' ELSE 'bot' END, \
         handoff_at = CASE WHEN $1::text = 'release' THEN NULL ELSE COALESCE(handoff_at, $2) END, \
         handoff_staff = CASE $1::text WHEN 'request' THEN handoff_staff WHEN 'take' THEN $3 ELSE NULL END"
    };
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
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
        let exists: Option<String> =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations')::text")
                .fetch_one(&self.pool)
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
        let mut tx = self.write_tx().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.into_uuid())
            .bind(tenant.name.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for phone in &tenant.phone_numbers {
            let inserted = sqlx::query(
                "INSERT INTO tenant_phone_numbers (e164, tenant_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (e164) DO NOTHING",
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
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
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
            sqlx::query_scalar("SELECT tenant_id FROM tenant_phone_numbers WHERE e164 = $1")
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
        let mut tx = self.tenant_tx(tenant).await?;
        let row =
            sqlx::query("SELECT key_id, kek_id, wrapped FROM tenant_keys WHERE tenant_id = $1")
                .bind(tenant.into_uuid())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.map(|r| rows::read_data_key(&r)).transpose()
    }

    async fn put_data_key(
        &self,
        tenant: TenantId,
        key: StoredDataKey,
    ) -> StoreResult<StoredDataKey> {
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO tenant_keys (tenant_id, key_id, kek_id, wrapped, created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id) DO NOTHING",
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
            sqlx::query("SELECT key_id, kek_id, wrapped FROM tenant_keys WHERE tenant_id = $1")
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
            "INSERT INTO api_keys (id, tenant_id, prefix, digest, created_at) SELECT $1, id, $2, $3, $4 FROM tenants WHERE id = $5",
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
            "SELECT id, tenant_id, prefix, created_at FROM api_keys WHERE digest = $1 AND revoked_at IS NULL",
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
        // One statement (see migrations/0002_hot_path.sql), batched with the other requests'
        // (hot_batch.rs): one round trip and one commit for all of them.
        let args = InboundArgs::new(tenant, inbound);
        let sid = args.provider_sid.clone();
        match self.hot.record_inbound(args).await? {
            Some(outcome) => Ok(outcome),
            // The provider id was claimed before: nothing was written; answer as the first
            // delivery was answered.
            None => {
                let sid = sid.as_deref().unwrap_or_default();
                let mut tx = self.tenant_tx(tenant).await?;
                let dup = duplicate(&mut tx, tenant, sid).await?;
                tx.commit().await.map_err(db_err)?;
                dup.map(InboundOutcome::Duplicate)
                    .ok_or(StoreError::NotFound)
            }
        }
    }

    async fn record_reply(&self, tenant: TenantId, reply: ReplyMessage) -> StoreResult<MessageId> {
        let id = MessageId::new();
        let call = ReplyCall {
            conversation: reply.conversation_id,
            in_reply_to: Some(reply.in_reply_to),
            id,
            channel: reply.channel,
            body: reply.body,
            delivery: &reply.delivery,
            turn_job: reply.turn_job.as_ref(),
        };
        match self.hot.record_reply(ReplyArgs::new(tenant, call)).await? {
            ReplyOutcome::Recorded => {}
            ReplyOutcome::LeaseLost => {
                return Err(StoreError::Conflict(
                    "the turn job is no longer held by this lease".into(),
                ));
            }
            ReplyOutcome::WithPerson => {
                return Err(StoreError::Conflict("conversation is with a person".into()));
            }
        }
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
        let mut tx = self.tenant_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE conversations SET turn_holder = $1, turn_until = $2 \
             WHERE tenant_id = $3 AND id = $4 AND (turn_until IS NULL OR turn_until < $5)",
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
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "UPDATE conversations SET turn_holder = NULL, turn_until = NULL \
             WHERE tenant_id = $1 AND id = $2 AND turn_holder = $3",
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
        let mut tx = self.tenant_tx(tenant).await?;
        let sql = format!(
            "SELECT m.{cols}, u.phone_cipher, u.opted_out, c.tenant_number FROM messages m JOIN conversations c ON c.id = m.conversation_id JOIN end_users u ON u.id = c.end_user_id WHERE m.tenant_id = $1 AND m.id = $2 AND m.direction = 'outbound'",
            cols = MESSAGE_COLUMNS.replace(", ", ", m.")
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(message.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.tenant_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE messages SET status = $1, status_rank = $2, provider_sid = COALESCE($3, provider_sid), error_code = COALESCE($4, error_code), updated_at = $5 WHERE tenant_id = $6 AND id = $7 AND status_rank <= $8",
        )
        .bind(update.status.as_str())
        .bind(update.status.rank())
        .bind(update.provider_sid.as_deref())
        .bind(update.error_code.as_deref())
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(message.into_uuid())
        .bind(update.status.rank())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn set_status_by_provider_sid(
        &self,
        tenant: TenantId,
        provider_sid: &str,
        update: StatusUpdate,
    ) -> StoreResult<bool> {
        let mut tx = self.tenant_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE messages SET status = $1, status_rank = $2, error_code = COALESCE($3, error_code), updated_at = $4 WHERE tenant_id = $5 AND provider_sid = $6 AND direction = 'outbound' AND status_rank <= $7",
        )
        .bind(update.status.as_str())
        .bind(update.status.rank())
        .bind(update.error_code.as_deref())
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(provider_sid)
        .bind(update.status.rank())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn end_user(&self, tenant: TenantId, id: EndUserId) -> StoreResult<Option<EndUser>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, phone_cipher, opted_out, created_at FROM end_users WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.map(|r| rows::read_end_user(&r)).transpose()
    }

    async fn end_user_by_phone_index(
        &self,
        tenant: TenantId,
        index: &[u8; 32],
    ) -> StoreResult<Option<EndUser>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, phone_cipher, opted_out, created_at FROM end_users WHERE tenant_id = $1 AND phone_index = $2",
        )
        .bind(tenant.into_uuid())
        .bind(index.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.map(|r| rows::read_end_user(&r)).transpose()
    }

    async fn consent_history(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
    ) -> StoreResult<Vec<ConsentEvent>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT keyword, message_id, created_at FROM consent_events WHERE tenant_id = $1 AND end_user_id = $2 ORDER BY id",
        )
        .bind(tenant.into_uuid())
        .bind(end_user.into_uuid())
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.iter().map(rows::read_consent).collect()
    }

    async fn list_conversations(
        &self,
        tenant: TenantId,
        page: Page,
    ) -> StoreResult<Vec<Conversation>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            concat!("SELECT ", conversation_columns!(), " FROM conversations WHERE tenant_id = $1 AND ($2 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"),
        )
        .bind(tenant.into_uuid())
        .bind(page.before)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.iter().map(rows::read_conversation).collect()
    }

    async fn get_conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.as_ref().map(rows::read_conversation).transpose()
    }

    async fn update_handoff(
        &self,
        tenant: TenantId,
        id: ConversationId,
        event: domain::HandoffEvent,
        staff: Option<&str>,
    ) -> StoreResult<Option<Conversation>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(concat!(
            "UPDATE conversations SET ",
            handoff_set!(),
            " WHERE tenant_id = $4 AND id = $5 RETURNING ",
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
        let mut tx = self.tenant_tx(tenant).await?;
        // `handoff <> 'bot'` as in the partial index conversations_handed_off.
        let rows = sqlx::query(concat!(
            "SELECT ",
            conversation_columns!(),
            " FROM conversations WHERE tenant_id = $1 AND handoff <> 'bot' ORDER BY handoff_at, id LIMIT $2"
        ))
        .bind(tenant.into_uuid())
        .bind(i64::from(page.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.iter().map(rows::read_conversation).collect()
    }

    async fn record_staff_reply(
        &self,
        tenant: TenantId,
        reply: StaffReply,
    ) -> StoreResult<StaffReplyOutcome> {
        let outcome = staff_reply(self, tenant, &reply).await?;
        if matches!(outcome, StaffReplyOutcome::Recorded(_))
            && matches!(reply.delivery, Delivery::Outbox { .. })
        {
            self.wake.notify_waiters();
        }
        Ok(outcome)
    }

    async fn list_messages(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        page: Page,
    ) -> StoreResult<Vec<StoredMessage>> {
        let sql = format!("SELECT {MESSAGE_COLUMNS} FROM concierge_list_messages($1, $2, $3, $4)");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(conversation.into_uuid())
            .bind(page.before)
            .bind(i32::try_from(page.limit).unwrap_or(i32::MAX))
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
        let mut tx = self.tenant_tx(tenant).await?;
        let sql =
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(id.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.as_ref().map(read_message).transpose()
    }

    async fn reply_to(
        &self,
        tenant: TenantId,
        inbound: MessageId,
    ) -> StoreResult<Option<StoredMessage>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND in_reply_to = $2 ORDER BY id LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant.into_uuid())
            .bind(inbound.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.as_ref().map(read_message).transpose()
    }

    async fn add_kb_entry(&self, tenant: TenantId, entry: KbEntryInput) -> StoreResult<KbEntry> {
        let mut tx = self.tenant_tx(tenant).await?;
        let id = KbEntryId::new();
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO kb_entries (id, tenant_id, title, body, created_at, updated_at) SELECT $1, id, $2, $3, $4, $5 FROM tenants WHERE id = $6",
        )
        .bind(id.into_uuid())
        .bind(&entry.title)
        .bind(&entry.body)
        .bind(now)
        .bind(now)
        .bind(tenant.into_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.tenant_tx(tenant).await?;
        let done = sqlx::query(
            "UPDATE kb_entries SET title = $1, body = $2, updated_at = $3 WHERE tenant_id = $4 AND id = $5",
        )
        .bind(&entry.title)
        .bind(&entry.body)
        .bind(now_ms())
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        self.get_kb_entry(tenant, id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    async fn delete_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        let done = sqlx::query("DELETE FROM kb_entries WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.into_uuid())
            .bind(id.into_uuid())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn get_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<Option<KbEntry>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        row.as_ref().map(read_kb).transpose()
    }

    async fn list_kb_entries(&self, tenant: TenantId, page: Page) -> StoreResult<Vec<KbEntry>> {
        let mut tx = self.tenant_tx(tenant).await?;
        let rows = sqlx::query(
            "SELECT id, tenant_id, title, body, created_at, updated_at FROM kb_entries WHERE tenant_id = $1 AND ($2 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4",
        )
        .bind(tenant.into_uuid())
        .bind(page.before)
        .bind(page.before)
        .bind(i64::from(page.limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        rows.iter().map(read_kb).collect()
    }

    async fn record_model_usage(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        day: i64,
        usage: store::ModelUsage,
    ) -> StoreResult<()> {
        let mut tx = self.tenant_tx(tenant).await?;
        sqlx::query(
            "INSERT INTO model_usage_daily AS u (tenant_id, day, end_user_id, calls, input_tokens, output_tokens, cost_micros) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (tenant_id, day, end_user_id) DO UPDATE SET \
               calls = u.calls + excluded.calls, input_tokens = u.input_tokens + excluded.input_tokens, \
               output_tokens = u.output_tokens + excluded.output_tokens, cost_micros = u.cost_micros + excluded.cost_micros",
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
        let mut tx = self.tenant_tx(tenant).await?;
        let row = sqlx::query(
            "SELECT coalesce(sum(calls), 0)::bigint AS calls, coalesce(sum(input_tokens), 0)::bigint AS input_tokens, \
                    coalesce(sum(output_tokens), 0)::bigint AS output_tokens, coalesce(sum(cost_micros), 0)::bigint AS cost_micros, \
                    coalesce(sum(calls) FILTER (WHERE end_user_id = $3), 0)::bigint AS u_calls, \
                    coalesce(sum(input_tokens) FILTER (WHERE end_user_id = $3), 0)::bigint AS u_input_tokens, \
                    coalesce(sum(output_tokens) FILTER (WHERE end_user_id = $3), 0)::bigint AS u_output_tokens, \
                    coalesce(sum(cost_micros) FILTER (WHERE end_user_id = $3), 0)::bigint AS u_cost_micros \
             FROM model_usage_daily WHERE tenant_id = $1 AND day = $2",
        )
        .bind(tenant.into_uuid())
        .bind(day)
        .bind(end_user.into_uuid())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        let Some(tsquery) = tsquery(query) else {
            return Ok(Vec::new());
        };
        let rows = sqlx::query(
            "SELECT id, tenant_id, title, body, created_at, updated_at, rank FROM concierge_search_kb($1, $2, $3)",
        )
        .bind(tenant.into_uuid())
        .bind(tsquery)
        .bind(i32::try_from(limit.clamp(1, 50)).unwrap_or(50))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|r| {
                let rank: f64 = r.try_get("rank").map_err(db_err)?;
                Ok(KbHit {
                    entry: read_kb(r)?,
                    score: rank,
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

/// A member of staff's message, in one tenant transaction (see `Store::record_staff_reply`).
/// The conversation's row is locked first, so a retried request waits for the first one and
/// then finds its message, and a concurrent agent reply or hand-off is ordered with it. Staff
/// messages are rare: plain statements, not a function of the hot path.
async fn staff_reply(
    store: &PgStore,
    tenant: TenantId,
    reply: &StaffReply,
) -> StoreResult<StaffReplyOutcome> {
    let now = now_ms();
    let t = tenant.into_uuid();
    let mut tx = store.tenant_tx(tenant).await?;
    let row = sqlx::query(
        "SELECT u.opted_out, EXISTS (SELECT 1 FROM messages m \
                 WHERE m.tenant_id = c.tenant_id AND m.conversation_id = c.id AND m.id = $3) AS recorded \
         FROM conversations c JOIN end_users u ON u.id = c.end_user_id \
         WHERE c.tenant_id = $1 AND c.id = $2 FOR UPDATE OF c",
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
            format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND id = $2");
        let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(t)
            .bind(reply.id.into_uuid())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        return Ok(StaffReplyOutcome::Recorded(read_message(&stored)?));
    }
    let opted_out: bool = row.try_get("opted_out").map_err(db_err)?;
    if opted_out && reply.channel == Channel::Sms {
        tx.rollback().await.map_err(db_err)?;
        return Ok(StaffReplyOutcome::OptedOut);
    }
    // HandoffEvent::Take (see `handoff_set!`), and the counters of an outbound message.
    sqlx::query(
        "UPDATE conversations SET handoff = 'human', handoff_staff = $1, \
         handoff_at = COALESCE(handoff_at, $2), message_count = message_count + 1, last_message_at = $2 \
         WHERE tenant_id = $3 AND id = $4",
    )
    .bind(&reply.staff)
    .bind(now)
    .bind(t)
    .bind(reply.conversation_id.into_uuid())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let status = reply_status(&reply.delivery);
    let sql = format!(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, body_cipher, \
         status, status_rank, sent_by, created_at, updated_at) \
         VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $9) RETURNING {MESSAGE_COLUMNS}"
    );
    let stored = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(reply.id.into_uuid())
        .bind(t)
        .bind(reply.conversation_id.into_uuid())
        .bind(reply.channel.as_str())
        .bind(&reply.body)
        .bind(status.as_str())
        .bind(status.rank())
        .bind(&reply.staff)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
    if let Delivery::Outbox { max_attempts } = reply.delivery {
        // As concierge_record_reply enqueues the send job of an agent's reply.
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, kind, payload, idempotency_key, status, run_at, \
             max_attempts, created_at, updated_at) \
             VALUES ($1, $2, $3, jsonb_build_object('message_id', $4::uuid), $5, 'queued', $6, $7, $6, $6)",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(t)
        .bind(JobKind::SendSms.as_str())
        .bind(reply.id.into_uuid())
        .bind(format!("send_sms:{}", reply.id))
        .bind(now)
        .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    }
    tx.commit().await.map_err(db_err)?;
    Ok(StaffReplyOutcome::Recorded(read_message(&stored)?))
}

async fn duplicate(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    sid: &str,
) -> StoreResult<Option<DuplicateInbound>> {
    let row = sqlx::query(
        "SELECT id, conversation_id FROM messages WHERE tenant_id = $1 AND provider_sid = $2 AND direction = 'inbound'",
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
        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE tenant_id = $1 AND in_reply_to = $2 ORDER BY id LIMIT 1"
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

/// Turns free text into a safe `to_tsquery` expression: each word (letters and digits only,
/// so no operator can be injected) becomes a prefix term, joined with OR.
fn tsquery(text: &str) -> Option<String> {
    let terms: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .take(32)
        .map(|w| format!("{}:*", w.to_lowercase()))
        .collect();
    if terms.is_empty() {
        None
    } else {
        Some(terms.join(" | "))
    }
}

#[cfg(test)]
mod tests {
    use super::tsquery;

    #[test]
    fn tsqueries_contain_no_operators_from_input() {
        assert_eq!(
            tsquery("Opening hours?").as_deref(),
            Some("opening:* | hours:*")
        );
        assert_eq!(tsquery("a & !b | (c) <-> d'e"), None);
        assert_eq!(tsquery("x' | y:* & zz").as_deref(), Some("zz:*"));
    }
}
