//! HTTP plumbing shared by the adapters: timeouts (connect, first byte, between streamed
//! chunks, total), status codes mapped to [`LlmError`], `retry-after`, and turning an SSE
//! response into an [`EventStream`] through a provider-specific [`Decoder`].

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
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            first_byte_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            total_timeout: Duration::from_secs(120),
        }
    }
}

pub(crate) fn client(settings: &HttpSettings) -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(settings.connect_timeout)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|e| LlmError::Transport(format!("cannot build HTTP client: {e}")))
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

/// Sends the request and reads its whole JSON answer, all within the total time limit.
pub(crate) async fn send_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    settings: &HttpSettings,
) -> Result<T, LlmError> {
    let deadline = Instant::now() + settings.total_timeout;
    let response = send(request, settings).await?;
    let bytes = tokio::time::timeout_at(deadline, response.bytes())
        .await
        .map_err(|_| LlmError::Timeout("reading the response body"))?
        .map_err(|e| LlmError::Transport(e.to_string()))?;
    serde_json::from_slice(&bytes).map_err(|e| LlmError::Malformed(e.to_string()))
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
                            Ok(out) => self.pending.extend(out.into_iter().map(Ok)),
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

/// Turns an SSE response into stream events; the stream ends after `Done` or an error.
pub(crate) fn sse_stream<D: Decoder>(
    response: reqwest::Response,
    decoder: D,
    settings: &HttpSettings,
) -> EventStream {
    let state = StreamState {
        response: Some(response),
        parser: SseParser::new(),
        decoder,
        pending: VecDeque::new(),
        idle: settings.idle_timeout,
        deadline: Instant::now() + settings.total_timeout,
        over: false,
    };
    Box::pin(stream::unfold(state, |mut state| async move {
        state.fill().await;
        state.pending.pop_front().map(|item| (item, state))
    }))
}
