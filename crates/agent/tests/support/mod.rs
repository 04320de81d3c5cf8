//! Helpers shared by the agent crate's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::{
    KnowledgeResponder, LlmEngine, LlmEngineConfig, ModelChoice, Models, PastMessage, Profiles,
    Registry, Sealer, TenantModelsConfig, TurnError, TurnInput,
};
use domain::{Channel, MessageId, TenantId};
use llm::openai::{OpenAiChat, OpenAiConfig};
use llm::{HttpSettings, Resilient, RetryPolicy};
use store::Stores;
use testkit::fake_llm::FakeOpenAi;

/// Reversible and column-bound, to test the engine without the crypto crate (the message
/// path's real sealer is tested through the binary).
pub struct TestSealer;

impl Sealer for TestSealer {
    fn seal(&self, column: &'static str, plaintext: &str) -> Vec<u8> {
        format!("{column}|{plaintext}").into_bytes()
    }

    fn open(&self, column: &'static str, ciphertext: &[u8]) -> Result<String, TurnError> {
        let text = String::from_utf8(ciphertext.to_vec())
            .map_err(|e| TurnError::Unavailable(e.to_string()))?;
        text.strip_prefix(&format!("{column}|"))
            .map(str::to_owned)
            .ok_or_else(|| TurnError::Unavailable("wrong column".into()))
    }
}

/// The engine over the fake model, with the built-in tools; `forced` serves every
/// conversation with that profile.
pub fn engine_and_model(
    stores: &Stores,
    fake: &FakeOpenAi,
    config: LlmEngineConfig,
    forced: Option<&str>,
) -> (LlmEngine, Arc<dyn llm::ChatModel>) {
    engine_priced(
        stores,
        fake,
        config,
        forced,
        llm::PriceTable::default(),
        None,
        TenantModelsConfig::default(),
    )
}

/// [`engine_and_model`] with the installation's prices, a response cache, and how tenants'
/// own models are built.
pub fn engine_priced(
    stores: &Stores,
    fake: &FakeOpenAi,
    config: LlmEngineConfig,
    forced: Option<&str>,
    prices: llm::PriceTable,
    cache: Option<llm::CacheConfig>,
    tenants: TenantModelsConfig,
) -> (LlmEngine, Arc<dyn llm::ChatModel>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let model = OpenAiChat::new(OpenAiConfig {
        http: HttpSettings {
            first_byte_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(3),
            ..HttpSettings::default()
        },
        ..OpenAiConfig::compatible("fake", fake.base_url(), "fake-model")
    })
    .unwrap();
    let chain = Resilient::new(
        vec![Arc::new(model)],
        RetryPolicy {
            max_attempts: 2,
            base: Duration::from_millis(5),
            ..RetryPolicy::default()
        },
    );
    let offline = Arc::new(KnowledgeResponder::new(
        stores.data.clone(),
        "Someone will call you back.".into(),
    ));
    let chain: Arc<dyn llm::ChatModel> = Arc::new(chain);
    let registry = Registry::builtin(
        stores.data.clone(),
        stores.queue.clone(),
        None,
        None,
        Duration::from_secs(2),
    );
    let profiles = Arc::new(Profiles::new(
        stores.data.clone(),
        "receptionist".into(),
        forced.map(str::to_owned),
    ));
    (
        LlmEngine::new(
            Arc::new(Models::new(
                Some(ModelChoice::installation(
                    chain.clone(),
                    prices,
                    cache.map(|c| llm::ResponseCache::new(chain.clone(), c)),
                )),
                stores.data.clone(),
                tenants,
            )),
            stores.data.clone(),
            registry,
            profiles,
            offline,
            config,
        ),
        chain,
    )
}

/// A turn of a new conversation (a real one: state, steps and usage rows reference it).
pub async fn input(
    stores: &Stores,
    tenant: TenantId,
    text: &str,
    history: Vec<PastMessage>,
) -> TurnInput {
    let conversation_id = testkit::web_chat_conversation(stores, tenant).await;
    let end_user_id = stores
        .data
        .get_conversation(tenant, conversation_id)
        .await
        .unwrap()
        .unwrap()
        .end_user_id;
    TurnInput {
        tenant_id: tenant,
        conversation_id,
        end_user_id,
        message_id: MessageId::new(),
        channel: Channel::Sms,
        text: text.into(),
        history,
        sealer: Arc::new(TestSealer),
        state: None,
    }
}

/// The next turn of the same conversation.
pub fn next(turn: &TurnInput, text: &str) -> TurnInput {
    TurnInput {
        message_id: MessageId::new(),
        text: text.into(),
        ..turn.clone()
    }
}
