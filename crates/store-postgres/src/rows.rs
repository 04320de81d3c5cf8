//! Row decoding and error mapping for PostgreSQL.

use domain::{
    ApiKeyId, Channel, ConsentKeyword, ConversationId, Direction, EndUserId, KbEntryId, MessageId,
    MessageStatus, TenantId, TenantName,
};
use jiff::Timestamp;
use sqlx::Row;
use sqlx::postgres::PgRow;
use store::{
    ApiKey, ConsentEvent, Conversation, EndUser, KbEntry, StoreError, StoreResult, StoredDataKey,
    StoredMessage, timestamp_from_ms,
};

pub(crate) fn now_ms() -> i64 {
    Timestamp::now().as_millisecond()
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::RowNotFound => StoreError::NotFound,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
            StoreError::Unavailable(e.to_string())
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        // serialization failure, deadlock, shutdown, too many connections: worth a retry
        sqlx::Error::Database(db)
            if matches!(
                db.code().as_deref(),
                Some("40001" | "40P01" | "57P01" | "57P02" | "57P03" | "53300")
            ) =>
        {
            StoreError::Unavailable(db.message().to_owned())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

fn get<'r, T>(row: &'r PgRow, col: &str) -> StoreResult<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unexpected {what} {value:?}"))
}

pub(crate) fn read_tenant_row(row: &PgRow) -> StoreResult<(TenantId, TenantName, Timestamp)> {
    let id: uuid::Uuid = get(row, "id")?;
    let name: String = get(row, "name")?;
    let created: i64 = get(row, "created_at")?;
    let name = TenantName::parse(&name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok((TenantId::from_uuid(id), name, timestamp_from_ms(created)))
}

pub(crate) fn read_data_key(row: &PgRow) -> StoreResult<StoredDataKey> {
    let key_id: i64 = get(row, "key_id")?;
    let kek_id: i64 = get(row, "kek_id")?;
    Ok(StoredDataKey {
        key_id: u32::try_from(key_id).map_err(|_| corrupt("key id", &key_id.to_string()))?,
        kek_id: u32::try_from(kek_id).map_err(|_| corrupt("kek id", &kek_id.to_string()))?,
        wrapped: get(row, "wrapped")?,
    })
}

pub(crate) fn read_api_key(row: &PgRow) -> StoreResult<ApiKey> {
    Ok(ApiKey {
        id: ApiKeyId::from_uuid(get(row, "id")?),
        tenant_id: TenantId::from_uuid(get(row, "tenant_id")?),
        prefix: get(row, "prefix")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

pub(crate) fn read_message(row: &PgRow) -> StoreResult<StoredMessage> {
    let direction: String = get(row, "direction")?;
    let channel: String = get(row, "channel")?;
    let status: String = get(row, "status")?;
    let reply: Option<uuid::Uuid> = get(row, "in_reply_to")?;
    Ok(StoredMessage {
        id: MessageId::from_uuid(get(row, "id")?),
        tenant_id: TenantId::from_uuid(get(row, "tenant_id")?),
        conversation_id: ConversationId::from_uuid(get(row, "conversation_id")?),
        direction: Direction::parse(&direction).ok_or_else(|| corrupt("direction", &direction))?,
        channel: Channel::parse(&channel).ok_or_else(|| corrupt("channel", &channel))?,
        body: get(row, "body_cipher")?,
        status: MessageStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        provider_sid: get(row, "provider_sid")?,
        in_reply_to: reply.map(MessageId::from_uuid),
        error_code: get(row, "error_code")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
        sent_by: get(row, "sent_by")?,
    })
}

pub(crate) fn read_end_user(row: &PgRow) -> StoreResult<EndUser> {
    Ok(EndUser {
        id: EndUserId::from_uuid(get(row, "id")?),
        tenant_id: TenantId::from_uuid(get(row, "tenant_id")?),
        phone_ciphertext: get(row, "phone_cipher")?,
        opted_out: get(row, "opted_out")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

pub(crate) fn read_consent(row: &PgRow) -> StoreResult<ConsentEvent> {
    let keyword: String = get(row, "keyword")?;
    let message: Option<uuid::Uuid> = get(row, "message_id")?;
    Ok(ConsentEvent {
        keyword: ConsentKeyword::parse(&keyword).ok_or_else(|| corrupt("keyword", &keyword))?,
        message_id: message.map(MessageId::from_uuid),
        created_at: timestamp_from_ms(get(row, "created_at")?),
    })
}

pub(crate) fn read_conversation(row: &PgRow) -> StoreResult<Conversation> {
    let count: i64 = get(row, "message_count")?;
    let handoff: String = get(row, "handoff")?;
    Ok(Conversation {
        id: ConversationId::from_uuid(get(row, "id")?),
        tenant_id: TenantId::from_uuid(get(row, "tenant_id")?),
        end_user_id: EndUserId::from_uuid(get(row, "end_user_id")?),
        message_count: u64::try_from(count).unwrap_or(0),
        created_at: timestamp_from_ms(get(row, "created_at")?),
        last_message_at: timestamp_from_ms(get(row, "last_message_at")?),
        handoff: parse_handoff(&handoff)?,
        handoff_at: get::<Option<i64>>(row, "handoff_at")?.map(timestamp_from_ms),
        handoff_staff: get(row, "handoff_staff")?,
    })
}

pub(crate) fn parse_handoff(value: &str) -> StoreResult<domain::Handoff> {
    value.parse().map_err(|_| corrupt("hand-off state", value))
}

pub(crate) fn read_kb(row: &PgRow) -> StoreResult<KbEntry> {
    Ok(KbEntry {
        id: KbEntryId::from_uuid(get(row, "id")?),
        tenant_id: TenantId::from_uuid(get(row, "tenant_id")?),
        title: get(row, "title")?,
        body: get(row, "body")?,
        created_at: timestamp_from_ms(get(row, "created_at")?),
        updated_at: timestamp_from_ms(get(row, "updated_at")?),
    })
}

/// A counter for a BIGINT column (saturating: no count reaches 2^63).
pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

pub(crate) fn read_usage_totals(row: &PgRow) -> StoreResult<store::UsageTotals> {
    let n = |c: &str| -> StoreResult<u64> {
        let v: i64 = get(row, c)?;
        Ok(u64::try_from(v).unwrap_or(0))
    };
    Ok(store::UsageTotals {
        tenant: store::ModelUsage {
            calls: n("calls")?,
            input_tokens: n("input_tokens")?,
            output_tokens: n("output_tokens")?,
            cost_micros: n("cost_micros")?,
        },
        end_user: store::ModelUsage {
            calls: n("u_calls")?,
            input_tokens: n("u_input_tokens")?,
            output_tokens: n("u_output_tokens")?,
            cost_micros: n("u_cost_micros")?,
        },
    })
}
