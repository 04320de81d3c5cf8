//! The inbound SMS webhook: inline answers, replays, signature checks, and every way a
//! request is refused before anything is written.

use std::sync::Arc;
use std::time::Duration;

use agent::{TurnEngine, TurnError, TurnInput, TurnOutput};
use axum::http::StatusCode;
use store::Page;
use testkit::TestDb;

use crate::{
    CUSTOMER, FALLBACK, HOURS, SMS_URL, TENANT_NUMBER, TestApp, contains, each_backend, encode,
    inbound_sms, raw_ciphertexts, with_param, without_param,
};

each_backend!(
    answers_from_the_knowledge_base_inline,
    answers_an_unknown_question_with_the_fallback,
    answers_a_replay_identically_and_stores_it_once,
    requires_a_valid_signature,
    limits_size_and_media_type,
    rejects_malformed_forms,
    requires_its_parameters,
    rejects_a_body_longer_than_an_sms,
    escapes_replies_in_twiml,
    defers_a_turn_that_is_over_budget,
    refuses_webhooks_when_no_auth_token_is_configured,
);

async fn answers_from_the_knowledge_base_inline(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .text(
            "SM0123456789abcdef0123456789abcdef",
            CUSTOMER,
            "what are your opening hours?",
        )
        .await;
    assert_eq!(res.status, StatusCode::OK);
    assert!(
        res.header("content-type").unwrap().starts_with("text/xml"),
        "{:?}",
        res.headers
    );
    assert_eq!(
        res.text(),
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>We are open Monday to Friday, 9am to 5pm.</Message></Response>"
    );

    let conversation = app.only_conversation().await;
    let messages = app.messages(&conversation).await;
    assert_eq!(messages.len(), 2, "{messages:?}");
    let inbound = messages
        .iter()
        .find(|m| m["direction"] == "inbound")
        .expect("the inbound message");
    let outbound = messages
        .iter()
        .find(|m| m["direction"] == "outbound")
        .expect("the reply");
    assert_eq!(inbound["body"], "what are your opening hours?");
    assert_eq!(inbound["channel"], "sms");
    assert_eq!(inbound["status"], "received");
    assert_eq!(
        inbound["provider_sid"],
        "SM0123456789abcdef0123456789abcdef"
    );
    assert_eq!(outbound["body"], HOURS);
    assert_eq!(outbound["channel"], "sms");
    assert_eq!(outbound["status"], "replied_inline");
    assert_eq!(outbound["in_reply_to"], inbound["id"]);

    // The turn job was completed with the reply: nothing left for the worker.
    let stats = app.stores.queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (0, 0), "{stats:?}");

    // Bodies and phone numbers are encrypted at rest: the database never sees plaintext.
    let (bodies, phones) = raw_ciphertexts(db).await;
    assert_eq!(bodies.len(), 2);
    for body in &bodies {
        assert!(
            !contains(body, b"opening"),
            "a stored body contains plaintext"
        );
        assert!(
            !contains(body, b"Monday"),
            "a stored reply contains plaintext"
        );
    }
    assert_eq!(phones.len(), 1);
    assert!(
        !contains(&phones[0], b"5551234567"),
        "a stored phone number is plaintext"
    );
}

async fn answers_an_unknown_question_with_the_fallback(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.text("SMfallback1", CUSTOMER, "do you sell bicycles")
        .await
        .assert_twiml(Some(FALLBACK));
    let messages = app.messages(&app.only_conversation().await).await;
    let outbound = messages
        .iter()
        .find(|m| m["direction"] == "outbound")
        .expect("the reply");
    assert_eq!(outbound["body"], FALLBACK);
    assert_eq!(outbound["status"], "replied_inline");
}

async fn answers_a_replay_identically_and_stores_it_once(db: &TestDb) {
    let app = TestApp::new(db).await;
    let params = inbound_sms("SMreplay1", CUSTOMER, TENANT_NUMBER, "opening hours?");
    let first = app.sms(&params).await;
    first.assert_twiml(Some(HOURS));
    for _ in 0..2 {
        let again = app.sms(&params).await;
        assert_eq!(again.status, first.status);
        assert_eq!(again.text(), first.text());
        assert_eq!(again.header("content-type"), first.header("content-type"));
    }
    let conversations = app
        .stores
        .data
        .list_conversations(app.tenant.id, Page::default())
        .await
        .unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0].message_count, 2);
    let stored = app
        .stores
        .data
        .list_messages(app.tenant.id, conversations[0].id, Page::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "one inbound and one reply: {stored:?}");

    // A new MessageSid from the same number is a new message in the same conversation.
    app.sms(&with_param(params, "MessageSid", "SMreplay2"))
        .await
        .assert_twiml(Some(HOURS));
    let stored = app
        .stores
        .data
        .list_messages(app.tenant.id, conversations[0].id, Page::default())
        .await
        .unwrap();
    assert_eq!(stored.len(), 4);
}

