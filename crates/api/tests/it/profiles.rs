//! Agent profiles over the API: built-ins and the tenant's own versions, validation, the
//! tenant's default, and isolation between tenants.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::TestDb;

use crate::{DEFAULT_PROFILE, TestApp, each_backend};

each_backend!(
    lists_built_ins_and_the_default,
    stores_reads_and_lists_versions,
    rejects_invalid_profiles,
    rejects_wrong_bodies,
    bounds_the_source,
    sets_and_clears_the_default,
    keeps_tenants_apart,
);

/// A small valid profile called `name`, whose one agent says `greeting`.
fn source(name: &str, greeting: &str) -> String {
    format!(
        r#"name = "{name}"
description = "Front desk of a test shop."
entry = "front"

[agents.front]
instructions = "Say: {greeting}"
tools = ["search_knowledge_base"]
handoffs = ["back"]

[agents.back]
instructions = "Handle what the front desk cannot."
"#
    )
}

/// The list's items as (name, source, version, default).
fn summary(list: &Value) -> Vec<(String, String, u64, bool)> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["source"].as_str().unwrap().to_owned(),
                i["version"].as_u64().unwrap(),
                i["default"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn row(name: &str, source: &str, version: u64, default: bool) -> (String, String, u64, bool) {
    (name.to_owned(), source.to_owned(), version, default)
}

async fn put_profile(app: &TestApp, name: &str, body: &Value) -> Value {
    let res = app.put(&format!("/api/v1/profiles/{name}"), body).await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    res.json()
}

async fn lists_built_ins_and_the_default(db: &TestDb) {
    let app = TestApp::new(db).await;
    let res = app.get("/api/v1/profiles").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let list = res.json();
    assert_eq!(list["default"], DEFAULT_PROFILE);
    assert_eq!(
        summary(&list),
        [
            row("receptionist", "built-in", 0, true),
            row("assistant", "built-in", 0, false),
            row("companion", "built-in", 0, false),
        ]
    );
    assert!(list["items"][0]["created_at"].is_null(), "{list}");

    // A built-in is readable as such, with its team.
    let res = app.get("/api/v1/profiles/assistant").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let shown = res.json();
    assert_eq!(shown["name"], "assistant");
    assert_eq!(shown["version"], 0);
    assert!(shown["created_at"].is_null());
    assert_eq!(shown["entry"], "assistant");
    assert_eq!(shown["agents"], json!(["assistant"]));
    assert_eq!(
        shown["source"],
        agent::Profile::builtin_source("assistant").unwrap()
    );
    // A built-in has no stored versions; an unknown name has no profile at all.
    let res = app.get("/api/v1/profiles/assistant/versions").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({ "items": [] }));
    for path in [
        "/api/v1/profiles/nope",
        "/api/v1/profiles/nope/versions",
        "/api/v1/profiles/nope?version=0",
        "/api/v1/profiles/nope?version=1",
        "/api/v1/profiles/assistant?version=1",
    ] {
        app.get(path)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    for path in [
        "/api/v1/profiles/Nope",
        "/api/v1/profiles/1st",
        "/api/v1/profiles/has%20space",
        "/api/v1/profiles/Nope/versions",
    ] {
        app.get(path)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_profile_name");
    }
    for query in ["version=x", "version=-1", "version=4294967296"] {
        app.get(&format!("/api/v1/profiles/assistant?{query}"))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_query");
    }
}

async fn stores_reads_and_lists_versions(db: &TestDb) {
    let app = TestApp::new(db).await;
    let v1 = source("shop", "hello");
    let v2 = source("shop", "welcome");
    assert_eq!(
        put_profile(&app, "shop", &json!({ "source": v1 })).await,
        json!({ "name": "shop", "version": 1 })
    );
    assert_eq!(
        put_profile(
            &app,
            "shop",
            &json!({ "source": v2, "make_default": false })
        )
        .await,
        json!({ "name": "shop", "version": 2 })
    );

    // The latest version by default, an earlier one on request.
    let res = app.get("/api/v1/profiles/shop").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let latest = res.json();
    assert_eq!(latest["name"], "shop");
    assert_eq!(latest["version"], 2);
    assert_eq!(latest["source"], v2.as_str());
    assert_eq!(latest["entry"], "front");
    assert_eq!(latest["agents"], json!(["back", "front"]));
    assert!(
        latest["created_at"]
            .as_str()
            .unwrap()
            .parse::<jiff::Timestamp>()
            .is_ok(),
        "{latest}"
    );
    let first = app.get("/api/v1/profiles/shop?version=1").await.json();
    assert_eq!(first["version"], 1);
    assert_eq!(first["source"], v1.as_str());
    app.get("/api/v1/profiles/shop?version=3")
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let res = app.get("/api/v1/profiles/shop/versions").await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let versions = res.json();
    let numbers: Vec<&Value> = versions["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| &v["version"])
        .collect();
    assert_eq!(numbers, [&json!(2), &json!(1)], "newest first");
    assert_eq!(versions["items"][0]["created_at"], latest["created_at"]);

    // Overriding a built-in: the tenant's version replaces it in the list, and version 0
    // still shows the shipped one.
    let mine = source("receptionist", "hi there");
    assert_eq!(
        put_profile(&app, "receptionist", &json!({ "source": mine })).await["version"],
        1
    );
    let list = app.get("/api/v1/profiles").await.json();
    assert_eq!(
        summary(&list),
        [
            row("receptionist", "tenant", 1, true),
            row("shop", "tenant", 2, false),
            row("assistant", "built-in", 0, false),
            row("companion", "built-in", 0, false),
        ]
    );
    assert!(list["items"][0]["created_at"].is_string(), "{list}");
    assert_eq!(
        app.get("/api/v1/profiles/receptionist").await.json()["source"],
        mine.as_str()
    );
    let shipped = app.get("/api/v1/profiles/receptionist?version=0").await;
    assert_eq!(shipped.status, StatusCode::OK, "{}", shipped.text());
    assert_eq!(
        shipped.json()["source"],
        agent::Profile::builtin_source("receptionist").unwrap()
    );

    // Stored as sent, in the store too.
    let stored = app
        .stores
        .data
        .get_profile(app.tenant.id, "shop", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((stored.version, stored.source), (2, v2));
}

async fn rejects_invalid_profiles(db: &TestDb) {
    let app = TestApp::new(db).await;
    let put = |name: &'static str, source: String| {
        let app = &app;
        async move {
            app.put(
                &format!("/api/v1/profiles/{name}"),
                &json!({ "source": source }),
            )
            .await
        }
    };
    let cases = [
        ("not toml at all [[[".to_owned(), "not a valid profile"),
        (String::new(), "not a valid profile"),
        (
            source("shop", "hi").replace("handoffs = [\"back\"]", "handoffs = [\"nobody\"]"),
            "nobody",
        ),
        (
            source("shop", "hi").replace("search_knowledge_base", "launch_rockets"),
            "unknown tool \"launch_rockets\"",
        ),
        (
            source("shop", "hi").replace("entry = \"front\"", "entry = \"side\""),
            "entry",
        ),
        (
            format!("{}\ncolour = \"red\"\n", source("shop", "hi")),
            "colour",
        ),
    ];
    for (text, message) in cases {
        let res = put("shop", text.clone()).await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_profile");
        let got = res.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            got.contains(message),
            "{message:?} not in {got:?} for {text:?}"
        );
    }

    let res = put("shop", source("other", "hi")).await;
    res.assert_error(StatusCode::BAD_REQUEST, "profile_name_mismatch");
    assert!(res.text().contains("other"), "{}", res.text());

    // A bad name in the path is refused before the body is looked at.
    let long = "x".repeat(41);
    for path in ["Shop", "9lives", "a.b", long.as_str()] {
        let res = app
            .put(
                &format!("/api/v1/profiles/{path}"),
                &json!({ "source": source(path, "hi") }),
            )
            .await;
        res.assert_error(StatusCode::BAD_REQUEST, "invalid_profile_name");
    }
    app.put("/api/v1/profiles/Shop", &json!({}))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_profile_name");

    // Nothing was stored.
    assert!(
        app.stores
            .data
            .list_profiles(app.tenant.id)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn rejects_wrong_bodies(db: &TestDb) {
    let app = TestApp::new(db).await;
    let valid = source("shop", "hi");
    let cases = [
        json!({}),
        json!({ "source": 5 }),
        json!({ "source": null }),
        json!({ "source": ["name = \"shop\""] }),
        json!({ "source": valid, "make_default": "yes" }),
        json!({ "source": valid, "default": true }),
        json!([valid]),
        json!(valid),
        json!(null),
    ];
    for body in &cases {
        app.put("/api/v1/profiles/shop", body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    for text in ["", "not json", "{\"source\": "] {
        app.send_body(
            Method::PUT,
            "/api/v1/profiles/shop",
            Some("application/json"),
            text,
        )
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    let res = app
        .send_body(
            Method::PUT,
            "/api/v1/profiles/shop",
            Some("application/toml"),
            valid.clone(),
        )
        .await;
    res.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    // Without a key (or with a wrong one), nothing.
    let stored = json!({ "source": valid });
    let default = json!({ "name": "assistant" });
    for key in [None, Some("not-a-key")] {
        for (method, path, body) in [
            (Method::GET, "/api/v1/profiles", None),
            (Method::GET, "/api/v1/profiles/assistant", None),
            (Method::GET, "/api/v1/profiles/assistant/versions", None),
            (Method::PUT, "/api/v1/profiles/shop", Some(&stored)),
            (Method::PUT, "/api/v1/default-profile", Some(&default)),
        ] {
            app.api(method, path, key, body)
                .await
                .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    }
    assert!(
        app.stores
            .data
            .list_profiles(app.tenant.id)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A source of up to `MAX_SOURCE_BYTES` is accepted even though its JSON body is larger
/// than the API's usual 64 KiB; one byte more is refused, and so is a huge body.
async fn bounds_the_source(db: &TestDb) {
    let app = TestApp::new(db).await;
    let max = agent::profile::MAX_SOURCE_BYTES;
    // Padding in a TOML comment of quotes and newlines, which JSON escapes to two bytes each.
    let base = source("shop", "hi");
    let pad = |len: usize| {
        let mut s = base.clone();
        s.push('#');
        while s.len() < len - 1 {
            s.push('"');
        }
        s.push('\n');
        s
    };
    let largest = pad(max);
    assert_eq!(largest.len(), max);
    assert!(
        serde_json::to_vec(&json!({ "source": largest }))
            .unwrap()
            .len()
            > 64 * 1024
    );
    assert_eq!(
        put_profile(&app, "shop", &json!({ "source": largest })).await["version"],
        1
    );

    let res = app
        .put("/api/v1/profiles/shop", &json!({ "source": pad(max + 1) }))
        .await;
    res.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let res = app
        .put(
            "/api/v1/profiles/shop",
            &json!({ "source": "#".repeat(10 * max) }),
        )
        .await;
    res.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // The usual limit still holds elsewhere.
    app.put(
        "/api/v1/default-profile",
        &json!({ "name": "a".repeat(100 * 1024) }),
    )
    .await
    .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let versions = app
        .stores
        .data
        .profile_versions(app.tenant.id, "shop")
        .await
        .unwrap();
    assert_eq!(versions.len(), 1);
}

async fn sets_and_clears_the_default(db: &TestDb) {
    let app = TestApp::new(db).await;
    let default_of = |list: Value| list["default"].as_str().unwrap().to_owned();

    let res = app
        .put("/api/v1/default-profile", &json!({ "name": "companion" }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({ "default": "companion" }));
    let list = app.get("/api/v1/profiles").await.json();
    assert_eq!(default_of(list.clone()), "companion");
    assert_eq!(
        summary(&list),
        [
            row("receptionist", "built-in", 0, false),
            row("assistant", "built-in", 0, false),
            row("companion", "built-in", 0, true),
        ]
    );

    // Unknown names are refused and change nothing.
    for name in ["shop", "nope"] {
        app.put("/api/v1/default-profile", &json!({ "name": name }))
            .await
            .assert_error(StatusCode::BAD_REQUEST, "unknown_profile");
    }
    app.put("/api/v1/default-profile", &json!({ "name": "Not A Name" }))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_profile_name");
    for body in [
        json!({}),
        json!({ "name": 5 }),
        json!({ "name": ["companion"] }),
        json!({ "name": "companion", "extra": 1 }),
        json!("companion"),
    ] {
        app.put("/api/v1/default-profile", &body)
            .await
            .assert_error(StatusCode::BAD_REQUEST, "invalid_body");
    }
    app.send_body(
        Method::PUT,
        "/api/v1/default-profile",
        Some("application/json"),
        "",
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(
        default_of(app.get("/api/v1/profiles").await.json()),
        "companion"
    );

    // A stored profile can be the default, at once with `make_default` or afterwards.
    put_profile(
        &app,
        "shop",
        &json!({ "source": source("shop", "hi"), "make_default": true }),
    )
    .await;
    assert_eq!(default_of(app.get("/api/v1/profiles").await.json()), "shop");
    assert_eq!(
        app.stores
            .data
            .default_profile(app.tenant.id)
            .await
            .unwrap()
            .as_deref(),
        Some("shop")
    );
    put_profile(&app, "other", &json!({ "source": source("other", "hi") })).await;
    assert_eq!(default_of(app.get("/api/v1/profiles").await.json()), "shop");
    let res = app
        .put("/api/v1/default-profile", &json!({ "name": "other" }))
        .await;
    assert_eq!(res.json(), json!({ "default": "other" }));

    // null goes back to the installation's default.
    let res = app
        .put("/api/v1/default-profile", &json!({ "name": null }))
        .await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    assert_eq!(res.json(), json!({ "default": DEFAULT_PROFILE }));
    assert_eq!(
        app.stores
            .data
            .default_profile(app.tenant.id)
            .await
            .unwrap(),
        None
    );
    let list = app.get("/api/v1/profiles").await.json();
    assert_eq!(default_of(list.clone()), DEFAULT_PROFILE);
    assert!(
        summary(&list)
            .iter()
            .all(|(name, _, _, default)| *default == (name == DEFAULT_PROFILE)),
        "{list}"
    );
}

async fn keeps_tenants_apart(db: &TestDb) {
    let app = TestApp::new(db).await;
    let (other, other_key) = app.other_tenant("+15550000002").await;
    let key = Some(other_key.as_str());
    put_profile(
        &app,
        "shop",
        &json!({ "source": source("shop", "secret"), "make_default": true }),
    )
    .await;
    put_profile(
        &app,
        "receptionist",
        &json!({ "source": source("receptionist", "secret") }),
    )
    .await;

    // B sees only the built-ins and the installation default.
    let res = app.api(Method::GET, "/api/v1/profiles", key, None).await;
    assert_eq!(res.status, StatusCode::OK, "{}", res.text());
    let list = res.json();
    assert_eq!(list["default"], DEFAULT_PROFILE);
    assert_eq!(
        summary(&list),
        [
            row("receptionist", "built-in", 0, true),
            row("assistant", "built-in", 0, false),
            row("companion", "built-in", 0, false),
        ]
    );
    // A's own name is unknown to B; A's override of a built-in is B's built-in.
    for path in [
        "/api/v1/profiles/shop",
        "/api/v1/profiles/shop?version=1",
        "/api/v1/profiles/shop/versions",
    ] {
        app.api(Method::GET, path, key, None)
            .await
            .assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    let res = app
        .api(Method::GET, "/api/v1/profiles/receptionist", key, None)
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let shown = res.json();
    assert_eq!(shown["version"], 0);
    assert!(!shown["source"].as_str().unwrap().contains("secret"));
    let res = app
        .api(
            Method::GET,
            "/api/v1/profiles/receptionist/versions",
            key,
            None,
        )
        .await;
    assert_eq!(res.json(), json!({ "items": [] }));
    app.api(
        Method::PUT,
        "/api/v1/default-profile",
        key,
        Some(&json!({ "name": "shop" })),
    )
    .await
    .assert_error(StatusCode::BAD_REQUEST, "unknown_profile");

    // B's own version of the name is numbered from 1 and leaves A's alone.
    let res = app
        .api(
            Method::PUT,
            "/api/v1/profiles/shop",
            key,
            Some(&json!({ "source": source("shop", "B's") })),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED, "{}", res.text());
    assert_eq!(res.json()["version"], 1);
    let mine = app.get("/api/v1/profiles/shop").await.json();
    assert!(
        mine["source"].as_str().unwrap().contains("secret"),
        "{mine}"
    );
    assert_eq!(app.stores.data.default_profile(other).await.unwrap(), None);
    assert_eq!(app.get("/api/v1/profiles").await.json()["default"], "shop");
}
