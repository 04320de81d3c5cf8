//! The OpenAPI document of `/api/v1`, served at `/api/v1/openapi.json` and snapshot-tested.

use axum::Json;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "Concierge API", version = "1", description = "Tenant API: conversations, knowledge base, web chat, agent profiles. Authenticate with `Authorization: Bearer <api key>` (create one with `concierge admin api-key create`). Errors are `{\"error\":{\"code\",\"message\"}}` with stable codes."),
    paths(
        crate::conversations::list,
        crate::conversations::messages,
        crate::conversations::request_handoff,
        crate::conversations::resolve_handoff,
        crate::conversations::take_handoff,
        crate::conversations::handoffs,
        crate::conversations::staff_message,
        crate::model_settings::show,
        crate::model_settings::put,
        crate::model_settings::clear,
        crate::kb::list,
        crate::kb::create,
        crate::kb::read,
        crate::kb::update,
        crate::kb::remove,
        crate::chat::send,
        crate::profiles::list,
        crate::profiles::read,
        crate::profiles::save,
        crate::profiles::versions,
        crate::profiles::set_default,
    ),
    modifiers(&ApiKeyAuth)
)]
pub struct ApiDoc;

struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The document as JSON text (pretty, stable).
#[must_use]
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}
