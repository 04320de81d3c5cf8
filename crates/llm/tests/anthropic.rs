#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Anthropic adapter against a local fake of the Messages API: what it sends (headers,
//! content blocks, alternating roles, tools) and how it reads whole answers, SSE streams and
//! errors.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Response};
use axum::routing::post;
use futures_util::StreamExt;
use llm::anthropic::{AnthropicChat, AnthropicConfig};
use llm::{
    ChatModel, ChatRequest, ChatResponse, LlmError, Message, Part, Role, StopReason, StreamEvent,
    ToolCall, ToolChoice, ToolSpec, Usage,
};
use secrecy::SecretString;
use serde_json::{Value, json};

// --- the fake server -----------------------------------------------------------------------

/// One scripted answer.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    /// Sent as separate body chunks.
    chunks: Vec<Vec<u8>>,
}

impl Reply {
    fn json(body: &Value) -> Self {
        Self::raw(200, &body.to_string())
    }

    fn raw(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            chunks: vec![body.as_bytes().to_vec()],
        }
    }

    fn error(status: u16, kind: &str, message: &str) -> Self {
        Self::raw(
            status,
            &json!({"type": "error", "error": {"type": kind, "message": message}}).to_string(),
        )
    }

    /// Named SSE events, cut into small chunks that split lines anywhere.
    fn sse(events: &[Value]) -> Self {
        let text: String = events
            .iter()
            .map(|event| {
                let name = event["type"].as_str().expect("an event type");
                format!("event: {name}\ndata: {event}\n\n")
            })
            .collect();
        Self {
            status: 200,
            headers: vec![("content-type", "text/event-stream".into())],
            chunks: text.as_bytes().chunks(7).map(<[u8]>::to_vec).collect(),
        }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

struct Recorded {
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<Recorded>>,
}

struct Fake {
    base_url: String,
    shared: Arc<Shared>,
}

impl Fake {
    async fn start(replies: Vec<Reply>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let shared = Arc::new(Shared {
            replies: Mutex::new(replies.into()),
            requests: Mutex::default(),
        });
        let router = Router::new()
            .route("/v1/messages", post(messages))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            base_url: format!("http://{addr}"),
            shared,
        }
    }

    fn chat(&self) -> AnthropicChat {
        let mut config = AnthropicConfig::new(SecretString::from("sk-ant-test"), "claude-test");
        config.base_url = format!("{}/", self.base_url);
        config.http.total_timeout = Duration::from_secs(10);
        AnthropicChat::new(config).unwrap()
    }

    /// The bodies of the requests received so far.
    fn bodies(&self) -> Vec<Value> {
        let requests = self.shared.requests.lock().unwrap();
        requests.iter().map(|r| r.body.clone()).collect()
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let body = serde_json::from_slice(&body).expect("a JSON request body");
    shared
        .requests
        .lock()
        .unwrap()
        .push(Recorded { headers, body });
    let reply = shared
        .replies
        .lock()
        .unwrap()
        .pop_front()
        .expect("a scripted reply");
    let mut response = Response::builder().status(reply.status);
    for (name, value) in reply.headers {
        response = response.header(name, value);
    }
    let chunks = futures_util::stream::iter(reply.chunks.into_iter().map(Ok::<_, Infallible>));
    response.body(Body::from_stream(chunks)).unwrap()
}

// --- helpers -------------------------------------------------------------------------------

fn message(model: &str, content: &Value, stop_reason: &str, usage: &Value) -> Value {
    json!({
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

fn text_answer(text: &str) -> Reply {
    Reply::json(&message(
        "claude-test",
        &json!([{"type": "text", "text": text}]),
        "end_turn",
        &json!({"input_tokens": 10, "output_tokens": 2}),
    ))
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "weather".into(),
        description: "Current weather in a city".into(),
        parameters: json!({
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        }),
    }
}

fn call(id: &str, city: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "weather".into(),
        arguments: json!({"city": city}),
    }
}

fn message_start(usage: &Value) -> Value {
    json!({"type": "message_start", "message": {
        "id": "msg_02", "type": "message", "role": "assistant", "model": "claude-stream",
        "content": [], "stop_reason": null, "stop_sequence": null, "usage": usage}})
}

fn block_start(index: u64, block: &Value) -> Value {
    json!({"type": "content_block_start", "index": index, "content_block": block})
}

fn text_delta(index: u64, text: &str) -> Value {
    json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "text_delta", "text": text}})
}

