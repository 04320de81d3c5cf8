//! Tenant API keys: `ck_` followed by 40 random base62 characters.
//!
//! Keys carry about 238 bits of entropy, so brute force is not a concern and a plain SHA-256
//! digest is the right thing to store (a slow password hash would only cost latency on every
//! request). Only the digest and the display prefix are persisted; the key is shown once.

use std::fmt;

use sha2::{Digest as _, Sha256};

use crate::os_random;

const PREFIX: &str = "ck_";
const BODY_LEN: usize = 40;
const KEY_LEN: usize = PREFIX.len() + BODY_LEN;
const DISPLAY_PREFIX_LEN: usize = 11;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Largest multiple of 62 that fits in a byte: bytes at or above it are rejected so that every
/// character is uniformly distributed.
const REJECT_FROM: u8 = 248;

/// A freshly minted key. Show `key` to the user once; store `prefix` and `digest`.
pub struct GeneratedApiKey {
    pub key: String,
    /// The first 11 characters (`ck_` and 8 more), for display in lists.
    pub prefix: String,
    /// SHA-256 of `key`, see [`digest`].
    pub digest: [u8; 32],
}

impl fmt::Debug for GeneratedApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedApiKey")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Mints a new key from the operating system's CSPRNG.
///
/// Random bytes are drawn 30 at a time (`8 * 30 = 240` bits); each byte below 248 becomes one
/// base62 character, so the 40 characters are uniform (`40 * log2(62) ≈ 238` bits).
#[must_use]
pub fn generate() -> GeneratedApiKey {
    let mut key = String::with_capacity(KEY_LEN);
    key.push_str(PREFIX);
    while key.len() < KEY_LEN {
        let batch: [u8; 30] = os_random();
        for byte in batch {
            if byte < REJECT_FROM && key.len() < KEY_LEN {
                key.push(char::from(ALPHABET[usize::from(byte % 62)]));
            }
        }
    }
    let prefix = key[..DISPLAY_PREFIX_LEN].to_owned();
    let digest = digest(&key);
    GeneratedApiKey {
        key,
        prefix,
        digest,
    }
}

/// SHA-256 of the key's bytes: what the database stores and looks up.
#[must_use]
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Whether `s` has the shape of a key (`ck_` + 40 ASCII letters and digits). A cheap filter
/// before a database lookup; it says nothing about whether the key exists.
#[must_use]
pub fn looks_like_key(s: &str) -> bool {
    s.len() == KEY_LEN
        && s.starts_with(PREFIX)
        && s.bytes()
            .skip(PREFIX.len())
            .all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_have_the_documented_shape() {
        let generated = generate();
        assert_eq!(generated.key.len(), 43);
        assert!(generated.key.starts_with("ck_"));
        assert!(looks_like_key(&generated.key));
        assert_eq!(generated.prefix.len(), 11);
        assert!(generated.key.starts_with(&generated.prefix));
        assert_eq!(generated.digest, digest(&generated.key));
        assert_ne!(generate().key, generated.key);
    }

    #[test]
    fn digest_is_sha256() {
        assert_eq!(
            hex::encode(digest("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let generated = generate();
        let dbg = format!("{generated:?}");
        assert!(!dbg.contains(&generated.key));
        assert!(dbg.contains(&generated.prefix));
    }

    #[test]
    fn shape_check_rejects_near_misses() {
        let body = "a".repeat(40);
        assert!(looks_like_key(&format!("ck_{body}")));
        assert!(!looks_like_key(&format!("ck_{}", "a".repeat(39))));
        assert!(!looks_like_key(&format!("ck_{}", "a".repeat(41))));
        assert!(!looks_like_key(&format!("CK_{body}")));
        assert!(!looks_like_key(&format!("sk_{body}")));
        assert!(!looks_like_key(&format!("ck_{}-", "a".repeat(39))));
        assert!(!looks_like_key(&format!("ck_{}é", "a".repeat(38))));
        assert!(!looks_like_key(""));
    }

    #[test]
    fn characters_cover_the_alphabet() {
        // 62 symbols over ~100 keys (4000 characters): missing one would be a bias bug.
        let mut seen = [false; 128];
        for _ in 0..100 {
            for b in generate().key.bytes().skip(3) {
                seen[usize::from(b)] = true;
            }
        }
        for &c in ALPHABET {
            assert!(seen[usize::from(c)], "never saw {}", char::from(c));
        }
    }
}
