//! A small, read-only client for the Hetzner Cloud API (`https://api.hetzner.cloud/v1`): it lists
//! a project's servers, volumes, firewalls, SSH keys, networks, placement groups, load balancers,
//! floating IPs, primary IPs and certificates, following the API's pagination. No SDK.
//!
//! # What it models
//!
//! Only the fields `concierge infra inventory` and `concierge infra plan` read. Unknown fields
//! are ignored, and fields the API may send as `null` or leave out (labels, lists, protection)
//! fall back to their defaults, so additions to the API do not break the client. Ids are
//! [`ResourceId`] (a `u64`): Hetzner ids no longer fit in 32 bits. Servers and primary IPs carry
//! both `location` (newer API) and the deprecated `datacenter.location`; [`Server::location_name`]
//! reads whichever is there.
//!
//! # Pagination
//!
//! Every list is read with `?page=N&per_page=50` (50 is the API's maximum) and the next page is
//! `meta.pagination.next_page`, until it is `null`. A `next_page` that does not move forward,
//! or more than [`MAX_PAGES`] pages, is a [`HetznerError::Decode`], never an endless loop.
//!
//! # Errors, time limits and the token
//!
//! Every request has the client's time limit, connecting included. Failures are typed
//! ([`HetznerError`]); a `429` is returned at once with the `RateLimit-Reset` time rather than
//! retried, since the callers are one-shot commands. The token goes only into the
//! `Authorization: Bearer` header (marked sensitive): it is never in a URL, an error, a log line
//! or `Debug` output, and redirects are not followed, so the header cannot be replayed to
//! another host.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The public API endpoint.
pub const DEFAULT_API_BASE: &str = "https://api.hetzner.cloud/v1";
/// The largest `per_page` the API accepts.
pub const MAX_PER_PAGE: u32 = 50;
/// Pages read per list at most (50 000 resources), so a server that never ends pagination
/// cannot keep the client busy forever.
pub const MAX_PAGES: u32 = 1000;
/// A page of 50 resources is a few hundred KiB; anything far larger is refused.
const MAX_BODY_BYTES: usize = 8 << 20;
/// The longest free-text message from the API kept in an error.
const MAX_MESSAGE_CHARS: usize = 300;

/// A Hetzner Cloud resource id (unique per resource type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResourceId(pub u64);

impl std::fmt::Display for ResourceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The kinds of resource the client lists, in the order of the inventory table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Servers,
    Volumes,
    Firewalls,
    SshKeys,
    Networks,
    PlacementGroups,
    LoadBalancers,
    FloatingIps,
    PrimaryIps,
    Certificates,
}

impl ResourceKind {
    pub const ALL: [Self; 10] = [
        Self::Servers,
        Self::Volumes,
        Self::Firewalls,
        Self::SshKeys,
        Self::Networks,
        Self::PlacementGroups,
        Self::LoadBalancers,
        Self::FloatingIps,
        Self::PrimaryIps,
        Self::Certificates,
    ];

    /// The list path under the API base, which is also the key of the list in the response.
    #[must_use]
    pub fn path(self) -> &'static str {
        match self {
            Self::Servers => "servers",
            Self::Volumes => "volumes",
            Self::Firewalls => "firewalls",
            Self::SshKeys => "ssh_keys",
            Self::Networks => "networks",
            Self::PlacementGroups => "placement_groups",
            Self::LoadBalancers => "load_balancers",
            Self::FloatingIps => "floating_ips",
            Self::PrimaryIps => "primary_ips",
            Self::Certificates => "certificates",
        }
    }

    /// A human label, as in `hcloud` and the inventory table.
    #[must_use]
    pub fn label(self) -> &'static str {
        match self {
            Self::Servers => "Servers",
            Self::Volumes => "Volumes",
            Self::Firewalls => "Firewalls",
            Self::SshKeys => "SSH Keys",
            Self::Networks => "Networks",
            Self::PlacementGroups => "Placement Groups",
            Self::LoadBalancers => "Load Balancers",
            Self::FloatingIps => "Floating IPs",
            Self::PrimaryIps => "Primary IPs",
            Self::Certificates => "Certificates",
        }
    }
}

