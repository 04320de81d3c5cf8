//! The worker side of the message path: turns that did not finish inline, outbound SMS
//! through the provider with per-sender pacing, and delivery status callbacks.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{TurnEngine, TurnInput};
use domain::{Channel, Direction, MessageId, MessageStatus, PhoneNumber, ReminderId, TenantId};
use integrations::pacing::Pacer;
use integrations::twilio::{OutboundSms, SmsError, SmsSender};
use store::{ClaimedJob, Delivery, ReminderDelivery, ReplyMessage, StatusUpdate, Stores};

use crate::{MessagingError, Vault, columns};

/// How a job ended, for the runner to persist.
#[derive(Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    /// Try again with backoff (dead-lettered once attempts run out).
    Retry(String),
    /// Could not start (its sender is paced): run again after this long, without spending
    /// an attempt.
    Postpone(Duration),
    /// Will never succeed: dead-letter now.
    Fatal(String),
}

#[derive(Clone, Debug)]
pub struct OutboxConfig {
    /// Base URL Twilio reaches us on; the status callback is built from it.
    pub public_url: Option<String>,
    /// Minimum spacing between two messages from one sender number.
    pub send_interval: Duration,
    /// Limit for one turn run by the worker.
    pub turn_timeout: Duration,
    pub send_max_attempts: u32,
}

pub struct Outbox {
    stores: Stores,
    vault: Arc<Vault>,
    engine: Arc<dyn TurnEngine>,
    sender: Arc<dyn SmsSender>,
    pacer: Arc<dyn Pacer>,
    config: OutboxConfig,
    /// Where staff notification numbers come from (the conversation's profile).
    profiles: Option<Arc<agent::Profiles>>,
}

/// The id under `key` in a job's payload; a job without it can never run.
fn payload_id<T: std::str::FromStr>(job: &ClaimedJob, key: &str) -> Result<T, JobOutcome> {
    job.payload
        .get(key)
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| JobOutcome::Fatal(format!("payload has no {key}")))
}

fn message_id(job: &ClaimedJob) -> Result<MessageId, JobOutcome> {
    payload_id(job, "message_id")
}

/// How many of a conversation's newest messages are read to find a newer inbound one.
const COALESCE_LOOKBACK: u32 = 50;
/// How long a turn waits before trying again for a conversation whose turn is taken.
const TURN_WAIT: Duration = Duration::from_secs(1);
/// A worker's hold on a conversation's turn outlives its turn timeout by this much.
const TURN_MARGIN: Duration = Duration::from_secs(10);

/// The name a worker's turn holds a conversation under: its lease holder and its job, as
/// the store gives the turn back with the reply (see `Store::record_reply`).
fn turn_holder(job: &ClaimedJob) -> String {
    format!("{}:{}", job.lease.holder, job.id)
}

fn transient(e: impl std::fmt::Display) -> JobOutcome {
    JobOutcome::Retry(e.to_string())
}

impl Outbox {
    pub fn new(
        stores: Stores,
        vault: Arc<Vault>,
        engine: Arc<dyn TurnEngine>,
        sender: Arc<dyn SmsSender>,
        pacer: Arc<dyn Pacer>,
        config: OutboxConfig,
    ) -> Self {
        Self {
            stores,
            vault,
            engine,
            sender,
            pacer,
            config,
            profiles: None,
        }
    }

