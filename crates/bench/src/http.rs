//! The HTTP client shared by all workers, and turning a response into an [`Outcome`].

use std::time::Duration;

use anyhow::Context as _;

use crate::stats::Outcome;

/// Installs the TLS crypto provider reqwest needs even for plain-HTTP clients (the workspace
/// builds reqwest with `rustls-no-provider`). Safe to call more than once.
pub fn install_crypto_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP/1.1 client keeping up to `concurrency` idle connections to the target, so every
/// worker reuses its own keep-alive connection. No proxy, no retries, no decompression.
///
/// # Errors
/// When the client cannot be built.
pub fn client(concurrency: usize, timeout: Duration) -> anyhow::Result<reqwest::Client> {
    install_crypto_provider();
    reqwest::Client::builder()
        .http1_only()
        .pool_max_idle_per_host(concurrency)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .no_proxy()
        .retry(reqwest::retry::never())
        .user_agent(concat!("concierge-loadgen/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("building the HTTP client")
}

/// Sends `request`, reads the whole body, and classifies the answer: transport failures and
/// non-2xx statuses here, 2xx bodies by `on_2xx`.
pub async fn exchange<F>(request: reqwest::RequestBuilder, on_2xx: F) -> Outcome
where
    F: FnOnce(&[u8]) -> Outcome + Send,
{
    let response = match request.send().await {
        Ok(response) => response,
        Err(e) => return Outcome::Transport(describe(&e)),
    };
    let status = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return Outcome::Transport(format!("reading the body: {}", describe(&e))),
    };
    if status.is_success() {
        on_2xx(&body)
    } else {
        Outcome::status(status.as_u16(), &body)
    }
}

/// A reqwest error with its causes, which say what actually happened (refused, reset...).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    let mut text = format!("{kind}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
