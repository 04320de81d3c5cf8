//! Google Gemini `generateContent`: `POST {base}/v1beta/models/{model}:generateContent`, the
//! key in an `x-goog-api-key` header (never in the URL), `user` and `model` turns whose parts
//! are text, `functionCall` (arguments as a JSON object) or `functionResponse` (matched by
//! name). Streaming uses `:streamGenerateContent?alt=sse`: every `data:` line is a whole
//! response chunk, and the end of the body ends the stream (there is no sentinel).

use async_trait::async_trait;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{self, Decoder, FirstToken, HttpSettings};
use crate::sse::SseEvent;
use crate::{
    ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, Message, Part, Role, StopReason,
    StreamEvent, ToolCall, ToolChoice, ToolSpec, Usage,
};

/// Gemini refuses requests declaring more functions than this.
const MAX_FUNCTION_DECLARATIONS: usize = 128;

#[derive(Clone, Debug)]
pub struct GeminiConfig {
    /// The provider's label in metrics and logs.
    pub name: String,
    /// Without the API version (`https://generativelanguage.googleapis.com`).
    pub base_url: String,
    pub api_key: SecretString,
    /// Used when a request names no model (`gemini-2.0-flash`).
    pub default_model: String,
    pub http: HttpSettings,
}

impl GeminiConfig {
    /// Google's Generative Language API.
    #[must_use]
    pub fn new(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            name: "gemini".into(),
            base_url: "https://generativelanguage.googleapis.com".into(),
            api_key,
            default_model: model.into(),
            http: HttpSettings::default(),
        }
    }
}

pub struct GeminiChat {
    config: GeminiConfig,
    client: reqwest::Client,
    /// `{base}/v1beta/models/`.
    models_url: String,
    /// The key as a header value, marked sensitive so it never shows in debug output.
    key: HeaderValue,
}

impl GeminiChat {
    /// # Errors
    /// The HTTP client cannot be built (no TLS provider installed), or the key cannot travel
    /// in a header.
    pub fn new(config: GeminiConfig) -> Result<Self, LlmError> {
        let client = http::client(&config.http)?;
        let mut key = HeaderValue::from_str(config.api_key.expose_secret())
            .map_err(|_| LlmError::Auth("the Gemini API key is not a valid header value".into()))?;
        key.set_sensitive(true);
        let models_url = format!("{}/v1beta/models/", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            client,
            models_url,
            key,
        })
    }

    /// The model to ask, without the `models/` prefix the API's resource names carry.
    fn model<'a>(&'a self, request: &'a ChatRequest) -> &'a str {
        let model = request.model_or(&self.config.default_model);
        model.strip_prefix("models/").unwrap_or(model)
    }

    fn post(&self, model: &str, stream: bool, body: &Value) -> reqwest::RequestBuilder {
        let url = if stream {
            format!("{}{model}:streamGenerateContent?alt=sse", self.models_url)
        } else {
            format!("{}{model}:generateContent", self.models_url)
        };
        self.client
            .post(url)
            .header("x-goog-api-key", self.key.clone())
            .json(body)
    }
}

/// The request body. Refuses what Gemini would refuse anyway, before anything is sent.
fn body(request: &ChatRequest) -> Result<Value, LlmError> {
    if request.tools.len() > MAX_FUNCTION_DECLARATIONS {
        return Err(LlmError::BadRequest {
            status: 400,
            message: format!(
                "Gemini accepts at most {MAX_FUNCTION_DECLARATIONS} function declarations, not {}",
                request.tools.len()
            ),
        });
    }
    let mut body = json!({ "contents": contents(&request.messages) });
    if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
        body["systemInstruction"] = json!({"parts": [{"text": system}]});
    }
    if !request.tools.is_empty() {
        let declarations: Vec<Value> = request.tools.iter().map(declaration).collect();
        body["tools"] = json!([{ "functionDeclarations": declarations }]);
        body["toolConfig"] = json!({ "functionCallingConfig": match &request.tool_choice {
            ToolChoice::Auto => json!({"mode": "AUTO"}),
            ToolChoice::None => json!({"mode": "NONE"}),
            ToolChoice::Required => json!({"mode": "ANY"}),
            ToolChoice::Tool(name) => json!({"mode": "ANY", "allowedFunctionNames": [name]}),
        }});
    }
    let mut generation = json!({ "maxOutputTokens": request.max_tokens });
    if let Some(t) = request.temperature {
        generation["temperature"] = temperature(t);
    }
    body["generationConfig"] = generation;
    Ok(body)
}

