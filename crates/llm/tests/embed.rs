//! The embedding adapters and their resilience layer against a local fake server that speaks
//! OpenAI's `POST /v1/embeddings` and Gemini's `:batchEmbedContents`: ordering by index,
//! batching, malformed answers, HTTP errors, retries, breakers and fallback.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::float_cmp)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use llm::embed::{GeminiEmbedConfig, GeminiEmbedder, OpenAiEmbedConfig, OpenAiEmbedder};
use llm::{
    BreakerState, EmbedLimits, Embedder, HttpSettings, LlmError, Resilient, ResilientEmbedder,
    RetryPolicy,
};
use serde_json::{Value, json};

const KEY: &str = "AIza-test-key";

/// A scripted answer: status, headers, body.
type Script = (u16, Vec<(&'static str, String)>, String);

/// One request the fake received.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    /// Answers every unscripted request when set, instead of the computed vectors.
    fallback: Mutex<Option<Script>>,
    requests: Mutex<Vec<Seen>>,
}

impl Fake {
    fn push(&self, status: u16, headers: Vec<(&'static str, String)>, body: impl Into<String>) {
        self.script
            .lock()
            .unwrap()
            .push_back((status, headers, body.into()));
    }
    fn push_body(&self, body: impl Into<String>) {
        self.push(200, vec![], body);
    }
    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn seen(&self) -> Vec<Seen> {
        self.requests.lock().unwrap().clone()
    }
    fn last(&self) -> Seen {
        self.requests.lock().unwrap().last().unwrap().clone()
    }
}

/// The vector the fake computes for one text when unscripted: `[bytes, number, 1]`,
/// where `number` is the text's trailing number (`doc 7` gives 7), or -1.
fn vector(text: &str) -> Vec<f32> {
    let number = text
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse::<f32>().ok())
        .unwrap_or(-1.0);
    #[allow(clippy::cast_precision_loss)]
    let bytes = text.len() as f32;
    vec![bytes, number, 1.0]
}

fn texts(body: &Value, gemini: bool) -> Vec<String> {
    if gemini {
        body["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    } else {
        body["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_str().unwrap().to_owned())
            .collect()
    }
}

/// The computed answer. OpenAI's lists its vectors last input first, with their indices,
/// so only a client that sorts by index gets them right.
fn computed(body: &Value, gemini: bool) -> String {
    let texts = texts(body, gemini);
    if gemini {
        let embeddings: Vec<Value> = texts.iter().map(|t| json!({"values": vector(t)})).collect();
        return json!({ "embeddings": embeddings }).to_string();
    }
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .rev()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t)}))
        .collect();
    json!({"object": "list", "data": data, "model": "embed-test-0001",
           "usage": {"prompt_tokens": texts.len() * 2, "total_tokens": texts.len() * 2}})
    .to_string()
}

fn respond((status, headers, body): Script) -> Response {
    let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
    for (k, v) in headers {
        r = r.header(k, v);
    }
    r.header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

async fn record(
    fake: &Fake,
    path: String,
    headers: HeaderMap,
    body: &str,
    gemini: bool,
) -> Response {
    let body: Value = serde_json::from_str(body).unwrap();
    let answer = computed(&body, gemini);
    fake.requests.lock().unwrap().push(Seen {
        path,
        headers,
        body,
    });
    let next = fake.script.lock().unwrap().pop_front();
    let next = next.or_else(|| fake.fallback.lock().unwrap().clone());
    respond(next.unwrap_or((200, vec![], answer)))
}

async fn openai_handler(
    State(fake): State<Arc<Fake>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    record(&fake, "/v1/embeddings".into(), headers, &body, false).await
}

async fn gemini_handler(
    State(fake): State<Arc<Fake>>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = format!("/v1beta/models/{segment}");
    record(&fake, path, headers, &body, true).await
}

async fn fake() -> (Arc<Fake>, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/v1/embeddings", axum::routing::post(openai_handler))
        .route(
            "/v1beta/models/{segment}",
            axum::routing::post(gemini_handler),
        )
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, url)
}

fn quick() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
        total_timeout: Duration::from_secs(5),
        public_only: false,
    }
}

