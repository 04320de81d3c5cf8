//! Conversations and their messages, scoped to the caller's tenant, and the hand-off of a
//! conversation between the agents and a member of staff (`domain::Handoff`): staff see
//! the conversations waiting for them, take one, write to the customer, and give it back.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use domain::ConversationId;
use serde::{Deserialize, Serialize};
use store::Page;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, AuthTenant, parse_id};
use crate::{AppState, inner};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/conversations", get(list))
        .route(
            "/conversations/{id}/messages",
            get(messages).post(staff_message),
        )
        .route(
            "/conversations/{id}/handoff",
            post(request_handoff).delete(resolve_handoff),
        )
        .route("/conversations/{id}/handoff/take", post(take_handoff))
        .route("/handoffs", get(handoffs))
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
    /// Who answers: `bot` (the agents), `pending` (waiting for a member of staff: the
    /// agents no longer answer) or `human` (a member of staff has it).
    pub handoff: String,
    /// Since when the conversation is with or waiting for staff (RFC 3339); absent with
    /// the agents. Set when the customer asks for a person or an agent hands off.
    pub handoff_at: Option<String>,
    /// The member of staff who has the conversation (`human`).
    pub handoff_staff: Option<String>,
}

impl From<store::Conversation> for ConversationView {
    fn from(c: store::Conversation) -> Self {
        Self {
            id: c.id.into_uuid(),
            end_user_id: c.end_user_id.into_uuid(),
            message_count: c.message_count,
            created_at: c.created_at.to_string(),
            last_message_at: c.last_message_at.to_string(),
            handoff: c.handoff.as_str().to_owned(),
            handoff_at: c.handoff_at.map(|t| t.to_string()),
            handoff_staff: c.handoff_staff,
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
    /// `customer`, `agent` or `staff`.
    pub author: String,
    /// The member of staff who wrote a `staff` message.
    pub sent_by: Option<String>,
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

impl MessageView {
    fn new(m: store::StoredMessage, body: String) -> Self {
        let author = match (m.direction, &m.sent_by) {
            (domain::Direction::Inbound, _) => "customer",
            (domain::Direction::Outbound, Some(_)) => "staff",
            (domain::Direction::Outbound, None) => "agent",
        };
        Self {
            id: m.id.into_uuid(),
            direction: m.direction.as_str().to_owned(),
            author: author.to_owned(),
            sent_by: m.sent_by,
            channel: m.channel.as_str().to_owned(),
            status: m.status.as_str().to_owned(),
            body,
            in_reply_to: m.in_reply_to.map(domain::MessageId::into_uuid),
            provider_sid: m.provider_sid,
            error_code: m.error_code,
            created_at: m.created_at.to_string(),
        }
    }
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
        let body = inner.messaging.message_text(tenant, &m.body).await?;
        items.push(MessageView::new(m, body));
    }
    Ok(Json(MessageList {
        items,
        next_before: next,
    }))
}

/// Who a member of staff is, as the caller's system names them (there are no staff
/// accounts yet: the API key is the tenant's), 1 to 100 characters.
fn staff_name(raw: Option<&str>) -> Result<String, ApiError> {
    let name = raw.unwrap_or("staff").trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_staff",
            "staff must have 1 to 100 characters, no control characters",
        ));
    }
    Ok(name.to_owned())
}

async fn move_handoff(
    state: &State<AppState>,
    tenant: domain::TenantId,
    id: &str,
    event: domain::HandoffEvent,
    staff: Option<&str>,
) -> Result<Json<ConversationView>, ApiError> {
    let id: ConversationId = parse_id(id)?;
    let conversation = inner(state)
        .stores
        .data
        .update_handoff(tenant, id, event, staff)
        .await?
        .ok_or(ApiError::NotFound {
            what: "conversation",
        })?;
    let label = match event {
        domain::HandoffEvent::Request => "requested_by_staff",
        domain::HandoffEvent::Take => "taken",
        domain::HandoffEvent::Release => "released",
    };
    metrics::counter!("concierge_handoffs_total", "event" => label).increment(1);
    Ok(Json(conversation.into()))
}

