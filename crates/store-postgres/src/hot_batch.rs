//! Group commit for the message path.
//!
//! Recording an inbound message and recording its reply are one statement each
//! (`concierge_record_inbound`, `concierge_record_reply`), but each still costs a round trip
//! and a commit, and under load those dominate both the server's and PostgreSQL's work.
//! So a process sends the ones its requests make at the same moment together:
//!
//! * A caller hands its operation to the batcher and waits for its own answer.
//! * The batcher runs at most [`IN_FLIGHT`] batches at once, on connections of their own (a
//!   batch never queues behind requests waiting for the main pool). A batch takes every
//!   operation waiting when it starts, up to [`MAX_BATCH`] and [`MAX_BATCH_BYTES`]. An
//!   operation that arrives while a slot is free goes at once, alone, through its
//!   single-operation statement: batching adds no wait to an idle server, and batches grow
//!   only as the load does.
//! * A batch of two or more is one call of `concierge_hot_batch` (migrations/0008): one round
//!   trip, one transaction, one commit. Each operation inside runs exactly as its own
//!   statement would.
//! * When PostgreSQL refuses a batch (a concurrent duplicate, a conversation that is not the
//!   tenant's), nothing of it was written; each operation is then run on its own, so every
//!   caller gets the answer it would have had alone. Other failures (a lost connection, a
//!   pool timeout) are returned to every caller in the batch, as they would be alone.

use std::sync::Arc;

use domain::{ConsentKeyword, ConversationId, EndUserId, JobId, MessageId, TenantId};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use store::{Contact, InboundMessage, InboundOutcome, RecordedInbound, StoreError, StoreResult};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::rows::{db_err, now_ms};

/// The most operations in one batch.
pub(crate) const MAX_BATCH: usize = 64;
/// The most bytes of arguments in one batch, so that its message to PostgreSQL stays within
/// one TLS record (16 KiB) and leaves in one write. sqlx 0.9.0 does not set `TCP_NODELAY`
/// (fixed upstream, not released), so a message sent in two writes waits for the server's
/// delayed acknowledgement (~40 ms) before its second part leaves.
pub(crate) const MAX_BATCH_BYTES: usize = 12 * 1024;
/// Fixed bytes of one operation in the batch's message besides its variable-length values:
/// 33 array element headers and the ids, numbers and flags.
const OP_OVERHEAD: usize = 300;
/// The most batches (or lone operations) in flight at once. Under load, operations wait for
/// a slot and so gather into batches; two slots keep a batch filling while one commits.
pub(crate) const IN_FLIGHT: usize = 2;

/// The arguments of `concierge_record_inbound` for one message.
pub(crate) struct InboundArgs {
    tenant: uuid::Uuid,
    now: i64,
    channel: &'static str,
    body: Vec<u8>,
    pub(crate) provider_sid: Option<String>,
    tenant_number: Option<String>,
    phone_index: Option<Vec<u8>>,
    phone_cipher: Option<Vec<u8>>,
    conversation: Option<uuid::Uuid>,
    keyword: Option<&'static str>,
    set_opted_out: Option<bool>,
    wants_turn: bool,
    /// End user, conversation, message, turn job, consent event.
    ids: [uuid::Uuid; 5],
    max_attempts: i32,
    inline_holder: Option<String>,
    lease_ms: i64,
}

impl InboundArgs {
    pub(crate) fn new(tenant: TenantId, inbound: InboundMessage) -> Self {
        let (phone_index, phone_cipher, conversation) = match inbound.contact {
            Contact::Phone { index, ciphertext } => (Some(index.to_vec()), Some(ciphertext), None),
            Contact::Conversation(c) => (None, None, Some(c.into_uuid())),
            Contact::Anonymous => (None, None, None),
        };
        let set_opted_out = match inbound.keyword {
            Some(ConsentKeyword::OptOut | ConsentKeyword::OptIn) => {
                Some(ConsentKeyword::apply(inbound.keyword, false))
            }
            Some(ConsentKeyword::Help) | None => None,
        };
        let plan = inbound.turn;
        Self {
            tenant: tenant.into_uuid(),
            now: now_ms(),
            channel: inbound.channel.as_str(),
            body: inbound.body,
            provider_sid: inbound.provider_sid,
            tenant_number: inbound
                .tenant_number
                .as_ref()
                .map(|n| n.as_str().to_owned()),
            phone_index,
            phone_cipher,
            conversation,
            keyword: inbound.keyword.map(ConsentKeyword::as_str),
            set_opted_out,
            wants_turn: domain::consent::needs_turn(inbound.keyword, false),
            ids: [
                uuid::Uuid::now_v7(), // end user
                uuid::Uuid::now_v7(), // conversation
                MessageId::new().into_uuid(),
                JobId::new().into_uuid(),
                uuid::Uuid::now_v7(), // consent event
            ],
            max_attempts: i32::try_from(plan.max_attempts).unwrap_or(i32::MAX),
            inline_holder: plan.inline_holder,
            lease_ms: i64::try_from(plan.lease.as_millis()).unwrap_or(i64::MAX),
        }
    }

