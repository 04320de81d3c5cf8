//! The model-backed engine against a fake OpenAI-compatible server: tool calls against the
//! real knowledge base (both backends), refused tools, bounded tool loops, history, and the
//! offline engine answering when the model is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

mod support;

use agent::{LlmEngine, LlmEngineConfig, PastMessage, Sealer as _, TurnEngine, TurnInput};
use domain::{Direction, PhoneNumber, TenantId, TenantName};
use store::{KbEntryInput, NewTenant, Stores};
use support::input;
use testkit::fake_llm::{FakeOpenAi, Reply};

/// One agent with the knowledge base and the hand-off tool: the tests of the turn loop.
const FRONT_DESK: &str = r#"
name = "frontdesk"
entry = "desk"
[agents.desk]
instructions = "You are the front desk of a small business."
tools = ["search_knowledge_base", "hand_off_to_human"]
"#;

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
    stores
        .data
        .put_profile(t, "frontdesk", FRONT_DESK)
        .await
        .unwrap();
    stores
        .data
        .set_default_profile(t, Some("frontdesk"))
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
    let (engine, _) = engine_and_model(stores, fake, config);
    engine
}

fn engine_and_model(
    stores: &Stores,
    fake: &FakeOpenAi,
    config: LlmEngineConfig,
) -> (LlmEngine, Arc<dyn llm::ChatModel>) {
    support::engine_and_model(stores, fake, config, None)
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
            id: domain::MessageId::new(),
            direction: Direction::Inbound,
            text: "hello".into(),
            from_staff: false,
        },
        PastMessage {
            id: domain::MessageId::new(),
            direction: Direction::Outbound,
            text: "Hi! How can I help?".into(),
            from_staff: false,
        },
    ];
    let out = engine(stores, &fake, 3)
        .run(input(stores, t, "where do I park?", history).await)
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
        .run(input(stores, t, "tell me everything", Vec::new()).await)
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
        .run(input(stores, t, "parking?", Vec::new()).await)
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
    let mut turn = input(
        stores,
        t,
        "this is unacceptable, I want a manager",
        Vec::new(),
    )
    .await;
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
        .run(input(stores, t, "is there parking", Vec::new()).await)
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
        .run(input(stores, t, &"parking ".repeat(2000), Vec::new()).await)
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
        id: domain::MessageId::new(),
        direction: Direction::Inbound,
        text: "my card is 4242 4242 4242 4242".into(),
        from_staff: false,
    }];
    let config = LlmEngineConfig {
        redact_pii: true,
        ..LlmEngineConfig::default()
    };
    let out = engine_with(stores, &fake, config)
        .run(
            input(
                stores,
                t,
                "reach me at +1 415 555 0134 or jo@example.com",
                history,
            )
            .await,
        )
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

async fn real_input(stores: &Stores, t: TenantId, text: &str) -> TurnInput {
    input(stores, t, text, Vec::new()).await
}

/// Usage is priced and recorded per end user and tenant; once a daily budget is spent the
/// turn is answered politely without calling the model.
async fn budgets_stop_the_model_politely(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002226").await;
    let fake = FakeOpenAi::start().await;
    fake.set_default_text("Sure.");
    // The fake reports 10 input and 5 output tokens a call: 10 * 10 + 5 * 20 = 200 micro-dollars.
    let config = LlmEngineConfig {
        budget: agent::Budget {
            tenant_daily_usd: 0.0005,
            end_user_daily_usd: 0.0003,
            message: "Budget spent for today.".into(),
        },
        ..LlmEngineConfig::default()
    };
    let prices = agent::PriceTable::default_only(agent::Prices {
        input_per_mtok: 10.0,
        output_per_mtok: 20.0,
    });
    let (engine, _) = support::engine_priced(
        stores,
        &fake,
        config,
        None,
        prices,
        None,
        agent::TenantModelsConfig::default(),
    );
    let alice = real_input(stores, t, "hello").await;
    for expected in ["Sure.", "Sure.", "Budget spent for today."] {
        let out = engine.run(alice.clone()).await.unwrap();
        assert_eq!(out.reply.as_deref(), Some(expected));
    }
    assert_eq!(
        fake.calls(),
        2,
        "no model call once the end user's budget is spent"
    );
    let day = store::utc_day(jiff::Timestamp::now());
    let totals = stores
        .data
        .model_usage_on(t, alice.end_user_id, day)
        .await
        .unwrap();
    assert_eq!(totals.end_user.calls, 2);
    assert_eq!(totals.end_user.input_tokens, 20);
    assert_eq!(totals.end_user.cost_micros, 400);
    // Another end user of the same tenant: one more turn fits the tenant's budget (400 < 500),
    // then the tenant's budget is spent for everybody.
    let bob = real_input(stores, t, "hi").await;
    let out = engine.run(bob.clone()).await.unwrap();
    assert_eq!(out.answered_by, "llm");
    let out = engine.run(bob).await.unwrap();
    assert_eq!(
        (out.reply.as_deref(), out.answered_by),
        (Some("Budget spent for today."), "budget")
    );
    assert_eq!(fake.calls(), 3);
}

