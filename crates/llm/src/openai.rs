//! OpenAI Chat Completions, and the servers that speak it (Ollama, vLLM, llama.cpp, LM
//! Studio...): `POST {base}/chat/completions`, bearer key, tool calls whose arguments are a
//! JSON string, SSE chunks ending with `data: [DONE]`, usage in a last chunk when asked.

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

#[derive(Clone, Debug)]
pub struct OpenAiConfig {
    /// The provider's label in metrics and logs.
    pub name: String,
    /// Up to and including `/v1`.
    pub base_url: String,
    /// None for local servers that take no key.
    pub api_key: Option<SecretString>,
    /// Used when a request names no model.
    pub default_model: String,
    /// Send the token limit as `max_tokens` (what most compatible servers read) instead of
    /// `max_completion_tokens` (OpenAI's current name).
    pub legacy_max_tokens: bool,
    pub http: HttpSettings,
}

impl OpenAiConfig {
    /// OpenAI itself.
    #[must_use]
    pub fn openai(api_key: SecretString, model: impl Into<String>) -> Self {
        Self {
            name: "openai".into(),
            base_url: "https://api.openai.com/v1".into(),
            api_key: Some(api_key),
            default_model: model.into(),
            legacy_max_tokens: false,
            http: HttpSettings::default(),
        }
    }

    /// A compatible server at `base_url` (for example `http://127.0.0.1:11434/v1`).
    #[must_use]
    pub fn compatible(
        name: impl Into<String>,
        base_url: impl Into<String>,
        model: impl Into<String>,
    ) -> Self {
        Self {
            name: name.into(),
            base_url: base_url.into(),
            api_key: None,
            default_model: model.into(),
            legacy_max_tokens: true,
            http: HttpSettings::default(),
        }
    }
}

pub struct OpenAiChat {
    config: OpenAiConfig,
    client: reqwest::Client,
    url: String,
}

impl OpenAiChat {
    /// # Errors
    /// The HTTP client cannot be built (no TLS provider installed).
    pub fn new(config: OpenAiConfig) -> Result<Self, LlmError> {
        let client = http::client(&config.http)?;
        let url = format!("{}/chat/completions", config.base_url.trim_end_matches('/'));
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
            "messages": messages(request),
        });
        let limit = if self.config.legacy_max_tokens {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        body[limit] = json!(request.max_tokens);
        if let Some(t) = request.temperature {
            body["temperature"] = json!(t);
        }
        if !request.tools.is_empty() {
            body["tools"] = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            body["tool_choice"] = match &request.tool_choice {
                ToolChoice::Auto => json!("auto"),
                ToolChoice::None => json!("none"),
                ToolChoice::Required => json!("required"),
                ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
            };
        }
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        body
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let request = self.client.post(&self.url).json(body);
        match &self.config.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }
}

