//! A fake Hetzner Cloud API on 127.0.0.1, speaking the real wire format of
//! `https://api.hetzner.cloud/v1`, so the real client code runs in tests.
//!
//! It answers `GET /v1/{servers,volumes,firewalls,ssh_keys,networks,placement_groups,
//! load_balancers,floating_ips,primary_ips,certificates}` like the API does: the
//! `Authorization: Bearer` token checked (401 `unauthorized`), `page` (from 1) and `per_page`
//! (default 25, at most 50) honoured, the list under its plural key with
//! `meta.pagination` (`page`, `per_page`, `previous_page`, `next_page`, `last_page`,
//! `total_entries`), and the `RateLimit-*` headers on every answer. Errors carry the API's body,
//! `{"error":{"code","message","details"}}`. Rate limiting (429 with `RateLimit-Reset`),
//! slowness, malformed JSON and failures can be injected.
//!
//! The resources are `serde_json::Value`s, so tests can send exactly what the API sends,
//! unknown fields included; the builders below ([`server`], [`volume`], ...) make realistic
//! ones to tweak.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// The collections the fake serves, as `GET /v1/{collection}`.
pub const COLLECTIONS: [&str; 10] = [
    "servers",
    "volumes",
    "firewalls",
    "ssh_keys",
    "networks",
    "placement_groups",
    "load_balancers",
    "floating_ips",
    "primary_ips",
    "certificates",
];

/// The API's requests-per-hour budget, sent as `RateLimit-Limit`.
const RATE_LIMIT: u64 = 3600;

/// A request that reached the fake, as it arrived.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// The collection, such as `servers`.
    pub collection: String,
    /// The raw query string, such as `page=2&per_page=50`.
    pub query: Option<String>,
    /// Whether `Authorization: Bearer <the fake's token>` was sent.
    pub authorized: bool,
    /// The status the fake answered.
    pub status: u16,
}

/// The running fake; the server stops when this is dropped.
pub struct FakeHetzner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    token: String,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    resources: BTreeMap<String, Vec<Value>>,
    requests: Vec<FakeRequest>,
    /// The next this-many authorized requests answer 429.
    rate_limited: usize,
    delay: Duration,
    malformed: HashSet<String>,
    failures: HashMap<String, u16>,
    /// Pagination that points back at page 1, to test loop guards.
    looping: HashSet<String>,
    next_page_override: HashMap<String, Value>,
}

impl FakeHetzner {
    /// Binds `127.0.0.1:0` and serves until dropped. Requests must carry
    /// `Authorization: Bearer <token>`. Every collection starts empty, as in seed 001.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(token: &str) -> FakeHetzner {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake Hetzner API");
        let addr = listener
            .local_addr()
            .expect("local address of the fake Hetzner API");
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            state: Mutex::new(FakeState::default()),
        });
        let app = Router::new()
            .route("/v1/{collection}", get(list))
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            // The listener is already bound, so clients can connect before this task runs.
            let _ = axum::serve(listener, app).await;
        });
        FakeHetzner {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, to use as the client's API base.
    #[must_use]
    pub fn api_base(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Replaces the content of one collection (`servers`, `ssh_keys`, ...).
    ///
    /// # Panics
    /// If `collection` is not one of [`COLLECTIONS`].
    pub fn set(&self, collection: &str, items: Vec<Value>) {
        assert!(
            COLLECTIONS.contains(&collection),
            "unknown collection {collection}"
        );
        self.shared
            .lock()
            .resources
            .insert(collection.to_owned(), items);
    }

    /// Adds one resource to a collection.
    ///
    /// # Panics
    /// If `collection` is not one of [`COLLECTIONS`].
    pub fn push(&self, collection: &str, item: Value) {
        assert!(
            COLLECTIONS.contains(&collection),
            "unknown collection {collection}"
        );
        self.shared
            .lock()
            .resources
            .entry(collection.to_owned())
            .or_default()
            .push(item);
    }

    /// Every request so far, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.shared.lock().requests.clone()
    }

    /// The next `n` authenticated requests answer `429 rate_limit_exceeded`, with
    /// `RateLimit-Remaining: 0` and `RateLimit-Reset` a minute from now.
    pub fn rate_limit_next(&self, n: usize) {
        self.shared.lock().rate_limited = n;
    }

    /// Every answer waits this long before it is sent.
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }

    /// `GET /v1/{collection}` answers 200 with a body that is cut in the middle of the JSON.
    pub fn set_malformed(&self, collection: &str) {
        self.shared.lock().malformed.insert(collection.to_owned());
    }

    /// `GET /v1/{collection}` answers `status` with the API's error body (`forbidden` for 403,
    /// `service_error` for a 5xx, `invalid_input` otherwise).
    pub fn fail(&self, collection: &str, status: u16) {
        self.shared
            .lock()
            .failures
            .insert(collection.to_owned(), status);
    }

    /// `GET /v1/{collection}` answers with this `next_page` value, whatever it is.
    pub fn set_next_page(&self, collection: &str, next_page: Value) {
        self.shared
            .lock()
            .next_page_override
            .insert(collection.to_owned(), next_page);
    }

    /// `GET /v1/{collection}` always says `next_page: 1`, a pagination that never ends.
    pub fn set_looping(&self, collection: &str) {
        self.shared.lock().looping.insert(collection.to_owned());
    }
}

