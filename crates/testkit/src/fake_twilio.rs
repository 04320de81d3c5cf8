//! A fake Twilio Messages REST API on 127.0.0.1, speaking the real wire format, so the real
//! client code runs in tests.
//!
//! It answers `POST /2010-04-01/Accounts/{AccountSid}/Messages.json` like Twilio does: Basic
//! auth checked (401, code 20003), account SID in the path checked (404, code 20404), `To`,
//! `From` and `Body` required (400, codes 21604, 21603, 21602), opted-out recipients refused
//! (400, code 21610), and 201 with a Message resource otherwise. Failures and slowness can be
//! injected for the next requests.

use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// A message the fake accepted.
#[derive(Debug, Clone)]
pub struct FakeSms {
    pub sid: String,
    pub from: String,
    pub to: String,
    pub body: String,
    pub status_callback: Option<String>,
    pub received_at: Instant,
}

/// Any request that reached the Messages endpoint, accepted or not, as it arrived.
#[derive(Debug, Clone)]
pub struct FakeRequest {
    /// The account SID in the path.
    pub path_account_sid: String,
    /// `(user, password)` from the `Authorization: Basic` header, if it could be decoded.
    pub basic_auth: Option<(String, String)>,
    pub content_type: Option<String>,
    /// The form fields in the order they were sent; repeated keys are kept.
    pub form: Vec<(String, String)>,
    /// The HTTP status the fake answered.
    pub status: u16,
    pub received_at: Instant,
}

/// The running fake; the server stops when this is dropped.
pub struct FakeTwilio {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

struct Shared {
    account_sid: String,
    auth_token: String,
    state: Mutex<FakeState>,
    sent_changed: Notify,
    sid_counter: AtomicU64,
}

#[derive(Default)]
struct FakeState {
    sent: Vec<FakeSms>,
    requests: Vec<FakeRequest>,
    failures: VecDeque<Failure>,
    opted_out: HashSet<String>,
    delay: Duration,
    retry_after: Option<u64>,
}

#[derive(Clone, Copy)]
struct Failure {
    status: u16,
    code: Option<i64>,
}

impl FakeTwilio {
    /// Binds `127.0.0.1:0` and serves until dropped. Requests must authenticate as
    /// `account_sid:auth_token`.
    ///
    /// # Panics
    /// If no local port can be bound.
    pub async fn start(account_sid: &str, auth_token: &str) -> FakeTwilio {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the fake Twilio");
        let addr = listener
            .local_addr()
            .expect("local address of the fake Twilio");
        let shared = Arc::new(Shared {
            account_sid: account_sid.to_owned(),
            auth_token: auth_token.to_owned(),
            state: Mutex::new(FakeState::default()),
            sent_changed: Notify::new(),
            sid_counter: AtomicU64::new(0),
        });
        let app = Router::new()
            .route(
                "/2010-04-01/Accounts/{account_sid}/Messages.json",
                post(create_message),
            )
            .fallback(not_found)
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            // The listener is already bound, so clients can connect before this task runs.
            let _ = axum::serve(listener, app).await;
        });
        FakeTwilio {
            addr,
            shared,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, to use as the client's API base.
    #[must_use]
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every accepted message, in order.
    #[must_use]
    pub fn sent(&self) -> Vec<FakeSms> {
        self.shared.lock().sent.clone()
    }

    /// Every request to the Messages endpoint, accepted or not, in order.
    #[must_use]
    pub fn requests(&self) -> Vec<FakeRequest> {
        self.shared.lock().requests.clone()
    }

    /// The next `n` requests answer `status` with a Twilio JSON error body carrying `code`,
    /// before any other check. Calls queue up behind earlier ones.
    pub fn fail_next(&self, n: usize, status: u16, code: Option<i64>) {
        let mut state = self.shared.lock();
        state
            .failures
            .extend(std::iter::repeat_n(Failure { status, code }, n));
    }

    /// Injected failures (see [`FakeTwilio::fail_next`]) carry `Retry-After: secs` when set.
    pub fn set_retry_after(&self, secs: Option<u64>) {
        self.shared.lock().retry_after = secs;
    }

    /// Sending to this number answers 400 with code 21610, as after the recipient texted STOP.
    pub fn opt_out(&self, to: &str) {
        self.shared.lock().opted_out.insert(to.to_owned());
    }

    /// Every answer waits this long before it is sent. The request is processed first, as a
    /// slow Twilio would: a client that times out may still have sent its message.
    pub fn set_delay(&self, d: Duration) {
        self.shared.lock().delay = d;
    }

    /// Waits until at least `n` messages were accepted or `timeout` passed, and returns all
    /// accepted messages (fewer than `n` on timeout).
    pub async fn wait_for_sent(&self, n: usize, timeout: Duration) -> Vec<FakeSms> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.shared.sent_changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a message accepted in between still wakes us.
            notified.as_mut().enable();
            {
                let state = self.shared.lock();
                if state.sent.len() >= n {
                    return state.sent.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.sent();
            }
        }
    }
}