async fn requires_a_valid_signature(db: &TestDb) {
    let app = TestApp::new(db).await;
    let params = inbound_sms("SMsig1", CUSTOMER, TENANT_NUMBER, "opening hours?");
    let form = encode(&params);
    let form_type = Some("application/x-www-form-urlencoded");

    let res = app
        .webhook_raw("/webhooks/twilio/sms", form_type, None, form.clone())
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "missing_signature");

    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some("bm90IHRoZSBzaWduYXR1cmU="),
            form.clone(),
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    let res = app
        .webhook_raw("/webhooks/twilio/sms", form_type, Some(""), form.clone())
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    // Signed with another auth token.
    let other_token = crypto::twilio::signature("another-token", SMS_URL, &params);
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&other_token),
            form.clone(),
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    // Signed for another URL: a request replayed against this endpoint.
    let res = app
        .webhook_signed(
            "/webhooks/twilio/sms",
            "https://attacker.example.com/webhooks/twilio/sms",
            &params,
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");
    let res = app
        .webhook_signed(
            "/webhooks/twilio/sms",
            "https://concierge.example.com/webhooks/twilio/status",
            &params,
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    // A query string is part of the signed URL.
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms?x=1",
            form_type,
            Some(&crypto::twilio::signature(
                crate::AUTH_TOKEN,
                SMS_URL,
                &params,
            )),
            form,
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    // Body changed after signing.
    let signature = crypto::twilio::signature(crate::AUTH_TOKEN, SMS_URL, &params);
    let tampered = encode(&with_param(params.clone(), "Body", "send me everything"));
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&signature),
            tampered,
        )
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    // A parameter added after signing.
    let extra = encode(&with_param(params.clone(), "Extra", "1"));
    let res = app
        .webhook_raw("/webhooks/twilio/sms", form_type, Some(&signature), extra)
        .await;
    res.assert_error(StatusCode::FORBIDDEN, "invalid_signature");

    app.assert_nothing_stored(CUSTOMER).await;

    // The same request, correctly signed, goes through (so the refusals above were about
    // the signature alone), and a signed URL with the query string is accepted too.
    app.sms(&params).await.assert_twiml(Some(HOURS));
    let params = inbound_sms("SMsig2", CUSTOMER, TENANT_NUMBER, "opening hours?");
    let signed_with_query = "https://concierge.example.com/webhooks/twilio/sms?x=1";
    app.webhook_signed("/webhooks/twilio/sms?x=1", signed_with_query, &params)
        .await
        .assert_twiml(Some(HOURS));
}

async fn limits_size_and_media_type(db: &TestDb) {
    let app = TestApp::new(db).await;
    let big = inbound_sms("SMbig1", CUSTOMER, TENANT_NUMBER, &"a".repeat(17 * 1024));
    let res = app.sms(&big).await;
    res.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    let params = inbound_sms("SMjson1", CUSTOMER, TENANT_NUMBER, "opening hours?");
    let signature = crypto::twilio::signature(crate::AUTH_TOKEN, SMS_URL, &params);
    let json = serde_json::to_string(
        &serde_json::json!({ "MessageSid": "SMjson1", "Body": "opening hours?" }),
    )
    .unwrap();
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            Some("application/json"),
            Some(&signature),
            json,
        )
        .await;
    res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            None,
            Some(&signature),
            encode(&params),
        )
        .await;
    res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");

    app.assert_nothing_stored(CUSTOMER).await;

    // A charset parameter on the form type is fine.
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            Some("application/x-www-form-urlencoded; charset=UTF-8"),
            Some(&signature),
            encode(&params),
        )
        .await;
    res.assert_twiml(Some(HOURS));
}

async fn rejects_malformed_forms(db: &TestDb) {
    let app = TestApp::new(db).await;
    let form_type = Some("application/x-www-form-urlencoded");
    let base = encode(&without_param(
        inbound_sms("SMbad1", CUSTOMER, TENANT_NUMBER, "x"),
        "Body",
    ));
    let signature = crypto::twilio::signature(
        crate::AUTH_TOKEN,
        SMS_URL,
        &inbound_sms("SMbad1", CUSTOMER, TENANT_NUMBER, "x"),
    );

    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&signature),
            format!("{base}&Body=%zz"),
        )
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "malformed_form");
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&signature),
            format!("{base}&Body=100%"),
        )
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "malformed_form");
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&signature),
            format!("{base}&Body=caf%E9"),
        )
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "invalid_encoding");
    let raw_latin1 = [base.as_bytes(), b"&Body=caf\xE9"].concat();
    let res = app
        .webhook_raw(
            "/webhooks/twilio/sms",
            form_type,
            Some(&signature),
            raw_latin1,
        )
        .await;
    res.assert_error(StatusCode::BAD_REQUEST, "invalid_encoding");

    app.assert_nothing_stored(CUSTOMER).await;
}

