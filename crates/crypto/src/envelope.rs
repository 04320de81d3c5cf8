//! Envelope encryption: a master key (from config) wraps per-tenant data keys, and data keys
//! encrypt individual column values with AES-256-GCM.
//!
//! Column ciphertexts are self-describing so that keys can be rotated lazily:
//!
//! ```text
//! [0x01][data key id: 4 bytes BE][nonce: 12 bytes][ciphertext || 16-byte tag]
//! ```
//!
//! The AAD binds each value to its tenant and column, so a ciphertext copied into another
//! tenant's row or another column fails to decrypt instead of silently revealing data.

use std::fmt;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use domain::TenantId;

use crate::{BlindIndexKey, hmac_sha256, os_random};

/// Version byte of the column ciphertext format.
const FORMAT_V1: u8 = 0x01;
const KEY_LEN: usize = 32;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Version byte, key id and nonce.
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// A column ciphertext of an empty plaintext.
const MIN_CIPHERTEXT_LEN: usize = HEADER_LEN + TAG_LEN;
/// A wrapped data key: nonce, encrypted key, tag.
const WRAPPED_LEN: usize = NONCE_LEN + KEY_LEN + TAG_LEN;

const COLUMN_AAD_PREFIX: &[u8] = b"concierge v1";
const WRAP_AAD_PREFIX: &[u8] = b"concierge wrap v1";
const KEY_ID_LABEL: &[u8] = b"concierge key id v1";
const BLIND_INDEX_INFO: &[u8] = b"concierge blind index v1";

/// Identifies a key without revealing it. Displayed as 8 lower-case hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// Everything that can go wrong when loading keys or decrypting. Messages never contain key
/// material or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("invalid master key: {0}")]
    InvalidMasterKey(String),
    #[error(
        "data key was wrapped by master key {found}, but the configured master key is {expected}"
    )]
    WrongMasterKey { expected: KeyId, found: KeyId },
    #[error("malformed ciphertext: {0}")]
    Malformed(&'static str),
    #[error("unknown ciphertext format version {0}")]
    UnknownVersion(u8),
    #[error("ciphertext was encrypted with data key {found}, but data key {expected} was supplied")]
    KeyMismatch { expected: KeyId, found: KeyId },
    #[error("decryption failed: wrong key, tenant or column, or the data was tampered with")]
    Decrypt,
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,
    #[error("invalid backup key: {0}")]
    InvalidBackupKey(String),
    #[error(
        "the file was encrypted with backup key {found}, but the configured backup key is {expected}"
    )]
    WrongBackupKey { expected: KeyId, found: KeyId },
    #[error("not a Concierge backup file")]
    NotABackup,
}

