//! Storage traits in domain terms, shared by the PostgreSQL and SQLite backends.
//!
//! Everything that touches tenant data takes a [`TenantId`]. Encryption happens above this
//! layer: the store sees ciphertexts and blind indexes as bytes, never plaintext PII.

mod queue;
mod records;
pub mod snapshot;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{
    ConversationId, EndUserId, FactId, JobId, KbEntryId, MessageId, PhoneNumber, ReminderId,
    TenantId,
};

pub use queue::{ClaimedJob, DeadJob, JobQueue, Lease, NewJob, QueueStats};
pub use records::*;
pub use snapshot::{RestoreCounts, SnapshotSink, SnapshotSource};

/// What can go wrong in a store call, in terms the layers above can act on.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or timed out; the caller may retry.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A row that cannot be turned back into a domain value (corruption or a bug).
    #[error("invalid stored data: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
    /// A snapshot's sink or source failed (a backup file that cannot be written, or one that
    /// is damaged); nothing of a restore is kept.
    #[error("snapshot: {0}")]
    Snapshot(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Which backend a store is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// The primary store: tenants, contacts, conversations, messages, consent, knowledge base.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()>;

    /// Applied versus embedded migrations.
    async fn migration_status(&self) -> StoreResult<MigrationStatus>;

    // --- tenants (global routing data) ---------------------------------------------------

    /// Creates a tenant with its phone numbers. A number already routed to a tenant is a
    /// `Conflict`, and nothing is written.
    async fn create_tenant(&self, tenant: NewTenant) -> StoreResult<Tenant>;
    async fn list_tenants(&self) -> StoreResult<Vec<Tenant>>;
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Option<Tenant>>;
    /// The tenant a number is routed to (the `To` of an inbound SMS).
    async fn tenant_by_phone(&self, phone: &PhoneNumber) -> StoreResult<Option<Tenant>>;

    /// The tenant's wrapped data key, if one exists.
    async fn data_key(&self, tenant: TenantId) -> StoreResult<Option<StoredDataKey>>;
    /// Stores `key` unless the tenant already has one; returns the key that is now stored,
    /// so concurrent first writers agree on one key.
    async fn put_data_key(
        &self,
        tenant: TenantId,
        key: StoredDataKey,
    ) -> StoreResult<StoredDataKey>;

    async fn create_api_key(&self, tenant: TenantId, key: NewApiKey) -> StoreResult<ApiKey>;
    async fn api_key_by_digest(&self, digest: &[u8; 32]) -> StoreResult<Option<ApiKey>>;

    // --- the message path ----------------------------------------------------------------

    /// Records an inbound message in one transaction: finds or creates the end user and the
    /// conversation, claims the provider id (a replay is `Duplicate` and writes nothing),
    /// applies a consent keyword to the ledger, stores the message, and enqueues the turn
    /// job when one is needed and the agents answer the conversation
    /// ([`domain::Handoff::agents_answer`]): a message to a conversation that is with (or
    /// waits for) a person is stored with no turn job and no inline turn.
    async fn record_inbound(
        &self,
        tenant: TenantId,
        inbound: InboundMessage,
    ) -> StoreResult<InboundOutcome>;

    /// Records the reply of a turn, completes the turn job if one is given (and gives back
    /// the conversation's turn if that turn holds it, under its lease holder or under
    /// `"<lease holder>:<job id>"`), and for outbox delivery enqueues the send job, all in
    /// one transaction. When a person has the conversation (`Handoff::Human`) the reply is
    /// not recorded: the turn job is still completed and the turn given back, and the call
    /// returns `Conflict` (as it does when the turn job's lease was lost, where nothing is
    /// written at all).
    async fn record_reply(&self, tenant: TenantId, reply: ReplyMessage) -> StoreResult<MessageId>;

    /// Takes the conversation's turn for `holder` until `ttl` from now, if no one holds it
    /// (or the holder's time ran out). One turn per conversation at a time: false when
    /// another holder has it, even the same holder name for another job.
    async fn acquire_turn(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        holder: &str,
        ttl: std::time::Duration,
    ) -> StoreResult<bool>;

    /// Gives the conversation's turn back if `holder` holds it.
    async fn release_turn(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        holder: &str,
    ) -> StoreResult<()>;

    /// Everything the sender needs for one queued outbound SMS.
    async fn outbound_sms(
        &self,
        tenant: TenantId,
        message: MessageId,
    ) -> StoreResult<Option<OutboundSms>>;

    /// Moves a message's delivery status forward (never backwards); returns whether it changed.
    async fn set_message_status(
        &self,
        tenant: TenantId,
        message: MessageId,
        update: StatusUpdate,
    ) -> StoreResult<bool>;

    /// Applies a provider status callback to the outbound message with that provider id.
    async fn set_status_by_provider_sid(
        &self,
        tenant: TenantId,
        provider_sid: &str,
        update: StatusUpdate,
    ) -> StoreResult<bool>;

    async fn end_user(&self, tenant: TenantId, id: EndUserId) -> StoreResult<Option<EndUser>>;
    async fn end_user_by_phone_index(
        &self,
        tenant: TenantId,
        index: &[u8; 32],
    ) -> StoreResult<Option<EndUser>>;
    async fn consent_history(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
    ) -> StoreResult<Vec<ConsentEvent>>;

    async fn list_conversations(
        &self,
        tenant: TenantId,
        page: Page,
    ) -> StoreResult<Vec<Conversation>>;
    async fn get_conversation(
        &self,
        tenant: TenantId,
        id: ConversationId,
    ) -> StoreResult<Option<Conversation>>;
    /// Moves the conversation's hand-off state by `event` (see [`domain::Handoff::after`])
    /// and returns the conversation, or None if it is not the tenant's. `handoff_at` is set
    /// when the conversation leaves `Bot` (kept while it stays with a person) and cleared on
    /// release; `Take` records `staff` as the person who has it (`Request` keeps whoever
    /// had it, `Release` clears it).
    async fn update_handoff(
        &self,
        tenant: TenantId,
        id: ConversationId,
        event: domain::HandoffEvent,
        staff: Option<&str>,
    ) -> StoreResult<Option<Conversation>>;
    /// The tenant's conversations that are `Pending` or `Human`, longest waiting first (by
    /// `handoff_at`, then id); `page.after` is not used, `page.limit` is.
    async fn list_handed_off(&self, tenant: TenantId, page: Page)
    -> StoreResult<Vec<Conversation>>;
    /// Records a staff member's message to the customer in one transaction: takes the
    /// conversation (`HandoffEvent::Take` with `reply.staff`), stores the outbound message
    /// (with `sent_by`), and for outbox delivery enqueues its send job. An SMS to an end user
    /// who opted out is refused (`StaffReplyOutcome::OptedOut`) and nothing is written; a
    /// conversation that is not the tenant's is `NotFound`.
    async fn record_staff_reply(
        &self,
        tenant: TenantId,
        reply: StaffReply,
    ) -> StoreResult<StaffReplyOutcome>;
    async fn list_messages(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        page: Page,
    ) -> StoreResult<Vec<StoredMessage>>;
    async fn get_message(
        &self,
        tenant: TenantId,
        id: MessageId,
    ) -> StoreResult<Option<StoredMessage>>;
    /// The reply recorded for an inbound message, if any.
    async fn reply_to(
        &self,
        tenant: TenantId,
        inbound: MessageId,
    ) -> StoreResult<Option<StoredMessage>>;

    // --- knowledge base ------------------------------------------------------------------

    async fn add_kb_entry(&self, tenant: TenantId, entry: KbEntryInput) -> StoreResult<KbEntry>;
    async fn update_kb_entry(
        &self,
        tenant: TenantId,
        id: KbEntryId,
        entry: KbEntryInput,
    ) -> StoreResult<KbEntry>;
    async fn delete_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<()>;
    async fn get_kb_entry(&self, tenant: TenantId, id: KbEntryId) -> StoreResult<Option<KbEntry>>;
    async fn list_kb_entries(&self, tenant: TenantId, page: Page) -> StoreResult<Vec<KbEntry>>;
    /// Full-text search over titles and bodies, best match first.
    async fn search_kb(&self, tenant: TenantId, query: &str, limit: u32)
    -> StoreResult<Vec<KbHit>>;
    /// The tenant's entries among `ids`, in no particular order, each once; ids that are
    /// unknown or another tenant's are left out.
    async fn get_kb_entries(
        &self,
        tenant: TenantId,
        ids: &[KbEntryId],
    ) -> StoreResult<Vec<KbEntry>>;

    // --- knowledge-base vectors (derived data, not in backups) ---------------------------

    /// Stores the vector `model` made from `entry` as the caller read it (`content_hash`:
    /// the SHA-256 of its title, `"\n"` and its body), replacing the entry's vector if it
    /// had one, of any model: an entry has at most one. The vector is of the version of
    /// `entry` given (its `updated_at`): if the entry has changed since, it is stored all
    /// the same and [`kb_entries_to_embed`](Self::kb_entries_to_embed) lists the entry
    /// again. `NotFound` when the entry is not the tenant's (or is gone); an empty vector is
    /// refused (`Database`).
    async fn put_kb_embedding(
        &self,
        tenant: TenantId,
        entry: &KbEntry,
        model: &str,
        content_hash: &[u8; 32],
        vector: &[f32],
    ) -> StoreResult<()>;
    /// The tenant's vectors made by `model`, by entry, in no particular order.
    async fn kb_embeddings(
        &self,
        tenant: TenantId,
        model: &str,
    ) -> StoreResult<Vec<(KbEntryId, Vec<f32>)>>;
    /// A page (newest first, by id) of the tenant's entries that need a vector of `model`:
    /// those without one, with one of another model, or with one made from an earlier
    /// version of the entry (an update since, including one that raced the embedding).
    async fn kb_entries_to_embed(
        &self,
        tenant: TenantId,
        model: &str,
        page: Page,
    ) -> StoreResult<Vec<KbEntry>>;

    // --- model usage ----------------------------------------------------------------------

    /// Adds `usage` to the end user's row of `day` (see [`utc_day`]).
    async fn record_model_usage(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        day: i64,
        usage: ModelUsage,
    ) -> StoreResult<()>;

    /// The tenant's and the end user's usage on `day`.
    async fn model_usage_on(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        day: i64,
    ) -> StoreResult<UsageTotals>;

    // --- agent profiles --------------------------------------------------------------------

    /// Stores a new version of the tenant's profile `name` (1 for a new name, else the
    /// latest + 1, decided atomically: concurrent puts of one name get distinct versions)
    /// and returns it. The name is stored as given (the agent crate validates it).
    async fn put_profile(
        &self,
        tenant: TenantId,
        name: &str,
        source: &str,
    ) -> StoreResult<StoredProfile>;
    /// Version `version` of a profile, or its latest version when None.
    async fn get_profile(
        &self,
        tenant: TenantId,
        name: &str,
        version: Option<u32>,
    ) -> StoreResult<Option<StoredProfile>>;
    /// The latest version of each of the tenant's profiles, by name.
    async fn list_profiles(&self, tenant: TenantId) -> StoreResult<Vec<StoredProfile>>;
    /// Every version of one profile, newest first.
    async fn profile_versions(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> StoreResult<Vec<StoredProfile>>;
    /// The profile new conversations of the tenant get; None: the built-in default.
    async fn default_profile(&self, tenant: TenantId) -> StoreResult<Option<String>>;
    /// Sets (or, with None, clears) the tenant's default profile; `NotFound` for no tenant.
    async fn set_default_profile(&self, tenant: TenantId, name: Option<&str>) -> StoreResult<()>;

    // --- per-tenant model settings --------------------------------------------------------

    /// The tenant's own model settings (sealed by the caller: they hold API keys), if set.
    async fn model_settings(&self, tenant: TenantId) -> StoreResult<Option<Vec<u8>>>;
    /// Sets (or, with None, clears) the tenant's model settings; `NotFound` for no tenant.
    async fn set_model_settings(&self, tenant: TenantId, sealed: Option<&[u8]>) -> StoreResult<()>;

    // --- conversation state -------------------------------------------------------------

    /// The agent state of a conversation (revision 0 and nothing set when never saved).
    async fn conversation_state(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
    ) -> StoreResult<ConversationState>;
    /// Saves `state` if the stored revision is still `state.revision` (0: never saved) and
    /// returns the new revision; another stored revision (a concurrent save won) is a
    /// `Conflict` and writes nothing, and a conversation that is not the tenant's is
    /// `NotFound`.
    async fn save_conversation_state(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        state: &ConversationState,
    ) -> StoreResult<u64>;

    // --- long-term facts about end users ------------------------------------------------

    /// Remembers a fact; the same id again returns the stored fact and writes nothing. An
    /// end user who is not the tenant's is `NotFound`; an id already used for another end
    /// user's fact is a `Conflict` (that fact is neither returned nor changed).
    async fn add_fact(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        fact: NewFact,
    ) -> StoreResult<Fact>;
    /// The end user's facts, newest first, at most `limit` (1 to 200).
    async fn list_facts(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        limit: u32,
    ) -> StoreResult<Vec<Fact>>;
    /// Forgets one fact of that end user; false when there was none.
    async fn delete_fact(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        fact: FactId,
    ) -> StoreResult<bool>;

    // --- reminders ------------------------------------------------------------------------

    /// Schedules a reminder and its delivery job (kind `reminder`, payload
    /// `{"reminder_id"}`, due at `due_at`) in one transaction; the same id again returns the
    /// stored reminder and writes nothing. The conversation must be the end user's and both
    /// the tenant's, else `NotFound`; an id used by another tenant is a `Conflict`.
    async fn create_reminder(
        &self,
        tenant: TenantId,
        reminder: NewReminder,
    ) -> StoreResult<Reminder>;
    async fn get_reminder(&self, tenant: TenantId, id: ReminderId)
    -> StoreResult<Option<Reminder>>;
    /// The end user's reminders by due time (then id), at most `limit` (1 to 200); only
    /// scheduled ones unless `all`.
    async fn list_reminders(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        all: bool,
        limit: u32,
    ) -> StoreResult<Vec<Reminder>>;
    /// Cancels a scheduled reminder of that end user; false when there was none. Its job
    /// stays queued: delivering a cancelled reminder is `Skipped`.
    async fn cancel_reminder(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        id: ReminderId,
    ) -> StoreResult<bool>;
    /// Delivers a due reminder in one transaction: records `body` (encrypted message text)
    /// as an outbound message of its conversation, enqueues its `send_sms` job for an SMS
    /// reminder (`send_max_attempts`), marks the reminder sent, and completes the reminder
    /// job under `job`'s lease (a lost lease is a `Conflict` and nothing is written). The
    /// job is completed in every other outcome too: a reminder that is not scheduled (or not
    /// the tenant's) is `Skipped`, and one whose end user opted out is marked failed
    /// (`OptedOut`) with no message recorded.
    async fn deliver_reminder(
        &self,
        tenant: TenantId,
        id: ReminderId,
        body: Vec<u8>,
        send_max_attempts: u32,
        job: (JobId, Lease),
    ) -> StoreResult<ReminderDelivery>;

    // --- turn steps -------------------------------------------------------------------------

    /// Records a step of the turn answering message `turn`; a step already recorded at
    /// that `seq` is kept as it is (a resumed turn). A conversation that is not the tenant's
    /// is `NotFound`.
    async fn record_turn_step(
        &self,
        tenant: TenantId,
        conversation: ConversationId,
        turn: MessageId,
        step: NewTurnStep,
    ) -> StoreResult<()>;
    /// The steps recorded for the turn answering `turn`, by `seq`.
    async fn turn_steps(&self, tenant: TenantId, turn: MessageId) -> StoreResult<Vec<TurnStep>>;

    // --- snapshots (backup and restore) --------------------------------------------------

    /// Streams every row of every table of [`snapshot::TABLES`], in that order, to `sink`,
    /// from one consistent read snapshot (writers carry on meanwhile).
    async fn export_snapshot(&self, sink: &mut dyn SnapshotSink) -> StoreResult<()>;

    /// Writes a snapshot into this database in one transaction: all of it or nothing.
    /// Refuses (`Conflict`) a database that already holds a tenant or a job. With
    /// `commit = false` the transaction is rolled back at the end: a dry run that checks
    /// every row against the schema and its constraints.
    async fn restore_snapshot(
        &self,
        source: &mut dyn SnapshotSource,
        commit: bool,
    ) -> StoreResult<RestoreCounts>;

    /// Every (table, column) of the schema, generated columns left out, to check that
    /// snapshots cover them all.
    async fn schema_columns(&self) -> StoreResult<Vec<(String, String)>>;
}

/// Both halves of a backend, shared by every role.
#[derive(Clone)]
pub struct Stores {
    pub data: Arc<dyn Store>,
    pub queue: Arc<dyn JobQueue>,
}

impl Stores {
    pub fn new<S: Store + JobQueue + Clone>(store: S) -> Self {
        Self {
            data: Arc::new(store.clone()),
            queue: Arc::new(store),
        }
    }
}
