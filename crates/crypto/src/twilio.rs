//! `X-Twilio-Signature` validation, exactly as Twilio's SDKs do it (PROTOCOLS.md §1.4).
//!
//! The signature is `base64(HMAC-SHA1(auth token, url || name1 value1 || name2 value2 ...))`
//! over the URL Twilio requested and the form parameters sorted by name. Twilio's back end is
//! inconsistent about including the port in the signed URL, so, like twilio-node, we accept the
//! URL with its port removed and with a port (the explicit one, or 443/80 added), plus the URL
//! exactly as given (which is what the twilio-csharp vectors sign).
//!
//! The URL is never normalised: case, credentials and escapes are kept byte for byte, and port
//! variants are produced by slicing the string.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::constant_time_eq;

/// Why a webhook request was refused. Map `Missing` to 400 and the others to 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the X-Twilio-Signature header is missing")]
    Missing,
    #[error("the X-Twilio-Signature header does not match the request")]
    Invalid,
    #[error("the request body does not match the bodySHA256 parameter of the URL")]
    BodyHashMismatch,
}

/// The signature Twilio sends for a request to `url` with form parameters `params`.
///
/// Parameters are sorted by name, then by value, and identical `(name, value)` pairs are kept
/// once (twilio-node deduplicates the values of a repeated name). Pass an empty slice for GET
/// requests and for non-form bodies: their parameters are already in the URL.
#[must_use]
pub fn signature(auth_token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    sorted.sort_unstable();
    sorted.dedup();

    let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(auth_token.as_bytes()) else {
        unreachable!("HMAC accepts keys of any length")
    };
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Validates a form-encoded webhook (`application/x-www-form-urlencoded` POST, or a GET with
/// `params` empty).
///
/// `params` are the decoded form pairs in wire order; repeated names are allowed. `url` is the
/// public URL Twilio called (rebuild it from configuration behind a proxy). The signature may
/// match the URL as given, with its port removed, or with its port present (explicit, or the
/// default 443/80 added). Comparisons are constant-time.
///
/// # Errors
/// [`SignatureError::Missing`] when `header` is `None`, [`SignatureError::Invalid`] when no
/// variant matches (including an empty or non-base64 header).
pub fn validate_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if matches_any_variant(auth_token, url, params, header) {
        Ok(())
    } else {
        Err(SignatureError::Invalid)
    }
}

/// Validates a webhook with a non-form body (JSON, for instance).
///
/// Twilio then adds `bodySHA256=<lower-case hex SHA-256 of the body>` to the URL and signs the
/// URL alone. Both must hold: the signature matches one of the URL variants (as in
/// [`validate_form`]) and the body hashes to the `bodySHA256` value (constant-time).
///
/// # Errors
/// [`SignatureError::Missing`] when `header` is `None`, [`SignatureError::Invalid`] when the
/// signature does not match, [`SignatureError::BodyHashMismatch`] when the URL has no
/// `bodySHA256` parameter or it differs from the body's hash.
pub fn validate_body(
    auth_token: &str,
    url: &str,
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    if !matches_any_variant(auth_token, url, &[], header) {
        return Err(SignatureError::Invalid);
    }
    let expected = hex::encode(Sha256::digest(body));
    match query_param(url, "bodySHA256") {
        Some(claimed) if constant_time_eq(claimed.as_bytes(), expected.as_bytes()) => Ok(()),
        _ => Err(SignatureError::BodyHashMismatch),
    }
}

fn matches_any_variant(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    header: &str,
) -> bool {
    // Check every variant (no early exit), so timing does not reveal which one matched.
    url_variants(url).iter().fold(false, |ok, candidate| {
        let expected = signature(auth_token, candidate, params);
        ok | constant_time_eq(expected.as_bytes(), header.as_bytes())
    })
}

/// The URLs a signature may have been computed over: as given, without its port, and with its
/// port (the explicit one, or the scheme's default). Duplicates are removed.
fn url_variants(url: &str) -> Vec<Cow<'_, str>> {
    let mut variants = vec![Cow::Borrowed(url)];
    if let Some(parts) = split_port(url) {
        let without = format!("{}{}", parts.head, parts.tail);
        let with = match parts.port {
            Some(port) if !port.is_empty() => None, // the URL as given already has it
            _ => default_port(parts.scheme).map(|p| format!("{}:{p}{}", parts.head, parts.tail)),
        };
        for candidate in std::iter::once(without).chain(with) {
            if !variants.iter().any(|v| *v == candidate) {
                variants.push(Cow::Owned(candidate));
            }
        }
    }
    variants
}

/// A URL cut around its port: `head` ends with the host, `tail` starts with the path (or `?`,
/// `#`, or is empty).
#[derive(Debug, PartialEq, Eq)]
struct PortSplit<'a> {
    scheme: &'a str,
    head: &'a str,
    /// Digits after the host's `:`; `Some("")` for a bare trailing colon.
    port: Option<&'a str>,
    tail: &'a str,
}