fn openai_config(url: &str) -> OpenAiEmbedConfig {
    OpenAiEmbedConfig {
        base_url: format!("{url}/v1"),
        http: quick(),
        ..OpenAiEmbedConfig::openai("sk-test".to_owned().into(), "text-embedding-3-small")
    }
}

fn openai(url: &str) -> OpenAiEmbedder {
    OpenAiEmbedder::new(openai_config(url)).unwrap()
}

fn gemini_config(url: &str) -> GeminiEmbedConfig {
    GeminiEmbedConfig {
        base_url: format!("{url}/"),
        http: quick(),
        ..GeminiEmbedConfig::new(KEY.to_owned().into(), "gemini-embedding-001")
    }
}

fn docs(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("doc {i}")).collect()
}

fn numbers(vectors: &[Vec<f32>]) -> Vec<f32> {
    vectors.iter().map(|v| v[1]).collect()
}

#[tokio::test]
async fn openai_sends_the_wire_format_and_orders_vectors_by_index() {
    let (fake, url) = fake().await;
    let inputs = vec!["hello there".to_owned(), String::new(), "doc 2".to_owned()];
    let got = openai(&url).embed(&inputs).await.unwrap();

    let seen = fake.last();
    assert_eq!(seen.path, "/v1/embeddings");
    assert_eq!(seen.headers["authorization"], "Bearer sk-test");
    assert_eq!(
        seen.body,
        json!({"model": "text-embedding-3-small", "input": ["hello there", "", "doc 2"]}),
        "no dimensions unless configured; the empty string is sent as it is"
    );
    assert_eq!(
        got.vectors,
        vec![vector("hello there"), vector(""), vector("doc 2")]
    );
    assert_eq!(got.model, "embed-test-0001");
    assert_eq!(got.usage.input_tokens, 6);
    assert_eq!(got.dimensions(), Some(3));
}

#[tokio::test]
async fn compatible_servers_get_no_key_and_the_configured_dimensions() {
    let (fake, url) = fake().await;
    let embedder = OpenAiEmbedder::new(OpenAiEmbedConfig {
        dimensions: Some(3),
        http: quick(),
        ..OpenAiEmbedConfig::compatible("ollama", format!("{url}/v1/"), "nomic-embed-text")
    })
    .unwrap();
    assert_eq!(embedder.provider(), "ollama");
    assert_eq!(embedder.dimensions(), Some(3));
    embedder.embed(&docs(1)).await.unwrap();
    let seen = fake.last();
    assert!(!seen.headers.contains_key("authorization"));
    assert_eq!(seen.body["dimensions"], 3);
    assert_eq!(seen.body["model"], "nomic-embed-text");

    // A server that ignores the asked length is refused, not trusted.
    fake.push_body(
        json!({"data": [{"index": 0, "embedding": [0.1, 0.2]}], "model": "x"}).to_string(),
    );
    let err = embedder.embed(&docs(1)).await.unwrap_err();
    assert!(matches!(err, LlmError::Malformed(_)), "{err:?}");
}

#[tokio::test]
async fn no_inputs_send_nothing() {
    let (fake, url) = fake().await;
    let got = openai(&url).embed(&[]).await.unwrap();
    assert!(got.is_empty());
    let got = GeminiEmbedder::new(gemini_config(&url))
        .unwrap()
        .embed(&[])
        .await
        .unwrap();
    assert!(got.is_empty());
    assert_eq!(fake.calls(), 0);
}