impl Drop for FakeTwilio {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for FakeTwilio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeTwilio")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_message_sid(&self) -> String {
        let n = self.sid_counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u64(n);
        format!("SM{:016x}{:016x}", hasher.finish(), n)
    }
}

async fn create_message(
    State(shared): State<Arc<Shared>>,
    Path(path_account_sid): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form: Vec<(String, String)> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let basic_auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(decode_basic_auth);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);

    let (response, delay) = {
        let mut state = shared.lock();
        let response = decide(
            &shared,
            &mut state,
            &path_account_sid,
            basic_auth.as_ref(),
            &form,
        );
        state.requests.push(FakeRequest {
            path_account_sid,
            basic_auth,
            content_type,
            form,
            status: response.status.as_u16(),
            received_at: Instant::now(),
        });
        (response, state.delay)
    };
    if response.status == StatusCode::CREATED {
        shared.sent_changed.notify_waiters();
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    response.into_response()
}

/// The answer to one request, decided under the lock; a 201 records the message.
struct Answer {
    status: StatusCode,
    body: serde_json::Value,
    retry_after: Option<u64>,
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

fn decide(
    shared: &Shared,
    state: &mut FakeState,
    path_account_sid: &str,
    basic_auth: Option<&(String, String)>,
    form: &[(String, String)],
) -> Answer {
    if let Some(failure) = state.failures.pop_front() {
        let status = StatusCode::from_u16(failure.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut answer = error_answer(status, failure.code, "Injected failure");
        answer.retry_after = state.retry_after;
        return answer;
    }
    let authenticated = basic_auth
        .is_some_and(|(user, pass)| *user == shared.account_sid && *pass == shared.auth_token);
    if !authenticated {
        return error_answer(StatusCode::UNAUTHORIZED, Some(20003), "Authenticate");
    }
    if path_account_sid != shared.account_sid {
        return error_answer(
            StatusCode::NOT_FOUND,
            Some(20404),
            &format!(
                "The requested resource /2010-04-01/Accounts/{path_account_sid}/Messages.json was not found"
            ),
        );
    }
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let Some(to) = field("To") else {
        return error_answer(
            StatusCode::BAD_REQUEST,
            Some(21604),
            "A 'To' phone number is required.",
        );
    };
    let Some(from) = field("From") else {
        return error_answer(
            StatusCode::BAD_REQUEST,
            Some(21603),
            "A 'From' phone number is required.",
        );
    };
    let Some(body) = field("Body") else {
        return error_answer(
            StatusCode::BAD_REQUEST,
            Some(21602),
            "Message body is required.",
        );
    };
    if state.opted_out.contains(&to) {
        return error_answer(
            StatusCode::BAD_REQUEST,
            Some(21610),
            "Attempt to send to unsubscribed recipient",
        );
    }
    let sid = shared.next_message_sid();
    let status_callback = field("StatusCallback");
    let account_sid = &shared.account_sid;
    let now = rfc2822_now();
    let uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json");
    let media_uri = format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json");
    let body_json = json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": body,
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": null,
        "num_media": "0",
        "num_segments": num_segments(&body).to_string(),
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": "queued",
        "subresource_uris": { "media": media_uri },
        "to": to,
        "uri": uri,
    });
    state.sent.push(FakeSms {
        sid,
        from,
        to,
        body,
        status_callback,
        received_at: Instant::now(),
    });
    Answer {
        status: StatusCode::CREATED,
        body: body_json,
        retry_after: None,
    }
}

