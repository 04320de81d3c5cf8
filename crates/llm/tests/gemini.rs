//! The Gemini adapter against a local fake server that speaks `generateContent`: JSON
//! answers, `streamGenerateContent?alt=sse` chunks ended by the end of the body, Google error
//! bodies, and errors inside a 200 stream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use futures_util::StreamExt;
use llm::gemini::{GeminiChat, GeminiConfig};
use llm::{
    ChatModel, ChatRequest, HttpSettings, LlmError, Message, Part, Role, StopReason, StreamEvent,
    ToolCall, ToolChoice, ToolSpec, Usage,
};
use serde_json::{Value, json};

const KEY: &str = "AIza-test-key";

/// What the fake answers next.
enum Script {
    Json(u16, Vec<(&'static str, String)>, String),
    /// SSE body pieces, each written separately; the body ends after the last.
    Sse(Vec<String>),
}

/// One request the fake received.
#[derive(Clone, Debug)]
struct Seen {
    model: String,
    method: String,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct Fake {
    script: Mutex<VecDeque<Script>>,
    requests: Mutex<Vec<Seen>>,
}

impl Fake {
    fn push(&self, s: Script) {
        self.script.lock().unwrap().push_back(s);
    }
    fn calls(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
    fn last(&self) -> Seen {
        self.requests.lock().unwrap().last().unwrap().clone()
    }
}

fn google_error(status: u16, code: &str, message: &str) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(
            json!({"error": {"code": status, "message": message, "status": code}}).to_string(),
        ))
        .unwrap()
}

/// `POST /v1beta/models/{model}:{method}`: the router cannot split a segment on `:`, so the
/// whole segment is captured and split here.
async fn handler(
    State(fake): State<Arc<Fake>>,
    Path(segment): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: String,
) -> Response {
    let Some((model, method)) = segment.split_once(':') else {
        return google_error(404, "NOT_FOUND", "no method");
    };
    let streaming = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return google_error(404, "NOT_FOUND", "unknown method"),
    };
    // Without alt=sse the real service answers one JSON array, which is not what we parse.
    if streaming && uri.query() != Some("alt=sse") {
        return google_error(400, "INVALID_ARGUMENT", "expected alt=sse");
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    fake.requests.lock().unwrap().push(Seen {
        model: model.to_owned(),
        method: method.to_owned(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        headers,
        body,
    });
    match fake
        .script
        .lock()
        .unwrap()
        .pop_front()
        .expect("unscripted request")
    {
        Script::Json(status, headers, body) => {
            let mut r = Response::builder().status(StatusCode::from_u16(status).unwrap());
            for (k, v) in headers {
                r = r.header(k, v);
            }
            r.header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
        Script::Sse(pieces) => {
            let stream = futures_util::stream::iter(pieces).then(|p| async move {
                tokio::time::sleep(Duration::from_millis(2)).await;
                Ok::<_, std::convert::Infallible>(p)
            });
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(stream))
                .unwrap()
        }
    }
}

async fn fake() -> (Arc<Fake>, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let fake = Arc::new(Fake::default());
    let app = axum::Router::new()
        .route("/v1beta/models/{segment}", axum::routing::post(handler))
        .with_state(fake.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (fake, url)
}

fn gemini(url: &str) -> GeminiChat {
    GeminiChat::new(GeminiConfig {
        base_url: format!("{url}/"),
        http: HttpSettings {
            connect_timeout: Duration::from_secs(2),
            first_byte_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(2),
            total_timeout: Duration::from_secs(5),
            public_only: false,
        },
        ..GeminiConfig::new(KEY.to_owned().into(), "gemini-2.0-flash")
    })
    .unwrap()
}

fn ok(body: &Value) -> Script {
    Script::Json(200, vec![], body.to_string())
}

/// A whole answer with one candidate.
fn answer(parts: &Value, finish: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": parts},
            "finishReason": finish,
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 42, "candidatesTokenCount": 7, "totalTokenCount": 49,
                          "cachedContentTokenCount": 10},
        "modelVersion": "gemini-2.0-flash-001",
        "responseId": "abc"
    })
}

fn booking_tool() -> ToolSpec {
    ToolSpec {
        name: "get_slots".into(),
        description: "Free slots on a day".into(),
        parameters: json!({"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}),
    }
}

fn tool(name: &str) -> ToolSpec {
    ToolSpec {
        name: name.into(),
        ..booking_tool()
    }
}

fn call(id: &str, date: &str) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: "get_slots".into(),
        arguments: json!({ "date": date }),
    }
}

/// A conversation with a tool round trip in it, and two user messages in a row.
fn request_with_history() -> ChatRequest {
    let mut r = ChatRequest::new(vec![
        Message::user("Any slot Monday?"),
        Message::user("Morning if possible."),
        Message {
            role: Role::Assistant,
            parts: vec![
                Part::Text {
                    text: "Let me check.".into(),
                },
                Part::ToolCall(call("call_0", "2026-11-23")),
            ],
        },
        Message {
            role: Role::User,
            parts: vec![Part::ToolResult {
                call_id: "call_0".into(),
                name: "get_slots".into(),
                content: "[\"10:00\"]".into(),
                is_error: false,
            }],
        },
    ]);
    r.system = Some("You book appointments.".into());
    r.tools = vec![booking_tool()];
    r.max_tokens = 300;
    r.temperature = Some(0.2);
    r
}

#[tokio::test]
async fn completes_and_sends_the_wire_format() {
    let (fake, url) = fake().await;
    fake.push(ok(&answer(
        &json!([
            {"text": "thinking about slots", "thought": true},
            {"text": "10:00 is ", "thoughtSignature": "c2lnbmF0dXJl"},
            {"text": "free."}
        ]),
        "STOP",
    )));
    let model = gemini(&url);
    assert_eq!(model.provider(), "gemini");
    let answer = model.complete(&request_with_history()).await.unwrap();
    assert_eq!(
        answer.parts,
        vec![Part::Text {
            text: "10:00 is free.".into()
        }],
        "thoughts are not the answer; adjacent text is joined"
    );
    assert_eq!(answer.stop, StopReason::EndTurn);
    assert_eq!(answer.model, "gemini-2.0-flash-001");
    assert_eq!(
        answer.usage,
        Usage {
            input_tokens: 42,
            output_tokens: 7,
            cached_input_tokens: 10,
            from_cache: false,
        }
    );

    let seen = fake.last();
    assert_eq!(seen.headers["x-goog-api-key"], KEY);
    assert_eq!(seen.path, "/v1beta/models/gemini-2.0-flash:generateContent");
    assert_eq!(
        (seen.model.as_str(), seen.query),
        ("gemini-2.0-flash", None)
    );
    assert!(!seen.path.contains(KEY));
    assert!(seen.headers.get("authorization").is_none());

    let body = seen.body;
    assert_eq!(
        body["systemInstruction"],
        json!({"parts": [{"text": "You book appointments."}]})
    );
    assert_eq!(
        body["contents"],
        json!([
            {"role": "user", "parts": [{"text": "Any slot Monday?"}, {"text": "Morning if possible."}]},
            {"role": "model", "parts": [
                {"text": "Let me check."},
                {"functionCall": {"name": "get_slots", "args": {"date": "2026-11-23"}}}
            ]},
            {"role": "user", "parts": [
                {"functionResponse": {"name": "get_slots", "response": {"result": ["10:00"]}}}
            ]}
        ])
    );
    assert_eq!(
        body["tools"],
        json!([{"functionDeclarations": [{
            "name": "get_slots",
            "description": "Free slots on a day",
            "parameters": {"type": "object", "properties": {"date": {"type": "string"}}, "required": ["date"]}
        }]}])
    );
    assert_eq!(
        body["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    assert_eq!(
        body["generationConfig"],
        json!({"maxOutputTokens": 300, "temperature": 0.2})
    );
}

#[tokio::test]
async fn function_calls_become_tool_calls() {
    let (fake, url) = fake().await;
    fake.push(ok(&answer(
        &json!([
            {"text": "Checking both days."},
            {"functionCall": {"id": "fc-7d2", "name": "get_slots", "args": {"date": "2026-11-23"}},
             "thoughtSignature": "c2ln"},
            {"functionCall": {"name": "get_slots", "args": {"date": "2026-11-24"}}},
            {"functionCall": {"name": "list_rooms"}}
        ]),
        "STOP",
    )));
    fake.push(ok(&answer(
        &json!([{"functionCall": {"name": "get_slots", "args": "2026-11-23"}}]),
        "STOP",
    )));
    let model = gemini(&url);
    let request = ChatRequest::new(vec![Message::user("Monday or Tuesday?")]);
    let answer = model.complete(&request).await.unwrap();
    assert_eq!(answer.stop, StopReason::ToolUse);
    assert_eq!(answer.text(), "Checking both days.");
    assert_eq!(
        answer.tool_calls(),
        vec![
            &call("fc-7d2", "2026-11-23"),
            &call("call_1", "2026-11-24"),
            &ToolCall {
                id: "call_2".into(),
                name: "list_rooms".into(),
                arguments: json!({}),
            }
        ],
        "the provider's id is kept, others are numbered by position"
    );
    // Arguments that are not an object.
    assert!(matches!(
        model.complete(&request).await,
        Err(LlmError::Malformed(_))
    ));
}

#[tokio::test]
async fn tool_choice_and_results_map_to_gemini_fields() {
    let (fake, url) = fake().await;
    let model = gemini(&url);
    let reply = || ok(&answer(&json!([{"text": "ok"}]), "STOP"));

    // No tools: neither tools nor toolConfig, and no system instruction when there is none.
    fake.push(reply());
    let mut request = ChatRequest::new(vec![Message::user("hi")]);
    request.tool_choice = ToolChoice::Required;
    model.complete(&request).await.unwrap();
    let body = fake.last().body;
    assert!(body.get("tools").is_none());
    assert!(body.get("toolConfig").is_none());
    assert!(body.get("systemInstruction").is_none());
    assert_eq!(body["generationConfig"], json!({"maxOutputTokens": 1024}));

    let mut request = request_with_history();
    for (choice, expected) in [
        (ToolChoice::Required, json!({"mode": "ANY"})),
        (ToolChoice::None, json!({"mode": "NONE"})),
        (
            ToolChoice::Tool("get_slots".into()),
            json!({"mode": "ANY", "allowedFunctionNames": ["get_slots"]}),
        ),
    ] {
        fake.push(reply());
        request.tool_choice = choice;
        model.complete(&request).await.unwrap();
        assert_eq!(
            fake.last().body["toolConfig"]["functionCallingConfig"],
            expected
        );
    }

    // A failed call, a plain-text result, a tool without arguments, another model by name.
    let mut request = ChatRequest::new(vec![
        Message {
            role: Role::Assistant,
            parts: vec![
                Part::ToolCall(call("a", "2026-11-23")),
                Part::ToolCall(call("b", "2026-11-24")),
            ],
        },
        Message {
            role: Role::User,
            parts: vec![
                Part::ToolResult {
                    call_id: "a".into(),
                    name: "get_slots".into(),
                    content: "calendar unreachable".into(),
                    is_error: true,
                },
                Part::ToolResult {
                    call_id: "b".into(),
                    name: "get_slots".into(),
                    content: "10:00 and 14:00".into(),
                    is_error: false,
                },
            ],
        },
    ]);
    request.model = "models/gemini-2.5-pro".into();
    request.tools = vec![ToolSpec {
        name: "now".into(),
        description: "The current time".into(),
        parameters: json!({"type": "object", "properties": {}}),
    }];
    fake.push(reply());
    model.complete(&request).await.unwrap();
    let seen = fake.last();
    assert_eq!(seen.model, "gemini-2.5-pro");
    assert_eq!(
        seen.body["contents"][1],
        json!({"role": "user", "parts": [
            {"functionResponse": {"name": "get_slots", "response": {"error": "calendar unreachable"}}},
            {"functionResponse": {"name": "get_slots", "response": {"result": "10:00 and 14:00"}}}
        ]})
    );
    assert_eq!(
        seen.body["tools"][0]["functionDeclarations"][0],
        json!({"name": "now", "description": "The current time"}),
        "Gemini refuses an object schema with no properties"
    );
}

#[tokio::test]
async fn finish_reasons_map_to_stop_reasons() {
    let (fake, url) = fake().await;
    let model = gemini(&url);
    let request = ChatRequest::new(vec![Message::user("hi")]);

    fake.push(ok(&answer(
        &json!([{"text": "It was a dark and"}]),
        "MAX_TOKENS",
    )));
    let a = model.complete(&request).await.unwrap();
    assert_eq!(a.stop, StopReason::MaxTokens);
    assert_eq!(a.text(), "It was a dark and");

    for reason in [
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
    ] {
        // A filtered candidate usually comes without content.
        fake.push(ok(&json!({
            "candidates": [{"finishReason": reason, "index": 0}],
            "usageMetadata": {"promptTokenCount": 5, "totalTokenCount": 5}
        })));
        let a = model.complete(&request).await.unwrap();
        assert_eq!(a.stop, StopReason::ContentFilter, "{reason}");
        assert!(a.parts.is_empty());
        assert_eq!(a.usage.input_tokens, 5);
        assert_eq!(
            a.model, "gemini-2.0-flash",
            "the requested model without modelVersion"
        );
    }

    fake.push(ok(&answer(&json!([{"text": "Hm"}]), "LANGUAGE")));
    assert_eq!(
        model.complete(&request).await.unwrap().stop,
        StopReason::Other("LANGUAGE".into())
    );

    // The prompt itself blocked: no candidates at all.
    fake.push(ok(&json!({
        "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": []},
        "usageMetadata": {"promptTokenCount": 9, "totalTokenCount": 9},
        "modelVersion": "gemini-2.0-flash-001"
    })));
    let a = model.complete(&request).await.unwrap();
    assert_eq!(a.stop, StopReason::ContentFilter);
    assert!(a.parts.is_empty());
    assert_eq!(a.usage.input_tokens, 9);

    fake.push(ok(&json!({
        "candidates": [{"content": {"role": "model", "parts": []}, "finishReason": "MALFORMED_FUNCTION_CALL",
                        "finishMessage": "Malformed function call: print(get_slots(date=))"}]
    })));
    match model.complete(&request).await {
        Err(LlmError::Malformed(m)) => assert!(m.contains("print(get_slots"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn http_errors_map_to_stable_kinds() {
    let (fake, url) = fake().await;
    let err = |status: u16, code: &str, headers: Vec<(&'static str, String)>| {
        Script::Json(
            status,
            headers,
            json!({"error": {"code": status, "message": "nope", "status": code}}).to_string(),
        )
    };
    fake.push(err(
        429,
        "RESOURCE_EXHAUSTED",
        vec![("retry-after", "2".into())],
    ));
    fake.push(err(503, "UNAVAILABLE", vec![]));
    fake.push(err(403, "PERMISSION_DENIED", vec![]));
    fake.push(err(400, "INVALID_ARGUMENT", vec![]));
    fake.push(Script::Json(200, vec![], "{\"candidates\": [".into()));
    let model = gemini(&url);
    let r = ChatRequest::new(vec![Message::user("hi")]);
    assert_eq!(
        model.complete(&r).await.unwrap_err(),
        LlmError::RateLimited {
            retry_after: Some(Duration::from_secs(2))
        }
    );
    assert!(matches!(
        model.complete(&r).await,
        Err(LlmError::Server { status: 503, .. })
    ));
    assert!(matches!(model.complete(&r).await, Err(LlmError::Auth(_))));
    assert_eq!(
        model.complete(&r).await.unwrap_err(),
        LlmError::BadRequest {
            status: 400,
            message: "nope".into()
        }
    );
    assert!(matches!(
        model.complete(&r).await,
        Err(LlmError::Malformed(_))
    ));
    assert_eq!(fake.calls(), 5);

    // Errors before the first streamed byte come straight from `stream`.
    fake.push(err(429, "RESOURCE_EXHAUSTED", vec![]));
    assert!(matches!(
        model.stream(&r).await.err(),
        Some(LlmError::RateLimited { retry_after: None })
    ));
}

#[tokio::test]
async fn more_than_128_tools_are_refused_before_sending() {
    let (fake, url) = fake().await;
    let model = gemini(&url);
    let mut request = ChatRequest::new(vec![Message::user("hi")]);
    request.tools = (0..129).map(|i| tool(&format!("tool_{i}"))).collect();
    assert!(matches!(
        model.complete(&request).await,
        Err(LlmError::BadRequest { status: 400, .. })
    ));
    assert!(matches!(
        model.stream(&request).await.err(),
        Some(LlmError::BadRequest { status: 400, .. })
    ));
    assert_eq!(fake.calls(), 0, "nothing was sent");

    request.tools.truncate(128);
    fake.push(ok(&answer(&json!([{"text": "ok"}]), "STOP")));
    model.complete(&request).await.unwrap();
    let declarations = &fake.last().body["tools"][0]["functionDeclarations"];
    assert_eq!(declarations.as_array().unwrap().len(), 128);
}

/// One SSE event carrying a response chunk, as Gemini frames them.
fn sse(chunk: &Value) -> String {
    format!("data: {chunk}\r\n\r\n")
}

fn text_chunk(text: &str) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}],
        "usageMetadata": {"promptTokenCount": 30, "totalTokenCount": 30},
        "modelVersion": "gemini-2.0-flash-001"
    })
}

