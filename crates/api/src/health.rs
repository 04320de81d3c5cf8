//! `/health` (the process is alive) and `/ready` (its dependencies answer).

use std::sync::Arc;

use async_trait::async_trait;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use crate::{AppState, inner};

/// A dependency readiness depends on (the database always; Redis when configured).
#[async_trait]
pub trait Probe: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn ready(state: State<AppState>) -> (http::StatusCode, Json<serde_json::Value>) {
    let inner = inner(&state);
    let mut checks = Vec::new();
    let db = match inner.stores.data.migration_status().await {
        Ok(s) if s.is_current() => Ok(()),
        Ok(s) => Err(format!("{} of {} migrations applied", s.applied, s.known)),
        Err(e) => Err(e.to_string()),
    };
    checks.push(Check {
        name: "database",
        ok: db.is_ok(),
        error: db.err(),
    });
    for probe in &inner.probes {
        let probe: &Arc<dyn Probe> = probe;
        let result = tokio::time::timeout(std::time::Duration::from_secs(2), probe.check())
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        checks.push(Check {
            name: probe.name(),
            ok: result.is_ok(),
            error: result.err(),
        });
    }
    let ok = checks.iter().all(|c| c.ok);
    let status = if ok {
        http::StatusCode::OK
    } else {
        http::StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(
            serde_json::json!({ "status": if ok { "ready" } else { "unavailable" }, "checks": checks }),
        ),
    )
}