/// Why a call to the API failed. `Display` never includes the token.
#[derive(Debug, thiserror::Error)]
pub enum HetznerError {
    /// The client cannot be built from these settings (base URL, token shape, time limit).
    #[error("invalid Hetzner Cloud client settings: {0}")]
    InvalidConfig(String),
    /// `401`: the token is wrong, revoked, or belongs to no project.
    #[error(
        "the Hetzner Cloud API refused the token (HTTP 401 unauthorized): it is wrong, revoked, \
         or was deleted from the project"
    )]
    Unauthorized,
    /// `403`: the token may not do this.
    #[error("the Hetzner Cloud API forbids reading {path} with this token (HTTP 403{}){}", code_part(.code.as_deref()), message_part(.message))]
    Forbidden {
        path: String,
        code: Option<String>,
        message: String,
    },
    /// `429`: the project's request budget is spent until `reset_at`.
    #[error("the Hetzner Cloud API rate limit is exhausted (HTTP 429){}", reset_part(.reset_at))]
    RateLimited {
        /// `RateLimit-Reset`: when the budget is refilled, in Unix seconds.
        reset_at: Option<u64>,
    },
    /// `404`: usually a wrong API base URL.
    #[error("{path} was not found on the Hetzner Cloud API (HTTP 404): is the API base URL right?")]
    NotFound { path: String },
    /// A `5xx`: the API is failing or in maintenance.
    #[error("the Hetzner Cloud API failed on {path} (HTTP {status}{}){}", code_part(.code.as_deref()), message_part(.message))]
    Server {
        path: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// Another `4xx`, with the API's error `code` and `message`.
    #[error("the Hetzner Cloud API rejected the request for {path} (HTTP {status}{}){}", code_part(.code.as_deref()), message_part(.message))]
    Rejected {
        path: String,
        status: u16,
        code: Option<String>,
        message: String,
    },
    /// No complete answer within the client's time limit.
    #[error("the Hetzner Cloud API did not answer {path} within {} ms", .timeout.as_millis())]
    Timeout { path: String, timeout: Duration },
    /// The connection failed (DNS, refused, TLS, reset).
    #[error("cannot reach the Hetzner Cloud API for {path}: {detail}")]
    Transport { path: String, detail: String },
    /// A 2xx answer that is not what the API sends (bad JSON, missing list, broken pagination).
    #[error("unexpected answer from the Hetzner Cloud API for {path}: {detail}")]
    Decode { path: String, detail: String },
}

impl HetznerError {
    /// How long to wait before the rate limit allows requests again, seen from `now`.
    #[must_use]
    pub fn retry_after(&self, now: SystemTime) -> Option<Duration> {
        let Self::RateLimited {
            reset_at: Some(reset),
        } = self
        else {
            return None;
        };
        let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
        Some(Duration::from_secs(reset.saturating_sub(now)))
    }
}

fn code_part(code: Option<&str>) -> String {
    code.map(|c| format!(", code {c}")).unwrap_or_default()
}