fn json_delta(index: u64, partial: &str) -> Value {
    json!({"type": "content_block_delta", "index": index,
        "delta": {"type": "input_json_delta", "partial_json": partial}})
}

fn block_stop(index: u64) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_delta(stop_reason: &str, output_tokens: u64) -> Value {
    json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": {"output_tokens": output_tokens}})
}

fn ping() -> Value {
    json!({"type": "ping"})
}

fn message_stop() -> Value {
    json!({"type": "message_stop"})
}

async fn stream_all(
    chat: &AnthropicChat,
    request: &ChatRequest,
) -> Vec<Result<StreamEvent, LlmError>> {
    chat.stream(request).await.unwrap().collect().await
}

// --- whole answers -------------------------------------------------------------------------

#[tokio::test]
async fn complete_sends_the_anthropic_wire_format() {
    let fake = Fake::start(vec![text_answer("Paris 18C, Lyon unknown.")]).await;
    let mut request = ChatRequest::new(vec![
        Message::user("Weather in Paris?"),
        Message::user("And Lyon?"),
        Message {
            role: Role::Assistant,
            parts: vec![
                Part::Text {
                    text: "Checking.".into(),
                },
                Part::ToolCall(call("toolu_01", "Paris")),
            ],
        },
        Message {
            role: Role::Assistant,
            parts: vec![Part::ToolCall(call("toolu_02", "Lyon"))],
        },
        Message {
            role: Role::User,
            parts: vec![Part::ToolResult {
                call_id: "toolu_01".into(),
                name: "weather".into(),
                content: "18C".into(),
                is_error: false,
            }],
        },
        Message {
            role: Role::User,
            parts: vec![
                Part::Text {
                    text: "Be brief.".into(),
                },
                Part::ToolResult {
                    call_id: "toolu_02".into(),
                    name: "weather".into(),
                    content: "no station".into(),
                    is_error: true,
                },
            ],
        },
    ]);
    request.system = Some("You are terse.".into());
    request.tools = vec![weather_tool()];
    request.max_tokens = 300;
    request.temperature = Some(0.5);

    let response = fake.chat().complete(&request).await.unwrap();
    assert_eq!(response.text(), "Paris 18C, Lyon unknown.");
    assert_eq!(response.stop, StopReason::EndTurn);
    assert_eq!(response.model, "claude-test");

    let requests = fake.shared.requests.lock().unwrap();
    assert_eq!(requests.len(), 1);
    let headers = &requests[0].headers;
    assert_eq!(headers["x-api-key"], "sk-ant-test");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(headers["content-type"], "application/json");
    assert!(headers.get("authorization").is_none());
    assert_eq!(
        requests[0].body,
        json!({
            "model": "claude-test",
            "max_tokens": 300,
            "temperature": 0.5,
            "system": "You are terse.",
            "tools": [{
                "name": "weather",
                "description": "Current weather in a city",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }],
            "tool_choice": {"type": "auto"},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "Weather in Paris?"},
                    {"type": "text", "text": "And Lyon?"},
                ]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_01", "name": "weather",
                        "input": {"city": "Paris"}},
                    {"type": "tool_use", "id": "toolu_02", "name": "weather",
                        "input": {"city": "Lyon"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18C",
                        "is_error": false},
                    {"type": "tool_result", "tool_use_id": "toolu_02", "content": "no station",
                        "is_error": true},
                    {"type": "text", "text": "Be brief."},
                ]},
            ],
        })
    );
}

