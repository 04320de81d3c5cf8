//! Properties of blind indexes: deterministic, tenant-separated, key-separated.

use crypto::MasterKey;
use domain::PhoneNumber;
use proptest::prelude::*;

use crate::tenant;

fn phone() -> impl Strategy<Value = PhoneNumber> {
    "\\+[1-9][0-9]{7,14}".prop_map(|s| PhoneNumber::parse(&s).unwrap())
}

proptest! {
    #[test]
    fn phone_index_is_deterministic_and_tenant_separated(
        t in tenant(),
        other_tenant in tenant(),
        number in phone(),
        other_number in phone(),
    ) {
        let master = MasterKey::generate();
        let key = master.blind_index_key();
        let again = MasterKey::from_base64(&master.to_base64()).unwrap().blind_index_key();
        prop_assert_eq!(key.phone(t, &number), again.phone(t, &number));
        if t != other_tenant {
            prop_assert_ne!(key.phone(t, &number), key.phone(other_tenant, &number));
        }
        if number != other_number {
            prop_assert_ne!(key.phone(t, &number), key.phone(t, &other_number));
        }
        prop_assert_ne!(
            key.phone(t, &number),
            MasterKey::generate().blind_index_key().phone(t, &number)
        );
    }

    #[test]
    fn email_index_ignores_case_and_surrounding_space(
        t in tenant(),
        other_tenant in tenant(),
        local in "[a-z0-9._]{1,12}",
        domain_name in "[a-z0-9]{1,12}\\.[a-z]{2,4}",
        pad in "[ \t\n]{0,3}",
    ) {
        let key = MasterKey::generate().blind_index_key();
        let email = format!("{local}@{domain_name}");
        let shouted = format!("{pad}{}{pad}", email.to_uppercase());
        prop_assert_eq!(key.email(t, &email), key.email(t, &shouted));
        if t != other_tenant {
            prop_assert_ne!(key.email(t, &email), key.email(other_tenant, &email));
        }
    }
}
