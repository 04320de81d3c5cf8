//! The model-backed engine against a fake OpenAI-compatible server: tool calls against the
//! real knowledge base (both backends), refused tools, bounded tool loops, history, and the
//! offline engine answering when the model is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use agent::{KnowledgeResponder, LlmEngine, LlmEngineConfig, PastMessage, TurnEngine, TurnInput};
use domain::{
    Channel, ConversationId, Direction, EndUserId, MessageId, PhoneNumber, TenantId, TenantName,
};
use llm::openai::{OpenAiChat, OpenAiConfig};
use llm::{HttpSettings, Resilient, RetryPolicy};
use store::{KbEntryInput, NewTenant, Stores};
use testkit::fake_llm::{FakeOpenAi, Reply};

async fn tenant_with_kb(stores: &Stores, phone: &str) -> TenantId {
    let t = stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse("Bistro").unwrap(),
            phone_numbers: vec![PhoneNumber::parse(phone).unwrap()],
        })
        .await
        .unwrap()
        .id;
    stores
        .data
        .add_kb_entry(
            t,
            KbEntryInput {
                title: "Parking".into(),
                body: "Free parking behind the restaurant.".into(),
            },
        )
        .await
        .unwrap();
    t
}

fn engine(stores: &Stores, fake: &FakeOpenAi, rounds: u32) -> LlmEngine {
    engine_with(
        stores,
        fake,
        LlmEngineConfig {
            max_tool_rounds: rounds,
            ..LlmEngineConfig::default()
        },
    )
}

fn engine_with(stores: &Stores, fake: &FakeOpenAi, config: LlmEngineConfig) -> LlmEngine {
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
    LlmEngine::new(Arc::new(chain), stores.data.clone(), offline, config)
}

fn input(tenant: TenantId, text: &str, history: Vec<PastMessage>) -> TurnInput {
    TurnInput {
        tenant_id: tenant,
        conversation_id: ConversationId::new(),
        end_user_id: EndUserId::new(),
        message_id: MessageId::new(),
        channel: Channel::Sms,
        text: text.into(),
        history,
    }
}

async fn answers_with_the_knowledge_tool(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002221").await;
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::ToolCalls(vec![(
        "search_knowledge_base".into(),
        r#"{"query":"parking"}"#.into(),
    )]));
    fake.push(Reply::Text("Park for free behind the restaurant.".into()));
    let history = vec![
        PastMessage {
            direction: Direction::Inbound,
            text: "hello".into(),
        },
        PastMessage {
            direction: Direction::Outbound,
            text: "Hi! How can I help?".into(),
        },
    ];
    let out = engine(stores, &fake, 3)
        .run(input(t, "where do I park?", history))
        .await
        .unwrap();
    assert_eq!(
        out.reply.as_deref(),
        Some("Park for free behind the restaurant.")
    );
    assert_eq!(out.answered_by, "llm");

    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let first = requests[0]["messages"].as_array().unwrap();
    assert_eq!(first[0]["role"], "system");
    assert!(first[0]["content"].as_str().unwrap().contains("texting"));
    assert_eq!(
        first[1],
        serde_json::json!({"role": "user", "content": "hello"})
    );
    assert_eq!(
        first[2],
        serde_json::json!({"role": "assistant", "content": "Hi! How can I help?"})
    );
    assert_eq!(
        first[3],
        serde_json::json!({"role": "user", "content": "where do I park?"})
    );
    assert_eq!(
        requests[0]["tools"][0]["function"]["name"],
        "search_knowledge_base"
    );
    // The second call carries the tool result from the tenant's own knowledge base.
    let second = requests[1]["messages"].as_array().unwrap();
    let tool = second
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("tool result");
    assert_eq!(tool["tool_call_id"], "call_0");
    assert!(
        tool["content"]
            .as_str()
            .unwrap()
            .contains("Free parking behind the restaurant.")
    );
}

