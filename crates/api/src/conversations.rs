//! Conversations and their messages, scoped to the caller's tenant; staff take over a
//! conversation by resolving its hand-off.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::ConversationId;
use serde::{Deserialize, Serialize};
use store::Page;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{ApiQuery, AuthTenant, parse_id};
use crate::{AppState, inner};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list))
        .route("/conversations/{id}/messages", get(messages))
        .route(
            "/conversations/{id}/handoff",
            post(request_handoff).delete(resolve_handoff),
        )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// Return items older than this id (the `next_before` of the previous page).
    pub before: Option<uuid::Uuid>,
}

impl PageQuery {
    /// The page asked for; a limit outside 1 to 200 is refused (`400 invalid_limit`).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if !(1..=Page::MAX_LIMIT).contains(&limit) {
            return Err(ApiError::bad_request(
                "invalid_limit",
                "limit must be between 1 and 200",
            ));
        }
        Ok(Page::new(limit, self.before))
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: uuid::Uuid,
    pub end_user_id: uuid::Uuid,
    pub message_count: u64,
    /// RFC 3339.
    pub created_at: String,
    pub last_message_at: String,
    /// Since when the conversation waits for a member of staff (RFC 3339); absent when it
    /// does not. Set when the customer asks for a person or an agent hands off.
    pub handoff_at: Option<String>,
}

impl From<store::Conversation> for ConversationView {
    fn from(c: store::Conversation) -> Self {
        Self {
            id: c.id.into_uuid(),
            end_user_id: c.end_user_id.into_uuid(),
            message_count: c.message_count,
            created_at: c.created_at.to_string(),
            last_message_at: c.last_message_at.to_string(),
            handoff_at: c.handoff_at.map(|t| t.to_string()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    pub items: Vec<ConversationView>,
    /// Pass as `before` to get the next page; absent on the last page.
    pub next_before: Option<uuid::Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: uuid::Uuid,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `sms` or `web_chat`.
    pub channel: String,
    /// `received`, `queued`, `sending`, `sent`, `delivered`, `undelivered`, `failed`, `read`, `replied_inline`.
    pub status: String,
    pub body: String,
    pub in_reply_to: Option<uuid::Uuid>,
    pub provider_sid: Option<String>,
    pub error_code: Option<String>,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub items: Vec<MessageView>,
    pub next_before: Option<uuid::Uuid>,
}

fn next_before<T>(items: &[T], limit: u32, id: impl Fn(&T) -> uuid::Uuid) -> Option<uuid::Uuid> {
    (items.len() == limit as usize)
        .then(|| items.last().map(id))
        .flatten()
}

/// Conversations of the caller's tenant, newest first.
#[utoipa::path(get, path = "/api/v1/conversations", params(PageQuery), tag = "conversations",
    security(("api_key" = [])),
    responses((status = 200, body = ConversationList), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let page = q.page()?;
    let rows = inner(&state)
        .stores
        .data
        .list_conversations(tenant, page)
        .await?;
    let next = next_before(&rows, page.limit, |c| c.id.into_uuid());
    Ok(Json(ConversationList {
        items: rows.into_iter().map(ConversationView::from).collect(),
        next_before: next,
    }))
}

/// Messages of one conversation, newest first, bodies decrypted.
#[utoipa::path(get, path = "/api/v1/conversations/{id}/messages", params(("id" = uuid::Uuid, Path), PageQuery),
    tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = MessageList), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn messages(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<MessageList>, ApiError> {
    let id: ConversationId = parse_id(&id)?;
    let inner = inner(&state);
    if inner
        .stores
        .data
        .get_conversation(tenant, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound {
            what: "conversation",
        });
    }
    let page = q.page()?;
    let rows = inner.stores.data.list_messages(tenant, id, page).await?;
    let next = next_before(&rows, page.limit, |m| m.id.into_uuid());
    let mut items = Vec::with_capacity(rows.len());
    for m in rows {
        items.push(MessageView {
            id: m.id.into_uuid(),
            direction: m.direction.as_str().to_owned(),
            channel: m.channel.as_str().to_owned(),
            status: m.status.as_str().to_owned(),
            body: inner.messaging.message_text(tenant, &m.body).await?,
            in_reply_to: m.in_reply_to.map(domain::MessageId::into_uuid),
            provider_sid: m.provider_sid,
            error_code: m.error_code,
            created_at: m.created_at.to_string(),
        });
    }
    Ok(Json(MessageList {
        items,
        next_before: next,
    }))
}

async fn set_handoff(
    state: &State<AppState>,
    tenant: domain::TenantId,
    id: &str,
    requested: bool,
) -> Result<Json<ConversationView>, ApiError> {
    let id: ConversationId = parse_id(id)?;
    let conversation = inner(state)
        .stores
        .data
        .set_handoff(tenant, id, requested)
        .await?
        .ok_or(ApiError::NotFound {
            what: "conversation",
        })?;
    metrics::counter!("concierge_handoffs_total", "event" => if requested { "requested_by_staff" } else { "resolved" })
        .increment(1);
    Ok(Json(conversation.into()))
}

/// Marks the conversation as waiting for a member of staff (idempotent: the first
/// request's time is kept).
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff", params(("id" = uuid::Uuid, Path)),
    tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn request_handoff(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    set_handoff(&state, tenant, &id, true).await
}

/// Resolves the hand-off: a member of staff has taken the conversation over.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/handoff", params(("id" = uuid::Uuid, Path)),
    tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn resolve_handoff(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    set_handoff(&state, tenant, &id, false).await
}
