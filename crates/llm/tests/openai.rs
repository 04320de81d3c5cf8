//! The OpenAI-compatible adapter and the resilience layer against a local fake server that
//! speaks Chat Completions: JSON answers, SSE chunks ending with `[DONE]`, errors, stalls,
//! and the time to first token they record.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use llm::openai::{OpenAiChat, OpenAiConfig};
use llm::{
    ChatModel, ChatRequest, HttpSettings, LlmError, Message, Part, Resilient, RetryPolicy, Role,
    StopReason, StreamEvent, ToolCall, ToolChoice, ToolSpec,
};
use serde_json::{Value, json};

/// What the fake answers next.
#[derive(Clone)]
enum Script {
    Json(u16, Vec<(&'static str, String)>, String),
    /// SSE chunks, each sent after `delay`.
    Sse(Vec<String>, Duration),
    /// Headers only after this long.
    Stall(Duration),
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    /// When the script is empty.
    fallback: Mutex<Option<Script>>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

impl Fake {
    fn push(&self, s: Script) {
        self.script.lock().unwrap().push_back(s);
    }
    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn last_body(&self) -> Value {
        self.requests.lock().unwrap().last().unwrap().1.clone()
    }
}

async fn handler(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap();
    fake.requests.lock().unwrap().push((headers, body));
    let next = fake.script.lock().unwrap().pop_front();
    let next = next
        .or_else(|| fake.fallback.lock().unwrap().clone())
        .expect("unscripted request");
    match next {
        Script::Json(status, headers, body) => {
            let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
        Script::Sse(chunks, delay) => {
            let stream = futures_util::stream::iter(chunks).then(move |c| async move {
                tokio::time::sleep(delay).await;
                Ok::<_, std::convert::Infallible>(c)
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
        Script::Stall(d) => {
            tokio::time::sleep(d).await;
            Response::builder().body(Body::from("{}")).unwrap()
        }
    }
}

async fn fake() -> (Arc<Fake>, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(handler))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, url)
}

fn quick() -> HttpSettings {
    HttpSettings {
        connect_timeout: Duration::from_secs(2),
        first_byte_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(300),
        total_timeout: Duration::from_secs(5),
        public_only: false,
    }
}

fn openai(url: &str) -> OpenAiChat {
    OpenAiChat::new(OpenAiConfig {
        base_url: url.to_owned(),
        http: quick(),
        ..OpenAiConfig::openai("sk-test".to_owned().into(), "gpt-test")
    })
    .unwrap()
}

fn completion(message: &Value, finish: &str) -> String {
    json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "gpt-test-0001",
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": null}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49,
                  "prompt_tokens_details": {"cached_tokens": 10}}
    })
    .to_string()
}

fn ok(body: String) -> Script {
    Script::Json(200, vec![], body)
}

fn booking_tool() -> ToolSpec {
    ToolSpec {
        name: "get_slots".into(),
        description: "Free slots on a day".into(),
        parameters: json!({"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}),
    }
}

/// A conversation with a tool round trip already in it.
fn request_with_history() -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::user("Any slot Monday?"),
        Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall(ToolCall {
                id: "call_1".into(),
                name: "get_slots".into(),
                arguments: json!({"date": "2026-11-23"}),
            })],
        },
        Message {
            role: Role::User,
            parts: vec![Part::ToolResult {
                call_id: "call_1".into(),
                name: "get_slots".into(),
                content: "[\"10:00\"]".into(),
                is_error: false,
            }],
        },
    ]);
    r.system = Some("You book appointments.".into());
    r.tools = vec![booking_tool()];
    r.max_tokens = 300;
    r
}

