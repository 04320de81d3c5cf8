//! Anthropic Messages API: `POST {base}/v1/messages`, `x-api-key` and `anthropic-version`
//! headers, content blocks (`text`, `tool_use` with a parsed `input`, `tool_result`), strictly
//! alternating roles, and named SSE events (`message_start` ... `message_stop`, `ping`, and
//! `error`, which may arrive inside a 200 stream).

use std::collections::BTreeMap;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{self, Decoder, FirstToken, HttpSettings};
use crate::sse::SseEvent;
use crate::{
    ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, Part, Role, StopReason,
    StreamEvent, ToolCall, ToolChoice, Usage, parse_arguments,
};

/// The API version this adapter speaks.
const API_VERSION: &str = "2023-06-01";

#[derive(Clone, Debug)]
pub struct AnthropicConfig {
    /// The provider's label in metrics and logs.
    pub name: String,
    /// Without `/v1` (for example `https://api.anthropic.com`).
    pub base_url: String,
    pub api_key: SecretString,
    /// Used when a request names no model.
    pub default_model: String,
    pub http: HttpSettings,
}

impl AnthropicConfig {
    /// Anthropic itself.
    #[must_use]
    pub fn new(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            name: "anthropic".into(),
            base_url: "https://api.anthropic.com".into(),
            api_key,
            default_model: model.into(),
            http: HttpSettings::default(),
        }
    }
}

pub struct AnthropicChat {
    config: AnthropicConfig,
    client: reqwest::Client,
    url: String,
}

impl AnthropicChat {
    /// # Errors
    /// The HTTP client cannot be built (no TLS provider installed).
    pub fn new(config: AnthropicConfig) -> Result<Self, LlmError> {
        let client = http::client(&config.http)?;
        let url = format!("{}/v1/messages", config.base_url.trim_end_matches('/'));
        Ok(Self {
            config,
            client,
            url,
        })
    }

    fn body(&self, request: &ChatRequest, stream: bool) -> Value {
        let model = request.model_or(&self.config.default_model);
        let mut body = json!({
            "model": model,
            "max_tokens": request.max_tokens,
            "messages": messages(request),
        });
        if let Some(system) = request.system.as_deref().filter(|s| !s.is_empty()) {
            body["system"] = json!(system);
        }
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"name": t.name, "description": t.description, "input_schema": t.parameters})
                })
                .collect();
            body["tool_choice"] = match &request.tool_choice {
                ToolChoice::Auto => json!({"type": "auto"}),
                ToolChoice::None => json!({"type": "none"}),
                ToolChoice::Required => json!({"type": "any"}),
                ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
            };
        }
        if stream {
            body["stream"] = json!(true);
        }
        body
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header("x-api-key", self.config.api_key.expose_secret())
            .header("anthropic-version", API_VERSION)
            .json(body)
    }
}

