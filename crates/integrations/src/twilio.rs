//! Sending SMS through Twilio's Messages REST API, with bounded retries and no SDK.
//!
//! # Retrying a POST
//!
//! Creating a Message is a POST and Twilio offers no idempotency key for it: if a request
//! reached Twilio and was processed, sending it again sends the SMS twice, and the recipient
//! sees a duplicate. So the client retries on its own only when the request surely was not
//! processed:
//!
//! - the TCP/TLS connection could not be established (nothing was sent);
//! - `429 Too Many Requests` and `503 Service Unavailable`: Twilio refuses these before it
//!   creates the Message.
//!
//! A timeout after the request was sent, a dropped connection, `500`, `502` and `504` are
//! ambiguous (the Message may exist), so they are returned at once as
//! [`SmsError::Transient`] instead of being retried here: the caller, which knows whether a
//! duplicate is acceptable for this message, decides whether to try again later.
//!
//! # Metrics
//!
//! Per HTTP attempt: `concierge_twilio_requests_total{outcome}` with `outcome` one of `sent`,
//! `opted_out`, `rejected`, `transient` (failed, not retried here) and `retryable` (failed
//! before Twilio processed it; retried unless retries are used up), and the histogram
//! `concierge_twilio_request_seconds`.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use domain::PhoneNumber;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tracing::Instrument;

/// Twilio's error code for "Attempt to send to unsubscribed recipient".
pub const OPTED_OUT_CODE: i64 = 21610;

/// First backoff step; doubled on each retry, plus up to half of it again as jitter.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest `Retry-After` we honour: a send job should not sit on a worker for minutes.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(5);

/// How to reach Twilio. Build it with [`TwilioConfig::new`] and override fields as needed.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    /// Scheme, host and optional port, no trailing path: `https://api.twilio.com`.
    pub api_base: String,
    /// `AC` followed by 32 hex digits.
    pub account_sid: String,
    pub auth_token: SecretString,
    /// Total time for one HTTP attempt, connecting to reading the whole body.
    pub timeout: Duration,
    pub connect_timeout: Duration,
    /// Retries after the first attempt, only for failures that surely did not send (see module docs).
    pub max_retries: u32,
}

impl TwilioConfig {
    pub const DEFAULT_API_BASE: &'static str = "https://api.twilio.com";

    #[must_use]
    pub fn new(account_sid: impl Into<String>, auth_token: SecretString) -> Self {
        Self {
            api_base: Self::DEFAULT_API_BASE.to_owned(),
            account_sid: account_sid.into(),
            auth_token,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 3,
        }
    }
}

impl Default for TwilioConfig {
    /// Defaults with no credentials: [`TwilioClient::new`] refuses it with [`SmsError::NotConfigured`].
    fn default() -> Self {
        Self::new(String::new(), SecretString::default())
    }
}

/// One SMS to send.
#[derive(Debug, Clone)]
pub struct OutboundSms {
    pub from: PhoneNumber,
    pub to: PhoneNumber,
    pub body: String,
    /// Absolute URL Twilio calls with status changes of this message.
    pub status_callback: Option<String>,
}

/// What Twilio answered for an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentSms {
    /// The Message SID, `SM` followed by 32 hex digits.
    pub sid: String,
    /// The initial status, `queued` (or `accepted` with a Messaging Service).
    pub status: String,
}

/// Why a message was not sent.
///
/// `Display` never includes Twilio's free-text `message`, which can quote the phone number;
/// read the field when needed and keep it out of logs.
#[derive(Debug, thiserror::Error)]
pub enum SmsError {
    /// The recipient opted out (Twilio error 21610): permanent until they text START.
    #[error("the recipient has opted out of messages from this sender")]
    OptedOut,
    /// A 4xx other than 429, with Twilio's `code`/`message` from the JSON error body: do not retry.
    ///
    /// Also returned, with the 2xx status, when Twilio accepted the message but its answer
    /// could not be read: retrying that would send a duplicate.
    #[error("Twilio rejected the message (HTTP {status}, Twilio code {code:?})")]
    Rejected {
        status: u16,
        code: Option<i64>,
        message: String,
    },
    /// Network error, timeout, 429 or 5xx after the client's own retries: the caller may retry
    /// later. After a timeout or a 500/502/504 the message may have been sent all the same.
    #[error("Twilio is unreachable or failing: {0}")]
    Transient(String),
    /// No account SID or auth token configured (or the HTTP client could not be built).
    #[error("Twilio is not configured")]
    NotConfigured,
}

impl SmsError {
    /// Whether sending the same message later may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Sends SMS; implemented by [`TwilioClient`] and by test doubles.
#[async_trait::async_trait]
pub trait SmsSender: Send + Sync + 'static {
    async fn send_sms(&self, sms: &OutboundSms) -> Result<SentSms, SmsError>;
}

/// A client for `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`.
#[derive(Debug, Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    messages_url: String,
    account_sid: String,
    auth_token: SecretString,
    max_retries: u32,
}