    /// Its share of a batch's message, in bytes.
    fn wire_size(&self) -> usize {
        OP_OVERHEAD
            + self.body.len()
            + self.provider_sid.as_ref().map_or(0, String::len)
            + self.tenant_number.as_ref().map_or(0, String::len)
            + self.phone_index.as_ref().map_or(0, Vec::len)
            + self.phone_cipher.as_ref().map_or(0, Vec::len)
            + self.inline_holder.as_ref().map_or(0, String::len)
    }

    /// Runs this message alone. `None`: its provider id was claimed before, nothing written.
    async fn call_one(&self, pool: &PgPool) -> StoreResult<Option<InboundOutcome>> {
        let row = sqlx::query(
            "SELECT outcome, message_id, conversation_id, end_user_id, new_end_user, opted_out, turn_job, run_inline, \
                    state_profile, state_agent, state_data, state_revision \
             FROM concierge_record_inbound($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(self.tenant)
        .bind(self.now)
        .bind(self.channel)
        .bind(&self.body)
        .bind(self.provider_sid.as_deref())
        .bind(self.tenant_number.as_deref())
        .bind(self.phone_index.as_deref())
        .bind(self.phone_cipher.as_deref())
        .bind(self.conversation)
        .bind(self.keyword)
        .bind(self.set_opted_out)
        .bind(self.wants_turn)
        .bind(&self.ids[..])
        .bind(domain::jobs::JobKind::Turn.as_str())
        .bind(self.max_attempts)
        .bind(self.inline_holder.as_deref())
        .bind(self.lease_ms)
        .fetch_one(pool)
        .await;
        match row {
            Ok(row) => read_inbound(&row),
            // Claimed before (or by a concurrent delivery): everything was rolled back.
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("CCDUP") => Ok(None),
            Err(e) => Err(db_err(e)),
        }
    }
}

/// An inbound result row: `None` for a provider id claimed before.
fn read_inbound(row: &PgRow) -> StoreResult<Option<InboundOutcome>> {
    let outcome: String = row.try_get("outcome").map_err(db_err)?;
    match outcome.as_str() {
        "recorded" => {}
        "duplicate" => return Ok(None),
        _ => return Err(StoreError::NotFound),
    }
    let get = |c: &str| row.try_get::<Option<uuid::Uuid>, _>(c).map_err(db_err);
    let missing = || StoreError::Database("record_inbound returned no id".into());
    Ok(Some(InboundOutcome::Recorded(RecordedInbound {
        message_id: MessageId::from_uuid(get("message_id")?.ok_or_else(missing)?),
        conversation_id: ConversationId::from_uuid(get("conversation_id")?.ok_or_else(missing)?),
        end_user_id: EndUserId::from_uuid(get("end_user_id")?.ok_or_else(missing)?),
        new_end_user: row.try_get("new_end_user").map_err(db_err)?,
        opted_out: row.try_get("opted_out").map_err(db_err)?,
        turn_job: get("turn_job")?.map(JobId::from_uuid),
        inline: row
            .try_get::<Option<bool>, _>("run_inline")
            .map_err(db_err)?
            .unwrap_or(false),
        state: store::ConversationState {
            profile: row.try_get("state_profile").map_err(db_err)?,
            agent: row.try_get("state_agent").map_err(db_err)?,
            data: row.try_get("state_data").map_err(db_err)?,
            revision: row
                .try_get::<Option<i64>, _>("state_revision")
                .map_err(db_err)?
                .map_or(Ok(0), u64::try_from)
                .map_err(|_| StoreError::Corrupt("negative state revision".into()))?,
        },
    })))
}

/// The arguments of `concierge_record_reply` for one outbound message.
pub(crate) struct ReplyArgs {
    tenant: uuid::Uuid,
    now: i64,
    conversation: uuid::Uuid,
    in_reply_to: Option<uuid::Uuid>,
    message: uuid::Uuid,
    channel: &'static str,
    body: Vec<u8>,
    status: &'static str,
    status_rank: i16,
    turn_job: Option<uuid::Uuid>,
    holder: Option<String>,
    attempt: Option<i32>,
    send_job: Option<uuid::Uuid>,
    send_key: String,
    send_max_attempts: Option<i32>,
}

/// What `concierge_record_reply` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReplyOutcome {
    Recorded,
    /// The turn job is no longer held by this lease: nothing was written.
    LeaseLost,
    /// A person has the conversation: the turn job was completed and the turn given back,
    /// but the turn's reply was not recorded.
    WithPerson,
}

