//! Agent profiles of the caller's tenant: the built-in teams and the tenant's own versioned
//! ones, and which of them new conversations get. The HTTP side of `concierge profile`.
//!
//! Conversations pick up a change within the agent runtime's cache lifetime (seconds), not
//! at once: the runtime lives in another part of the process and is not told.

use agent::Profile;
use agent::profile::{BUILTIN, MAX_SOURCE_BYTES};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use domain::TenantId;
use serde::{Deserialize, Deserializer, Serialize};
use store::StoredProfile;
use utoipa::{IntoParams, ToSchema};

use crate::error::ApiError;
use crate::extract::{ApiJson, ApiQuery, AuthTenant};
use crate::{AppState, Inner, inner};

/// Body limit of `PUT /profiles/{name}`: a source of `MAX_SOURCE_BYTES` grows when it is
/// written as a JSON string (every newline and quote escaped, or every non-ASCII character
/// as `\u` escapes), so the body may be a few times larger than the source it carries.
pub const PROFILE_BODY_LIMIT: usize = 4 * MAX_SOURCE_BYTES;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/profiles", get(list))
        .route(
            "/profiles/{name}",
            get(read)
                .put(save)
                .layer(DefaultBodyLimit::max(PROFILE_BODY_LIMIT)),
        )
        .route("/profiles/{name}/versions", get(versions))
        .route("/default-profile", put(set_default))
}