/// The key-encryption key, loaded from configuration. It never encrypts data directly.
#[derive(Clone)]
pub struct MasterKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mac = hmac_sha256(&bytes, &[KEY_ID_LABEL]);
        let id = KeyId(u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]));
        Self { bytes, id }
    }

    /// Parses standard base64 (with padding) of exactly 32 bytes; surrounding whitespace, such
    /// as the newline of a key file, is ignored.
    ///
    /// # Errors
    /// [`CryptoError::InvalidMasterKey`] if the text is not base64 or not 32 bytes long. The
    /// message never echoes the input.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        crate::key_from_base64(s)
            .map(Self::from_bytes)
            .map_err(CryptoError::InvalidMasterKey)
    }

    /// A fresh key from the operating system's CSPRNG.
    #[must_use]
    pub fn generate() -> Self {
        Self::from_bytes(os_random())
    }

    /// The key as standard base64, the form [`MasterKey::from_base64`] reads.
    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// First 4 bytes (big-endian) of `HMAC-SHA256(key, "concierge key id v1")`: stable, and
    /// safe to store next to wrapped keys and to log.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Creates a random data key for `tenant` and wraps it under this master key.
    ///
    /// The data key id is random; store the [`WrappedKey`] and keep the [`DataKey`] in memory.
    #[must_use]
    pub fn new_data_key(&self, tenant: TenantId) -> (DataKey, WrappedKey) {
        let data_key = DataKey {
            bytes: os_random(),
            id: KeyId(u32::from_be_bytes(os_random())),
        };
        let nonce: [u8; NONCE_LEN] = os_random();
        let aad = wrap_aad(tenant, data_key.id);
        let sealed = seal(&self.bytes, &nonce, &aad, &data_key.bytes);
        let mut ciphertext = Vec::with_capacity(WRAPPED_LEN);
        ciphertext.extend_from_slice(&nonce);
        ciphertext.extend_from_slice(&sealed);
        let wrapped = WrappedKey {
            key_id: data_key.id,
            kek_id: self.id,
            ciphertext,
        };
        (data_key, wrapped)
    }

    /// Recovers a data key wrapped by [`MasterKey::new_data_key`] for the same tenant.
    ///
    /// # Errors
    /// - [`CryptoError::WrongMasterKey`] if `wrapped` names another master key (rotation
    ///   in progress: try the previous master key);
    /// - [`CryptoError::Malformed`] if the ciphertext has the wrong length;
    /// - [`CryptoError::Decrypt`] if it was tampered with, belongs to another tenant or its
    ///   `key_id` was changed.
    pub fn unwrap_data_key(
        &self,
        tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<DataKey, CryptoError> {
        if wrapped.kek_id != self.id {
            return Err(CryptoError::WrongMasterKey {
                expected: self.id,
                found: wrapped.kek_id,
            });
        }
        if wrapped.ciphertext.len() != WRAPPED_LEN {
            return Err(CryptoError::Malformed(
                "wrapped data key has the wrong length",
            ));
        }
        let (nonce, sealed) = wrapped.ciphertext.split_at(NONCE_LEN);
        let aad = wrap_aad(tenant, wrapped.key_id);
        let plain = open(&self.bytes, nonce, &aad, sealed)?;
        let bytes: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Malformed("wrapped data key has the wrong length"))?;
        Ok(DataKey {
            bytes,
            id: wrapped.key_id,
        })
    }

    /// The key for blind indexes, derived with HKDF-SHA256 (no salt, info
    /// `"concierge blind index v1"`), so it is independent of the key-wrapping use.
    #[must_use]
    pub fn blind_index_key(&self) -> BlindIndexKey {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(None, &self.bytes);
        let mut okm = [0u8; 32];
        let Ok(()) = hkdf.expand(BLIND_INDEX_INFO, &mut okm) else {
            unreachable!("32 bytes is far below HKDF-SHA256's 8160-byte output limit")
        };
        BlindIndexKey::from_bytes(okm)
    }
}

/// A data key encrypted under a master key, as stored in the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedKey {
    /// Id of the data key inside (authenticated: changing it makes unwrapping fail).
    pub key_id: KeyId,
    /// Id of the master key that wrapped it.
    pub kek_id: KeyId,
    /// `nonce (12) || encrypted key (32) || tag (16)`.
    pub ciphertext: Vec<u8>,
}

/// A per-tenant data-encryption key. Keep it in memory only; persist the [`WrappedKey`].
#[derive(Clone)]
pub struct DataKey {
    bytes: [u8; KEY_LEN],
    id: KeyId,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// Encrypts one column value.
    ///
    /// Output format (versioned, self-describing):
    /// `[0x01][key id: 4 bytes BE][nonce: 12][ciphertext+tag]`.
    /// AAD = `b"concierge v1" || tenant uuid bytes (16) || column name bytes`.
    /// A random 96-bit nonce is drawn for every call.
    ///
    /// # Panics
    /// Only if `plaintext` exceeds AES-GCM's limit of 64 GiB per message.
    #[must_use]
    pub fn encrypt(&self, tenant: TenantId, column: &str, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_LEN] = os_random();
        let aad = column_aad(tenant, column);
        let sealed = seal(&self.bytes, &nonce, &aad, plaintext);
        let mut out = Vec::with_capacity(HEADER_LEN + sealed.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&self.id.0.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Decrypts a value produced by [`DataKey::encrypt`] for the same tenant and column.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] (too short), [`CryptoError::UnknownVersion`],
    /// [`CryptoError::KeyMismatch`] (encrypted under another data key: look the key up with
    /// [`ciphertext_key_id`]) or [`CryptoError::Decrypt`] (wrong tenant, wrong column or
    /// tampered data).
    pub fn decrypt(
        &self,
        tenant: TenantId,
        column: &str,
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        let found = ciphertext_key_id(ciphertext)?;
        if found != self.id {
            return Err(CryptoError::KeyMismatch {
                expected: self.id,
                found,
            });
        }
        let nonce = &ciphertext[1 + KEY_ID_LEN..HEADER_LEN];
        let sealed = &ciphertext[HEADER_LEN..];
        open(&self.bytes, nonce, &column_aad(tenant, column), sealed)
    }

