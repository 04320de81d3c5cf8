//! A response cache for identical model requests, so a question asked again within a few
//! minutes costs no second provider call.
//!
//! One [`ResponseCache`] wraps one model and holds every entry; it is not itself a
//! [`ChatModel`]. Callers get one by naming a scope: [`ResponseCache::scoped`] returns a
//! [`Cached`] model whose entries only that scope sees (the agent passes the tenant id), and
//! [`ResponseCache::complete_scoped`] does the same for a single call. There is deliberately
//! no unscoped way in, so a caller cannot forget the tenant and share answers by accident.
//!
//! - **Key.** SHA-256 over a canonical JSON of the scope, the wrapped model's provider name
//!   and every request field (model, system, messages with all their parts, tools,
//!   tool choice, max tokens, temperature). An empty model name stands for the wrapped
//!   model's configured default, which cannot change while this cache (in memory, owning the
//!   model) lives; naming the default explicitly is a different key, a miss and never a
//!   wrong hit.
//! - **What is kept.** Successful answers only, at most
//!   [`CacheConfig::max_entry_bytes`] each (measured as their JSON), for
//!   [`CacheConfig::ttl`] after the call that produced them, and at most
//!   [`CacheConfig::max_entries`] of them: the least recently used goes first. Errors are
//!   never kept. Streams pass through untouched.
//! - **Billing.** An answer served without a provider call of its own has
//!   [`Usage::from_cache`](crate::Usage::from_cache) set; its token counts are the original
//!   call's.
//! - **Concurrent identical misses** are coalesced: the first starts the call, the others
//!   wait for it and share its outcome (its error too, which is then not kept). The call
//!   runs as long as one caller still waits for it; when all have gone, it is dropped.
//!
//! Metric: `concierge_llm_cache_total{result}`: `hit` (no call of its own: a stored answer,
//! or a joined call in flight whose outcome it shares), `miss` (started a call), `store`
//! (that call's answer was kept), `skip` (it succeeded but was over the size cap). A miss
//! whose call fails is neither stored nor skipped.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::{BoxFuture, FutureExt as _, Shared, WeakShared};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
// Tokio's clock so tests can pause and advance time; outside a runtime it is the system's.
use tokio::time::Instant;

use crate::{
    ChatModel, ChatRequest, ChatResponse, EventStream, LlmError, Message, ToolChoice, ToolSpec,
};

/// Bumped whenever the key material changes shape.
const KEY_VERSION: u32 = 1;

/// Bounds of a [`ResponseCache`]. Memory stays under roughly
/// `max_entries * max_entry_bytes` plus a small overhead per entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// Entries kept; the least recently used is evicted beyond it. Zero disables the cache.
    pub max_entries: usize,
    /// How long an answer is served after the call that produced it. Zero disables the cache.
    pub ttl: Duration,
    /// Answers larger than this (as JSON) are not kept.
    pub max_entry_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 1000,
            ttl: Duration::from_secs(300),
            max_entry_bytes: 64 * 1024,
        }
    }
}

impl CacheConfig {
    /// Whether anything can be kept at all.
    #[must_use]
    pub const fn is_enabled(&self) -> bool {
        self.max_entries > 0 && !self.ttl.is_zero() && self.max_entry_bytes > 0
    }
}

type Key = [u8; 32];
type Outcome = Result<ChatResponse, LlmError>;
type Call = BoxFuture<'static, Outcome>;

struct Entry {
    response: ChatResponse,
    stored_at: Instant,
    /// Position in [`Entries::recency`].
    tick: u64,
}

/// The stored answers, with their use order for LRU eviction.
#[derive(Default)]
struct Entries {
    map: HashMap<Key, Entry>,
    /// Last use tick to key, oldest first.
    recency: BTreeMap<u64, Key>,
    tick: u64,
}

