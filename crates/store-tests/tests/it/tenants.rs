//! Tenants, routing numbers, data keys and API keys.

use domain::TenantName;
use store::{NewApiKey, NewTenant, StoreError, StoredDataKey, Stores};

use crate::{conformance, phone, tenant};

conformance!(
    tenants_route_numbers_and_refuse_taken_ones,
    data_keys_are_put_once,
    api_keys_are_found_by_digest
);

async fn tenants_route_numbers_and_refuse_taken_ones(s: &Stores) {
    let a = tenant(s, "Acme Dental", "+15550000001").await;
    let found = s
        .data
        .tenant_by_phone(&phone("+15550000001"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, a);
    assert_eq!(found.name.as_str(), "Acme Dental");
    assert_eq!(found.phone_numbers, vec![phone("+15550000001")]);
    assert!(
        s.data
            .tenant_by_phone(&phone("+15559999999"))
            .await
            .unwrap()
            .is_none()
    );

    // A number already routed elsewhere is a conflict and writes nothing.
    let err = s
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse("Other").unwrap(),
            phone_numbers: vec![phone("+15550000002"), phone("+15550000001")],
        })
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(s.data.list_tenants().await.unwrap().len(), 1);
    assert!(
        s.data
            .tenant_by_phone(&phone("+15550000002"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(s.data.get_tenant(a).await.unwrap().is_some());
    assert!(
        s.data
            .get_tenant(domain::TenantId::new())
            .await
            .unwrap()
            .is_none()
    );
    let status = s.data.migration_status().await.unwrap();
    assert!(status.is_current() && status.known > 0);
}

async fn data_keys_are_put_once(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    assert!(s.data.data_key(t).await.unwrap().is_none());
    let first = StoredDataKey {
        key_id: 7,
        kek_id: 9,
        wrapped: vec![1; 60],
    };
    let second = StoredDataKey {
        key_id: 8,
        kek_id: 9,
        wrapped: vec![2; 60],
    };
    assert_eq!(s.data.put_data_key(t, first.clone()).await.unwrap(), first);
    // A concurrent second writer gets the first key back.
    assert_eq!(s.data.put_data_key(t, second).await.unwrap(), first);
    assert_eq!(s.data.data_key(t).await.unwrap(), Some(first));
}

async fn api_keys_are_found_by_digest(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let key = s
        .data
        .create_api_key(
            t,
            NewApiKey {
                prefix: "ck_abc".into(),
                digest: [3; 32],
            },
        )
        .await
        .unwrap();
    let found = s.data.api_key_by_digest(&[3; 32]).await.unwrap().unwrap();
    assert_eq!(found.id, key.id);
    assert_eq!(found.tenant_id, t);
    assert!(s.data.api_key_by_digest(&[4; 32]).await.unwrap().is_none());
    let err = s
        .data
        .create_api_key(
            domain::TenantId::new(),
            NewApiKey {
                prefix: "x".into(),
                digest: [5; 32],
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
}
