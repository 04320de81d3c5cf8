//! Hybrid retrieval over a tenant's knowledge base: full-text search always and, with an
//! embedding model, the cosine similarity of the entries' stored vectors, the two rankings
//! fused by reciprocal rank; and the indexer that keeps those vectors current.
//!
//! Search never fails for want of vectors: when the query cannot be embedded in time, or
//! the vectors cannot be read, it answers from full text alone and counts
//! `concierge_retrieval_degraded_total{reason="timeout"|"embedder"|"store"}`; its latency is
//! `concierge_retrieval_seconds{mode="fts"|"hybrid"}`, and indexing counts
//! `concierge_retrieval_indexed_total{outcome="embedded"|"refused"}`.
//!
//! Vectors are stored per vector space, the model as the provider names it and the
//! vectors' length (`text-embedding-3-small@1536`), so a new model or a new length
//! re-embeds everything instead of comparing vectors that cannot be compared.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use domain::{KbEntryId, TenantId};
use llm::{Embedder, Embeddings, LlmError};
use sha2::{Digest as _, Sha256};
use store::{KbEntry, KbHit, Page, Store, StoreError};

/// How search and indexing behave; the defaults suit knowledge bases of thousands of
/// entries.
#[derive(Clone, Debug)]
pub struct RetrieverConfig {
    /// How long a search waits for the query's vector before answering from full text.
    pub query_timeout: Duration,
    /// How long a tenant's vectors are kept in memory between searches. Entries edited or
    /// deleted within that time are still found by their old vector (deleted ones are
    /// never returned).
    pub cache_ttl: Duration,
    /// The most bytes of vectors kept in memory, all tenants together; the tenants loaded
    /// longest ago go first.
    pub cache_bytes: usize,
    /// Vector matches below this cosine similarity are dropped, so that unrelated entries
    /// do not come back just because the knowledge base is small.
    pub min_similarity: f32,
    /// Reciprocal rank fusion's constant: an entry ranked `r` in a list scores
    /// `1 / (rrf_k + r)`.
    pub rrf_k: f64,
    /// Entries per page of indexing (and per call to the embedder, which may split it
    /// further), for [`Retriever::index_all`].
    pub index_batch: usize,
    /// The longest text embedded, in bytes of UTF-8: longer entries and queries are cut,
    /// so one long entry cannot fail every indexing pass.
    pub max_input_bytes: usize,
}

impl Default for RetrieverConfig {
    fn default() -> Self {
        Self {
            query_timeout: Duration::from_secs(2),
            cache_ttl: Duration::from_secs(30),
            cache_bytes: 64 * 1024 * 1024,
            min_similarity: 0.2,
            rrf_k: 60.0,
            index_batch: 64,
            max_input_bytes: 8 * 1024,
        }
    }
}

/// Why indexing stopped.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The embedder failed (other than by refusing one entry, which is skipped).
    #[error("embedding failed: {0}")]
    Embed(#[from] LlmError),
}

/// Searches a tenant's knowledge base, and keeps its vectors current. Share one per process
/// (behind an `Arc`): it caches vectors.
pub struct Retriever {
    store: Arc<dyn Store>,
    embedder: Option<Arc<dyn Embedder>>,
    config: RetrieverConfig,
    /// The vector space of the embedder's last answer; None before the first.
    space: Mutex<Option<String>>,
    cache: Mutex<VectorCache>,
}

impl Retriever {
    /// Without an embedder, search is full text only and indexing does nothing.
    #[must_use]
    pub fn new(
        store: Arc<dyn Store>,
        embedder: Option<Arc<dyn Embedder>>,
        config: RetrieverConfig,
    ) -> Self {
        Self {
            store,
            embedder,
            config,
            space: Mutex::new(None),
            cache: Mutex::new(VectorCache::default()),
        }
    }