impl Entries {
    /// The answer for `key` if it is still fresh; marks it used. An expired one is removed.
    fn get(&mut self, key: &Key, now: Instant, ttl: Duration) -> Option<ChatResponse> {
        let entry = self.map.get_mut(key)?;
        let old_tick = entry.tick;
        self.recency.remove(&old_tick);
        if now.saturating_duration_since(entry.stored_at) >= ttl {
            self.map.remove(key);
            return None;
        }
        self.tick += 1;
        entry.tick = self.tick;
        self.recency.insert(self.tick, *key);
        Some(entry.response.clone())
    }

    fn insert(&mut self, key: Key, response: ChatResponse, now: Instant, max_entries: usize) {
        if let Some(old) = self.map.remove(&key) {
            self.recency.remove(&old.tick);
        }
        while self.map.len() >= max_entries {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.map.remove(&oldest);
        }
        self.tick += 1;
        self.recency.insert(self.tick, key);
        self.map.insert(
            key,
            Entry {
                response,
                stored_at: now,
                tick: self.tick,
            },
        );
    }
}

#[derive(Default)]
struct State {
    entries: Entries,
    /// Calls in flight, by key. Weak, so a call every caller gave up on is dropped; the id
    /// tells a call's own entry from a later one for the same key.
    flights: HashMap<Key, (u64, WeakShared<Call>)>,
    next_flight: u64,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic under the lock leaves at worst a stale entry or flight; keep serving.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Answers of one model, kept per scope. See the module documentation.
pub struct ResponseCache {
    inner: Arc<dyn ChatModel>,
    config: CacheConfig,
    state: Arc<Mutex<State>>,
}

impl ResponseCache {
    #[must_use]
    pub fn new(inner: Arc<dyn ChatModel>, config: CacheConfig) -> Arc<Self> {
        Arc::new(Self {
            inner,
            config,
            state: Arc::new(Mutex::new(State::default())),
        })
    }

    /// The model as seen by one scope (a tenant): its answers are kept for that scope alone.
    #[must_use]
    pub fn scoped(self: &Arc<Self>, scope: impl Into<Arc<str>>) -> Cached {
        Cached {
            cache: Arc::clone(self),
            scope: scope.into(),
        }
    }

    #[must_use]
    pub const fn config(&self) -> CacheConfig {
        self.config
    }

    /// The wrapped model.
    #[must_use]
    pub fn inner(&self) -> &Arc<dyn ChatModel> {
        &self.inner
    }

    /// Entries held, expired ones not yet evicted included.
    #[must_use]
    pub fn len(&self) -> usize {
        lock(&self.state).entries.map.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every stored answer (calls in flight still complete, and are kept).
    pub fn clear(&self) {
        lock(&self.state).entries = Entries::default();
    }

    /// Completes `request` for `scope`: the stored answer when there is a fresh one, the
    /// outcome of an identical call in flight, or else a new call to the wrapped model.
    ///
    /// # Errors
    /// The wrapped model's error (never stored).
    pub async fn complete_scoped(&self, scope: &str, request: &ChatRequest) -> Outcome {
        if !self.config.is_enabled() {
            return self.inner.complete(request).await;
        }
        let Some(key) = key(scope, self.inner.provider(), request) else {
            return self.inner.complete(request).await;
        };
        let (call, joined) = {
            let mut state = lock(&self.state);
            if let Some(mut response) = state.entries.get(&key, Instant::now(), self.config.ttl) {
                drop(state);
                count("hit");
                response.usage.from_cache = true;
                return Ok(response);
            }
            let running = state.flights.get(&key).and_then(|(_, f)| f.upgrade());
            match running {
                Some(call) => (call, true),
                None => (self.start(&mut state, key, request), false),
            }
        };
        count(if joined { "hit" } else { "miss" });
        let mut outcome = call.await;
        if joined && let Ok(response) = &mut outcome {
            response.usage.from_cache = true;
        }
        outcome
    }

    /// Registers a new call for `key`. It stores its own answer when it finishes, so the
    /// answer is kept even if the caller that started it has gone.
    fn start(&self, state: &mut State, key: Key, request: &ChatRequest) -> Shared<Call> {
        state.next_flight += 1;
        let id = state.next_flight;
        let inner = Arc::clone(&self.inner);
        let shared_state = Arc::clone(&self.state);
        let config = self.config;
        let request = request.clone();
        let call: Call = Box::pin(async move {
            let outcome = inner.complete(&request).await;
            let keep = match &outcome {
                Ok(response) if size(response) <= config.max_entry_bytes => Some(response.clone()),
                _ => None,
            };
            let kept = keep.is_some();
            {
                let mut state = lock(&shared_state);
                if state.flights.get(&key).is_some_and(|(f, _)| *f == id) {
                    state.flights.remove(&key);
                }
                if let Some(response) = keep {
                    state
                        .entries
                        .insert(key, response, Instant::now(), config.max_entries);
                }
            }
            match (&outcome, kept) {
                (Ok(_), true) => count("store"),
                (Ok(_), false) => count("skip"),
                (Err(_), _) => {}
            }
            outcome
        });
        let call = call.shared();
        // Calls nobody waits for any more leave a dead entry behind; drop those now.
        state.flights.retain(|_, (_, f)| f.upgrade().is_some());
        if let Some(weak) = call.downgrade() {
            state.flights.insert(key, (id, weak));
        }
        call
    }
}

/// A model whose answers are cached for one scope. Cheap to clone and to make per call.
#[derive(Clone)]
pub struct Cached {
    cache: Arc<ResponseCache>,
    scope: Arc<str>,
}

impl Cached {
    #[must_use]
    pub fn scope(&self) -> &str {
        &self.scope
    }

