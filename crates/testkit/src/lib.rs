//! Test helpers shared by every crate's tests: a fresh database per test on each backend,
//! and fakes of external services that speak their real wire protocol.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod db;
pub mod fake_hetzner;
pub mod fake_llm;
pub mod fake_twilio;

pub use db::{TestDb, pg_admin_url};

/// A new web-chat conversation of `tenant`, recorded as the message path records one (the
/// body is opaque bytes here: the store never sees plaintext).
pub async fn web_chat_conversation(
    stores: &store::Stores,
    tenant: domain::TenantId,
) -> domain::ConversationId {
    let recorded = stores
        .data
        .record_inbound(
            tenant,
            store::InboundMessage {
                channel: domain::Channel::WebChat,
                contact: store::Contact::Anonymous,
                provider_sid: None,
                tenant_number: None,
                body: b"ciphertext".to_vec(),
                keyword: None,
                turn: store::TurnPlan {
                    inline_holder: None,
                    lease: std::time::Duration::from_secs(30),
                    max_attempts: 3,
                },
            },
        )
        .await
        .expect("record a web-chat message");
    match recorded {
        store::InboundOutcome::Recorded(r) => r.conversation_id,
        store::InboundOutcome::Duplicate(_) => panic!("no provider id, so no duplicate"),
    }
}
