//! The HTTP side of Concierge: Twilio webhooks, the `/api/v1` JSON API with its OpenAPI
//! document, health endpoints, and the admin listener's metrics endpoint.

mod chat;
mod conversations;
pub mod error;
mod extract;
mod health;
mod kb;
mod model_settings;
pub mod openapi;
mod profiles;
mod tenants;
mod twiml;
mod webhooks;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use messaging::Messaging;
use secrecy::SecretString;
use store::Stores;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

pub use health::Probe;

/// Default limit for JSON bodies; webhooks have their own (`ApiConfig::max_body_bytes`).
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

#[derive(Clone)]
pub struct ApiConfig {
    /// The base URL Twilio calls (scheme, host, optional port); request paths are appended
    /// to it to rebuild the signed URL.
    pub public_url: String,
    pub twilio_auth_token: Option<SecretString>,
    pub validate_signatures: bool,
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// The profile new conversations get when their tenant has not chosen one
    /// (`agent.default_profile`), reported by the profiles API.
    pub default_profile: String,
    /// Whether tenants' own model endpoints may be `http` or internal addresses
    /// (`llm.tenant_private_endpoints`).
    pub tenant_private_endpoints: bool,
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    stores: Stores,
    messaging: Arc<Messaging>,
    config: ApiConfig,
    tenants: tenants::TenantCache,
    keys: extract::KeyCache,
    probes: Vec<Arc<dyn Probe>>,
}

impl AppState {
    pub fn new(
        stores: Stores,
        messaging: Arc<Messaging>,
        config: ApiConfig,
        probes: Vec<Arc<dyn Probe>>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                stores,
                messaging,
                config,
                tenants: tenants::TenantCache::default(),
                keys: extract::KeyCache::default(),
                probes,
            }),
        }
    }
}

/// The public router: webhooks, API, health.
pub fn router(state: AppState) -> Router {
    let timeout = state.inner.config.request_timeout;
    Router::new()
        .merge(health::router())
        .merge(webhooks::router())
        .nest(
            "/api/v1",
            Router::new()
                .merge(conversations::router())
                .merge(kb::router())
                .merge(chat::router())
                .merge(profiles::router())
                .merge(model_settings::router())
                .route("/openapi.json", get(openapi::serve))
                .layer(axum::extract::DefaultBodyLimit::max(DEFAULT_BODY_LIMIT)),
        )
        .fallback(|| async { error::ApiError::NotFound { what: "route" } })
        .method_not_allowed_fallback(|| async { error::ApiError::MethodNotAllowed })
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str);
                let request_id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                if route == "/health" || route == "/ready" {
                    tracing::debug_span!("http", method = %req.method(), route, request_id, tenant_id = tracing::field::Empty)
                } else {
                    tracing::info_span!("http", method = %req.method(), route, request_id, tenant_id = tracing::field::Empty)
                }
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(move |req: Request, next: Next| async move {
            // A request over the limit is answered like any other error; an inline turn it
            // abandons stays leased and goes to the worker when the lease ends.
            match tokio::time::timeout(timeout, next.run(req)).await {
                Ok(response) => response,
                Err(_) => axum::response::IntoResponse::into_response(error::ApiError::Unavailable(
                    "the request took too long".into(),
                )),
            }
        }))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        // Outermost, so the 503 of a request that ran out of time and the 500 of a panic are
        // counted like any other answer.
        .layer(middleware::from_fn(record_metrics))
        .with_state(state)
}

/// The admin router (metrics), for a listener that is not exposed publicly.
pub fn admin_router(render: Arc<dyn Fn() -> String + Send + Sync>) -> Router {
    Router::new()
        // Liveness for processes that have no public listener (workers).
        .route("/health", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(move || {
                let render = render.clone();
                async move {
                    (
                        [(
                            http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        render(),
                    )
                }
            }),
        )
}

async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("concierge_http_requests_total", &labels).increment(1);
    metrics::histogram!("concierge_http_request_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// State accessor for modules.
fn inner(state: &State<AppState>) -> &Inner {
    &state.0.inner
}
