//! Hybrid retrieval against the fake OpenAI embeddings, on both backends: vectors find what
//! full text misses, fusion puts entries found both ways first, search degrades to full
//! text when the embedder fails or is slow, edits are re-embedded, refused entries are
//! skipped, and no tenant ever sees another's entries.
//!
//! The fake's vectors are hashed bags of words (64 buckets), so two words that land in the
//! same bucket look alike to it: "discount" and "sale" do, and stand in for synonyms here.
//! Full-text search matches words by prefix, so it never relates the two.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::retrieval::{IndexError, Retriever, RetrieverConfig, content_hash};
use domain::{KbEntryId, PhoneNumber, TenantId, TenantName};
use llm::embed::{OpenAiEmbedConfig, OpenAiEmbedder};
use llm::{Embedder, cosine};
use store::{KbEntry, KbEntryInput, NewTenant, Stores};
use testkit::TestDb;
use testkit::fake_llm::{EMBEDDING_DIMENSIONS, EmbedReply, FakeOpenAi, fake_embedding};

/// The vector space the fake's answers make for the model `fake-embed`.
const SPACE: &str = "fake-embed@64";

/// Runs each listed test once per backend, on a fresh database.
macro_rules! on_each_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::postgres().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )+
        }
    };
}

on_each_backend!(
    vectors_add_what_full_text_misses,
    entries_found_both_ways_come_first,
    a_failing_embedder_degrades_to_full_text,
    a_slow_embedder_degrades_to_full_text,
    edits_are_re_embedded_and_deleted_entries_never_return,
    refused_entries_are_skipped_and_tried_again,
    a_new_model_re_embeds_everything,
    no_tenant_sees_another_tenants_entries,
    the_index_loop_embeds_until_shut_down,
);

const PARK: (&str, &str) = ("Where to park", "Park in the lot behind the restaurant.");
const FEES: (&str, &str) = ("Parking fees", "Parking costs five euros per day.");
const SALE: (&str, &str) = (
    "Winter sale",
    "Everything is twenty percent off in January.",
);
const HOURS: (&str, &str) = ("Opening hours", "Weekdays from 9am until 5pm.");

struct Kb {
    stores: Stores,
    tenant: TenantId,
    park: KbEntry,
    fees: KbEntry,
    sale: KbEntry,
    hours: KbEntry,
}

async fn tenant(stores: &Stores, name: &str, phone: &str) -> TenantId {
    stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse(name).unwrap(),
            phone_numbers: vec![PhoneNumber::parse(phone).unwrap()],
        })
        .await
        .unwrap()
        .id
}

async fn add(stores: &Stores, t: TenantId, (title, body): (&str, &str)) -> KbEntry {
    stores
        .data
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

async fn edit(stores: &Stores, t: TenantId, id: KbEntryId, (title, body): (&str, &str)) -> KbEntry {
    stores
        .data
        .update_kb_entry(
            t,
            id,
            KbEntryInput {
                title: title.into(),
                body: body.into(),
            },
        )
        .await
        .unwrap()
}

async fn kb(db: &TestDb) -> Kb {
    let stores = db.stores();
    let t = tenant(&stores, "Bistro", "+15550000001").await;
    Kb {
        park: add(&stores, t, PARK).await,
        fees: add(&stores, t, FEES).await,
        sale: add(&stores, t, SALE).await,
        hours: add(&stores, t, HOURS).await,
        stores,
        tenant: t,
    }
}

/// The fake's similarity of a query and an entry, as the retriever computes it.
fn similarity(query: &str, (title, body): (&str, &str)) -> f32 {
    cosine(
        &fake_embedding(query, EMBEDDING_DIMENSIONS),
        &fake_embedding(&format!("{title}\n{body}"), EMBEDDING_DIMENSIONS),
    )
}

fn embedder(fake: &FakeOpenAi, model: &str) -> Arc<dyn Embedder> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Arc::new(
        OpenAiEmbedder::new(OpenAiEmbedConfig::compatible(
            "fake",
            fake.base_url(),
            model,
        ))
        .unwrap(),
    )
}

