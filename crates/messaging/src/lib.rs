//! The message path shared by the API and the worker: encrypting and recording inbound
//! messages, running turns inline within a budget or later in the worker, recording
//! replies, and sending outbound SMS from the outbox.

mod outbox;
mod vault;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::{TurnEngine, TurnInput};
use domain::{Channel, ConsentKeyword, ConversationId, MessageId, PhoneNumber, TenantId};
use store::{
    Contact, Delivery, InboundMessage, InboundOutcome, Lease, ReplyMessage, StoreError, Stores,
    Tenant, TurnPlan,
};

pub use outbox::{JobOutcome, Outbox, OutboxConfig, apply_status};
pub use vault::{TenantSealer, Vault};

/// Column names bound into ciphertexts as associated data.
pub mod columns {
    pub const MESSAGE_BODY: &str = "messages.body";
    pub const END_USER_PHONE: &str = "end_users.phone";
}

#[derive(Debug, thiserror::Error)]
pub enum MessagingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encryption: {0}")]
    Crypto(#[from] crypto::CryptoError),
    #[error("not found")]
    NotFound,
}

#[derive(Clone, Debug)]
pub struct MessagingConfig {
    /// A turn that finishes within this budget is answered inline (TwiML or the chat
    /// response); otherwise the worker answers through the outbox.
    pub inline_budget: Duration,
    pub max_attempts: u32,
    /// Distinguishes this process in lease holder names.
    pub node_id: String,
}

/// What to answer an inbound SMS webhook with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmsReply {
    /// The TwiML `<Message>` text; None for an empty `<Response/>`.
    pub text: Option<String>,
    pub outcome: InboundKind,
    /// Who answered, when an agent turn answered inline.
    pub turn: Option<TurnInfo>,
    /// The sender's conversation (None for a replayed delivery).
    pub conversation_id: Option<ConversationId>,
}

/// What an inline turn did, for operators (no user data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnInfo {
    pub answered_by: &'static str,
    pub tools: Vec<&'static str>,
    /// The profile's agents that spoke, in order.
    pub agents: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundKind {
    /// Answered inline.
    Answered,
    /// Recorded; the worker will answer through the outbox.
    Deferred,
    /// A replayed webhook; answered as the first time.
    Duplicate,
    /// A STOP / START / HELP keyword.
    Keyword,
    /// From an opted-out number: recorded, not answered.
    OptedOut,
    /// To a conversation a person has (or is about to take): recorded for staff, no agent
    /// turn.
    WithStaff,
}

impl InboundKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Deferred => "deferred",
            Self::Duplicate => "duplicate",
            Self::Keyword => "keyword",
            Self::WithStaff => "with_staff",
            Self::OptedOut => "opted_out",
        }
    }
}

/// The answer to a web-chat message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatReply {
    pub conversation_id: ConversationId,
    pub message_id: MessageId,
    /// None when the turn did not finish inline; the reply will appear in the conversation.
    pub reply: Option<String>,
    pub turn: Option<TurnInfo>,
}

/// The inbound side of the message path.
pub struct Messaging {
    stores: Stores,
    vault: Arc<Vault>,
    engine: Arc<dyn TurnEngine>,
    config: MessagingConfig,
}

impl Messaging {
    pub fn new(
        stores: Stores,
        vault: Arc<Vault>,
        engine: Arc<dyn TurnEngine>,
        config: MessagingConfig,
    ) -> Self {
        Self {
            stores,
            vault,
            engine,
            config,
        }
    }

    #[must_use]
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    #[must_use]
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// The tenant's settings changed through this process (profiles, model providers).
    pub fn settings_changed(&self, tenant: TenantId) {
        self.engine.settings_changed(tenant);
    }

    /// Sends a member of staff's message to the customer, on the channel of the
    /// conversation's latest message: SMS through the outbox, web chat stored for the
    /// visitor. The conversation passes to that person (agents stop answering it) in the
    /// same transaction. `id` makes a retried request write nothing twice.
    pub async fn staff_reply(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        id: MessageId,
        text: &str,
        staff: &str,
    ) -> Result<store::StaffReplyOutcome, MessagingError> {
        let latest = self
            .stores
            .data
            .list_messages(tenant, conversation, store::Page::new(1, None))
            .await?;
        let Some(latest) = latest.first() else {
            return Err(MessagingError::NotFound);
        };
        let channel = latest.channel;
        let key = self.vault.data_key(tenant).await?;
        let delivery = match channel {
            Channel::Sms => Delivery::Outbox {
                max_attempts: self.config.max_attempts,
            },
            Channel::WebChat => Delivery::Stored,
        };
        let outcome = self
            .stores
            .data
            .record_staff_reply(
                tenant,
                store::StaffReply {
                    id,
                    conversation_id: conversation,
                    channel,
                    body: key.encrypt_str(tenant, columns::MESSAGE_BODY, text),
                    staff: staff.to_owned(),
                    delivery,
                },
            )
            .await
            .map_err(|e| match e {
                StoreError::NotFound => MessagingError::NotFound,
                e => e.into(),
            })?;
        if matches!(outcome, store::StaffReplyOutcome::Recorded(_)) {
            metrics::counter!("concierge_staff_messages_total", "channel" => channel.as_str())
                .increment(1);
        }
        Ok(outcome)
    }