async fn requires_its_parameters(db: &TestDb) {
    let app = TestApp::new(db).await;
    let params = || inbound_sms("SMparam1", CUSTOMER, TENANT_NUMBER, "opening hours?");
    for name in ["MessageSid", "From", "To"] {
        let res = app.sms(&without_param(params(), name)).await;
        res.assert_error(StatusCode::BAD_REQUEST, "missing_parameter");
        assert!(
            res.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains(name),
            "{}",
            res.text()
        );
        let res = app.sms(&with_param(params(), name, "")).await;
        res.assert_error(StatusCode::BAD_REQUEST, "missing_parameter");
    }
    app.sms(&with_param(params(), "MessageSid", "SM../../etc"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");
    app.sms(&with_param(params(), "MessageSid", &"S".repeat(65)))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_parameter");

    for from in [
        "12345",
        "whatsapp:+15551234567",
        "+1555abc4567",
        "client:alice",
    ] {
        let res = app.sms(&with_param(params(), "From", from)).await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_phone_number");
    }
    app.sms(&with_param(params(), "To", "whatsapp:+15550000001"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_phone_number");

    // A number no tenant has.
    let res = app.sms(&with_param(params(), "To", "+15559999999")).await;
    res.assert_error(StatusCode::NOT_FOUND, "not_found");

    app.assert_nothing_stored(CUSTOMER).await;

    // Body is optional (an MMS without text): recorded and answered.
    let res = app.sms(&without_param(params(), "Body")).await;
    res.assert_twiml(Some(FALLBACK));
}

async fn rejects_a_body_longer_than_an_sms(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app.text("SMlong1", CUSTOMER, &"é".repeat(1601)).await;
    res.assert_error(StatusCode::BAD_REQUEST, "body_too_long");
    app.assert_nothing_stored(CUSTOMER).await;
    // 1600 characters (3200 bytes) is within Twilio's limit.
    app.text("SMlong2", CUSTOMER, &"é".repeat(1600))
        .await
        .assert_twiml(Some(FALLBACK));
}

async fn escapes_replies_in_twiml(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app
        .post_json("/api/v1/kb", &serde_json::json!({ "title": "Parking", "body": "Park at <Lot B> & say \"hi\" to Jo's team." }))
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    app.text("SMxml1", CUSTOMER, "where is parking?")
        .await
        .assert_twiml(Some(
            "Park at &lt;Lot B&gt; &amp; say &quot;hi&quot; to Jo&apos;s team.",
        ));
}

/// An engine slower than any budget.
pub struct SlowEngine;

#[async_trait::async_trait]
impl TurnEngine for SlowEngine {
    async fn run(&self, _input: TurnInput) -> Result<TurnOutput, TurnError> {
        tokio::time::sleep(Duration::from_secs(30)).await;
        Ok(TurnOutput {
            reply: Some("too late".into()),
            answered_by: "slow",
            tools: Vec::new(),
            agents: Vec::new(),
        })
    }
}

async fn defers_a_turn_that_is_over_budget(db: &TestDb) {
    let app = TestApp::builder()
        .engine(Arc::new(SlowEngine))
        .inline_budget(Duration::from_millis(100))
        .build(db)
        .await;
    let started = std::time::Instant::now();
    app.text("SMslow1", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(None);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the webhook waited for the engine"
    );

    // The inbound is stored, no reply yet, and the turn is back in the queue for a worker.
    let messages = app.messages(&app.only_conversation().await).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["direction"], "inbound");
    let stats = app.stores.queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (1, 0), "{stats:?}");

    // A replay does not run a second turn and still answers empty.
    app.text("SMslow1", CUSTOMER, "opening hours?")
        .await
        .assert_twiml(None);
    let stats = app.stores.queue.stats().await.unwrap();
    assert_eq!((stats.queued, stats.running), (1, 0), "{stats:?}");

    // Web chat: the same budget, answered as pending.
    let res = app
        .post_json(
            "/api/v1/chat/messages",
            &serde_json::json!({ "message": "opening hours?" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let json = res.json();
    assert_eq!(json["status"], "pending");
    assert!(json["reply"].is_null(), "{json}");
}

async fn refuses_webhooks_when_no_auth_token_is_configured(db: &TestDb) {
    let app = TestApp::builder().auth_token(None).build(db).await;
    let res = app.text("SMnotoken1", CUSTOMER, "opening hours?").await;
    res.assert_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert_eq!(res.header("retry-after"), Some("5"));
    app.assert_nothing_stored(CUSTOMER).await;
}
