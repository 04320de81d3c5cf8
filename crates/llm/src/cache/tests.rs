use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use serde_json::json;
use tokio::sync::Semaphore;

use super::{CacheConfig, ResponseCache, key, lock};
use crate::{
    ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, Message, Part, Role, StopReason,
    StreamEvent, ToolCall, ToolChoice, ToolSpec, Usage,
};

/// A model that counts its calls and answers with the last user text and its call number,
/// so a cached answer is told from a fresh one.
struct Fake {
    calls: AtomicUsize,
    streams: AtomicUsize,
    /// The next this many calls fail.
    failures: AtomicUsize,
    /// Every call waits for a permit here (returned when it ends).
    gate: Semaphore,
    /// Pad each answer to this many bytes of text.
    pad: usize,
}

impl Fake {
    fn new() -> Arc<Self> {
        Self::build(Semaphore::MAX_PERMITS, 0)
    }

    fn gated() -> Arc<Self> {
        Self::build(0, 0)
    }

    fn padded(pad: usize) -> Arc<Self> {
        Self::build(Semaphore::MAX_PERMITS, pad)
    }

    fn build(permits: usize, pad: usize) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            streams: AtomicUsize::new(0),
            failures: AtomicUsize::new(0),
            gate: Semaphore::new(permits),
            pad,
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn answer(&self, n: usize, request: &ChatRequest) -> ChatResponse {
        let last = request
            .messages
            .iter()
            .rev()
            .flat_map(|m| m.parts.iter())
            .find_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .unwrap_or("");
        let mut text = format!("{last}#{n}");
        if text.len() < self.pad {
            text.push_str(&"x".repeat(self.pad - text.len()));
        }
        ChatResponse {
            model: "fake-1".into(),
            parts: vec![Part::Text { text }],
            stop: StopReason::EndTurn,
            usage: Usage {
                input_tokens: 10,
                output_tokens: 5,
                cached_input_tokens: 0,
                from_cache: false,
            },
        }
    }
}

#[async_trait]
impl ChatModel for Fake {
    fn provider(&self) -> &str {
        "fake"
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let _permit = self.gate.acquire().await.expect("gate open");
        tokio::task::yield_now().await;
        let failing = self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok();
        if failing {
            return Err(LlmError::Server {
                status: 503,
                message: "down".into(),
            });
        }
        Ok(self.answer(n, request))
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let n = self.streams.fetch_add(1, Ordering::SeqCst) + 1;
        let done = StreamEvent::Done(self.answer(n, request));
        Ok(futures_util::stream::iter(vec![Ok(done)]).boxed())
    }
}

fn cache(fake: &Arc<Fake>, config: CacheConfig) -> Arc<ResponseCache> {
    let model: Arc<dyn ChatModel> = fake.clone();
    ResponseCache::new(model, config)
}

fn request(text: &str) -> ChatRequest {
    let mut request = ChatRequest::new(vec![
        Message::user("Hi"),
        Message::assistant("Hello! How can I help?"),
        Message::user(text),
    ]);
    request.system = Some("You are the front desk.".into());
    request.tools = vec![ToolSpec {
        name: "search_knowledge_base".into(),
        description: "Search".into(),
        parameters: json!({"type": "object", "properties": {"query": {"type": "string"}}}),
    }];
    request.temperature = Some(0.2);
    request
}

async fn text(cache: &ResponseCache, scope: &str, request: &ChatRequest) -> String {
    cache
        .complete_scoped(scope, request)
        .await
        .expect("answer")
        .text()
}