fn message_part(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

fn reset_part(reset_at: &Option<u64>) -> String {
    reset_at
        .map(|t| format!("; it resets at Unix time {t}"))
        .unwrap_or_default()
}

/// A read-only Hetzner Cloud API client for one project (tokens are per project).
#[derive(Debug, Clone)]
pub struct HetznerClient {
    http: reqwest::Client,
    base: String,
    token: SecretString,
    timeout: Duration,
}

impl HetznerClient {
    /// Builds a client for `base_url` (such as [`DEFAULT_API_BASE`], without a trailing slash
    /// needed) that gives every request `timeout`, connecting included.
    ///
    /// # Errors
    /// [`HetznerError::InvalidConfig`] when the base URL is not `http(s)://...`, the token is
    /// empty or has characters a header cannot carry (whitespace included), the time limit is
    /// zero, or the HTTP client cannot be built (for example with no rustls crypto provider).
    pub fn new(
        base_url: &str,
        token: SecretString,
        timeout: Duration,
    ) -> Result<Self, HetznerError> {
        let base = base_url.trim().trim_end_matches('/');
        if !(base.starts_with("https://") || base.starts_with("http://")) || base.contains('?') {
            return Err(HetznerError::InvalidConfig(
                "the API base URL must start with https:// (or http://) and have no query".into(),
            ));
        }
        let secret = token.expose_secret().trim();
        if secret.is_empty() {
            return Err(HetznerError::InvalidConfig("the API token is empty".into()));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(HetznerError::InvalidConfig(
                "the API token has characters an HTTP header cannot carry (value not shown)".into(),
            ));
        }
        let token = SecretString::from(secret);
        if timeout.is_zero() {
            return Err(HetznerError::InvalidConfig(
                "the time limit must be positive".into(),
            ));
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            // A bearer token must never follow a redirect to another host.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("concierge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| {
                HetznerError::InvalidConfig(format!(
                    "cannot build the HTTP client: {}",
                    error_chain(&err)
                ))
            })?;
        Ok(Self {
            http,
            base: base.to_owned(),
            token,
            timeout,
        })
    }

    /// `GET /servers`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn servers(&self) -> Result<Vec<Server>, HetznerError> {
        self.list_all(ResourceKind::Servers).await
    }

    /// `GET /volumes`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn volumes(&self) -> Result<Vec<Volume>, HetznerError> {
        self.list_all(ResourceKind::Volumes).await
    }

    /// `GET /firewalls`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn firewalls(&self) -> Result<Vec<Firewall>, HetznerError> {
        self.list_all(ResourceKind::Firewalls).await
    }

    /// `GET /ssh_keys`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn ssh_keys(&self) -> Result<Vec<SshKey>, HetznerError> {
        self.list_all(ResourceKind::SshKeys).await
    }

    /// `GET /networks`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn networks(&self) -> Result<Vec<Network>, HetznerError> {
        self.list_all(ResourceKind::Networks).await
    }

    /// `GET /placement_groups`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn placement_groups(&self) -> Result<Vec<PlacementGroup>, HetznerError> {
        self.list_all(ResourceKind::PlacementGroups).await
    }

    /// `GET /load_balancers`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn load_balancers(&self) -> Result<Vec<LoadBalancer>, HetznerError> {
        self.list_all(ResourceKind::LoadBalancers).await
    }

    /// `GET /floating_ips`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn floating_ips(&self) -> Result<Vec<FloatingIp>, HetznerError> {
        self.list_all(ResourceKind::FloatingIps).await
    }

    /// `GET /primary_ips`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn primary_ips(&self) -> Result<Vec<PrimaryIp>, HetznerError> {
        self.list_all(ResourceKind::PrimaryIps).await
    }

    /// `GET /certificates`, every page.
    ///
    /// # Errors
    /// Any [`HetznerError`] of the requests.
    pub async fn certificates(&self) -> Result<Vec<Certificate>, HetznerError> {
        self.list_all(ResourceKind::Certificates).await
    }

    /// Every resource of the project, the lists read concurrently.
    ///
    /// # Errors
    /// The first [`HetznerError`] of any list; the others are abandoned.
    pub async fn inventory(&self) -> Result<Inventory, HetznerError> {
        let (
            servers,
            volumes,
            firewalls,
            ssh_keys,
            networks,
            placement_groups,
            load_balancers,
            floating_ips,
            primary_ips,
            certificates,
        ) = tokio::try_join!(
            self.servers(),
            self.volumes(),
            self.firewalls(),
            self.ssh_keys(),
            self.networks(),
            self.placement_groups(),
            self.load_balancers(),
            self.floating_ips(),
            self.primary_ips(),
            self.certificates(),
        )?;
        Ok(Inventory {
            servers,
            volumes,
            firewalls,
            ssh_keys,
            networks,
            placement_groups,
            load_balancers,
            floating_ips,
            primary_ips,
            certificates,
        })
    }

    /// Reads every page of one list.
    async fn list_all<T: DeserializeOwned>(
        &self,
        kind: ResourceKind,
    ) -> Result<Vec<T>, HetznerError> {
        let key = kind.path();
        let path = format!("/{key}");
        let mut items = Vec::new();
        let mut page: u64 = 1;
        for _ in 0..MAX_PAGES {
            let body = self.get(&path, page).await?;
            let decode = |detail: String| HetznerError::Decode {
                path: path.clone(),
                detail,
            };
            let mut value: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|err| decode(format!("page {page} is not JSON: {err}")))?;
            let Some(serde_json::Value::Array(list)) =
                value.get_mut(key).map(serde_json::Value::take)
            else {
                return Err(decode(format!("page {page} has no `{key}` list")));
            };
            for (index, item) in list.into_iter().enumerate() {
                items.push(serde_json::from_value(item).map_err(|err| {
                    decode(format!(
                        "item {index} of page {page} is not readable: {err}"
                    ))
                })?);
            }
            // No `meta` (or a null `next_page`) means this was the last page; anything else
            // that is not a page number is an error, never a silently short listing.
            let next = match value.pointer("/meta/pagination/next_page") {
                None | Some(serde_json::Value::Null) => None,
                Some(n) => Some(n.as_u64().ok_or_else(|| {
                    decode(format!(
                        "page {page} has a next_page that is not a page number: {n}"
                    ))
                })?),
            };
            match next {
                None => return Ok(items),
                Some(next) if next > page => page = next,
                Some(next) => {
                    return Err(decode(format!(
                        "pagination does not move forward (page {page}, next_page {next})"
                    )));
                }
            }
        }
        Err(HetznerError::Decode {
            path,
            detail: format!("more than {MAX_PAGES} pages"),
        })
    }

    /// One `GET`, returning the body of a 2xx answer and a typed error otherwise.
    async fn get(&self, path: &str, page: u64) -> Result<Vec<u8>, HetznerError> {
        let url = format!("{}{path}?page={page}&per_page={MAX_PER_PAGE}", self.base);
        tracing::debug!(path, page, "Hetzner Cloud API request");
        let response = self
            .http
            .get(&url)
            .bearer_auth(self.token.expose_secret())
            .send()
            .await
            .map_err(|err| self.send_error(path, &err))?;
        let status = response.status();
        let reset_at = header_u64(response.headers(), "ratelimit-reset");
        if let Some(remaining) = header_u64(response.headers(), "ratelimit-remaining") {
            tracing::debug!(path, remaining, "Hetzner Cloud API rate limit");
        }
        let body = response
            .bytes()
            .await
            .map_err(|err| self.send_error(path, &err))?;
        if body.len() > MAX_BODY_BYTES {
            return Err(HetznerError::Decode {
                path: path.to_owned(),
                detail: format!(
                    "a page of {} bytes is over the {MAX_BODY_BYTES}-byte limit",
                    body.len()
                ),
            });
        }
        if status.is_success() {
            return Ok(body.to_vec());
        }
        let error = ApiErrorBody::parse(&body);
        let path = path.to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED => HetznerError::Unauthorized,
            StatusCode::FORBIDDEN => HetznerError::Forbidden {
                path,
                code: error.code,
                message: error.message,
            },
            StatusCode::NOT_FOUND => HetznerError::NotFound { path },
            StatusCode::TOO_MANY_REQUESTS => HetznerError::RateLimited { reset_at },
            s if s.is_server_error() => HetznerError::Server {
                path,
                status: s.as_u16(),
                code: error.code,
                message: error.message,
            },
            s => HetznerError::Rejected {
                path,
                status: s.as_u16(),
                code: error.code,
                message: error.message,
            },
        })
    }

    fn send_error(&self, path: &str, err: &reqwest::Error) -> HetznerError {
        if err.is_timeout() {
            HetznerError::Timeout {
                path: path.to_owned(),
                timeout: self.timeout,
            }
        } else {
            HetznerError::Transport {
                path: path.to_owned(),
                detail: error_chain(err),
            }
        }
    }
}

