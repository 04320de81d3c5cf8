//! Which model answers a tenant's turns: the tenant's own providers when it set some (its
//! keys, endpoints and models, a fallback chain in its order), else the installation's.
//! Tenant settings are stored sealed with the tenant's data key (they hold API keys), and
//! the chain built from them is kept for a few seconds per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::TenantId;
use llm::{
    CacheConfig, ChatModel, HttpSettings, ModelSettings, PriceTable, ResponseCache, RetryPolicy,
};
use store::Store;

use crate::TurnError;
use crate::tools::{Sealer, columns};

/// How long a tenant's chain is reused before its settings are read again (a change made
/// through another process shows within this time; through this one, at once).
const TTL: Duration = Duration::from_secs(10);
/// Tenants whose chain is kept; past this the oldest half is dropped.
const MAX_TENANTS: usize = 10_000;

/// A model to answer with, its prices, and its response cache when caching is on.
pub struct ModelChoice {
    pub chat: Arc<dyn ChatModel>,
    pub prices: PriceTable,
    pub cache: Option<Arc<ResponseCache>>,
}

impl ModelChoice {
    #[must_use]
    pub fn installation(
        chat: Arc<dyn ChatModel>,
        prices: PriceTable,
        cache: Option<Arc<ResponseCache>>,
    ) -> Self {
        Self {
            chat,
            prices,
            cache,
        }
    }
}

/// How tenants' own chains are built.
#[derive(Clone, Debug)]
pub struct TenantModelsConfig {
    /// Time limits of tenant providers; `public_only` is set unless `allow_private`.
    pub http: HttpSettings,
    pub policy: RetryPolicy,
    /// Whether tenant endpoints may be `http` or internal addresses (an installation whose
    /// tenants run model servers on its own network); off by default.
    pub allow_private: bool,
    /// The response cache settings for tenant chains (disabled: no cache).
    pub cache: CacheConfig,
}

impl Default for TenantModelsConfig {
    fn default() -> Self {
        Self {
            http: HttpSettings::default(),
            policy: RetryPolicy::default(),
            allow_private: false,
            cache: CacheConfig {
                ttl: Duration::ZERO,
                ..CacheConfig::default()
            },
        }
    }
}

type Cached = (Instant, Option<Arc<ModelChoice>>);

pub struct Models {
    installation: Option<Arc<ModelChoice>>,
    store: Arc<dyn Store>,
    config: TenantModelsConfig,
    tenants: Mutex<HashMap<TenantId, Cached>>,
}

impl Models {
    #[must_use]
    pub fn new(
        installation: Option<ModelChoice>,
        store: Arc<dyn Store>,
        config: TenantModelsConfig,
    ) -> Self {
        Self {
            installation: installation.map(Arc::new),
            store,
            config,
            tenants: Mutex::new(HashMap::new()),
        }
    }

    /// The installation's prices: the base every tenant's own table overlays.
    fn base_prices(&self) -> PriceTable {
        self.installation
            .as_ref()
            .map_or_else(PriceTable::default, |m| m.prices.clone())
    }

    /// The model for `tenant`'s turns; None when there is none (the offline engine answers).
    /// Stored settings that can no longer be used (unreadable, or refused by today's
    /// endpoint policy) leave the tenant with no model rather than on the installation's
    /// account: the offline engine answers and a warning says why.
    pub async fn for_tenant(
        &self,
        tenant: TenantId,
        sealer: &dyn Sealer,
    ) -> Result<Option<Arc<ModelChoice>>, TurnError> {
        if let Some((at, choice)) = self.lock().get(&tenant)
            && at.elapsed() < TTL
        {
            return Ok(choice.clone().or_else(|| self.installation.clone()));
        }
        let sealed = self.store.model_settings(tenant).await?;
        let choice = sealed.map(|sealed| self.build(tenant, sealer, &sealed));
        let mut tenants = self.lock();
        if tenants.len() >= MAX_TENANTS {
            let mut ages: Vec<(TenantId, Instant)> =
                tenants.iter().map(|(t, (at, _))| (*t, *at)).collect();
            ages.sort_by_key(|(_, at)| *at);
            for (t, _) in ages.into_iter().take(MAX_TENANTS / 2) {
                tenants.remove(&t);
            }
        }
        let resolved = match choice {
            // No settings: the installation's model.
            None => {
                tenants.insert(tenant, (Instant::now(), None));
                self.installation.clone()
            }
            Some(built) => {
                tenants.insert(tenant, (Instant::now(), Some(built.clone())));
                Some(built)
            }
        };
        Ok(resolved)
    }

    /// Builds the tenant's chain; settings that cannot be used give a chain that always
    /// fails as not configured (so the offline engine answers).
    fn build(&self, tenant: TenantId, sealer: &dyn Sealer, sealed: &[u8]) -> Arc<ModelChoice> {
        let built = sealer
            .open(columns::MODEL_SETTINGS, sealed)
            .map_err(|e| e.to_string())
            .and_then(|json| {
                serde_json::from_str::<ModelSettings>(&json).map_err(|e| e.to_string())
            })
            .and_then(|settings| {
                settings
                    .validate(self.config.allow_private)
                    .map_err(|e| e.to_string())?;
                let mut http = self.config.http;
                http.public_only = !self.config.allow_private;
                let chat = settings
                    .build(http, self.config.policy)
                    .map_err(|e| e.to_string())?;
                Ok((chat, settings.prices(&self.base_prices())))
            });
        match built {
            Ok((chat, prices)) => {
                let cache = self
                    .config
                    .cache
                    .is_enabled()
                    .then(|| ResponseCache::new(chat.clone(), self.config.cache));
                Arc::new(ModelChoice {
                    chat,
                    prices,
                    cache,
                })
            }
            Err(reason) => {
                tracing::warn!(%tenant, reason, "the tenant's model settings cannot be used; the offline engine answers");
                metrics::counter!("concierge_tenant_model_errors_total").increment(1);
                Arc::new(ModelChoice {
                    chat: Arc::new(Unusable),
                    prices: PriceTable::default(),
                    cache: None,
                })
            }
        }
    }

    /// Whether this process knows (from fresh cached settings) that the tenant has no model:
    /// no settings of its own and no installation model.
    #[must_use]
    pub fn known_without_model(&self, tenant: TenantId) -> bool {
        self.installation.is_none()
            && self
                .lock()
                .get(&tenant)
                .is_some_and(|(at, choice)| choice.is_none() && at.elapsed() < TTL)
    }

    /// Drops what this process keeps of the tenant's settings (after they changed here).
    pub fn forget(&self, tenant: TenantId) {
        self.lock().remove(&tenant);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Cached>> {
        self.tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The chain of settings that cannot be used: every call fails as not configured.
struct Unusable;

#[async_trait::async_trait]
impl ChatModel for Unusable {
    fn provider(&self) -> &str {
        "tenant_unusable"
    }

    async fn complete(&self, _: &llm::ChatRequest) -> Result<llm::ChatResponse, llm::LlmError> {
        Err(llm::LlmError::NotConfigured)
    }

    async fn stream(&self, _: &llm::ChatRequest) -> Result<llm::EventStream, llm::LlmError> {
        Err(llm::LlmError::NotConfigured)
    }
}
