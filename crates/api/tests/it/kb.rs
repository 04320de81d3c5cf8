//! Knowledge-base entries over the API.

use axum::http::{Method, StatusCode};
use serde_json::json;
use testkit::TestDb;

use crate::{CUSTOMER, HOURS, HOURS_TITLE, TestApp, each_backend};

each_backend!(
    creates_reads_updates_and_deletes_entries,
    rejects_invalid_entries,
    rejects_invalid_ids,
    rejects_a_json_array_as_an_entry,
    limits_json_bodies,
    pages_entries,
);

async fn creates_reads_updates_and_deletes_entries(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json(
            "/api/v1/kb",
            &json!({ "title": "  Parking  ", "body": "Free parking behind the building." }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    let created = res.json();
    assert_eq!(created["title"], "Parking", "titles are trimmed");
    assert_eq!(created["body"], "Free parking behind the building.");
    let id = created["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<uuid::Uuid>().is_ok());
    assert!(
        created["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{created}"
    );
    let path = format!("/api/v1/kb/{id}");

    let res = app.get(&path).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.json(), created);

    // Searchable at once: an SMS about parking gets the new entry.
    app.text("SMkb1", CUSTOMER, "where can I park?")
        .await
        .assert_twiml(Some("Free parking behind the building."));

    let res = app
        .put(
            &path,
            &json!({ "title": "Parking", "body": "Parking is on Elm Street." }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let updated = res.json();
    assert_eq!(updated["id"], id);
    assert_eq!(updated["body"], "Parking is on Elm Street.");
    assert_eq!(updated["created_at"], created["created_at"]);
    assert_eq!(
        app.get(&path).await.json()["body"],
        "Parking is on Elm Street."
    );
    app.text("SMkb2", CUSTOMER, "where can I park?")
        .await
        .assert_twiml(Some("Parking is on Elm Street."));

    let res = app.get("/api/v1/kb").await;
    assert_eq!(res.status, StatusCode::OK);
    let titles: Vec<serde_json::Value> = res.json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert_eq!(titles, ["Parking", HOURS_TITLE], "newest first");

    let res = app.delete(&path).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.body.is_empty());
    app.get(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&path)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.put(&path, &json!({ "title": "Parking", "body": "Back again." }))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    // Gone from search as well.
    app.text("SMkb3", CUSTOMER, "where can I park?")
        .await
        .assert_twiml(Some(crate::FALLBACK));
}

async fn rejects_invalid_entries(db: &TestDb) {
    let app = TestApp::new(db).await;
    let entry = format!("/api/v1/kb/{}", app.kb_entry);
    let cases = [
        (json!({ "title": "", "body": "b" }), "invalid_title"),
        (json!({ "title": "   ", "body": "b" }), "invalid_title"),
        (
            json!({ "title": "t".repeat(201), "body": "b" }),
            "invalid_title",
        ),
        (json!({ "title": "t", "body": "" }), "invalid_body"),
        (json!({ "title": "t", "body": " \n " }), "invalid_body"),
        (
            json!({ "title": "t", "body": "b".repeat(20_001) }),
            "invalid_body",
        ),
        (json!({ "title": "t\u{0}", "body": "b" }), "invalid_body"),
        (
            json!({ "title": "t", "body": "b", "pinned": true }),
            "invalid_body",
        ),
        (json!({ "title": "t" }), "invalid_body"),
        (json!({ "title": 5, "body": "b" }), "invalid_body"),
        (json!("t"), "invalid_body"),
        (json!(null), "invalid_body"),
    ];
    for (body, code) in &cases {
        app.post_json("/api/v1/kb", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
        app.put(&entry, body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
    }
    for text in ["{\"title\": \"t\", ", "not json", ""] {
        let res = app
            .send_body(Method::POST, "/api/v1/kb", Some("application/json"), text)
            .await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    let valid = r#"{"title":"t","body":"b"}"#;
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let res = app
            .send_body(Method::POST, "/api/v1/kb", content_type, valid)
            .await;
        res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
        let res = app
            .send_body(Method::PUT, &entry, content_type, valid)
            .await;
        res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    // 200 characters (multi-byte) is the limit, not 200 bytes.
    let res = app
        .post_json(
            "/api/v1/kb",
            &json!({ "title": "é".repeat(200), "body": "b" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());

    // Nothing else was created or changed.
    let items = app.get("/api/v1/kb").await.json()["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 2);
    let stored = app
        .stores
        .data
        .get_kb_entry(app.tenant.id, app.kb_entry)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.title.as_str(), stored.body.as_str()),
        (HOURS_TITLE, HOURS)
    );
}

async fn rejects_invalid_ids(db: &TestDb) {
    let app = TestApp::new(db).await;
    let body = json!({ "title": "t", "body": "b" });
    for id in ["not-a-uuid", "123", "0190a5d2-1d8a-7000-8000-00000000000g"] {
        let path = format!("/api/v1/kb/{id}");
        app.get(&path)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
        app.put(&path, &body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
        app.delete(&path)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    }
    let missing = format!("/api/v1/kb/{}", uuid::Uuid::now_v7());
    app.get(&missing)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.put(&missing, &body)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.delete(&missing)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}

/// The body is documented as an object; serde's derive also accepts a positional array,
/// which silently maps `["a", "b"]` to title and body by field order.
async fn rejects_a_json_array_as_an_entry(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json("/api/v1/kb", &json!(["Positional", "by field order"]))
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    let res = app
        .post_json("/api/v1/chat/messages", &json!([null, "hello"]))
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    app.assert_nothing_stored(CUSTOMER).await;
    assert_eq!(
        app.get("/api/v1/kb").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// JSON bodies are bounded by `api::DEFAULT_BODY_LIMIT` (64 KiB), answered with 413.
async fn limits_json_bodies(db: &TestDb) {
    let app = TestApp::new(db).await;
    let big = json!({ "title": "Big", "body": "b".repeat(100 * 1024) });
    let res = app.post_json("/api/v1/kb", &big).await;
    res.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let chat = json!({ "message": "m".repeat(100 * 1024) });
    app.post_json("/api/v1/chat/messages", &chat)
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

async fn pages_entries(db: &TestDb) {
    let app = TestApp::new(db).await;
    for i in 0..3 {
        let res = app
            .post_json(
                "/api/v1/kb",
                &json!({ "title": format!("Entry {i}"), "body": "b" }),
            )
            .await;
        assert_eq!(res.status, StatusCode::CREATED);
    }
    let first = app.get("/api/v1/kb?limit=3").await.json();
    let titles: Vec<serde_json::Value> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["title"].clone())
        .collect();
    assert_eq!(titles, ["Entry 2", "Entry 1", "Entry 0"]);
    let before = first["next_before"].as_str().expect("a next page");
    let rest = app
        .get(&format!("/api/v1/kb?limit=3&before={before}"))
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["items"][0]["title"], HOURS_TITLE);
    assert!(rest["next_before"].is_null(), "{rest}");
}