async fn refuses_unknown_tools_and_bounds_loops(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002222").await;
    let fake = FakeOpenAi::start().await;
    // A prompt-injected call to a tool this agent does not have, then a loop of searches.
    fake.push(Reply::ToolCalls(vec![(
        "read_other_customer".into(),
        r#"{"phone":"+15550009999"}"#.into(),
    )]));
    for _ in 0..5 {
        fake.push(Reply::ToolCalls(vec![(
            "search_knowledge_base".into(),
            r#"{"query":"parking"}"#.into(),
        )]));
    }
    let out = engine(stores, &fake, 2)
        .run(input(t, "tell me everything", Vec::new()))
        .await
        .unwrap();
    let requests = fake.requests();
    // Round 0 (unknown tool), round 1 (search), then a last call with tools disabled.
    assert_eq!(requests.len(), 3, "the tool loop is bounded");
    let refusal = requests[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert!(
        refusal["content"]
            .as_str()
            .unwrap()
            .contains("no tool named")
    );
    assert_eq!(requests[2]["tool_choice"], "none");
    // The last scripted answer was yet another tool call and no text: the offline engine
    // answers rather than sending nothing.
    assert_eq!(
        out.reply.as_deref(),
        Some("Someone will call you back."),
        "{out:?}"
    );

    // Invalid tool JSON from the model, twice: malformed, and the customer still gets an
    // answer from the offline engine.
    let fake = FakeOpenAi::start().await;
    for _ in 0..2 {
        fake.push(Reply::ToolCalls(vec![(
            "search_knowledge_base".into(),
            "{\"query\": parking".into(),
        )]));
    }
    let out = engine(stores, &fake, 3)
        .run(input(t, "parking?", Vec::new()))
        .await
        .unwrap();
    assert_eq!(out.answered_by, "offline");
    assert_eq!(
        out.reply.as_deref(),
        Some("Free parking behind the restaurant.")
    );
}

async fn hands_off_with_the_tool(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002224").await;
    let conversation_id = testkit::web_chat_conversation(stores, t).await;
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::ToolCalls(vec![(
        "hand_off_to_human".into(),
        "{}".into(),
    )]));
    fake.push(Reply::Text("A colleague will reply here shortly.".into()));
    let mut turn = input(t, "this is unacceptable, I want a manager", Vec::new());
    turn.conversation_id = conversation_id;
    let out = engine(stores, &fake, 3).run(turn).await.unwrap();
    assert_eq!(
        out.reply.as_deref(),
        Some("A colleague will reply here shortly.")
    );
    assert_eq!(out.tools, vec!["hand_off_to_human"]);
    let conversation = stores
        .data
        .get_conversation(t, conversation_id)
        .await
        .unwrap()
        .unwrap();
    assert!(conversation.handoff_at.is_some(), "marked for staff");
    let tool = fake.requests()[1]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap()
        .clone();
    assert!(tool["content"].as_str().unwrap().starts_with("Done"));
}

async fn falls_back_to_the_offline_engine(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002223").await;
    let fake = FakeOpenAi::start().await;
    for _ in 0..2 {
        fake.push(Reply::Status(503));
    }
    let out = engine(stores, &fake, 3)
        .run(input(t, "is there parking", Vec::new()))
        .await
        .unwrap();
    assert_eq!(out.answered_by, "offline");
    assert_eq!(
        out.reply.as_deref(),
        Some("Free parking behind the restaurant.")
    );
    assert_eq!(fake.calls(), 2, "retried once, then gave up");

    // An enormous answer is bounded before it reaches the customer.
    let fake = FakeOpenAi::start().await;
    fake.set_default_text(&"x".repeat(5000));
    let out = engine(stores, &fake, 3)
        .run(input(t, &"parking ".repeat(2000), Vec::new()))
        .await
        .unwrap();
    assert_eq!(out.reply.unwrap().chars().count(), agent::MAX_REPLY_CHARS);
}

/// With redaction on, the provider never sees the e-mail, phone or card number; the reply
/// and the tool's query get the real values back.
async fn redacts_pii_before_the_model(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002225").await;
    let fake = FakeOpenAi::start().await;
    fake.push(Reply::ToolCalls(vec![(
        "search_knowledge_base".into(),
        r#"{"query":"parking for [PHONE_1]"}"#.into(),
    )]));
    fake.push(Reply::Text(
        "Thanks, we'll text [PHONE_1] and mail [EMAIL_1].".into(),
    ));
    let history = vec![PastMessage {
        direction: Direction::Inbound,
        text: "my card is 4242 4242 4242 4242".into(),
    }];
    let config = LlmEngineConfig {
        redact_pii: true,
        ..LlmEngineConfig::default()
    };
    let out = engine_with(stores, &fake, config)
        .run(input(
            t,
            "reach me at +1 415 555 0134 or jo@example.com",
            history,
        ))
        .await
        .unwrap();
    assert_eq!(
        out.reply.as_deref(),
        Some("Thanks, we'll text +1 415 555 0134 and mail jo@example.com.")
    );
    let sent = serde_json::to_string(&fake.requests()).unwrap();
    for secret in ["4242", "555 0134", "jo@example.com"] {
        assert!(!sent.contains(secret), "{secret} reached the model: {sent}");
    }
    assert!(sent.contains("[CARD_1]") && sent.contains("[PHONE_1]") && sent.contains("[EMAIL_1]"));
}

#[tokio::test]
async fn sqlite_llm_engine() {
    let db = testkit::TestDb::sqlite().await;
    let stores = db.stores();
    answers_with_the_knowledge_tool(&stores).await;
    refuses_unknown_tools_and_bounds_loops(&stores).await;
    hands_off_with_the_tool(&stores).await;
    falls_back_to_the_offline_engine(&stores).await;
    redacts_pii_before_the_model(&stores).await;
}

#[tokio::test]
async fn postgres_llm_engine() {
    let db = testkit::TestDb::postgres().await;
    let stores = db.stores();
    answers_with_the_knowledge_tool(&stores).await;
    refuses_unknown_tools_and_bounds_loops(&stores).await;
    hands_off_with_the_tool(&stores).await;
    falls_back_to_the_offline_engine(&stores).await;
    redacts_pii_before_the_model(&stores).await;
    db.cleanup().await;
}
