//! Envelope encryption, blind indexes, API keys and webhook signatures.
//!
//! Everything secret lives in this crate so that the rest of the workspace never touches raw
//! key material: `envelope` encrypts columns with per-tenant data keys wrapped by a master key,
//! `blind_index` makes encrypted columns searchable by equality, `api_key` mints and hashes
//! tenant API keys and `twilio` verifies `X-Twilio-Signature`, and `backup` encrypts backup files.

pub mod api_key;
pub mod backup;
pub mod blind_index;
pub mod envelope;
pub mod twilio;

pub use blind_index::BlindIndexKey;
pub use envelope::{CryptoError, DataKey, KeyId, MasterKey, WrappedKey};

use subtle::ConstantTimeEq;

/// Compares two byte strings in time that depends only on their lengths.
///
/// Different lengths compare unequal (the length itself is not secret for any caller here:
/// signatures and digests have fixed sizes).
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// Fills `N` bytes from the operating system's CSPRNG.
///
/// # Panics
/// If the operating system cannot provide randomness. Nothing sensible can continue without it
/// (the same holds for `rand::rng()`), and it does not depend on any input.
fn os_random<const N: usize>() -> [u8; N] {
    use rand::Rng as _;
    let mut out = [0u8; N];
    rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut out);
    out
}

/// Decodes standard base64 (surrounding whitespace, such as a key file's newline, ignored) of
/// exactly 32 bytes. The error message never echoes the input.
fn key_from_base64(s: &str) -> Result<[u8; 32], String> {
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|_| {
            "expected standard base64 (A-Z, a-z, 0-9, +, / with = padding) of 32 random bytes; \
             generate one with `openssl rand -base64 32`"
                .to_owned()
        })?;
    decoded.as_slice().try_into().map_err(|_| {
        format!(
            "expected 32 bytes after base64 decoding, got {}; generate one with `openssl rand -base64 32`",
            decoded.len()
        )
    })
}

/// HMAC-SHA256 over the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit as _, Mac as _};
    let Ok(mut mac) = hmac::Hmac::<sha2::Sha256>::new_from_slice(key) else {
        unreachable!("HMAC accepts keys of any length")
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"", b"a"));
    }

    #[test]
    fn hmac_sha256_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn os_random_is_not_constant() {
        let a: [u8; 32] = os_random();
        let b: [u8; 32] = os_random();
        assert_ne!(a, b);
    }
}
