//! HTTP plumbing shared by the adapters: timeouts (connect, first byte, between streamed
//! chunks, total), a cap on JSON answer bodies, status codes mapped to [`LlmError`],
//! `retry-after`, the time to first token of chat calls, and turning an SSE response into an
//! [`EventStream`] through a provider-specific [`Decoder`].

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream;
use reqwest::header::HeaderMap;
use tokio::time::Instant;

use crate::sse::{SseEvent, SseParser};
use crate::{ChatResponse, EventStream, LlmError, StreamEvent};

/// Time limits for one provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    pub connect_timeout: Duration,
    /// Until the response headers arrive.
    pub first_byte_timeout: Duration,
    /// Longest silence between two chunks of a streamed answer.
    pub idle_timeout: Duration,
    /// The whole call, body included.
    pub total_timeout: Duration,
    /// Connect only to public addresses (not loopback, private, link-local...), follow no
    /// redirect: for endpoints a tenant chose, so a tenant cannot reach the installation's
    /// own network through the model client.
    pub public_only: bool,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
            public_only: false,
        }
    }
}

pub(crate) fn client(settings: &HttpSettings) -> Result<reqwest::Client, LlmError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90));
    if settings.public_only {
        builder = builder
            .dns_resolver(PublicOnly)
            .redirect(reqwest::redirect::Policy::none());
    }
    builder
        .build()
        .map_err(|e| LlmError::Transport(format!("cannot build HTTP client: {e}")))
}

/// Resolves names with the system resolver and keeps only public addresses, so a name that
/// resolves (or is re-pointed) to an internal address is never connected to. Addresses
/// written in the URL itself are checked when the endpoint is accepted
/// ([`crate::providers::check_endpoint`]).
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let public: Vec<std::net::SocketAddr> = found
                .filter(|a| crate::providers::is_public(a.ip()))
                .collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Sends the request and waits for a successful status. Non-2xx answers become errors.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    settings: &HttpSettings,
) -> Result<reqwest::Response, LlmError> {
    let response = tokio::time::timeout(settings.first_byte_timeout, request.send())
        .await
        .map_err(|_| LlmError::Timeout("waiting for the response headers"))?
        .map_err(|e| {
            if e.is_timeout() {
                LlmError::Timeout("connecting")
            } else {
                LlmError::Transport(e.to_string())
            }
        })?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let body = tokio::time::timeout(settings.idle_timeout, response.text())
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    Err(status_error(status, retry_after, &error_message(&body)))
}

/// The largest whole (not streamed) chat answer read: far beyond any real one, it only stops
/// a broken or hostile server from filling memory.
pub(crate) const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Sends the request and reads its whole JSON answer, at most `max_bytes` of it, all within
/// the total time limit. `first_token`, for chat calls, records the time to the response
/// headers as their time to first token.
pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    settings: &HttpSettings,
    max_bytes: usize,
    first_token: Option<FirstToken>,
) -> Result<T, LlmError> {
    let deadline = Instant::now() + settings.total_timeout;
    let response = send(request, settings).await?;
    if let Some(first_token) = first_token {
        first_token.record();
    }
    let bytes = read_capped(response, deadline, max_bytes).await?;
    serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed(e.to_string()))
}

/// The whole body, refused as soon as it is known to exceed `max_bytes` (from its
/// `content-length`, or while reading) rather than after buffering all of it.
async fn read_capped(
    mut response: reqwest::Response,
    deadline: Instant,
    max_bytes: usize,
) -> Result<Vec<u8>, LlmError> {
    let too_large = || LlmError::Malformed(format!("the answer is larger than {max_bytes} bytes"));
    let announced = response.content_length().unwrap_or(0);
    if usize::try_from(announced).map_or(true, |n| n > max_bytes) {
        return Err(too_large());
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0));
    loop {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .map_err(|_| LlmError::Timeout("reading the response body"))?
            .map_err(|e| LlmError::Transport(e.to_string()))?;
        let Some(chunk) = chunk else {
            return Ok(body);
        };
        if body.len().saturating_add(chunk.len()) > max_bytes {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
}

/// Times a chat call until its first token, for [`MODEL_TTFT_SECONDS`](crate::MODEL_TTFT_SECONDS).
/// Started just before the request is sent; recorded at most once, and never for a call
/// that fails before its first token.
pub(crate) struct FirstToken {
    provider: String,
    started: Instant,
}

impl FirstToken {
    pub(crate) fn start(provider: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            started: Instant::now(),
        }
    }

    fn record(self) {
        metrics::histogram!(crate::MODEL_TTFT_SECONDS, "provider" => self.provider)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Maps an HTTP status to an error.
pub(crate) fn status_error(status: u16, retry_after: Option<Duration>, message: &str) -> LlmError {
    let message = truncate(message);
    match status {
        401 | 403 => LlmError::Auth(message),
        429 => LlmError::RateLimited { retry_after },
        529 => LlmError::Overloaded { retry_after },
        500..=599 => LlmError::Server { status, message },
        _ => LlmError::BadRequest { status, message },
    }
}

/// The human-readable part of a provider's error body: `error.message` (Anthropic, OpenAI,
/// Gemini all use it), else the body itself.
pub(crate) fn error_message(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| body.to_owned())
}

fn truncate(s: &str) -> String {
    s.chars().take(300).collect()
}

/// `retry-after` in seconds (fractions allowed), capped at ten minutes.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("retry-after")?.to_str().ok()?.trim();
    let secs: f64 = value.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(600.0)))
}

