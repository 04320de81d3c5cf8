//! Integration tests of the HTTP side: the router driven in-process (and once over a real
//! socket), on SQLite and on PostgreSQL, with the real messaging path and a
//! knowledge-base responder behind it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::missing_panics_doc)]

mod auth;
mod chat;
mod consent;
mod conversations;
mod http;
mod kb;
mod model_settings;
mod openapi;
mod profiles;
mod routes;
mod status;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use agent::{KnowledgeResponder, TurnEngine};
use api::{ApiConfig, AppState};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use crypto::MasterKey;
use domain::{KbEntryId, PhoneNumber, TenantId, TenantName};
use http_body_util::BodyExt as _;
use messaging::{Messaging, MessagingConfig, Vault};
use store::{KbEntryInput, NewApiKey, NewTenant, Page, Stores, Tenant};
use testkit::TestDb;
use tower::ServiceExt as _;

/// The base URL Twilio is configured to call; signatures are computed over it.
pub const PUBLIC_URL: &str = "https://concierge.example.com";
pub const SMS_URL: &str = "https://concierge.example.com/webhooks/twilio/sms";
pub const STATUS_URL: &str = "https://concierge.example.com/webhooks/twilio/status";
pub const AUTH_TOKEN: &str = "test-token";
pub const TENANT_NUMBER: &str = "+15550000001";
pub const TENANT_NAME: &str = "Acme Dental";
/// The end user of most tests.
pub const CUSTOMER: &str = "+15551234567";
pub const HOURS_TITLE: &str = "Opening hours";
pub const HOURS: &str = "We are open Monday to Friday, 9am to 5pm.";
pub const FALLBACK: &str = "Thanks, we will get back to you.";
/// The installation's default profile (`agent.default_profile`).
pub const DEFAULT_PROFILE: &str = "receptionist";
pub const XML_HEAD: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// Runs each listed test function once per backend, on a fresh database. A test takes
/// `&TestDb` and builds its `TestApp` on it (with options when it needs them).
macro_rules! each_backend {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::sqlite().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = testkit::TestDb::postgres().await;
                    super::$name(&db).await;
                    db.cleanup().await;
                }
            )+
        }
    };
}
pub(crate) use each_backend;

pub fn phone(s: &str) -> PhoneNumber {
    PhoneNumber::parse(s).unwrap()
}

/// What came back from the router, body collected.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl TestResponse {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("a UTF-8 body")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "expected a JSON body ({e}), got {:?} ({})",
                self.text(),
                self.status
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("an ASCII header"))
    }

    /// Asserts the status and the stable error code of an error response.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) {
        assert_eq!(
            self.status,
            status,
            "status of {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "an error body is JSON: {:?}",
            self.headers
        );
        let json = self.json();
        assert_eq!(json["error"]["code"], code, "error code of {json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "error message in {json}"
        );
    }

    /// Asserts a TwiML answer with this `<Message>` (None: an empty `<Response/>`).
    #[track_caller]
    pub fn assert_twiml(&self, message: Option<&str>) {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "status of {:?}",
            String::from_utf8_lossy(&self.body)
        );
        assert!(
            self.header("content-type")
                .is_some_and(|c| c.starts_with("text/xml")),
            "TwiML is text/xml: {:?}",
            self.headers
        );
        let expected = match message {
            Some(m) => format!("{XML_HEAD}<Response><Message>{m}</Message></Response>"),
            None => format!("{XML_HEAD}<Response/>"),
        };
        assert_eq!(self.text(), expected);
    }
}

/// Options for the application under test.
pub struct TestAppBuilder {
    engine: Option<Arc<dyn TurnEngine>>,
    inline_budget: Duration,
    request_timeout: Duration,
    auth_token: Option<&'static str>,
}

impl TestAppBuilder {
    #[must_use]
    pub fn engine(mut self, engine: Arc<dyn TurnEngine>) -> Self {
        self.engine = Some(engine);
        self
    }