impl Drop for FakeHetzner {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeHetzner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHetzner")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// One answer, decided under the lock.
struct Answer {
    status: StatusCode,
    body: String,
    remaining: u64,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert("ratelimit-limit", HeaderValue::from(RATE_LIMIT));
        headers.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        headers.insert("ratelimit-reset", HeaderValue::from(unix_now() + 60));
        response
    }
}

fn error_answer(status: StatusCode, code: &str, message: &str) -> Answer {
    Answer {
        status,
        body: json!({"error": {"code": code, "message": message, "details": {}}}).to_string(),
        remaining: RATE_LIMIT - 1,
    }
}

async fn list(
    State(shared): State<Arc<Shared>>,
    Path(collection): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let authorized = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t == shared.token);
    let (answer, delay) = {
        let mut state = shared.lock();
        let answer = decide(&mut state, &collection, query.as_deref(), authorized);
        state.requests.push(FakeRequest {
            collection,
            query,
            authorized,
            status: answer.status.as_u16(),
        });
        (answer, state.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer.into_response()
}

fn decide(
    state: &mut FakeState,
    collection: &str,
    query: Option<&str>,
    authorized: bool,
) -> Answer {
    if !authorized {
        return error_answer(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        );
    }
    if !COLLECTIONS.contains(&collection) {
        return error_answer(StatusCode::NOT_FOUND, "not_found", "not found");
    }
    if state.rate_limited > 0 {
        state.rate_limited -= 1;
        let mut answer = error_answer(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "limit of 3600 requests per hour reached",
        );
        answer.remaining = 0;
        return answer;
    }
    if let Some(status) = state.failures.get(collection) {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match status.as_u16() {
            403 => "forbidden",
            s if s >= 500 => "service_error",
            _ => "invalid_input",
        };
        return error_answer(status, code, "injected failure");
    }
    let params: HashMap<String, String> = query
        .map(|q| serde_urlencoded::from_str(q).unwrap_or_default())
        .unwrap_or_default();
    let number = |name: &str, default: u64| -> Result<u64, Answer> {
        match params.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                error_answer(
                    StatusCode::BAD_REQUEST,
                    "invalid_input",
                    &format!("invalid input in field '{name}'"),
                )
            }),
        }
    };
    let page = match number("page", 1) {
        Ok(n) => n,
        Err(answer) => return answer,
    };
    let per_page = match number("per_page", 25) {
        Ok(n) => n.min(50),
        Err(answer) => return answer,
    };
    if state.malformed.contains(collection) {
        return Answer {
            status: StatusCode::OK,
            body: format!("{{\"{collection}\": [{{\"id\": 1, \"name\": "),
            remaining: RATE_LIMIT - 1,
        };
    }
    let items = state.resources.get(collection).cloned().unwrap_or_default();
    let total = items.len() as u64;
    let last_page = total.div_ceil(per_page).max(1);
    let start = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let slice: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(usize::try_from(per_page).unwrap_or(50))
        .collect();
    let next_page = if let Some(forced) = state.next_page_override.get(collection) {
        forced.clone()
    } else if state.looping.contains(collection) {
        json!(1)
    } else if page < last_page {
        json!(page + 1)
    } else {
        Value::Null
    };
    let previous_page = if page > 1 {
        json!(page - 1)
    } else {
        Value::Null
    };
    let mut body = serde_json::Map::new();
    body.insert(collection.to_owned(), Value::Array(slice));
    body.insert(
        "meta".to_owned(),
        json!({"pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": previous_page,
            "next_page": next_page,
            "last_page": last_page,
            "total_entries": total,
        }}),
    );
    Answer {
        status: StatusCode::OK,
        body: Value::Object(body).to_string(),
        remaining: RATE_LIMIT - 1,
    }
}

async fn not_found(headers: HeaderMap) -> Response {
    let authorized = headers.contains_key(header::AUTHORIZATION);
    if authorized {
        error_answer(StatusCode::NOT_FOUND, "not_found", "not found").into_response()
    } else {
        error_answer(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "unable to authenticate",
        )
        .into_response()
    }
}