    fn turn_plan(&self, holder: Option<String>) -> TurnPlan {
        TurnPlan {
            // The lease outlives the budget, so a slow inline turn is never taken over
            // while it may still answer; a crashed API gives the job to a worker after it.
            lease: self.config.inline_budget + Duration::from_secs(5),
            inline_holder: holder,
            max_attempts: self.config.max_attempts,
        }
    }

    /// Handles one verified inbound SMS for `tenant`.
    pub async fn receive_sms(
        &self,
        tenant: &Tenant,
        from: &PhoneNumber,
        to: &PhoneNumber,
        sid: &str,
        body: &str,
    ) -> Result<SmsReply, MessagingError> {
        let key = self.vault.data_key(tenant.id).await?;
        let keyword = ConsentKeyword::classify(body);
        let holder = format!(
            "inline:{}:{}",
            self.config.node_id,
            uuid::Uuid::now_v7().simple()
        );
        let inbound = InboundMessage {
            channel: Channel::Sms,
            contact: Contact::Phone {
                index: self.vault.phone_index(tenant.id, from),
                ciphertext: key.encrypt_str(tenant.id, columns::END_USER_PHONE, from.as_str()),
            },
            provider_sid: Some(sid.to_owned()),
            tenant_number: Some(to.clone()),
            body: key.encrypt_str(tenant.id, columns::MESSAGE_BODY, body),
            keyword,
            turn: self.turn_plan(Some(holder.clone())),
        };
        let recorded = match self.stores.data.record_inbound(tenant.id, inbound).await? {
            InboundOutcome::Duplicate(dup) => {
                // Answer a replay as the first delivery was answered: with the inline reply
                // if there was one; otherwise the outbox is (or was) sending it.
                let text = match dup.reply {
                    Some(reply) if reply.status == domain::MessageStatus::RepliedInline => {
                        Some(key.decrypt_string(tenant.id, columns::MESSAGE_BODY, &reply.body)?)
                    }
                    _ => None,
                };
                count_inbound(Channel::Sms, InboundKind::Duplicate);
                return Ok(SmsReply {
                    text,
                    outcome: InboundKind::Duplicate,
                    turn: None,
                    conversation_id: None,
                });
            }
            InboundOutcome::Recorded(r) => r,
        };

        if let Some(keyword) = keyword {
            let text = keyword_reply(keyword, tenant.name.as_str());
            self.stores
                .data
                .record_reply(
                    tenant.id,
                    ReplyMessage {
                        conversation_id: recorded.conversation_id,
                        in_reply_to: recorded.message_id,
                        channel: Channel::Sms,
                        body: key.encrypt_str(tenant.id, columns::MESSAGE_BODY, &text),
                        delivery: Delivery::Inline,
                        turn_job: None,
                    },
                )
                .await?;
            count_inbound(Channel::Sms, InboundKind::Keyword);
            return Ok(SmsReply {
                text: Some(text),
                outcome: InboundKind::Keyword,
                turn: None,
                conversation_id: Some(recorded.conversation_id),
            });
        }
        let Some(job) = recorded.turn_job else {
            let kind = if recorded.opted_out {
                InboundKind::OptedOut
            } else {
                InboundKind::WithStaff
            };
            count_inbound(Channel::Sms, kind);
            return Ok(SmsReply {
                text: None,
                outcome: kind,
                turn: None,
                conversation_id: Some(recorded.conversation_id),
            });
        };
        if !recorded.inline {
            // Another turn of this conversation is running: the worker answers this message
            // after it, with this one in its history.
            count_inbound(Channel::Sms, InboundKind::Deferred);
            return Ok(SmsReply {
                text: None,
                outcome: InboundKind::Deferred,
                turn: None,
                conversation_id: Some(recorded.conversation_id),
            });
        }
        let history = load_history(
            &self.stores,
            &key,
            tenant.id,
            recorded.conversation_id,
            recorded.message_id,
            self.engine.history_window(tenant.id),
        )
        .await?;
        let input = TurnInput {
            tenant_id: tenant.id,
            conversation_id: recorded.conversation_id,
            end_user_id: recorded.end_user_id,
            message_id: recorded.message_id,
            channel: Channel::Sms,
            text: body.to_owned(),
            history,
            sealer: Arc::new(TenantSealer::new(tenant.id, key.clone())),
            state: Some(recorded.state.clone()),
        };
        let lease = Lease { holder, attempt: 0 };
        let answer = self
            .inline_turn(tenant.id, &key, input, job, lease, Delivery::Inline)
            .await?;
        let outcome = if answer.is_some() {
            InboundKind::Answered
        } else {
            InboundKind::Deferred
        };
        count_inbound(Channel::Sms, outcome);
        let (text, turn) = answer.map_or((None, None), |(t, i)| (Some(t), Some(i)));
        Ok(SmsReply {
            text,
            outcome,
            turn,
            conversation_id: Some(recorded.conversation_id),
        })
    }

