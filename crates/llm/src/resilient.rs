//! Retries, circuit breakers and fallback around several providers, itself a
//! [`ChatModel`] ([`Resilient`]) or an [`Embedder`] ([`ResilientEmbedder`]): one policy and
//! one breaker per provider, whatever the providers do.
//!
//! Each provider is tried in order. A retryable failure (timeout, transport, 429, 5xx,
//! 529) is retried with exponential backoff and jitter, or after the provider's
//! `retry-after` when it gives one (if that wait is longer than the policy allows, the next
//! provider is tried instead). A request the provider refuses (4xx) is not retried there.
//! Consecutive failures open the provider's breaker: it is skipped for a cool-down, then
//! one trial call decides whether it closes again.
//!
//! Metrics, by provider: chat chains report `concierge_llm_requests_total{provider,outcome}`,
//! `concierge_llm_request_seconds`, `concierge_llm_fallbacks_total{to}` and
//! `concierge_llm_breaker_open`; embedding chains the same under `concierge_embed_*`, so
//! one provider name used for both does not mix them.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::embed::{Embedder, Embeddings, fill};
use crate::{ChatModel, ChatRequest, ChatResponse, EventStream, LlmError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls per provider, first one included.
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
    /// The longest `retry-after` worth waiting for; longer means: fall back now.
    pub max_retry_after: Duration,
    /// Consecutive failures that open a provider's breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker skips its provider before a trial call.
    pub breaker_cooldown: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(4),
            max_retry_after: Duration::from_secs(10),
            breaker_threshold: 5,
            breaker_cooldown: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Backoff before attempt `attempt + 1`, with up to 50 % jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base
            .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
        let capped = exp.min(self.cap);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = capped.mul_f64(f64::from(nanos % 1000) / 2000.0);
        capped.saturating_sub(jitter)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// Cool-down over: the next call is a trial.
    HalfOpen,
}

impl BreakerState {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
    trial_running: bool,
}

/// The metric names of one kind of chain.
#[derive(Debug)]
struct Names {
    requests: &'static str,
    seconds: &'static str,
    fallbacks: &'static str,
    breaker: &'static str,
}

const CHAT: Names = Names {
    requests: "concierge_llm_requests_total",
    seconds: "concierge_llm_request_seconds",
    fallbacks: "concierge_llm_fallbacks_total",
    breaker: "concierge_llm_breaker_open",
};

const EMBED: Names = Names {
    requests: "concierge_embed_requests_total",
    seconds: "concierge_embed_request_seconds",
    fallbacks: "concierge_embed_fallbacks_total",
    breaker: "concierge_embed_breaker_open",
};

/// One provider in the chain: a chat model, or an embedder.
pub struct Provider<M: ?Sized = dyn ChatModel> {
    name: String,
    model: Arc<M>,
    breaker: Mutex<Breaker>,
    names: &'static Names,
}

impl Provider {
    #[must_use]
    pub fn new(model: Arc<dyn ChatModel>) -> Self {
        Self::build(model.provider().to_owned(), model, &CHAT)
    }
}

impl<M: ?Sized> Provider<M> {
    fn build(name: String, model: Arc<M>, names: &'static Names) -> Self {
        Self {
            name,
            model,
            breaker: Mutex::new(Breaker {
                failures: 0,
                open_until: None,
                trial_running: false,
            }),
            names,
        }
    }

    /// The provider's name, as in metrics and logs.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Breaker> {
        self.breaker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[must_use]
    pub fn state(&self) -> BreakerState {
        let b = self.lock();
        match b.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Whether a call may go to this provider now (a half-open breaker lets one through).
    fn admit(&self) -> bool {
        let mut b = self.lock();
        match b.open_until {
            None => true,
            Some(until) if Instant::now() < until => false,
            Some(_) if b.trial_running => false,
            Some(_) => {
                b.trial_running = true;
                true
            }
        }
    }

    fn success(&self) {
        let mut b = self.lock();
        let was_open = b.open_until.is_some();
        *b = Breaker {
            failures: 0,
            open_until: None,
            trial_running: false,
        };
        drop(b);
        if was_open {
            self.publish(BreakerState::Closed);
        }
    }

    fn failure(&self, policy: &RetryPolicy) {
        let mut b = self.lock();
        b.failures = b.failures.saturating_add(1);
        let trial_failed = b.trial_running;
        b.trial_running = false;
        if trial_failed || b.failures >= policy.breaker_threshold {
            b.open_until = Some(Instant::now() + policy.breaker_cooldown);
            drop(b);
            tracing::warn!(provider = %self.name, "circuit opened");
            self.publish(BreakerState::Open);
        }
    }

    fn publish(&self, state: BreakerState) {
        let value = match state {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 0.5,
            BreakerState::Open => 1.0,
        };
        metrics::gauge!(self.names.breaker, "provider" => self.name.clone()).set(value);
    }
}

/// Providers in fallback order, with retries and breakers: chat models by default, or
/// embedders ([`ResilientEmbedder`]).
pub struct Resilient<M: ?Sized = dyn ChatModel> {
    providers: Vec<Provider<M>>,
    policy: RetryPolicy,
    name: String,
}

/// Embedders in fallback order, with retries and breakers; see [`Resilient::embedders`].
pub type ResilientEmbedder = Resilient<dyn Embedder>;

impl Resilient {
    #[must_use]
    pub fn new(providers: Vec<Arc<dyn ChatModel>>, policy: RetryPolicy) -> Self {
        let providers = providers
            .into_iter()
            .map(|m| (m.provider().to_owned(), m))
            .collect();
        Self::build(providers, policy, &CHAT)
    }
}

impl Resilient<dyn Embedder> {
    /// Embedders in fallback order. Vectors from different models cannot be compared, so
    /// fall back only between providers serving the same model (two regions, a local
    /// replica); [`Embeddings::model`] says which one answered. One call's vectors always
    /// come from one provider: a fallback starts the call over.
    #[must_use]
    pub fn embedders(providers: Vec<Arc<dyn Embedder>>, policy: RetryPolicy) -> Self {
        let providers = providers
            .into_iter()
            .map(|m| (m.provider().to_owned(), m))
            .collect();
        Self::build(providers, policy, &EMBED)
    }
}

impl<M: ?Sized> Resilient<M> {
    fn build(providers: Vec<(String, Arc<M>)>, policy: RetryPolicy, names: &'static Names) -> Self {
        let name = providers
            .iter()
            .map(|(name, _)| name.as_str())
            .collect::<Vec<_>>()
            .join(">");
        Self {
            providers: providers
                .into_iter()
                .map(|(name, model)| Provider::build(name, model, names))
                .collect(),
            policy,
            name,
        }
    }