const CREATED: &str = "2025-11-18T05:17:00+00:00";

fn location(name: &str) -> Value {
    let (city, zone) = match name {
        "nbg1" => ("Nuremberg", "eu-central"),
        "hel1" => ("Helsinki", "eu-central"),
        "ash" => ("Ashburn, VA", "us-east"),
        "hil" => ("Hillsboro, OR", "us-west"),
        "sin" => ("Singapore", "ap-southeast"),
        _ => ("Falkenstein", "eu-central"),
    };
    json!({
        "id": 1,
        "name": name,
        "description": format!("{city} DC Park 1"),
        "country": "DE",
        "city": city,
        "latitude": 50.47612,
        "longitude": 12.370071,
        "network_zone": zone,
    })
}

/// A running server as `GET /servers` lists it: `server_type` and `location` named, created
/// from `image` (an official image name such as `ubuntu-24.04`), backups on, no placement
/// group, no firewall, unprotected, with both `location` and the deprecated `datacenter`.
#[must_use]
pub fn server(id: u64, name: &str, server_type: &str, location_name: &str, image: &str) -> Value {
    let (flavor, version) = image.split_once('-').unwrap_or((image, ""));
    json!({
        "id": id,
        "name": name,
        "status": "running",
        "created": CREATED,
        "public_net": {
            "ipv4": {"id": id + 1, "ip": "203.0.113.10", "blocked": false, "dns_ptr": "static.10.113.0.203.clients.your-server.de"},
            "ipv6": {"id": id + 2, "ip": "2001:db8:1::/64", "blocked": false, "dns_ptr": []},
            "floating_ips": [],
            "firewalls": [],
        },
        "private_net": [],
        "server_type": {
            "id": 96,
            "name": server_type,
            "description": server_type.to_uppercase(),
            "cores": 8,
            "memory": 32.0,
            "disk": 240,
            "deprecated": false,
            "prices": [],
            "storage_type": "local",
            "cpu_type": "dedicated",
            "architecture": "x86",
        },
        "datacenter": {
            "id": 4,
            "name": format!("{location_name}-dc14"),
            "description": "Datacenter 14",
            "location": location(location_name),
        },
        "location": location(location_name),
        "image": {
            "id": 161_547_269,
            "type": "system",
            "status": "available",
            "name": image,
            "description": format!("{flavor} {version}"),
            "os_flavor": flavor,
            "os_version": version,
            "rapid_deploy": true,
            "protection": {"delete": false},
            "deprecated": null,
            "labels": {},
        },
        "iso": null,
        "rescue_enabled": false,
        "locked": false,
        "backup_window": "22-02",
        "outgoing_traffic": 123_456,
        "ingoing_traffic": 654_321,
        "included_traffic": 21_990_232_555_520_u64,
        "protection": {"delete": false, "rebuild": false},
        "labels": {},
        "volumes": [],
        "load_balancers": [],
        "primary_disk_size": 240,
        "placement_group": null,
    })
}

/// A volume of `size` GB formatted ext4, attached to `server` when given, unprotected.
#[must_use]
pub fn volume(id: u64, name: &str, size: u64, location_name: &str, server: Option<u64>) -> Value {
    json!({
        "id": id,
        "name": name,
        "size": size,
        "server": server,
        "location": location(location_name),
        "status": "available",
        "format": "ext4",
        "linux_device": format!("/dev/disk/by-id/scsi-0HC_Volume_{id}"),
        "protection": {"delete": false},
        "labels": {},
        "created": CREATED,
    })
}

/// An inbound firewall rule for one TCP port from `sources`.
#[must_use]
pub fn tcp_rule_in(port: &str, sources: &[&str]) -> Value {
    json!({
        "direction": "in",
        "protocol": "tcp",
        "port": port,
        "source_ips": sources,
        "destination_ips": [],
        "description": null,
    })
}

/// An inbound ICMP rule from `sources` (no port).
#[must_use]
pub fn icmp_rule_in(sources: &[&str]) -> Value {
    json!({
        "direction": "in",
        "protocol": "icmp",
        "port": null,
        "source_ips": sources,
        "destination_ips": [],
        "description": "ICMP (path MTU discovery, ping)",
    })
}

/// A firewall with `rules`, applied to `servers`.
#[must_use]
pub fn firewall(id: u64, name: &str, rules: Vec<Value>, servers: &[u64]) -> Value {
    let applied: Vec<Value> = servers
        .iter()
        .map(|s| json!({"type": "server", "server": {"id": s}}))
        .collect();
    json!({
        "id": id,
        "name": name,
        "labels": {},
        "created": CREATED,
        "rules": rules,
        "applied_to": applied,
    })
}

