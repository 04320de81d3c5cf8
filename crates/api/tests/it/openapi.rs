//! The OpenAPI document: snapshot-tested against `crates/api/openapi.json`, served by the
//! API, and consistent with what the handlers really answer.

use axum::http::{Method, StatusCode};
use testkit::TestDb;

use crate::{TestApp, each_backend};

each_backend!(serves_the_document);

fn snapshot_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json")
}

#[test]
fn document_matches_the_snapshot() {
    let actual = format!("{}\n", api::openapi::document());
    let path = snapshot_path();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}); run `UPDATE_SNAPSHOTS=1 cargo test -p api` to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "the OpenAPI document changed; review the diff and run `UPDATE_SNAPSHOTS=1 cargo test -p api` \
         to update {}\n--- snapshot\n{expected}\n--- actual\n{actual}",
        path.display()
    );
}

fn document() -> serde_json::Value {
    serde_json::from_str(&api::openapi::document()).unwrap()
}

const PATHS: [&str; 13] = [
    "/api/v1/chat/messages",
    "/api/v1/conversations",
    "/api/v1/conversations/{id}/handoff",
    "/api/v1/conversations/{id}/handoff/take",
    "/api/v1/conversations/{id}/messages",
    "/api/v1/default-profile",
    "/api/v1/handoffs",
    "/api/v1/kb",
    "/api/v1/kb/{id}",
    "/api/v1/model-settings",
    "/api/v1/profiles",
    "/api/v1/profiles/{name}",
    "/api/v1/profiles/{name}/versions",
];

#[test]
fn document_lists_every_api_route() {
    let doc = document();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let mut paths: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    paths.sort_unstable();
    assert_eq!(paths, PATHS);
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let methods: Vec<(&str, Vec<&str>)> = PATHS
        .iter()
        .map(|p| {
            (
                *p,
                doc["paths"][*p]
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        methods,
        [
            ("/api/v1/chat/messages", vec!["post"]),
            ("/api/v1/conversations", vec!["get"]),
            ("/api/v1/conversations/{id}/handoff", vec!["delete", "post"]),
            ("/api/v1/conversations/{id}/handoff/take", vec!["post"]),
            ("/api/v1/conversations/{id}/messages", vec!["get", "post"]),
            ("/api/v1/default-profile", vec!["put"]),
            ("/api/v1/handoffs", vec!["get"]),
            ("/api/v1/kb", vec!["get", "post"]),
            ("/api/v1/kb/{id}", vec!["delete", "get", "put"]),
            ("/api/v1/model-settings", vec!["delete", "get", "put"]),
            ("/api/v1/profiles", vec!["get"]),
            ("/api/v1/profiles/{name}", vec!["get", "put"]),
            ("/api/v1/profiles/{name}/versions", vec!["get"]),
        ]
    );
}

/// Each operation documents the errors the handler really returns: every one requires a key
/// (401), every one with an `{id}` path parameter refuses a malformed id (400) and an unknown
/// one (404), every one with a `{name}` refuses a malformed name (400) and, when it reads,
/// an unknown one (404), and every one with a JSON body refuses a wrong content type (415).
#[test]
fn document_declares_the_errors_handlers_return() {
    let doc = document();
    let mut missing = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"].as_object().unwrap();
            let mut expect = vec!["401"];
            if path.contains("{id}") || path.contains("{name}") {
                expect.push("400");
            }
            if path.contains("{id}") || (path.contains("{name}") && method == "get") {
                expect.push("404");
            }
            if op.get("requestBody").is_some() {
                expect.extend(["400", "415"]);
            }
            if op
                .get("parameters")
                .and_then(|p| p.as_array())
                .is_some_and(|p| p.iter().any(|p| p["in"] == "query"))
            {
                expect.push("400");
            }
            for status in expect {
                if !responses.contains_key(status)
                    && !missing.contains(&format!("{method} {path}: {status}"))
                {
                    missing.push(format!("{method} {path}: {status}"));
                }
            }
            assert!(
                op["security"].as_array().is_some_and(|s| !s.is_empty()),
                "{method} {path} has no security"
            );
        }
    }
    assert!(
        missing.is_empty(),
        "responses missing from the OpenAPI document:\n{}",
        missing.join("\n")
    );
}

async fn serves_the_document(db: &TestDb) {
    let app = TestApp::new(db).await;
    // Public: a client reads it before it has a key.
    let res = app
        .api(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header("content-type")
            .is_some_and(|c| c.starts_with("application/json"))
    );
    let served = res.json();
    assert!(served["openapi"].is_string());
    let paths = served["paths"].as_object().unwrap();
    assert!(!paths.is_empty());
    assert!(
        paths.keys().all(|p| p.starts_with("/api/v1/")),
        "{:?}",
        paths.keys()
    );
    assert_eq!(
        served,
        document(),
        "the served document is the snapshot-tested one"
    );
}