    #[must_use]
    pub const fn inline_budget(mut self, budget: Duration) -> Self {
        self.inline_budget = budget;
        self
    }

    #[must_use]
    pub const fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    #[must_use]
    pub const fn auth_token(mut self, token: Option<&'static str>) -> Self {
        self.auth_token = token;
        self
    }

    /// Seeds a tenant (number, KB entry, API key) and builds the router.
    pub async fn build(self, db: &TestDb) -> TestApp {
        let stores = db.stores();
        let tenant = stores
            .data
            .create_tenant(NewTenant {
                name: TenantName::parse(TENANT_NAME).unwrap(),
                phone_numbers: vec![phone(TENANT_NUMBER)],
            })
            .await
            .unwrap();
        let kb_entry = stores
            .data
            .add_kb_entry(
                tenant.id,
                KbEntryInput {
                    title: HOURS_TITLE.into(),
                    body: HOURS.into(),
                },
            )
            .await
            .unwrap()
            .id;
        let api_key = new_api_key(&stores, tenant.id).await;
        let vault = Arc::new(Vault::new(MasterKey::generate(), stores.data.clone()));
        let engine = self.engine.unwrap_or_else(|| {
            Arc::new(KnowledgeResponder::new(
                stores.data.clone(),
                FALLBACK.into(),
            ))
        });
        let messaging = Arc::new(Messaging::new(
            stores.clone(),
            vault.clone(),
            engine,
            MessagingConfig {
                inline_budget: self.inline_budget,
                max_attempts: 5,
                node_id: "test".into(),
            },
        ));
        let config = ApiConfig {
            public_url: PUBLIC_URL.into(),
            twilio_auth_token: self.auth_token.map(Into::into),
            validate_signatures: true,
            max_body_bytes: 16 * 1024,
            request_timeout: self.request_timeout,
            default_profile: DEFAULT_PROFILE.into(),
            tenant_private_endpoints: true,
        };
        let router = api::router(AppState::new(stores.clone(), messaging, config, Vec::new()));
        TestApp {
            stores,
            vault,
            router,
            tenant,
            api_key,
            kb_entry,
        }
    }
}

async fn new_api_key(stores: &Stores, tenant: TenantId) -> String {
    let generated = crypto::api_key::generate();
    stores
        .data
        .create_api_key(
            tenant,
            NewApiKey {
                prefix: generated.prefix.clone(),
                digest: generated.digest,
            },
        )
        .await
        .unwrap();
    generated.key
}

/// The application on one test database, with a seeded tenant.
pub struct TestApp {
    pub stores: Stores,
    pub vault: Arc<Vault>,
    pub router: Router,
    pub tenant: Tenant,
    pub api_key: String,
    /// The seeded "Opening hours" entry.
    pub kb_entry: KbEntryId,
}

