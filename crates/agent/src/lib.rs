//! The turn interface every channel goes through, and the engines behind it: the
//! knowledge-base responder (small talk in English and French, else full-text search of the
//! tenant's entries with a fallback message), which is also the offline engine, and [`LlmEngine`], which reasons with a
//! model from the `llm` crate, calls tools, and falls back to the offline engine when every
//! provider fails.

mod llm_engine;
pub mod offline;
pub mod profile;
pub mod profiles;
pub mod redact;
pub mod state;
pub mod tools;

use std::sync::Arc;

use async_trait::async_trait;
use domain::{Channel, ConversationId, Direction, EndUserId, MessageId, TenantId};
use store::Store;

pub use llm_engine::{Budget, LlmEngine, LlmEngineConfig, Prices};
pub use profile::{AgentSpec, Profile, ProfileError};
pub use profiles::Profiles;
pub use tools::{Registry, Sealer};

/// The tool (and turn label) that hands a conversation to a member of staff.
pub const HANDOFF_TOOL: &str = "hand_off_to_human";

/// An earlier message of the conversation, decrypted. Never logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PastMessage {
    pub direction: Direction,
    pub text: String,
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
    fn history_window(&self) -> u32 {
        0
    }
}

/// SMS-friendly cap on a reply: 10 segments of GSM-7 text.
pub const MAX_REPLY_CHARS: usize = 1530;

/// Answers with the best-matching knowledge-base entry, or the fallback message.
pub struct KnowledgeResponder {
    store: Arc<dyn Store>,
    fallback: String,
}

impl KnowledgeResponder {
    #[must_use]
    pub fn new(store: Arc<dyn Store>, fallback: String) -> Self {
        Self { store, fallback }
    }
}

