//! Knowledge-base entries of the caller's tenant.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use domain::KbEntryId;
use serde::{Deserialize, Serialize};
use store::{KbEntry, KbEntryInput};
use utoipa::ToSchema;

use crate::conversations::PageQuery;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, AuthTenant, parse_id};
use crate::{AppState, inner};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/kb", get(list).post(create))
        .route("/kb/{id}", get(read).put(update).delete(remove))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KbEntryBody {
    /// 1 to 200 characters, not all white space; no control characters other than tab,
    /// line feed and carriage return.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub title: String,
    /// 1 to 20,000 characters, not all white space; no control characters other than tab,
    /// line feed and carriage return.
    #[schema(
        min_length = 1,
        max_length = 20000,
        pattern = r"^[^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F]*$"
    )]
    pub body: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KbEntryView {
    pub id: uuid::Uuid,
    pub title: String,
    pub body: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KbEntryList {
    pub items: Vec<KbEntryView>,
    pub next_before: Option<uuid::Uuid>,
}

impl From<KbEntry> for KbEntryView {
    fn from(e: KbEntry) -> Self {
        Self {
            id: e.id.into_uuid(),
            title: e.title,
            body: e.body,
            created_at: e.created_at.to_string(),
            updated_at: e.updated_at.to_string(),
        }
    }
}

/// Validates an entry: trimmed, non-empty, bounded.
pub fn validate(title: &str, body: &str) -> Result<KbEntryInput, ApiError> {
    let title = title.trim();
    let body = body.trim();
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ApiError::bad_request(
            "invalid_title",
            "title must have 1 to 200 characters",
        ));
    }
    if body.is_empty() || body.chars().count() > 20_000 {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body must have 1 to 20,000 characters",
        ));
    }
    if title
        .chars()
        .chain(body.chars())
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::bad_request(
            "invalid_body",
            "control characters are not allowed",
        ));
    }
    Ok(KbEntryInput {
        title: title.to_owned(),
        body: body.to_owned(),
    })
}

/// Entries, newest first.
#[utoipa::path(get, path = "/api/v1/kb", params(PageQuery), tag = "knowledge base", security(("api_key" = [])),
    responses((status = 200, body = KbEntryList), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<KbEntryList>, ApiError> {
    let page = q.page()?;
    let rows = inner(&state)
        .stores
        .data
        .list_kb_entries(tenant, page)
        .await?;
    let next = (rows.len() == page.limit as usize)
        .then(|| rows.last().map(|e| e.id.into_uuid()))
        .flatten();
    Ok(Json(KbEntryList {
        items: rows.into_iter().map(Into::into).collect(),
        next_before: next,
    }))
}

/// Adds an entry; it is searchable at once.
#[utoipa::path(post, path = "/api/v1/kb", request_body = KbEntryBody, tag = "knowledge base", security(("api_key" = [])),
    responses((status = 201, body = KbEntryView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn create(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiJson(body): ApiJson<KbEntryBody>,
) -> Result<(http::StatusCode, Json<KbEntryView>), ApiError> {
    let input = validate(&body.title, &body.body)?;
    let entry = inner(&state)
        .stores
        .data
        .add_kb_entry(tenant, input)
        .await?;
    Ok((http::StatusCode::CREATED, Json(entry.into())))
}

#[utoipa::path(get, path = "/api/v1/kb/{id}", params(("id" = uuid::Uuid, Path)), tag = "knowledge base", security(("api_key" = [])),
    responses((status = 200, body = KbEntryView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<KbEntryView>, ApiError> {
    let id: KbEntryId = parse_id(&id)?;
    let entry = inner(&state)
        .stores
        .data
        .get_kb_entry(tenant, id)
        .await?
        .ok_or(ApiError::NotFound { what: "entry" })?;
    Ok(Json(entry.into()))
}

#[utoipa::path(put, path = "/api/v1/kb/{id}", params(("id" = uuid::Uuid, Path)), request_body = KbEntryBody,
    tag = "knowledge base", security(("api_key" = [])),
    responses((status = 200, body = KbEntryView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn update(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<KbEntryBody>,
) -> Result<Json<KbEntryView>, ApiError> {
    let id: KbEntryId = parse_id(&id)?;
    let input = validate(&body.title, &body.body)?;
    match inner(&state)
        .stores
        .data
        .update_kb_entry(tenant, id, input)
        .await
    {
        Ok(entry) => Ok(Json(entry.into())),
        Err(store::StoreError::NotFound) => Err(ApiError::NotFound { what: "entry" }),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(delete, path = "/api/v1/kb/{id}", params(("id" = uuid::Uuid, Path)), tag = "knowledge base", security(("api_key" = [])),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn remove(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<http::StatusCode, ApiError> {
    let id: KbEntryId = parse_id(&id)?;
    match inner(&state).stores.data.delete_kb_entry(tenant, id).await {
        Ok(()) => Ok(http::StatusCode::NO_CONTENT),
        Err(store::StoreError::NotFound) => Err(ApiError::NotFound { what: "entry" }),
        Err(e) => Err(e.into()),
    }
}