    /// Handles one web-chat message: a new conversation when `conversation` is None.
    pub async fn receive_web_chat(
        &self,
        tenant: TenantId,
        conversation: Option<ConversationId>,
        text: &str,
    ) -> Result<ChatReply, MessagingError> {
        let key = self.vault.data_key(tenant).await?;
        let holder = format!(
            "inline:{}:{}",
            self.config.node_id,
            uuid::Uuid::now_v7().simple()
        );
        let inbound = InboundMessage {
            channel: Channel::WebChat,
            contact: conversation.map_or(Contact::Anonymous, Contact::Conversation),
            provider_sid: None,
            tenant_number: None,
            body: key.encrypt_str(tenant, columns::MESSAGE_BODY, text),
            keyword: None,
            turn: self.turn_plan(Some(holder.clone())),
        };
        let recorded = match self.stores.data.record_inbound(tenant, inbound).await {
            Ok(InboundOutcome::Recorded(r)) => r,
            Ok(InboundOutcome::Duplicate(_)) | Err(StoreError::NotFound) => {
                return Err(MessagingError::NotFound);
            }
            Err(e) => return Err(e.into()),
        };
        let Some(job) = recorded.turn_job else {
            count_inbound(Channel::WebChat, InboundKind::WithStaff);
            return Ok(ChatReply {
                conversation_id: recorded.conversation_id,
                message_id: recorded.message_id,
                reply: None,
                turn: None,
            });
        };
        if !recorded.inline {
            count_inbound(Channel::WebChat, InboundKind::Deferred);
            return Ok(ChatReply {
                conversation_id: recorded.conversation_id,
                message_id: recorded.message_id,
                reply: None,
                turn: None,
            });
        }
        let history = load_history(
            &self.stores,
            &key,
            tenant,
            recorded.conversation_id,
            recorded.message_id,
            self.engine.history_window(tenant),
        )
        .await?;
        let input = TurnInput {
            tenant_id: tenant,
            conversation_id: recorded.conversation_id,
            end_user_id: recorded.end_user_id,
            message_id: recorded.message_id,
            channel: Channel::WebChat,
            text: text.to_owned(),
            history,
            sealer: Arc::new(TenantSealer::new(tenant, key.clone())),
            state: Some(recorded.state.clone()),
        };
        let answer = self
            .inline_turn(
                tenant,
                &key,
                input,
                job,
                Lease { holder, attempt: 0 },
                Delivery::Stored,
            )
            .await?;
        count_inbound(
            Channel::WebChat,
            if answer.is_some() {
                InboundKind::Answered
            } else {
                InboundKind::Deferred
            },
        );
        let (reply, turn) = answer.map_or((None, None), |(t, i)| (Some(t), Some(i)));
        Ok(ChatReply {
            conversation_id: recorded.conversation_id,
            message_id: recorded.message_id,
            reply,
            turn,
        })
    }