async fn collect(model: &GeminiChat) -> Vec<Result<StreamEvent, LlmError>> {
    let stream = model
        .stream(&ChatRequest::new(vec![Message::user("hi")]))
        .await
        .unwrap();
    stream.collect().await
}

#[tokio::test]
async fn streams_text_and_function_calls() {
    let (fake, url) = fake().await;
    let split = sse(&text_chunk("check "));
    let (head, tail) = split.split_at(25);
    fake.push(Script::Sse(vec![
        sse(&text_chunk("Let me ")),
        // One event split in the middle of its line.
        head.to_owned(),
        tail.to_owned(),
        sse(&json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "Monday."},
                {"functionCall": {"name": "get_slots", "args": {"date": "2026-11-23"}},
                 "thoughtSignature": "c2ln"}
            ]}, "index": 0}],
            "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 8, "totalTokenCount": 38},
            "modelVersion": "gemini-2.0-flash-001"
        })),
        sse(&json!({
            "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                            "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 12, "totalTokenCount": 42,
                              "cachedContentTokenCount": 16},
            "modelVersion": "gemini-2.0-flash-001"
        })),
    ]));
    let model = gemini(&url);
    let mut request = request_with_history();
    request.model = "gemini-2.5-flash".into();
    let mut stream = model.stream(&request).await.unwrap();
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e.unwrap());
    }

    let seen = fake.last();
    assert_eq!(
        seen.path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(seen.method, "streamGenerateContent");
    assert_eq!(seen.query.as_deref(), Some("alt=sse"));
    assert_eq!(seen.headers["x-goog-api-key"], KEY);
    assert_eq!(seen.body["contents"][1]["role"], "model");
    assert_eq!(seen.body["generationConfig"]["maxOutputTokens"], 300);

    let call = call("call_0", "2026-11-23");
    assert_eq!(
        events[..4],
        [
            StreamEvent::TextDelta("Let me ".into()),
            StreamEvent::TextDelta("check ".into()),
            StreamEvent::TextDelta("Monday.".into()),
            StreamEvent::ToolCall(call.clone()),
        ]
    );
    let StreamEvent::Done(done) = &events[4] else {
        panic!("{events:?}")
    };
    assert_eq!(events.len(), 5);
    assert_eq!(
        done.parts,
        vec![
            Part::Text {
                text: "Let me check Monday.".into()
            },
            Part::ToolCall(call)
        ]
    );
    assert_eq!(done.stop, StopReason::ToolUse);
    assert_eq!(done.model, "gemini-2.0-flash-001");
    assert_eq!(
        done.usage,
        Usage {
            input_tokens: 30,
            output_tokens: 12,
            cached_input_tokens: 16,
            from_cache: false,
        },
        "the last usage wins"
    );
}