#[tokio::test]
async fn an_identical_request_is_answered_from_the_cache() {
    let fake = Fake::new();
    let cache = cache(&fake, CacheConfig::default());
    let model = cache.scoped("tenant-a");
    let first = model.complete(&request("Opening hours?")).await.unwrap();
    let second = model.complete(&request("Opening hours?")).await.unwrap();

    assert_eq!(fake.calls(), 1);
    assert_eq!(first.text(), "Opening hours?#1");
    assert!(!first.usage.from_cache, "the real call is billed");
    assert!(second.usage.from_cache, "the cached answer is marked");
    assert_eq!(
        ChatResponse {
            usage: Usage {
                from_cache: false,
                ..second.usage
            },
            ..second
        },
        first,
        "the stored answer is returned as it came"
    );
    assert_eq!(model.provider(), "fake");
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn any_difference_in_the_request_is_a_miss() {
    let base = request("Opening hours?");
    let mut variants: Vec<(&str, ChatRequest)> = Vec::new();
    let mut push = |name: &'static str, change: &dyn Fn(&mut ChatRequest)| {
        let mut r = base.clone();
        change(&mut r);
        assert_ne!(r, base, "{name} changes the request");
        variants.push((name, r));
    };
    push("model", &|r| r.model = "other-model".into());
    push("system", &|r| r.system = Some("You are a pirate.".into()));
    push("no system", &|r| r.system = None);
    push("last message", &|r| {
        r.messages[2] = Message::user("Prices?");
    });
    push("earlier message", &|r| {
        r.messages[1] = Message::assistant("Hi! How can I help?");
    });
    push("role", &|r| r.messages[0].role = Role::Assistant);
    push("one more message", &|r| r.messages.push(Message::user("?")));
    push("tool call part", &|r| {
        r.messages.push(Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall(ToolCall {
                id: "c1".into(),
                name: "search_knowledge_base".into(),
                arguments: json!({"query": "hours"}),
            })],
        });
    });
    push("tool result part", &|r| {
        r.messages.push(Message {
            role: Role::User,
            parts: vec![Part::ToolResult {
                call_id: "c1".into(),
                name: "search_knowledge_base".into(),
                content: "9 to 5".into(),
                is_error: false,
            }],
        });
    });
    push("tools", &|r| r.tools.clear());
    push("tool schema", &|r| {
        r.tools[0].parameters = json!({"type": "object"});
    });
    push("tool choice", &|r| r.tool_choice = ToolChoice::None);
    push("forced tool", &|r| {
        r.tool_choice = ToolChoice::Tool("search_knowledge_base".into());
    });
    push("max tokens", &|r| r.max_tokens = 100);
    push("temperature", &|r| r.temperature = Some(0.7));
    push("no temperature", &|r| r.temperature = None);

    for (name, variant) in variants {
        let fake = Fake::new();
        let cache = cache(&fake, CacheConfig::default());
        text(&cache, "t", &base).await;
        text(&cache, "t", &variant).await;
        assert_eq!(fake.calls(), 2, "a different {name} is a miss");
        text(&cache, "t", &variant).await;
        text(&cache, "t", &base).await;
        assert_eq!(fake.calls(), 2, "each is then a hit ({name})");
    }
}

#[tokio::test]
async fn scopes_never_share_entries() {
    let fake = Fake::new();
    let cache = cache(&fake, CacheConfig::default());
    let a = cache.scoped("tenant-a");
    let b = cache.scoped(String::from("tenant-b"));
    let question = request("Opening hours?");

    let from_a = a.complete(&question).await.unwrap();
    let from_b = b.complete(&question).await.unwrap();
    assert_eq!(fake.calls(), 2, "tenant b does not get tenant a's answer");
    assert!(!from_b.usage.from_cache);
    assert_eq!(from_a.text(), "Opening hours?#1");
    assert_eq!(from_b.text(), "Opening hours?#2");

    assert_eq!(a.complete(&question).await.unwrap().text(), from_a.text());
    assert_eq!(b.complete(&question).await.unwrap().text(), from_b.text());
    assert_eq!(text(&cache, "tenant-a", &question).await, from_a.text());
    assert_eq!(fake.calls(), 2);
    assert_eq!(a.scope(), "tenant-a");
}

#[test]
fn the_key_covers_scope_and_provider_and_is_stable() {
    let r = request("Opening hours?");
    let k = key("t", "openai", &r).unwrap();
    assert_eq!(k, key("t", "openai", &r.clone()).unwrap());
    assert_ne!(k, key("u", "openai", &r).unwrap());
    assert_ne!(k, key("t", "anthropic", &r).unwrap());
    // Field boundaries cannot be shifted: JSON quotes every string.
    assert_ne!(key("ab", "c", &r), key("a", "bc", &r));
    let mut nan = r.clone();
    nan.temperature = Some(f32::NAN);
    let mut none = r;
    none.temperature = None;
    assert_ne!(key("t", "p", &nan), key("t", "p", &none));
}