/// A client for a tenant's endpoint connects to public addresses only: a name that resolves
/// to loopback is refused before any byte is sent, the same server is reached otherwise.
#[tokio::test]
async fn public_only_clients_never_reach_internal_addresses() {
    let (fake, url) = fake().await;
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/v1")
        .to_owned();
    let by_name = format!("http://localhost:{port}/v1");
    let guarded = OpenAiChat::new(OpenAiConfig {
        base_url: by_name.clone(),
        http: HttpSettings {
            public_only: true,
            ..quick()
        },
        ..OpenAiConfig::openai("sk-test".to_owned().into(), "gpt-test")
    })
    .unwrap();
    let err = guarded.complete(&request_with_history()).await.unwrap_err();
    assert!(matches!(err, LlmError::Transport(_)), "{err:?}");
    assert!(fake.requests.lock().unwrap().is_empty(), "nothing was sent");
    // The same endpoint without the guard answers.
    fake.push(ok(completion(
        &json!({"role": "assistant", "content": "hi"}),
        "stop",
    )));
    let answer = openai(&by_name)
        .complete(&request_with_history())
        .await
        .unwrap();
    assert_eq!(answer.text(), "hi");
}

#[tokio::test]
async fn completes_and_sends_the_wire_format() {
    let (fake, url) = fake().await;
    fake.push(ok(completion(
        &json!({"role": "assistant", "content": "10:00 is free."}),
        "stop",
    )));
    let answer = openai(&url)
        .complete(&request_with_history())
        .await
        .unwrap();
    assert_eq!(answer.text(), "10:00 is free.");
    assert_eq!(answer.stop, StopReason::EndTurn);
    assert_eq!(answer.model, "gpt-test-0001");
    assert_eq!(
        (
            answer.usage.input_tokens,
            answer.usage.output_tokens,
            answer.usage.cached_input_tokens
        ),
        (42, 7, 10)
    );

    let (headers, body) = fake.requests.lock().unwrap()[0].clone();
    assert_eq!(headers["authorization"], "Bearer sk-test");
    assert_eq!(body["model"], "gpt-test");
    assert_eq!(body["max_completion_tokens"], 300);
    assert!(body.get("stream").is_none());
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(
        messages[0],
        json!({"role": "system", "content": "You book appointments."})
    );
    assert_eq!(
        messages[1],
        json!({"role": "user", "content": "Any slot Monday?"})
    );
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(messages[2]["content"], Value::Null);
    let call = &messages[2]["tool_calls"][0];
    assert_eq!(call["id"], "call_1");
    assert_eq!(call["function"]["name"], "get_slots");
    // Arguments travel as a JSON string.
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"date": "2026-11-23"}));
    assert_eq!(
        messages[3],
        json!({"role": "tool", "tool_call_id": "call_1", "content": "[\"10:00\"]"})
    );
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "get_slots");
    assert_eq!(
        body["tools"][0]["function"]["parameters"]["required"][0],
        "date"
    );
    assert_eq!(body["tool_choice"], "auto");
}

#[tokio::test]
async fn compatible_servers_get_max_tokens_and_no_key() {
    let (fake, url) = fake().await;
    fake.push(ok(completion(
        &json!({"role": "assistant", "content": "hi"}),
        "stop",
    )));
    let model = OpenAiChat::new(OpenAiConfig {
        http: quick(),
        ..OpenAiConfig::compatible("ollama", url, "llama3")
    })
    .unwrap();
    let mut request = ChatRequest::new(vec![Message::user("hello")]);
    request.tools = vec![booking_tool()];
    request.tool_choice = ToolChoice::Tool("get_slots".into());
    model.complete(&request).await.unwrap();
    let (headers, body) = fake.requests.lock().unwrap()[0].clone();
    assert!(headers.get("authorization").is_none());
    assert_eq!(body["max_tokens"], 1024);
    assert!(body.get("max_completion_tokens").is_none());
    assert_eq!(
        body["tool_choice"],
        json!({"type": "function", "function": {"name": "get_slots"}})
    );
    assert_eq!(model.provider(), "ollama");
}