impl ReplyArgs {
    pub(crate) fn new(tenant: TenantId, call: crate::ReplyCall<'_>) -> Self {
        let status = crate::reply_status(call.delivery);
        let (turn_job, holder, attempt) = match call.turn_job {
            Some((job, lease)) => (
                Some(job.into_uuid()),
                Some(lease.holder.clone()),
                Some(i32::try_from(lease.attempt).unwrap_or(i32::MAX)),
            ),
            None => (None, None, None),
        };
        let send_max_attempts = match call.delivery {
            store::Delivery::Outbox { max_attempts } => {
                Some(i32::try_from(*max_attempts).unwrap_or(i32::MAX))
            }
            store::Delivery::Inline | store::Delivery::Stored => None,
        };
        Self {
            tenant: tenant.into_uuid(),
            now: now_ms(),
            conversation: call.conversation.into_uuid(),
            in_reply_to: call.in_reply_to.map(MessageId::into_uuid),
            message: call.id.into_uuid(),
            channel: call.channel.as_str(),
            body: call.body,
            status: status.as_str(),
            status_rank: status.rank(),
            turn_job,
            holder,
            attempt,
            send_job: send_max_attempts.map(|_| uuid::Uuid::now_v7()),
            send_key: format!("send_sms:{}", call.id),
            send_max_attempts,
        }
    }

    /// Its share of a batch's message, in bytes.
    fn wire_size(&self) -> usize {
        OP_OVERHEAD
            + self.body.len()
            + self.holder.as_ref().map_or(0, String::len)
            + self.send_key.len()
    }

    /// Runs this reply alone, in `executor`'s transaction or its own: records the message,
    /// bumps its conversation, completes the turn job if one is given and enqueues the send
    /// job for outbox delivery. A turn's reply to a conversation a person has is not recorded
    /// (migrations/0007_handoff.sql); `NotFound` when the conversation is not the tenant's.
    pub(crate) async fn call_one(
        &self,
        executor: impl sqlx::PgExecutor<'_>,
    ) -> StoreResult<ReplyOutcome> {
        let outcome: Result<String, sqlx::Error> = sqlx::query_scalar(
            "SELECT concierge_record_reply($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(self.tenant)
        .bind(self.now)
        .bind(self.conversation)
        .bind(self.in_reply_to)
        .bind(self.message)
        .bind(self.channel)
        .bind(&self.body)
        .bind(self.status)
        .bind(self.status_rank)
        .bind(self.turn_job)
        .bind(self.holder.as_deref())
        .bind(self.attempt)
        .bind(self.send_job)
        .bind(domain::jobs::JobKind::SendSms.as_str())
        .bind(&self.send_key)
        .bind(self.send_max_attempts)
        .fetch_one(executor)
        .await;
        match outcome {
            Ok(o) => read_reply(&o),
            Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("CCNF0") => {
                Err(StoreError::NotFound)
            }
            Err(e) => Err(db_err(e)),
        }
    }
}

fn read_reply(outcome: &str) -> StoreResult<ReplyOutcome> {
    match outcome {
        "recorded" => Ok(ReplyOutcome::Recorded),
        "lease_lost" => Ok(ReplyOutcome::LeaseLost),
        "with_person" => Ok(ReplyOutcome::WithPerson),
        other => Err(StoreError::Database(format!(
            "concierge_record_reply returned {other:?}"
        ))),
    }
}

enum Op {
    Inbound(
        InboundArgs,
        oneshot::Sender<StoreResult<Option<InboundOutcome>>>,
    ),
    Reply(ReplyArgs, oneshot::Sender<StoreResult<ReplyOutcome>>),
}

impl Op {
    fn wire_size(&self) -> usize {
        match self {
            Self::Inbound(args, _) => args.wire_size(),
            Self::Reply(args, _) => args.wire_size(),
        }
    }
}

/// The batcher of one process's message-path writes. Cheap to clone.
#[derive(Clone)]
pub(crate) struct HotPath {
    ops: mpsc::UnboundedSender<Op>,
    batches: PgPool,
}

fn gone() -> StoreError {
    StoreError::Unavailable("the database batcher stopped".into())
}

impl HotPath {
    /// Starts the batcher on the current runtime; it stops when the last handle is dropped.
    /// Batches go through `batches`, a pool of their own ([`IN_FLIGHT`] connections), so
    /// they never queue behind the requests waiting for `pool`; operations that run alone
    /// use `pool`.
    pub(crate) fn start(batches: PgPool, pool: PgPool) -> Self {
        let (ops, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(batches.clone(), pool, rx));
        Self { ops, batches }
    }

