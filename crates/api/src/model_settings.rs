//! The caller's tenant's own model providers: its API keys, endpoints and models, tried in
//! order, instead of the installation's model. Keys are sealed with the tenant's data key
//! and never returned (only their last four characters).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{ApiJson, AuthTenant};
use crate::{AppState, inner};

const COLUMN: &str = agent::tools::columns::MODEL_SETTINGS;

pub fn router() -> Router<AppState> {
    Router::new().route("/model-settings", get(show).put(put).delete(clear))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProviderBody {
    /// `openai`, `openai_compatible` (Ollama, vLLM, llama.cpp...), `anthropic` or `gemini`.
    #[schema(value_type = String, example = "openai")]
    pub provider: llm::ProviderKind,
    /// The model name at the provider, 1 to 200 characters.
    #[schema(example = "gpt-4o-mini")]
    pub model: String,
    /// The provider's endpoint (default: the vendor's public API; required for
    /// `openai_compatible`). A public `https` URL unless the installation allows private
    /// endpoints.
    pub base_url: Option<String>,
    /// Required except for `openai_compatible`. Write-only.
    pub api_key: Option<String>,
    /// US dollars per million input tokens (accounting and budgets).
    pub input_per_mtok: Option<f64>,
    /// US dollars per million output tokens.
    pub output_per_mtok: Option<f64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelSettingsBody {
    /// 1 to 4 providers, tried in this order: the next answers when one fails.
    pub providers: Vec<ProviderBody>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub provider: String,
    pub model: String,
    pub base_url: Option<String>,
    /// The key's last four characters, if a key is set.
    pub api_key_hint: Option<String>,
    pub input_per_mtok: Option<f64>,
    pub output_per_mtok: Option<f64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelSettingsView {
    /// `tenant` (these providers answer the tenant's conversations) or `installation`
    /// (none set: the installation's model answers, or the offline engine without one).
    pub source: String,
    pub providers: Vec<ProviderView>,
}

fn view(settings: Option<llm::ModelSettings>) -> ModelSettingsView {
    let Some(settings) = settings else {
        return ModelSettingsView {
            source: "installation".into(),
            providers: Vec::new(),
        };
    };
    ModelSettingsView {
        source: "tenant".into(),
        providers: settings
            .providers
            .into_iter()
            .map(|p| ProviderView {
                provider: p.provider.as_str().to_owned(),
                model: p.model,
                base_url: p.base_url,
                api_key_hint: p.api_key.map(|k| {
                    let start = k.char_indices().rev().nth(3).map_or(0, |(at, _)| at);
                    format!("…{}", &k[start..])
                }),
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
            })
            .collect(),
    }
}

/// The tenant's model providers (keys shown by their last four characters only).
#[utoipa::path(get, path = "/api/v1/model-settings", tag = "models", security(("api_key" = [])),
    responses((status = 200, body = ModelSettingsView), (status = 401, body = crate::error::ErrorBody)))]
pub async fn show(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<ModelSettingsView>, ApiError> {
    let inner = inner(&state);
    let Some(sealed) = inner.stores.data.model_settings(tenant).await? else {
        return Ok(Json(view(None)));
    };
    let key = inner.messaging.vault().data_key(tenant).await?;
    let json = key
        .decrypt_string(tenant, COLUMN, &sealed)
        .map_err(|e| ApiError::Internal(format!("model settings: {e}")))?;
    let settings: llm::ModelSettings = serde_json::from_str(&json)
        .map_err(|e| ApiError::Internal(format!("model settings: {e}")))?;
    Ok(Json(view(Some(settings))))
}

/// Sets the tenant's model providers (replacing any), checked first: every field is
/// validated and a refusal names the field (`invalid_model_settings`).
#[utoipa::path(put, path = "/api/v1/model-settings", request_body = ModelSettingsBody, tag = "models", security(("api_key" = [])),
    responses((status = 200, body = ModelSettingsView), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn put(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiJson(body): ApiJson<ModelSettingsBody>,
) -> Result<Json<ModelSettingsView>, ApiError> {
    let inner = inner(&state);
    let settings = llm::ModelSettings {
        providers: body
            .providers
            .into_iter()
            .map(|p| llm::ProviderSettings {
                provider: p.provider,
                model: p.model,
                base_url: p.base_url,
                api_key: p.api_key,
                input_per_mtok: p.input_per_mtok,
                output_per_mtok: p.output_per_mtok,
            })
            .collect(),
    };
    settings
        .validate(inner.config.tenant_private_endpoints)
        .map_err(|e| ApiError::bad_request("invalid_model_settings", e.to_string()))?;
    let json = serde_json::to_string(&settings)
        .map_err(|e| ApiError::Internal(format!("model settings: {e}")))?;
    let key = inner.messaging.vault().data_key(tenant).await?;
    let sealed = key.encrypt_str(tenant, COLUMN, &json);
    inner
        .stores
        .data
        .set_model_settings(tenant, Some(&sealed))
        .await?;
    inner.messaging.settings_changed(tenant);
    tracing::info!(%tenant, providers = settings.providers.len(), "tenant model settings set");
    Ok(Json(view(Some(settings))))
}

/// Removes the tenant's own providers: the installation's model answers again.
#[utoipa::path(delete, path = "/api/v1/model-settings", tag = "models", security(("api_key" = [])),
    responses((status = 200, body = ModelSettingsView), (status = 401, body = crate::error::ErrorBody)))]
pub async fn clear(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<ModelSettingsView>, ApiError> {
    let inner = inner(&state);
    inner.stores.data.set_model_settings(tenant, None).await?;
    inner.messaging.settings_changed(tenant);
    tracing::info!(%tenant, "tenant model settings cleared");
    Ok(Json(view(None)))
}
