//! Properties of envelope encryption: round trips, and every binding (tenant, column, key,
//! master key) holds for arbitrary inputs.

use crypto::envelope::ciphertext_key_id;
use crypto::{CryptoError, MasterKey};
use proptest::prelude::*;

use crate::tenant;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn encrypt_decrypt_round_trips(
        t in tenant(),
        column in any::<String>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..1024),
    ) {
        let master = MasterKey::generate();
        let (key, _) = master.new_data_key(t);
        let ct = key.encrypt(t, &column, &plaintext);
        prop_assert_eq!(ct.len(), 1 + 4 + 12 + plaintext.len() + 16);
        prop_assert_eq!(ciphertext_key_id(&ct).unwrap(), key.id());
        prop_assert_eq!(key.decrypt(t, &column, &ct).unwrap(), plaintext);
    }

    #[test]
    fn text_round_trips(t in tenant(), column in "[a-z_]{1,20}", text in any::<String>()) {
        let (key, _) = MasterKey::generate().new_data_key(t);
        let ct = key.encrypt_str(t, &column, &text);
        prop_assert_eq!(key.decrypt_string(t, &column, &ct).unwrap(), text);
    }

    #[test]
    fn decrypt_fails_for_another_tenant_column_or_key(
        t in tenant(),
        other_tenant in tenant(),
        column in any::<String>(),
        other_column in any::<String>(),
        plaintext in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        prop_assume!(t != other_tenant);
        prop_assume!(column != other_column);
        let master = MasterKey::generate();
        let (key, _) = master.new_data_key(t);
        let (other_key, _) = master.new_data_key(t);
        let ct = key.encrypt(t, &column, &plaintext);

        prop_assert!(matches!(key.decrypt(other_tenant, &column, &ct), Err(CryptoError::Decrypt)));
        prop_assert!(matches!(key.decrypt(t, &other_column, &ct), Err(CryptoError::Decrypt)));
        if other_key.id() == key.id() {
            // Random 32-bit ids can collide (1 in 2^32); the AEAD still refuses.
            prop_assert!(matches!(other_key.decrypt(t, &column, &ct), Err(CryptoError::Decrypt)));
        } else {
            let is_mismatch = matches!(
                other_key.decrypt(t, &column, &ct),
                Err(CryptoError::KeyMismatch { expected, found }) if expected == other_key.id() && found == key.id()
            );
            prop_assert!(is_mismatch);
        }
    }

    #[test]
    fn decrypt_never_panics_on_garbage(
        t in tenant(),
        column in any::<String>(),
        garbage in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let (key, _) = MasterKey::generate().new_data_key(t);
        // Random bytes are never a valid ciphertext for a fresh key.
        prop_assert!(key.decrypt(t, &column, &garbage).is_err());
        prop_assert!(key.decrypt_string(t, &column, &garbage).is_err());
        let _ = ciphertext_key_id(&garbage);
    }

    #[test]
    fn wrap_unwrap_round_trips(t in tenant(), other_tenant in tenant()) {
        prop_assume!(t != other_tenant);
        let master = MasterKey::generate();
        let (key, wrapped) = master.new_data_key(t);
        let unwrapped = master.unwrap_data_key(t, &wrapped).unwrap();
        prop_assert_eq!(unwrapped.id(), key.id());
        // Same key material: each decrypts what the other encrypted.
        let ct = key.encrypt(t, "c", b"payload");
        prop_assert_eq!(unwrapped.decrypt(t, "c", &ct).unwrap(), b"payload".to_vec());
        let ct = unwrapped.encrypt(t, "c", b"back");
        prop_assert_eq!(key.decrypt(t, "c", &ct).unwrap(), b"back".to_vec());

        prop_assert!(matches!(master.unwrap_data_key(other_tenant, &wrapped), Err(CryptoError::Decrypt)));
        let reloaded = MasterKey::from_base64(&master.to_base64()).unwrap();
        prop_assert_eq!(reloaded.unwrap_data_key(t, &wrapped).unwrap().id(), key.id());
        let stranger = MasterKey::generate();
        if stranger.id() != master.id() {
            let refused = matches!(
                stranger.unwrap_data_key(t, &wrapped),
                Err(CryptoError::WrongMasterKey { .. })
            );
            prop_assert!(refused);
        }
    }
}
