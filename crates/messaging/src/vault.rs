//! Per-tenant data keys: created on first use, wrapped by the master key, cached unwrapped
//! in memory for the life of the process.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crypto::{BlindIndexKey, DataKey, KeyId, MasterKey, WrappedKey};
use domain::{PhoneNumber, TenantId};
use store::{Store, StoredDataKey};

use crate::MessagingError;

pub struct Vault {
    master: MasterKey,
    index: BlindIndexKey,
    store: Arc<dyn Store>,
    keys: RwLock<HashMap<TenantId, DataKey>>,
}

impl Vault {
    #[must_use]
    pub fn new(master: MasterKey, store: Arc<dyn Store>) -> Self {
        let index = master.blind_index_key();
        Self {
            master,
            index,
            store,
            keys: RwLock::new(HashMap::new()),
        }
    }

    /// The blind index of a phone number within a tenant.
    #[must_use]
    pub fn phone_index(&self, tenant: TenantId, phone: &PhoneNumber) -> [u8; 32] {
        self.index.phone(tenant, phone)
    }

    /// The tenant's data key, creating and storing it on first use. Concurrent first users
    /// (in any process) agree on one key: the store keeps the first one written.
    pub async fn data_key(&self, tenant: TenantId) -> Result<DataKey, MessagingError> {
        if let Some(key) = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&tenant)
        {
            return Ok(key.clone());
        }
        let stored = match self.store.data_key(tenant).await? {
            Some(stored) => stored,
            None => {
                let (_, wrapped) = self.master.new_data_key(tenant);
                self.store.put_data_key(tenant, to_stored(&wrapped)).await?
            }
        };
        let key = self.master.unwrap_data_key(tenant, &from_stored(&stored))?;
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(tenant, key.clone());
        Ok(key)
    }
}

impl Vault {
    /// What an agent turn encrypts the end user's data with: the tenant's data key.
    pub async fn sealer(&self, tenant: TenantId) -> Result<Arc<dyn agent::Sealer>, MessagingError> {
        Ok(Arc::new(TenantSealer {
            tenant,
            key: self.data_key(tenant).await?,
        }))
    }
}

/// A tenant's data key behind the agent's [`agent::Sealer`]; the column name is bound into
/// each ciphertext, so one cannot be moved to another column.
pub struct TenantSealer {
    tenant: TenantId,
    key: DataKey,
}

impl TenantSealer {
    #[must_use]
    pub fn new(tenant: TenantId, key: DataKey) -> Self {
        Self { tenant, key }
    }
}

impl agent::Sealer for TenantSealer {
    fn seal(&self, column: &'static str, plaintext: &str) -> Vec<u8> {
        self.key.encrypt_str(self.tenant, column, plaintext)
    }

    fn open(&self, column: &'static str, ciphertext: &[u8]) -> Result<String, agent::TurnError> {
        self.key
            .decrypt_string(self.tenant, column, ciphertext)
            .map_err(|e| agent::TurnError::Unavailable(format!("cannot decrypt {column}: {e}")))
    }
}

fn to_stored(w: &WrappedKey) -> StoredDataKey {
    StoredDataKey {
        key_id: w.key_id.0,
        kek_id: w.kek_id.0,
        wrapped: w.ciphertext.clone(),
    }
}

fn from_stored(s: &StoredDataKey) -> WrappedKey {
    WrappedKey {
        key_id: KeyId(s.key_id),
        kek_id: KeyId(s.kek_id),
        ciphertext: s.wrapped.clone(),
    }
}
