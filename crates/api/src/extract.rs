//! Extractors: the tenant behind an API key, JSON bodies and queries whose rejections are
//! turned into `ApiError`s with stable codes.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use domain::TenantId;
use serde::de::DeserializeOwned;

use crate::AppState;
use crate::error::ApiError;

/// The tenant an API key belongs to. Every `/api/v1` handler takes one, so every query it
/// makes is scoped to that tenant.
#[derive(Clone, Copy, Debug)]
pub struct AuthTenant(pub TenantId);

/// Recently verified keys (by digest), so a busy client does not cost a query per request.
/// Short TTL: a revoked key stops working within it.
#[derive(Default)]
pub struct KeyCache {
    entries: RwLock<HashMap<[u8; 32], (TenantId, Instant)>>,
}

const KEY_TTL: Duration = Duration::from_secs(30);

impl KeyCache {
    fn get(&self, digest: &[u8; 32]) -> Option<TenantId> {
        let map = self
            .entries
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.get(digest)
            .filter(|(_, at)| at.elapsed() < KEY_TTL)
            .map(|(t, _)| *t)
    }

    fn put(&self, digest: [u8; 32], tenant: TenantId) {
        let mut map = self
            .entries
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.len() > 10_000 {
            map.retain(|_, (_, at)| at.elapsed() < KEY_TTL);
        }
        map.insert(digest, (tenant, Instant::now()));
    }
}

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .ok_or(ApiError::Unauthorized)?;
        let key = header
            .to_str()
            .ok()
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, key)| key.trim())
            .filter(|k| crypto::api_key::looks_like_key(k))
            .ok_or(ApiError::Unauthorized)?;
        let digest = crypto::api_key::digest(key);
        let tenant = match state.inner.keys.get(&digest) {
            Some(t) => t,
            None => {
                let found = state
                    .inner
                    .stores
                    .data
                    .api_key_by_digest(&digest)
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                state.inner.keys.put(digest, found.tenant_id);
                found.tenant_id
            }
        };
        tracing::Span::current().record("tenant_id", tracing::field::display(tenant));
        Ok(Self(tenant))
    }
}

/// A JSON object body with rejections mapped to stable codes. Only an object is accepted:
/// serde would otherwise map a positional array onto a struct's fields.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType {
                expected: "application/json",
            });
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge {
                        limit: crate::DEFAULT_BODY_LIMIT,
                    }
                } else {
                    ApiError::bad_request("invalid_body", e.body_text())
                }
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::bad_request("invalid_json", e.to_string()))?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
        serde_json::from_value(value)
            .map(Self)
            .map_err(|e| ApiError::bad_request("invalid_body", e.to_string()))
    }
}

/// `Query<T>` with rejections mapped to stable codes.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Self(v))
            .map_err(|e: QueryRejection| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

/// Parses an id from a path segment.
pub fn parse_id<T: std::str::FromStr>(raw: &str) -> Result<T, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request("invalid_id", "the id in the path is not a valid UUID"))
}