/// A reqwest error and its sources, without the URL.
fn error_chain(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        // Display appends " for url (...)"; the path is reported separately.
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut current = std::error::Error::source(err);
    while let Some(e) = current {
        text.push_str(": ");
        text.push_str(&e.to_string());
        current = e.source();
    }
    text
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// The API's error body: `{"error":{"code":"...","message":"...","details":{...}}}`.
#[derive(Default)]
struct ApiErrorBody {
    code: Option<String>,
    message: String,
}

impl ApiErrorBody {
    fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Outer {
            error: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            code: Option<String>,
            #[serde(default)]
            message: Option<String>,
        }
        let Ok(outer) = serde_json::from_slice::<Outer>(body) else {
            return Self::default();
        };
        let message: String = outer
            .error
            .message
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_MESSAGE_CHARS)
            .collect();
        Self {
            code: outer
                .error
                .code
                .filter(|c| !c.is_empty() && c.len() <= 64 && !c.contains(char::is_control)),
            message,
        }
    }
}

/// `null` reads as the type's default, so `"labels": null` or `"servers": null` are no error.
fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// Everything in a project, one list per kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Inventory {
    pub servers: Vec<Server>,
    pub volumes: Vec<Volume>,
    pub firewalls: Vec<Firewall>,
    pub ssh_keys: Vec<SshKey>,
    pub networks: Vec<Network>,
    pub placement_groups: Vec<PlacementGroup>,
    pub load_balancers: Vec<LoadBalancer>,
    pub floating_ips: Vec<FloatingIp>,
    pub primary_ips: Vec<PrimaryIp>,
    pub certificates: Vec<Certificate>,
}

