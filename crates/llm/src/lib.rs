//! Model providers behind one trait. A [`ChatModel`] takes a provider-neutral
//! [`ChatRequest`] (system prompt, history with tool calls and results, tool definitions)
//! and answers with a [`ChatResponse`], whole or streamed. Adapters speak each vendor's wire
//! format (see `../shared/docs/PROTOCOLS.md` section 4); [`Resilient`] adds retries that
//! honour `retry-after`, a circuit breaker per provider and an ordered fallback chain;
//! [`ResponseCache`] keeps answers to identical requests for a while, per caller-named scope.
//! An [`Embedder`] turns texts into vectors (OpenAI-compatible and Gemini adapters in
//! [`embed`]), with the same retries and breakers through [`ResilientEmbedder`].
//!
//! Nothing here knows about tenants or storage: the agent crate decides what to send.

pub mod anthropic;
pub mod cache;
pub mod embed;
pub mod gemini;
mod http;
pub mod openai;
pub mod pricing;
pub mod providers;
mod resilient;
mod sse;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

pub use cache::{CacheConfig, Cached, ResponseCache};
pub use embed::{EmbedLimits, Embedder, Embeddings, cosine, normalize};
pub use http::HttpSettings;
pub use pricing::{PriceTable, Prices};
pub use providers::{ModelSettings, ProviderKind, ProviderSettings};
pub use resilient::{BreakerState, Provider, Resilient, ResilientEmbedder, RetryPolicy};
pub use sse::SseParser;

/// Histogram `concierge_model_ttft_seconds{provider}`: the time to first token of one chat
/// call to one provider (`provider` is the adapter's configured name, not a fallback chain's).
///
/// - Streaming calls ([`ChatModel::stream`]): from sending the request to the first text or
///   tool-call delta decoded. A stream that ends, or fails, before any records nothing.
/// - Whole calls ([`ChatModel::complete`]): from sending the request to the response
///   headers of a successful (2xx) answer, the first sign of it a whole call gives. Most
///   providers send those headers only once the whole answer is generated, so this is an
///   upper bound, close to the whole call minus reading the body: compare it with streaming
///   values only per call kind.
///
/// Failed calls and answers served from [`ResponseCache`] record nothing; every retry or
/// fallback attempt that gets an answer records its own value. Embedding calls never record.
pub const MODEL_TTFT_SECONDS: &str = "concierge_model_ttft_seconds";

/// Who said a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    Text {
        text: String,
    },
    /// The model asks for a tool (assistant messages only).
    ToolCall(ToolCall),
    /// The result of a tool call, fed back (user messages only).
    ToolResult {
        call_id: String,
        /// The tool's name: Gemini matches results by name, not id.
        name: String,
        content: String,
        is_error: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The provider's id for this call, echoed back with its result.
    pub id: String,
    pub name: String,
    /// Parsed arguments. A model that produced invalid JSON yields an error, not a call.
    pub arguments: serde_json::Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub parts: Vec<Part>,
}

impl Message {
    #[must_use]
    pub fn user(text: impl Into<String>) -> Self {
        Self {
            role: Role::User,
            parts: vec![Part::Text { text: text.into() }],
        }
    }

    #[must_use]
    pub fn assistant(text: impl Into<String>) -> Self {
        Self {
            role: Role::Assistant,
            parts: vec![Part::Text { text: text.into() }],
        }
    }
}

/// A tool the model may call: its arguments are described by a JSON Schema object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    pub parameters: serde_json::Value,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    #[default]
    Auto,
    None,
    /// Some tool must be called.
    Required,
    /// This tool must be called.
    Tool(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatRequest {
    /// The model name at the provider; empty means the adapter's configured default.
    pub model: String,
    pub system: Option<String>,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub tool_choice: ToolChoice,
    pub max_tokens: u32,
    pub temperature: Option<f32>,
}

impl ChatRequest {
    /// The model to ask for: the request's, or the adapter's default when it names none.
    #[must_use]
    pub fn model_or<'a>(&'a self, default: &'a str) -> &'a str {
        if self.model.is_empty() {
            default
        } else {
            &self.model
        }
    }

    #[must_use]
    pub fn new(messages: Vec<Message>) -> Self {
        Self {
            model: String::new(),
            system: None,
            messages,
            tools: Vec::new(),
            tool_choice: ToolChoice::Auto,
            max_tokens: 1024,
            temperature: None,
        }
    }
}

/// Why the model stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    EndTurn,
    ToolUse,
    MaxTokens,
    /// Refused or filtered by the provider.
    ContentFilter,
    /// A value this build does not know (providers add them).
    Other(String),
}