impl TwilioClient {
    /// Checks the credentials are present and builds the HTTP client.
    ///
    /// # Errors
    /// [`SmsError::NotConfigured`] when the SID or token is empty, the SID is not plain
    /// alphanumeric (it goes into the URL path), or the HTTP client cannot be built (for
    /// example when no rustls crypto provider is installed).
    pub fn new(config: TwilioConfig) -> Result<Self, SmsError> {
        let sid = config.account_sid.trim();
        if sid.is_empty()
            || !sid.bytes().all(|b| b.is_ascii_alphanumeric())
            || config.auth_token.expose_secret().is_empty()
        {
            return Err(SmsError::NotConfigured);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // Basic auth must never follow a redirect to somewhere else.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| {
                tracing::error!(error = %err, "cannot build the Twilio HTTP client");
                SmsError::NotConfigured
            })?;
        let messages_url = format!(
            "{}/2010-04-01/Accounts/{sid}/Messages.json",
            config.api_base.trim_end_matches('/')
        );
        Ok(Self {
            http,
            messages_url,
            account_sid: sid.to_owned(),
            auth_token: config.auth_token,
            max_retries: config.max_retries,
        })
    }

    async fn attempt(&self, form: &[(&str, &str)]) -> Attempt {
        let started = Instant::now();
        let result = self
            .http
            .post(&self.messages_url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose_secret()))
            .form(form)
            .send()
            .await;
        let attempt = match result {
            Ok(response) => read_response(response).await,
            Err(err) => Attempt::from_send_error(err),
        };
        metrics::counter!("concierge_twilio_requests_total", "outcome" => attempt.outcome())
            .increment(1);
        metrics::histogram!("concierge_twilio_request_seconds")
            .record(started.elapsed().as_secs_f64());
        attempt
    }
}