fn messages(request: &ChatRequest) -> Vec<Value> {
    let mut out = Vec::new();
    if let Some(system) = &request.system {
        out.push(json!({"role": "system", "content": system}));
    }
    for message in &request.messages {
        let text: String = message
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        match message.role {
            Role::User => {
                // Tool results are messages of their own, right after the assistant's calls.
                for part in &message.parts {
                    if let Part::ToolResult {
                        call_id, content, ..
                    } = part
                    {
                        out.push(
                            json!({"role": "tool", "tool_call_id": call_id, "content": content}),
                        );
                    }
                }
                if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = message
                    .parts
                    .iter()
                    .filter_map(|p| match p {
                        Part::ToolCall(c) => Some(json!({
                            "id": c.id, "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments.to_string()}})),
                        _ => None,
                    })
                    .collect();
                let mut m = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    m["tool_calls"] = Value::Array(calls);
                }
                out.push(m);
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct Completion {
    #[serde(default)]
    model: String,
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct Choice {
    message: WireMessage,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    content: Option<String>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize, Default)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize, Default)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        Self {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
            cached_input_tokens: u.prompt_tokens_details.map_or(0, |d| d.cached_tokens),
            from_cache: false,
        }
    }
}

fn stop_reason(reason: Option<&str>, has_calls: bool) -> StopReason {
    match reason {
        Some("stop") | None if !has_calls => StopReason::EndTurn,
        Some("tool_calls" | "function_call") | None | Some("stop") => StopReason::ToolUse,
        Some("length") => StopReason::MaxTokens,
        Some("content_filter") => StopReason::ContentFilter,
        Some(other) => StopReason::Other(other.to_owned()),
    }
}

fn into_response(completion: Completion) -> Result<ChatResponse, LlmError> {
    let usage = completion.usage.map(Usage::from).unwrap_or_default();
    let choice = completion
        .choices
        .into_iter()
        .next()
        .ok_or_else(|| LlmError::Malformed("no choices in the completion".into()))?;
    let mut parts = Vec::new();
    if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
        parts.push(Part::Text { text });
    }
    let refused = choice.message.refusal.is_some();
    if let Some(refusal) = choice.message.refusal {
        parts.push(Part::Text { text: refusal });
    }
    let has_calls = !choice.message.tool_calls.is_empty();
    for call in choice.message.tool_calls {
        parts.push(Part::ToolCall(ToolCall {
            arguments: parse_arguments(&call.function.name, &call.function.arguments)?,
            id: call.id,
            name: call.function.name,
        }));
    }
    let stop = if refused {
        StopReason::ContentFilter
    } else {
        stop_reason(choice.finish_reason.as_deref(), has_calls)
    };
    Ok(ChatResponse {
        model: completion.model,
        parts,
        stop,
        usage,
    })
}

#[async_trait]
impl ChatModel for OpenAiChat {
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

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct StreamDecoder {
    model: String,
    text: String,
    calls: BTreeMap<u64, PartialCall>,
    finish_reason: Option<String>,
    usage: Usage,
    done: bool,
    emitted_calls: Vec<ToolCall>,
}

impl StreamDecoder {
    fn assemble_calls(&mut self) -> Result<Vec<StreamEvent>, LlmError> {
        let mut out = Vec::new();
        for (_, call) in std::mem::take(&mut self.calls) {
            let call = ToolCall {
                arguments: parse_arguments(&call.name, &call.arguments)?,
                id: call.id,
                name: call.name,
            };
            self.emitted_calls.push(call.clone());
            out.push(StreamEvent::ToolCall(call));
        }
        Ok(out)
    }
}

impl Decoder for StreamDecoder {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError> {
        let data = event.data.trim();
        if data.starts_with("[DONE]") {
            self.done = true;
            return self.assemble_calls();
        }
        let chunk: Value =
            serde_json::from_str(data).map_err(|e| LlmError::Malformed(e.to_string()))?;
        if let Some(error) = chunk.get("error") {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("error");
            return Err(LlmError::Stream(message.to_owned()));
        }
        if let Some(model) = chunk.get("model").and_then(Value::as_str) {
            model.clone_into(&mut self.model);
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            let usage: WireUsage = serde_json::from_value(usage.clone())
                .map_err(|e| LlmError::Malformed(e.to_string()))?;
            self.usage = usage.into();
        }
        let mut out = Vec::new();
        let choices = chunk.get("choices").and_then(Value::as_array);
        for choice in choices.into_iter().flatten() {
            let delta = choice.get("delta");
            if let Some(text) = delta
                .and_then(|d| d.get("content"))
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
            {
                self.text.push_str(text);
                out.push(StreamEvent::TextDelta(text.to_owned()));
            }
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array);
            for call in calls.into_iter().flatten() {
                let index = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                let entry = self.calls.entry(index).or_default();
                if let Some(id) = call.get("id").and_then(Value::as_str) {
                    id.clone_into(&mut entry.id);
                }
                let function = call.get("function");
                if let Some(name) = function.and_then(|f| f.get("name")).and_then(Value::as_str) {
                    entry.name.push_str(name);
                }
                if let Some(args) = function
                    .and_then(|f| f.get("arguments"))
                    .and_then(Value::as_str)
                {
                    entry.arguments.push_str(args);
                }
            }
            if let Some(reason) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish_reason = Some(reason.to_owned());
            }
        }
        Ok(out)
    }

    fn ended(&self) -> bool {
        self.done
    }

    fn call_started(&self) -> bool {
        !self.calls.is_empty()
    }

    fn finish(&mut self) -> Result<ChatResponse, LlmError> {
        if !self.done && self.finish_reason.is_none() {
            return Err(LlmError::Stream(
                "the stream ended before the answer did".into(),
            ));
        }
        if !self.calls.is_empty() {
            self.assemble_calls()?;
        }
        let mut parts = Vec::new();
        if !self.text.is_empty() {
            parts.push(Part::Text {
                text: std::mem::take(&mut self.text),
            });
        }
        let has_calls = !self.emitted_calls.is_empty();
        parts.extend(self.emitted_calls.drain(..).map(Part::ToolCall));
        Ok(ChatResponse {
            model: std::mem::take(&mut self.model),
            parts,
            stop: stop_reason(self.finish_reason.as_deref(), has_calls),
            usage: self.usage,
        })
    }
}
