//! What the agent runtime keeps between the turns of a conversation: which profile and
//! agent hold it (plain, for operators) and its working memory (slots of the offline
//! dialogue, rolling summary), encrypted with the tenant's key.

use domain::{ConversationId, TenantId};
use serde::{Deserialize, Serialize};
use store::{ConversationState, Store, StoreError};

use crate::TurnError;
use crate::tools::{Sealer, columns};

/// The decrypted working memory of a conversation.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// A summary of the conversation before the recent messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// The newest message the summary covers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary_through: Option<domain::MessageId>,
    /// The offline engine's dialogue state (a booking being filled, a reminder waiting
    /// for its time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dialogue: Option<serde_json::Value>,
}

/// A conversation's state as loaded, to save it back.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub stored: ConversationState,
    pub memory: Memory,
}

/// Loads the state; a memory that cannot be decrypted or read (a damaged row, a key
/// destroyed by erasure) is started afresh rather than failing every turn.
pub async fn load(
    store: &dyn Store,
    sealer: &dyn Sealer,
    tenant: TenantId,
    conversation: ConversationId,
    preloaded: Option<&ConversationState>,
) -> Result<Loaded, TurnError> {
    let stored = match preloaded {
        Some(state) => state.clone(),
        None => store.conversation_state(tenant, conversation).await?,
    };
    let memory = match &stored.data {
        None => Memory::default(),
        Some(bytes) => match sealer
            .open(columns::STATE, bytes)
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
        {
            Some(memory) => memory,
            None => {
                tracing::warn!(%conversation, "conversation memory unreadable; starting afresh");
                Memory::default()
            }
        },
    };
    Ok(Loaded { stored, memory })
}

/// Saves what changed: the profile and agent now holding the conversation (None: not
/// chosen yet) and its memory. A concurrent turn that saved first wins (`Conflict` is
/// logged and counted, not an error: the reply still goes out), and a conversation erased
/// meanwhile has nothing to save.
#[allow(clippy::too_many_arguments)]
pub async fn save(
    store: &dyn Store,
    sealer: &dyn Sealer,
    tenant: TenantId,
    conversation: ConversationId,
    loaded: &Loaded,
    profile: Option<&str>,
    agent: Option<&str>,
    memory: &Memory,
) -> Result<(), TurnError> {
    let same = loaded.stored.profile.as_deref() == profile
        && loaded.stored.agent.as_deref() == agent
        && &loaded.memory == memory;
    if same {
        return Ok(());
    }
    let data = if *memory == Memory::default() {
        None
    } else {
        let json = serde_json::to_string(memory)
            .map_err(|e| TurnError::Unavailable(format!("memory encoding: {e}")))?;
        Some(sealer.seal(columns::STATE, &json))
    };
    let state = ConversationState {
        profile: profile.map(str::to_owned),
        agent: agent.map(str::to_owned),
        data,
        revision: loaded.stored.revision,
    };
    match store
        .save_conversation_state(tenant, conversation, &state)
        .await
    {
        Ok(_) => Ok(()),
        Err(StoreError::Conflict(_)) => {
            tracing::warn!(%conversation, "conversation state changed during the turn; kept the other turn's");
            metrics::counter!("concierge_turn_state_conflicts_total").increment(1);
            Ok(())
        }
        Err(StoreError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