impl Inventory {
    /// The `(id, name)` of every resource of one kind, in the API's order.
    #[must_use]
    pub fn names(&self, kind: ResourceKind) -> Vec<(ResourceId, &str)> {
        fn pairs<T>(items: &[T], f: impl Fn(&T) -> (ResourceId, &str)) -> Vec<(ResourceId, &str)> {
            items.iter().map(f).collect()
        }
        match kind {
            ResourceKind::Servers => pairs(&self.servers, |r| (r.id, r.name.as_str())),
            ResourceKind::Volumes => pairs(&self.volumes, |r| (r.id, r.name.as_str())),
            ResourceKind::Firewalls => pairs(&self.firewalls, |r| (r.id, r.name.as_str())),
            ResourceKind::SshKeys => pairs(&self.ssh_keys, |r| (r.id, r.name.as_str())),
            ResourceKind::Networks => pairs(&self.networks, |r| (r.id, r.name.as_str())),
            ResourceKind::PlacementGroups => {
                pairs(&self.placement_groups, |r| (r.id, r.name.as_str()))
            }
            ResourceKind::LoadBalancers => pairs(&self.load_balancers, |r| (r.id, r.name.as_str())),
            ResourceKind::FloatingIps => pairs(&self.floating_ips, |r| {
                (r.id, r.name.as_deref().unwrap_or(r.ip.as_str()))
            }),
            ResourceKind::PrimaryIps => pairs(&self.primary_ips, |r| (r.id, r.name.as_str())),
            ResourceKind::Certificates => pairs(&self.certificates, |r| (r.id, r.name.as_str())),
        }
    }

    /// How many resources of one kind the project has.
    #[must_use]
    pub fn count(&self, kind: ResourceKind) -> usize {
        self.names(kind).len()
    }

    /// How many resources the project has in all.
    #[must_use]
    pub fn total(&self) -> usize {
        ResourceKind::ALL.iter().map(|k| self.count(*k)).sum()
    }
}

/// A location (`fsn1`, `nbg1`, `hel1`, `ash`, `hil`, `sin`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    pub name: String,
    #[serde(default)]
    pub network_zone: Option<String>,
}

/// A datacenter (`fsn1-dc14`); deprecated by the API in favour of `location`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Datacenter {
    pub name: String,
    #[serde(default)]
    pub location: Option<Location>,
}