/// The temperature as its shortest decimal (`0.2`, not the `0.20000000298...` of the f32).
fn temperature(t: f32) -> Value {
    t.to_string()
        .parse::<f64>()
        .map_or_else(|_| json!(t), |v| json!(v))
}

fn declaration(tool: &ToolSpec) -> Value {
    let mut declaration = json!({"name": tool.name, "description": tool.description});
    if has_parameters(&tool.parameters) {
        declaration["parameters"] = tool.parameters.clone();
    }
    declaration
}

/// Gemini refuses an object schema without properties ("should be non-empty for OBJECT
/// type"): a tool that takes no arguments is declared without `parameters`.
fn has_parameters(schema: &Value) -> bool {
    if schema.is_null() {
        return false;
    }
    let no_properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    let object = matches!(
        schema.get("type").and_then(Value::as_str),
        None | Some("object")
    );
    !(no_properties && object)
}

/// The history as Gemini turns: assistant is `model`, consecutive messages of one role are
/// merged (Gemini wants turns to alternate) and empty ones dropped.
fn contents(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for message in messages {
        let role = match message.role {
            Role::User => "user",
            Role::Assistant => "model",
        };
        let parts: Vec<Value> = message.parts.iter().filter_map(wire_part).collect();
        if parts.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    turns
        .into_iter()
        .map(|(role, parts)| json!({"role": role, "parts": parts}))
        .collect()
}

fn wire_part(part: &Part) -> Option<Value> {
    match part {
        Part::Text { text } if text.is_empty() => None,
        Part::Text { text } => Some(json!({ "text": text })),
        Part::ToolCall(call) => {
            let args = if call.arguments.is_object() {
                call.arguments.clone()
            } else {
                Value::Object(Map::new())
            };
            Some(json!({"functionCall": {"name": call.name, "args": args}}))
        }
        Part::ToolResult {
            name,
            content,
            is_error,
            ..
        } => Some(json!({"functionResponse": {
            "name": name,
            "response": tool_response(content, *is_error),
        }})),
    }
}

/// `{"result": ...}`, or `{"error": ...}` for a failed call; a result that is JSON travels
/// as JSON, anything else as a string.
fn tool_response(content: &str, is_error: bool) -> Value {
    let value = serde_json::from_str::<Value>(content)
        .unwrap_or_else(|_| Value::String(content.to_owned()));
    let mut response = Map::new();
    response.insert(if is_error { "error" } else { "result" }.to_owned(), value);
    Value::Object(response)
}

/// A `GenerateContentResponse`, whole or one streamed chunk. Unknown fields (safety ratings,
/// thought signatures, citations...) are ignored.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    candidates: Option<Vec<Candidate>>,
    usage_metadata: Option<WireUsage>,
    model_version: Option<String>,
    prompt_feedback: Option<PromptFeedback>,
    /// Only inside a stream: the provider failed after the 200.
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    content: Option<Content>,
    finish_reason: Option<String>,
    finish_message: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    parts: Option<Vec<WirePart>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    text: Option<String>,
    /// A summary of the model's reasoning, not part of the answer.
    thought: Option<bool>,
    function_call: Option<WireFunctionCall>,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    /// Sent by newer models only.
    id: Option<String>,
    name: String,
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    prompt_token_count: Option<u64>,
    candidates_token_count: Option<u64>,
    cached_content_token_count: Option<u64>,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            input_tokens: u.prompt_token_count.unwrap_or(0),
            output_tokens: u.candidates_token_count.unwrap_or(0),
            cached_input_tokens: u.cached_content_token_count.unwrap_or(0),
            from_cache: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireError {
    code: Option<Value>,
    message: Option<String>,
    status: Option<String>,
}

impl From<WireError> for LlmError {
    fn from(e: WireError) -> Self {
        let code = e.code.as_ref().and_then(Value::as_u64);
        match (e.status.as_deref(), code) {
            (Some("UNAVAILABLE"), _) | (None, Some(503)) => Self::Overloaded { retry_after: None },
            (Some("RESOURCE_EXHAUSTED"), _) | (None, Some(429)) => {
                Self::RateLimited { retry_after: None }
            }
            _ => Self::Stream(e.message.unwrap_or_else(|| "error".into())),
        }
    }
}

/// One answer part: text, or a complete function call (numbered by `calls` when the model
/// gave it no id). Thoughts and part kinds this adapter does not use yield nothing.
fn read_part(part: WirePart, calls: &mut usize) -> Result<Option<Part>, LlmError> {
    if let Some(call) = part.function_call {
        let id = call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(|| format!("call_{calls}"));
        *calls += 1;
        let arguments = match call.args {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(args @ Value::Object(_)) => args,
            Some(_) => {
                return Err(LlmError::Malformed(format!(
                    "arguments of tool call {:?} are not a JSON object",
                    call.name
                )));
            }
        };
        return Ok(Some(Part::ToolCall(ToolCall {
            id,
            name: call.name,
            arguments,
        })));
    }
    if part.thought == Some(true) {
        return Ok(None);
    }
    Ok(part
        .text
        .filter(|t| !t.is_empty())
        .map(|text| Part::Text { text }))
}

/// Appends a part, joining text to the text right before it.
fn push(parts: &mut Vec<Part>, part: Part) {
    if let (Part::Text { text }, Some(Part::Text { text: last })) = (&part, parts.last_mut()) {
        last.push_str(text);
        return;
    }
    parts.push(part);
}

/// `finishReason` is an open set: `STOP` also ends a turn that calls tools.
fn stop_reason(
    reason: Option<&str>,
    message: Option<&str>,
    has_calls: bool,
) -> Result<StopReason, LlmError> {
    Ok(match reason {
        None | Some("STOP") if has_calls => StopReason::ToolUse,
        None | Some("STOP") => StopReason::EndTurn,
        Some("MAX_TOKENS") => StopReason::MaxTokens,
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => StopReason::ContentFilter,
        Some("MALFORMED_FUNCTION_CALL") => {
            return Err(LlmError::Malformed(match message {
                Some(m) => format!("the model produced a malformed function call: {m}"),
                None => "the model produced a malformed function call".into(),
            }));
        }
        Some(other) => StopReason::Other(other.to_owned()),
    })
}

fn into_response(response: GenerateResponse, model: &str) -> Result<ChatResponse, LlmError> {
    if let Some(error) = response.error {
        return Err(error.into());
    }
    let usage = response.usage_metadata.map(Usage::from).unwrap_or_default();
    let model = response.model_version.unwrap_or_else(|| model.to_owned());
    // No candidate at all: the prompt itself was blocked (`promptFeedback.blockReason`).
    let Some(candidate) = response.candidates.unwrap_or_default().into_iter().next() else {
        return Ok(ChatResponse {
            model,
            parts: Vec::new(),
            stop: StopReason::ContentFilter,
            usage,
        });
    };
    let mut parts = Vec::new();
    let mut calls = 0;
    for part in candidate
        .content
        .and_then(|c| c.parts)
        .into_iter()
        .flatten()
    {
        if let Some(part) = read_part(part, &mut calls)? {
            push(&mut parts, part);
        }
    }
    let stop = stop_reason(
        candidate.finish_reason.as_deref(),
        candidate.finish_message.as_deref(),
        calls > 0,
    )?;
    Ok(ChatResponse {
        model,
        parts,
        stop,
        usage,
    })
}

#[async_trait]
impl ChatModel for GeminiChat {
    fn provider(&self) -> &str {
        &self.config.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let body = body(request)?;
        let model = self.model(request);
        let request = self.post(model, false, &body);
        let first_token = FirstToken::start(&self.config.name);
        let answer = http::send_json(
            request,
            &self.config.http,
            http::MAX_ANSWER_BYTES,
            Some(first_token),
        )
        .await?;
        into_response(answer, model)
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let body = body(request)?;
        let model = self.model(request);
        let request = self.post(model, true, &body);
        let first_token = FirstToken::start(&self.config.name);
        let response = http::send(request, &self.config.http).await?;
        let decoder = StreamDecoder {
            model: model.to_owned(),
            ..StreamDecoder::default()
        };
        Ok(http::sse_stream(
            response,
            decoder,
            &self.config.http,
            first_token,
        ))
    }
}

#[derive(Default)]
struct StreamDecoder {
    model: String,
    /// The answer so far, text and calls in order.
    parts: Vec<Part>,
    calls: usize,
    finish_reason: Option<String>,
    finish_message: Option<String>,
    /// The prompt was blocked: a chunk with `promptFeedback.blockReason` and no candidate.
    blocked: bool,
    usage: Usage,
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        let data = event.data.trim();
        if data.is_empty() {
            return Ok(Vec::new());
        }
        let chunk: GenerateResponse =
            serde_json::from_str(data).map_err(|e| LlmError::Malformed(e.to_string()))?;
        if let Some(error) = chunk.error {
            return Err(error.into());
        }
        if let Some(model) = chunk.model_version {
            self.model = model;
        }
        if let Some(usage) = chunk.usage_metadata {
            self.usage = usage.into();
        }
        let Some(candidate) = chunk.candidates.unwrap_or_default().into_iter().next() else {
            if chunk.prompt_feedback.and_then(|f| f.block_reason).is_some() {
                self.blocked = true;
            }
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for part in candidate
            .content
            .and_then(|c| c.parts)
            .into_iter()
            .flatten()
        {
            match read_part(part, &mut self.calls)? {
                Some(Part::Text { text }) => {
                    out.push(StreamEvent::TextDelta(text.clone()));
                    push(&mut self.parts, Part::Text { text });
                }
                Some(Part::ToolCall(call)) => {
                    out.push(StreamEvent::ToolCall(call.clone()));
                    self.parts.push(Part::ToolCall(call));
                }
                Some(Part::ToolResult { .. }) | None => {}
            }
        }
        if let Some(reason) = candidate.finish_reason {
            // Fail now on a reason that makes the answer unusable (a malformed call).
            stop_reason(
                Some(&reason),
                candidate.finish_message.as_deref(),
                self.calls > 0,
            )?;
            self.finish_reason = Some(reason);
            self.finish_message = candidate.finish_message;
        }
        Ok(out)
    }

    /// Gemini marks no end: the stream is over when the body is.
    fn ended(&self) -> bool {
        false
    }

    fn finish(&mut self) -> Result<ChatResponse, LlmError> {
        let stop = match self.finish_reason.as_deref() {
            Some(reason) => {
                stop_reason(Some(reason), self.finish_message.as_deref(), self.calls > 0)?
            }
            None if self.blocked => StopReason::ContentFilter,
            None => {
                return Err(LlmError::Stream(
                    "the stream ended before the answer did".into(),
                ));
            }
        };
        Ok(ChatResponse {
            model: std::mem::take(&mut self.model),
            parts: std::mem::take(&mut self.parts),
            stop,
            usage: self.usage,
        })
    }
}