/// An SSH key holding `public_key` (OpenSSH format); the fingerprint is made up.
#[must_use]
pub fn ssh_key(id: u64, name: &str, public_key: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "fingerprint": "b7:2f:30:a0:2f:6c:58:6c:21:04:58:61:ba:06:3b:2f",
        "public_key": public_key,
        "labels": {},
        "created": CREATED,
    })
}

/// A placement group of `kind` (`spread`) holding `servers`.
#[must_use]
pub fn placement_group(id: u64, name: &str, kind: &str, servers: &[u64]) -> Value {
    json!({
        "id": id,
        "name": name,
        "type": kind,
        "servers": servers,
        "labels": {},
        "created": CREATED,
    })
}

/// A private network with one cloud subnet.
#[must_use]
pub fn network(id: u64, name: &str, ip_range: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "ip_range": ip_range,
        "subnets": [{"type": "cloud", "ip_range": ip_range, "network_zone": "eu-central", "gateway": "10.0.0.1", "vswitch_id": null}],
        "routes": [],
        "servers": [],
        "load_balancers": [],
        "protection": {"delete": false},
        "labels": {},
        "created": CREATED,
        "expose_routes_to_vswitch": false,
    })
}

/// A load balancer of `lb_type` targeting `servers`, with TCP services on 80 and 443 that
/// send the PROXY protocol (as deploy/terraform makes them), unprotected.
#[must_use]
pub fn load_balancer(
    id: u64,
    name: &str,
    lb_type: &str,
    location_name: &str,
    servers: &[u64],
) -> Value {
    let targets: Vec<Value> = servers
        .iter()
        .map(|s| json!({"type": "server", "server": {"id": s}, "use_private_ip": false, "health_status": []}))
        .collect();
    let service = |port: u16| {
        json!({
            "protocol": "tcp",
            "listen_port": port,
            "destination_port": port,
            "proxyprotocol": true,
            "health_check": {"protocol": "tcp", "port": port, "interval": 15, "timeout": 10, "retries": 3},
            "http": null,
        })
    };
    json!({
        "id": id,
        "name": name,
        "public_net": {"enabled": true, "ipv4": {"ip": "203.0.113.20", "dns_ptr": null}, "ipv6": {"ip": "2001:db8:2::1", "dns_ptr": null}},
        "private_net": [],
        "location": location(location_name),
        "load_balancer_type": {"id": 1, "name": lb_type, "description": "LB11", "max_connections": 10000, "max_services": 5, "max_targets": 25},
        "protection": {"delete": false},
        "labels": {},
        "targets": targets,
        "services": [service(80), service(443)],
        "algorithm": {"type": "round_robin"},
        "outgoing_traffic": 0,
        "ingoing_traffic": 0,
        "included_traffic": 21_990_232_555_520_u64,
        "created": CREATED,
    })
}

/// An IPv4 floating IP homed in `location_name`, unassigned.
#[must_use]
pub fn floating_ip(id: u64, name: &str, ip: &str, location_name: &str) -> Value {
    json!({
        "id": id,
        "name": name,
        "description": null,
        "ip": ip,
        "type": "ipv4",
        "server": null,
        "dns_ptr": [],
        "home_location": location(location_name),
        "blocked": false,
        "protection": {"delete": false},
        "labels": {},
        "created": CREATED,
    })
}

/// An IPv4 primary IP assigned to `server`.
#[must_use]
pub fn primary_ip(id: u64, name: &str, ip: &str, server: Option<u64>) -> Value {
    json!({
        "id": id,
        "name": name,
        "ip": ip,
        "type": "ipv4",
        "assignee_id": server,
        "assignee_type": "server",
        "auto_delete": true,
        "blocked": false,
        "dns_ptr": [],
        "datacenter": {"id": 4, "name": "fsn1-dc14", "location": location("fsn1")},
        "location": location("fsn1"),
        "protection": {"delete": false},
        "labels": {},
        "created": CREATED,
    })
}

/// A managed certificate for `domains`.
#[must_use]
pub fn certificate(id: u64, name: &str, domains: &[&str]) -> Value {
    json!({
        "id": id,
        "name": name,
        "labels": {},
        "type": "managed",
        "certificate": "-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----",
        "created": CREATED,
        "not_valid_before": CREATED,
        "not_valid_after": "2026-02-16T05:17:00+00:00",
        "domain_names": domains,
        "fingerprint": "03:c7:55:9b:2a:d1:04:17:09:f6:d0:7f:18:34:63:d4:3e:5f",
        "status": {"issuance": "completed", "renewal": "unavailable", "error": null},
        "used_by": [],
    })
}
