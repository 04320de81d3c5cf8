//! Which profile serves a conversation, with the parsed profiles kept in memory for a few
//! seconds so a turn does not read and parse TOML each time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use domain::TenantId;
use store::{Store, StoreError};

use crate::profile::Profile;

/// How long a tenant's default profile and parsed profiles are reused before reloading.
const TTL: Duration = Duration::from_secs(10);

type Entry<T> = (Instant, T);
type ParsedCache = HashMap<(TenantId, String), Entry<Arc<Profile>>>;

pub struct Profiles {
    store: Arc<dyn Store>,
    /// The installation's default profile name (a built-in or a tenant's own).
    default: String,
    /// Serve every conversation with this profile (`concierge chat --profile`).
    forced: Option<String>,
    defaults: Mutex<HashMap<TenantId, Entry<Option<String>>>>,
    parsed: Mutex<ParsedCache>,
}

impl Profiles {
    #[must_use]
    pub fn new(store: Arc<dyn Store>, default: String, forced: Option<String>) -> Self {
        Self {
            store,
            default,
            forced,
            defaults: Mutex::new(HashMap::new()),
            parsed: Mutex::new(HashMap::new()),
        }
    }

    /// The profile for a conversation that was last served by `stored` (None: new).
    pub async fn resolve(
        &self,
        tenant: TenantId,
        stored: Option<&str>,
    ) -> Result<Arc<Profile>, StoreError> {
        let name = match (self.forced.as_deref(), stored) {
            (Some(forced), _) => forced.to_owned(),
            (None, Some(stored)) => stored.to_owned(),
            (None, None) => self
                .tenant_default(tenant)
                .await?
                .unwrap_or_else(|| self.default.clone()),
        };
        if let Some(profile) = self.load(tenant, &name).await? {
            return Ok(profile);
        }
        // A name that no longer exists: the installation default, then the receptionist.
        if let Some(profile) = self.load(tenant, &self.default).await? {
            return Ok(profile);
        }
        Profile::builtin("receptionist")
            .map(Arc::new)
            .ok_or_else(|| {
                StoreError::Corrupt("the built-in receptionist profile is invalid".into())
            })
    }

    async fn tenant_default(&self, tenant: TenantId) -> Result<Option<String>, StoreError> {
        if let Some((at, name)) = lock(&self.defaults).get(&tenant)
            && at.elapsed() < TTL
        {
            return Ok(name.clone());
        }
        let name = self.store.default_profile(tenant).await?;
        lock(&self.defaults).insert(tenant, (Instant::now(), name.clone()));
        Ok(name)
    }

    /// The tenant's latest version of `name`, else the built-in of that name.
    async fn load(&self, tenant: TenantId, name: &str) -> Result<Option<Arc<Profile>>, StoreError> {
        let key = (tenant, name.to_owned());
        if let Some((at, profile)) = lock(&self.parsed).get(&key)
            && at.elapsed() < TTL
        {
            return Ok(Some(profile.clone()));
        }
        let profile = match self.store.get_profile(tenant, name, None).await? {
            Some(stored) => match Profile::parse(&stored.source) {
                Ok(mut p) => {
                    p.version = stored.version;
                    Some(p)
                }
                Err(e) => {
                    // Stored profiles are validated before they are stored; one that no
                    // longer parses (a newer release is stricter) falls back to the built-in.
                    tracing::warn!(%tenant, profile = name, error = %e, "stored profile is invalid; using the built-in");
                    Profile::builtin(name)
                }
            },
            None => Profile::builtin(name),
        };
        let Some(profile) = profile.map(Arc::new) else {
            return Ok(None);
        };
        let mut parsed = lock(&self.parsed);
        if parsed.len() > 10_000 {
            parsed.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        parsed.insert(key, (Instant::now(), profile.clone()));
        Ok(Some(profile))
    }

    /// Forgets what is cached for a tenant (after its profiles changed in this process).
    pub fn invalidate(&self, tenant: TenantId) {
        lock(&self.defaults).remove(&tenant);
        lock(&self.parsed).retain(|(t, _), _| *t != tenant);
    }
}

/// Whether the tenant can be served by profile `name`: a built-in, or one it stored.
pub async fn exists(store: &dyn Store, tenant: TenantId, name: &str) -> Result<bool, StoreError> {
    Ok(Profile::builtin_source(name).is_some()
        || store.get_profile(tenant, name, None).await?.is_some())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
