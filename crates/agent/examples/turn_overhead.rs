//! Turn overhead, model time excluded: what the agent runtime itself costs per turn.
//!
//! A tenant with a 5 KB knowledge base, conversations with 20 prior messages, and a fake
//! OpenAI-compatible model that answers at once: each turn calls the model, runs the
//! knowledge search tool (about 4 KB of context back to the model), calls the model again
//! and saves the conversation's state. The time spent inside the model client is measured
//! and subtracted, so the figures are the runtime's own: state and profile loading, prompt
//! building, tool dispatch and the search, step recording, state saving.
//!
//! ```sh
//! cargo run --release -p agent --example turn_overhead -- [postgres|sqlite] [turns] [concurrency]
//! ```
//! PostgreSQL is the local server (the test kit creates and drops a database).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agent::{
    KnowledgeResponder, LlmEngine, LlmEngineConfig, PastMessage, Profiles, Registry, Sealer,
    TurnEngine, TurnError, TurnInput,
};
use async_trait::async_trait;
use domain::{Channel, Direction, MessageId, PhoneNumber, TenantName};
use llm::openai::{OpenAiChat, OpenAiConfig};
use llm::{ChatModel, ChatRequest, ChatResponse, EventStream, LlmError};
use store::{KbEntryInput, NewTenant};
use testkit::fake_llm::{FakeOpenAi, Reply};

struct Plain;

impl Sealer for Plain {
    fn seal(&self, _: &'static str, plaintext: &str) -> Vec<u8> {
        plaintext.as_bytes().to_vec()
    }

    fn open(&self, _: &'static str, ciphertext: &[u8]) -> Result<String, TurnError> {
        String::from_utf8(ciphertext.to_vec()).map_err(|e| TurnError::Unavailable(e.to_string()))
    }
}

/// Sums the time spent in the model client, to subtract it.
struct Timed {
    inner: Arc<dyn ChatModel>,
    nanos: AtomicU64,
}

#[async_trait]
impl ChatModel for Timed {
    fn provider(&self) -> &str {
        self.inner.provider()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let started = Instant::now();
        let out = self.inner.complete(request).await;
        let spent = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(spent, Ordering::Relaxed);
        out
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        self.inner.stream(request).await
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let backend = args.get(1).map_or("postgres", String::as_str);
    let turns: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2000);
    let concurrency: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let db = if backend == "sqlite" {
        testkit::TestDb::sqlite().await
    } else {
        testkit::TestDb::postgres().await
    };
    let stores = db.stores();
    let tenant = stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse("Bench").unwrap(),
            phone_numbers: vec![PhoneNumber::parse("+15550009001").unwrap()],
        })
        .await
        .unwrap()
        .id;
    // About 5 KB of knowledge that matches the query.
    for i in 0..5 {
        stores
            .data
            .add_kb_entry(
                tenant,
                KbEntryInput {
                    title: format!("Opening hours and prices {i}"),
                    body: format!(
                        "Opening hours and prices, part {i}: {}",
                        "Open daily. ".repeat(80)
                    ),
                },
            )
            .await
            .unwrap();
    }
    // Not recording requests: the fake's own memory would count in the figures.
    let fake = FakeOpenAi::start_on("127.0.0.1:0".parse().unwrap(), false).await;
    fake.set_default_text("Here you are.");
    let model: Arc<dyn ChatModel> = Arc::new(
        OpenAiChat::new(OpenAiConfig::compatible("fake", fake.base_url(), "fake")).unwrap(),
    );
    let timed = Arc::new(Timed {
        inner: model,
        nanos: AtomicU64::new(0),
    });
    let profile = r#"