#[tokio::test(start_paused = true)]
async fn entries_expire_after_the_ttl() {
    let fake = Fake::new();
    let config = CacheConfig {
        ttl: Duration::from_secs(60),
        ..CacheConfig::default()
    };
    let cache = cache(&fake, config);
    let question = request("Opening hours?");

    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#1");
    tokio::time::advance(Duration::from_secs(59)).await;
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#1");
    assert_eq!(
        fake.calls(),
        1,
        "fresh for the whole ttl, hits not extending it"
    );

    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(fake.calls(), 2, "expired at the ttl");
    assert_eq!(
        cache.len(),
        1,
        "the expired entry was replaced, not added to"
    );

    tokio::time::advance(Duration::from_secs(30)).await;
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(fake.calls(), 2, "the new answer counts from its own call");
}

#[tokio::test]
async fn the_least_recently_used_entry_is_evicted() {
    let fake = Fake::new();
    let config = CacheConfig {
        max_entries: 2,
        ..CacheConfig::default()
    };
    let cache = cache(&fake, config);
    let (a, b, c) = (request("a"), request("b"), request("c"));

    text(&cache, "t", &a).await;
    text(&cache, "t", &b).await;
    text(&cache, "t", &a).await; // a is now more recent than b
    assert_eq!(fake.calls(), 2);
    text(&cache, "t", &c).await; // evicts b
    assert_eq!(fake.calls(), 3);
    assert_eq!(cache.len(), 2);

    assert_eq!(text(&cache, "t", &a).await, "a#1");
    assert_eq!(text(&cache, "t", &c).await, "c#3");
    assert_eq!(fake.calls(), 3, "a and c were kept");
    assert_eq!(text(&cache, "t", &b).await, "b#4", "b was evicted");
    assert_eq!(cache.len(), 2);
}

#[tokio::test]
async fn errors_are_not_cached() {
    let fake = Fake::new();
    fake.failures.store(1, Ordering::SeqCst);
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Opening hours?");

    let failed = cache.complete_scoped("t", &question).await;
    assert!(matches!(failed, Err(LlmError::Server { status: 503, .. })));
    assert!(cache.is_empty());

    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(fake.calls(), 2, "the error was retried, the success kept");
}

#[tokio::test]
async fn streams_pass_through_uncached() {
    let fake = Fake::new();
    let cache = cache(&fake, CacheConfig::default());
    let model = cache.scoped("t");
    let question = request("Opening hours?");

    let mut events = model.stream(&question).await.unwrap();
    let Some(Ok(StreamEvent::Done(done))) = events.next().await else {
        panic!("a done event");
    };
    assert!(!done.usage.from_cache);
    assert!(cache.is_empty(), "a stream's answer is not stored");

    model.complete(&question).await.unwrap();
    assert_eq!(fake.calls(), 1, "nor served to complete");
    let _events = model.stream(&question).await.unwrap();
    assert_eq!(
        fake.streams.load(Ordering::SeqCst),
        2,
        "a stored answer is not served to a stream"
    );
}

#[tokio::test]
async fn a_large_answer_is_not_cached() {
    let fake = Fake::padded(70 * 1024);
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Tell me everything");

    let first = cache.complete_scoped("t", &question).await.unwrap();
    assert!(first.text().len() > 64 * 1024);
    cache.complete_scoped("t", &question).await.unwrap();
    assert_eq!(fake.calls(), 2, "over 64 KiB is called again");
    assert!(cache.is_empty());
}

#[tokio::test]
async fn the_size_cap_is_configurable() {
    let fake = Fake::padded(2000);
    let config = CacheConfig {
        max_entry_bytes: 1024,
        ..CacheConfig::default()
    };
    let cache = cache(&fake, config);
    text(&cache, "t", &request("big")).await;
    text(&cache, "t", &request("big")).await;
    assert_eq!(fake.calls(), 2);

    let config = CacheConfig {
        max_entry_bytes: 4096,
        ..config
    };
    let fake = Fake::padded(2000);
    let cache = ResponseCache::new(fake.clone(), config);
    text(&cache, "t", &request("big")).await;
    text(&cache, "t", &request("big")).await;
    assert_eq!(fake.calls(), 1);
}