    /// Reads staff notification numbers from the conversations' profiles.
    #[must_use]
    pub fn with_profiles(mut self, profiles: Arc<agent::Profiles>) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// Delivers a due reminder: recorded as an outbound message of its conversation (and
    /// sent by the outbox for SMS) in the transaction that completes the job.
    pub async fn deliver_reminder(&self, job: &ClaimedJob) -> JobOutcome {
        match self.try_deliver_reminder(job).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn try_deliver_reminder(&self, job: &ClaimedJob) -> Result<JobOutcome, JobOutcome> {
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobOutcome::Fatal("reminder job without tenant".into()))?;
        let id: ReminderId = payload_id(job, "reminder_id")?;
        let Some(reminder) = self
            .stores
            .data
            .get_reminder(tenant, id)
            .await
            .map_err(transient)?
        else {
            return Ok(JobOutcome::Done); // erased since
        };
        let key = self.vault.data_key(tenant).await.map_err(transient)?;
        let text = key
            .decrypt_string(tenant, agent::tools::columns::REMINDER, &reminder.text)
            .map_err(|e| JobOutcome::Fatal(format!("cannot decrypt reminder: {e}")))?;
        let body = key.encrypt_str(tenant, columns::MESSAGE_BODY, &text);
        match self
            .stores
            .data
            .deliver_reminder(
                tenant,
                id,
                body,
                self.config.send_max_attempts,
                (job.id, job.lease.clone()),
            )
            .await
        {
            Ok(ReminderDelivery::Delivered(_)) => {
                metrics::counter!("concierge_reminders_total", "event" => "delivered").increment(1);
                Ok(JobOutcome::Done)
            }
            Ok(ReminderDelivery::OptedOut) => {
                metrics::counter!("concierge_reminders_total", "event" => "suppressed")
                    .increment(1);
                Ok(JobOutcome::Done)
            }
            // The job row went with the delivery's transaction (or another holder has it).
            Ok(ReminderDelivery::Skipped) | Err(store::StoreError::Conflict(_)) => {
                Ok(JobOutcome::Done)
            }
            Err(e) => Err(transient(e)),
        }
    }

    /// Texts the staff numbers of the conversation's profile that a conversation waits for
    /// a person. Numbers and text are read when the job runs: the payload holds ids only.
    pub async fn notify_staff(&self, job: &ClaimedJob) -> JobOutcome {
        match self.try_notify_staff(job).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn try_notify_staff(&self, job: &ClaimedJob) -> Result<JobOutcome, JobOutcome> {
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobOutcome::Fatal("notify job without tenant".into()))?;
        let conversation: domain::ConversationId = payload_id(job, "conversation_id")?;
        let data = &self.stores.data;
        let (Some(t), Some(c)) = (
            data.get_tenant(tenant).await.map_err(transient)?,
            data.get_conversation(tenant, conversation)
                .await
                .map_err(transient)?,
        ) else {
            return Ok(JobOutcome::Done);
        };
        if c.handoff != domain::Handoff::Pending {
            // Back with the agents, or a person already has it: nobody needs telling.
            return Ok(JobOutcome::Done);
        }
        let Some(profiles) = &self.profiles else {
            return Ok(JobOutcome::Done);
        };
        let state = data
            .conversation_state(tenant, conversation)
            .await
            .map_err(transient)?;
        let profile = profiles
            .resolve(tenant, state.profile.as_deref())
            .await
            .map_err(transient)?;
        let Some(from) = t.phone_numbers.first().cloned() else {
            metrics::counter!("concierge_staff_notifications_total", "outcome" => "no_sender")
                .increment(1);
            return Ok(JobOutcome::Done);
        };
        if profile.notify_sms.is_empty() {
            metrics::counter!("concierge_staff_notifications_total", "outcome" => "not_configured")
                .increment(1);
            return Ok(JobOutcome::Done);
        }
        let body = format!(
            "{}: a customer is waiting for a person in conversation {conversation}.",
            t.name.as_str()
        );
        for to in &profile.notify_sms {
            let wait = self
                .pacer
                .reserve(from.as_str(), self.config.send_interval)
                .await
                .map_err(transient)?;
            tokio::time::sleep(wait.min(Duration::from_secs(10))).await;
            let sms = OutboundSms {
                from: from.clone(),
                to: to.clone(),
                body: body.clone(),
                status_callback: None,
            };
            match self.sender.send_sms(&sms).await {
                Ok(_) => {
                    metrics::counter!("concierge_staff_notifications_total", "outcome" => "sent")
                        .increment(1);
                }
                Err(e @ SmsError::Transient(_)) => return Err(JobOutcome::Retry(e.to_string())),
                Err(e) => {
                    tracing::warn!(error = %e, "staff notification refused by the provider");
                    metrics::counter!("concierge_staff_notifications_total", "outcome" => "failed")
                        .increment(1);
                }
            }
        }
        Ok(JobOutcome::Done)
    }