#[async_trait::async_trait]
impl SmsSender for TwilioClient {
    async fn send_sms(&self, sms: &OutboundSms) -> Result<SentSms, SmsError> {
        let span = tracing::info_span!(
            "twilio.send_sms",
            from = %sms.from.redacted(),
            to = %sms.to.redacted(),
            attempts = tracing::field::Empty,
            sid = tracing::field::Empty,
        );
        async {
            let mut form = vec![
                ("To", sms.to.as_str()),
                ("From", sms.from.as_str()),
                ("Body", sms.body.as_str()),
            ];
            if let Some(callback) = &sms.status_callback {
                form.push(("StatusCallback", callback.as_str()));
            }
            let mut retry = 0;
            loop {
                let attempt = self.attempt(&form).await;
                let span = tracing::Span::current();
                span.record("attempts", retry + 1);
                match attempt {
                    Attempt::Done(result) => {
                        match &result {
                            Ok(sent) => {
                                span.record("sid", sent.sid.as_str());
                                tracing::info!(status = %sent.status, "Twilio accepted the message");
                            }
                            Err(err) => tracing::warn!(error = %err, "Twilio did not send the message"),
                        }
                        return result;
                    }
                    Attempt::Retry { reason, retry_after } => {
                        if retry >= self.max_retries {
                            tracing::warn!(%reason, "giving up on Twilio after retries");
                            return Err(SmsError::Transient(reason));
                        }
                        let delay = retry_delay(retry, retry_after);
                        tracing::info!(%reason, delay_ms = delay.as_millis(), "retrying Twilio");
                        tokio::time::sleep(delay).await;
                        retry += 1;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }
}

/// The result of one HTTP attempt.
enum Attempt {
    Done(Result<SentSms, SmsError>),
    /// Surely not processed by Twilio: safe to send again.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl Attempt {
    fn from_send_error(err: reqwest::Error) -> Self {
        // Connect errors, connect timeouts included, happen before a byte of the request is
        // sent. Anything later (total timeout, reset) may have reached Twilio.
        let surely_unsent = err.is_connect();
        let reason = if err.is_timeout() {
            format!("request timed out: {}", error_chain(err))
        } else {
            format!("request failed: {}", error_chain(err))
        };
        if surely_unsent {
            Self::Retry {
                reason,
                retry_after: None,
            }
        } else {
            Self::Done(Err(SmsError::Transient(reason)))
        }
    }

    fn outcome(&self) -> &'static str {
        match self {
            Self::Done(Ok(_)) => "sent",
            Self::Done(Err(SmsError::OptedOut)) => "opted_out",
            Self::Done(Err(SmsError::Rejected { .. } | SmsError::NotConfigured)) => "rejected",
            Self::Done(Err(SmsError::Transient(_))) => "transient",
            Self::Retry { .. } => "retryable",
        }
    }
}

/// A reqwest error and its sources, without the URL: it holds the account SID.
fn error_chain(err: reqwest::Error) -> String {
    let err = err.without_url();
    let mut text = err.to_string();
    let mut current = std::error::Error::source(&err);
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

#[derive(Deserialize)]
struct MessageResource {
    sid: String,
    status: String,
}

/// Twilio's JSON error body: `{"code":21610,"message":"...","more_info":"...","status":400}`.
#[derive(Deserialize, Default)]
struct TwilioErrorBody {
    code: Option<i64>,
    #[serde(default)]
    message: String,
}

async fn read_response(response: reqwest::Response) -> Attempt {
    let status = response.status();
    let retry_after = parse_retry_after(response.headers());
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        // The status line arrived, so Twilio processed the request; only the body is lost.
        Err(err) if status.is_success() => {
            return Attempt::Done(Err(SmsError::Rejected {
                status: status.as_u16(),
                code: None,
                message: format!("accepted, but the response was cut: {}", error_chain(err)),
            }));
        }
        Err(err) => {
            return Attempt::Done(Err(SmsError::Transient(format!(
                "HTTP {}: reading the response failed: {}",
                status.as_u16(),
                error_chain(err)
            ))));
        }
    };
    if status.is_success() {
        return Attempt::Done(
            serde_json::from_slice::<MessageResource>(&bytes)
                .map(|m| SentSms {
                    sid: m.sid,
                    status: m.status,
                })
                .map_err(|err| SmsError::Rejected {
                    status: status.as_u16(),
                    code: None,
                    message: format!("accepted, but the response is not a Message: {err}"),
                }),
        );
    }
    let error: TwilioErrorBody = serde_json::from_slice(&bytes).unwrap_or_default();
    match status {
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Attempt::Retry {
            reason: describe(status, &error),
            retry_after,
        },
        s if s.is_server_error() => Attempt::Done(Err(SmsError::Transient(describe(s, &error)))),
        _ if error.code == Some(OPTED_OUT_CODE) => Attempt::Done(Err(SmsError::OptedOut)),
        s => Attempt::Done(Err(SmsError::Rejected {
            status: s.as_u16(),
            code: error.code,
            message: error.message,
        })),
    }
}

/// A log-safe description of a failed answer: status and Twilio code, not the free text.
fn describe(status: StatusCode, error: &TwilioErrorBody) -> String {
    match error.code {
        Some(code) => format!("HTTP {} (Twilio code {code})", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    }
}

/// `Retry-After` in delta-seconds; the HTTP-date form is ignored (Twilio does not use it).
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// How long to wait before retry number `retry` (0 for the first retry).
///
/// `Retry-After` wins when present, capped at [`MAX_RETRY_AFTER`]; otherwise exponential
/// backoff from [`BACKOFF_BASE`] with up to 50 % jitter so replicas do not retry in step.
fn retry_delay(retry: u32, retry_after: Option<Duration>) -> Duration {
    if let Some(after) = retry_after {
        return after.min(MAX_RETRY_AFTER);
    }
    let base = BACKOFF_BASE.saturating_mul(2u32.saturating_pow(retry.min(10)));
    let jitter_ms = random_u64() % (u64::try_from(base.as_millis() / 2).unwrap_or(0) + 1);
    base.saturating_add(Duration::from_millis(jitter_ms))
}

/// A random number good enough for jitter, from std's per-instance random hash keys.
fn random_u64() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_wins_and_is_capped() {
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(
            retry_delay(2, Some(Duration::from_secs(120))),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        for retry in 0..4 {
            let base = BACKOFF_BASE * 2u32.pow(retry);
            for _ in 0..50 {
                let delay = retry_delay(retry, None);
                assert!(delay >= base, "{delay:?} < {base:?}");
                assert!(delay <= base + base / 2, "{delay:?} > 1.5 * {base:?}");
            }
        }
    }

    #[test]
    fn retry_after_header_is_read_as_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().expect("header value"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT"
                .parse()
                .expect("header value"),
        );
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn only_transient_errors_are_retryable() {
        assert!(SmsError::Transient("x".into()).is_retryable());
        assert!(!SmsError::OptedOut.is_retryable());
        assert!(!SmsError::NotConfigured.is_retryable());
        assert!(
            !SmsError::Rejected {
                status: 400,
                code: Some(21211),
                message: String::new()
            }
            .is_retryable()
        );
    }

    #[test]
    fn empty_or_unsafe_credentials_are_not_configured() {
        let token = SecretString::from("token");
        for sid in ["", "  ", "AC../x", "AC 1"] {
            let err =
                TwilioClient::new(TwilioConfig::new(sid, token.clone())).expect_err("must refuse");
            assert!(matches!(err, SmsError::NotConfigured), "{sid:?}");
        }
        let err = TwilioClient::new(TwilioConfig::new("AC123", SecretString::from("")))
            .expect_err("must refuse an empty token");
        assert!(matches!(err, SmsError::NotConfigured));
        assert!(matches!(
            TwilioClient::new(TwilioConfig::default()),
            Err(SmsError::NotConfigured)
        ));
    }
}
