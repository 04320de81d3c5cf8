//! A local server speaking OpenAI Chat Completions (`POST /v1/chat/completions`), so the
//! real adapter and agent code run in tests and benchmarks. Answers come from a script
//! (text, tool calls, HTTP errors, delays); with the script empty it answers with the
//! default text at once. Every request body is recorded.

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

#[derive(Default)]
struct Shared {
    script: VecDeque<(Reply, Duration)>,
    default_text: String,
    requests: Vec<Value>,
    record: bool,
    calls: u64,
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
        Reply::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let body = json!({"error": {"message": "scripted failure", "type": "server_error", "param": null, "code": null}});
            return (status, Json(body)).into_response();
        }
    };
    Json(json!({
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
    }))
    .into_response()
}