    /// [`DataKey::encrypt`] for text.
    #[must_use]
    pub fn encrypt_str(&self, tenant: TenantId, column: &str, plaintext: &str) -> Vec<u8> {
        self.encrypt(tenant, column, plaintext.as_bytes())
    }

    /// [`DataKey::decrypt`] for text.
    ///
    /// # Errors
    /// As [`DataKey::decrypt`], plus [`CryptoError::NotUtf8`].
    pub fn decrypt_string(
        &self,
        tenant: TenantId,
        column: &str,
        ciphertext: &[u8],
    ) -> Result<String, CryptoError> {
        let bytes = self.decrypt(tenant, column, ciphertext)?;
        String::from_utf8(bytes).map_err(|_| CryptoError::NotUtf8)
    }
}

/// Reads the data key id of a stored column ciphertext without decrypting it (for rotation:
/// find values still under an old key).
///
/// # Errors
/// [`CryptoError::Malformed`] if the input is shorter than the smallest valid ciphertext,
/// [`CryptoError::UnknownVersion`] if the format byte is not known.
pub fn ciphertext_key_id(ciphertext: &[u8]) -> Result<KeyId, CryptoError> {
    let Some(&version) = ciphertext.first() else {
        return Err(CryptoError::Malformed("ciphertext is empty"));
    };
    if version != FORMAT_V1 {
        return Err(CryptoError::UnknownVersion(version));
    }
    match ciphertext {
        [_, a, b, c, d, ..] if ciphertext.len() >= MIN_CIPHERTEXT_LEN => {
            Ok(KeyId(u32::from_be_bytes([*a, *b, *c, *d])))
        }
        _ => Err(CryptoError::Malformed("ciphertext is too short")),
    }
}

fn column_aad(tenant: TenantId, column: &str) -> Vec<u8> {
    // The tenant id has a fixed length, so prefix || tenant || column is unambiguous.
    let mut aad = Vec::with_capacity(COLUMN_AAD_PREFIX.len() + 16 + column.len());
    aad.extend_from_slice(COLUMN_AAD_PREFIX);
    aad.extend_from_slice(tenant.as_uuid().as_bytes());
    aad.extend_from_slice(column.as_bytes());
    aad
}

fn wrap_aad(tenant: TenantId, key_id: KeyId) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_AAD_PREFIX.len() + 16 + KEY_ID_LEN);
    aad.extend_from_slice(WRAP_AAD_PREFIX);
    aad.extend_from_slice(tenant.as_uuid().as_bytes());
    aad.extend_from_slice(&key_id.0.to_be_bytes());
    aad
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(*key))
}

/// AES-256-GCM encryption; returns `ciphertext || tag`.
fn seal(key: &[u8; KEY_LEN], nonce: &[u8; NONCE_LEN], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    match cipher(key).encrypt(&Nonce::from(*nonce), payload) {
        Ok(sealed) => sealed,
        // The only failure is a message over 2^36 - 32 bytes, which no column holds.
        Err(_) => panic!("AES-GCM refuses plaintexts over 64 GiB"),
    }
}

