//! Knowledge-base vectors: stored and read back bit for bit, one per entry (the last put
//! wins, of any model), read per model, gone with their entry, listed again once their
//! entry changes, and each tenant's alone.

use std::collections::BTreeSet;

use domain::{KbEntryId, TenantId};
use store::{KbEntry, KbEntryInput, Page, StoreError, Stores};

use crate::{conformance, tenant};

conformance!(
    vectors_round_trip_bit_for_bit,
    a_second_put_replaces_the_vector_of_any_model,
    vectors_are_read_per_model,
    vectors_go_with_their_entry,
    entries_to_embed_are_missing_other_model_or_stale,
    an_edit_racing_the_embedding_is_not_lost,
    entries_to_embed_page_newest_first,
    entries_are_fetched_by_id_within_the_tenant,
    vectors_are_the_tenants_alone,
);

const MODEL: &str = "text-embedding-3-small@3";

async fn entry(s: &Stores, t: TenantId, title: &str, body: &str) -> KbEntry {
    s.data
        .add_kb_entry(
            t,
            KbEntryInput {
                title: title.into(),
                body: body.into(),
            },
        )
        .await
        .unwrap()
}

async fn put(s: &Stores, t: TenantId, e: &KbEntry, model: &str, v: &[f32]) {
    s.data
        .put_kb_embedding(t, e, model, &[7; 32], v)
        .await
        .unwrap();
}

async fn to_embed(s: &Stores, t: TenantId, model: &str) -> BTreeSet<KbEntryId> {
    s.data
        .kb_entries_to_embed(t, model, Page::new(200, None))
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect()
}

fn ids<const N: usize>(entries: [&KbEntry; N]) -> BTreeSet<KbEntryId> {
    entries.iter().map(|e| e.id).collect()
}

async fn vectors_round_trip_bit_for_bit(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let e = entry(s, t, "Parking", "Behind the restaurant.").await;
    assert!(s.data.kb_embeddings(t, MODEL).await.unwrap().is_empty());
    let v = [0.25_f32, -1.5e-7, f32::MAX, -0.0, 1.0 / 3.0];
    put(s, t, &e, MODEL, &v).await;
    let stored = s.data.kb_embeddings(t, MODEL).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].0, e.id);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&stored[0].1), bits(&v));

    // The bytes are the documented encoding, the same on both backends.
    assert_eq!(store::vector_to_bytes(&[1.0]), vec![0, 0, 0x80, 0x3f]);
    assert_eq!(
        store::vector_from_bytes(&[0, 0, 0x80, 0x3f]),
        Some(vec![1.0])
    );
    assert_eq!(store::vector_from_bytes(&[0, 0, 0x80]), None);

    // Nothing to store is refused, and nothing is stored.
    let empty = s.data.put_kb_embedding(t, &e, "other", &[7; 32], &[]).await;
    assert!(matches!(empty, Err(StoreError::Database(_))), "{empty:?}");
    assert!(s.data.kb_embeddings(t, "other").await.unwrap().is_empty());
}

async fn a_second_put_replaces_the_vector_of_any_model(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let e = entry(s, t, "Parking", "Behind the restaurant.").await;
    put(s, t, &e, MODEL, &[1.0, 2.0, 3.0]).await;
    put(s, t, &e, MODEL, &[4.0, 5.0, 6.0]).await;
    assert_eq!(
        s.data.kb_embeddings(t, MODEL).await.unwrap(),
        vec![(e.id, vec![4.0, 5.0, 6.0])]
    );
    // Another model (of another length): the entry now has that vector, and only that one.
    put(s, t, &e, "gemini-embedding-001@2", &[0.5, 0.5]).await;
    assert!(s.data.kb_embeddings(t, MODEL).await.unwrap().is_empty());
    assert_eq!(
        s.data
            .kb_embeddings(t, "gemini-embedding-001@2")
            .await
            .unwrap(),
        vec![(e.id, vec![0.5, 0.5])]
    );
    assert_eq!(to_embed(s, t, MODEL).await, ids([&e]));
    assert!(to_embed(s, t, "gemini-embedding-001@2").await.is_empty());
}