#[tokio::test]
async fn long_lists_are_split_into_batches_in_order() {
    let (fake, url) = fake().await;
    let embedder = openai(&url);
    assert_eq!(embedder.max_batch(), 64, "the default batch size");
    let got = embedder.embed(&docs(150)).await.unwrap();
    let sizes: Vec<usize> = fake
        .seen()
        .iter()
        .map(|s| s.body["input"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![64, 64, 22]);
    #[allow(clippy::cast_precision_loss)]
    let expected: Vec<f32> = (0..150).map(|i| i as f32).collect();
    assert_eq!(numbers(&got.vectors), expected);
    assert_eq!(got.usage.input_tokens, 300, "usage summed over the batches");
}

#[tokio::test]
async fn malformed_answers_are_typed_errors() {
    let (fake, url) = fake().await;
    let embedder = openai(&url);
    let two = docs(2);
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{\"data\": [".into()),
        (
            "one vector for two inputs",
            json!({"data": [{"index": 0, "embedding": [1.0]}]}).to_string(),
        ),
        (
            "vectors of different lengths",
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]})
                .to_string(),
        ),
        (
            "a number beyond f32",
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1e39]}]})
                .to_string(),
        ),
        (
            "an index twice",
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [2.0]}]})
                .to_string(),
        ),
        (
            "an index out of range",
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 5, "embedding": [2.0]}]})
                .to_string(),
        ),
        (
            "an index on one vector only",
            json!({"data": [{"index": 1, "embedding": [1.0]}, {"embedding": [2.0]}]}).to_string(),
        ),
        (
            "base64 instead of floats",
            json!({"data": [{"index": 0, "embedding": "AACAPw=="}, {"index": 1, "embedding": "AACAPw=="}]})
                .to_string(),
        ),
        (
            "an empty vector",
            json!({"data": [{"index": 0, "embedding": []}, {"index": 1, "embedding": []}]})
                .to_string(),
        ),
        ("no data", json!({"object": "list"}).to_string()),
    ];
    for (what, body) in cases {
        fake.push_body(body);
        let err = embedder.embed(&two).await.unwrap_err();
        assert!(matches!(err, LlmError::Malformed(_)), "{what}: {err:?}");
        assert!(!err.is_retryable(), "{what}");
    }
    // Without indices, the list order is the input order.
    fake.push_body(
        json!({"data": [{"embedding": [1.0]}, {"embedding": [2.0]}], "model": "m"}).to_string(),
    );
    assert_eq!(
        embedder.embed(&two).await.unwrap().vectors,
        vec![vec![1.0], vec![2.0]]
    );
}

#[tokio::test]
async fn answers_over_the_size_cap_are_refused() {
    let (fake, url) = fake().await;
    let embedder = OpenAiEmbedder::new(OpenAiEmbedConfig {
        limits: EmbedLimits {
            max_response_bytes: 1024,
            ..EmbedLimits::default()
        },
        ..openai_config(&url)
    })
    .unwrap();
    let big: Vec<f32> = vec![0.123_456_79; 400];
    fake.push_body(json!({"data": [{"index": 0, "embedding": big}]}).to_string());
    let err = embedder.embed(&docs(1)).await.unwrap_err();
    let LlmError::Malformed(message) = &err else {
        panic!("{err:?}")
    };
    assert!(message.contains("larger than 1024 bytes"), "{message}");
}

#[tokio::test]
async fn http_errors_map_to_stable_kinds() {
    let (fake, url) = fake().await;
    let embedder = openai(&url);
    let error = |m: &str| {
        json!({"error": {"message": m, "type": "x", "param": null, "code": null}}).to_string()
    };
    fake.push(401, vec![], error("Incorrect API key provided"));
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::Auth(m)) if m == "Incorrect API key provided"
    ));
    fake.push(
        429,
        vec![("retry-after", "2".into())],
        error("Rate limit reached"),
    );
    assert_eq!(
        embedder.embed(&docs(1)).await.unwrap_err(),
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    fake.push(500, vec![], error("boom"));
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::Server { status: 500, .. })
    ));
    fake.push(400, vec![], error("'$.input' is invalid"));
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::BadRequest { status: 400, .. })
    ));
}

