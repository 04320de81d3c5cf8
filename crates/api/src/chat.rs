//! Web chat: a message from a site visitor goes through the same turn as an SMS.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthTenant};
use crate::{AppState, inner};

pub fn router() -> Router<AppState> {
    Router::new().route("/chat/messages", post(send))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatMessageBody {
    /// Continue this conversation; omit to start a new one.
    pub conversation_id: Option<uuid::Uuid>,
    /// 1 to 4,000 characters, not all white space.
    #[schema(min_length = 1, max_length = 4000, pattern = r"\S")]
    pub message: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChatMessageResponse {
    pub conversation_id: uuid::Uuid,
    pub message_id: uuid::Uuid,
    /// The reply, when the turn finished within the inline budget.
    pub reply: Option<String>,
    /// `answered`, or `pending` when the reply will appear in the conversation later.
    pub status: String,
}

/// Sends a visitor's message and returns the agent's reply.
#[utoipa::path(post, path = "/api/v1/chat/messages", request_body = ChatMessageBody, tag = "chat", security(("api_key" = [])),
    responses((status = 200, body = ChatMessageResponse), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn send(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiJson(body): ApiJson<ChatMessageBody>,
) -> Result<Json<ChatMessageResponse>, ApiError> {
    let text = body.message.trim();
    if text.is_empty() || text.chars().count() > 4000 {
        return Err(ApiError::bad_request(
            "invalid_message",
            "message must have 1 to 4,000 characters",
        ));
    }
    let conversation = body.conversation_id.map(domain::ConversationId::from_uuid);
    let reply = inner(&state)
        .messaging
        .receive_web_chat(tenant, conversation, text)
        .await?;
    Ok(Json(ChatMessageResponse {
        conversation_id: reply.conversation_id.into_uuid(),
        message_id: reply.message_id.into_uuid(),
        status: if reply.reply.is_some() {
            "answered"
        } else {
            "pending"
        }
        .to_owned(),
        reply: reply.reply,
    }))
}