async fn vectors_are_read_per_model(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let a = entry(s, t, "Parking", "Behind the restaurant.").await;
    let b = entry(s, t, "Hours", "Nine to five.").await;
    let c = entry(s, t, "Pets", "Dogs welcome.").await;
    put(s, t, &a, MODEL, &[1.0, 0.0, 0.0]).await;
    put(s, t, &b, "other@3", &[0.0, 1.0, 0.0]).await;
    put(s, t, &c, MODEL, &[0.0, 0.0, 1.0]).await;
    let mut mine = s.data.kb_embeddings(t, MODEL).await.unwrap();
    mine.sort_by_key(|(id, _)| *id);
    assert_eq!(
        mine,
        vec![(a.id, vec![1.0, 0.0, 0.0]), (c.id, vec![0.0, 0.0, 1.0])]
    );
    assert_eq!(
        s.data.kb_embeddings(t, "other@3").await.unwrap(),
        vec![(b.id, vec![0.0, 1.0, 0.0])]
    );
    assert!(s.data.kb_embeddings(t, "none").await.unwrap().is_empty());
}

async fn vectors_go_with_their_entry(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let a = entry(s, t, "Parking", "Behind the restaurant.").await;
    let b = entry(s, t, "Hours", "Nine to five.").await;
    put(s, t, &a, MODEL, &[1.0, 0.0, 0.0]).await;
    put(s, t, &b, MODEL, &[0.0, 1.0, 0.0]).await;
    s.data.delete_kb_entry(t, a.id).await.unwrap();
    assert_eq!(
        s.data.kb_embeddings(t, MODEL).await.unwrap(),
        vec![(b.id, vec![0.0, 1.0, 0.0])]
    );
    // A vector for an entry that is gone (deleted while it was being embedded) is refused.
    let late = s
        .data
        .put_kb_embedding(t, &a, MODEL, &[7; 32], &[1.0, 0.0, 0.0])
        .await;
    assert!(matches!(late, Err(StoreError::NotFound)), "{late:?}");
    assert_eq!(s.data.kb_embeddings(t, MODEL).await.unwrap().len(), 1);
}

async fn entries_to_embed_are_missing_other_model_or_stale(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let a = entry(s, t, "Parking", "Behind the restaurant.").await;
    let b = entry(s, t, "Hours", "Nine to five.").await;
    let c = entry(s, t, "Pets", "Dogs welcome.").await;
    assert_eq!(to_embed(s, t, MODEL).await, ids([&a, &b, &c]));

    put(s, t, &a, MODEL, &[1.0, 0.0, 0.0]).await;
    put(s, t, &b, MODEL, &[0.0, 1.0, 0.0]).await;
    put(s, t, &c, "other@3", &[0.0, 0.0, 1.0]).await;
    assert_eq!(to_embed(s, t, MODEL).await, ids([&c]));
    assert_eq!(to_embed(s, t, "other@3").await, ids([&a, &b]));

    // An edit makes the vector stale at once (in the same millisecond too); the stale
    // vector is still served until a new one replaces it.
    let b2 = s
        .data
        .update_kb_entry(
            t,
            b.id,
            KbEntryInput {
                title: "Opening hours".into(),
                body: "Nine to six.".into(),
            },
        )
        .await
        .unwrap();
    assert_eq!(to_embed(s, t, MODEL).await, ids([&b, &c]));
    assert_eq!(s.data.kb_embeddings(t, MODEL).await.unwrap().len(), 2);
    put(s, t, &b2, MODEL, &[0.0, 0.5, 0.5]).await;
    assert_eq!(to_embed(s, t, MODEL).await, ids([&c]));
}

async fn an_edit_racing_the_embedding_is_not_lost(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let a = entry(s, t, "Parking", "Behind the restaurant.").await;
    // The indexer read `a`, then the entry was edited (on the clock's next millisecond at
    // the latest), then the indexer stored the vector of what it had read.
    let before = a.updated_at;
    loop {
        if jiff::Timestamp::now().as_millisecond() > before.as_millisecond() {
            break;
        }
        tokio::task::yield_now().await;
    }
    let edited = s
        .data
        .update_kb_entry(
            t,
            a.id,
            KbEntryInput {
                title: "Parking".into(),
                body: "In the garage next door.".into(),
            },
        )
        .await
        .unwrap();
    assert_ne!(edited.updated_at, a.updated_at);
    put(s, t, &a, MODEL, &[1.0, 0.0, 0.0]).await;
    assert_eq!(
        s.data.kb_embeddings(t, MODEL).await.unwrap().len(),
        1,
        "the vector of the old version is kept until a newer one comes"
    );
    assert_eq!(to_embed(s, t, MODEL).await, ids([&a]));
    put(s, t, &edited, MODEL, &[0.0, 1.0, 0.0]).await;
    assert!(to_embed(s, t, MODEL).await.is_empty());
}