/// A provider's streaming format: SSE events in, stream events out.
pub(crate) trait Decoder: Send + 'static {
    fn event(&mut self, event: SseEvent) -> Result<Vec<StreamEvent>, LlmError>;
    /// Whether the provider marked the end (`[DONE]`, `message_stop`).
    fn ended(&self) -> bool;
    /// Whether a tool call has started arriving in fragments not yet emitted: the time to
    /// first token counts from its first fragment, not from when it is whole.
    fn call_started(&self) -> bool {
        false
    }
    /// The whole answer, once the stream is over.
    fn finish(&mut self) -> Result<ChatResponse, LlmError>;
}

struct StreamState<D> {
    response: Option<reqwest::Response>,
    parser: SseParser,
    decoder: D,
    pending: VecDeque<Result<StreamEvent, LlmError>>,
    idle: Duration,
    deadline: Instant,
    over: bool,
    /// Taken and recorded at the first text or tool-call delta.
    first_token: Option<FirstToken>,
}

impl<D: Decoder> StreamState<D> {
    /// Reads until there is something to emit, or the stream is over.
    async fn fill(&mut self) {
        while self.pending.is_empty() && !self.over {
            if self.decoder.ended() {
                self.close();
                return;
            }
            let Some(response) = self.response.as_mut() else {
                self.close();
                return;
            };
            let now = Instant::now();
            let until = (now + self.idle).min(self.deadline);
            let chunk = match tokio::time::timeout_at(until, response.chunk()).await {
                Ok(Ok(chunk)) => chunk,
                Ok(Err(e)) => {
                    self.fail(LlmError::Stream(format!("connection lost: {e}")));
                    return;
                }
                Err(_) => {
                    self.fail(LlmError::Timeout(if until == self.deadline {
                        "the whole answer"
                    } else {
                        "the next streamed chunk"
                    }));
                    return;
                }
            };
            let events = match chunk {
                Some(bytes) => self.parser.feed(&bytes).map_err(LlmError::Malformed),
                None => {
                    self.response = None;
                    Ok(self.parser.finish().into_iter().collect())
                }
            };
            match events {
                Ok(events) => {
                    for event in events {
                        match self.decoder.event(event) {
                            Ok(out) => {
                                if (out.iter().any(is_token) || self.decoder.call_started())
                                    && let Some(first_token) = self.first_token.take()
                                {
                                    first_token.record();
                                }
                                self.pending.extend(out.into_iter().map(Ok));
                            }
                            Err(e) => {
                                self.fail(e);
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    self.fail(e);
                    return;
                }
            }
        }
    }

    fn close(&mut self) {
        self.over = true;
        self.response = None;
        let done = self.decoder.finish().map(StreamEvent::Done);
        self.pending.push_back(done);
    }

    fn fail(&mut self, error: LlmError) {
        self.over = true;
        self.response = None;
        self.pending.push_back(Err(error));
    }
}

/// Whether an event carries part of the answer (what the time to first token waits for).
const fn is_token(event: &StreamEvent) -> bool {
    matches!(event, StreamEvent::TextDelta(_) | StreamEvent::ToolCall(_))
}

/// Turns an SSE response into stream events; the stream ends after `Done` or an error.
/// `first_token` is recorded when the first text or tool-call delta is decoded.
pub(crate) fn sse_stream<D: Decoder>(
    response: reqwest::Response,
    decoder: D,
    settings: &HttpSettings,
    first_token: FirstToken,
) -> EventStream {
    let state = StreamState {
        response: Some(response),
        parser: SseParser::new(),
        decoder,
        pending: VecDeque::new(),
        idle: settings.idle_timeout,
        deadline: Instant::now() + settings.total_timeout,
        over: false,
        first_token: Some(first_token),
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        state.fill().await;
        state.pending.pop_front().map(|item| (item, state))
    }))
}