fn retriever(stores: &Stores, embedder: Option<Arc<dyn Embedder>>) -> Retriever {
    retriever_with(stores, embedder, RetrieverConfig::default())
}

fn retriever_with(
    stores: &Stores,
    embedder: Option<Arc<dyn Embedder>>,
    config: RetrieverConfig,
) -> Retriever {
    Retriever::new(stores.data.clone(), embedder, config)
}

async fn ids(r: &Retriever, t: TenantId, query: &str) -> Vec<KbEntryId> {
    r.search(t, query, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.entry.id)
        .collect()
}

async fn fts_ids(stores: &Stores, t: TenantId, query: &str) -> Vec<KbEntryId> {
    stores
        .data
        .search_kb(t, query, 5)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.entry.id)
        .collect()
}

async fn vectors_add_what_full_text_misses(db: &TestDb) {
    // The fake relates "discount" to the sale entry and to nothing else.
    assert!(similarity("discount", SALE) > 0.3);
    for other in [PARK, FEES, HOURS] {
        assert!(similarity("discount", other) < 0.2, "{other:?}");
    }
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    let fts_only = retriever(&kb.stores, None);
    assert!(
        fts_only
            .search(kb.tenant, "discount", 5)
            .await
            .unwrap()
            .is_empty()
    );

    // Before indexing there are no vectors: full text alone, and nothing.
    assert!(ids(&r, kb.tenant, "discount").await.is_empty());
    assert_eq!(r.index_tenant(kb.tenant, 2).await.unwrap(), 4);
    assert_eq!(r.index_tenant(kb.tenant, 2).await.unwrap(), 0);
    assert_eq!(ids(&r, kb.tenant, "discount").await, vec![kb.sale.id]);
    let hits = r.search(kb.tenant, "discount", 5).await.unwrap();
    assert_eq!(hits[0].entry, kb.sale);
    assert!(
        (hits[0].score - 1.0 / 61.0).abs() < 1e-9,
        "{}",
        hits[0].score
    );

    // The stored vector is the fake's of the title and body, with the entry's hash.
    let stored = kb
        .stores
        .data
        .kb_embeddings(kb.tenant, SPACE)
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
    let (_, sale) = stored.iter().find(|(id, _)| *id == kb.sale.id).unwrap();
    assert_eq!(
        *sale,
        fake_embedding(&format!("{}\n{}", SALE.0, SALE.1), EMBEDDING_DIMENSIONS)
    );
    assert_ne!(content_hash(&kb.sale), content_hash(&kb.park));
    // Texts with no words are not sent to the embedder.
    let calls = fake.embedding_calls();
    assert!(ids(&r, kb.tenant, "?!").await.is_empty());
    assert_eq!(fake.embedding_calls(), calls);
}

async fn entries_found_both_ways_come_first(db: &TestDb) {
    let query = "park discount";
    // Full text finds both parking entries ("park" is a prefix of "parking"); the vectors
    // find the entry saying "park" and the sale, not the fees nor the hours.
    assert!(similarity(query, PARK) > 0.3);
    assert!(similarity(query, SALE) > 0.2);
    assert!(similarity(query, FEES) < 0.2);
    assert!(similarity(query, HOURS) < 0.2);
    let kb = kb(db).await;
    let mut fts = fts_ids(&kb.stores, kb.tenant, query).await;
    fts.sort();
    let mut expected = vec![kb.park.id, kb.fees.id];
    expected.sort();
    assert_eq!(fts, expected);

    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    r.index_tenant(kb.tenant, 10).await.unwrap();
    let hits = r.search(kb.tenant, query, 5).await.unwrap();
    let order: Vec<KbEntryId> = hits.iter().map(|h| h.entry.id).collect();
    assert_eq!(order.len(), 3, "{hits:?}");
    // In both rankings, whatever its ranks: first.
    assert_eq!(order[0], kb.park.id);
    assert!(order.contains(&kb.fees.id) && order.contains(&kb.sale.id));
    assert!(!order.contains(&kb.hours.id));
    assert!(hits[0].score > hits[1].score && hits[1].score >= hits[2].score);
    // A limit keeps the best.
    let one = r.search(kb.tenant, query, 1).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].entry.id, kb.park.id);
}