/// With the response cache, an identical request of the same tenant is answered without a
/// provider call and is not billed twice; another tenant's identical request is its own.
async fn caches_identical_requests_per_tenant(stores: &Stores) {
    let t = tenant_with_kb(stores, "+15550002227").await;
    let other = tenant_with_kb(stores, "+15550002228").await;
    let fake = FakeOpenAi::start().await;
    fake.set_default_text("We open at nine.");
    let prices = agent::PriceTable::default_only(agent::Prices {
        input_per_mtok: 1.0,
        output_per_mtok: 1.0,
    });
    let (engine, _) = support::engine_priced(
        stores,
        &fake,
        LlmEngineConfig::default(),
        None,
        prices,
        Some(llm::CacheConfig::default()),
        agent::TenantModelsConfig::default(),
    );
    let first = real_input(stores, t, "when do you open?").await;
    let second = real_input(stores, t, "when do you open?").await;
    for turn in [first.clone(), second.clone()] {
        let out = engine.run(turn).await.unwrap();
        assert_eq!(out.reply.as_deref(), Some("We open at nine."));
    }
    assert_eq!(
        fake.calls(),
        1,
        "the second identical request came from the cache"
    );
    let day = store::utc_day(jiff::Timestamp::now());
    let billed = stores
        .data
        .model_usage_on(t, second.end_user_id, day)
        .await
        .unwrap();
    assert_eq!(billed.end_user.calls, 0, "a cached answer is not billed");
    assert_eq!(billed.tenant.calls, 1);
    engine
        .run(real_input(stores, other, "when do you open?").await)
        .await
        .unwrap();
    assert_eq!(fake.calls(), 2, "tenants never share answers");
}

/// A tenant with its own provider is answered by it, billed at its declared prices, and
/// its next settings apply once this process forgets the old ones; other tenants keep the
/// installation's model, priced by the installation's table (by model name). Settings that
/// the endpoint policy refuses leave the tenant with the offline engine, never on the
/// installation's account.
async fn tenants_bring_their_own_models(stores: &Stores) {
    let own = tenant_with_kb(stores, "+15550002231").await;
    let other = tenant_with_kb(stores, "+15550002232").await;
    let installation = FakeOpenAi::start().await;
    installation.set_default_text("From the installation's model.");
    let theirs = FakeOpenAi::start().await;
    theirs.set_default_text("From the tenant's own model.");
    let settings = serde_json::json!({ "providers": [{
        "provider": "openai_compatible", "model": "own-model", "base_url": theirs.base_url(),
        "input_per_mtok": 10.0, "output_per_mtok": 20.0,
    }]});
    let sealed =
        support::TestSealer.seal(agent::tools::columns::MODEL_SETTINGS, &settings.to_string());
    stores
        .data
        .set_model_settings(own, Some(&sealed))
        .await
        .unwrap();
    // The installation prices `fake-model` (what its adapter asks for) at 1 and 2 dollars
    // per million tokens, anything else at 0.
    let prices = agent::PriceTable::new(
        agent::Prices::default(),
        [(
            "fake-model".to_owned(),
            agent::Prices {
                input_per_mtok: 1.0,
                output_per_mtok: 2.0,
            },
        )],
    );
    let tenants = agent::TenantModelsConfig {
        allow_private: true,
        ..agent::TenantModelsConfig::default()
    };
    let (engine, _) = support::engine_priced(
        stores,
        &installation,
        LlmEngineConfig::default(),
        None,
        prices.clone(),
        None,
        tenants,
    );
    let day = store::utc_day(jiff::Timestamp::now());

    let turn = real_input(stores, own, "hello").await;
    let out = engine.run(turn.clone()).await.unwrap();
    assert_eq!(out.reply.as_deref(), Some("From the tenant's own model."));
    assert_eq!((theirs.calls(), installation.calls()), (1, 0));
    assert_eq!(theirs.requests()[0]["model"], "own-model");
    // The fake reports 10 input and 5 output tokens: 10 * 10 + 5 * 20 micro-dollars.
    let usage = stores
        .data
        .model_usage_on(own, turn.end_user_id, day)
        .await
        .unwrap();
    assert_eq!(usage.end_user.cost_micros, 200);

    let turn = real_input(stores, other, "hello").await;
    let out = engine.run(turn.clone()).await.unwrap();
    assert_eq!(out.reply.as_deref(), Some("From the installation's model."));
    assert_eq!((theirs.calls(), installation.calls()), (1, 1));
    let usage = stores
        .data
        .model_usage_on(other, turn.end_user_id, day)
        .await
        .unwrap();
    assert_eq!(usage.end_user.cost_micros, 10 + 5 * 2);

    // Cleared: after this process forgets, the installation's model answers the tenant.
    stores.data.set_model_settings(own, None).await.unwrap();
    engine.settings_changed(own);
    let out = engine
        .run(real_input(stores, own, "hello").await)
        .await
        .unwrap();
    assert_eq!(out.reply.as_deref(), Some("From the installation's model."));

    // An installation that refuses private endpoints does not use the stored ones: the
    // offline engine answers, neither model is called.
    stores
        .data
        .set_model_settings(own, Some(&sealed))
        .await
        .unwrap();
    let (strict, _) = support::engine_priced(
        stores,
        &installation,
        LlmEngineConfig::default(),
        None,
        prices,
        None,
        agent::TenantModelsConfig::default(),
    );
    let calls = (theirs.calls(), installation.calls());
    let out = strict
        .run(real_input(stores, own, "hello").await)
        .await
        .unwrap();
    assert_eq!(out.answered_by, "offline");
    assert_eq!((theirs.calls(), installation.calls()), calls);
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
    budgets_stop_the_model_politely(&stores).await;
    caches_identical_requests_per_tenant(&stores).await;
    tenants_bring_their_own_models(&stores).await;
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
    budgets_stop_the_model_politely(&stores).await;
    caches_identical_requests_per_tenant(&stores).await;
    tenants_bring_their_own_models(&stores).await;
    db.cleanup().await;
}
