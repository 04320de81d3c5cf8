//! Tenant lookup by phone number with a short-lived positive cache: the hot path resolves
//! `To` without a query, and a tenant created by `concierge admin` is found at once (misses
//! are never cached).

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use domain::PhoneNumber;
use store::{Store, StoreError, Tenant};

const TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct TenantCache {
    by_phone: RwLock<HashMap<PhoneNumber, (Tenant, Instant)>>,
}

impl TenantCache {
    pub async fn by_phone(
        &self,
        store: &dyn Store,
        phone: &PhoneNumber,
    ) -> Result<Option<Tenant>, StoreError> {
        let cached = self
            .by_phone
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(phone)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(tenant, _)| tenant.clone());
        if cached.is_some() {
            return Ok(cached);
        }
        let found = store.tenant_by_phone(phone).await?;
        if let Some(tenant) = &found {
            let mut map = self
                .by_phone
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if map.len() > 10_000 {
                map.retain(|_, (_, at)| at.elapsed() < TTL);
            }
            map.insert(phone.clone(), (tenant.clone(), Instant::now()));
        }
        Ok(found)
    }
}