name = "bench"
entry = "desk"
[agents.desk]
instructions = "Answer from the knowledge base."
tools = ["search_knowledge_base"]
handoffs = []
"#;
    stores
        .data
        .put_profile(tenant, "bench", profile)
        .await
        .unwrap();
    stores
        .data
        .set_default_profile(tenant, Some("bench"))
        .await
        .unwrap();
    let models = agent::Models::new(
        Some(agent::ModelChoice::installation(
            timed.clone(),
            agent::PriceTable::default(),
            None,
        )),
        stores.data.clone(),
        agent::TenantModelsConfig::default(),
    );
    let engine = Arc::new(LlmEngine::new(
        Arc::new(models),
        stores.data.clone(),
        Registry::builtin(
            stores.data.clone(),
            stores.queue.clone(),
            None,
            None,
            Duration::from_secs(5),
        ),
        Arc::new(Profiles::new(stores.data.clone(), "bench".into(), None)),
        Arc::new(KnowledgeResponder::new(stores.data.clone(), "n/a".into())),
        LlmEngineConfig {
            history: 20,
            ..LlmEngineConfig::default()
        },
    ));
    let history: Vec<PastMessage> = (0..20)
        .map(|i| PastMessage {
            id: MessageId::new(),
            direction: if i % 2 == 0 {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            text: format!(
                "Earlier message number {i} of this conversation, a sentence or two long."
            ),
            from_staff: false,
        })
        .collect();
    let mut inputs = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let conversation_id = testkit::web_chat_conversation(&stores, tenant).await;
        let end_user_id = stores
            .data
            .get_conversation(tenant, conversation_id)
            .await
            .unwrap()
            .unwrap()
            .end_user_id;
        inputs.push(TurnInput {
            tenant_id: tenant,
            conversation_id,
            end_user_id,
            message_id: MessageId::new(),
            channel: Channel::WebChat,
            text: "What are your opening hours and prices?".into(),
            history: history.clone(),
            sealer: Arc::new(Plain),
            state: None,
        });
    }
    let rss_before = rss_kib();
    let per_worker = turns / concurrency;
    let started = Instant::now();
    let mut workers = Vec::new();
    for input in inputs {
        let engine = engine.clone();
        let timed = timed.clone();
        let fake = fake.clone();
        workers.push(tokio::spawn(async move {
            let mut overheads = Vec::with_capacity(per_worker);
            for _ in 0..per_worker {
                // Each turn: a search, then the answer.
                fake.push(Reply::ToolCalls(vec![(
                    "search_knowledge_base".into(),
                    r#"{"query":"opening hours prices"}"#.into(),
                )]));
                let turn = TurnInput {
                    message_id: MessageId::new(),
                    ..input.clone()
                };
                let before = timed.nanos.load(Ordering::Relaxed);
                let t0 = Instant::now();
                let out = engine.run(turn).await.unwrap();
                let total = t0.elapsed();
                // Concurrent turns share the fake's script, so one turn may take another's
                // search; alone, every turn searches exactly once.
                assert!(concurrency > 1 || out.tools == ["search_knowledge_base"]);
                let model = Duration::from_nanos(timed.nanos.load(Ordering::Relaxed) - before);
                overheads.push(total.saturating_sub(model).as_secs_f64() * 1000.0);
            }
            overheads
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = started.elapsed();
    all.sort_by(f64::total_cmp);
    #[allow(clippy::cast_precision_loss)]
    let rate = all.len() as f64 / elapsed.as_secs_f64();
    println!(
        "backend={backend} turns={} concurrency={concurrency} overhead_ms p50={:.2} p90={:.2} p99={:.2} max={:.2} turns_per_s={rate:.0} rss_kib_before={rss_before} rss_kib_after={}",
        all.len(),
        percentile(&all, 0.50),
        percentile(&all, 0.90),
        percentile(&all, 0.99),
        all.last().copied().unwrap_or(0.0),
        rss_kib()
    );
    if concurrency > 1 {
        println!(
            "note: with concurrency above 1 the model time of concurrent calls overlaps; the per-turn figures are an upper bound"
        );
    }
    db.cleanup().await;
}