/// Protection against deletion (and, for servers, rebuilds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protection {
    #[serde(default)]
    pub delete: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebuild: Option<bool>,
}

/// `{"id": ...}`, as in a firewall's or load balancer's server target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: ResourceId,
}

/// A label selector target (`{"selector": "role=app"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelSelector {
    pub selector: String,
}

/// A public address of a server or load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicIp {
    pub ip: String,
}

/// A server type (`ccx33`) with its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerType {
    pub name: String,
    #[serde(default)]
    pub cores: Option<u32>,
    /// GB of memory.
    #[serde(default)]
    pub memory: Option<f64>,
    /// GB of local disk.
    #[serde(default)]
    pub disk: Option<u64>,
}

/// The image a server was created from (`ubuntu-24.04`); snapshots have no `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
}

/// A firewall attached to a server's public interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedFirewall {
    pub id: ResourceId,
    #[serde(default)]
    pub status: Option<String>,
}

/// A server's public interface.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerPublicNet {
    #[serde(default)]
    pub ipv4: Option<PublicIp>,
    #[serde(default)]
    pub ipv6: Option<PublicIp>,
    #[serde(default, deserialize_with = "null_default")]
    pub firewalls: Vec<AppliedFirewall>,
    #[serde(default, deserialize_with = "null_default")]
    pub floating_ips: Vec<ResourceId>,
}

/// A server's address in a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrivateNet {
    pub network: ResourceId,
    #[serde(default)]
    pub ip: Option<String>,
}

/// A server (`GET /servers`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Server {
    pub id: ResourceId,
    pub name: String,
    /// `running`, `initializing`, `starting`, `stopping`, `off`, `deleting`, `migrating`,
    /// `rebuilding`, `unknown`.
    pub status: String,
    pub server_type: ServerType,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default)]
    pub image: Option<Image>,
    /// Set when backups are enabled (`22-02`), `null` otherwise.
    #[serde(default)]
    pub backup_window: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "null_default")]
    pub public_net: ServerPublicNet,
    #[serde(default, deserialize_with = "null_default")]
    pub private_net: Vec<PrivateNet>,
    #[serde(default)]
    pub placement_group: Option<PlacementGroup>,
    #[serde(default, deserialize_with = "null_default")]
    pub volumes: Vec<ResourceId>,
    #[serde(default, deserialize_with = "null_default")]
    pub load_balancers: Vec<ResourceId>,
    #[serde(default)]
    pub created: Option<String>,
}

impl Server {
    /// The location's name, from `location` or else the deprecated `datacenter.location`.
    #[must_use]
    pub fn location_name(&self) -> Option<&str> {
        self.location
            .as_ref()
            .or_else(|| self.datacenter.as_ref()?.location.as_ref())
            .map(|l| l.name.as_str())
    }

    /// Whether Hetzner backups are on (a backup window is set).
    #[must_use]
    pub fn backups_enabled(&self) -> bool {
        self.backup_window.is_some()
    }

    /// The name of the image it was created from, when it has one.
    #[must_use]
    pub fn image_name(&self) -> Option<&str> {
        self.image.as_ref()?.name.as_deref()
    }
}

/// A block-storage volume (`GET /volumes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub id: ResourceId,
    pub name: String,
    /// GB.
    pub size: u64,
    /// The server it is attached to.
    #[serde(default)]
    pub server: Option<ResourceId>,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub status: Option<String>,
    /// The filesystem it was formatted with at creation (`ext4`, `xfs`), if any.
    #[serde(default)]
    pub format: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub linux_device: Option<String>,
}

/// One firewall rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallRule {
    /// `in` or `out`.
    pub direction: String,
    /// `tcp`, `udp`, `icmp`, `esp`, `gre`.
    pub protocol: String,
    /// `"22"`, a range `"8000-8100"`, or none (all ports / not applicable).
    #[serde(default)]
    pub port: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub source_ips: Vec<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub destination_ips: Vec<String>,
    #[serde(default)]
    pub description: Option<String>,
}