#[tokio::test]
async fn tool_choice_and_model_are_sent_as_anthropic_expects() {
    let choices = [
        (ToolChoice::Auto, json!({"type": "auto"})),
        (ToolChoice::None, json!({"type": "none"})),
        (ToolChoice::Required, json!({"type": "any"})),
        (
            ToolChoice::Tool("weather".into()),
            json!({"type": "tool", "name": "weather"}),
        ),
    ];
    let fake = Fake::start((0..=choices.len()).map(|_| text_answer("ok")).collect()).await;
    let chat = fake.chat();
    for (choice, _) in &choices {
        let mut request = ChatRequest::new(vec![Message::user("hi")]);
        request.tools = vec![weather_tool()];
        request.tool_choice = choice.clone();
        request.model = "claude-other".into();
        chat.complete(&request).await.unwrap();
    }
    // Without tools, neither tools nor tool_choice is sent, whatever the choice.
    let mut request = ChatRequest::new(vec![Message::user("hi")]);
    request.tool_choice = ToolChoice::Required;
    chat.complete(&request).await.unwrap();

    let bodies = fake.bodies();
    for ((_, expected), body) in choices.iter().zip(&bodies) {
        assert_eq!(&body["tool_choice"], expected);
        assert_eq!(body["model"], "claude-other");
        assert!(body.get("stream").is_none());
    }
    let last = bodies.last().unwrap();
    assert!(last.get("tools").is_none());
    assert!(last.get("tool_choice").is_none());
    assert!(last.get("system").is_none());
    assert!(last.get("temperature").is_none());
    assert_eq!(last["model"], "claude-test");
    assert_eq!(last["max_tokens"], 1024);
}

#[tokio::test]
async fn tool_use_blocks_become_tool_calls() {
    let fake = Fake::start(vec![Reply::json(&message(
        "claude-test",
        &json!([
            {"type": "thinking", "thinking": "The user wants weather.", "signature": "sig"},
            {"type": "text", "text": "Let me look."},
            {"type": "tool_use", "id": "toolu_01A", "name": "weather",
                "input": {"city": "Paris", "days": 2}},
            {"type": "tool_use", "id": "toolu_01B", "name": "clock", "input": {}},
        ]),
        "tool_use",
        &json!({"input_tokens": 50, "output_tokens": 30}),
    ))])
    .await;
    let response = fake
        .chat()
        .complete(&ChatRequest::new(vec![Message::user("weather?")]))
        .await
        .unwrap();
    assert_eq!(
        response,
        ChatResponse {
            model: "claude-test".into(),
            parts: vec![
                Part::Text {
                    text: "Let me look.".into()
                },
                Part::ToolCall(ToolCall {
                    id: "toolu_01A".into(),
                    name: "weather".into(),
                    arguments: json!({"city": "Paris", "days": 2}),
                }),
                Part::ToolCall(ToolCall {
                    id: "toolu_01B".into(),
                    name: "clock".into(),
                    arguments: json!({}),
                }),
            ],
            stop: StopReason::ToolUse,
            usage: Usage {
                input_tokens: 50,
                output_tokens: 30,
                cached_input_tokens: 0,
                from_cache: false,
            },
        }
    );
}

#[tokio::test]
async fn usage_counts_cache_writes_and_reads_as_input() {
    let content = json!([{"type": "text", "text": "ok"}]);
    let fake = Fake::start(vec![
        Reply::json(&message(
            "m",
            &content,
            "end_turn",
            &json!({"input_tokens": 100, "output_tokens": 20,
                "cache_creation_input_tokens": 30, "cache_read_input_tokens": 50}),
        )),
        Reply::json(&message(
            "m",
            &content,
            "end_turn",
            &json!({"input_tokens": 7, "output_tokens": 3,
                "cache_creation_input_tokens": null, "cache_read_input_tokens": null}),
        )),
        Reply::json(&message("m", &content, "end_turn", &Value::Null)),
    ])
    .await;
    let chat = fake.chat();
    let request = ChatRequest::new(vec![Message::user("hi")]);
    let usages = [
        chat.complete(&request).await.unwrap().usage,
        chat.complete(&request).await.unwrap().usage,
        chat.complete(&request).await.unwrap().usage,
    ];
    assert_eq!(
        usages,
        [
            Usage {
                input_tokens: 180,
                output_tokens: 20,
                cached_input_tokens: 50,
                from_cache: false,
            },
            Usage {
                input_tokens: 7,
                output_tokens: 3,
                cached_input_tokens: 0,
                from_cache: false,
            },
            Usage::default(),
        ]
    );
}