    #[must_use]
    pub fn cache(&self) -> &Arc<ResponseCache> {
        &self.cache
    }
}

#[async_trait]
impl ChatModel for Cached {
    fn provider(&self) -> &str {
        self.cache.inner.provider()
    }

    async fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, LlmError> {
        self.cache.complete_scoped(&self.scope, request).await
    }

    /// Not cached: a stream is shown as it arrives, and replaying one would only fake that.
    async fn stream(&self, request: &ChatRequest) -> Result<EventStream, LlmError> {
        self.cache.inner.stream(request).await
    }
}

fn count(result: &'static str) {
    metrics::counter!("concierge_llm_cache_total", "result" => result).increment(1);
}

/// What the key is computed from. JSON is self-delimiting, so two different values never
/// serialise to the same bytes.
#[derive(Serialize)]
struct KeyMaterial<'a> {
    version: u32,
    scope: &'a str,
    provider: &'a str,
    model: &'a str,
    system: Option<&'a str>,
    messages: &'a [Message],
    tools: &'a [ToolSpec],
    tool_choice: &'a ToolChoice,
    max_tokens: u32,
    /// As bits: JSON has no NaN, and serde_json would write it as `null`, like `None`.
    temperature: Option<u32>,
}

/// The cache key; None if the request cannot be serialised (then it is not cached).
fn key(scope: &str, provider: &str, request: &ChatRequest) -> Option<Key> {
    // Destructured in full so that a new request field does not compile until it is keyed.
    let ChatRequest {
        model,
        system,
        messages,
        tools,
        tool_choice,
        max_tokens,
        temperature,
    } = request;
    let material = KeyMaterial {
        version: KEY_VERSION,
        scope,
        provider,
        model,
        system: system.as_deref(),
        messages,
        tools,
        tool_choice,
        max_tokens: *max_tokens,
        temperature: temperature.map(f32::to_bits),
    };
    let mut hasher = HashWriter(Sha256::new());
    serde_json::to_writer(&mut hasher, &material).ok()?;
    Some(hasher.0.finalize().into())
}

/// The answer's size as JSON, without building the JSON.
fn size(response: &ChatResponse) -> usize {
    let mut counter = ByteCounter(0);
    match serde_json::to_writer(&mut counter, response) {
        Ok(()) => counter.0,
        Err(_) => usize::MAX,
    }
}

struct HashWriter(Sha256);

impl io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

struct ByteCounter(usize);

impl io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests;