async fn entries_to_embed_page_newest_first(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let mut made = Vec::new();
    for i in 0..5 {
        made.push(entry(s, t, &format!("Entry {i}"), "Body.").await);
    }
    put(s, t, &made[2], MODEL, &[1.0]).await;
    let first = s
        .data
        .kb_entries_to_embed(t, MODEL, Page::new(2, None))
        .await
        .unwrap();
    assert_eq!(
        first.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![made[4].id, made[3].id]
    );
    assert_eq!(first[0], made[4], "whole entries, as stored");
    let next = s
        .data
        .kb_entries_to_embed(t, MODEL, Page::new(2, Some(made[3].id.into_uuid())))
        .await
        .unwrap();
    assert_eq!(
        next.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![made[1].id, made[0].id]
    );
    let last = s
        .data
        .kb_entries_to_embed(t, MODEL, Page::new(2, Some(made[0].id.into_uuid())))
        .await
        .unwrap();
    assert!(last.is_empty());
}

async fn entries_are_fetched_by_id_within_the_tenant(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let u = tenant(s, "Other", "+15550000002").await;
    let a = entry(s, t, "Parking", "Behind the restaurant.").await;
    let b = entry(s, t, "Hours", "Nine to five.").await;
    let theirs = entry(s, u, "Secret", "Theirs.").await;
    assert!(s.data.get_kb_entries(t, &[]).await.unwrap().is_empty());
    let mut got = s
        .data
        .get_kb_entries(t, &[b.id, theirs.id, KbEntryId::new(), a.id, b.id])
        .await
        .unwrap();
    got.sort_by_key(|e| e.id);
    assert_eq!(got, vec![a.clone(), b.clone()]);
    assert_eq!(
        s.data.get_kb_entries(u, &[a.id, theirs.id]).await.unwrap(),
        vec![theirs]
    );
    // More ids than one statement binds.
    let many: Vec<KbEntryId> = (0..1200).map(|_| KbEntryId::new()).chain([a.id]).collect();
    assert_eq!(s.data.get_kb_entries(t, &many).await.unwrap(), vec![a]);
}

async fn vectors_are_the_tenants_alone(s: &Stores) {
    let t = tenant(s, "Acme", "+15550000001").await;
    let u = tenant(s, "Other", "+15550000002").await;
    let mine = entry(s, t, "Parking", "Behind the restaurant.").await;
    let theirs = entry(s, u, "Parking", "On the street.").await;
    // Another tenant's entry cannot be given a vector through this tenant.
    let wrong = s
        .data
        .put_kb_embedding(t, &theirs, MODEL, &[7; 32], &[1.0, 0.0, 0.0])
        .await;
    assert!(matches!(wrong, Err(StoreError::NotFound)), "{wrong:?}");
    let wrong = s
        .data
        .put_kb_embedding(u, &mine, MODEL, &[7; 32], &[1.0, 0.0, 0.0])
        .await;
    assert!(matches!(wrong, Err(StoreError::NotFound)), "{wrong:?}");
    assert!(s.data.kb_embeddings(t, MODEL).await.unwrap().is_empty());
    assert!(s.data.kb_embeddings(u, MODEL).await.unwrap().is_empty());

    put(s, t, &mine, MODEL, &[1.0, 0.0, 0.0]).await;
    put(s, u, &theirs, MODEL, &[0.0, 1.0, 0.0]).await;
    assert_eq!(
        s.data.kb_embeddings(t, MODEL).await.unwrap(),
        vec![(mine.id, vec![1.0, 0.0, 0.0])]
    );
    assert_eq!(
        s.data.kb_embeddings(u, MODEL).await.unwrap(),
        vec![(theirs.id, vec![0.0, 1.0, 0.0])]
    );
    assert_eq!(to_embed(s, t, MODEL).await, BTreeSet::new());
    let fresh = entry(s, u, "Hours", "Nine to five.").await;
    assert_eq!(to_embed(s, u, MODEL).await, ids([&fresh]));
    assert!(to_embed(s, t, MODEL).await.is_empty());
}
