//! Rows and inputs of the store, in domain terms.

use std::time::Duration;

use domain::{
    ApiKeyId, Channel, ConsentKeyword, ConversationId, Direction, EndUserId, FactId, JobId,
    KbEntryId, MessageId, MessageStatus, PhoneNumber, ReminderId, TenantId, TenantName,
};
use jiff::Timestamp;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: usize,
    pub known: usize,
}

impl MigrationStatus {
    #[must_use]
    pub const fn is_current(&self) -> bool {
        self.applied >= self.known
    }
}

/// Keyset pagination: items strictly older than `before` (by id, which is time-ordered).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub before: Option<uuid::Uuid>,
}

impl Page {
    pub const MAX_LIMIT: u32 = 200;

    #[must_use]
    pub fn new(limit: u32, before: Option<uuid::Uuid>) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            before,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new(50, None)
    }
}

#[derive(Clone, Debug)]
pub struct NewTenant {
    pub name: TenantName,
    pub phone_numbers: Vec<PhoneNumber>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: TenantName,
    pub phone_numbers: Vec<PhoneNumber>,
    pub created_at: Timestamp,
}

/// A tenant data key wrapped by the master key (see the `crypto` crate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDataKey {
    pub key_id: u32,
    pub kek_id: u32,
    pub wrapped: Vec<u8>,
}

#[derive(Clone, Debug)]
pub struct NewApiKey {
    pub prefix: String,
    pub digest: [u8; 32],
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub prefix: String,
    pub created_at: Timestamp,
}

/// Who sent an inbound message.
#[derive(Clone, Debug)]
pub enum Contact {
    /// A phone number, found by its blind index and created (with the ciphertext) on first contact.
    Phone {
        index: [u8; 32],
        ciphertext: Vec<u8>,
    },
    /// An existing conversation (web chat continuing a thread).
    Conversation(ConversationId),
    /// A new anonymous visitor (web chat starting a thread).
    Anonymous,
}

/// How to schedule the turn job of an inbound message.
#[derive(Clone, Debug)]
pub struct TurnPlan {
    /// When set, the job is created already leased to this holder until `lease` has passed,
    /// so the API can run the turn inline while a worker takes over if the API dies.
    pub inline_holder: Option<String>,
    pub lease: Duration,
    pub max_attempts: u32,
}

#[derive(Clone, Debug)]
pub struct InboundMessage {
    pub channel: Channel,
    pub contact: Contact,
    /// The provider's message id (Twilio `MessageSid`), unique per tenant: the claim.
    pub provider_sid: Option<String>,
    /// The tenant number the message was sent to, remembered to answer from it.
    pub tenant_number: Option<PhoneNumber>,
    /// Encrypted body.
    pub body: Vec<u8>,
    pub keyword: Option<ConsentKeyword>,
    pub turn: TurnPlan,
}

#[derive(Clone, Debug)]
pub enum InboundOutcome {
    Recorded(RecordedInbound),
    /// The provider id was already claimed: nothing was written.
    Duplicate(DuplicateInbound),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedInbound {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub end_user_id: EndUserId,
    pub new_end_user: bool,
    /// The opt-out state after applying the message's keyword.
    pub opted_out: bool,
    pub turn_job: Option<JobId>,
    /// The turn job is leased to the plan's inline holder, which also holds the
    /// conversation's turn: run it inline. False when another turn of the conversation is
    /// running: the job is queued for the worker, which waits for the turn.
    pub inline: bool,
    /// For an inline turn, the conversation's agent state as it was when the message was
    /// recorded (read with it); the default otherwise. See [`crate::Store::conversation_state`].
    pub state: ConversationState,
}

#[derive(Clone, Debug)]
pub struct DuplicateInbound {
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub reply: Option<StoredMessage>,
}

/// How a reply reaches the end user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Returned in the webhook response (TwiML).
    Inline,
    /// Sent later by the outbox through the provider's REST API (enqueues `send_sms`).
    Outbox { max_attempts: u32 },
    /// Stored in the conversation only (web chat reads it through the API).
    Stored,
}

