//! The delivery status callback of outbound messages.

use axum::http::StatusCode;
use domain::{MessageId, MessageStatus};
use store::StatusUpdate;
use testkit::TestDb;

use crate::{CUSTOMER, STATUS_URL, TestApp, each_backend, encode, status_params, with_param};

each_backend!(
    moves_an_outbound_message_forward,
    refuses_unsigned_or_unknown_callbacks
);

/// Answers one SMS inline, then marks the reply as sent through the provider with `sid`
/// (what the outbox does after the REST call). Returns the conversation id and the reply id.
async fn sent_reply(app: &TestApp, sid: &str) -> (String, String) {
    app.text("SMin1", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(Some(crate::HOURS));
    let conversation = app.only_conversation().await;
    let messages = app.messages(&conversation).await;
    let reply = messages
        .iter()
        .find(|m| m["direction"] == "outbound")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let id: MessageId = reply.parse().unwrap();
    let changed = app
        .stores
        .data
        .set_message_status(
            app.tenant.id,
            id,
            StatusUpdate {
                status: MessageStatus::Sent,
                provider_sid: Some(sid.into()),
                error_code: None,
            },
        )
        .await
        .unwrap();
    assert!(changed);
    (conversation, reply)
}

async fn reply_status(
    app: &TestApp,
    conversation: &str,
    reply: &str,
) -> (String, serde_json::Value) {
    let messages = app.messages(conversation).await;
    let m = messages.iter().find(|m| m["id"] == reply).unwrap();
    (
        m["status"].as_str().unwrap().to_owned(),
        m["error_code"].clone(),
    )
}

async fn moves_an_outbound_message_forward(db: &TestDb) {
    let app = TestApp::new(db).await;
    let (conversation, reply) = sent_reply(&app, "SMout1").await;
    assert_eq!(reply_status(&app, &conversation, &reply).await.0, "sent");

    let res = app
        .status_callback(&status_params("SMout1", "delivered"))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert!(res.body.is_empty());
    assert_eq!(
        reply_status(&app, &conversation, &reply).await.0,
        "delivered"
    );

    // A status Twilio may add later: accepted, ignored.
    let res = app
        .status_callback(&status_params("SMout1", "partially_exploded"))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        reply_status(&app, &conversation, &reply).await.0,
        "delivered"
    );

    // Callbacks arrive out of order: a late "sent" never moves a message back.
    let res = app.status_callback(&status_params("SMout1", "sent")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(
        reply_status(&app, &conversation, &reply).await.0,
        "delivered"
    );

    // "read" is further along than "delivered".
    let res = app.status_callback(&status_params("SMout1", "read")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(reply_status(&app, &conversation, &reply).await.0, "read");

    // The inbound message is never touched by a callback, even with its own sid.
    let res = app.status_callback(&status_params("SMin1", "failed")).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let messages = app.messages(&conversation).await;
    let inbound = messages
        .iter()
        .find(|m| m["direction"] == "inbound")
        .unwrap();
    assert_eq!(inbound["status"], "received");
}

async fn refuses_unsigned_or_unknown_callbacks(db: &TestDb) {
    let app = TestApp::new(db).await;
    let (conversation, reply) = sent_reply(&app, "SMout2").await;
    let params = with_param(status_params("SMout2", "undelivered"), "ErrorCode", "30003");
    let form_type = Some("application/x-www-form-urlencoded");

    let res = app
        .webhook_raw("/webhooks/twilio/status", form_type, None, encode(&params))
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "missing_signature");
    let wrong = crypto::twilio::signature(crate::AUTH_TOKEN, crate::SMS_URL, &params);
    let res = app
        .webhook_raw(
            "/webhooks/twilio/status",
            form_type,
            Some(&wrong),
            encode(&params),
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");
    let res = app
        .webhook_raw(
            "/webhooks/twilio/status",
            Some("application/json"),
            Some(&crypto::twilio::signature(
                crate::AUTH_TOKEN,
                STATUS_URL,
                &params,
            )),
            "{}",
        )
        .await;
    res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    assert_eq!(
        reply_status(&app, &conversation, &reply).await,
        ("sent".to_owned(), serde_json::Value::Null)
    );

    // Missing status; a sender number no tenant has.
    app.status_callback(&crate::without_param(params.clone(), "MessageStatus"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "missing_parameter");
    app.status_callback(&with_param(params.clone(), "From", "+15559999999"))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    // An sid we never sent: accepted (Twilio must not retry), nothing changes.
    let res = app
        .status_callback(&status_params("SMunknown", "delivered"))
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    assert_eq!(reply_status(&app, &conversation, &reply).await.0, "sent");

    // The signed callback applies, with its error code.
    let res = app.status_callback(&params).await;
    assert_eq!(res.status, StatusCode::NO_CONTENT, "{}", res.text());
    assert_eq!(
        reply_status(&app, &conversation, &reply).await,
        ("undelivered".to_owned(), serde_json::json!("30003"))
    );
}