#[tokio::test]
async fn stop_reasons_are_mapped() {
    let cases = [
        ("end_turn", StopReason::EndTurn),
        ("stop_sequence", StopReason::EndTurn),
        ("tool_use", StopReason::ToolUse),
        ("max_tokens", StopReason::MaxTokens),
        ("model_context_window_exceeded", StopReason::MaxTokens),
        ("refusal", StopReason::ContentFilter),
        ("pause_turn", StopReason::Other("pause_turn".into())),
    ];
    let content = json!([{"type": "text", "text": "x"}]);
    let usage = json!({"input_tokens": 1, "output_tokens": 1});
    let fake = Fake::start(
        cases
            .iter()
            .map(|(reason, _)| Reply::json(&message("m", &content, reason, &usage)))
            .collect(),
    )
    .await;
    let chat = fake.chat();
    for (reason, expected) in cases {
        let response = chat
            .complete(&ChatRequest::new(vec![Message::user("hi")]))
            .await
            .unwrap();
        assert_eq!(response.stop, expected, "{reason}");
    }
}

// --- streams -------------------------------------------------------------------------------

#[tokio::test]
async fn streams_text_and_a_tool_call_sent_in_fragments() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 25, "output_tokens": 1,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": 10})),
        block_start(0, &json!({"type": "thinking", "thinking": ""})),
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Weather, then."}}),
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "signature_delta", "signature": "EqQBCgIYAhIM"}}),
        block_stop(0),
        block_start(1, &json!({"type": "text", "text": ""})),
        ping(),
        text_delta(1, "Checking"),
        text_delta(1, " the weather \u{2600}"),
        block_stop(1),
        block_start(
            2,
            &json!({"type": "tool_use", "id": "toolu_9", "name": "weather", "input": {}}),
        ),
        json_delta(2, ""),
        json_delta(2, "{\"city\": \"Pa"),
        json_delta(2, "ris\", \"da"),
        json_delta(2, "ys\": 3}"),
        block_stop(2),
        message_delta("tool_use", 42),
        message_stop(),
    ])])
    .await;
    let mut request = ChatRequest::new(vec![Message::user("weather?")]);
    request.tools = vec![weather_tool()];
    let events = stream_all(&fake.chat(), &request).await;

    let call = ToolCall {
        id: "toolu_9".into(),
        name: "weather".into(),
        arguments: json!({"city": "Paris", "days": 3}),
    };
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::TextDelta("Checking".into())),
            Ok(StreamEvent::TextDelta(" the weather \u{2600}".into())),
            Ok(StreamEvent::ToolCall(call.clone())),
            Ok(StreamEvent::Done(ChatResponse {
                model: "claude-stream".into(),
                parts: vec![
                    Part::Text {
                        text: "Checking the weather \u{2600}".into()
                    },
                    Part::ToolCall(call),
                ],
                stop: StopReason::ToolUse,
                usage: Usage {
                    input_tokens: 35,
                    output_tokens: 42,
                    cached_input_tokens: 10,
                    from_cache: false,
                },
            })),
        ]
    );
    let body = &fake.bodies()[0];
    assert_eq!(body["stream"], true);
    assert_eq!(body["tools"][0]["name"], "weather");
}

#[tokio::test]
async fn an_overloaded_error_event_after_a_200_is_overloaded() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 5, "output_tokens": 1})),
        block_start(0, &json!({"type": "text", "text": ""})),
        text_delta(0, "Hel"),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ])])
    .await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::TextDelta("Hel".into())),
            Err(LlmError::Overloaded { retry_after: None }),
        ]
    );
}

#[tokio::test]
async fn other_error_events_are_stream_errors() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 5})),
        ping(),
        json!({"type": "error", "error": {"type": "api_error", "message": "Internal server error"}}),
    ])])
    .await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert_eq!(
        events,
        vec![Err(LlmError::Stream("Internal server error".into()))]
    );
}

#[tokio::test]
async fn a_rate_limit_error_event_is_rate_limited() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 5})),
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}}),
    ])])
    .await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert_eq!(
        events,
        vec![Err(LlmError::RateLimited { retry_after: None })]
    );
}

