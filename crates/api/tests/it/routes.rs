//! Routing-level behaviour: unknown routes and methods, health, request ids.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use testkit::TestDb;

use crate::{TestApp, each_backend};

each_backend!(
    unknown_routes_are_json_404s,
    wrong_methods_are_json_errors,
    timeouts_are_json_errors,
    reports_health_and_readiness,
    tags_responses_with_a_request_id,
);

async fn unknown_routes_are_json_404s(db: &TestDb) {
    let app = TestApp::new(db).await;
    for path in [
        "/nope",
        "/api/v1/nope",
        "/api/v2/kb",
        "/webhooks/twilio/voice",
        "/api/v1/kb/a/b",
    ] {
        app.get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
        let res = app.api(Method::GET, path, None, None).await;
        res.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

/// Every error is `{"error":{"code","message"}}`, including a method a route does not have.
async fn wrong_methods_are_json_errors(db: &TestDb) {
    let app = TestApp::new(db).await;
    for (method, path) in [
        (Method::PATCH, format!("/api/v1/kb/{}", app.kb_entry)),
        (Method::DELETE, "/api/v1/conversations".to_owned()),
        (Method::GET, "/webhooks/twilio/sms".to_owned()),
    ] {
        let res = app
            .api(method.clone(), &path, Some(&app.api_key), None)
            .await;
        assert_eq!(
            res.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            res.header("allow").is_some(),
            "{method} {path}: 405 names the allowed methods"
        );
        let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_else(|_| {
            panic!(
                "{method} {path}: the 405 body is not JSON: {:?}",
                res.text()
            )
        });
        assert!(
            json["error"]["code"]
                .as_str()
                .is_some_and(|c| !c.is_empty()),
            "{json}"
        );
    }
}

/// A request over `ApiConfig::request_timeout` gets a 503 error body like any other, and
/// its message is kept for the worker.
async fn timeouts_are_json_errors(db: &TestDb) {
    let app = TestApp::builder()
        .engine(Arc::new(crate::webhooks::SlowEngine))
        .inline_budget(Duration::from_secs(20))
        .request_timeout(Duration::from_millis(200))
        .build(db)
        .await;
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &serde_json::json!({ "message": "opening hours?" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::SERVICE_UNAVAILABLE);
    let json: serde_json::Value = serde_json::from_slice(&res.body).unwrap_or_else(|_| {
        panic!(
            "the 503 body of a timed-out request is not JSON: {:?}",
            res.text()
        )
    });
    assert!(
        json["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty()),
        "{json}"
    );

    // The message was recorded before the deadline and its turn job exists, so a worker
    // answers once the abandoned inline lease expires.
    let conversations = app
        .stores
        .data
        .list_conversations(app.tenant.id, store::Page::default())
        .await
        .unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].message_count, 1);
    let stats = app.stores.queue.stats().await.unwrap();
    assert_eq!(stats.queued + stats.running, 1, "{stats:?}");
}

async fn reports_health_and_readiness(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app.api(Method::GET, "/health", None, None).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), serde_json::json!({ "status": "ok" }));
    let res = app.api(Method::GET, "/ready", None, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let json = res.json();
    assert_eq!(json["status"], "ready");
    assert_eq!(
        json["checks"],
        serde_json::json!([{ "name": "database", "ok": true }])
    );
}

async fn tags_responses_with_a_request_id(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app.api(Method::GET, "/health", None, None).await;
    let generated = res.header("x-request-id").expect("a generated request id");
    assert!(generated.parse::<uuid::Uuid>().is_ok(), "{generated}");
    let req = Request::builder()
        .uri("/nope")
        .header("x-request-id", "req-123")
        .body(Body::empty())
        .unwrap();
    let res = app.request(req).await;
    assert_eq!(res.header("x-request-id"), Some("req-123"));
}