#[tokio::test]
async fn a_disabled_cache_passes_through() {
    for config in [
        CacheConfig {
            max_entries: 0,
            ..CacheConfig::default()
        },
        CacheConfig {
            ttl: Duration::ZERO,
            ..CacheConfig::default()
        },
    ] {
        assert!(!config.is_enabled());
        let fake = Fake::new();
        let cache = cache(&fake, config);
        let first = text(&cache, "t", &request("a")).await;
        let second = cache.complete_scoped("t", &request("a")).await.unwrap();
        assert_eq!(fake.calls(), 2);
        assert_ne!(first, second.text());
        assert!(!second.usage.from_cache);
        assert!(cache.is_empty());
    }
}

#[tokio::test]
async fn clear_forgets_everything() {
    let fake = Fake::new();
    let cache = cache(&fake, CacheConfig::default());
    text(&cache, "t", &request("a")).await;
    cache.clear();
    assert!(cache.is_empty());
    text(&cache, "t", &request("a")).await;
    assert_eq!(fake.calls(), 2);
}

#[tokio::test]
async fn concurrent_identical_misses_share_one_call() {
    let fake = Fake::gated();
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Opening hours?");

    let calls =
        futures_util::future::join_all((0..10).map(|_| cache.complete_scoped("t", &question)));
    // join_all polls every call once before this releases the model.
    let release = async {
        tokio::task::yield_now().await;
        fake.gate.add_permits(1);
    };
    let (answers, ()) = tokio::join!(calls, release);

    assert_eq!(fake.calls(), 1);
    let answers: Vec<ChatResponse> = answers.into_iter().map(Result::unwrap).collect();
    assert!(answers.iter().all(|a| a.text() == "Opening hours?#1"));
    let billed = answers.iter().filter(|a| !a.usage.from_cache).count();
    assert_eq!(billed, 1, "only the call that ran is billed");
    assert_eq!(cache.len(), 1);
}

#[tokio::test]
async fn a_call_in_flight_shares_its_error_and_is_not_kept() {
    let fake = Fake::gated();
    fake.failures.store(1, Ordering::SeqCst);
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Opening hours?");

    let calls =
        futures_util::future::join_all((0..3).map(|_| cache.complete_scoped("t", &question)));
    let release = async {
        tokio::task::yield_now().await;
        fake.gate.add_permits(1);
    };
    let (answers, ()) = tokio::join!(calls, release);
    assert_eq!(fake.calls(), 1);
    assert!(answers.iter().all(Result::is_err));

    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(fake.calls(), 2, "the next call tries again");
}