/// What the offline engine answers without the knowledge base, in the customer's language.
enum Canned {
    SmallTalk(&'static str),
    /// The customer asked for a person: the conversation is handed off.
    Handoff(&'static str),
}

fn canned(text: &str) -> Option<Canned> {
    use offline::{Intent, Language};
    let understood = offline::understand(text, jiff::Zoned::now());
    let french = understood.language == Language::Fr;
    let reply = match (understood.intent, french) {
        (Intent::Greeting, false) => Canned::SmallTalk("Hello! How can I help you today?"),
        (Intent::Greeting, true) => Canned::SmallTalk("Bonjour ! Comment puis-je vous aider ?"),
        (Intent::Thanks, false) => Canned::SmallTalk("You're welcome!"),
        (Intent::Thanks, true) => Canned::SmallTalk("Avec plaisir !"),
        (Intent::Goodbye, false) => Canned::SmallTalk("Goodbye, and have a nice day!"),
        (Intent::Goodbye, true) => Canned::SmallTalk("Au revoir, et bonne journée !"),
        (Intent::Handoff, false) => Canned::Handoff(
            "I've asked a member of our team to get back to you here as soon as possible.",
        ),
        (Intent::Handoff, true) => Canned::Handoff(
            "J'ai demandé à un membre de notre équipe de vous répondre ici dès que possible.",
        ),
        _ => return None,
    };
    Some(reply)
}

#[async_trait]
impl TurnEngine for KnowledgeResponder {
    async fn run(&self, input: TurnInput) -> Result<TurnOutput, TurnError> {
        match canned(&input.text) {
            Some(Canned::SmallTalk(reply)) => {
                return Ok(TurnOutput {
                    reply: Some(reply.to_owned()),
                    answered_by: "small_talk",
                    tools: Vec::new(),
                    agents: Vec::new(),
                });
            }
            // Only promise a person once the conversation is really marked for one.
            Some(Canned::Handoff(reply))
                if self
                    .store
                    .set_handoff(input.tenant_id, input.conversation_id, true)
                    .await?
                    .is_some() =>
            {
                metrics::counter!("concierge_handoffs_total", "event" => "requested_by_customer")
                    .increment(1);
                return Ok(TurnOutput {
                    reply: Some(reply.to_owned()),
                    answered_by: "handoff",
                    tools: vec![HANDOFF_TOOL],
                    agents: Vec::new(),
                });
            }
            Some(Canned::Handoff(_)) | None => {}
        }
        let hits = self
            .store
            .search_kb(input.tenant_id, &input.text, 1)
            .await?;
        let (reply, answered_by) = match hits.into_iter().next() {
            Some(hit) => (hit.entry.body, "knowledge_base"),
            None => (self.fallback.clone(), "fallback"),
        };
        Ok(TurnOutput {
            reply: Some(truncate_chars(&reply, MAX_REPLY_CHARS)),
            answered_by,
            tools: Vec::new(),
            agents: Vec::new(),
        })
    }
}

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
    #![allow(clippy::unwrap_used)]

    use domain::{PhoneNumber, TenantName};
    use store::{KbEntryInput, NewTenant};

    use super::*;

    async fn run_on(db: &testkit::TestDb) {
        let stores = db.stores();
        let t = stores
            .data
            .create_tenant(NewTenant {
                name: TenantName::parse("Acme").unwrap(),
                phone_numbers: vec![PhoneNumber::parse("+15550000001").unwrap()],
            })
            .await
            .unwrap()
            .id;
        stores
            .data
            .add_kb_entry(
                t,
                KbEntryInput {
                    title: "Opening hours".into(),
                    body: "Mon-Fri 9-17.".into(),
                },
            )
            .await
            .unwrap();
        let engine = KnowledgeResponder::new(stores.data.clone(), "We'll call you back.".into());
        let input = |text: &str| TurnInput {
            tenant_id: t,
            conversation_id: ConversationId::new(),
            end_user_id: EndUserId::new(),
            message_id: MessageId::new(),
            channel: Channel::Sms,
            text: text.into(),
            history: Vec::new(),
        };
        let out = engine
            .run(input("what are your opening hours"))
            .await
            .unwrap();
        assert_eq!(
            out,
            TurnOutput {
                reply: Some("Mon-Fri 9-17.".into()),
                answered_by: "knowledge_base",
                tools: Vec::new(),
            }
        );
        let out = engine.run(input("Bonjour !")).await.unwrap();
        assert_eq!(
            (out.reply.as_deref(), out.answered_by),
            (Some("Bonjour ! Comment puis-je vous aider ?"), "small_talk")
        );
        let out = engine.run(input("thanks a lot")).await.unwrap();
        assert_eq!(out.reply.as_deref(), Some("You're welcome!"));
        // A greeting with a question in it is a question.
        let out = engine
            .run(input("hi, what are your opening hours?"))
            .await
            .unwrap();
        assert_eq!(out.answered_by, "knowledge_base");
        let out = engine.run(input("do you sell bicycles")).await.unwrap();
        assert_eq!(out.answered_by, "fallback");

        // Asking for a person marks the conversation for staff, in the customer's language.
        let conversation = testkit::web_chat_conversation(&stores, t).await;
        let mut ask = input("Je voudrais parler à un conseiller s'il vous plaît");
        ask.conversation_id = conversation;
        let out = engine.run(ask).await.unwrap();
        assert_eq!(out.answered_by, "handoff");
        assert!(out.reply.unwrap().starts_with("J'ai demandé"));
        let flagged = stores
            .data
            .get_conversation(t, conversation)
            .await
            .unwrap()
            .unwrap();
        assert!(flagged.handoff_at.is_some());
        // Without a real conversation there is nobody to hand to: no promise is made.
        let out = engine
            .run(input("can I talk to a human please"))
            .await
            .unwrap();
        assert_eq!(
            out,
            TurnOutput {
                reply: Some("We'll call you back.".into()),
                answered_by: "fallback",
                tools: Vec::new(),
            }
        );
    }

    #[tokio::test]
    async fn answers_from_the_knowledge_base_or_falls_back_on_each_backend() {
        for db in testkit::TestDb::each().await {
            run_on(&db).await;
            db.cleanup().await;
        }
    }

    #[test]
    fn long_replies_are_cut_on_a_char_boundary() {
        let long = "é".repeat(2000);
        let cut = truncate_chars(&long, MAX_REPLY_CHARS);
        assert_eq!(cut.chars().count(), MAX_REPLY_CHARS);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate_chars("short", 10), "short");
    }
}