#[tokio::test]
async fn gemini_sends_batch_embed_contents_with_the_key_in_a_header() {
    let (fake, url) = fake().await;
    let embedder = GeminiEmbedder::new(GeminiEmbedConfig {
        model: "models/gemini-embedding-001".into(),
        dimensions: Some(3),
        task_type: Some("RETRIEVAL_DOCUMENT".into()),
        ..gemini_config(&url)
    })
    .unwrap();
    let got = embedder
        .embed(&["first".to_owned(), "doc 1".to_owned()])
        .await
        .unwrap();
    let seen = fake.last();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert_eq!(seen.headers["x-goog-api-key"], KEY);
    assert!(!seen.headers.contains_key("authorization"));
    let request = |text: &str| {
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": text}]},
               "taskType": "RETRIEVAL_DOCUMENT", "outputDimensionality": 3})
    };
    assert_eq!(
        seen.body,
        json!({"requests": [request("first"), request("doc 1")]})
    );
    assert_eq!(got.vectors, vec![vector("first"), vector("doc 1")]);
    assert_eq!(got.model, "gemini-embedding-001");
    assert_eq!(got.usage.input_tokens, 0, "Gemini does not say");

    // Without options, neither field is sent.
    GeminiEmbedder::new(gemini_config(&url))
        .unwrap()
        .embed(&docs(1))
        .await
        .unwrap();
    assert_eq!(
        fake.last().body["requests"][0],
        json!({"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "doc 0"}]}})
    );
}

#[tokio::test]
async fn gemini_batches_stay_within_googles_limit_of_100() {
    let (fake, url) = fake().await;
    let embedder = GeminiEmbedder::new(GeminiEmbedConfig {
        limits: EmbedLimits {
            batch_size: 500,
            ..EmbedLimits::default()
        },
        ..gemini_config(&url)
    })
    .unwrap();
    assert_eq!(embedder.max_batch(), 100);
    let got = embedder.embed(&docs(230)).await.unwrap();
    let sizes: Vec<usize> = fake
        .seen()
        .iter()
        .map(|s| s.body["requests"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![100, 100, 30]);
    assert_eq!(got.len(), 230);
    assert_eq!(got.vectors[229], vector("doc 229"));
}

#[tokio::test]
async fn gemini_errors_and_bad_answers() {
    let (fake, url) = fake().await;
    let embedder = GeminiEmbedder::new(gemini_config(&url)).unwrap();
    fake.push(
        400,
        vec![],
        json!({"error": {"code": 400, "status": "INVALID_ARGUMENT",
                         "message": "API key not valid. Please pass a valid API key."}})
        .to_string(),
    );
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::BadRequest { status: 400, message }) if message.starts_with("API key not valid")
    ));
    fake.push(
        429,
        vec![],
        json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}})
            .to_string(),
    );
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::RateLimited { .. })
    ));
    fake.push_body(json!({"embeddings": [{"values": [1.0, 2.0]}]}).to_string());
    assert!(matches!(
        embedder.embed(&docs(2)).await,
        Err(LlmError::Malformed(_))
    ));
    fake.push_body("{}");
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::Malformed(_))
    ));
    // The length seen first is the one every later answer must have.
    embedder.embed(&docs(1)).await.unwrap();
    assert_eq!(embedder.dimensions(), Some(3));
    fake.push_body(json!({"embeddings": [{"values": [1.0, 2.0]}]}).to_string());
    assert!(matches!(
        embedder.embed(&docs(1)).await,
        Err(LlmError::Malformed(_))
    ));
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        base: Duration::from_millis(10),
        cap: Duration::from_millis(40),
        max_retry_after: Duration::from_secs(1),
        breaker_threshold: 3,
        breaker_cooldown: Duration::from_millis(400),
    }
}