    /// Closes the batches' connections (the store closes its pool beside).
    pub(crate) async fn close(&self) {
        self.batches.close().await;
    }

    pub(crate) async fn record_inbound(
        &self,
        args: InboundArgs,
    ) -> StoreResult<Option<InboundOutcome>> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(Op::Inbound(args, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    pub(crate) async fn record_reply(&self, args: ReplyArgs) -> StoreResult<ReplyOutcome> {
        let (tx, rx) = oneshot::channel();
        self.ops.send(Op::Reply(args, tx)).map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }
}

async fn run(batches: PgPool, pool: PgPool, mut rx: mpsc::UnboundedReceiver<Op>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried: Option<Op> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        if carried.is_none() {
            carried = rx.recv().await;
        }
        let Some(first) = carried.take() else {
            return;
        };
        let mut bytes = first.wire_size();
        let mut ops = vec![first];
        while ops.len() < MAX_BATCH {
            match rx.try_recv() {
                // The operation that would make the message too long opens the next batch.
                Ok(op) if bytes + op.wire_size() > MAX_BATCH_BYTES => {
                    carried = Some(op);
                    break;
                }
                Ok(op) => {
                    bytes += op.wire_size();
                    ops.push(op);
                }
                Err(_) => break,
            }
        }
        let (batches, pool) = (batches.clone(), pool.clone());
        tokio::spawn(async move {
            execute(&batches, &pool, ops).await;
            drop(slot);
        });
    }
}

async fn execute(batches: &PgPool, pool: &PgPool, ops: Vec<Op>) {
    metrics::histogram!("concierge_db_batch_size").record(ops.len() as f64);
    let started = std::time::Instant::now();
    execute_ops(batches, pool, ops).await;
    metrics::histogram!("concierge_db_batch_seconds").record(started.elapsed().as_secs_f64());
}

async fn execute_ops(batches: &PgPool, pool: &PgPool, ops: Vec<Op>) {
    if ops.len() == 1 {
        return alone(batches, ops).await;
    }
    let mut replies = Vec::new();
    let mut inbound = Vec::new();
    for op in ops {
        match op {
            Op::Reply(args, tx) => replies.push((args, tx)),
            Op::Inbound(args, tx) => inbound.push((args, tx)),
        }
    }
    match call_batch(batches, &replies, &inbound).await {
        // One row per operation, in order (call_batch checks).
        Ok(rows) => {
            let mut rows = rows.into_iter();
            for ((_, tx), row) in replies.into_iter().zip(rows.by_ref()) {
                let outcome = row.try_get::<String, _>("outcome").map_err(db_err);
                let _ = tx.send(outcome.and_then(|o| read_reply(&o)));
            }
            for ((_, tx), row) in inbound.into_iter().zip(rows) {
                let _ = tx.send(read_inbound(&row));
            }
        }
        // PostgreSQL refused the batch, so nothing of it was written: each on its own.
        Err(sqlx::Error::Database(db)) => {
            tracing::debug!(code = ?db.code(), "batch refused; running its operations one by one");
            metrics::counter!("concierge_db_batch_retries_total").increment(1);
            let ops = replies
                .into_iter()
                .map(|(a, tx)| Op::Reply(a, tx))
                .chain(inbound.into_iter().map(|(a, tx)| Op::Inbound(a, tx)))
                .collect();
            alone(pool, ops).await;
        }
        Err(e) => {
            let e = db_err(e);
            replies
                .into_iter()
                .for_each(|(_, tx)| drop(tx.send(Err(e.clone()))));
            inbound
                .into_iter()
                .for_each(|(_, tx)| drop(tx.send(Err(e.clone()))));
        }
    }
}

/// Runs each operation through its own statement, side by side.
async fn alone(pool: &PgPool, ops: Vec<Op>) {
    futures_util::future::join_all(ops.into_iter().map(|op| async move {
        match op {
            Op::Inbound(args, tx) => {
                let _ = tx.send(args.call_one(pool).await);
            }
            Op::Reply(args, tx) => {
                let _ = tx.send(args.call_one(pool).await);
            }
        }
    }))
    .await;
}

/// One call of `concierge_hot_batch`; its rows in operation order.
async fn call_batch<R, I>(
    pool: &PgPool,
    replies: &[(ReplyArgs, R)],
    inbound: &[(InboundArgs, I)],
) -> Result<Vec<PgRow>, sqlx::Error> {
    let r = || replies.iter().map(|(a, _)| a);
    let i = || inbound.iter().map(|(a, _)| a);
    let mut rows = sqlx::query(
        "SELECT op, outcome, message_id, conversation_id, end_user_id, new_end_user, opted_out, turn_job, run_inline, \
                state_profile, state_agent, state_data, state_revision \
         FROM concierge_hot_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                                  $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28, $29, $30, $31, $32, $33)",
    )
    .bind(r().map(|a| a.tenant).collect::<Vec<_>>())
    .bind(r().map(|a| a.now).collect::<Vec<_>>())
    .bind(r().map(|a| a.conversation).collect::<Vec<_>>())
    .bind(r().map(|a| a.in_reply_to).collect::<Vec<_>>())
    .bind(r().map(|a| a.message).collect::<Vec<_>>())
    .bind(r().map(|a| a.channel).collect::<Vec<_>>())
    .bind(r().map(|a| a.body.as_slice()).collect::<Vec<_>>())
    .bind(r().map(|a| a.status).collect::<Vec<_>>())
    .bind(r().map(|a| a.status_rank).collect::<Vec<_>>())
    .bind(r().map(|a| a.turn_job).collect::<Vec<_>>())
    .bind(r().map(|a| a.holder.as_deref()).collect::<Vec<_>>())
    .bind(r().map(|a| a.attempt).collect::<Vec<_>>())
    .bind(r().map(|a| a.send_job).collect::<Vec<_>>())
    .bind(domain::jobs::JobKind::SendSms.as_str())
    .bind(r().map(|a| a.send_key.as_str()).collect::<Vec<_>>())
    .bind(r().map(|a| a.send_max_attempts).collect::<Vec<_>>())
    .bind(i().map(|a| a.tenant).collect::<Vec<_>>())
    .bind(i().map(|a| a.now).collect::<Vec<_>>())
    .bind(i().map(|a| a.channel).collect::<Vec<_>>())
    .bind(i().map(|a| a.body.as_slice()).collect::<Vec<_>>())
    .bind(i().map(|a| a.provider_sid.as_deref()).collect::<Vec<_>>())
    .bind(i().map(|a| a.tenant_number.as_deref()).collect::<Vec<_>>())
    .bind(i().map(|a| a.phone_index.as_deref()).collect::<Vec<_>>())
    .bind(i().map(|a| a.phone_cipher.as_deref()).collect::<Vec<_>>())
    .bind(i().map(|a| a.conversation).collect::<Vec<_>>())
    .bind(i().map(|a| a.keyword).collect::<Vec<_>>())
    .bind(i().map(|a| a.set_opted_out).collect::<Vec<_>>())
    .bind(i().map(|a| a.wants_turn).collect::<Vec<_>>())
    .bind(i().flat_map(|a| a.ids).collect::<Vec<_>>())
    .bind(domain::jobs::JobKind::Turn.as_str())
    .bind(i().map(|a| a.max_attempts).collect::<Vec<_>>())
    .bind(i().map(|a| a.inline_holder.as_deref()).collect::<Vec<_>>())
    .bind(i().map(|a| a.lease_ms).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    // Rows come back in operation order; sort defensively by the op column.
    let mut keyed = Vec::with_capacity(rows.len());
    for row in rows.drain(..) {
        let op: i32 = row.try_get("op")?;
        keyed.push((op, row));
    }
    keyed.sort_by_key(|(op, _)| *op);
    let expected = replies.len() + inbound.len();
    if keyed.len() != expected
        || keyed
            .iter()
            .enumerate()
            .any(|(n, (op, _))| usize::try_from(*op).ok() != Some(n + 1))
    {
        return Err(sqlx::Error::Protocol(format!(
            "concierge_hot_batch returned {} rows for {expected} operations",
            keyed.len()
        )));
    }
    Ok(keyed.into_iter().map(|(_, row)| row).collect())
}