#[tokio::test]
async fn tool_calls_are_parsed_and_bad_arguments_refused() {
    let (fake, url) = fake().await;
    let calls = |args: &str| {
        completion(
            &json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_9", "type": "function", "function": {"name": "get_slots", "arguments": args}}]}),
            "tool_calls",
        )
    };
    fake.push(ok(calls("{\"date\":\"2026-11-23\"}")));
    fake.push(ok(calls("{\"date\": 2026-11")));
    fake.push(ok(calls("[1,2]")));
    let model = openai(&url);
    let request = ChatRequest::new(vec![Message::user("Monday?")]);
    let answer = model.complete(&request).await.unwrap();
    assert_eq!(answer.stop, StopReason::ToolUse);
    assert_eq!(
        answer.tool_calls(),
        vec![&ToolCall {
            id: "call_9".into(),
            name: "get_slots".into(),
            arguments: json!({"date": "2026-11-23"})
        }]
    );
    assert!(matches!(
        model.complete(&request).await,
        Err(LlmError::Malformed(_))
    ));
    assert!(matches!(
        model.complete(&request).await,
        Err(LlmError::Malformed(_))
    ));
}

#[tokio::test]
async fn http_errors_map_to_stable_kinds() {
    let (fake, url) = fake().await;
    let err = |status: u16, headers: Vec<(&'static str, String)>| {
        Script::Json(
            status,
            headers,
            json!({"error": {"message": "nope", "type": "x", "param": null, "code": null}})
                .to_string(),
        )
    };
    fake.push(err(429, vec![("retry-after", "2".into())]));
    fake.push(err(500, vec![]));
    fake.push(err(401, vec![]));
    fake.push(err(400, vec![]));
    fake.push(ok("this is not json".into()));
    fake.push(ok(json!({"choices": []}).to_string()));
    let model = openai(&url);
    let r = ChatRequest::new(vec![Message::user("hi")]);
    assert_eq!(
        model.complete(&r).await.unwrap_err(),
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert!(matches!(
        model.complete(&r).await,
        Err(LlmError::Server { status: 500, .. })
    ));
    assert!(matches!(model.complete(&r).await, Err(LlmError::Auth(_))));
    match model.complete(&r).await {
        Err(LlmError::BadRequest { status, message }) => {
            assert_eq!((status, message.as_str()), (400, "nope"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        model.complete(&r).await,
        Err(LlmError::Malformed(_))
    ));
    assert!(matches!(
        model.complete(&r).await,
        Err(LlmError::Malformed(_))
    ));
}

fn chunk(delta: &Value, finish: Option<&str>) -> String {
    format!(
        "data: {}\n\n",
        json!({"id": "c", "object": "chat.completion.chunk", "model": "gpt-test-0001",
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": null})
    )
}

#[tokio::test]
async fn streams_text_and_assembles_tool_call_fragments() {
    let (fake, url) = fake().await;
    fake.push(Script::Sse(
        vec![
            chunk(&json!({"role": "assistant", "content": ""}), None),
            chunk(&json!({"content": "Let me "}), None),
            chunk(&json!({"content": "check."}), None),
            chunk(
                &json!({"tool_calls": [{"index": 0, "id": "call_5", "type": "function",
                    "function": {"name": "get_slots", "arguments": ""}}]}),
                None,
            ),
            chunk(
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"da"}}]}),
                None,
            ),
            // A chunk split in the middle of its line, then the rest.
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
                .into(),
            "{\"arguments\":\"te\\\":\\\"2026-11-23\\\"}\"}}]},\"finish_reason\":null}]}\n\n".into(),
            chunk(&json!({}), Some("tool_calls")),
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":12}}\n\n"
                .into(),
            "data: [DONE]\n\n".into(),
        ],
        Duration::from_millis(5),
    ));
    let mut stream = openai(&url)
        .stream(&ChatRequest::new(vec![Message::user("Monday?")]))
        .await
        .unwrap();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }
    let body = fake.last_body();
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"]["include_usage"], true);
    let call = ToolCall {
        id: "call_5".into(),
        name: "get_slots".into(),
        arguments: json!({"date": "2026-11-23"}),
    };
    assert_eq!(events[0], StreamEvent::TextDelta("Let me ".into()));
    assert_eq!(events[1], StreamEvent::TextDelta("check.".into()));
    assert_eq!(events[2], StreamEvent::ToolCall(call.clone()));
    let StreamEvent::Done(done) = &events[3] else {
        panic!("{events:?}")
    };
    assert_eq!(events.len(), 4);
    assert_eq!(done.text(), "Let me check.");
    assert_eq!(done.tool_calls(), vec![&call]);
    assert_eq!(done.stop, StopReason::ToolUse);
    assert_eq!(
        (done.usage.input_tokens, done.usage.output_tokens),
        (30, 12)
    );
}