/// The history as Anthropic wants it: content blocks, tool calls in assistant turns, tool
/// results in user turns (before any text), and roles alternating (consecutive turns of one
/// role merged).
fn messages(request: &ChatRequest) -> Vec<Value> {
    let mut turns: Vec<(Role, Vec<Value>)> = Vec::new();
    for message in &request.messages {
        for part in &message.parts {
            let (role, block) = match part {
                Part::Text { text } if text.is_empty() => continue,
                Part::Text { text } => (message.role, json!({"type": "text", "text": text})),
                Part::ToolCall(call) => (
                    Role::Assistant,
                    json!({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": tool_input(&call.arguments)}),
                ),
                Part::ToolResult {
                    call_id,
                    content,
                    is_error,
                    ..
                } => (
                    Role::User,
                    json!({"type": "tool_result", "tool_use_id": call_id,
                        "content": content, "is_error": is_error}),
                ),
            };
            match turns.last_mut() {
                Some((last, blocks)) if *last == role => blocks.push(block),
                _ => turns.push((role, vec![block])),
            }
        }
    }
    turns
        .into_iter()
        .map(|(role, mut blocks)| {
            if role == Role::User {
                // Stable: results keep their order, and so does the text after them.
                blocks.sort_by_key(|b| b["type"] != "tool_result");
            }
            let role = match role {
                Role::User => "user",
                Role::Assistant => "assistant",
            };
            json!({"role": role, "content": blocks})
        })
        .collect()
}

/// `input` must be an object; arguments that are not one (never produced by this crate) are
/// sent as no arguments.
fn tool_input(arguments: &Value) -> Value {
    if arguments.is_object() {
        arguments.clone()
    } else {
        Value::Object(serde_json::Map::new())
    }
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    model: String,
    #[serde(default)]
    content: Vec<WireBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<WireError>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tools... nothing the neutral types carry.
    #[serde(other)]
    Other,
}

/// Every field may be missing or null; in a stream, later counts replace earlier ones.
#[derive(Deserialize, Default, Clone, Copy)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl WireUsage {
    fn update(&mut self, newer: Self) {
        self.input_tokens = newer.input_tokens.or(self.input_tokens);
        self.output_tokens = newer.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = newer
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = newer
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        let cached = u.cache_read_input_tokens.unwrap_or(0);
        Self {
            input_tokens: u
                .input_tokens
                .unwrap_or(0)
                .saturating_add(u.cache_creation_input_tokens.unwrap_or(0))
                .saturating_add(cached),
            output_tokens: u.output_tokens.unwrap_or(0),
            cached_input_tokens: cached,
            from_cache: false,
        }
    }
}

#[derive(Deserialize)]
struct WireError {
    #[serde(default, rename = "type")]
    kind: String,
    #[serde(default)]
    message: String,
}

impl From<WireError> for LlmError {
    fn from(e: WireError) -> Self {
        if e.kind == "overloaded_error" {
            Self::Overloaded { retry_after: None }
        } else if e.kind == "rate_limit_error" {
            Self::RateLimited { retry_after: None }
        } else if e.message.is_empty() {
            Self::Stream(e.kind)
        } else {
            Self::Stream(e.message)
        }
    }
}

fn stop_reason(reason: Option<&str>, has_calls: bool) -> StopReason {
    match reason {
        None if has_calls => StopReason::ToolUse,
        None | Some("end_turn" | "stop_sequence") => StopReason::EndTurn,
        Some("tool_use") => StopReason::ToolUse,
        Some("max_tokens" | "model_context_window_exceeded") => StopReason::MaxTokens,
        Some("refusal") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

/// A `tool_use` block's input: an object, or nothing (no arguments).
fn input_object(name: &str, input: Value) -> Result<Value, LlmError> {
    match input {
        Value::Object(_) => Ok(input),
        Value::Null => Ok(Value::Object(serde_json::Map::new())),
        _ => Err(LlmError::Malformed(format!(
            "input of tool call {name:?} is not a JSON object"
        ))),
    }
}

fn into_response(message: WireMessage) -> Result<ChatResponse, LlmError> {
    if message.kind.as_deref() == Some("error") {
        return Err(message.error.map_or_else(
            || LlmError::Stream("error without details".into()),
            LlmError::from,
        ));
    }
    let usage = message.usage.map(Usage::from).unwrap_or_default();
    let mut parts = Vec::new();
    for block in message.content {
        match block {
            WireBlock::Text { text } if text.is_empty() => {}
            WireBlock::Text { text } => parts.push(Part::Text { text }),
            WireBlock::ToolUse { id, name, input } => parts.push(Part::ToolCall(ToolCall {
                arguments: input_object(&name, input)?,
                id,
                name,
            })),
            WireBlock::Other => {}
        }
    }
    let has_calls = parts.iter().any(|p| matches!(p, Part::ToolCall(_)));
    Ok(ChatResponse {
        model: message.model,
        parts,
        stop: stop_reason(message.stop_reason.as_deref(), has_calls),
        usage,
    })
}

#[async_trait]
impl ChatModel for AnthropicChat {
    fn provider(&self) -> &str {
        &self.config.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        let request = self.post(&self.body(request, false));
        let first_token = FirstToken::start(&self.config.name);
        into_response(
            http::send_json(
                request,
                &self.config.http,
                http::MAX_ANSWER_BYTES,
                Some(first_token),
            )
            .await?,
        )
    }

    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        let request = self.post(&self.body(request, true));
        let first_token = FirstToken::start(&self.config.name);
        let response = http::send(request, &self.config.http).await?;
        Ok(http::sse_stream(
            response,
            StreamDecoder::default(),
            &self.config.http,
            first_token,
        ))
    }
}

// --- streaming ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct MessageStart {
    message: StartedMessage,
}

#[derive(Deserialize)]
struct StartedMessage {
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct BlockStart {
    index: u64,
    content_block: WireBlock,
}

#[derive(Deserialize)]
struct BlockDelta {
    index: u64,
    delta: WireDelta,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    /// Thinking, signatures, citations...
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct BlockStop {
    index: u64,
}

#[derive(Deserialize)]
struct MessageDelta {
    #[serde(default)]
    delta: Option<MessageDeltaBody>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorEvent {
    error: WireError,
}

/// A content block between its start and its stop.
enum OpenBlock {
    Text(String),
    Tool {
        id: String,
        name: String,
        /// The input given at the start, used when no fragments follow.
        input: Value,
        json: String,
    },
    /// A kind of block this adapter does not carry (thinking...).
    Ignored,
}

#[derive(Default)]
struct StreamDecoder {
    model: String,
    open: BTreeMap<u64, OpenBlock>,
    parts: Vec<Part>,
    stop_reason: Option<String>,
    usage: WireUsage,
    done: bool,
}

fn parse<T: serde::de::DeserializeOwned>(kind: &str, data: Value) -> Result<T, LlmError> {
    serde_json::from_value(data).map_err(|e| LlmError::Malformed(format!("{kind} event: {e}")))
}

impl StreamDecoder {
    /// Ends a block: its text or tool call becomes a part; a tool call is also emitted.
    fn close_block(&mut self, index: u64) -> Result<Option<StreamEvent>, LlmError> {
        match self.open.remove(&index) {
            Some(OpenBlock::Text(text)) => {
                if !text.is_empty() {
                    self.parts.push(Part::Text { text });
                }
                Ok(None)
            }
            Some(OpenBlock::Tool {
                id,
                name,
                input,
                json,
            }) => {
                let arguments = if json.trim().is_empty() {
                    input_object(&name, input)?
                } else {
                    parse_arguments(&name, &json)?
                };
                let call = ToolCall {
                    id,
                    name,
                    arguments,
                };
                self.parts.push(Part::ToolCall(call.clone()));
                Ok(Some(StreamEvent::ToolCall(call)))
            }
            Some(OpenBlock::Ignored) | None => Ok(None),
        }
    }

    fn delta(&mut self, delta: BlockDelta) -> Result<Vec<StreamEvent>, LlmError> {
        match delta.delta {
            WireDelta::TextDelta { text } => {
                let block = self
                    .open
                    .entry(delta.index)
                    .or_insert_with(|| OpenBlock::Text(String::new()));
                match block {
                    OpenBlock::Text(buffer) if !text.is_empty() => {
                        buffer.push_str(&text);
                        Ok(vec![StreamEvent::TextDelta(text)])
                    }
                    OpenBlock::Text(_) | OpenBlock::Ignored => Ok(Vec::new()),
                    OpenBlock::Tool { .. } => Err(LlmError::Malformed(format!(
                        "text delta for tool_use block {}",
                        delta.index
                    ))),
                }
            }
            WireDelta::InputJsonDelta { partial_json } => match self.open.get_mut(&delta.index) {
                Some(OpenBlock::Tool { json, .. }) => {
                    json.push_str(&partial_json);
                    Ok(Vec::new())
                }
                Some(OpenBlock::Ignored) => Ok(Vec::new()),
                Some(OpenBlock::Text(_)) | None => Err(LlmError::Malformed(format!(
                    "input_json_delta for block {}, which is not a tool_use block",
                    delta.index
                ))),
            },
            WireDelta::Other => Ok(Vec::new()),
        }
    }
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        if event.event.as_deref() == Some("ping") || event.data.trim().is_empty() {
            return Ok(Vec::new());
        }
        let data: Value =
            serde_json::from_str(&event.data).map_err(|e| LlmError::Malformed(e.to_string()))?;
        // The event name, else the payload's own `type` (they are the same on the wire).
        let kind = event
            .event
            .or_else(|| data.get("type").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        match kind.as_str() {
            "message_start" => {
                let start: MessageStart = parse(&kind, data)?;
                self.model = start.message.model;
                if let Some(usage) = start.message.usage {
                    self.usage.update(usage);
                }
                Ok(Vec::new())
            }
            "content_block_start" => {
                let start: BlockStart = parse(&kind, data)?;
                let mut out = Vec::new();
                let block = match start.content_block {
                    WireBlock::Text { text } => {
                        if !text.is_empty() {
                            out.push(StreamEvent::TextDelta(text.clone()));
                        }
                        OpenBlock::Text(text)
                    }
                    WireBlock::ToolUse { id, name, input } => OpenBlock::Tool {
                        id,
                        name,
                        input,
                        json: String::new(),
                    },
                    WireBlock::Other => OpenBlock::Ignored,
                };
                self.open.insert(start.index, block);
                Ok(out)
            }
            "content_block_delta" => {
                let delta: BlockDelta = parse(&kind, data)?;
                self.delta(delta)
            }
            "content_block_stop" => {
                let stop: BlockStop = parse(&kind, data)?;
                Ok(self.close_block(stop.index)?.into_iter().collect())
            }
            "message_delta" => {
                let delta: MessageDelta = parse(&kind, data)?;
                if let Some(reason) = delta.delta.and_then(|d| d.stop_reason) {
                    self.stop_reason = Some(reason);
                }
                if let Some(usage) = delta.usage {
                    self.usage.update(usage);
                }
                Ok(Vec::new())
            }
            "message_stop" => {
                self.done = true;
                // Blocks left open (which a well-behaved stream never does) still count.
                let mut out = Vec::new();
                let indexes: Vec<u64> = self.open.keys().copied().collect();
                for index in indexes {
                    out.extend(self.close_block(index)?);
                }
                Ok(out)
            }
            "error" => {
                let error: ErrorEvent = parse(&kind, data)?;
                Err(error.error.into())
            }
            // `ping`, and event types added after this adapter was written.
            _ => Ok(Vec::new()),
        }
    }

    fn ended(&self) -> bool {
        self.done
    }

    fn call_started(&self) -> bool {
        self.open
            .values()
            .any(|block| matches!(block, OpenBlock::Tool { .. }))
    }

    fn finish(&mut self) -> Result<ChatResponse, LlmError> {
        if !self.done {
            return Err(LlmError::Stream(
                "the stream ended before message_stop".into(),
            ));
        }
        let parts = std::mem::take(&mut self.parts);
        let has_calls = parts.iter().any(|p| matches!(p, Part::ToolCall(_)));
        Ok(ChatResponse {
            model: std::mem::take(&mut self.model),
            parts,
            stop: stop_reason(self.stop_reason.as_deref(), has_calls),
            usage: self.usage.into(),
        })
    }
}
