//! The agent runtime's tables on PostgreSQL: profiles, the default profile, conversation
//! state, facts, reminders and turn steps. Plain statements in a tenant transaction (none is
//! on the message hot path), under row-level security like everything else.

use domain::jobs::JobKind;
use domain::{Channel, ConversationId, EndUserId, FactId, JobId, MessageId, ReminderId, TenantId};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};
use store::{
    ConversationState, Delivery, Fact, Lease, NewFact, NewJob, NewReminder, NewTurnStep, Reminder,
    ReminderDelivery, ReminderStatus, StoreError, StoreResult, StoredProfile, TurnStep,
    timestamp_from_ms,
};

use crate::hot_batch::ReplyArgs;
use crate::rows::{db_err, now_ms};
use crate::{PgStore, ReplyCall, queue};

/// At most this many rows from one listing.
const MAX_LIMIT: u32 = 200;

/// Rounds of `put_profile` lost to concurrent writers of the same name before giving up (each
/// round lost means another writer's version was stored).
const PUT_PROFILE_ROUNDS: usize = 32;

fn get<'r, T>(row: &'r PgRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn to_u32(what: &str, v: i64) -> StoreResult<u32> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("unexpected {what} {v}")))
}

fn read_profile(row: &PgRow) -> StoreResult<StoredProfile> {
    Ok(StoredProfile {
        name: get(row, "name")?,
        version: to_u32("profile version", get(row, "version")?)?,
        source: get(row, "source")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

fn read_fact(row: &PgRow) -> StoreResult<Fact> {
    Ok(Fact {
        id: FactId::from_uuid(get(row, "id")?),
        end_user_id: EndUserId::from_uuid(get(row, "end_user_id")?),
        text: get(row, "text_cipher")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

const REMINDER_COLUMNS: &str = "id, end_user_id, conversation_id, channel, text_cipher, due_at, status, message_id, created_at";

fn read_reminder(row: &PgRow) -> StoreResult<Reminder> {
    let channel: String = get(row, "channel")?;
    let status: String = get(row, "status")?;
    let message: Option<uuid::Uuid> = get(row, "message_id")?;
    Ok(Reminder {
        id: ReminderId::from_uuid(get(row, "id")?),
        end_user_id: EndUserId::from_uuid(get(row, "end_user_id")?),
        conversation_id: ConversationId::from_uuid(get(row, "conversation_id")?),
        channel: Channel::parse(&channel)
            .ok_or_else(|| StoreError::Corrupt(format!("unexpected channel {channel:?}")))?,
        text: get(row, "text_cipher")?,
        due_at: timestamp_from_ms(get(row, "due_at")?),
        status: ReminderStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unexpected status {status:?}")))?,
        message_id: message.map(MessageId::from_uuid),
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

fn read_step(row: &PgRow) -> StoreResult<TurnStep> {
    Ok(TurnStep {
        seq: to_u32("turn step", get(row, "seq")?)?,
        kind: get(row, "kind")?,
        name: get(row, "name")?,
        is_error: get(row, "is_error")?,
        detail: get(row, "detail_cipher")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

/// Whether the conversation is the tenant's.
async fn conversation_exists(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    conversation: ConversationId,
) -> StoreResult<bool> {
    let found: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM conversations WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.into_uuid())
            .bind(conversation.into_uuid())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    Ok(found.is_some())
}

// --- profiles ---------------------------------------------------------------------------

pub(crate) async fn put_profile(
    store: &PgStore,
    tenant: TenantId,
    name: &str,
    source: &str,
) -> StoreResult<StoredProfile> {
    let mut tx = store.tenant_tx(tenant).await?;
    // Read committed: each round reads the latest committed version. A concurrent writer of
    // the same name that takes the number first makes the insert do nothing (after waiting
    // for it to commit), and the next round takes the number after it.
    for _ in 0..PUT_PROFILE_ROUNDS {
        let row = sqlx::query(
            "INSERT INTO agent_profiles (tenant_id, name, version, source, created_at) \
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4 FROM agent_profiles WHERE tenant_id = $1 AND name = $2 \
             ON CONFLICT (tenant_id, name, version) DO NOTHING \
             RETURNING name, version, source, created_at",
        )
        .bind(tenant.into_uuid())
        .bind(name)
        .bind(source)
        .bind(now_ms())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some(row) = row {
            tx.commit().await.map_err(db_err)?;
            return read_profile(&row);
        }
    }
    Err(StoreError::Unavailable(
        "too many concurrent writers of one profile".into(),
    ))
}

pub(crate) async fn get_profile(
    store: &PgStore,
    tenant: TenantId,
    name: &str,
    version: Option<u32>,
) -> StoreResult<Option<StoredProfile>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let row = sqlx::query(
        "SELECT name, version, source, created_at FROM agent_profiles \
         WHERE tenant_id = $1 AND name = $2 AND ($3::bigint IS NULL OR version = $3) \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(tenant.into_uuid())
    .bind(name)
    .bind(version.map(i64::from))
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    row.as_ref().map(read_profile).transpose()
}

pub(crate) async fn list_profiles(
    store: &PgStore,
    tenant: TenantId,
) -> StoreResult<Vec<StoredProfile>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT DISTINCT ON (name) name, version, source, created_at FROM agent_profiles \
         WHERE tenant_id = $1 ORDER BY name, version DESC",
    )
    .bind(tenant.into_uuid())
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_profile).collect()
}

pub(crate) async fn profile_versions(
    store: &PgStore,
    tenant: TenantId,
    name: &str,
) -> StoreResult<Vec<StoredProfile>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT name, version, source, created_at FROM agent_profiles \
         WHERE tenant_id = $1 AND name = $2 ORDER BY version DESC",
    )
    .bind(tenant.into_uuid())
    .bind(name)
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_profile).collect()
}

pub(crate) async fn default_profile(
    store: &PgStore,
    tenant: TenantId,
) -> StoreResult<Option<String>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let name: Option<Option<String>> =
        sqlx::query_scalar("SELECT default_profile FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(name.flatten())
}

// --- per-tenant model settings ---------------------------------------------------------------

pub(crate) async fn model_settings(
    store: &PgStore,
    tenant: TenantId,
) -> StoreResult<Option<Vec<u8>>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let sealed: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT model_cipher FROM tenant_settings WHERE tenant_id = $1")
            .bind(tenant.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(sealed.flatten())
}

/// Upserts the tenant's settings row, leaving its default profile as it is; the foreign key
/// to `tenants` makes an unknown tenant `NotFound`.
pub(crate) async fn set_model_settings(
    store: &PgStore,
    tenant: TenantId,
    sealed: Option<&[u8]>,
) -> StoreResult<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    sqlx::query(
        "INSERT INTO tenant_settings AS s (tenant_id, model_cipher, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET model_cipher = excluded.model_cipher, updated_at = excluded.updated_at",
    )
    .bind(tenant.into_uuid())
    .bind(sealed)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

pub(crate) async fn set_default_profile(
    store: &PgStore,
    tenant: TenantId,
    name: Option<&str>,
) -> StoreResult<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    sqlx::query(
        "INSERT INTO tenant_settings AS s (tenant_id, default_profile, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id) DO UPDATE SET default_profile = excluded.default_profile, updated_at = excluded.updated_at",
    )
    .bind(tenant.into_uuid())
    .bind(name)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

// --- conversation state -------------------------------------------------------------------

pub(crate) async fn conversation_state(
    store: &PgStore,
    tenant: TenantId,
    conversation: ConversationId,
) -> StoreResult<ConversationState> {
    let mut tx = store.tenant_tx(tenant).await?;
    let row = sqlx::query(
        "SELECT profile, agent, data, revision FROM conversation_state WHERE tenant_id = $1 AND conversation_id = $2",
    )
    .bind(tenant.into_uuid())
    .bind(conversation.into_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    let Some(row) = row else {
        return Ok(ConversationState::default());
    };
    let revision: i64 = get(&row, "revision")?;
    Ok(ConversationState {
        profile: get(&row, "profile")?,
        agent: get(&row, "agent")?,
        data: get(&row, "data")?,
        revision: u64::try_from(revision)
            .map_err(|_| StoreError::Corrupt(format!("unexpected revision {revision}")))?,
    })
}

pub(crate) async fn save_conversation_state(
    store: &PgStore,
    tenant: TenantId,
    conversation: ConversationId,
    state: &ConversationState,
) -> StoreResult<u64> {
    let expected = i64::try_from(state.revision)
        .map_err(|_| StoreError::Conflict("no such revision".into()))?;
    let mut tx = store.tenant_tx(tenant).await?;
    let now = now_ms();
    let saved = if expected == 0 {
        // First save. A concurrent first save that commits first makes this one do nothing.
        sqlx::query(
            "INSERT INTO conversation_state (conversation_id, tenant_id, profile, agent, data, revision, updated_at) \
             SELECT id, tenant_id, $3, $4, $5, 1, $6 FROM conversations WHERE tenant_id = $1 AND id = $2 \
             ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind(tenant.into_uuid())
        .bind(conversation.into_uuid())
        .bind(state.profile.as_deref())
        .bind(state.agent.as_deref())
        .bind(state.data.as_deref())
        .bind(now)
        .execute(&mut *tx)
        .await
    } else {
        sqlx::query(
            "UPDATE conversation_state SET profile = $3, agent = $4, data = $5, revision = revision + 1, updated_at = $6 \
             WHERE tenant_id = $1 AND conversation_id = $2 AND revision = $7",
        )
        .bind(tenant.into_uuid())
        .bind(conversation.into_uuid())
        .bind(state.profile.as_deref())
        .bind(state.agent.as_deref())
        .bind(state.data.as_deref())
        .bind(now)
        .bind(expected)
        .execute(&mut *tx)
        .await
    }
    .map_err(db_err)?;
    if saved.rows_affected() == 1 {
        tx.commit().await.map_err(db_err)?;
        return Ok(state.revision + 1);
    }
    // Nothing saved: another revision is stored, or the conversation is not the tenant's.
    if conversation_exists(&mut tx, tenant, conversation).await? {
        Err(StoreError::Conflict(
            "the conversation state was saved by someone else".into(),
        ))
    } else {
        Err(StoreError::NotFound)
    }
}

// --- facts ------------------------------------------------------------------------------------

pub(crate) async fn add_fact(
    store: &PgStore,
    tenant: TenantId,
    end_user: EndUserId,
    fact: NewFact,
) -> StoreResult<Fact> {
    let mut tx = store.tenant_tx(tenant).await?;
    sqlx::query(
        "INSERT INTO end_user_facts (id, tenant_id, end_user_id, text_cipher, created_at) \
         SELECT $1, tenant_id, id, $4, $5 FROM end_users WHERE tenant_id = $2 AND id = $3 \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(fact.id.into_uuid())
    .bind(tenant.into_uuid())
    .bind(end_user.into_uuid())
    .bind(&fact.text)
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let row = sqlx::query(
        "SELECT id, end_user_id, text_cipher, created_at FROM end_user_facts WHERE tenant_id = $1 AND end_user_id = $2 AND id = $3",
    )
    .bind(tenant.into_uuid())
    .bind(end_user.into_uuid())
    .bind(fact.id.into_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if let Some(row) = row {
        tx.commit().await.map_err(db_err)?;
        return read_fact(&row);
    }
    let user: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM end_users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.into_uuid())
            .bind(end_user.into_uuid())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
    match user {
        None => Err(StoreError::NotFound),
        // The id is another end user's (or another tenant's) fact: not this one's to return.
        Some(_) => Err(StoreError::Conflict("the fact id is taken".into())),
    }
}

pub(crate) async fn list_facts(
    store: &PgStore,
    tenant: TenantId,
    end_user: EndUserId,
    limit: u32,
) -> StoreResult<Vec<Fact>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT id, end_user_id, text_cipher, created_at FROM end_user_facts \
         WHERE tenant_id = $1 AND end_user_id = $2 ORDER BY created_at DESC, id DESC LIMIT $3",
    )
    .bind(tenant.into_uuid())
    .bind(end_user.into_uuid())
    .bind(i64::from(limit.clamp(1, MAX_LIMIT)))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_fact).collect()
}

pub(crate) async fn delete_fact(
    store: &PgStore,
    tenant: TenantId,
    end_user: EndUserId,
    fact: FactId,
) -> StoreResult<bool> {
    let mut tx = store.tenant_tx(tenant).await?;
    let done = sqlx::query(
        "DELETE FROM end_user_facts WHERE tenant_id = $1 AND end_user_id = $2 AND id = $3",
    )
    .bind(tenant.into_uuid())
    .bind(end_user.into_uuid())
    .bind(fact.into_uuid())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

// --- reminders ------------------------------------------------------------------------------

async fn reminder_in(
    tx: &mut Transaction<'static, Postgres>,
    tenant: TenantId,
    id: ReminderId,
) -> StoreResult<Option<Reminder>> {
    let sql = format!("SELECT {REMINDER_COLUMNS} FROM reminders WHERE tenant_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.into_uuid())
        .bind(id.into_uuid())
        .fetch_optional(&mut **tx)
        .await
        .map_err(db_err)?;
    row.as_ref().map(read_reminder).transpose()
}

pub(crate) async fn create_reminder(
    store: &PgStore,
    tenant: TenantId,
    reminder: NewReminder,
) -> StoreResult<Reminder> {
    let mut tx = store.tenant_tx(tenant).await?;
    if let Some(stored) = reminder_in(&mut tx, tenant, reminder.id).await? {
        tx.commit().await.map_err(db_err)?;
        return Ok(stored);
    }
    // The conversation must be the end user's, and both the tenant's.
    let owned: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM conversations c JOIN end_users u ON u.id = c.end_user_id \
         WHERE c.tenant_id = $1 AND c.id = $2 AND u.tenant_id = $1 AND u.id = $3",
    )
    .bind(tenant.into_uuid())
    .bind(reminder.conversation_id.into_uuid())
    .bind(reminder.end_user_id.into_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    if owned.is_none() {
        return Err(StoreError::NotFound);
    }
    let now = now_ms();
    let sql = format!(
        "INSERT INTO reminders (id, tenant_id, end_user_id, conversation_id, channel, text_cipher, due_at, status, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'scheduled', $8, $8) \
         ON CONFLICT (id) DO NOTHING RETURNING {REMINDER_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(reminder.id.into_uuid())
        .bind(tenant.into_uuid())
        .bind(reminder.end_user_id.into_uuid())
        .bind(reminder.conversation_id.into_uuid())
        .bind(reminder.channel.as_str())
        .bind(&reminder.text)
        .bind(reminder.due_at.as_millisecond())
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
    let Some(row) = row else {
        // A concurrent create of the same reminder committed first: that one stands.
        // Otherwise the id is another tenant's.
        let stored = reminder_in(&mut tx, tenant, reminder.id).await?;
        tx.commit().await.map_err(db_err)?;
        return stored.ok_or_else(|| StoreError::Conflict("the reminder id is taken".into()));
    };
    let stored = read_reminder(&row)?;
    queue::enqueue_with(
        &mut *tx,
        &NewJob {
            kind: JobKind::Reminder,
            tenant_id: Some(tenant),
            payload: serde_json::json!({ "reminder_id": reminder.id }),
            idempotency_key: Some(format!("reminder:{}", reminder.id)),
            run_at: Some(reminder.due_at),
            max_attempts: reminder.max_attempts,
        },
    )
    .await?;
    tx.commit().await.map_err(db_err)?;
    Ok(stored)
}

pub(crate) async fn get_reminder(
    store: &PgStore,
    tenant: TenantId,
    id: ReminderId,
) -> StoreResult<Option<Reminder>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let found = reminder_in(&mut tx, tenant, id).await?;
    tx.commit().await.map_err(db_err)?;
    Ok(found)
}

pub(crate) async fn list_reminders(
    store: &PgStore,
    tenant: TenantId,
    end_user: EndUserId,
    all: bool,
    limit: u32,
) -> StoreResult<Vec<Reminder>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let sql = format!(
        "SELECT {REMINDER_COLUMNS} FROM reminders \
         WHERE tenant_id = $1 AND end_user_id = $2 AND ($3 OR status = 'scheduled') \
         ORDER BY due_at, id LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant.into_uuid())
        .bind(end_user.into_uuid())
        .bind(all)
        .bind(i64::from(limit.clamp(1, MAX_LIMIT)))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_reminder).collect()
}

pub(crate) async fn cancel_reminder(
    store: &PgStore,
    tenant: TenantId,
    end_user: EndUserId,
    id: ReminderId,
) -> StoreResult<bool> {
    let mut tx = store.tenant_tx(tenant).await?;
    let done = sqlx::query(
        "UPDATE reminders SET status = 'cancelled', updated_at = $1 \
         WHERE tenant_id = $2 AND end_user_id = $3 AND id = $4 AND status = 'scheduled'",
    )
    .bind(now_ms())
    .bind(tenant.into_uuid())
    .bind(end_user.into_uuid())
    .bind(id.into_uuid())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    Ok(done.rows_affected() > 0)
}

pub(crate) async fn deliver_reminder(
    store: &PgStore,
    tenant: TenantId,
    id: ReminderId,
    body: Vec<u8>,
    send_max_attempts: u32,
    job: (JobId, Lease),
) -> StoreResult<ReminderDelivery> {
    let mut tx = store.tenant_tx(tenant).await?;
    // Completing the job first is the lease check: the rest happens only under the lease,
    // and rolls back with it.
    if !queue::complete_with(&mut *tx, job.0, &job.1).await? {
        return Err(StoreError::Conflict(
            "the reminder job is no longer held by this lease".into(),
        ));
    }
    // Locked against a concurrent cancel.
    let row = sqlx::query(
        "SELECT r.conversation_id, r.channel, r.status, u.opted_out \
         FROM reminders r JOIN end_users u ON u.id = r.end_user_id \
         WHERE r.tenant_id = $1 AND r.id = $2 FOR UPDATE OF r",
    )
    .bind(tenant.into_uuid())
    .bind(id.into_uuid())
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_err)?;
    let Some(row) = row else {
        tx.commit().await.map_err(db_err)?;
        return Ok(ReminderDelivery::Skipped);
    };
    let status: String = get(&row, "status")?;
    if status != ReminderStatus::Scheduled.as_str() {
        tx.commit().await.map_err(db_err)?;
        return Ok(ReminderDelivery::Skipped);
    }
    let now = now_ms();
    let opted_out: bool = get(&row, "opted_out")?;
    if opted_out {
        set_reminder_outcome(&mut tx, id, ReminderStatus::Failed, None, now).await?;
        tx.commit().await.map_err(db_err)?;
        return Ok(ReminderDelivery::OptedOut);
    }
    let channel: String = get(&row, "channel")?;
    let channel = Channel::parse(&channel)
        .ok_or_else(|| StoreError::Corrupt(format!("unexpected channel {channel:?}")))?;
    let delivery = match channel {
        Channel::Sms => Delivery::Outbox {
            max_attempts: send_max_attempts,
        },
        Channel::WebChat => Delivery::Stored,
    };
    let message = MessageId::new();
    let call = ReplyCall {
        conversation: ConversationId::from_uuid(get(&row, "conversation_id")?),
        in_reply_to: None,
        id: message,
        channel,
        body,
        delivery: &delivery,
        turn_job: None,
    };
    // Records the message, bumps its conversation and enqueues the send job, in this
    // transaction.
    ReplyArgs::new(tenant, call).call_one(&mut *tx).await?;
    set_reminder_outcome(&mut tx, id, ReminderStatus::Sent, Some(message), now).await?;
    tx.commit().await.map_err(db_err)?;
    if matches!(delivery, Delivery::Outbox { .. }) {
        store.wake.notify_waiters();
    }
    Ok(ReminderDelivery::Delivered(message))
}

async fn set_reminder_outcome(
    tx: &mut Transaction<'static, Postgres>,
    id: ReminderId,
    status: ReminderStatus,
    message: Option<MessageId>,
    now: i64,
) -> StoreResult<()> {
    sqlx::query("UPDATE reminders SET status = $1, message_id = $2, updated_at = $3 WHERE id = $4")
        .bind(status.as_str())
        .bind(message.map(MessageId::into_uuid))
        .bind(now)
        .bind(id.into_uuid())
        .execute(&mut **tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

// --- turn steps --------------------------------------------------------------------------------

pub(crate) async fn record_turn_step(
    store: &PgStore,
    tenant: TenantId,
    conversation: ConversationId,
    turn: MessageId,
    step: NewTurnStep,
) -> StoreResult<()> {
    let mut tx = store.tenant_tx(tenant).await?;
    let done = sqlx::query(
        "INSERT INTO turn_steps (tenant_id, conversation_id, message_id, seq, kind, name, is_error, detail_cipher, created_at) \
         SELECT tenant_id, id, $3, $4, $5, $6, $7, $8, $9 FROM conversations WHERE tenant_id = $1 AND id = $2 \
         ON CONFLICT (message_id, seq) DO NOTHING",
    )
    .bind(tenant.into_uuid())
    .bind(conversation.into_uuid())
    .bind(turn.into_uuid())
    .bind(i64::from(step.seq))
    .bind(&step.kind)
    .bind(&step.name)
    .bind(step.is_error)
    .bind(step.detail.as_deref())
    .bind(now_ms())
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    if done.rows_affected() == 0 && !conversation_exists(&mut tx, tenant, conversation).await? {
        return Err(StoreError::NotFound);
    }
    tx.commit().await.map_err(db_err)?;
    Ok(())
}

pub(crate) async fn turn_steps(
    store: &PgStore,
    tenant: TenantId,
    turn: MessageId,
) -> StoreResult<Vec<TurnStep>> {
    let mut tx = store.tenant_tx(tenant).await?;
    let rows = sqlx::query(
        "SELECT seq, kind, name, is_error, detail_cipher, created_at FROM turn_steps \
         WHERE tenant_id = $1 AND message_id = $2 ORDER BY seq",
    )
    .bind(tenant.into_uuid())
    .bind(turn.into_uuid())
    .fetch_all(&mut *tx)
    .await
    .map_err(db_err)?;
    tx.commit().await.map_err(db_err)?;
    rows.iter().map(read_step).collect()
}