/// Finds the host's port by string slicing. `None` when the URL has no `scheme://` or its port
/// is not numeric: then only the URL as given is tried.
fn split_port(url: &str) -> Option<PortSplit<'_>> {
    let scheme_end = url.find("://")?;
    let scheme = &url[..scheme_end];
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    // Credentials (`user:pass@`) come before the last `@` and are kept untouched.
    let host_start = authority_start + authority.rfind('@').map_or(0, |i| i + 1);
    let host_port = &url[host_start..authority_end];
    let colon = if host_port.starts_with('[') {
        // IPv6 literal: a port can only follow the closing bracket.
        let close = host_port.find(']')?;
        host_port[close + 1..].starts_with(':').then_some(close + 1)
    } else {
        host_port.rfind(':')
    };
    let (head_end, port) = match colon {
        Some(i) => {
            let port = &host_port[i + 1..];
            if !port.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            (host_start + i, Some(port))
        }
        None => (authority_end, None),
    };
    Some(PortSplit {
        scheme,
        head: &url[..head_end],
        port,
        tail: &url[authority_end..],
    })
}

fn default_port(scheme: &str) -> Option<&'static str> {
    if scheme.eq_ignore_ascii_case("https") {
        Some("443")
    } else if scheme.eq_ignore_ascii_case("http") {
        Some("80")
    } else {
        None
    }
}

/// The raw (not percent-decoded) value of the first query parameter called `name`.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query_start = url.find('?')? + 1;
    let query = &url[query_start..];
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    query
        .split('&')
        .find_map(|pair| match pair.split_once('=') {
            Some((key, value)) if key == name => Some(value),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn variants(url: &str) -> Vec<String> {
        url_variants(url).into_iter().map(Cow::into_owned).collect()
    }

    #[test]
    fn variants_add_the_default_port() {
        assert_eq!(
            variants("https://a.com/p?x=1"),
            ["https://a.com/p?x=1", "https://a.com:443/p?x=1"]
        );
        assert_eq!(
            variants("http://a.com/p"),
            ["http://a.com/p", "http://a.com:80/p"]
        );
        assert_eq!(
            variants("HTTP://A.com"),
            ["HTTP://A.com", "HTTP://A.com:80"]
        );
    }

    #[test]
    fn variants_remove_an_explicit_port() {
        assert_eq!(
            variants("https://a.com:1234/p?x=1"),
            ["https://a.com:1234/p?x=1", "https://a.com/p?x=1"]
        );
        assert_eq!(
            variants("https://a.com:443?x=1"),
            ["https://a.com:443?x=1", "https://a.com?x=1"]
        );
        assert_eq!(
            variants("https://a.com:/p"),
            ["https://a.com:/p", "https://a.com/p", "https://a.com:443/p"]
        );
    }

    #[test]
    fn variants_keep_credentials_and_case() {
        assert_eq!(
            variants("https://User:Pa55@MyHost.com/p"),
            [
                "https://User:Pa55@MyHost.com/p",
                "https://User:Pa55@MyHost.com:443/p"
            ]
        );
        assert_eq!(
            variants("https://user:pass@host.com:8443/p"),
            [
                "https://user:pass@host.com:8443/p",
                "https://user:pass@host.com/p"
            ]
        );
    }

    #[test]
    fn variants_handle_ipv6_and_odd_input() {
        assert_eq!(
            variants("https://[::1]:8443/p"),
            ["https://[::1]:8443/p", "https://[::1]/p"]
        );
        assert_eq!(
            variants("http://[::1]/p"),
            ["http://[::1]/p", "http://[::1]:80/p"]
        );
        // A colon in the path or query is not a port.
        assert_eq!(
            variants("https://a.com/p:1?t=1:2"),
            ["https://a.com/p:1?t=1:2", "https://a.com:443/p:1?t=1:2"]
        );
        // Unknown scheme: port removal only.
        assert_eq!(
            variants("wss://a.com:9/p"),
            ["wss://a.com:9/p", "wss://a.com/p"]
        );
        assert_eq!(variants("wss://a.com/p"), ["wss://a.com/p"]);
        for odd in [
            "",
            "no scheme",
            "https://a.com:x/p",
            "https://[::1/p",
            "://",
        ] {
            assert_eq!(variants(odd), [odd], "{odd:?}");
        }
        // Multi-byte characters around the host must not break slicing.
        assert_eq!(
            variants("https://é.com:1/ü"),
            ["https://é.com:1/ü", "https://é.com/ü"]
        );
    }

    #[test]
    fn query_param_reads_raw_values() {
        let url = "https://a.com/p?x=1&bodySHA256=abc&y=2#frag";
        assert_eq!(query_param(url, "bodySHA256"), Some("abc"));
        assert_eq!(query_param(url, "y"), Some("2"));
        assert_eq!(query_param(url, "z"), None);
        assert_eq!(query_param("https://a.com/p", "x"), None);
        assert_eq!(
            query_param("https://a.com/p?xbodySHA256=1", "bodySHA256"),
            None
        );
    }

    #[test]
    fn repeated_pairs_are_deduplicated_but_distinct_values_kept() {
        let p = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let once = signature("t", "u", &p(&[("A", "1"), ("A", "2")]));
        assert_eq!(
            once,
            signature("t", "u", &p(&[("A", "2"), ("A", "1"), ("A", "2")]))
        );
        assert_ne!(once, signature("t", "u", &p(&[("A", "1")])));
    }
}