#[derive(Clone, Debug)]
pub struct ReplyMessage {
    pub conversation_id: ConversationId,
    pub in_reply_to: MessageId,
    pub channel: Channel,
    /// Encrypted body.
    pub body: Vec<u8>,
    pub delivery: Delivery,
    /// The turn job to complete in the same transaction, with the lease that holds it.
    pub turn_job: Option<(JobId, crate::Lease)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMessage {
    pub id: MessageId,
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub direction: Direction,
    pub channel: Channel,
    pub body: Vec<u8>,
    pub status: MessageStatus,
    pub provider_sid: Option<String>,
    pub in_reply_to: Option<MessageId>,
    pub error_code: Option<String>,
    pub created_at: Timestamp,
    /// The member of staff who wrote an outbound message; None for the agents' replies and
    /// for inbound messages.
    pub sent_by: Option<String>,
}

/// A member of staff's message to the customer (see `Store::record_staff_reply`).
#[derive(Clone, Debug)]
pub struct StaffReply {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub channel: Channel,
    /// Encrypted body.
    pub body: Vec<u8>,
    /// Who wrote it (e.g. `api-key:<id>`), at most 200 characters.
    pub staff: String,
    pub delivery: Delivery,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaffReplyOutcome {
    Recorded(StoredMessage),
    /// The end user opted out of SMS: nothing was written.
    OptedOut,
}

/// An outbound SMS ready to hand to the provider.
#[derive(Clone, Debug)]
pub struct OutboundSms {
    pub message: StoredMessage,
    /// Encrypted phone number of the end user (absent for anonymous web visitors).
    pub to_ciphertext: Option<Vec<u8>>,
    pub from: Option<PhoneNumber>,
    pub opted_out: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusUpdate {
    pub status: MessageStatus,
    pub provider_sid: Option<String>,
    pub error_code: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndUser {
    pub id: EndUserId,
    pub tenant_id: TenantId,
    pub phone_ciphertext: Option<Vec<u8>>,
    pub opted_out: bool,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsentEvent {
    pub keyword: ConsentKeyword,
    pub message_id: Option<MessageId>,
    pub created_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conversation {
    pub id: ConversationId,
    pub tenant_id: TenantId,
    pub end_user_id: EndUserId,
    pub message_count: u64,
    pub created_at: Timestamp,
    pub last_message_at: Timestamp,
    /// Who answers: the agents, or a person (see [`domain::Handoff`]).
    pub handoff: domain::Handoff,
    /// Since when the conversation is with (or waits for) a person; None with the agents.
    pub handoff_at: Option<Timestamp>,
    /// The member of staff who took the conversation (`Human`), as the API recorded them.
    pub handoff_staff: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KbEntryInput {
    pub title: String,
    pub body: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KbEntry {
    pub id: KbEntryId,
    pub tenant_id: TenantId,
    pub title: String,
    pub body: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Clone, Debug, PartialEq)]
pub struct KbHit {
    pub entry: KbEntry,
    /// Higher is better; comparable only within one search.
    pub score: f64,
}

/// Model usage: calls, tokens and cost (US dollars times 1,000,000).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelUsage {
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_micros: u64,
}

/// One day's usage of a tenant as a whole and of one of its end users.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub tenant: ModelUsage,
    pub end_user: ModelUsage,
}

/// Days since 1970-01-01 in UTC: the key of daily usage.
#[must_use]
pub fn utc_day(at: Timestamp) -> i64 {
    at.as_second().div_euclid(86_400)
}

/// Milliseconds since the Unix epoch, the storage form of every timestamp.
#[must_use]
pub fn timestamp_from_ms(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

// --- agents: profiles, conversation state, facts, reminders, turn steps -------------------

/// One version of a tenant's agent profile (TOML source, validated by the agent crate
/// before it is stored; the store keeps it as text).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredProfile {
    pub name: String,
    /// 1 for the first version of a name, then +1 for each new one.
    pub version: u32,
    pub source: String,
    pub created_at: Timestamp,
}

/// What the agent runtime keeps between the turns of one conversation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationState {
    /// The profile serving the conversation; None: the tenant's default.
    pub profile: Option<String>,
    /// The agent of that profile holding the conversation; None: the profile's entry agent.
    pub agent: Option<String>,
    /// Encrypted JSON of the agent's working memory (slots, rolling summary); the store
    /// never reads it.
    pub data: Option<Vec<u8>>,
    /// Bumped by every save; a save that expects another revision is a `Conflict`.
    pub revision: u64,
}

/// A fact to remember about an end user. The id comes from the caller, so a retried turn
/// writes it once.
#[derive(Clone, Debug)]
pub struct NewFact {
    pub id: FactId,
    /// Encrypted text.
    pub text: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    pub id: FactId,
    pub end_user_id: EndUserId,
    /// Encrypted text.
    pub text: Vec<u8>,
    pub created_at: Timestamp,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReminderStatus {
    Scheduled,
    Sent,
    Cancelled,
    /// Not delivered: the end user opted out, or the channel cannot reach them.
    Failed,
}

impl ReminderStatus {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Sent => "sent",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "scheduled" => Some(Self::Scheduled),
            "sent" => Some(Self::Sent),
            "cancelled" => Some(Self::Cancelled),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// A reminder to schedule. The id comes from the caller, so a retried turn schedules it once.
#[derive(Clone, Debug)]
pub struct NewReminder {
    pub id: ReminderId,
    pub end_user_id: EndUserId,
    pub conversation_id: ConversationId,
    /// How the reminder reaches the end user: SMS is sent, web chat is stored.
    pub channel: Channel,
    /// Encrypted text of what to remind.
    pub text: Vec<u8>,
    pub due_at: Timestamp,
    /// Attempts of the delivery job.
    pub max_attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reminder {
    pub id: ReminderId,
    pub end_user_id: EndUserId,
    pub conversation_id: ConversationId,
    pub channel: Channel,
    /// Encrypted text.
    pub text: Vec<u8>,
    pub due_at: Timestamp,
    pub status: ReminderStatus,
    /// The message that delivered it, once sent.
    pub message_id: Option<MessageId>,
    pub created_at: Timestamp,
}

/// What [`crate::Store::deliver_reminder`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReminderDelivery {
    /// The message was recorded (and, for SMS, its send job enqueued).
    Delivered(MessageId),
    /// The end user opted out: marked failed, nothing recorded.
    OptedOut,
    /// It was cancelled, already delivered, or does not exist: nothing to do.
    Skipped,
}

/// A step of a turn to record; see [`TurnStep`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTurnStep {
    pub seq: u32,
    pub kind: String,
    pub name: String,
    pub is_error: bool,
    pub detail: Option<Vec<u8>>,
}

/// One step of a turn, recorded as it happens so a crashed turn can be resumed without
/// repeating a tool that already ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnStep {
    /// 0-based position in the turn.
    pub seq: u32,
    /// "model", "tool" or "handoff".
    pub kind: String,
    /// The tool or agent name (no user data).
    pub name: String,
    pub is_error: bool,
    /// Encrypted detail (tool arguments and result), for resuming.
    pub detail: Option<Vec<u8>>,
    pub created_at: Timestamp,
}

/// A vector as the stores keep it (knowledge-base embeddings): its numbers as
/// little-endian `f32`, one after the other, so both backends read each other's bytes.
#[must_use]
pub fn vector_to_bytes(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The vector stored as `bytes` (see [`vector_to_bytes`]); None when their length is not a
/// multiple of 4.
#[must_use]
pub fn vector_from_bytes(bytes: &[u8]) -> Option<Vec<f32>> {
    let chunks = bytes.chunks_exact(4);
    if !chunks.remainder().is_empty() {
        return None;
    }
    Some(
        chunks
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}