async fn a_failing_embedder_degrades_to_full_text(db: &TestDb) {
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    r.index_tenant(kb.tenant, 10).await.unwrap();
    let hybrid = ids(&r, kb.tenant, "park discount").await;
    assert_eq!(hybrid.len(), 3);

    fake.push_embedding(EmbedReply::Status(500, None));
    assert_eq!(
        ids(&r, kb.tenant, "park discount").await,
        fts_ids(&kb.stores, kb.tenant, "park discount").await
    );
    fake.push_embedding(EmbedReply::Status(500, None));
    assert!(ids(&r, kb.tenant, "discount").await.is_empty());
    // A malformed answer too.
    fake.push_embedding(EmbedReply::Body("{\"data\": [".into()));
    assert!(ids(&r, kb.tenant, "discount").await.is_empty());
    // And the next search is hybrid again.
    assert_eq!(ids(&r, kb.tenant, "park discount").await, hybrid);

    // Indexing with the embedder down fails, and stores nothing.
    edit(&kb.stores, kb.tenant, kb.hours.id, ("Hours", "Every day.")).await;
    fake.push_embedding(EmbedReply::Status(503, None));
    let failed = r.index_tenant(kb.tenant, 10).await;
    assert!(matches!(failed, Err(IndexError::Embed(_))), "{failed:?}");
    assert_eq!(r.index_tenant(kb.tenant, 10).await.unwrap(), 1);
}

async fn a_slow_embedder_degrades_to_full_text(db: &TestDb) {
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever_with(
        &kb.stores,
        Some(embedder(&fake, "fake-embed")),
        RetrieverConfig {
            query_timeout: Duration::from_millis(200),
            ..RetrieverConfig::default()
        },
    );
    r.index_tenant(kb.tenant, 10).await.unwrap();
    assert_eq!(ids(&r, kb.tenant, "discount").await, vec![kb.sale.id]);

    fake.push_embedding_delayed(EmbedReply::Vectors, Duration::from_secs(5));
    let started = Instant::now();
    assert_eq!(
        ids(&r, kb.tenant, "park discount").await,
        fts_ids(&kb.stores, kb.tenant, "park discount").await
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

async fn edits_are_re_embedded_and_deleted_entries_never_return(db: &TestDb) {
    let no_sale = ("Winter hours", "Closed in January.");
    let with_sale = (
        "Opening hours",
        "Weekdays from 9am until 5pm, and a sale on Sundays.",
    );
    assert!(similarity("discount", no_sale) < 0.2);
    assert!(similarity("discount", with_sale) > 0.2);
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    r.index_tenant(kb.tenant, 10).await.unwrap();
    assert_eq!(ids(&r, kb.tenant, "discount").await, vec![kb.sale.id]);

    let sale_now = edit(&kb.stores, kb.tenant, kb.sale.id, no_sale).await;
    edit(&kb.stores, kb.tenant, kb.hours.id, with_sale).await;
    // Until re-embedded, the old vectors answer (with the entries as they are now).
    let hits = r.search(kb.tenant, "discount", 5).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].entry, sale_now);
    let calls = fake.embedding_calls();
    assert_eq!(r.index_tenant(kb.tenant, 10).await.unwrap(), 2);
    assert_eq!(
        fake.embedding_calls(),
        calls + 1,
        "both edits in one request"
    );
    let sent = fake.embedding_requests().last().unwrap()["input"].clone();
    assert_eq!(sent.as_array().unwrap().len(), 2);
    // The retriever's own cache is refreshed by indexing.
    assert_eq!(ids(&r, kb.tenant, "discount").await, vec![kb.hours.id]);

    // Deleted, its vector goes; a search still holding it in cache does not return it.
    kb.stores
        .data
        .delete_kb_entry(kb.tenant, kb.hours.id)
        .await
        .unwrap();
    assert!(ids(&r, kb.tenant, "discount").await.is_empty());
    let fresh = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    assert!(ids(&fresh, kb.tenant, "discount").await.is_empty());
}