#[tokio::test]
async fn errors_inside_a_200_stream_reach_the_caller() {
    let (fake, url) = fake().await;
    let model = gemini(&url);
    let error = |status: &str, code: u16| {
        sse(
            &json!({"error": {"code": code, "message": "The model is overloaded.", "status": status}}),
        )
    };

    fake.push(Script::Sse(vec![
        sse(&text_chunk("Hel")),
        error("UNAVAILABLE", 503),
        sse(&text_chunk("lo")),
    ]));
    let events = collect(&model).await;
    assert_eq!(
        events,
        vec![
            Ok(StreamEvent::TextDelta("Hel".into())),
            Err(LlmError::Overloaded { retry_after: None })
        ],
        "nothing after an error"
    );

    fake.push(Script::Sse(vec![error("RESOURCE_EXHAUSTED", 429)]));
    assert_eq!(
        collect(&model).await,
        vec![Err(LlmError::RateLimited { retry_after: None })]
    );

    fake.push(Script::Sse(vec![error("INTERNAL", 500)]));
    assert_eq!(
        collect(&model).await,
        vec![Err(LlmError::Stream("The model is overloaded.".into()))]
    );

    // Garbage instead of JSON.
    fake.push(Script::Sse(vec!["data: {nope\r\n\r\n".into()]));
    let events = collect(&model).await;
    assert!(
        matches!(events.last(), Some(Err(LlmError::Malformed(_)))),
        "{events:?}"
    );

    // A malformed function call ends the stream with an error.
    fake.push(Script::Sse(vec![sse(&json!({
        "candidates": [{"finishReason": "MALFORMED_FUNCTION_CALL", "index": 0}]
    }))]));
    let events = collect(&model).await;
    assert!(
        matches!(events.last(), Some(Err(LlmError::Malformed(_)))),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_stream_cut_before_its_finish_reason_is_an_error() {
    let (fake, url) = fake().await;
    let model = gemini(&url);
    fake.push(Script::Sse(vec![
        sse(&text_chunk("Hel")),
        sse(&text_chunk("lo")),
    ]));
    let events = collect(&model).await;
    assert_eq!(events.len(), 3, "{events:?}");
    assert_eq!(events[1], Ok(StreamEvent::TextDelta("lo".into())));
    assert!(matches!(events[2], Err(LlmError::Stream(_))), "{events:?}");
}

#[tokio::test]
async fn filtered_streams_finish_with_content_filter() {
    let (fake, url) = fake().await;
    let model = gemini(&url);

    // The answer stopped by the safety filter half way.
    fake.push(Script::Sse(vec![
        sse(&text_chunk("Sure, here")),
        sse(&json!({"candidates": [{"finishReason": "SAFETY", "index": 0}]})),
    ]));
    let events = collect(&model).await;
    let Some(Ok(StreamEvent::Done(done))) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(done.stop, StopReason::ContentFilter);
    assert_eq!(done.text(), "Sure, here");

    // The prompt blocked: one chunk, no candidates, no finish reason.
    fake.push(Script::Sse(vec![sse(&json!({
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT"},
        "usageMetadata": {"promptTokenCount": 11, "totalTokenCount": 11}
    }))]));
    let events = collect(&model).await;
    assert_eq!(events.len(), 1, "{events:?}");
    let Ok(StreamEvent::Done(done)) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(done.stop, StopReason::ContentFilter);
    assert!(done.parts.is_empty());
    assert_eq!(done.usage.input_tokens, 11);
}