    #[must_use]
    pub fn providers(&self) -> &[Provider<M>] {
        &self.providers
    }

    /// Runs `call` against each provider in turn, with retries, until one succeeds.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, LlmError>
    where
        F: Fn(Arc<M>) -> Fut,
        Fut: std::future::Future<Output = Result<T, LlmError>>,
    {
        let mut last = LlmError::NotConfigured;
        for (index, provider) in self.providers.iter().enumerate() {
            let name = provider.name.clone();
            let names = provider.names;
            if index > 0 {
                metrics::counter!(names.fallbacks, "to" => name.clone()).increment(1);
            }
            for attempt in 1..=self.policy.max_attempts {
                if !provider.admit() {
                    last = LlmError::CircuitOpen(name.clone());
                    break;
                }
                let started = Instant::now();
                let result = call(provider.model.clone()).await;
                metrics::histogram!(names.seconds, "provider" => name.clone())
                    .record(started.elapsed().as_secs_f64());
                match result {
                    Ok(value) => {
                        provider.success();
                        metrics::counter!(names.requests, "provider" => name, "outcome" => "ok")
                            .increment(1);
                        return Ok(value);
                    }
                    Err(e) => {
                        metrics::counter!(names.requests, "provider" => name.clone(), "outcome" => e.kind())
                            .increment(1);
                        let counts = e.is_retryable() || matches!(e, LlmError::Auth(_));
                        if counts {
                            provider.failure(&self.policy);
                        }
                        // The kind only: a provider's message can quote the request, which holds user text.
                        tracing::warn!(provider = %name, attempt, kind = e.kind(), "model call failed");
                        let wait = match e.retry_after() {
                            Some(d) if d > self.policy.max_retry_after => None,
                            Some(d) => Some(d),
                            None => Some(self.policy.backoff(attempt)),
                        };
                        let again = e.is_retryable() && attempt < self.policy.max_attempts;
                        last = e;
                        match wait {
                            Some(wait) if again => tokio::time::sleep(wait).await,
                            _ => break,
                        }
                    }
                }
            }
        }
        Err(last)
    }
}

#[async_trait]
impl ChatModel for Resilient {
    fn provider(&self) -> &str {
        &self.name
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.run(|model| async move { model.complete(request).await })
            .await
    }

    /// Retries and falls back only until a stream has started; errors inside a started
    /// stream reach the caller, who has already shown part of the answer.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        self.run(|model| async move { model.stream(request).await })
            .await
    }
}

#[async_trait]
impl Embedder for Resilient<dyn Embedder> {
    fn provider(&self) -> &str {
        &self.name
    }

    /// The providers' common length, when they all know it and agree.
    fn dimensions(&self) -> Option<usize> {
        let mut all = self.providers.iter().map(|p| p.model.dimensions());
        let first = all.next()??;
        all.all(|d| d == Some(first)).then_some(first)
    }

    /// Splits the inputs into each provider's batches. A batch that fails is retried on its
    /// own: the batches before it are kept, not paid for again, while the same provider
    /// answers; a fallback provider starts over, so one answer never mixes two providers'
    /// vectors.
    async fn embed(&self, inputs: &[String]) -> Result<Embeddings, LlmError> {
        if inputs.is_empty() {
            return Ok(Embeddings::default());
        }
        // What the last failed attempt had embedded, and with which provider.
        let progress: Mutex<Option<(Arc<dyn Embedder>, Embeddings)>> = Mutex::new(None);
        let progress = &progress;
        self.run(|model| async move {
            let kept = progress
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
                .filter(|(from, _)| Arc::ptr_eq(from, &model));
            let mut done = kept.map(|(_, done)| done).unwrap_or_default();
            let size = model.max_batch().max(1);
            match fill(inputs, size, &mut done, |batch| model.embed(batch)).await {
                Ok(()) => Ok(done),
                Err(e) => {
                    *progress.lock().unwrap_or_else(PoisonError::into_inner) = Some((model, done));
                    Err(e)
                }
            }
        })
        .await
    }
}
