//! The turn interface every channel goes through, and the engines behind it: the offline
//! engine ([`KnowledgeResponder`]: dialogue in English and French, reminders, bookings,
//! hand-offs and knowledge-base answers without a model), and [`LlmEngine`], a team of
//! agents from a [`Profile`] that reasons with a model from the `llm` crate, calls tools, and
//! falls back to the offline engine when every provider fails.

mod llm_engine;
pub mod models;
pub mod offline;
mod offline_engine;
pub mod profile;
pub mod profiles;
pub mod redact;
pub mod retrieval;
pub mod state;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{Channel, ConversationId, Direction, EndUserId, MessageId, TenantId};

pub use llm::{PriceTable, Prices};
pub use llm_engine::{Budget, LlmEngine, LlmEngineConfig};
pub use models::{ModelChoice, Models, TenantModelsConfig};
pub use offline_engine::KnowledgeResponder;
pub use profile::{AgentSpec, Profile, ProfileError};
pub use profiles::Profiles;
pub use tools::{Registry, Sealer};

/// The tool (and turn label) that hands a conversation to a member of staff.
pub const HANDOFF_TOOL: &str = "hand_off_to_human";

/// An earlier message of the conversation, decrypted. Never logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastMessage {
    pub id: MessageId,
    pub direction: Direction,
    pub text: String,
    /// Written by a member of staff (while a person had the conversation), not an agent.
    pub from_staff: bool,
}

/// One inbound message to answer.
#[derive(Clone)]
pub struct TurnInput {
    pub tenant_id: TenantId,
    pub conversation_id: ConversationId,
    pub end_user_id: EndUserId,
    pub message_id: MessageId,
    pub channel: Channel,
    /// The message text, decrypted. Never logged.
    pub text: String,
    /// Up to [`TurnEngine::history_window`] earlier messages, oldest first.
    pub history: Vec<PastMessage>,
    /// Encrypts what the turn stores about the end user, with the tenant's key.
    pub sealer: Arc<dyn Sealer>,
    /// The conversation's agent state when the caller already read it (the message path
    /// reads it with the inbound message); None: the engine reads it.
    pub state: Option<store::ConversationState>,
}

/// What the turn produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TurnOutput {
    /// The reply to send, if any.
    pub reply: Option<String>,
    /// Which engine or agent answered (for logs and metrics; no user data).
    pub answered_by: &'static str,
    /// The tools that ran during the turn, in order (labels only, no arguments).
    pub tools: Vec<&'static str>,
    /// The agents of the profile that spoke, in order (more than one after a hand-off).
    pub agents: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TurnError {
    /// A dependency failed in a way worth retrying later (database, provider).
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
}

impl From<store::StoreError> for TurnError {
    fn from(e: store::StoreError) -> Self {
        Self::Unavailable(e.to_string())
    }
}

#[async_trait]
pub trait TurnEngine: Send + Sync + 'static {
    async fn run(&self, input: TurnInput) -> Result<TurnOutput, TurnError>;

    /// How many earlier messages the engine wants in [`TurnInput::history`]; loading them
    /// costs a query and decryption, so engines that do not read them say 0.
    fn history_window(&self, _tenant: TenantId) -> u32 {
        0
    }

    /// The tenant's settings (profiles, model providers) changed in this process: forget
    /// what is kept of them, so the next turn reads them again.
    fn settings_changed(&self, _tenant: domain::TenantId) {}
}

/// SMS-friendly cap on a reply: 10 segments of GSM-7 text.
pub const MAX_REPLY_CHARS: usize = 1530;

pub(crate) fn truncate_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => {
            let mut cut = text[..i].trim_end().to_owned();
            cut.pop();
            cut.push('…');
            cut
        }
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_replies_are_cut_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let cut = truncate_chars(&long, MAX_REPLY_CHARS);
        assert_eq!(cut.chars().count(), MAX_REPLY_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