/// Asks for a member of staff: the agents stop answering (`pending`); idempotent, and a
/// conversation a person already has stays with them.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff", params(("id" = uuid::Uuid, Path)),
    tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn request_handoff(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    move_handoff(&state, tenant, &id, domain::HandoffEvent::Request, None).await
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeBody {
    /// Who takes the conversation (default `staff`), 1 to 100 characters.
    pub staff: Option<String>,
}

/// A member of staff takes the conversation (`human`): from now on only staff answer it,
/// and a reply an agent was still preparing is not sent.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/handoff/take", params(("id" = uuid::Uuid, Path)),
    request_body = TakeBody, tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn take_handoff(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<TakeBody>,
) -> Result<Json<ConversationView>, ApiError> {
    let staff = staff_name(body.staff.as_deref())?;
    move_handoff(
        &state,
        tenant,
        &id,
        domain::HandoffEvent::Take,
        Some(&staff),
    )
    .await
}

/// Gives the conversation back to the agents (`bot`): they answer the next message, with
/// the staff's messages in the history they read.
#[utoipa::path(delete, path = "/api/v1/conversations/{id}/handoff", params(("id" = uuid::Uuid, Path)),
    tag = "conversations", security(("api_key" = [])),
    responses((status = 200, body = ConversationView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn resolve_handoff(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    move_handoff(&state, tenant, &id, domain::HandoffEvent::Release, None).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// Page size, 1 to 200 (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

/// Conversations waiting for staff (`pending`) or with them (`human`), longest waiting
/// first: the staff inbox.
#[utoipa::path(get, path = "/api/v1/handoffs", params(LimitQuery), tag = "conversations",
    security(("api_key" = [])),
    responses((status = 200, body = ConversationList), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody)))]
pub async fn handoffs(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiQuery(q): ApiQuery<LimitQuery>,
) -> Result<Json<ConversationList>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        before: None,
    }
    .page()?;
    let rows = inner(&state)
        .stores
        .data
        .list_handed_off(tenant, page)
        .await?;
    Ok(Json(ConversationList {
        items: rows.into_iter().map(ConversationView::from).collect(),
        next_before: None,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffMessageBody {
    /// 1 to 1,600 characters, not all white space.
    #[schema(min_length = 1, max_length = 1600, pattern = r"\S")]
    pub text: String,
    /// Who writes (default `staff`), 1 to 100 characters.
    pub staff: Option<String>,
    /// Your id for this message (a UUID): sending again with the same id sends nothing
    /// twice. Generated when absent.
    pub id: Option<uuid::Uuid>,
}

/// A member of staff writes to the customer, on the channel of the conversation's latest
/// message (SMS through the outbox, or web chat). The conversation passes to them
/// (`human`) in the same step, so the agents and the person never both answer.
#[utoipa::path(post, path = "/api/v1/conversations/{id}/messages", params(("id" = uuid::Uuid, Path)),
    request_body = StaffMessageBody, tag = "conversations", security(("api_key" = [])),
    responses((status = 201, body = MessageView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
        (status = 415, body = crate::error::ErrorBody)))]
pub async fn staff_message(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StaffMessageBody>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let conversation: ConversationId = parse_id(&id)?;
    let text = body.text.trim();
    if text.is_empty() || text.chars().count() > 1600 {
        return Err(ApiError::bad_request(
            "invalid_message",
            "text must have 1 to 1,600 characters",
        ));
    }
    let staff = staff_name(body.staff.as_deref())?;
    let id = body
        .id
        .map_or_else(domain::MessageId::new, domain::MessageId::from_uuid);
    let inner = inner(&state);
    match inner
        .messaging
        .staff_reply(tenant, conversation, id, text, &staff)
        .await?
    {
        store::StaffReplyOutcome::Recorded(m) => {
            let body = inner.messaging.message_text(tenant, &m.body).await?;
            Ok((StatusCode::CREATED, Json(MessageView::new(m, body))))
        }
        store::StaffReplyOutcome::OptedOut => Err(ApiError::Conflict {
            code: "opted_out",
            message: "the customer opted out of text messages (STOP); nothing was sent".into(),
        }),
    }
}