impl TestApp {
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder {
            engine: None,
            inline_budget: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            auth_token: Some(AUTH_TOKEN),
        }
    }

    pub async fn new(db: &TestDb) -> Self {
        Self::builder().build(db).await
    }

    /// Sends one request through the router in-process.
    pub async fn request(&self, req: Request<Body>) -> TestResponse {
        let res = self
            .router
            .clone()
            .oneshot(req)
            .await
            .expect("the router is infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .into_body()
            .collect()
            .await
            .expect("a readable body")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// Serves the router on a real socket (bound before spawning, so no sleep is needed).
    pub async fn spawn(&self) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = self.router.clone();
        tokio::spawn(async move { axum::serve(listener, router).await });
        addr
    }

    // --- Twilio webhooks -----------------------------------------------------------------

    /// Posts raw bytes to a webhook with the given content type and signature.
    pub async fn webhook_raw(
        &self,
        path: &str,
        content_type: Option<&str>,
        signature: Option<&str>,
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut req = Request::builder().method(Method::POST).uri(path);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        if let Some(sig) = signature {
            req = req.header("X-Twilio-Signature", sig);
        }
        self.request(req.body(body.into()).unwrap()).await
    }

    /// Posts a form to a webhook, signed as Twilio signs it over `signed_url`.
    pub async fn webhook_signed(
        &self,
        path: &str,
        signed_url: &str,
        params: &[(String, String)],
    ) -> TestResponse {
        let sig = crypto::twilio::signature(AUTH_TOKEN, signed_url, params);
        self.webhook_raw(
            path,
            Some("application/x-www-form-urlencoded"),
            Some(&sig),
            encode(params),
        )
        .await
    }

    /// A signed inbound SMS webhook.
    pub async fn sms(&self, params: &[(String, String)]) -> TestResponse {
        self.webhook_signed("/webhooks/twilio/sms", SMS_URL, params)
            .await
    }

    /// A signed, realistic SMS from `from` to the tenant.
    pub async fn text(&self, sid: &str, from: &str, body: &str) -> TestResponse {
        self.sms(&inbound_sms(sid, from, TENANT_NUMBER, body)).await
    }

    /// A signed delivery status callback.
    pub async fn status_callback(&self, params: &[(String, String)]) -> TestResponse {
        self.webhook_signed("/webhooks/twilio/status", STATUS_URL, params)
            .await
    }

    // --- JSON API ------------------------------------------------------------------------

    pub async fn api(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        json: Option<&serde_json::Value>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(key) = key {
            req = req.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let body = match json {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(serde_json::to_vec(v).unwrap())
            }
            None => Body::empty(),
        };
        self.request(req.body(body).unwrap()).await
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        self.api(Method::GET, path, Some(&self.api_key), None).await
    }

    pub async fn post_json(&self, path: &str, json: &serde_json::Value) -> TestResponse {
        self.api(Method::POST, path, Some(&self.api_key), Some(json))
            .await
    }

    pub async fn put(&self, path: &str, json: &serde_json::Value) -> TestResponse {
        self.api(Method::PUT, path, Some(&self.api_key), Some(json))
            .await
    }

    pub async fn delete(&self, path: &str) -> TestResponse {
        self.api(Method::DELETE, path, Some(&self.api_key), None)
            .await
    }

    /// A request with the tenant's key and an arbitrary body and content type.
    pub async fn send_body(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.api_key));
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        self.request(req.body(body.into()).unwrap()).await
    }

    /// The messages of a conversation through the API (bodies decrypted), newest first.
    pub async fn messages(&self, conversation: &str) -> Vec<serde_json::Value> {
        let res = self
            .get(&format!("/api/v1/conversations/{conversation}/messages"))
            .await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        res.json()["items"].as_array().unwrap().clone()
    }

    /// The tenant's only conversation id (asserting there is exactly one).
    pub async fn only_conversation(&self) -> String {
        let res = self.get("/api/v1/conversations").await;
        assert_eq!(res.status, StatusCode::OK, "{}", res.text());
        let items = res.json()["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 1, "conversations: {items:?}");
        items[0]["id"].as_str().unwrap().to_owned()
    }

    /// The conversation of the SMS customer ([`CUSTOMER`]).
    pub async fn only_sms_conversation(&self) -> String {
        let user = self.end_user(CUSTOMER).await;
        let res = self.get("/api/v1/conversations").await;
        let items = res.json()["items"].as_array().unwrap().clone();
        items
            .iter()
            .find(|c| c["end_user_id"] == user.id.to_string())
            .and_then(|c| c["id"].as_str())
            .expect("the SMS customer's conversation")
            .to_owned()
    }

    // --- what is stored --------------------------------------------------------------------

    /// A second tenant with its own number and key.
    pub async fn other_tenant(&self, number: &str) -> (TenantId, String) {
        let tenant = self
            .stores
            .data
            .create_tenant(NewTenant {
                name: TenantName::parse("Other Shop").unwrap(),
                phone_numbers: vec![phone(number)],
            })
            .await
            .unwrap()
            .id;
        (tenant, new_api_key(&self.stores, tenant).await)
    }

    /// Asserts that the tenant has no conversation and no contact for `from`.
    #[track_caller]
    pub fn assert_nothing_stored<'a>(&'a self, from: &'a str) -> impl Future<Output = ()> + 'a {
        let caller = std::panic::Location::caller();
        async move {
            let conversations = self
                .stores
                .data
                .list_conversations(self.tenant.id, Page::default())
                .await
                .unwrap();
            assert!(
                conversations.is_empty(),
                "{caller}: no conversation expected, found {conversations:?}"
            );
            if let Ok(number) = PhoneNumber::parse(from) {
                let index = self.vault.phone_index(self.tenant.id, &number);
                let user = self
                    .stores
                    .data
                    .end_user_by_phone_index(self.tenant.id, &index)
                    .await
                    .unwrap();
                assert!(user.is_none(), "{caller}: no end user expected for {from}");
            }
        }
    }

    /// The end user of a phone number.
    pub async fn end_user(&self, from: &str) -> store::EndUser {
        let index = self.vault.phone_index(self.tenant.id, &phone(from));
        self.stores
            .data
            .end_user_by_phone_index(self.tenant.id, &index)
            .await
            .unwrap()
            .expect("an end user")
    }
}

