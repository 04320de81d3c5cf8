//! API keys: every `/api/v1` resource requires one, and a tenant sees only its own data.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use store::Page;
use testkit::TestDb;

use crate::{CUSTOMER, HOURS, TestApp, each_backend};

each_backend!(
    requires_a_valid_api_key,
    accepts_the_bearer_scheme_in_any_case,
    isolates_tenants
);

async fn requires_a_valid_api_key(db: &TestDb) {
    let app = TestApp::new(db).await;
    let unknown = crypto::api_key::generate().key;
    let authorizations: Vec<Option<String>> = vec![
        None,
        Some(String::new()),
        Some("Bearer".into()),
        Some("Bearer ".into()),
        Some("Bearer not-a-key".into()),
        Some(format!("Bearer {}", &app.api_key[..app.api_key.len() - 1])),
        Some(format!("Basic {}", app.api_key)),
        Some(app.api_key.clone()),
        Some(format!("Bearer {unknown}")),
    ];
    let chat = serde_json::json!({ "message": "opening hours?" });
    let requests: [(Method, String, Option<&serde_json::Value>); 5] = [
        (Method::GET, "/api/v1/conversations".into(), None),
        (Method::GET, "/api/v1/kb".into(), None),
        (Method::GET, format!("/api/v1/kb/{}", app.kb_entry), None),
        (Method::DELETE, format!("/api/v1/kb/{}", app.kb_entry), None),
        (Method::POST, "/api/v1/chat/messages".into(), Some(&chat)),
    ];
    for (method, path, json) in &requests {
        for authorization in &authorizations {
            let mut req = Request::builder().method(method.clone()).uri(path.as_str());
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a.as_str());
            }
            let body = match json {
                Some(v) => {
                    req = req.header(header::CONTENT_TYPE, "application/json");
                    Body::from(serde_json::to_vec(v).unwrap())
                }
                None => Body::empty(),
            };
            let res = app.request(req.body(body).unwrap()).await;
            res.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
            assert_eq!(
                res.header("www-authenticate"),
                Some("Bearer"),
                "{method} {path} with {authorization:?}"
            );
        }
    }
    // Nothing happened: the entry is still there and no chat was recorded.
    assert!(
        app.stores
            .data
            .get_kb_entry(app.tenant.id, app.kb_entry)
            .await
            .unwrap()
            .is_some()
    );
    app.assert_nothing_stored(CUSTOMER).await;

    // The real key works (twice: the second time from the key cache).
    for _ in 0..2 {
        let res = app.get("/api/v1/kb").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    }
}

/// Authentication schemes are case-insensitive (RFC 9110 §11.1): `bearer <key>` is the
/// same credential as `Bearer <key>`.
async fn accepts_the_bearer_scheme_in_any_case(db: &TestDb) {
    let app = TestApp::new(db).await;
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let req = Request::builder()
            .uri("/api/v1/kb")
            .header(header::AUTHORIZATION, format!("{scheme} {}", app.api_key))
            .body(Body::empty())
            .unwrap();
        let res = app.request(req).await;
        assert_eq!(
            res.status,
            StatusCode::OK,
            "scheme {scheme:?}: {}",
            res.text()
        );
    }
}

async fn isolates_tenants(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.text("SMiso1", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(Some(HOURS));
    let conversation = app.only_conversation().await;
    let (other, other_key) = app.other_tenant("+15550000002").await;
    let key = Some(other_key.as_str());
    let entry = format!("/api/v1/kb/{}", app.kb_entry);

    app.api(Method::GET, &entry, key, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let update = serde_json::json!({ "title": "Hijacked", "body": "Closed forever." });
    app.api(Method::PUT, &entry, key, Some(&update))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.api(Method::DELETE, &entry, key, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    let messages = format!("/api/v1/conversations/{conversation}/messages");
    app.api(Method::GET, &messages, key, None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let res = app
        .api(Method::GET, "/api/v1/conversations", key, None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["items"], serde_json::json!([]));
    let res = app.api(Method::GET, "/api/v1/kb", key, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json()["items"], serde_json::json!([]));

    // Continuing the first tenant's conversation from the second tenant's chat.
    let chat =
        serde_json::json!({ "conversation_id": conversation, "message": "what did they say?" });
    app.api(Method::POST, "/api/v1/chat/messages", key, Some(&chat))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // The first tenant's data is unchanged; the second tenant wrote nothing.
    let stored = app
        .stores
        .data
        .get_kb_entry(app.tenant.id, app.kb_entry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.title.as_str(), stored.body.as_str()),
        (crate::HOURS_TITLE, HOURS)
    );
    assert_eq!(app.messages(&conversation).await.len(), 2);
    assert!(
        app.stores
            .data
            .list_conversations(other, Page::default())
            .await
            .unwrap()
            .is_empty()
    );

    // The second tenant's own data is its own.
    let res = app
        .api(Method::POST, "/api/v1/kb", key, Some(&update))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let res = app.get("/api/v1/kb").await;
    let titles: Vec<serde_json::Value> = res.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert_eq!(titles, [crate::HOURS_TITLE]);
}
