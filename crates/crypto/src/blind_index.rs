//! Blind indexes: deterministic lookup tokens for encrypted columns.
//!
//! An encrypted column cannot be searched, so next to it we store
//! `HMAC-SHA256(blind index key, label || tenant || normalised value)` and look rows up by that.
//! The tenant is part of the input so the same phone number or e-mail address gives unrelated
//! tokens in different tenants: a database reader cannot link one person across businesses.

use std::fmt;

use domain::{PhoneNumber, TenantId};

use crate::hmac_sha256;

const PHONE_LABEL: &[u8] = b"phone\x00";
const EMAIL_LABEL: &[u8] = b"email\x00";

/// The key for blind indexes; derive it with [`crate::MasterKey::blind_index_key`].
#[derive(Clone)]
pub struct BlindIndexKey {
    bytes: [u8; 32],
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey(<redacted>)")
    }
}

impl BlindIndexKey {
    #[must_use]
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self { bytes }
    }

    /// `HMAC-SHA256(key, b"phone\x00" || tenant uuid bytes || E.164 string bytes)`.
    #[must_use]
    pub fn phone(&self, tenant: TenantId, phone: &PhoneNumber) -> [u8; 32] {
        self.token(PHONE_LABEL, tenant, phone.as_str())
    }

    /// `HMAC-SHA256(key, b"email\x00" || tenant uuid bytes || trimmed, lower-cased address)`.
    ///
    /// Lower-casing is Unicode-aware (`str::to_lowercase`), so `Ana@Example.COM` and
    /// ` ana@example.com ` give the same token.
    #[must_use]
    pub fn email(&self, tenant: TenantId, email: &str) -> [u8; 32] {
        self.token(EMAIL_LABEL, tenant, &email.trim().to_lowercase())
    }

    fn token(&self, label: &[u8], tenant: TenantId, value: &str) -> [u8; 32] {
        // Label and tenant have fixed lengths, so the concatenation is unambiguous.
        hmac_sha256(
            &self.bytes,
            &[label, tenant.as_uuid().as_bytes(), value.as_bytes()],
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn key() -> BlindIndexKey {
        BlindIndexKey::from_bytes([9u8; 32])
    }

    #[test]
    fn phone_token_is_the_documented_hmac() {
        let tenant = TenantId::new();
        let phone = PhoneNumber::parse("+33 6 12 34 56 78").unwrap();
        let mut msg = b"phone\x00".to_vec();
        msg.extend_from_slice(tenant.as_uuid().as_bytes());
        msg.extend_from_slice(b"+33612345678");
        assert_eq!(
            key().phone(tenant, &phone),
            hmac_sha256(&[9u8; 32], &[&msg])
        );
    }

    #[test]
    fn email_is_normalised() {
        let tenant = TenantId::new();
        let a = key().email(tenant, "  Ana@Example.COM\n");
        assert_eq!(a, key().email(tenant, "ana@example.com"));
        let mut msg = b"email\x00".to_vec();
        msg.extend_from_slice(tenant.as_uuid().as_bytes());
        msg.extend_from_slice(b"ana@example.com");
        assert_eq!(a, hmac_sha256(&[9u8; 32], &[&msg]));
        assert_ne!(a, key().email(tenant, "ana@example.org"));
    }

    #[test]
    fn labels_separate_kinds_and_keys_separate_tokens() {
        let tenant = TenantId::new();
        let phone = PhoneNumber::parse("+14155550100").unwrap();
        assert_ne!(
            key().phone(tenant, &phone),
            key().email(tenant, "+14155550100")
        );
        assert_ne!(
            key().phone(tenant, &phone),
            BlindIndexKey::from_bytes([8u8; 32]).phone(tenant, &phone)
        );
    }

    #[test]
    fn debug_is_redacted() {
        assert_eq!(format!("{:?}", key()), "BlindIndexKey(<redacted>)");
    }
}