    /// The tenant's entries best matching `query`, best first, at most `limit` (1 to 50).
    /// With an embedder the scores are reciprocal-rank-fusion scores; answering from full
    /// text alone, they are full-text scores. Either way they compare only within one
    /// search.
    ///
    /// # Errors
    /// The full-text search failed. A failing embedder or vector read only degrades the
    /// search to full text.
    pub async fn search(
        &self,
        tenant: TenantId,
        query: &str,
        limit: u32,
    ) -> Result<Vec<KbHit>, StoreError> {
        let started = Instant::now();
        let limit = limit.clamp(1, 50);
        let (hits, mode) = match &self.embedder {
            // Nothing to embed: no words, so no meaning either.
            Some(embedder) if query.chars().any(char::is_alphanumeric) => {
                self.hybrid(embedder.as_ref(), tenant, query, limit).await?
            }
            _ => (self.store.search_kb(tenant, query, limit).await?, "fts"),
        };
        metrics::histogram!("concierge_retrieval_seconds", "mode" => mode)
            .record(started.elapsed().as_secs_f64());
        Ok(hits)
    }

    async fn hybrid(
        &self,
        embedder: &dyn Embedder,
        tenant: TenantId,
        query: &str,
        limit: u32,
    ) -> Result<(Vec<KbHit>, &'static str), StoreError> {
        // Twice the answer from each side, so fusion has something to reorder.
        let fetch = limit.saturating_mul(2);
        let (fts, embedded) = tokio::join!(
            self.store.search_kb(tenant, query, fetch),
            self.embed_query(embedder, query),
        );
        let mut fts = fts?;
        let vector_hits = match embedded {
            Ok((space, vector)) => match self.vectors(tenant, &space).await {
                Ok(stored) => Ok(self.nearest(&vector, &stored, fetch as usize)),
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "could not read the knowledge base's vectors; full-text search only");
                    Err("store")
                }
            },
            Err(reason) => Err(reason),
        };
        let nearest = match vector_hits {
            Ok(nearest) => nearest,
            Err(reason) => {
                metrics::counter!("concierge_retrieval_degraded_total", "reason" => reason)
                    .increment(1);
                fts.truncate(limit as usize);
                return Ok((fts, "fts"));
            }
        };

        let fts_ids: Vec<KbEntryId> = fts.iter().map(|h| h.entry.id).collect();
        let vector_ids: Vec<KbEntryId> = nearest.iter().map(|(id, _)| *id).collect();
        let fused = fuse(&[&fts_ids, &vector_ids], self.config.rrf_k);
        let mut entries: HashMap<KbEntryId, KbEntry> =
            fts.into_iter().map(|h| (h.entry.id, h.entry)).collect();
        let missing: Vec<KbEntryId> = fused
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !entries.contains_key(id))
            .collect();
        if !missing.is_empty() {
            // Entries deleted since their vectors were cached are simply not found.
            for entry in self.store.get_kb_entries(tenant, &missing).await? {
                entries.insert(entry.id, entry);
            }
        }
        let hits = fused
            .into_iter()
            .filter_map(|(id, score)| {
                let entry = entries.remove(&id)?;
                (entry.tenant_id == tenant).then_some(KbHit { entry, score })
            })
            .take(limit as usize)
            .collect();
        Ok((hits, "hybrid"))
    }

    /// The query's vector and its space, within the time limit; else why not, as a metric
    /// label.
    async fn embed_query(
        &self,
        embedder: &dyn Embedder,
        query: &str,
    ) -> Result<(String, Vec<f32>), &'static str> {
        let input = [clip(query, self.config.max_input_bytes).to_owned()];
        let answer =
            match tokio::time::timeout(self.config.query_timeout, embedder.embed(&input)).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(e)) => {
                    tracing::warn!(
                        provider = embedder.provider(),
                        kind = e.kind(),
                        "could not embed a knowledge-base query; full-text search only"
                    );
                    return Err("embedder");
                }
                Err(_) => {
                    tracing::warn!(
                        provider = embedder.provider(),
                        timeout_ms = self.config.query_timeout.as_millis(),
                        "embedding a knowledge-base query timed out; full-text search only"
                    );
                    return Err("timeout");
                }
            };
        let space = self.learn_space(embedder, &answer);
        match (space, answer.vectors.into_iter().next()) {
            (Some(space), Some(vector)) => Ok((space, vector)),
            _ => {
                tracing::warn!(
                    provider = embedder.provider(),
                    "the embedder answered a knowledge-base query without a vector"
                );
                Err("embedder")
            }
        }
    }

    /// The stored vectors closest to `query`, at least `min_similarity`, best first, at most
    /// `limit`.
    fn nearest(
        &self,
        query: &[f32],
        stored: &[(KbEntryId, Vec<f32>)],
        limit: usize,
    ) -> Vec<(KbEntryId, f32)> {
        let mut scored: Vec<(KbEntryId, f32)> = stored
            .iter()
            .filter_map(|(id, vector)| {
                let similarity = llm::cosine(query, vector);
                (similarity >= self.config.min_similarity).then_some((*id, similarity))
            })
            .collect();
        scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(limit);
        scored
    }

    /// The tenant's vectors of `space`, from the cache while fresh.
    async fn vectors(&self, tenant: TenantId, space: &str) -> Result<Vectors, StoreError> {
        if let Some(cached) = self.lock_cache().get(tenant, space, self.config.cache_ttl) {
            return Ok(cached);
        }
        // Loaded outside the lock: two searches of a cold tenant may both load it.
        let loaded = Arc::new(self.store.kb_embeddings(tenant, space).await?);
        self.lock_cache().insert(
            tenant,
            space,
            loaded.clone(),
            self.config.cache_ttl,
            self.config.cache_bytes,
        );
        Ok(loaded)
    }

    /// Embeds the tenant's entries that have no vector of the current space, or a stale
    /// one, `batch` at a time (at most 200), and stores their vectors; returns how many.
    /// An entry the embedder refuses (a 4xx for that input) is skipped with a warning and
    /// tried again on the next call. Nothing to do without an embedder.
    ///
    /// # Errors
    /// The store failed, or the embedder did (unavailable, timed out, malformed answers);
    /// the vectors stored before that are kept.
    pub async fn index_tenant(&self, tenant: TenantId, batch: usize) -> Result<usize, IndexError> {
        let Some(embedder) = &self.embedder else {
            return Ok(0);
        };
        let embedder = embedder.as_ref();
        let space = match self.current_space() {
            Some(space) => space,
            None => self.probe(embedder).await?,
        };
        let limit = u32::try_from(batch).unwrap_or(u32::MAX);
        let mut before = None;
        let mut embedded = 0;
        let result = loop {
            let page = Page::new(limit, before);
            let entries = self.store.kb_entries_to_embed(tenant, &space, page).await?;
            let Some(last) = entries.last() else {
                break Ok(embedded);
            };
            before = Some(last.id.into_uuid());
            match self.embed_entries(embedder, tenant, &entries).await {
                Ok((count, answered_space)) => {
                    embedded += count;
                    // Another vector space answered (the model was changed): what was
                    // stored is right for it, and the next pass lists entries for it.
                    if answered_space.is_some_and(|s| s != space) {
                        break Ok(embedded);
                    }
                }
                Err((count, e)) => {
                    embedded += count;
                    break Err(e);
                }
            }
            if entries.len() < page.limit as usize {
                break Ok(embedded);
            }
        };
        if embedded > 0 {
            // This process's searches see the new vectors at once.
            self.lock_cache().forget(tenant);
        }
        result
    }

    /// Embeds and stores one page of entries: how many were stored and in which space, or
    /// how many were stored before the error.
    async fn embed_entries(
        &self,
        embedder: &dyn Embedder,
        tenant: TenantId,
        entries: &[KbEntry],
    ) -> Result<(usize, Option<String>), (usize, IndexError)> {
        let texts: Vec<String> = entries.iter().map(|e| self.input(e)).collect();
        match embedder.embed(&texts).await {
            Ok(answer) => {
                let space = self.learn_space(embedder, &answer);
                let Some(space) = space else {
                    return Ok((0, None));
                };
                let mut stored = 0;
                for (entry, vector) in entries.iter().zip(&answer.vectors) {
                    stored += self
                        .store_vector(tenant, entry, &space, vector)
                        .await
                        .map_err(|e| (stored, e))?;
                }
                Ok((stored, Some(space)))
            }
            // One input refused fails the request: find it, and store the others.
            Err(LlmError::BadRequest { .. }) if entries.len() > 1 => {
                let mut stored = 0;
                let mut space = None;
                for (entry, text) in entries.iter().zip(texts) {
                    match embedder.embed(&[text]).await {
                        Ok(answer) => {
                            let answered = self.learn_space(embedder, &answer);
                            if let (Some(s), Some(vector)) = (&answered, answer.vectors.first()) {
                                stored += self
                                    .store_vector(tenant, entry, s, vector)
                                    .await
                                    .map_err(|e| (stored, e))?;
                            }
                            space = answered.or(space);
                        }
                        Err(LlmError::BadRequest { status, .. }) => refused(tenant, entry, status),
                        Err(e) => return Err((stored, e.into())),
                    }
                }
                Ok((stored, space))
            }
            Err(LlmError::BadRequest { status, .. }) => {
                if let Some(entry) = entries.first() {
                    refused(tenant, entry, status);
                }
                Ok((0, None))
            }
            Err(e) => Err((0, e.into())),
        }
    }

    /// Stores one vector: 1, or 0 when the entry was deleted meanwhile.
    async fn store_vector(
        &self,
        tenant: TenantId,
        entry: &KbEntry,
        space: &str,
        vector: &[f32],
    ) -> Result<usize, IndexError> {
        match self
            .store
            .put_kb_embedding(tenant, entry, space, &content_hash(entry), vector)
            .await
        {
            Ok(()) => {
                metrics::counter!("concierge_retrieval_indexed_total", "outcome" => "embedded")
                    .increment(1);
                Ok(1)
            }
            Err(StoreError::NotFound) => Ok(0),
            Err(e) => Err(e.into()),
        }
    }

    /// [`index_tenant`](Self::index_tenant) for every tenant, `index_batch` at a time;
    /// returns how many entries were embedded. A tenant the store fails on is skipped with
    /// a warning.
    ///
    /// # Errors
    /// The tenants cannot be listed, or the embedder failed (every tenant would fail the
    /// same way, so the pass stops there).
    pub async fn index_all(&self) -> Result<usize, IndexError> {
        if self.embedder.is_none() {
            return Ok(0);
        }
        let mut embedded = 0;
        for tenant in self.store.list_tenants().await? {
            match self.index_tenant(tenant.id, self.config.index_batch).await {
                Ok(count) => embedded += count,
                Err(IndexError::Store(e)) => {
                    tracing::warn!(tenant = %tenant.id, error = %e, "could not index the knowledge base");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(embedded)
    }

    /// Runs [`index_all`](Self::index_all) now and then every `interval`, until `shutdown`
    /// turns true or its sender is dropped; a pass in progress is abandoned (what it stored
    /// is kept).
    pub async fn index_loop(
        self: Arc<Self>,
        interval: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        if *shutdown.borrow_and_update() {
            return;
        }
        loop {
            let stop = tokio::select! {
                changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
                _ = ticks.tick() => {
                    tokio::select! {
                        changed = shutdown.changed() => changed.is_err() || *shutdown.borrow(),
                        result = self.index_all() => {
                            match result {
                                Ok(0) => {}
                                Ok(count) => tracing::info!(count, "knowledge-base entries embedded"),
                                Err(e) => tracing::warn!(error = %e, "knowledge-base indexing pass failed"),
                            }
                            false
                        }
                    }
                }
            };
            if stop {
                return;
            }
        }
    }

    /// The text embedded for an entry: what [`content_hash`] hashes, cut to the limit.
    fn input(&self, entry: &KbEntry) -> String {
        let text = format!("{}\n{}", entry.title, entry.body);
        clip(&text, self.config.max_input_bytes).to_owned()
    }

    fn current_space(&self) -> Option<String> {
        self.space
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The vector space of an answer, remembered as the current one.
    fn learn_space(&self, embedder: &dyn Embedder, answer: &Embeddings) -> Option<String> {
        let dims = answer.dimensions().filter(|d| *d > 0)?;
        let model = if answer.model.is_empty() {
            embedder.provider()
        } else {
            &answer.model
        };
        let space = format!("{model}@{dims}");
        *self.space.lock().unwrap_or_else(PoisonError::into_inner) = Some(space.clone());
        Some(space)
    }

    /// Learns the vector space before any answer: one tiny call.
    async fn probe(&self, embedder: &dyn Embedder) -> Result<String, IndexError> {
        let answer = embedder.embed(&["vector space probe".to_owned()]).await?;
        self.learn_space(embedder, &answer)
            .ok_or_else(|| IndexError::Embed(LlmError::Malformed("no vector for the probe".into())))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, VectorCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn refused(tenant: TenantId, entry: &KbEntry, status: u16) {
    metrics::counter!("concierge_retrieval_indexed_total", "outcome" => "refused").increment(1);
    tracing::warn!(%tenant, entry = %entry.id, status, "the embedder refused a knowledge-base entry; it is tried again on the next pass");
}

/// The SHA-256 of an entry's title, a line feed and its body: what its vector is made
/// from.
#[must_use]
pub fn content_hash(entry: &KbEntry) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(entry.title.as_bytes());
    hasher.update(b"\n");
    hasher.update(entry.body.as_bytes());
    hasher.finalize().into()
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Reciprocal rank fusion: each list adds `1 / (k + rank)` (ranks from 1) to its entries'
/// scores. Best first; ties go to the better single rank, then to the lower id, so the
/// order is stable.
fn fuse(lists: &[&[KbEntryId]], k: f64) -> Vec<(KbEntryId, f64)> {
    let mut scores: HashMap<KbEntryId, (f64, usize)> = HashMap::new();
    for list in lists {
        for (index, id) in list.iter().enumerate() {
            let rank = index + 1;
            #[allow(clippy::cast_precision_loss)] // ranks are small
            let add = 1.0 / (k + rank as f64);
            let score = scores.entry(*id).or_insert((0.0, rank));
            score.0 += add;
            score.1 = score.1.min(rank);
        }
    }
    let mut fused: Vec<(KbEntryId, f64, usize)> = scores
        .into_iter()
        .map(|(id, (score, best))| (id, score, best))
        .collect();
    fused.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.2.cmp(&b.2)).then(a.0.cmp(&b.0)));
    fused
        .into_iter()
        .map(|(id, score, _)| (id, score))
        .collect()
}

/// A tenant's vectors of one space, shared between searches.
type Vectors = Arc<Vec<(KbEntryId, Vec<f32>)>>;

/// The vectors of recently searched tenants, within a byte budget.
#[derive(Default)]
struct VectorCache {
    spaces: HashMap<(TenantId, String), Cached>,
    bytes: usize,
}

struct Cached {
    loaded: Instant,
    bytes: usize,
    vectors: Vectors,
}

impl VectorCache {
    fn get(&self, tenant: TenantId, space: &str, ttl: Duration) -> Option<Vectors> {
        let cached = self.spaces.get(&(tenant, space.to_owned()))?;
        (cached.loaded.elapsed() < ttl).then(|| cached.vectors.clone())
    }

    fn insert(
        &mut self,
        tenant: TenantId,
        space: &str,
        vectors: Vectors,
        ttl: Duration,
        budget: usize,
    ) {
        let bytes = vectors
            .iter()
            .map(|(_, v)| v.len() * size_of::<f32>() + size_of::<(KbEntryId, Vec<f32>)>())
            .sum::<usize>();
        self.remove(&(tenant, space.to_owned()));
        let expired: Vec<_> = self
            .spaces
            .iter()
            .filter(|(_, c)| c.loaded.elapsed() >= ttl)
            .map(|(key, _)| key.clone())
            .collect();
        for key in expired {
            self.remove(&key);
        }
        if bytes > budget {
            return;
        }
        while self.bytes + bytes > budget {
            let Some(oldest) = self
                .spaces
                .iter()
                .min_by_key(|(_, c)| c.loaded)
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
        self.bytes += bytes;
        self.spaces.insert(
            (tenant, space.to_owned()),
            Cached {
                loaded: Instant::now(),
                bytes,
                vectors,
            },
        );
    }

    fn forget(&mut self, tenant: TenantId) {
        let keys: Vec<_> = self
            .spaces
            .keys()
            .filter(|(t, _)| *t == tenant)
            .cloned()
            .collect();
        for key in keys {
            self.remove(&key);
        }
    }

    fn remove(&mut self, key: &(TenantId, String)) {
        if let Some(cached) = self.spaces.remove(key) {
            self.bytes -= cached.bytes;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> KbEntryId {
        KbEntryId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    #[test]
    fn fusion_puts_entries_found_both_ways_first() {
        let (a, b, c, d) = (id(1), id(2), id(3), id(4));
        // a is first in full text only, c first by vector only; b is second in both.
        let fused = fuse(&[&[a, b, d], &[c, b]], 60.0);
        let order: Vec<KbEntryId> = fused.iter().map(|(id, _)| *id).collect();
        assert_eq!(order, vec![b, a, c, d]);
        assert!((fused[0].1 - 2.0 / 62.0).abs() < 1e-12);
        assert!((fused[1].1 - 1.0 / 61.0).abs() < 1e-12);
        assert!((fused[3].1 - 1.0 / 63.0).abs() < 1e-12);
        // With one list, fusion keeps its order.
        let alone: Vec<KbEntryId> = fuse(&[&[d, a, c], &[]], 60.0)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(alone, vec![d, a, c]);
        assert!(fuse(&[&[], &[]], 60.0).is_empty());
    }

    #[test]
    fn inputs_are_cut_on_a_character_boundary() {
        assert_eq!(clip("héllo", 2), "h");
        assert_eq!(clip("héllo", 3), "hé");
        assert_eq!(clip("hello", 10), "hello");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn the_content_hash_is_sha256_of_title_newline_body() {
        let entry = KbEntry {
            id: id(1),
            tenant_id: TenantId::new(),
            title: "a".into(),
            body: "b".into(),
            created_at: jiff::Timestamp::UNIX_EPOCH,
            updated_at: jiff::Timestamp::UNIX_EPOCH,
        };
        let expected: [u8; 32] = Sha256::digest(b"a\nb").into();
        assert_eq!(content_hash(&entry), expected);
    }

    #[test]
    fn the_cache_keeps_within_its_budget_and_forgets_expired_tenants() {
        let ttl = Duration::from_secs(60);
        let vectors = |n: usize| Arc::new(vec![(id(1), vec![0.0_f32; n])]);
        let one = size_of::<(KbEntryId, Vec<f32>)>() + 100 * 4;
        let mut cache = VectorCache::default();
        let (t, u, v) = (TenantId::new(), TenantId::new(), TenantId::new());
        cache.insert(t, "m@100", vectors(100), ttl, 2 * one);
        cache.insert(u, "m@100", vectors(100), ttl, 2 * one);
        assert_eq!(cache.bytes, 2 * one);
        // A third tenant evicts the one loaded first.
        cache.insert(v, "m@100", vectors(100), ttl, 2 * one);
        assert!(cache.get(t, "m@100", ttl).is_none());
        assert!(cache.get(u, "m@100", ttl).is_some());
        assert!(cache.get(v, "m@100", ttl).is_some());
        assert!(cache.get(v, "other@100", ttl).is_none());
        assert_eq!(cache.bytes, 2 * one);
        // Larger than the whole budget: not cached.
        cache.insert(t, "m@1000", vectors(1000), ttl, 2 * one);
        assert!(cache.get(t, "m@1000", ttl).is_none());
        // Expired entries are not served.
        assert!(cache.get(u, "m@100", Duration::ZERO).is_none());
        cache.forget(u);
        assert!(cache.get(u, "m@100", ttl).is_none());
        assert_eq!(cache.bytes, one);
    }
}
