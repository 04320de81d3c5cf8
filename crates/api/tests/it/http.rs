//! The router served on a real socket and called with a real HTTP client.

use axum::http::StatusCode;
use testkit::TestDb;

use crate::{
    CUSTOMER, HOURS, SMS_URL, TENANT_NUMBER, TestApp, XML_HEAD, each_backend, inbound_sms,
};

each_backend!(serves_over_http);

/// reqwest is built without a rustls crypto provider; install one (plain HTTP still builds
/// a TLS configuration).
fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

async fn serves_over_http(db: &TestDb) {
    let app = TestApp::new(db).await;
    let addr = app.spawn().await;
    let base = format!("http://{addr}");
    let client = client();

    let res = client.get(format!("{base}/health")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.json::<serde_json::Value>().await.unwrap(),
        serde_json::json!({ "status": "ok" })
    );

    // Twilio signs the public URL; the request reaches us on another address (a proxy).
    let params = inbound_sms(
        "SMhttp1",
        CUSTOMER,
        TENANT_NUMBER,
        "what are your opening hours?",
    );
    let signature = crypto::twilio::signature(crate::AUTH_TOKEN, SMS_URL, &params);
    let res = client
        .post(format!("{base}/webhooks/twilio/sms"))
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml")
    );
    assert_eq!(
        res.text().await.unwrap(),
        format!("{XML_HEAD}<Response><Message>{HOURS}</Message></Response>")
    );

    let res = client
        .get(format!("{base}/api/v1/conversations"))
        .bearer_auth(&app.api_key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = res.json().await.unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 1);

    let res = client
        .get(format!("{base}/api/v1/conversations"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");
}
