//! Encryption of backup files: a stream of AES-256-GCM chunks under a per-file key.
//!
//! ```text
//! header: "CCBACKUP" [version 0x01] [backup key id: 4 bytes BE] [salt: 16 bytes]
//! frame:  [u32 BE: bit 31 = last chunk, bits 0..31 = ciphertext length] [ciphertext || tag]
//! ```
//!
//! The file key is HKDF-SHA256(backup key, salt, "concierge backup v1"), so no two files share
//! a key and chunk nonces can be counters: nonce = [chunk number: 8 bytes BE][last: 1][0; 3].
//! Every chunk authenticates the header. Reordered, dropped, repeated or flipped chunks fail
//! to open, a file cut after any chunk lacks its last chunk, and bytes after the last chunk
//! are refused: a file that opens to the end is the file that was written.

use std::fmt;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::{CryptoError, KeyId, hmac_sha256, os_random};

const MAGIC: &[u8; 8] = b"CCBACKUP";
const VERSION: u8 = 0x01;
const SALT_LEN: usize = 16;
const TAG_LEN: usize = 16;
const KEY_ID_LABEL: &[u8] = b"concierge backup key id v1";
const FILE_KEY_INFO: &[u8] = b"concierge backup v1";
const LAST_BIT: u32 = 1 << 31;

/// Bytes of the header at the start of every backup file.
pub const HEADER_LEN: usize = MAGIC.len() + 1 + 4 + SALT_LEN;
/// Bytes of a frame's length prefix.
pub const FRAME_PREFIX_LEN: usize = 4;
/// Largest plaintext a chunk may carry.
pub const MAX_CHUNK: usize = 1 << 20;

/// The key that encrypts backup files. Kept apart from the master key: whoever holds backups
/// and this key still needs the master key to read encrypted columns.
#[derive(Clone)]
pub struct BackupKey {
    bytes: [u8; 32],
    id: KeyId,
}

impl fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl BackupKey {
    fn from_bytes(bytes: [u8; 32]) -> Self {
        let mac = hmac_sha256(&bytes, &[KEY_ID_LABEL]);
        let id = KeyId(u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]));
        Self { bytes, id }
    }

    /// Parses standard base64 of exactly 32 bytes (surrounding whitespace ignored).
    ///
    /// # Errors
    /// [`CryptoError::InvalidBackupKey`]; the message never echoes the input.
    pub fn from_base64(s: &str) -> Result<Self, CryptoError> {
        crate::key_from_base64(s)
            .map(Self::from_bytes)
            .map_err(CryptoError::InvalidBackupKey)
    }

    #[must_use]
    pub fn generate() -> Self {
        Self::from_bytes(os_random())
    }

    #[must_use]
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.bytes)
    }

    /// Safe to print and to store in file headers.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    fn file_cipher(&self, salt: &[u8]) -> Aes256Gcm {
        let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &self.bytes);
        let mut okm = [0u8; 32];
        let Ok(()) = hkdf.expand(FILE_KEY_INFO, &mut okm) else {
            unreachable!("32 bytes is a valid HKDF-SHA256 output length")
        };
        Aes256Gcm::new(&Key::<Aes256Gcm>::from(okm))
    }
}

fn nonce(counter: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&counter.to_be_bytes());
    n[8] = u8::from(last);
    n
}

/// The id of the backup key a file was written with, read from its header.
///
/// # Errors
/// [`CryptoError::NotABackup`] or [`CryptoError::UnknownVersion`].
pub fn header_key_id(header: &[u8]) -> Result<KeyId, CryptoError> {
    if header.len() < HEADER_LEN || &header[..MAGIC.len()] != MAGIC {
        return Err(CryptoError::NotABackup);
    }
    if header[MAGIC.len()] != VERSION {
        return Err(CryptoError::UnknownVersion(header[MAGIC.len()]));
    }
    let at = MAGIC.len() + 1;
    Ok(KeyId(u32::from_be_bytes([
        header[at],
        header[at + 1],
        header[at + 2],
        header[at + 3],
    ])))
}

/// Encrypts a backup, chunk by chunk.
pub struct Sealer {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    counter: u64,
    finished: bool,
}

impl Sealer {
    #[must_use]
    pub fn new(key: &BackupKey) -> Self {
        let salt: [u8; SALT_LEN] = os_random();
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()] = VERSION;
        header[MAGIC.len() + 1..MAGIC.len() + 5].copy_from_slice(&key.id.0.to_be_bytes());
        header[MAGIC.len() + 5..].copy_from_slice(&salt);
        Self {
            cipher: key.file_cipher(&salt),
            header,
            counter: 0,
            finished: false,
        }
    }

    /// The bytes that start the file.
    #[must_use]
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// One framed chunk. The last chunk (which may be empty) ends the stream.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] for a chunk over [`MAX_CHUNK`] or one after the last.
    pub fn seal(&mut self, plaintext: &[u8], last: bool) -> Result<Vec<u8>, CryptoError> {
        if self.finished {
            return Err(CryptoError::Malformed("chunk after the last chunk"));
        }
        if plaintext.len() > MAX_CHUNK {
            return Err(CryptoError::Malformed("chunk too large"));
        }
        let n = nonce(self.counter, last);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(n),
                Payload {
                    msg: plaintext,
                    aad: &self.header,
                },
            )
            .map_err(|_| CryptoError::Malformed("encryption failed"))?;
        self.counter += 1;
        self.finished = last;
        let len = u32::try_from(ciphertext.len())
            .map_err(|_| CryptoError::Malformed("chunk too large"))?;
        let prefix = if last { len | LAST_BIT } else { len };
        let mut frame = Vec::with_capacity(FRAME_PREFIX_LEN + ciphertext.len());
        frame.extend_from_slice(&prefix.to_be_bytes());
        frame.extend_from_slice(&ciphertext);
        Ok(frame)
    }
}