fn error_answer(status: StatusCode, code: Option<i64>, message: &str) -> Answer {
    let more_info = code.map(|c| format!("https://www.twilio.com/docs/errors/{c}"));
    Answer {
        status,
        body: json!({
            "code": code,
            "message": message,
            "more_info": more_info,
            "status": status.as_u16(),
        }),
        retry_after: None,
    }
}

async fn not_found() -> Response {
    error_answer(
        StatusCode::NOT_FOUND,
        Some(20404),
        "The requested resource was not found",
    )
    .into_response()
}

/// Segments as Twilio counts them: GSM-7-ish text 160 per message or 153 per part, anything
/// else UCS-2 with 70 or 67 (non-ASCII is treated as UCS-2, close enough for a fake).
fn num_segments(body: &str) -> usize {
    let (single, part, len) = if body.is_ascii() {
        (160, 153, body.len())
    } else {
        (70, 67, body.encode_utf16().count())
    };
    if len <= single { 1 } else { len.div_ceil(part) }
}

/// `Authorization: Basic base64(user:pass)` to `(user, pass)`.
fn decode_basic_auth(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(decode_base64(encoded.trim())?).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some((user.to_owned(), pass.to_owned()))
}

/// Standard base64 with padding, as in Basic auth; `None` on anything malformed.
fn decode_base64(input: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        match c {
            b'A'..=b'Z' => Some(u32::from(c - b'A')),
            b'a'..=b'z' => Some(u32::from(c - b'a') + 26),
            b'0'..=b'9' => Some(u32::from(c - b'0') + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let bytes = input.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let last = i == bytes.len() / 4 - 1;
        let padding = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if padding > 2 || (padding > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - padding] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * padding;
        let [_, a, b, c] = n.to_be_bytes();
        out.extend_from_slice(&[a, b, c][..3 - padding]);
    }
    Some(out)
}

/// The current time as Twilio writes dates: `Thu, 30 Jul 2015 20:12:31 +0000`.
fn rfc2822_now() -> String {
    rfc2822(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    )
}

/// Seconds since the Unix epoch as an RFC 2822 date in UTC.
fn rfc2822(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let weekday = WEEKDAYS[usize::try_from(days.rem_euclid(7)).unwrap_or(0)];
    let month_name = MONTHS[usize::try_from(month - 1).unwrap_or(0)];
    format!(
        "{weekday}, {day:02} {month_name} {year} {:02}:{:02}:{:02} +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_basic_auth() {
        // base64("AC123:s3cr:et") — the password may contain ':'.
        assert_eq!(
            decode_basic_auth("Basic QUMxMjM6czNjcjpldA=="),
            Some(("AC123".to_owned(), "s3cr:et".to_owned()))
        );
        assert_eq!(decode_base64("YQ=="), Some(b"a".to_vec()));
        assert_eq!(decode_base64("YWI="), Some(b"ab".to_vec()));
        assert_eq!(decode_base64("YWJj"), Some(b"abc".to_vec()));
        assert_eq!(decode_base64("YQ==YWJj"), None);
        assert_eq!(decode_basic_auth("Bearer QUMxMjM6eA=="), None);
    }

    #[test]
    fn counts_segments() {
        assert_eq!(num_segments("hi"), 1);
        assert_eq!(num_segments(&"a".repeat(160)), 1);
        assert_eq!(num_segments(&"a".repeat(161)), 2);
        assert_eq!(num_segments(&"é".repeat(71)), 2);
    }

    #[test]
    fn formats_dates_like_twilio() {
        assert_eq!(rfc2822(1_438_287_151), "Thu, 30 Jul 2015 20:12:31 +0000");
        assert_eq!(rfc2822(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc2822(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }
}