#[tokio::test]
async fn a_stream_cut_before_message_stop_is_an_error() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 5})),
        block_start(0, &json!({"type": "text", "text": ""})),
        text_delta(0, "Half an ans"),
        block_stop(0),
        message_delta("end_turn", 4),
    ])])
    .await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0], Ok(StreamEvent::TextDelta("Half an ans".into())));
    let error = events[1].clone().unwrap_err();
    assert!(matches!(error, LlmError::Stream(_)), "{error:?}");
    assert!(error.is_retryable());
}

#[tokio::test]
async fn invalid_tool_input_in_a_stream_is_malformed() {
    let fake = Fake::start(vec![Reply::sse(&[
        message_start(&json!({"input_tokens": 5})),
        block_start(
            0,
            &json!({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
        ),
        json_delta(0, "{\"city\": "),
        json_delta(0, "Par"),
        block_stop(0),
        message_delta("tool_use", 9),
        message_stop(),
    ])])
    .await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        matches!(&events[0], Err(LlmError::Malformed(m)) if m.contains("weather")),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_stream_with_invalid_json_data_is_malformed() {
    let mut reply = Reply::sse(&[message_start(&json!({"input_tokens": 5}))]);
    reply
        .chunks
        .push(b"event: content_block_delta\ndata: {\"index\": 0, \"delta\n\n".to_vec());
    let fake = Fake::start(vec![reply]).await;
    let events = stream_all(&fake.chat(), &ChatRequest::new(vec![Message::user("hi")])).await;
    assert!(
        matches!(events.as_slice(), [Err(LlmError::Malformed(_))]),
        "{events:?}"
    );
}

// --- HTTP errors ---------------------------------------------------------------------------

#[tokio::test]
async fn rate_limited_with_retry_after() {
    let reply = || {
        Reply::error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
        )
        .header("retry-after", "2")
    };
    let fake = Fake::start(vec![reply(), reply()]).await;
    let chat = fake.chat();
    let request = ChatRequest::new(vec![Message::user("hi")]);
    let expected = LlmError::RateLimited {
        retry_after: Some(Duration::from_secs(2)),
    };
    assert_eq!(chat.complete(&request).await.unwrap_err(), expected);
    // A stream refused before its first byte fails the call itself.
    assert_eq!(chat.stream(&request).await.err(), Some(expected));
}

#[tokio::test]
async fn status_529_is_overloaded() {
    let fake = Fake::start(vec![Reply::error(529, "overloaded_error", "Overloaded")]).await;
    let error = fake
        .chat()
        .complete(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error, LlmError::Overloaded { retry_after: None });
    assert!(error.is_retryable());
}

#[tokio::test]
async fn status_401_is_an_auth_error() {
    let fake = Fake::start(vec![Reply::error(
        401,
        "authentication_error",
        "invalid x-api-key",
    )])
    .await;
    let error = fake
        .chat()
        .complete(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert_eq!(error, LlmError::Auth("invalid x-api-key".into()));
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn other_statuses_carry_the_error_message() {
    let fake = Fake::start(vec![
        Reply::error(
            400,
            "invalid_request_error",
            "messages: roles must alternate between \"user\" and \"assistant\"",
        ),
        Reply::error(500, "api_error", "Internal server error"),
    ])
    .await;
    let chat = fake.chat();
    let request = ChatRequest::new(vec![Message::user("hi")]);
    assert_eq!(
        chat.complete(&request).await.unwrap_err(),
        LlmError::BadRequest {
            status: 400,
            message: "messages: roles must alternate between \"user\" and \"assistant\"".into(),
        }
    );
    assert_eq!(
        chat.complete(&request).await.unwrap_err(),
        LlmError::Server {
            status: 500,
            message: "Internal server error".into(),
        }
    );
}

#[tokio::test]
async fn a_malformed_json_body_is_malformed() {
    let fake = Fake::start(vec![Reply::raw(
        200,
        "{\"id\": \"msg_01\", \"type\": \"message\", \"content\": [",
    )])
    .await;
    let error = fake
        .chat()
        .complete(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap_err();
    assert!(matches!(error, LlmError::Malformed(_)), "{error:?}");
}
