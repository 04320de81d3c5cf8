//! Integration tests for the crypto crate: official Twilio vectors and property tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod blind_index_props;
mod envelope_props;
mod twilio_props;
mod twilio_vectors;

use domain::TenantId;
use proptest::prelude::*;

/// Any tenant id, including ones `TenantId::new()` would never produce.
pub fn tenant() -> impl Strategy<Value = TenantId> {
    any::<[u8; 16]>().prop_map(|b| TenantId::from(uuid::Uuid::from_bytes(b)))
}

/// Owned form pairs from string literals.
pub fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}
