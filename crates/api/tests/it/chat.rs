//! Web chat over the API: the same turn as an SMS, answered in the response.

use axum::http::{Method, StatusCode};
use serde_json::json;
use store::Page;
use testkit::TestDb;

use crate::{CUSTOMER, FALLBACK, HOURS, TestApp, each_backend};

each_backend!(
    answers_and_continues_a_conversation,
    rejects_invalid_messages
);

async fn answers_and_continues_a_conversation(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "message": "opening hours?" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let first = res.json();
    assert_eq!(first["status"], "answered");
    assert_eq!(first["reply"], HOURS);
    let conversation = first["conversation_id"]
        .as_str()
        .expect("a conversation id")
        .to_owned();
    assert!(conversation.parse::<uuid::Uuid>().is_ok());

    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "conversation_id": conversation, "message": "  do you sell bicycles  " }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let second = res.json();
    assert_eq!(second["conversation_id"], conversation);
    assert_eq!(second["reply"], FALLBACK);
    assert_ne!(second["message_id"], first["message_id"]);

    let messages = app.messages(&conversation).await;
    assert_eq!(messages.len(), 4, "{messages:?}");
    assert!(
        messages.iter().all(|m| m["channel"] == "web_chat"),
        "{messages:?}"
    );
    let inbound = messages
        .iter()
        .find(|m| m["id"] == second["message_id"])
        .expect("the inbound message");
    assert_eq!(inbound["direction"], "inbound");
    assert_eq!(
        inbound["body"], "do you sell bicycles",
        "the message is trimmed"
    );
    let reply = messages
        .iter()
        .find(|m| m["in_reply_to"] == second["message_id"])
        .expect("the reply");
    assert_eq!(reply["direction"], "outbound");
    assert_eq!(reply["body"], FALLBACK);
    assert!(reply["provider_sid"].is_null());

    let res = app.get("/api/v1/conversations").await;
    let items = res.json()["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], conversation);
    assert_eq!(items[0]["message_count"], 4);

    // A new chat without an id is a new conversation (with an anonymous end user).
    let third = app
        .post_json("/api/v1/chat/messages", &json!({ "message": "hello" }))
        .await
        .json();
    assert_ne!(third["conversation_id"], conversation);
    assert_eq!(
        app.stores
            .data
            .list_conversations(app.tenant.id, Page::default())
            .await
            .unwrap()
            .len(),
        2
    );
}

async fn rejects_invalid_messages(db: &TestDb) {
    let app = TestApp::new(db).await;
    let unknown = uuid::Uuid::now_v7();
    app.post_json(
        "/api/v1/chat/messages",
        &json!({ "conversation_id": unknown, "message": "hi" }),
    )
    .await
    .assert_error(StatusCode::NOT_FOUND, "not_found");
    let cases = [
        (json!({ "message": "" }), "invalid_message"),
        (json!({ "message": " \n\t " }), "invalid_message"),
        (json!({ "message": "m".repeat(4001) }), "invalid_message"),
        (json!({}), "invalid_body"),
        (
            json!({ "message": "hi", "conversation_id": "nope" }),
            "invalid_body",
        ),
        (json!({ "message": "hi", "channel": "sms" }), "invalid_body"),
    ];
    for (body, code) in &cases {
        app.post_json("/api/v1/chat/messages", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, code);
    }
    app.send_body(
        Method::POST,
        "/api/v1/chat/messages",
        Some("text/plain"),
        "hi",
    )
    .await
    .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    app.send_body(
        Method::POST,
        "/api/v1/chat/messages",
        Some("application/json"),
        "{\"message\":",
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    app.assert_nothing_stored(CUSTOMER).await;

    // 4,000 characters is accepted.
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &json!({ "message": "é".repeat(4000) }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
}