    /// Runs a turn within the inline budget. On success the reply is recorded and the job
    /// completed in one transaction; on timeout or failure the job is released to the
    /// worker, which answers through the outbox.
    async fn inline_turn(
        &self,
        tenant: TenantId,
        key: &crypto::DataKey,
        input: TurnInput,
        job: domain::JobId,
        lease: Lease,
        delivery: Delivery,
    ) -> Result<Option<(String, TurnInfo)>, MessagingError> {
        let (conversation_id, in_reply_to, channel) =
            (input.conversation_id, input.message_id, input.channel);
        let started = Instant::now();
        let result = tokio::time::timeout(self.config.inline_budget, self.engine.run(input)).await;
        metrics::histogram!("concierge_turn_seconds", "mode" => "inline")
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(Ok(output)) => {
                metrics::counter!("concierge_turns_total", "mode" => "inline", "outcome" => "ok", "engine" => output.answered_by)
                    .increment(1);
                let Some(text) = output.reply else {
                    self.stores.queue.complete(job, &lease).await?;
                    self.stores
                        .data
                        .release_turn(tenant, conversation_id, &lease.holder)
                        .await?;
                    return Ok(None);
                };
                let info = TurnInfo {
                    answered_by: output.answered_by,
                    tools: output.tools,
                    agents: output.agents,
                };
                let reply = ReplyMessage {
                    conversation_id,
                    in_reply_to,
                    channel,
                    body: key.encrypt_str(tenant, columns::MESSAGE_BODY, &text),
                    delivery,
                    turn_job: Some((job, lease)),
                };
                match self.stores.data.record_reply(tenant, reply).await {
                    Ok(_) => Ok(Some((text, info))),
                    // The lease was lost (a worker owns the turn now and will answer), or a
                    // person took the conversation during the turn (staff answer).
                    Err(StoreError::Conflict(_)) => Ok(None),
                    Err(e) => Err(e.into()),
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "inline turn failed; handing it to the worker");
                metrics::counter!("concierge_turns_total", "mode" => "inline", "outcome" => "error", "engine" => "none").increment(1);
                self.hand_to_worker(tenant, conversation_id, job, &lease)
                    .await?;
                Ok(None)
            }
            Err(_) => {
                metrics::counter!("concierge_turns_total", "mode" => "inline", "outcome" => "over_budget", "engine" => "none")
                    .increment(1);
                self.hand_to_worker(tenant, conversation_id, job, &lease)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Gives an inline turn that did not finish to the worker: the job back to the queue
    /// and the conversation's turn back, so the worker can take both.
    async fn hand_to_worker(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        job: domain::JobId,
        lease: &Lease,
    ) -> Result<(), MessagingError> {
        self.stores.queue.release(job, lease).await?;
        self.stores
            .data
            .release_turn(tenant, conversation, &lease.holder)
            .await?;
        Ok(())
    }

    /// Decrypts a stored message body for the API.
    pub async fn message_text(
        &self,
        tenant: TenantId,
        body: &[u8],
    ) -> Result<String, MessagingError> {
        let key = self.vault.data_key(tenant).await?;
        Ok(key.decrypt_string(tenant, columns::MESSAGE_BODY, body)?)
    }
}

/// The `window` messages before `before` in a conversation, decrypted, oldest first.
pub(crate) async fn load_history(
    stores: &Stores,
    key: &crypto::DataKey,
    tenant: TenantId,
    conversation: ConversationId,
    before: MessageId,
    window: u32,
) -> Result<Vec<agent::PastMessage>, MessagingError> {
    if window == 0 {
        return Ok(Vec::new());
    }
    let page = store::Page {
        limit: window.min(store::Page::MAX_LIMIT),
        before: Some(before.into_uuid()),
    };
    let mut messages = stores
        .data
        .list_messages(tenant, conversation, page)
        .await?;
    messages.reverse();
    messages
        .into_iter()
        .map(|m| {
            Ok(agent::PastMessage {
                id: m.id,
                direction: m.direction,
                text: key.decrypt_string(tenant, columns::MESSAGE_BODY, &m.body)?,
                from_staff: m.sent_by.is_some(),
            })
        })
        .collect()
}

fn count_inbound(channel: Channel, kind: InboundKind) {
    metrics::counter!("concierge_inbound_messages_total", "channel" => channel.as_str(), "outcome" => kind.as_str())
        .increment(1);
}

/// The fixed answers carriers expect to the standard keywords.
#[must_use]
pub fn keyword_reply(keyword: ConsentKeyword, tenant_name: &str) -> String {
    match keyword {
        ConsentKeyword::OptOut => format!(
            "{tenant_name}: you are unsubscribed and will receive no more messages. Reply START to resubscribe."
        ),
        ConsentKeyword::OptIn => {
            format!(
                "{tenant_name}: you are subscribed again. Reply HELP for help, STOP to unsubscribe."
            )
        }
        ConsentKeyword::Help => format!(
            "{tenant_name}: reply to this number to reach us. Reply STOP to unsubscribe. Msg & data rates may apply."
        ),
    }
}