#[tokio::test]
async fn a_call_outlives_the_caller_that_started_it_while_others_wait() {
    let fake = Fake::gated();
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Opening hours?");

    let first = tokio::spawn({
        let (cache, question) = (cache.clone(), question.clone());
        async move { cache.complete_scoped("t", &question).await }
    });
    while fake.calls() == 0 {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn({
        let (cache, question) = (cache.clone(), question.clone());
        async move { cache.complete_scoped("t", &question).await }
    });
    for _ in 0..5 {
        tokio::task::yield_now().await;
    }
    first.abort();
    assert!(first.await.unwrap_err().is_cancelled());
    fake.gate.add_permits(1);

    let answer = second.await.unwrap().unwrap();
    assert_eq!(answer.text(), "Opening hours?#1");
    assert!(answer.usage.from_cache, "the waiter did not start the call");
    assert_eq!(fake.calls(), 1);
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#1");
    assert_eq!(fake.calls(), 1, "the answer was stored by the call itself");
}

#[tokio::test]
async fn a_call_everyone_gave_up_on_is_dropped() {
    let fake = Fake::gated();
    let cache = cache(&fake, CacheConfig::default());
    let question = request("Opening hours?");

    let abandoned = tokio::time::timeout(
        Duration::from_millis(10),
        cache.complete_scoped("t", &question),
    )
    .await;
    assert!(abandoned.is_err(), "timed out waiting for the gated model");
    assert_eq!(fake.calls(), 1);

    fake.gate.add_permits(1);
    assert_eq!(text(&cache, "t", &question).await, "Opening hours?#2");
    assert_eq!(fake.calls(), 2, "a fresh call, not the dropped one");
    assert!(lock(&cache.state).flights.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_at_once_get_their_own_answers() {
    let fake = Fake::new();
    let cache = cache(&fake, CacheConfig::default());
    let mut tasks = Vec::new();
    for i in 0..200 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let tenant = format!("tenant-{}", (i / 4) % 2);
            let prompt = format!("question {}", i % 4);
            let answer = cache
                .complete_scoped(&tenant, &request(&prompt))
                .await
                .unwrap();
            (tenant, prompt, answer)
        }));
    }
    let mut firsts: HashMap<(String, String), String> = HashMap::new();
    let mut billed = 0;
    for task in tasks {
        let (tenant, prompt, answer) = task.await.unwrap();
        let text = answer.text();
        assert!(
            text.starts_with(&format!("{prompt}#")),
            "{text} for {prompt}"
        );
        let first = firsts
            .entry((tenant, prompt))
            .or_insert_with(|| text.clone());
        assert_eq!(*first, text, "one answer per tenant and question");
        billed += usize::from(!answer.usage.from_cache);
    }
    assert_eq!(firsts.len(), 8);
    let mut distinct: Vec<&String> = firsts.values().collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 8, "tenants got different answers");
    assert_eq!(fake.calls(), 8, "one call per tenant and question");
    assert_eq!(billed, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_with_constant_eviction_stay_bounded_and_correct() {
    let fake = Fake::new();
    let config = CacheConfig {
        max_entries: 3,
        ..CacheConfig::default()
    };
    let cache = cache(&fake, config);
    let mut tasks = Vec::new();
    for i in 0..400 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let prompt = format!("question {}", i % 20);
            let answer = cache.complete_scoped("t", &request(&prompt)).await;
            assert!(cache.len() <= 3);
            (prompt, answer.unwrap())
        }));
    }
    let mut billed = 0;
    for task in tasks {
        let (prompt, answer) = task.await.unwrap();
        assert!(answer.text().starts_with(&format!("{prompt}#")));
        billed += usize::from(!answer.usage.from_cache);
    }
    assert_eq!(billed, fake.calls(), "every real call billed once, no more");
    assert!(cache.len() <= 3);
    assert!(lock(&cache.state).flights.is_empty());
}

/// Counts `concierge_llm_cache_total` by its `result` label.
#[derive(Default)]
struct Recorder(Arc<Mutex<HashMap<String, u64>>>);

struct Slot(Arc<Mutex<HashMap<String, u64>>>, String);

impl metrics::CounterFn for Slot {
    fn increment(&self, value: u64) {
        *self.0.lock().unwrap().entry(self.1.clone()).or_default() += value;
    }

    fn absolute(&self, value: u64) {
        self.0.lock().unwrap().insert(self.1.clone(), value);
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        if key.name() != "concierge_llm_cache_total" {
            return metrics::Counter::noop();
        }
        let result = key
            .labels()
            .find(|l| l.key() == "result")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        metrics::Counter::from_arc(Arc::new(Slot(self.0.clone(), result)))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

#[test]
fn hits_misses_stores_and_skips_are_counted() {
    let recorder = Recorder::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let fake = Fake::new();
            let cache = cache(
                &fake,
                CacheConfig {
                    max_entry_bytes: 1024,
                    ..CacheConfig::default()
                },
            );
            text(&cache, "t", &request("a")).await; // miss, store
            text(&cache, "t", &request("a")).await; // hit
            fake.failures.store(1, Ordering::SeqCst);
            assert!(cache.complete_scoped("t", &request("b")).await.is_err()); // miss
            let big = "x".repeat(2000);
            text(&cache, "t", &request(&big)).await; // miss, skip
        });
    });
    let counts = recorder.0.lock().unwrap().clone();
    let expected: HashMap<String, u64> = [("miss", 3), ("hit", 1), ("store", 1), ("skip", 1)]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    assert_eq!(counts, expected);
}