async fn refused_entries_are_skipped_and_tried_again(db: &TestDb) {
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    // Learn the vector space first, so the script below meets the indexing calls.
    assert!(ids(&r, kb.tenant, "discount").await.is_empty());
    // The batch is refused; one at a time (newest first), the first entry is refused again.
    fake.push_embedding(EmbedReply::Status(400, None));
    fake.push_embedding(EmbedReply::Status(400, None));
    assert_eq!(r.index_tenant(kb.tenant, 10).await.unwrap(), 3);
    let left = kb
        .stores
        .data
        .kb_entries_to_embed(kb.tenant, SPACE, store::Page::default())
        .await
        .unwrap();
    assert_eq!(left, vec![kb.hours.clone()]);
    assert_eq!(r.index_tenant(kb.tenant, 10).await.unwrap(), 1);
    assert_eq!(r.index_tenant(kb.tenant, 10).await.unwrap(), 0);
}

async fn a_new_model_re_embeds_everything(db: &TestDb) {
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let old = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    assert_eq!(old.index_tenant(kb.tenant, 3).await.unwrap(), 4);
    let new = retriever(&kb.stores, Some(embedder(&fake, "fake-embed-2")));
    assert_eq!(new.index_tenant(kb.tenant, 3).await.unwrap(), 4);
    assert_eq!(
        kb.stores
            .data
            .kb_embeddings(kb.tenant, "fake-embed-2@64")
            .await
            .unwrap()
            .len(),
        4
    );
    assert!(
        kb.stores
            .data
            .kb_embeddings(kb.tenant, SPACE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(ids(&new, kb.tenant, "discount").await, vec![kb.sale.id]);
}

async fn no_tenant_sees_another_tenants_entries(db: &TestDb) {
    let theirs_sale = ("Big sale", "Half price on everything this week.");
    assert!(similarity("discount", theirs_sale) > 0.3);
    let kb = kb(db).await;
    let other = tenant(&kb.stores, "Garage", "+15550000002").await;
    let theirs = add(&kb.stores, other, theirs_sale).await;
    let fake = FakeOpenAi::start().await;
    let r = retriever(&kb.stores, Some(embedder(&fake, "fake-embed")));
    assert_eq!(r.index_all().await.unwrap(), 5);
    assert_eq!(r.index_all().await.unwrap(), 0);

    assert_eq!(ids(&r, kb.tenant, "discount").await, vec![kb.sale.id]);
    assert_eq!(ids(&r, other, "discount").await, vec![theirs.id]);
    for query in ["sale", "discount sale", "park discount", "half price"] {
        for hit in r.search(kb.tenant, query, 10).await.unwrap() {
            assert_eq!(hit.entry.tenant_id, kb.tenant, "{query}");
        }
        for hit in r.search(other, query, 10).await.unwrap() {
            assert_eq!(hit.entry.id, theirs.id, "{query}");
        }
    }
    // Without an embedder, nothing is indexed and search is full text.
    let plain = retriever(&kb.stores, None);
    assert_eq!(plain.index_all().await.unwrap(), 0);
    assert_eq!(
        plain
            .search(other, "half", 5)
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.entry.id)
            .collect::<Vec<_>>(),
        vec![theirs.id]
    );
}

async fn the_index_loop_embeds_until_shut_down(db: &TestDb) {
    let kb = kb(db).await;
    let fake = FakeOpenAi::start().await;
    let r = Arc::new(retriever(&kb.stores, Some(embedder(&fake, "fake-embed"))));
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(r.clone().index_loop(Duration::from_millis(20), shutdown));
    let embedded = async {
        loop {
            let stored = kb
                .stores
                .data
                .kb_embeddings(kb.tenant, SPACE)
                .await
                .unwrap();
            if stored.len() == 4 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), embedded)
        .await
        .expect("the loop embeds the knowledge base");
    // A later entry is picked up by a later pass.
    add(
        &kb.stores,
        kb.tenant,
        ("Pets", "Dogs are welcome on the terrace."),
    )
    .await;
    let again = async {
        while kb
            .stores
            .data
            .kb_embeddings(kb.tenant, SPACE)
            .await
            .unwrap()
            .len()
            < 5
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), again)
        .await
        .expect("the next pass embeds the new entry");
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the loop stops")
        .unwrap();
}
