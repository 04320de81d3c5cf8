//! A tenant's own model providers over the API: validation naming the field, keys never
//! returned, clearing, and isolation between tenants.

use axum::http::{Method, StatusCode};
use serde_json::json;
use testkit::TestDb;

use crate::{TestApp, each_backend};

each_backend!(sets_shows_and_clears_providers, refuses_bad_settings);

const PATH: &str = "/api/v1/model-settings";

async fn sets_shows_and_clears_providers(db: &TestDb) {
    let app = TestApp::new(db).await;
    let shown = app.get(PATH).await;
    assert_eq!(shown.status, StatusCode::OK, "{}", shown.text());
    assert_eq!(
        shown.json(),
        json!({ "source": "installation", "providers": [] })
    );

    let body = json!({ "providers": [
        { "provider": "anthropic", "model": "claude-sonnet-4-5", "api_key": "sk-ant-secret-9876",
          "input_per_mtok": 3.0, "output_per_mtok": 15.0 },
        { "provider": "openai_compatible", "model": "llama3:8b", "base_url": "http://127.0.0.1:11434/v1" }
    ]});
    let set = app.put(PATH, &body).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.text());
    assert!(!set.text().contains("secret"), "{}", set.text());
    let shown = app.get(PATH).await;
    assert!(!shown.text().contains("secret"), "{}", shown.text());
    let shown = shown.json();
    assert_eq!(shown["source"], "tenant");
    assert_eq!(shown["providers"][0]["provider"], "anthropic");
    assert_eq!(shown["providers"][0]["api_key_hint"], "…9876");
    assert_eq!(shown["providers"][0]["output_per_mtok"], 15.0);
    assert_eq!(
        shown["providers"][1]["base_url"],
        "http://127.0.0.1:11434/v1"
    );
    assert_eq!(
        shown["providers"][1]["api_key_hint"],
        serde_json::Value::Null
    );

    // Stored sealed: the key is not in the database in clear.
    let sealed = app
        .stores
        .data
        .model_settings(app.tenant.id)
        .await
        .unwrap()
        .expect("stored");
    assert!(!crate::contains(&sealed, b"sk-ant-secret-9876"));

    // Another tenant sees its own (none).
    let (_, other_key) = app.other_tenant("+15550009997").await;
    let theirs = app.api(Method::GET, PATH, Some(&other_key), None).await;
    assert_eq!(theirs.json()["source"], "installation");

    let cleared = app.delete(PATH).await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.text());
    assert_eq!(app.get(PATH).await.json()["source"], "installation");
    app.api(Method::GET, PATH, None, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn refuses_bad_settings(db: &TestDb) {
    let app = TestApp::new(db).await;
    let cases = [
        (
            json!({ "providers": [] }),
            "invalid_model_settings",
            "providers",
        ),
        (
            json!({ "providers": [{ "provider": "openai", "model": "gpt-4o-mini" }] }),
            "invalid_model_settings",
            "providers[0].api_key",
        ),
        (
            json!({ "providers": [{ "provider": "openai_compatible", "model": "m" }] }),
            "invalid_model_settings",
            "providers[0].base_url",
        ),
        (
            json!({ "providers": [{ "provider": "openai", "model": "m", "api_key": "k", "base_url": "ftp://x" }] }),
            "invalid_model_settings",
            "providers[0].base_url",
        ),
        (
            json!({ "providers": [{ "provider": "openai", "model": "m", "api_key": "k", "input_per_mtok": -1 }] }),
            "invalid_model_settings",
            "providers[0].input_per_mtok",
        ),
        (
            json!({ "providers": [{ "provider": "mistral", "model": "m", "api_key": "k" }] }),
            "invalid_body",
            "",
        ),
        (
            json!({ "providers": [{ "provider": "openai", "model": "m", "api_key": "k", "base_ulr": "https://x.example" }] }),
            "invalid_body",
            "",
        ),
    ];
    for (body, code, field) in cases {
        let res = app.put(PATH, &body).await;
        res.assert_error(StatusCode::BAD_REQUEST, code);
        assert!(res.text().contains(field), "{field}: {}", res.text());
    }
    assert_eq!(
        app.get(PATH).await.json()["source"],
        "installation",
        "nothing stored"
    );
}