/// AES-256-GCM decryption of `ciphertext || tag`.
fn open(
    key: &[u8; KEY_LEN],
    nonce: &[u8],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Malformed("nonce has the wrong length"))?;
    if sealed.len() < TAG_LEN {
        return Err(CryptoError::Malformed("ciphertext is too short"));
    }
    let payload = Payload { msg: sealed, aad };
    cipher(key)
        .decrypt(&Nonce::from(nonce), payload)
        .map_err(|_| CryptoError::Decrypt)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn tenant() -> TenantId {
        TenantId::new()
    }

    #[test]
    fn key_id_displays_as_eight_hex_digits() {
        assert_eq!(KeyId(0xab).to_string(), "000000ab");
        assert_eq!(KeyId(u32::MAX).to_string(), "ffffffff");
    }

    #[test]
    fn master_key_id_is_truncated_hmac() {
        let key = MasterKey::from_base64(&STANDARD.encode([7u8; 32])).unwrap();
        let mac = hmac_sha256(&[7u8; 32], &[b"concierge key id v1"]);
        assert_eq!(key.id().0, u32::from_be_bytes(mac[..4].try_into().unwrap()));
    }

    #[test]
    fn master_key_base64_round_trip_and_trim() {
        let key = MasterKey::generate();
        let text = format!("  {}\n", key.to_base64());
        let again = MasterKey::from_base64(&text).unwrap();
        assert_eq!(again.id(), key.id());
        assert_eq!(again.to_base64(), key.to_base64());
    }

    #[test]
    fn master_key_rejects_bad_input_without_echoing_it() {
        for bad in [
            "",
            "not base64 at all!",
            &STANDARD.encode([1u8; 31]),
            &STANDARD.encode([1u8; 33]),
            // URL-safe alphabet is not accepted: keys are documented as standard base64.
            "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_4=",
        ] {
            let err = MasterKey::from_base64(bad).unwrap_err();
            assert!(matches!(err, CryptoError::InvalidMasterKey(_)), "{bad:?}");
            if !bad.is_empty() {
                assert!(!err.to_string().contains(bad));
            }
        }
        let err = MasterKey::from_base64(&STANDARD.encode([1u8; 16])).unwrap_err();
        assert!(err.to_string().contains("got 16"), "{err}");
    }

    #[test]
    fn debug_output_shows_only_ids() {
        let master = MasterKey::from_base64(&STANDARD.encode([0x41u8; 32])).unwrap();
        let (data, _) = master.new_data_key(tenant());
        assert_eq!(
            format!("{master:?}"),
            format!("MasterKey {{ id: {:?}, .. }}", master.id())
        );
        assert_eq!(
            format!("{data:?}"),
            format!("DataKey {{ id: {:?}, .. }}", data.id())
        );
    }

    #[test]
    fn ciphertext_layout_is_versioned() {
        let master = MasterKey::generate();
        let t = tenant();
        let (key, _) = master.new_data_key(t);
        let ct = key.encrypt(t, "body", b"hello");
        assert_eq!(ct[0], 0x01);
        assert_eq!(&ct[1..5], &key.id().0.to_be_bytes());
        assert_eq!(ct.len(), 1 + 4 + 12 + 5 + 16);
        assert_eq!(ciphertext_key_id(&ct).unwrap(), key.id());
        // Random nonces: the same plaintext never encrypts to the same bytes.
        assert_ne!(ct, key.encrypt(t, "body", b"hello"));
    }

    #[test]
    fn decrypt_reports_each_failure() {
        let master = MasterKey::generate();
        let t = tenant();
        let (key, _) = master.new_data_key(t);
        let ct = key.encrypt(t, "body", b"hello");

        assert!(matches!(
            key.decrypt(t, "body", &[]),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            key.decrypt(t, "body", &ct[..MIN_CIPHERTEXT_LEN - 1]),
            Err(CryptoError::Malformed(_))
        ));
        let mut v2 = ct.clone();
        v2[0] = 2;
        assert!(matches!(
            key.decrypt(t, "body", &v2),
            Err(CryptoError::UnknownVersion(2))
        ));
        let mut other_id = ct.clone();
        other_id[4] ^= 1;
        assert!(matches!(
            key.decrypt(t, "body", &other_id),
            Err(CryptoError::KeyMismatch { .. })
        ));
        assert!(matches!(
            key.decrypt(tenant(), "body", &ct),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            key.decrypt(t, "Body", &ct),
            Err(CryptoError::Decrypt)
        ));
        for i in HEADER_LEN - NONCE_LEN..ct.len() {
            let mut tampered = ct.clone();
            tampered[i] ^= 0x80;
            assert!(
                matches!(key.decrypt(t, "body", &tampered), Err(CryptoError::Decrypt)),
                "byte {i}"
            );
        }
        // Truncating the tag away still fails cleanly.
        assert!(key.decrypt(t, "body", &ct[..ct.len() - 1]).is_err());
        assert_eq!(key.decrypt(t, "body", &ct).unwrap(), b"hello");
    }

    #[test]
    fn decrypt_string_rejects_non_utf8() {
        let master = MasterKey::generate();
        let t = tenant();
        let (key, _) = master.new_data_key(t);
        let ct = key.encrypt(t, "c", &[0xff, 0xfe]);
        assert!(matches!(
            key.decrypt_string(t, "c", &ct),
            Err(CryptoError::NotUtf8)
        ));
        let ct = key.encrypt_str(t, "c", "héllo");
        assert_eq!(key.decrypt_string(t, "c", &ct).unwrap(), "héllo");
    }

    #[test]
    fn ciphertext_key_id_rejects_garbage() {
        assert!(matches!(
            ciphertext_key_id(&[]),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            ciphertext_key_id(&[9, 0, 0, 0, 0]),
            Err(CryptoError::UnknownVersion(9))
        ));
        assert!(matches!(
            ciphertext_key_id(&[1, 0, 0, 0, 7]),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn unwrap_checks_master_key_tenant_and_integrity() {
        let master = MasterKey::generate();
        let other = MasterKey::generate();
        let t = tenant();
        let (key, wrapped) = master.new_data_key(t);
        assert_eq!(wrapped.key_id, key.id());
        assert_eq!(wrapped.kek_id, master.id());
        assert_eq!(wrapped.ciphertext.len(), WRAPPED_LEN);

        let back = master.unwrap_data_key(t, &wrapped).unwrap();
        let ct = key.encrypt(t, "c", b"x");
        assert_eq!(back.decrypt(t, "c", &ct).unwrap(), b"x");

        match other.unwrap_data_key(t, &wrapped) {
            Err(CryptoError::WrongMasterKey { expected, found }) => {
                assert_eq!(expected, other.id());
                assert_eq!(found, master.id());
            }
            r => panic!("unexpected {r:?}"),
        }
        // Same id but different bytes (forged kek_id): authentication fails.
        let forged = WrappedKey {
            kek_id: other.id(),
            ..wrapped.clone()
        };
        assert!(matches!(
            other.unwrap_data_key(t, &forged),
            Err(CryptoError::Decrypt)
        ));
        assert!(matches!(
            master.unwrap_data_key(tenant(), &wrapped),
            Err(CryptoError::Decrypt)
        ));
        let relabelled = WrappedKey {
            key_id: KeyId(wrapped.key_id.0 ^ 1),
            ..wrapped.clone()
        };
        assert!(matches!(
            master.unwrap_data_key(t, &relabelled),
            Err(CryptoError::Decrypt)
        ));
        let mut tampered = wrapped.clone();
        tampered.ciphertext[20] ^= 1;
        assert!(matches!(
            master.unwrap_data_key(t, &tampered),
            Err(CryptoError::Decrypt)
        ));
        let mut short = wrapped;
        short.ciphertext.pop();
        assert!(matches!(
            master.unwrap_data_key(t, &short),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn blind_index_key_is_hkdf_and_separate_from_master() {
        let master = MasterKey::from_base64(&STANDARD.encode([3u8; 32])).unwrap();
        // HKDF-SHA256 with one output block: T(1) = HMAC(PRK, info || 0x01),
        // PRK = HMAC(salt = 32 zero bytes, ikm).
        let prk = hmac_sha256(&[0u8; 32], &[&[3u8; 32]]);
        let okm = hmac_sha256(&prk, &[b"concierge blind index v1", &[1]]);
        let t = tenant();
        assert_eq!(
            master.blind_index_key().email(t, "a@b.c"),
            BlindIndexKey::from_bytes(okm).email(t, "a@b.c")
        );
        assert_ne!(okm, [3u8; 32]);
    }
}