/// What a firewall is applied to: a server or a label selector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirewallTarget {
    /// `server` or `label_selector`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub server: Option<IdRef>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
}

/// A firewall (`GET /firewalls`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Firewall {
    pub id: ResourceId,
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub rules: Vec<FirewallRule>,
    #[serde(default, deserialize_with = "null_default")]
    pub applied_to: Vec<FirewallTarget>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

impl Firewall {
    /// The ids of the servers it is applied to directly (label selectors not resolved).
    #[must_use]
    pub fn server_ids(&self) -> Vec<ResourceId> {
        self.applied_to
            .iter()
            .filter_map(|t| t.server.map(|s| s.id))
            .collect()
    }
}

/// An SSH public key (`GET /ssh_keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshKey {
    pub id: ResourceId,
    pub name: String,
    #[serde(default)]
    pub fingerprint: String,
    /// OpenSSH format: `ssh-ed25519 AAAA... comment`.
    #[serde(default)]
    pub public_key: String,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

/// A subnet of a private network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    #[serde(default)]
    pub ip_range: Option<String>,
    #[serde(default)]
    pub network_zone: Option<String>,
}

/// A private network (`GET /networks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub id: ResourceId,
    pub name: String,
    #[serde(default)]
    pub ip_range: String,
    #[serde(default, deserialize_with = "null_default")]
    pub subnets: Vec<Subnet>,
    #[serde(default, deserialize_with = "null_default")]
    pub servers: Vec<ResourceId>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

/// A placement group (`GET /placement_groups`); `spread` keeps its servers on different hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementGroup {
    pub id: ResourceId,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub servers: Vec<ResourceId>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

/// A load balancer or server type name (`lb11`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeName {
    pub name: String,
}

/// A load balancer's public interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerPublicNet {
    #[serde(default)]
    pub enabled: bool,
    #[serde(default)]
    pub ipv4: Option<PublicIp>,
    #[serde(default)]
    pub ipv6: Option<PublicIp>,
}

/// A load balancer target: a server, a label selector or an IP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerTarget {
    /// `server`, `label_selector` or `ip`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub server: Option<IdRef>,
    #[serde(default)]
    pub label_selector: Option<LabelSelector>,
}

/// A load balancer service (a listening port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerService {
    /// `tcp`, `http` or `https`.
    pub protocol: String,
    pub listen_port: u16,
    #[serde(default)]
    pub destination_port: Option<u16>,
    /// Whether the PROXY protocol header is sent to the targets.
    #[serde(default)]
    pub proxyprotocol: bool,
}

/// A load balancer (`GET /load_balancers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancer {
    pub id: ResourceId,
    pub name: String,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub load_balancer_type: Option<TypeName>,
    #[serde(default)]
    pub public_net: Option<LoadBalancerPublicNet>,
    #[serde(default, deserialize_with = "null_default")]
    pub targets: Vec<LoadBalancerTarget>,
    #[serde(default, deserialize_with = "null_default")]
    pub services: Vec<LoadBalancerService>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

impl LoadBalancer {
    /// The ids of the servers it targets directly (label selectors not resolved).
    #[must_use]
    pub fn server_ids(&self) -> Vec<ResourceId> {
        self.targets
            .iter()
            .filter_map(|t| t.server.map(|s| s.id))
            .collect()
    }
}

/// A floating IP (`GET /floating_ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FloatingIp {
    pub id: ResourceId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub ip: String,
    /// `ipv4` or `ipv6`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub server: Option<ResourceId>,
    #[serde(default)]
    pub home_location: Option<Location>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

/// A primary IP (`GET /primary_ips`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryIp {
    pub id: ResourceId,
    pub name: String,
    pub ip: String,
    /// `ipv4` or `ipv6`.
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub assignee_id: Option<ResourceId>,
    #[serde(default)]
    pub assignee_type: Option<String>,
    #[serde(default)]
    pub auto_delete: bool,
    #[serde(default)]
    pub location: Option<Location>,
    #[serde(default)]
    pub datacenter: Option<Datacenter>,
    #[serde(default, deserialize_with = "null_default")]
    pub protection: Protection,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