/// Token counts for one call. `cached_input_tokens` is part of `input_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Prompt tokens the provider read from its own prompt cache (still billed, at its rate).
    pub cached_input_tokens: u64,
    /// The answer came from our [`cache::ResponseCache`], not from a provider call: the
    /// token counts are those of the original call, which was already billed. Callers that
    /// count spend must skip these.
    #[serde(default)]
    pub from_cache: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// The model that answered, as the provider names it.
    pub model: String,
    /// The assistant message: text and tool calls, in order.
    pub parts: Vec<Part>,
    pub stop: StopReason,
    pub usage: Usage,
}

impl ChatResponse {
    /// The text parts joined.
    #[must_use]
    pub fn text(&self) -> String {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    #[must_use]
    pub fn tool_calls(&self) -> Vec<&ToolCall> {
        self.parts
            .iter()
            .filter_map(|p| match p {
                Part::ToolCall(c) => Some(c),
                _ => None,
            })
            .collect()
    }
}

/// One event of a streamed answer. A stream ends with exactly one `Done` (or an error).
#[derive(Clone, Debug, PartialEq)]
pub enum StreamEvent {
    /// More text.
    TextDelta(String),
    /// A tool call, complete (its argument fragments assembled and parsed).
    ToolCall(ToolCall),
    /// The whole answer, as `complete` would have returned it.
    Done(ChatResponse),
}

pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, LlmError>> + Send>>;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LlmError {
    /// No answer (headers, or the next streamed bytes) within the configured time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// Could not reach the provider.
    #[error("transport: {0}")]
    Transport(String),
    /// 429: wait `retry_after` if the provider said how long.
    #[error("rate limited")]
    RateLimited { retry_after: Option<Duration> },
    /// 529 / overloaded, or an overload error inside a stream.
    #[error("provider overloaded")]
    Overloaded { retry_after: Option<Duration> },
    /// 5xx.
    #[error("provider error {status}: {message}")]
    Server { status: u16, message: String },
    /// 401 / 403.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// Other 4xx: the request itself is wrong; retrying will not help.
    #[error("request refused ({status}): {message}")]
    BadRequest { status: u16, message: String },
    /// The answer could not be understood (malformed JSON, invalid tool arguments...).
    #[error("malformed response: {0}")]
    Malformed(String),
    /// The provider reported an error in the middle of a stream.
    #[error("stream error: {0}")]
    Stream(String),
    /// The circuit breaker is open for this provider.
    #[error("circuit open for {0}")]
    CircuitOpen(String),
    /// No provider is configured.
    #[error("no model provider configured")]
    NotConfigured,
}

impl LlmError {
    /// Whether the same request may succeed if sent again (to this provider or another).
    #[must_use]
    pub const fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::Transport(_)
                | Self::RateLimited { .. }
                | Self::Overloaded { .. }
                | Self::Server { .. }
                | Self::Stream(_)
        )
    }

    /// How long the provider asked us to wait, if it did.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::RateLimited { retry_after } | Self::Overloaded { retry_after } => *retry_after,
            _ => None,
        }
    }

    /// A short stable label for metrics.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport",
            Self::RateLimited { .. } => "rate_limited",
            Self::Overloaded { .. } => "overloaded",
            Self::Server { .. } => "server",
            Self::Auth(_) => "auth",
            Self::BadRequest { .. } => "bad_request",
            Self::Malformed(_) => "malformed",
            Self::Stream(_) => "stream",
            Self::CircuitOpen(_) => "circuit_open",
            Self::NotConfigured => "not_configured",
        }
    }
}

/// A chat model: one provider, or a chain of them.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// The provider's short name, for metrics and logs (`openai`, `anthropic`...).
    fn provider(&self) -> &str;

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError>;

    /// Streams the answer. Errors before the first byte are returned directly; errors
    /// after it (including ones a provider sends inside a 200 stream) arrive as items.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError>;
}

/// Parses a tool call's JSON arguments; empty means no arguments.
pub(crate) fn parse_arguments(name: &str, raw: &str) -> Result<serde_json::Value, LlmError> {
    if raw.trim().is_empty() {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(v @ serde_json::Value::Object(_)) => Ok(v),
        Ok(_) => Err(LlmError::Malformed(format!(
            "arguments of tool call {name:?} are not a JSON object"
        ))),
        Err(e) => Err(LlmError::Malformed(format!(
            "arguments of tool call {name:?} are not valid JSON: {e}"
        ))),
    }
}
