//! A local server speaking OpenAI Chat Completions (`POST /v1/chat/completions`) and
//! embeddings (`POST /v1/embeddings`), so the real adapter and agent code run in tests and
//! benchmarks. Answers come from a script (text, tool calls, HTTP errors, delays), one for
//! chat and one for embeddings; with its script empty, chat answers with the default text
//! and embeddings with [`fake_embedding`] of each input, at once. Every request body is
//! recorded.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone, Debug)]
pub enum Reply {
    Text(String),
    /// Tool calls: (name, arguments as raw JSON text, which may be invalid on purpose).
    ToolCalls(Vec<(String, String)>),
    /// An HTTP error with an OpenAI-style error body.
    Status(u16),
}

/// The length of the fake's vectors when a request asks for none (`dimensions`).
pub const EMBEDDING_DIMENSIONS: usize = 64;

/// One scripted answer of `/v1/embeddings`.
#[derive(Clone, Debug)]
pub enum EmbedReply {
    /// [`fake_embedding`] of each input: what an empty script answers.
    Vectors,
    /// The vectors of the first `n` inputs only: a wrong count.
    FirstVectors(usize),
    /// An HTTP error with an OpenAI-style error body, and a `retry-after` header (seconds,
    /// fractions allowed) when given.
    Status(u16, Option<Duration>),
    /// This body as it is, with status 200: malformed JSON, out-of-range numbers, ragged
    /// vectors, shuffled indices...
    Body(String),
}

/// A deterministic embedding: the text's words (lower-cased runs of letters and digits),
/// hashed into `dimensions` buckets and counted, then scaled to unit length. Texts sharing
/// words are close; a text without words is all zeros.
#[must_use]
pub fn fake_embedding(text: &str, dimensions: usize) -> Vec<f32> {
    let mut vector = vec![0.0_f32; dimensions];
    if dimensions == 0 {
        return vector;
    }
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        // FNV-1a: stable across Rust versions and runs, unlike the std hasher.
        let hash = word
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let bucket = usize::try_from(hash % dimensions as u64).unwrap_or(0);
        vector[bucket] += 1.0;
    }
    let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in &mut vector {
            *x /= norm;
        }
    }
    vector
}

#[derive(Default)]
struct Shared {
    script: VecDeque<(Reply, Duration)>,
    default_text: String,
    requests: Vec<Value>,
    record: bool,
    calls: u64,
    embed_script: VecDeque<(EmbedReply, Duration)>,
    embed_requests: Vec<Value>,
    embed_calls: u64,
}

#[derive(Clone)]
pub struct FakeOpenAi {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeOpenAi {
    /// Starts on an ephemeral port of 127.0.0.1.
    ///
    /// # Panics
    /// If it cannot bind a local port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("address"), true).await
    }

    /// Starts on `addr`; `record = false` keeps no request bodies (for long benchmarks).
    ///
    /// # Panics
    /// If it cannot bind `addr`.
    pub async fn start_on(addr: SocketAddr, record: bool) -> Self {
        let shared = Arc::new(Mutex::new(Shared {
            default_text: "Happy to help.".into(),
            record,
            ..Shared::default()
        }));
        let app = axum::Router::new()
            .route("/v1/chat/completions", axum::routing::post(complete))
            .route("/v1/embeddings", axum::routing::post(embed))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind fake OpenAI");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { addr, shared }
    }

    /// Up to and including `/v1`.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn push(&self, reply: Reply) {
        lock(&self.shared).script.push_back((reply, Duration::ZERO));
    }

    pub fn push_delayed(&self, reply: Reply, delay: Duration) {
        lock(&self.shared).script.push_back((reply, delay));
    }

    pub fn set_default_text(&self, text: &str) {
        text.clone_into(&mut lock(&self.shared).default_text);
    }

    /// The request bodies received so far.
    #[must_use]
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.shared).requests.clone()
    }

    #[must_use]
    pub fn calls(&self) -> u64 {
        lock(&self.shared).calls
    }

    /// Scripts the next `/v1/embeddings` answer.
    pub fn push_embedding(&self, reply: EmbedReply) {
        self.push_embedding_delayed(reply, Duration::ZERO);
    }

    pub fn push_embedding_delayed(&self, reply: EmbedReply, delay: Duration) {
        lock(&self.shared).embed_script.push_back((reply, delay));
    }

    /// The `/v1/embeddings` request bodies received so far.
    #[must_use]
    pub fn embedding_requests(&self) -> Vec<Value> {
        lock(&self.shared).embed_requests.clone()
    }

    #[must_use]
    pub fn embedding_calls(&self) -> u64 {
        lock(&self.shared).embed_calls
    }
}

fn openai_error(code: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body =
        json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
    (status, Json(body)).into_response()
}