    /// Runs the turn of an inbound message that was not answered inline, and records the
    /// reply (enqueueing the SMS send) in the same transaction that completes the job.
    pub async fn run_turn(&self, job: &ClaimedJob) -> JobOutcome {
        match self.try_run_turn(job).await {
            Ok(outcome) | Err(outcome) => outcome,
        }
    }

    async fn try_run_turn(&self, job: &ClaimedJob) -> Result<JobOutcome, JobOutcome> {
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobOutcome::Fatal("turn job without tenant".into()))?;
        let id = message_id(job)?;
        let Some(message) = self
            .stores
            .data
            .get_message(tenant, id)
            .await
            .map_err(transient)?
        else {
            return Ok(JobOutcome::Done); // erased since: nothing to answer
        };
        let conversation = self
            .stores
            .data
            .get_conversation(tenant, message.conversation_id)
            .await
            .map_err(transient)?
            .ok_or_else(|| JobOutcome::Fatal("conversation vanished".into()))?;
        // A person has the conversation (or is about to): agents start no turn; staff see
        // the message in the conversation.
        if !conversation.handoff.agents_answer() {
            metrics::counter!("concierge_turns_total", "mode" => "worker", "outcome" => "with_staff", "engine" => "none").increment(1);
            let _ = self.stores.queue.complete(job.id, &job.lease).await;
            return Ok(JobOutcome::Done);
        }
        // One turn per conversation: wait while another turn of it runs. The hold is named
        // after this job (a worker runs several jobs under one lease holder).
        let holder = turn_holder(job);
        if !self
            .stores
            .data
            .acquire_turn(
                tenant,
                conversation.id,
                &holder,
                self.config.turn_timeout + TURN_MARGIN,
            )
            .await
            .map_err(transient)?
        {
            metrics::counter!("concierge_turn_waits_total").increment(1);
            return Ok(JobOutcome::Postpone(TURN_WAIT));
        }
        let result = self
            .run_turn_holding(job, tenant, id, &message, &conversation)
            .await;
        // Whatever happened, the conversation's turn goes back (a recorded reply already
        // gave it back; then this matches nothing).
        if let Err(e) = self
            .stores
            .data
            .release_turn(tenant, conversation.id, &holder)
            .await
        {
            tracing::warn!(error = %e, "conversation turn not released; it expires on its own");
        }
        result
    }

    /// The turn, once this job holds the conversation's turn.
    async fn run_turn_holding(
        &self,
        job: &ClaimedJob,
        tenant: TenantId,
        id: MessageId,
        message: &store::StoredMessage,
        conversation: &store::Conversation,
    ) -> Result<JobOutcome, JobOutcome> {
        // Coalescing: a newer message of the customer arrived while this one waited; its
        // turn answers both (this message is in its history), or already did, so this turn
        // is skipped.
        let newest = self
            .stores
            .data
            .list_messages(
                tenant,
                conversation.id,
                store::Page::new(COALESCE_LOOKBACK, None),
            )
            .await
            .map_err(transient)?;
        let superseded = newest
            .iter()
            .any(|m| m.direction == Direction::Inbound && m.id > id)
            || (newest.len() == COALESCE_LOOKBACK as usize
                && newest.last().is_some_and(|m| m.id > id));
        if superseded {
            metrics::counter!("concierge_turns_total", "mode" => "worker", "outcome" => "coalesced", "engine" => "none").increment(1);
            let _ = self.stores.queue.complete(job.id, &job.lease).await;
            return Ok(JobOutcome::Done);
        }
        let key = self.vault.data_key(tenant).await.map_err(transient)?;
        let text = key
            .decrypt_string(tenant, columns::MESSAGE_BODY, &message.body)
            .map_err(|e| JobOutcome::Fatal(format!("cannot decrypt message: {e}")))?;
        let history = crate::load_history(
            &self.stores,
            &key,
            tenant,
            conversation.id,
            id,
            self.engine.history_window(tenant),
        )
        .await
        .map_err(transient)?;
        let input = TurnInput {
            tenant_id: tenant,
            conversation_id: conversation.id,
            end_user_id: conversation.end_user_id,
            message_id: id,
            channel: message.channel,
            text,
            history,
            sealer: Arc::new(crate::TenantSealer::new(tenant, key.clone())),
            state: None,
        };
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.turn_timeout, self.engine.run(input)).await;
        metrics::histogram!("concierge_turn_seconds", "mode" => "worker")
            .record(started.elapsed().as_secs_f64());
        let output = match result {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => {
                metrics::counter!("concierge_turns_total", "mode" => "worker", "outcome" => "error", "engine" => "none").increment(1);
                return Err(JobOutcome::Retry(e.to_string()));
            }
            Err(_) => {
                metrics::counter!("concierge_turns_total", "mode" => "worker", "outcome" => "timeout", "engine" => "none").increment(1);
                return Err(JobOutcome::Retry("turn timed out".into()));
            }
        };
        metrics::counter!("concierge_turns_total", "mode" => "worker", "outcome" => "ok", "engine" => output.answered_by).increment(1);
        let Some(reply) = output.reply else {
            let _ = self.stores.queue.complete(job.id, &job.lease).await;
            return Ok(JobOutcome::Done);
        };
        let delivery = match message.channel {
            Channel::Sms => Delivery::Outbox {
                max_attempts: self.config.send_max_attempts,
            },
            Channel::WebChat => Delivery::Stored,
        };
        let recorded = self
            .stores
            .data
            .record_reply(
                tenant,
                ReplyMessage {
                    conversation_id: conversation.id,
                    in_reply_to: id,
                    channel: message.channel,
                    body: key.encrypt_str(tenant, columns::MESSAGE_BODY, &reply),
                    delivery,
                    turn_job: Some((job.id, job.lease.clone())),
                },
            )
            .await;
        match recorded {
            // The job row went with the reply's transaction.
            Ok(_) | Err(store::StoreError::Conflict(_)) => Ok(JobOutcome::Done),
            Err(e) => Err(transient(e)),
        }
    }

    /// Sends one queued outbound SMS through the provider.
    pub async fn send_sms(&self, job: &ClaimedJob) -> JobOutcome {
        let outcome = match self.try_send_sms(job).await {
            Ok(outcome) | Err(outcome) => outcome,
        };
        // The last attempt failed: the runner dead-letters the job, so the message must not
        // stay `queued` as if it were still on its way.
        let last = job.lease.attempt >= job.max_attempts;
        if last
            && matches!(outcome, JobOutcome::Retry(_))
            && let (Some(tenant), Ok(id)) = (job.tenant_id, message_id(job))
            && self.fail(tenant, id, "retries_exhausted").await.is_ok()
        {
            metrics::counter!("concierge_outbound_sms_total", "status" => "failed").increment(1);
        }
        outcome
    }

    async fn try_send_sms(&self, job: &ClaimedJob) -> Result<JobOutcome, JobOutcome> {
        let tenant = job
            .tenant_id
            .ok_or_else(|| JobOutcome::Fatal("send job without tenant".into()))?;
        let id = message_id(job)?;
        let Some(out) = self
            .stores
            .data
            .outbound_sms(tenant, id)
            .await
            .map_err(transient)?
        else {
            return Ok(JobOutcome::Done);
        };
        if out.message.direction != Direction::Outbound
            || out.message.status != MessageStatus::Queued
        {
            return Ok(JobOutcome::Done); // already sent (a retried job after a crash)
        }
        if out.opted_out {
            self.fail(tenant, id, "opted_out").await?;
            metrics::counter!("concierge_outbound_sms_total", "status" => "suppressed")
                .increment(1);
            return Ok(JobOutcome::Done);
        }
        let (Some(from), Some(to_cipher)) = (out.from, out.to_ciphertext) else {
            self.fail(tenant, id, "no_route").await?;
            return Ok(JobOutcome::Fatal(
                "no sender number or recipient for this message".into(),
            ));
        };
        let key = self.vault.data_key(tenant).await.map_err(transient)?;
        let decrypt = |column, bytes: &[u8]| {
            key.decrypt_string(tenant, column, bytes)
                .map_err(|e| JobOutcome::Fatal(format!("cannot decrypt: {e}")))
        };
        let to = PhoneNumber::parse(&decrypt(columns::END_USER_PHONE, &to_cipher)?)
            .map_err(|e| JobOutcome::Fatal(format!("stored number invalid: {e}")))?;
        let body = decrypt(columns::MESSAGE_BODY, &out.message.body)?;

        // Per-sender pacing, shared by every worker through Redis when configured.
        let wait = self
            .pacer
            .reserve(from.as_str(), self.config.send_interval)
            .await
            .map_err(transient)?;
        if wait > Duration::from_secs(10) {
            return Err(JobOutcome::Postpone(wait));
        }
        tokio::time::sleep(wait).await;

        let status_callback = self
            .config
            .public_url
            .as_ref()
            .map(|u| format!("{u}/webhooks/twilio/status"));
        let sms = OutboundSms {
            from,
            to,
            body,
            status_callback,
        };
        match self.sender.send_sms(&sms).await {
            Ok(sent) => {
                let status =
                    MessageStatus::from_twilio(&sent.status).unwrap_or(MessageStatus::Sent);
                let status = if status.rank() < MessageStatus::Sent.rank() {
                    MessageStatus::Sent
                } else {
                    status
                };
                self.stores
                    .data
                    .set_message_status(
                        tenant,
                        id,
                        StatusUpdate {
                            status,
                            provider_sid: Some(sent.sid),
                            error_code: None,
                        },
                    )
                    .await
                    .map_err(transient)?;
                metrics::counter!("concierge_outbound_sms_total", "status" => "sent").increment(1);
                Ok(JobOutcome::Done)
            }
            Err(SmsError::OptedOut) => {
                self.fail(tenant, id, "21610").await?;
                metrics::counter!("concierge_outbound_sms_total", "status" => "opted_out")
                    .increment(1);
                Ok(JobOutcome::Done)
            }
            Err(SmsError::NotConfigured) => {
                self.fail(tenant, id, "provider_not_configured").await?;
                metrics::counter!("concierge_outbound_sms_total", "status" => "not_configured")
                    .increment(1);
                Ok(JobOutcome::Done)
            }
            Err(SmsError::Rejected {
                status,
                code,
                message,
            }) => {
                let code = code.map_or_else(|| format!("http_{status}"), |c| c.to_string());
                self.fail(tenant, id, &code).await?;
                metrics::counter!("concierge_outbound_sms_total", "status" => "rejected")
                    .increment(1);
                Ok(JobOutcome::Fatal(format!(
                    "provider rejected the message ({code}): {message}"
                )))
            }
            Err(e @ SmsError::Transient(_)) => {
                metrics::counter!("concierge_outbound_sms_total", "status" => "retry").increment(1);
                Err(JobOutcome::Retry(e.to_string()))
            }
        }
    }

    async fn fail(&self, tenant: TenantId, id: MessageId, code: &str) -> Result<(), JobOutcome> {
        self.stores
            .data
            .set_message_status(
                tenant,
                id,
                StatusUpdate {
                    status: MessageStatus::Failed,
                    provider_sid: None,
                    error_code: Some(code.to_owned()),
                },
            )
            .await
            .map(|_| ())
            .map_err(transient)
    }
}

/// Applies a delivery status callback. Unknown statuses are ignored (Twilio adds values).
pub async fn apply_status(
    stores: &Stores,
    tenant: TenantId,
    sid: &str,
    status: &str,
    error_code: Option<&str>,
) -> Result<bool, MessagingError> {
    let Some(status) = MessageStatus::from_twilio(status) else {
        return Ok(false);
    };
    let update = StatusUpdate {
        status,
        provider_sid: None,
        error_code: error_code.map(str::to_owned),
    };
    let changed = stores
        .data
        .set_status_by_provider_sid(tenant, sid, update)
        .await?;
    if changed {
        metrics::counter!("concierge_outbound_sms_total", "status" => status.as_str()).increment(1);
    }
    Ok(changed)
}