fn named(url: &str, name: &str, batch_size: usize) -> Arc<dyn Embedder> {
    Arc::new(
        OpenAiEmbedder::new(OpenAiEmbedConfig {
            limits: EmbedLimits {
                batch_size,
                ..EmbedLimits::default()
            },
            ..OpenAiEmbedConfig::compatible(name, format!("{url}/v1"), "m")
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn retries_honour_retry_after_and_resume_at_the_failed_batch() {
    let (fake, url) = fake().await;
    let chain = Resilient::embedders(vec![named(&url, "primary", 2)], policy());
    assert_eq!(chain.provider(), "primary");
    // Three batches; the second is refused twice, then answered.
    fake.push_body(computed(&json!({"input": ["doc 0", "doc 1"]}), false));
    fake.push(429, vec![("retry-after", "0.2".into())], "{}");
    fake.push(503, vec![], "{}");
    let started = std::time::Instant::now();
    let got = chain.embed(&docs(5)).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "retry-after was not honoured"
    );
    assert_eq!(numbers(&got.vectors), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    let batches: Vec<Value> = fake
        .seen()
        .iter()
        .map(|s| s.body["input"].clone())
        .collect();
    assert_eq!(
        batches,
        vec![
            json!(["doc 0", "doc 1"]),
            json!(["doc 2", "doc 3"]),
            json!(["doc 2", "doc 3"]),
            json!(["doc 2", "doc 3"]),
            json!(["doc 4"]),
        ],
        "the first batch is not sent again"
    );
    assert_eq!(got.usage.input_tokens, 10, "each batch billed once");
}

#[tokio::test]
async fn a_fallback_starts_over_and_a_failing_provider_opens_its_breaker() {
    let (primary, url_a) = fake().await;
    let (secondary, url_b) = fake().await;
    let chain: ResilientEmbedder = Resilient::embedders(
        vec![named(&url_a, "primary", 2), named(&url_b, "secondary", 2)],
        policy(),
    );
    assert_eq!(chain.provider(), "primary>secondary");
    // The primary answers the first batch, then fails for good.
    primary.push_body(computed(&json!({"input": ["doc 0", "doc 1"]}), false));
    *primary.fallback.lock().unwrap() = Some((500, vec![], "{}".into()));
    let got = chain.embed(&docs(3)).await.unwrap();
    assert_eq!(numbers(&got.vectors), vec![0.0, 1.0, 2.0]);
    assert_eq!(
        primary.calls(),
        4,
        "one batch answered, then three attempts"
    );
    let batches: Vec<Value> = secondary
        .seen()
        .iter()
        .map(|s| s.body["input"].clone())
        .collect();
    assert_eq!(
        batches,
        vec![json!(["doc 0", "doc 1"]), json!(["doc 2"])],
        "the fallback embeds everything: no mixing of two providers' vectors"
    );
    assert_eq!(chain.providers()[0].state(), BreakerState::Open);
    assert_eq!(chain.providers()[0].name(), "primary");
    chain.embed(&docs(1)).await.unwrap();
    assert_eq!(primary.calls(), 4, "an open breaker sends nothing");

    // A refused request is not retried anywhere.
    secondary.push(400, vec![], "{}");
    let only_b = Resilient::embedders(vec![named(&url_b, "secondary", 2)], policy());
    let before = secondary.calls();
    assert!(matches!(
        only_b.embed(&docs(1)).await,
        Err(LlmError::BadRequest { .. })
    ));
    assert_eq!(secondary.calls(), before + 1);
}

#[tokio::test]
async fn a_chain_knows_dimensions_only_when_its_providers_agree() {
    let (_fake, url) = fake().await;
    let sized = |d: Option<usize>| -> Arc<dyn Embedder> {
        Arc::new(
            OpenAiEmbedder::new(OpenAiEmbedConfig {
                dimensions: d,
                ..openai_config(&url)
            })
            .unwrap(),
        )
    };
    let agree = Resilient::embedders(vec![sized(Some(8)), sized(Some(8))], policy());
    assert_eq!(agree.dimensions(), Some(8));
    let differ = Resilient::embedders(vec![sized(Some(8)), sized(Some(4))], policy());
    assert_eq!(differ.dimensions(), None);
    let unknown = Resilient::embedders(vec![sized(Some(8)), sized(None)], policy());
    assert_eq!(unknown.dimensions(), None);
    let empty = Resilient::embedders(Vec::new(), policy());
    assert_eq!(empty.dimensions(), None);
    assert_eq!(
        empty.embed(&docs(1)).await.unwrap_err(),
        LlmError::NotConfigured
    );
    assert!(empty.embed(&[]).await.unwrap().is_empty());
}

/// Counter increments by name and `provider` label.
#[derive(Default)]
struct Counters(Arc<Mutex<Vec<(String, String)>>>);

struct Count(Arc<Mutex<Vec<(String, String)>>>, String, String);

impl metrics::CounterFn for Count {
    fn increment(&self, _: u64) {
        self.0
            .lock()
            .unwrap()
            .push((self.1.clone(), self.2.clone()));
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for Counters {
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
        let provider = key
            .labels()
            .find(|l| l.key() == "provider")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        metrics::Counter::from_arc(Arc::new(Count(
            self.0.clone(),
            key.name().to_owned(),
            provider,
        )))
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

#[tokio::test]
async fn embedding_chains_report_under_their_own_metric_names() {
    let recorder = Counters::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (_fake, url) = fake().await;
    let chain = Resilient::embedders(vec![named(&url, "openai", 64)], policy());
    chain.embed(&docs(2)).await.unwrap();
    let counted = recorder.0.lock().unwrap().clone();
    assert_eq!(
        counted,
        vec![(
            "concierge_embed_requests_total".to_owned(),
            "openai".to_owned()
        )]
    );
}
