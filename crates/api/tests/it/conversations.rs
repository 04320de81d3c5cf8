//! Listing conversations and their messages.

use axum::http::StatusCode;
use serde_json::json;
use testkit::TestDb;

use crate::{TestApp, each_backend};

each_backend!(
    pages_conversations_newest_first,
    pages_messages,
    rejects_invalid_queries_and_ids,
    staff_request_and_resolve_handoffs,
    staff_write_to_customers
);

async fn staff_request_and_resolve_handoffs(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json("/api/v1/chat/messages", &json!({ "message": "hello" }))
        .await;
    let conversation = res.json()["conversation_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/conversations/{conversation}/handoff");

    let listed = app.get("/api/v1/conversations").await.json();
    assert_eq!(listed["items"][0]["handoff"], "bot");
    assert_eq!(listed["items"][0]["handoff_at"], serde_json::Value::Null);
    assert_eq!(app.get("/api/v1/handoffs").await.json()["items"], json!([]));

    let flagged = app.post_json(&path, &json!({})).await;
    assert_eq!(flagged.status, StatusCode::OK, "{}", flagged.text());
    assert_eq!(flagged.json()["handoff"], "pending");
    let since = flagged.json()["handoff_at"]
        .as_str()
        .expect("marked")
        .to_owned();
    let again = app.post_json(&path, &json!({})).await.json();
    assert_eq!(
        again["handoff_at"],
        since.as_str(),
        "the first request's time is kept"
    );
    let inbox = app.get("/api/v1/handoffs").await.json();
    assert_eq!(inbox["items"][0]["id"], conversation.as_str());
    assert_eq!(inbox["items"][0]["handoff"], "pending");

    // While it waits for staff, the agents do not answer.
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "conversation_id": conversation, "message": "anyone there?" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json()["status"], "pending");
    assert_eq!(res.json()["reply"], serde_json::Value::Null);

    let taken = app
        .post_json(&format!("{path}/take"), &json!({ "staff": "Marie" }))
        .await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.text());
    assert_eq!(taken.json()["handoff"], "human");
    assert_eq!(taken.json()["handoff_staff"], "Marie");
    assert_eq!(taken.json()["handoff_at"], since.as_str());
    // Asking for staff again changes nothing while a person has it.
    assert_eq!(
        app.post_json(&path, &json!({})).await.json()["handoff"],
        "human"
    );
    app.post_json(&format!("{path}/take"), &json!({ "staff": "" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_staff");
    app.post_json(&format!("{path}/take"), &json!({ "who": "x" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_body");

    // Another tenant's key sees no such conversation, and changes nothing.
    let (_, other_key) = app.other_tenant("+15550009999").await;
    app.api(axum::http::Method::DELETE, &path, Some(&other_key), None)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let resolved = app.delete(&path).await;
    assert_eq!(resolved.status, StatusCode::OK, "{}", resolved.text());
    assert_eq!(resolved.json()["handoff"], "bot");
    assert_eq!(resolved.json()["handoff_at"], serde_json::Value::Null);
    assert_eq!(resolved.json()["handoff_staff"], serde_json::Value::Null);
    // Back with the agents: they answer again.
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "conversation_id": conversation, "message": "hello again" }),
        )
        .await;
    assert_eq!(res.json()["status"], "answered", "{}", res.text());

    app.delete("/api/v1/conversations/not-an-id/handoff")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    app.delete(&format!(
        "/api/v1/conversations/{}/handoff",
        uuid::Uuid::now_v7()
    ))
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    app.api(axum::http::Method::POST, &path, None, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.get("/api/v1/handoffs?limit=0")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_limit");
}

/// Staff write to the customer: the conversation passes to them, the message is stored
/// (web chat) or queued for the provider (SMS), a retried request writes nothing twice, and
/// an opted-out number gets nothing.
async fn staff_write_to_customers(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json("/api/v1/chat/messages", &json!({ "message": "hello" }))
        .await;
    let conversation = res.json()["conversation_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/conversations/{conversation}/messages");
    let id = uuid::Uuid::now_v7();
    let body = json!({ "text": "Hi, Marie here. How can I help?", "staff": "Marie", "id": id });
    let sent = app.post_json(&path, &body).await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text());
    let sent = sent.json();
    assert_eq!(sent["author"], "staff");
    assert_eq!(sent["sent_by"], "Marie");
    assert_eq!(sent["channel"], "web_chat");
    assert_eq!(sent["body"], "Hi, Marie here. How can I help?");
    // The same id again: the same message, not a second one.
    let again = app.post_json(&path, &body).await;
    assert_eq!(again.json()["id"], id.to_string(), "{}", again.text());
    let messages = app.messages(&conversation).await;
    assert_eq!(
        messages.len(),
        3,
        "hello, the agent's answer, Marie's message"
    );
    assert_eq!(messages[0]["author"], "staff");
    assert_eq!(messages[1]["author"], "agent");
    assert_eq!(messages[2]["author"], "customer");
    let c = app.get("/api/v1/conversations").await.json();
    assert_eq!(c["items"][0]["handoff"], "human");
    assert_eq!(c["items"][0]["handoff_staff"], "Marie");

    // The customer answers: stored for Marie, no agent turn.
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "conversation_id": conversation, "message": "I need to move my booking" }),
        )
        .await;
    assert_eq!(res.json()["status"], "pending", "{}", res.text());
    assert_eq!(app.messages(&conversation).await.len(), 4);

    for (bad, code) in [
        (json!({ "text": "  " }), "invalid_message"),
        (json!({ "text": "x".repeat(1601) }), "invalid_message"),
        (json!({ "text": "hi", "staff": "a\u{7}b" }), "invalid_staff"),
        (json!({ "text": "hi", "extra": 1 }), "invalid_body"),
        (json!({ "text": "hi", "id": "nope" }), "invalid_body"),
    ] {
        app.post_json(&path, &bad)
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
    }
    app.post_json(
        &format!("/api/v1/conversations/{}/messages", uuid::Uuid::now_v7()),
        &json!({ "text": "hi" }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let (_, other_key) = app.other_tenant("+15550009998").await;
    app.api(
        axum::http::Method::POST,
        &path,
        Some(&other_key),
        Some(&json!({ "text": "hi" })),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");

    // SMS: queued for the outbox; after STOP, refused with nothing written.
    app.text("SMstaff1", crate::CUSTOMER, "what time do you open?")
        .await;
    let sms_conversation = app.only_sms_conversation().await;
    let sms_path = format!("/api/v1/conversations/{sms_conversation}/messages");
    let sent = app
        .post_json(&sms_path, &json!({ "text": "We open at 9." }))
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{}", sent.text());
    assert_eq!(sent.json()["channel"], "sms");
    assert_eq!(sent.json()["status"], "queued");
    assert_eq!(sent.json()["sent_by"], "staff");
    app.text("SMstaff2", crate::CUSTOMER, "STOP").await;
    let before = app.messages(&sms_conversation).await.len();
    app.post_json(&sms_path, &json!({ "text": "One more thing" }))
        .await
        .assert_error(StatusCode::CONFLICT, "opted_out");
    assert_eq!(app.messages(&sms_conversation).await.len(), before);
}

async fn pages_conversations_newest_first(db: &TestDb) {
    let app = TestApp::new(db).await;
    let mut created = Vec::new();
    for i in 0..3 {
        let res = app
            .post_json(
                "/api/v1/chat/messages",
                &json!({ "message": format!("hello {i}") }),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        created.push(res.json()["conversation_id"].clone());
    }
    // And one over SMS.
    app.text("SMpage1", crate::CUSTOMER, "opening hours?")
        .await
        .assert_twiml(Some(crate::HOURS));

    let page = app.get("/api/v1/conversations?limit=2").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let page = page.json();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["id"], created[2], "newest first");
    let before = page["next_before"].as_str().expect("a next page");
    assert_eq!(before, items[1]["id"]);
    for item in items {
        assert_eq!(item["message_count"], 2);
        assert!(
            item["end_user_id"]
                .as_str()
                .is_some_and(|u| u.parse::<uuid::Uuid>().is_ok())
        );
    }

    let next = app
        .get(&format!("/api/v1/conversations?limit=2&before={before}"))
        .await
        .json();
    let ids: Vec<serde_json::Value> = next["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    assert_eq!(ids, [created[1].clone(), created[0].clone()]);
    // A full page may have a successor that turns out empty; that page ends the listing.
    if let Some(b) = next["next_before"].as_str() {
        let last = app
            .get(&format!("/api/v1/conversations?limit=2&before={b}"))
            .await
            .json();
        assert_eq!(last["items"], json!([]));
        assert!(last["next_before"].is_null(), "{last}");
    }

    // Without a limit: everything, and no next page.
    let all = app.get("/api/v1/conversations").await.json();
    assert_eq!(all["items"].as_array().unwrap().len(), 4);
    assert!(all["next_before"].is_null());
    // Out-of-range limits are refused, as the OpenAPI document declares.
    for limit in ["0", "201", "100000", "2147483648"] {
        app.get(&format!("/api/v1/conversations?limit={limit}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_limit");
        app.get(&format!("/api/v1/kb?limit={limit}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_limit");
    }
    assert_eq!(
        app.get("/api/v1/conversations?limit=200").await.json()["items"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
}

async fn pages_messages(db: &TestDb) {
    let app = TestApp::new(db).await;
    let first = app
        .post_json("/api/v1/chat/messages", &json!({ "message": "one" }))
        .await
        .json();
    let conversation = first["conversation_id"].as_str().unwrap().to_owned();
    app.post_json(
        "/api/v1/chat/messages",
        &json!({ "conversation_id": conversation, "message": "two" }),
    )
    .await;

    let path = format!("/api/v1/conversations/{conversation}/messages");
    let page = app.get(&format!("{path}?limit=3")).await.json();
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    let before = page["next_before"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let rest = app
        .get(&format!("{path}?limit=3&before={before}"))
        .await
        .json();
    let rest = rest["items"].as_array().unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["body"], "one", "the oldest message comes last");
}

async fn rejects_invalid_queries_and_ids(db: &TestDb) {
    let app = TestApp::new(db).await;
    for query in [
        "limit=abc",
        "limit=-1",
        "before=not-a-uuid",
        "limit=1&limit=2",
    ] {
        let res = app.get(&format!("/api/v1/conversations?{query}")).await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
    app.get("/api/v1/kb?limit=abc")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    app.get("/api/v1/conversations/not-a-uuid/messages")
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_id");
    let unknown = uuid::Uuid::now_v7();
    app.get(&format!("/api/v1/conversations/{unknown}/messages"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");
}