async fn collect(model: &OpenAiChat) -> Vec<Result<StreamEvent, LlmError>> {
    let stream = model
        .stream(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    stream.collect().await
}

#[tokio::test]
async fn stream_failures_after_200_reach_the_caller() {
    let (fake, url) = fake().await;
    let model = openai(&url);
    // An error object inside the stream.
    fake.push(Script::Sse(
        vec![
            chunk(&json!({"content": "Hel"}), None),
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n"
                .into(),
        ],
        Duration::ZERO,
    ));
    let events = collect(&model).await;
    assert_eq!(events[0], Ok(StreamEvent::TextDelta("Hel".into())));
    assert_eq!(
        events[1],
        Err(LlmError::Stream("The server had an error".into()))
    );
    assert_eq!(events.len(), 2, "nothing after an error");

    // Cut off: no finish reason, no [DONE].
    fake.push(Script::Sse(
        vec![chunk(&json!({"content": "Hel"}), None)],
        Duration::ZERO,
    ));
    let events = collect(&model).await;
    assert!(
        matches!(events.last(), Some(Err(LlmError::Stream(_)))),
        "{events:?}"
    );

    // Garbage instead of JSON.
    fake.push(Script::Sse(vec!["data: {nope\n\n".into()], Duration::ZERO));
    let events = collect(&model).await;
    assert!(
        matches!(events.last(), Some(Err(LlmError::Malformed(_)))),
        "{events:?}"
    );

    // Silence longer than the idle timeout between chunks.
    fake.push(Script::Sse(
        vec![
            chunk(&json!({"content": "a"}), None),
            chunk(&json!({"content": "b"}), Some("stop")),
        ],
        Duration::from_millis(800),
    ));
    let events = collect(&model).await;
    assert!(
        matches!(events.last(), Some(Err(LlmError::Timeout(_)))),
        "{events:?}"
    );
}

#[tokio::test]
async fn no_headers_within_the_first_byte_timeout_is_a_timeout() {
    let (fake, url) = fake().await;
    fake.push(Script::Stall(Duration::from_secs(3)));
    let started = std::time::Instant::now();
    let err = openai(&url)
        .complete(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(err, LlmError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
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

fn named(url: &str, name: &str) -> Arc<dyn ChatModel> {
    Arc::new(
        OpenAiChat::new(OpenAiConfig {
            http: quick(),
            ..OpenAiConfig::compatible(name, url, "m")
        })
        .unwrap(),
    )
}

#[tokio::test]
async fn retries_honour_retry_after_then_succeed() {
    let (fake, url) = fake().await;
    fake.push(Script::Json(
        429,
        vec![("retry-after", "0.2".into())],
        "{}".into(),
    ));
    fake.push(Script::Json(503, vec![], "{}".into()));
    fake.push(ok(completion(
        &json!({"role": "assistant", "content": "ok"}),
        "stop",
    )));
    let chain = Resilient::new(vec![named(&url, "primary")], policy());
    let started = std::time::Instant::now();
    let answer = chain
        .complete(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    assert_eq!(answer.text(), "ok");
    assert_eq!(fake.calls(), 3);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "retry-after was not honoured"
    );
}

#[tokio::test]
async fn refused_requests_are_not_retried_and_long_waits_fall_back() {
    let (primary, url_a) = fake().await;
    let (secondary, url_b) = fake().await;
    let chain = Resilient::new(
        vec![named(&url_a, "primary"), named(&url_b, "secondary")],
        policy(),
    );
    let request = ChatRequest::new(vec![Message::user("hi")]);

    // retry-after longer than the policy accepts: straight to the next provider.
    primary.push(Script::Json(
        429,
        vec![("retry-after", "30".into())],
        "{}".into(),
    ));
    secondary.push(ok(completion(
        &json!({"role": "assistant", "content": "from b"}),
        "stop",
    )));
    let started = std::time::Instant::now();
    assert_eq!(chain.complete(&request).await.unwrap().text(), "from b");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!((primary.calls(), secondary.calls()), (1, 1));

    // A 400 is not retried at the same provider.
    primary.push(Script::Json(400, vec![], "{}".into()));
    secondary.push(Script::Json(400, vec![], "{}".into()));
    assert!(matches!(
        chain.complete(&request).await,
        Err(LlmError::BadRequest { .. })
    ));
    assert_eq!((primary.calls(), secondary.calls()), (2, 2));
}

#[tokio::test]
async fn a_failing_provider_opens_its_breaker_and_is_skipped() {
    let (primary, url_a) = fake().await;
    let (secondary, url_b) = fake().await;
    *primary.fallback.lock().unwrap() = Some(Script::Json(500, vec![], "{}".into()));
    *secondary.fallback.lock().unwrap() = Some(ok(completion(
        &json!({"role": "assistant", "content": "b"}),
        "stop",
    )));
    let chain = Resilient::new(
        vec![named(&url_a, "primary"), named(&url_b, "secondary")],
        policy(),
    );
    let request = ChatRequest::new(vec![Message::user("hi")]);
    assert_eq!(chain.complete(&request).await.unwrap().text(), "b");
    assert_eq!(primary.calls(), 3, "three attempts, then the breaker opens");
    assert_eq!(chain.providers()[0].state(), llm::BreakerState::Open);
    for _ in 0..5 {
        assert_eq!(chain.complete(&request).await.unwrap().text(), "b");
    }
    assert_eq!(primary.calls(), 3, "an open breaker sends nothing");

    // After the cool-down one trial call goes through; it fails, so the breaker re-opens.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(chain.providers()[0].state(), llm::BreakerState::HalfOpen);
    chain.complete(&request).await.unwrap();
    assert_eq!(primary.calls(), 4);
    assert_eq!(chain.providers()[0].state(), llm::BreakerState::Open);

    // Recovered: the next trial succeeds and closes it.
    *primary.fallback.lock().unwrap() = Some(ok(completion(
        &json!({"role": "assistant", "content": "a"}),
        "stop",
    )));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(chain.complete(&request).await.unwrap().text(), "a");
    assert_eq!(chain.providers()[0].state(), llm::BreakerState::Closed);
}

#[tokio::test]
async fn an_empty_chain_says_so() {
    let chain = Resilient::new(Vec::new(), policy());
    assert_eq!(
        chain
            .complete(&ChatRequest::new(vec![Message::user("hi")]))
            .await
            .unwrap_err(),
        LlmError::NotConfigured
    );
}

/// Histogram values by name and `provider` label.
#[derive(Default)]
struct Histograms(Arc<Mutex<Vec<(String, String, f64)>>>);

struct Values(Arc<Mutex<Vec<(String, String, f64)>>>, String, String);

impl metrics::HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0
            .lock()
            .unwrap()
            .push((self.1.clone(), self.2.clone(), value));
    }
}

impl Histograms {
    /// The time-to-first-token values recorded so far, with their provider.
    fn ttft(&self) -> Vec<(String, f64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(name, ..)| name == llm::MODEL_TTFT_SECONDS)
            .map(|(_, provider, v)| (provider.clone(), *v))
            .collect()
    }
}

impl metrics::Recorder for Histograms {
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
    fn register_counter(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::noop()
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let provider = key
            .labels()
            .find(|l| l.key() == "provider")
            .map(|l| l.value().to_owned())
            .unwrap_or_default();
        metrics::Histogram::from_arc(Arc::new(Values(
            self.0.clone(),
            key.name().to_owned(),
            provider,
        )))
    }
}

#[tokio::test]
async fn a_stream_records_its_time_to_first_token_at_the_first_delta() {
    let recorder = Histograms::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (fake, url) = fake().await;
    // Each chunk 60 ms after the previous: the role-only first chunk is no token, the
    // second is; three more follow.
    fake.push(Script::Sse(
        vec![
            chunk(&json!({"role": "assistant", "content": ""}), None),
            chunk(&json!({"content": "Hi"}), None),
            chunk(&json!({"content": " there"}), None),
            chunk(&json!({}), Some("stop")),
            "data: [DONE]\n\n".into(),
        ],
        Duration::from_millis(60),
    ));
    let started = std::time::Instant::now();
    let events = collect(&openai(&url)).await;
    let whole = started.elapsed().as_secs_f64();
    assert!(matches!(events.last(), Some(Ok(StreamEvent::Done(_)))));
    let ttft = recorder.ttft();
    assert_eq!(ttft.len(), 1, "one value per call: {ttft:?}");
    let (provider, seconds) = &ttft[0];
    assert_eq!(provider, "openai");
    assert!(*seconds >= 0.12, "not before the first text: {seconds}");
    assert!(
        *seconds < whole - 0.1,
        "not at the end: {seconds} of {whole}"
    );
}

#[tokio::test]
async fn whole_calls_record_the_time_to_their_headers_and_failures_nothing() {
    let recorder = Histograms::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (fake, url) = fake().await;
    let model = openai(&url);
    let request = ChatRequest::new(vec![Message::user("hi")]);

    fake.push(Script::Json(500, vec![], "{}".into()));
    model.complete(&request).await.unwrap_err();
    fake.push(Script::Sse(
        vec!["data: {\"error\":{\"message\":\"overloaded\"}}\n\n".into()],
        Duration::ZERO,
    ));
    assert!(collect(&model).await[0].is_err());
    assert_eq!(recorder.ttft(), vec![], "failed calls record nothing");

    fake.push(ok(completion(
        &json!({"role": "assistant", "content": "ok"}),
        "stop",
    )));
    model.complete(&request).await.unwrap();
    let ttft = recorder.ttft();
    assert_eq!(ttft.len(), 1, "{ttft:?}");
    assert_eq!(ttft[0].0, "openai");
    assert!(ttft[0].1 > 0.0);
}

#[tokio::test]
async fn a_tool_call_counts_from_its_first_fragment_not_its_assembly() {
    let recorder = Histograms::default();
    let _guard = metrics::set_default_local_recorder(&recorder);
    let (fake, url) = fake().await;
    fake.push(Script::Sse(
        vec![
            chunk(&json!({"role": "assistant", "content": null}), None),
            chunk(
                &json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                    "function": {"name": "get_slots", "arguments": ""}}]}),
                None,
            ),
            chunk(
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"date\":"}}]}),
                None,
            ),
            chunk(
                &json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"2026-11-23\"}"}}]}),
                None,
            ),
            chunk(&json!({}), Some("tool_calls")),
            "data: [DONE]\n\n".into(),
        ],
        Duration::from_millis(60),
    ));
    let started = std::time::Instant::now();
    let events = collect(&openai(&url)).await;
    let whole = started.elapsed().as_secs_f64();
    assert!(
        matches!(events[0], Ok(StreamEvent::ToolCall(_))),
        "{events:?}"
    );
    let ttft = recorder.ttft();
    assert_eq!(ttft.len(), 1, "{ttft:?}");
    let seconds = ttft[0].1;
    assert!(seconds >= 0.12, "not before the first fragment: {seconds}");
    assert!(
        seconds < whole - 0.15,
        "at the first fragment, not the assembled call: {seconds} of {whole}"
    );
}