/// Where a listed profile comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum ProfileOrigin {
    /// The tenant's own (its latest version is listed).
    #[serde(rename = "tenant")]
    Tenant,
    /// Shipped with Concierge (version 0), not overridden by the tenant.
    #[serde(rename = "built-in")]
    BuiltIn,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileSummary {
    pub name: String,
    pub source: ProfileOrigin,
    /// The latest stored version; 0 for a built-in.
    pub version: u32,
    /// When that version was stored (RFC 3339); null for a built-in.
    pub created_at: Option<String>,
    /// Whether new conversations of the tenant get this profile.
    pub default: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileList {
    /// The profile new conversations get: the tenant's choice, else the installation's.
    pub default: String,
    /// The tenant's profiles (by name), then the built-ins it has not overridden.
    pub items: Vec<ProfileSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProfileView {
    pub name: String,
    /// 0 for a built-in.
    pub version: u32,
    /// The profile's TOML, as stored.
    pub source: String,
    /// When this version was stored (RFC 3339); null for a built-in.
    pub created_at: Option<String>,
    /// The names of the team's agents.
    pub agents: Vec<String>,
    /// The agent that takes new conversations. Null (and `agents` empty) for a stored
    /// version that no longer passes validation; the runtime then serves the built-in
    /// profile of that name, or the default.
    pub entry: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A stored version; 0 is the built-in profile of that name. Default: the tenant's
    /// latest version, else the built-in.
    pub version: Option<u32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfileBody {
    /// The profile's TOML (see docs/AGENTS.md); its `name` must be the one in the path.
    /// At most 65,536 bytes of UTF-8.
    #[schema(min_length = 1)]
    pub source: String,
    /// Also make it the profile new conversations of the tenant get.
    #[serde(default)]
    pub make_default: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoredVersion {
    pub name: String,
    /// The version just stored: 1 for a new name, else the previous latest + 1.
    pub version: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionSummary {
    pub version: u32,
    /// RFC 3339.
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    /// The tenant's stored versions, newest first; empty for a built-in it never stored.
    pub items: Vec<VersionSummary>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultProfileBody {
    /// A built-in profile or one the tenant stored; null goes back to the installation's
    /// default. Required, so that a forgotten field does not clear the choice.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, required = true)]
    pub name: Option<Option<String>>,
}

/// `Some(value)` for a field that is present, null included; a missing one stays `None`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DefaultProfile {
    /// The profile new conversations of the tenant now get.
    pub default: String,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if agent::profile::is_valid_name(name) {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "invalid_profile_name",
            "a profile name is 1 to 40 lower-case letters, digits, '_' or '-', starting with a letter",
        ))
    }
}

/// The tenant's choice, else the installation's.
async fn effective_default(inner: &Inner, tenant: TenantId) -> Result<String, ApiError> {
    Ok(inner
        .stores
        .data
        .default_profile(tenant)
        .await?
        .unwrap_or_else(|| inner.config.default_profile.clone()))
}

fn view(name: String, version: u32, source: String, created_at: Option<String>) -> ProfileView {
    let parsed = Profile::parse(&source).ok();
    ProfileView {
        agents: parsed
            .as_ref()
            .map(|p| p.agents.keys().cloned().collect())
            .unwrap_or_default(),
        entry: parsed.map(|p| p.entry),
        name,
        version,
        source,
        created_at,
    }
}

fn stored_view(p: StoredProfile) -> ProfileView {
    view(p.name, p.version, p.source, Some(p.created_at.to_string()))
}

fn builtin_view(name: &str) -> Option<ProfileView> {
    Profile::builtin_source(name).map(|s| view(name.to_owned(), 0, s.to_owned(), None))
}

/// The tenant's profiles and the built-ins, with the default marked.
#[utoipa::path(get, path = "/api/v1/profiles", tag = "profiles", security(("api_key" = [])),
    responses((status = 200, body = ProfileList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
) -> Result<Json<ProfileList>, ApiError> {
    let inner = inner(&state);
    let own = inner.stores.data.list_profiles(tenant).await?;
    let default = effective_default(inner, tenant).await?;
    let builtins = BUILTIN
        .into_iter()
        .filter(|b| !own.iter().any(|p| p.name == *b))
        .map(|b| ProfileSummary {
            default: b == default,
            name: b.to_owned(),
            source: ProfileOrigin::BuiltIn,
            version: 0,
            created_at: None,
        })
        .collect::<Vec<_>>();
    let items = own
        .into_iter()
        .map(|p| ProfileSummary {
            default: p.name == default,
            name: p.name,
            source: ProfileOrigin::Tenant,
            version: p.version,
            created_at: Some(p.created_at.to_string()),
        })
        .chain(builtins)
        .collect();
    Ok(Json(ProfileList { default, items }))
}

/// A profile's TOML: the tenant's latest version (or `version`), else the built-in.
#[utoipa::path(get, path = "/api/v1/profiles/{name}", params(("name" = String, Path, description = "1 to 40 of `a-z 0-9 _ -`, starting with a letter", pattern = "^[a-z][a-z0-9_-]{0,39}$"), VersionQuery), tag = "profiles", security(("api_key" = [])),
    responses((status = 200, body = ProfileView), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<VersionQuery>,
) -> Result<Json<ProfileView>, ApiError> {
    check_name(&name)?;
    if q.version == Some(0) {
        return builtin_view(&name)
            .map(Json)
            .ok_or(ApiError::NotFound { what: "profile" });
    }
    let stored = inner(&state)
        .stores
        .data
        .get_profile(tenant, &name, q.version)
        .await?;
    match stored {
        Some(p) => Ok(Json(stored_view(p))),
        None if q.version.is_none() => builtin_view(&name)
            .map(Json)
            .ok_or(ApiError::NotFound { what: "profile" }),
        None => Err(ApiError::NotFound {
            what: "profile version",
        }),
    }
}

/// Validates a profile and stores it as the tenant's next version of that name.
#[utoipa::path(put, path = "/api/v1/profiles/{name}", params(("name" = String, Path, description = "1 to 40 of `a-z 0-9 _ -`, starting with a letter", pattern = "^[a-z][a-z0-9_-]{0,39}$")), request_body = ProfileBody, tag = "profiles", security(("api_key" = [])),
    responses((status = 201, body = StoredVersion), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn save(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(name): Path<String>,
    body: Result<ApiJson<ProfileBody>, ApiError>,
) -> Result<(http::StatusCode, Json<StoredVersion>), ApiError> {
    check_name(&name)?;
    // The extractor names the crate-wide limit; this route has its own.
    let ApiJson(body) = body.map_err(|e| match e {
        ApiError::PayloadTooLarge { .. } => ApiError::PayloadTooLarge {
            limit: PROFILE_BODY_LIMIT,
        },
        e => e,
    })?;
    if body.source.len() > MAX_SOURCE_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_SOURCE_BYTES,
        });
    }
    let profile = Profile::parse(&body.source)
        .map_err(|e| ApiError::bad_request("invalid_profile", e.to_string()))?;
    if profile.name != name {
        return Err(ApiError::bad_request(
            "profile_name_mismatch",
            format!(
                "the profile is named {:?} but the path names {name:?}",
                profile.name
            ),
        ));
    }
    let data = &inner(&state).stores.data;
    let stored = data.put_profile(tenant, &name, &body.source).await?;
    if body.make_default {
        data.set_default_profile(tenant, Some(&name)).await?;
    }
    inner(&state).messaging.settings_changed(tenant);
    Ok((
        http::StatusCode::CREATED,
        Json(StoredVersion {
            name: stored.name,
            version: stored.version,
        }),
    ))
}

/// Every version the tenant stored of a profile, newest first.
#[utoipa::path(get, path = "/api/v1/profiles/{name}/versions", params(("name" = String, Path, description = "1 to 40 of `a-z 0-9 _ -`, starting with a letter", pattern = "^[a-z][a-z0-9_-]{0,39}$")), tag = "profiles", security(("api_key" = [])),
    responses((status = 200, body = VersionList), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn versions(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(name): Path<String>,
) -> Result<Json<VersionList>, ApiError> {
    check_name(&name)?;
    let rows = inner(&state)
        .stores
        .data
        .profile_versions(tenant, &name)
        .await?;
    if rows.is_empty() && Profile::builtin_source(&name).is_none() {
        return Err(ApiError::NotFound { what: "profile" });
    }
    Ok(Json(VersionList {
        items: rows
            .into_iter()
            .map(|p| VersionSummary {
                version: p.version,
                created_at: p.created_at.to_string(),
            })
            .collect(),
    }))
}

/// Chooses the profile new conversations of the tenant get (null: the installation's).
#[utoipa::path(put, path = "/api/v1/default-profile", request_body = DefaultProfileBody, tag = "profiles", security(("api_key" = [])),
    responses((status = 200, body = DefaultProfile), (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody)))]
pub async fn set_default(
    state: State<AppState>,
    AuthTenant(tenant): AuthTenant,
    ApiJson(body): ApiJson<DefaultProfileBody>,
) -> Result<Json<DefaultProfile>, ApiError> {
    let inner = inner(&state);
    let Some(name) = body.name else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "name is required: a profile name, or null for the installation's default",
        ));
    };
    let Some(name) = name else {
        inner.stores.data.set_default_profile(tenant, None).await?;
        inner.messaging.settings_changed(tenant);
        return Ok(Json(DefaultProfile {
            default: inner.config.default_profile.clone(),
        }));
    };
    check_name(&name)?;
    if !agent::profiles::exists(inner.stores.data.as_ref(), tenant, &name).await? {
        return Err(ApiError::bad_request(
            "unknown_profile",
            format!(
                "no profile {name:?}: store it first (PUT /api/v1/profiles/{name}) or use a built-in ({})",
                BUILTIN.join(", ")
            ),
        ));
    }
    inner
        .stores
        .data
        .set_default_profile(tenant, Some(&name))
        .await?;
    inner.messaging.settings_changed(tenant);
    Ok(Json(DefaultProfile { default: name }))
}