/// Decrypts a backup, chunk by chunk.
pub struct Opener {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    counter: u64,
    finished: bool,
}

/// What a frame's length prefix says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLen {
    /// Bytes of ciphertext (and tag) that follow the prefix.
    pub len: usize,
    pub last: bool,
}

impl Opener {
    /// # Errors
    /// The header is not a backup's, or the file was written with another backup key.
    pub fn new(key: &BackupKey, header: &[u8]) -> Result<Self, CryptoError> {
        let found = header_key_id(header)?;
        if found != key.id {
            return Err(CryptoError::WrongBackupKey {
                expected: key.id,
                found,
            });
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&header[..HEADER_LEN]);
        Ok(Self {
            cipher: key.file_cipher(&header[MAGIC.len() + 5..HEADER_LEN]),
            header: h,
            counter: 0,
            finished: false,
        })
    }

    /// Reads a frame's length prefix.
    ///
    /// # Errors
    /// [`CryptoError::Malformed`] when the length cannot be a chunk's.
    pub fn frame_len(prefix: [u8; FRAME_PREFIX_LEN]) -> Result<FrameLen, CryptoError> {
        let raw = u32::from_be_bytes(prefix);
        let len = (raw & !LAST_BIT) as usize;
        if !(TAG_LEN..=MAX_CHUNK + TAG_LEN).contains(&len) {
            return Err(CryptoError::Malformed("impossible chunk length"));
        }
        Ok(FrameLen {
            len,
            last: raw & LAST_BIT != 0,
        })
    }

    /// Decrypts the next chunk (the bytes after its prefix).
    ///
    /// # Errors
    /// [`CryptoError::Decrypt`] when the chunk is not the next one of this file, or was altered.
    pub fn open(&mut self, frame: FrameLen, ciphertext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if self.finished {
            return Err(CryptoError::Malformed("data after the last chunk"));
        }
        let n = nonce(self.counter, frame.last);
        let plain = self
            .cipher
            .decrypt(
                &Nonce::from(n),
                Payload {
                    msg: ciphertext,
                    aad: &self.header,
                },
            )
            .map_err(|_| CryptoError::Decrypt)?;
        self.counter += 1;
        self.finished = frame.last;
        Ok(plain)
    }

    /// Whether the last chunk has been opened.
    #[must_use]
    pub fn finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn write(key: &BackupKey, chunks: &[&[u8]]) -> Vec<u8> {
        let mut sealer = Sealer::new(key);
        let mut out = sealer.header().to_vec();
        for (i, c) in chunks.iter().enumerate() {
            out.extend(sealer.seal(c, i + 1 == chunks.len()).unwrap());
        }
        out
    }

    fn read(key: &BackupKey, file: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut opener = Opener::new(key, file)?;
        let mut at = HEADER_LEN;
        let mut out = Vec::new();
        while at < file.len() {
            let prefix: [u8; 4] = file
                .get(at..at + 4)
                .ok_or(CryptoError::Malformed("cut"))?
                .try_into()
                .unwrap();
            let frame = Opener::frame_len(prefix)?;
            let body = file
                .get(at + 4..at + 4 + frame.len)
                .ok_or(CryptoError::Malformed("cut"))?;
            out.extend(opener.open(frame, body)?);
            at += 4 + frame.len;
        }
        if !opener.finished() {
            return Err(CryptoError::Malformed("no last chunk"));
        }
        Ok(out)
    }

    #[test]
    fn round_trips_and_files_differ() {
        let key = BackupKey::generate();
        let a = write(&key, &[b"hello ", b"world", b""]);
        let b = write(&key, &[b"hello ", b"world", b""]);
        assert_ne!(a, b, "a fresh salt per file");
        assert_eq!(read(&key, &a).unwrap(), b"hello world");
        assert_eq!(header_key_id(&a).unwrap(), key.id());
    }

    #[test]
    fn wrong_key_tampering_truncation_and_reordering_fail() {
        let key = BackupKey::generate();
        let file = write(&key, &[b"one", b"two", b"three"]);
        assert!(matches!(
            read(&BackupKey::generate(), &file),
            Err(CryptoError::WrongBackupKey { .. })
        ));
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(
                read(&key, &bad).is_err(),
                "flipping byte {i} was not noticed"
            );
        }
        // Cut after the first chunk: it opens, but there is no last chunk.
        let first = HEADER_LEN + 4 + 3 + 16;
        assert!(read(&key, &file[..first]).is_err());
        // Data after the end.
        let mut long = file.clone();
        long.extend_from_slice(&file[HEADER_LEN..first]);
        assert!(read(&key, &long).is_err());
        // Swap the first two chunks.
        let second = first + 4 + 3 + 16;
        let mut swapped = file[..HEADER_LEN].to_vec();
        swapped.extend_from_slice(&file[first..second]);
        swapped.extend_from_slice(&file[HEADER_LEN..first]);
        swapped.extend_from_slice(&file[second..]);
        assert!(read(&key, &swapped).is_err());
        assert!(matches!(
            header_key_id(b"PK\x03\x04 not a backup at all......"),
            Err(CryptoError::NotABackup)
        ));
    }

    #[test]
    fn keys_parse_from_base64_only_at_32_bytes() {
        let key = BackupKey::generate();
        assert_eq!(
            BackupKey::from_base64(&format!("{}\n", key.to_base64()))
                .unwrap()
                .id(),
            key.id()
        );
        assert!(BackupKey::from_base64("c2hvcnQ=").is_err());
        assert!(BackupKey::from_base64("not base64!").is_err());
        assert!(!format!("{key:?}").contains(&key.to_base64()));
    }
}