impl PrimaryIp {
    /// The location's name, from `location` or else the deprecated `datacenter.location`.
    #[must_use]
    pub fn location_name(&self) -> Option<&str> {
        self.location
            .as_ref()
            .or_else(|| self.datacenter.as_ref()?.location.as_ref())
            .map(|l| l.name.as_str())
    }
}

/// A TLS certificate for load balancers (`GET /certificates`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub id: ResourceId,
    pub name: String,
    /// `uploaded` or `managed` (Let's Encrypt through Hetzner).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub domain_names: Vec<String>,
    /// RFC 3339.
    #[serde(default)]
    pub not_valid_after: Option<String>,
    #[serde(default, deserialize_with = "null_default")]
    pub labels: BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed_without_the_token() {
        let err = HetznerError::RateLimited {
            reset_at: Some(1_700_000_060),
        };
        assert_eq!(
            err.to_string(),
            "the Hetzner Cloud API rate limit is exhausted (HTTP 429); it resets at Unix time 1700000060"
        );
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(err.retry_after(now), Some(Duration::from_secs(60)));
        let err = HetznerError::Server {
            path: "/servers".into(),
            status: 503,
            code: Some("maintenance".into()),
            message: "down for maintenance".into(),
        };
        assert_eq!(
            err.to_string(),
            "the Hetzner Cloud API failed on /servers (HTTP 503, code maintenance): down for maintenance"
        );
    }

    #[test]
    fn the_client_refuses_tokens_a_header_cannot_carry() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        for bad in ["", "   ", "abc def", "abc\ndef", "t\u{e9}st"] {
            let err = HetznerClient::new(
                DEFAULT_API_BASE,
                SecretString::from(bad),
                Duration::from_secs(1),
            )
            .expect_err(bad);
            assert!(matches!(err, HetznerError::InvalidConfig(_)), "{bad:?}");
            if bad.len() > 3 {
                assert!(!err.to_string().contains(bad.trim()), "{err}");
            }
        }
        let err = HetznerClient::new("ftp://x", SecretString::from("t"), Duration::from_secs(1))
            .expect_err("scheme");
        assert!(matches!(err, HetznerError::InvalidConfig(_)));
        let err = HetznerClient::new(DEFAULT_API_BASE, SecretString::from("t"), Duration::ZERO)
            .expect_err("zero timeout");
        assert!(matches!(err, HetznerError::InvalidConfig(_)));
    }

    #[test]
    fn an_error_body_is_read_tolerantly() {
        let body =
            br#"{"error":{"code":"forbidden","message":"insufficient\npermissions","details":{}}}"#;
        let parsed = ApiErrorBody::parse(body);
        assert_eq!(parsed.code.as_deref(), Some("forbidden"));
        assert_eq!(parsed.message, "insufficientpermissions");
        let parsed = ApiErrorBody::parse(b"<html>bad gateway</html>");
        assert_eq!(parsed.code, None);
        assert_eq!(parsed.message, "");
    }

    #[test]
    fn a_server_reads_its_location_from_either_field_and_ignores_unknown_ones() {
        let server: Server = serde_json::from_value(serde_json::json!({
            "id": 4_503_599_627_370_497_u64,
            "name": "web",
            "status": "running",
            "server_type": {"name": "ccx33", "cores": 8, "memory": 32.0, "disk": 240, "new": 1},
            "datacenter": {"name": "fsn1-dc14", "location": {"name": "fsn1"}},
            "image": null,
            "backup_window": null,
            "labels": null,
            "public_net": {"ipv4": null, "ipv6": null, "firewalls": null},
            "placement_group": null,
            "something_new": {"nested": true}
        }))
        .expect("server");
        assert_eq!(server.id, ResourceId(4_503_599_627_370_497));
        assert_eq!(server.location_name(), Some("fsn1"));
        assert!(!server.backups_enabled());
        assert_eq!(server.image_name(), None);
        assert!(server.labels.is_empty());
    }
}
