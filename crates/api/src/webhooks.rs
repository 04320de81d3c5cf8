//! Twilio webhooks. Each handler takes the raw bytes, checks `X-Twilio-Signature` against
//! the configured public URL, and only then parses the form.

use axum::Router;
use axum::body::Body;
use axum::extract::{OriginalUri, State};
use axum::http::HeaderMap;
use axum::routing::post;
use domain::PhoneNumber;
use secrecy::ExposeSecret;

use crate::error::ApiError;
use crate::twiml::Twiml;
use crate::{AppState, inner};

/// Twilio's own limit for an SMS body.
const MAX_SMS_CHARS: usize = 1600;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/webhooks/twilio/sms", post(sms))
        .route("/webhooks/twilio/status", post(status))
}

/// Verified form parameters of a webhook, in wire order.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn require(&self, name: &'static str) -> Result<&str, ApiError> {
        self.get(name).filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "missing_parameter",
                format!("the {name} parameter is required"),
            )
        })
    }
}

fn reject(reason: &'static str, e: ApiError) -> ApiError {
    metrics::counter!("concierge_webhook_rejections_total", "reason" => reason).increment(1);
    e
}

/// Reads, verifies and parses a form-encoded Twilio webhook.
async fn verified_form(
    state: &State<AppState>,
    uri: &OriginalUri,
    headers: &HeaderMap,
    body: Body,
) -> Result<Form, ApiError> {
    let inner = inner(state);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/x-www-form-urlencoded")
    {
        return Err(reject(
            "media_type",
            ApiError::UnsupportedMediaType {
                expected: "application/x-www-form-urlencoded",
            },
        ));
    }
    let limit = inner.config.max_body_bytes;
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| reject("too_large", ApiError::PayloadTooLarge { limit }))?;

    let signature = headers
        .get("x-twilio-signature")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    if inner.config.validate_signatures && signature.is_none() {
        return Err(reject(
            "missing_signature",
            ApiError::bad_request(
                "missing_signature",
                "the X-Twilio-Signature header is required",
            ),
        ));
    }
    let params = parse_form(&bytes).map_err(|e| reject("malformed", e))?;
    if inner.config.validate_signatures {
        let token = inner.config.twilio_auth_token.as_ref().ok_or_else(|| {
            ApiError::Unavailable(
                "Twilio auth token not configured: webhooks cannot be verified".into(),
            )
        })?;
        let path = uri
            .0
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let url = format!("{}{}", inner.config.public_url, path);
        crypto::twilio::validate_form(token.expose_secret(), &url, &params, signature).map_err(
            |_| {
                reject(
                    "invalid_signature",
                    ApiError::Forbidden {
                        code: "invalid_signature",
                        message: "the request signature does not match".into(),
                    },
                )
            },
        )?;
    }
    Ok(Form(params))
}

/// Strict `application/x-www-form-urlencoded` parsing: malformed escapes and non-UTF-8
/// text are errors, not silently replaced.
fn parse_form(bytes: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let malformed = || ApiError::bad_request("malformed_form", "the body is not a valid form");
    let decode = |raw: &[u8]| -> Result<String, ApiError> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = raw.get(i + 1..i + 3).ok_or_else(malformed)?;
                    let s = std::str::from_utf8(hex).map_err(|_| malformed())?;
                    out.push(u8::from_str_radix(s, 16).map_err(|_| malformed())?);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out)
            .map_err(|_| ApiError::bad_request("invalid_encoding", "form values must be UTF-8"))
    };
    let mut params = Vec::new();
    for pair in bytes.split(|b| *b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &[][..]),
        };
        params.push((decode(name)?, decode(value)?));
    }
    if params.len() > 256 {
        return Err(malformed());
    }
    Ok(params)
}

fn phone(form: &Form, name: &'static str) -> Result<PhoneNumber, ApiError> {
    PhoneNumber::parse(form.require(name)?).map_err(|e| {
        reject(
            "invalid_phone",
            ApiError::bad_request("invalid_phone_number", format!("{name}: {e}")),
        )
    })
}

fn sid(form: &Form, name: &'static str) -> Result<String, ApiError> {
    let sid = form.require(name)?;
    if sid.len() > 64 || !sid.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            format!("{name} is not a valid id"),
        ));
    }
    Ok(sid.to_owned())
}

/// The tenant that owns one of our numbers; 404 when no tenant does.
async fn tenant_for(inner: &crate::Inner, number: &PhoneNumber) -> Result<store::Tenant, ApiError> {
    inner
        .tenants
        .by_phone(&*inner.stores.data, number)
        .await?
        .ok_or_else(|| {
            reject(
                "unknown_number",
                ApiError::NotFound {
                    what: "tenant for this number",
                },
            )
        })
}

/// Inbound SMS: answered with TwiML (the reply inline, or empty when the worker answers).
async fn sms(
    state: State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<Twiml, ApiError> {
    let form = verified_form(&state, &uri, &headers, body).await?;
    let message_sid = sid(&form, "MessageSid")?;
    let to = phone(&form, "To")?;
    let from = phone(&form, "From")?;
    let text = form.get("Body").unwrap_or_default();
    if text.chars().count() > MAX_SMS_CHARS {
        return Err(ApiError::bad_request(
            "body_too_long",
            format!("Body has more than {MAX_SMS_CHARS} characters"),
        ));
    }
    let inner = inner(&state);
    let tenant = tenant_for(inner, &to).await?;
    tracing::Span::current().record("tenant_id", tracing::field::display(tenant.id));
    let reply = inner
        .messaging
        .receive_sms(&tenant, &from, &to, &message_sid, text)
        .await?;
    tracing::info!(outcome = reply.outcome.as_str(), "inbound sms");
    Ok(Twiml(reply.text))
}

/// Delivery status callback for an outbound message.
async fn status(
    state: State<AppState>,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Body,
) -> Result<http::StatusCode, ApiError> {
    let form = verified_form(&state, &uri, &headers, body).await?;
    let message_sid = sid(&form, "MessageSid")?;
    let status = form.require("MessageStatus")?.to_owned();
    let from = phone(&form, "From")?;
    let inner = inner(&state);
    let tenant = tenant_for(inner, &from).await?;
    let error_code = form.get("ErrorCode").filter(|c| !c.is_empty());
    let changed =
        messaging::apply_status(&inner.stores, tenant.id, &message_sid, &status, error_code)
            .await?;
    tracing::info!(changed, status = %status, "delivery status");
    Ok(http::StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::parse_form;

    #[test]
    fn forms_are_parsed_strictly() {
        let p = parse_form(b"Body=Hello+there%21&To=%2B15550000001&Empty=&Flag").unwrap();
        assert_eq!(p[0], ("Body".into(), "Hello there!".into()));
        assert_eq!(p[1], ("To".into(), "+15550000001".into()));
        assert_eq!(p[2], ("Empty".into(), String::new()));
        assert_eq!(p[3], ("Flag".into(), String::new()));
        assert_eq!(
            parse_form(b"Body=%E9t%E9").unwrap_err().code(),
            "invalid_encoding"
        );
        assert_eq!(
            parse_form(b"Body=%zz").unwrap_err().code(),
            "malformed_form"
        );
        assert_eq!(parse_form(b"Body=%4").unwrap_err().code(), "malformed_form");
        assert_eq!(parse_form(b"Body=caf%C3%A9").unwrap()[0].1, "café");
    }
}