/// The parameters Twilio posts for an inbound SMS (as in PROTOCOLS.md / Twilio's docs).
pub fn inbound_sms(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("ToCountry", "US"),
        ("ToState", "CA"),
        ("SmsMessageSid", sid),
        ("NumMedia", "0"),
        ("ToCity", "SAN FRANCISCO"),
        ("FromZip", "94105"),
        ("SmsSid", sid),
        ("FromState", "CA"),
        ("SmsStatus", "received"),
        ("FromCity", "SAN FRANCISCO"),
        ("Body", body),
        ("FromCountry", "US"),
        ("To", to),
        ("ToZip", "94105"),
        ("NumSegments", "1"),
        ("MessageSid", sid),
        ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("From", from),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// The parameters of a delivery status callback for an outbound message.
pub fn status_params(sid: &str, status: &str) -> Vec<(String, String)> {
    [
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("MessageStatus", status),
        ("To", CUSTOMER),
        ("MessageSid", sid),
        ("AccountSid", "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
        ("From", TENANT_NUMBER),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Replaces (or adds) one parameter.
pub fn with_param(
    mut params: Vec<(String, String)>,
    name: &str,
    value: &str,
) -> Vec<(String, String)> {
    params.retain(|(k, _)| k != name);
    params.push((name.to_owned(), value.to_owned()));
    params
}

pub fn without_param(mut params: Vec<(String, String)>, name: &str) -> Vec<(String, String)> {
    params.retain(|(k, _)| k != name);
    params
}

pub fn encode(params: &[(String, String)]) -> String {
    serde_urlencoded::to_string(params).unwrap()
}

/// Every stored message body and contact phone ciphertext, read around the store API.
pub async fn raw_ciphertexts(db: &TestDb) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    const BODIES: &str = "SELECT body_cipher FROM messages";
    const PHONES: &str = "SELECT phone_cipher FROM end_users WHERE phone_cipher IS NOT NULL";
    match db {
        TestDb::Sqlite { store, .. } => (
            sqlx::query_scalar(BODIES)
                .fetch_all(store.pool())
                .await
                .unwrap(),
            sqlx::query_scalar(PHONES)
                .fetch_all(store.pool())
                .await
                .unwrap(),
        ),
        TestDb::Postgres { .. } => {
            let mut conn = db.pg_superuser().await.expect("a superuser connection");
            (
                sqlx::query_scalar(BODIES)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap(),
                sqlx::query_scalar(PHONES)
                    .fetch_all(&mut conn)
                    .await
                    .unwrap(),
            )
        }
    }
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