/// `input` as OpenAI takes it: one string or a list of them.
fn inputs(body: &Value) -> Option<Vec<String>> {
    match body.get("input")? {
        Value::String(one) => Some(vec![one.clone()]),
        Value::Array(many) => many.iter().map(|v| v.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

async fn embed(State(shared): State<Arc<Mutex<Shared>>>, Json(body): Json<Value>) -> Response {
    let (reply, delay) = {
        let mut s = lock(&shared);
        s.embed_calls += 1;
        if s.record {
            s.embed_requests.push(body.clone());
        }
        s.embed_script
            .pop_front()
            .unwrap_or((EmbedReply::Vectors, Duration::ZERO))
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Some(inputs) = inputs(&body) else {
        return openai_error(400, "'input' must be a string or a list of strings");
    };
    let dimensions = body
        .get("dimensions")
        .and_then(Value::as_u64)
        .and_then(|d| usize::try_from(d).ok())
        .unwrap_or(EMBEDDING_DIMENSIONS);
    let count = match reply {
        EmbedReply::Vectors => inputs.len(),
        EmbedReply::FirstVectors(n) => n.min(inputs.len()),
        EmbedReply::Status(code, retry_after) => {
            let mut response = openai_error(code, "scripted failure");
            if let Some(wait) = retry_after
                && let Ok(value) = wait.as_secs_f64().to_string().parse()
            {
                response.headers_mut().insert("retry-after", value);
            }
            return response;
        }
        EmbedReply::Body(body) => {
            return (StatusCode::OK, [("content-type", "application/json")], body).into_response();
        }
    };
    let data: Vec<Value> = inputs
        .iter()
        .take(count)
        .enumerate()
        .map(|(index, text)| {
            json!({"object": "embedding", "index": index, "embedding": fake_embedding(text, dimensions)})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.split_whitespace().count()).sum();
    let model = body.get("model").and_then(Value::as_str).unwrap_or("fake");
    Json(json!({
        "object": "list", "data": data, "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}
    }))
    .into_response()
}

async fn complete(State(shared): State<Arc<Mutex<Shared>>>, Json(body): Json<Value>) -> Response {
    let (reply, delay, model) = {
        let mut s = lock(&shared);
        s.calls += 1;
        let model = body
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("fake")
            .to_owned();
        if s.record {
            s.requests.push(body);
        }
        let next = s.script.pop_front();
        let (reply, delay) =
            next.unwrap_or_else(|| (Reply::Text(s.default_text.clone()), Duration::ZERO));
        (reply, delay, model)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (message, finish) = match reply {
        Reply::Text(text) => (json!({"role": "assistant", "content": text}), "stop"),
        Reply::ToolCalls(calls) => {
            let calls: Vec<Value> = calls
                .into_iter()
                .enumerate()
                .map(|(i, (name, args))| {
                    json!({"id": format!("call_{i}"), "type": "function",
                           "function": {"name": name, "arguments": args}})
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": calls}),
                "tool_calls",
            )
        }
        Reply::Status(code) => return openai_error(code, "scripted failure"),
    };
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use llm::embed::{OpenAiEmbedConfig, OpenAiEmbedder};
    use llm::{Embedder, LlmError, cosine};

    use super::*;

    fn embedder(fake: &FakeOpenAi, dimensions: Option<usize>) -> OpenAiEmbedder {
        let _ = rustls::crypto::ring::default_provider().install_default();
        OpenAiEmbedder::new(OpenAiEmbedConfig {
            dimensions,
            ..OpenAiEmbedConfig::compatible("fake", fake.base_url(), "fake-embed")
        })
        .unwrap()
    }

    fn texts(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn fake_embeddings_are_stable_unit_vectors_close_for_shared_words() {
        let a = fake_embedding("Can I book a table for Friday?", 64);
        assert_eq!(a, fake_embedding("can i BOOK a table, for friday", 64));
        assert_eq!(a.len(), 64);
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        let near = cosine(&a, &fake_embedding("book a table on Friday", 64));
        let far = cosine(&a, &fake_embedding("What are your opening hours?", 64));
        assert!(near > 0.5 && near > far + 0.3, "near {near}, far {far}");
        assert_eq!(fake_embedding("", 64), vec![0.0; 64]);
        assert_eq!(fake_embedding("?!", 8), vec![0.0; 8]);
        assert_eq!(fake_embedding("words", 16).len(), 16);
    }

    #[tokio::test]
    async fn the_real_adapter_reads_the_fake_vectors() {
        let fake = FakeOpenAi::start().await;
        let inputs = texts(&["opening hours", "book a table", ""]);
        let got = embedder(&fake, None).embed(&inputs).await.unwrap();
        let expected: Vec<Vec<f32>> = inputs
            .iter()
            .map(|t| fake_embedding(t, EMBEDDING_DIMENSIONS))
            .collect();
        assert_eq!(got.vectors, expected);
        assert_eq!(got.model, "fake-embed");
        assert_eq!(got.usage.input_tokens, 5);
        assert_eq!(fake.embedding_calls(), 1);
        assert_eq!(fake.calls(), 0, "chat calls are counted apart");
        assert_eq!(fake.embedding_requests()[0]["input"][1], "book a table");

        let short = embedder(&fake, Some(8)).embed(&inputs[..1]).await.unwrap();
        assert_eq!(short.vectors, vec![fake_embedding("opening hours", 8)]);
    }

    #[tokio::test]
    async fn scripted_embedding_failures_reach_the_adapter_as_typed_errors() {
        let fake = FakeOpenAi::start().await;
        let model = embedder(&fake, None);
        let two = texts(&["a", "b"]);

        fake.push_embedding(EmbedReply::Status(429, Some(Duration::from_millis(1500))));
        assert_eq!(
            model.embed(&two).await.unwrap_err(),
            LlmError::RateLimited {
                retry_after: Some(Duration::from_millis(1500))
            }
        );
        fake.push_embedding(EmbedReply::Status(500, None));
        assert!(matches!(
            model.embed(&two).await,
            Err(LlmError::Server { status: 500, .. })
        ));
        fake.push_embedding(EmbedReply::Body("{\"data\": [".into()));
        assert!(matches!(
            model.embed(&two).await,
            Err(LlmError::Malformed(_))
        ));
        fake.push_embedding(EmbedReply::FirstVectors(1));
        assert!(matches!(
            model.embed(&two).await,
            Err(LlmError::Malformed(_))
        ));
        // The script is used up: computed vectors again.
        assert_eq!(model.embed(&two).await.unwrap().len(), 2);
        assert_eq!(fake.embedding_calls(), 5);
    }
}
