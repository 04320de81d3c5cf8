//! Negative cases and properties of Twilio signature validation.

use crypto::twilio::{SignatureError, signature, validate_body, validate_form};
use proptest::prelude::*;
use sha2::{Digest as _, Sha256};

use crate::pairs;

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

fn sms_params() -> Vec<(String, String)> {
    pairs(&[
        ("MessageSid", "SM4039741cca72c8ff47c7cd4c74ee9930"),
        ("Body", "test"),
        ("From", "+919703204770"),
        ("To", "+14803970203"),
        ("ToCity", ""),
    ])
}

#[test]
fn wrong_token_is_invalid() {
    let params = sms_params();
    let sig = signature(TOKEN, URL, &params);
    assert_eq!(
        validate_form("54321", URL, &params, Some(&sig)),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn tampered_parameters_are_invalid() {
    let params = sms_params();
    let sig = signature(TOKEN, URL, &params);
    assert_eq!(validate_form(TOKEN, URL, &params, Some(&sig)), Ok(()));

    let mut changed = params.clone();
    changed[1].1 = "test!".to_owned();
    assert_eq!(
        validate_form(TOKEN, URL, &changed, Some(&sig)),
        Err(SignatureError::Invalid)
    );
    let mut dropped = params.clone();
    dropped.pop(); // the empty ToCity still counts: its name is signed
    assert_eq!(
        validate_form(TOKEN, URL, &dropped, Some(&sig)),
        Err(SignatureError::Invalid)
    );
    let mut added = params.clone();
    added.push(("Extra".to_owned(), "1".to_owned()));
    assert_eq!(
        validate_form(TOKEN, URL, &added, Some(&sig)),
        Err(SignatureError::Invalid)
    );
    assert_eq!(
        validate_form(
            TOKEN,
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            &params,
            Some(&sig)
        ),
        Err(SignatureError::Invalid)
    );
}

#[test]
fn missing_header_is_missing() {
    assert_eq!(
        validate_form(TOKEN, URL, &sms_params(), None),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        validate_body(TOKEN, URL, b"{}", None),
        Err(SignatureError::Missing)
    );
}

#[test]
fn garbage_headers_are_invalid() {
    let params = sms_params();
    let good = signature(TOKEN, URL, &params);
    let garbage = [
        String::new(),
        " ".to_owned(),
        "not base64 at all!".to_owned(),
        "%%%%".to_owned(),
        "\u{0}".to_owned(),
        "é".repeat(14),
        format!(" {good}"),
        format!("{good}\n"),
        good.trim_end_matches('=').to_owned(),
        good.to_lowercase(),
        "A".repeat(10_000),
    ];
    for header in &garbage {
        assert_eq!(
            validate_form(TOKEN, URL, &params, Some(header)),
            Err(SignatureError::Invalid),
            "{header:?}"
        );
        let body_url = format!("{URL}&bodySHA256={}", hex::encode(Sha256::digest(b"{}")));
        assert_eq!(
            validate_body(TOKEN, &body_url, b"{}", Some(header)),
            Err(SignatureError::Invalid),
            "{header:?}"
        );
    }
}

#[test]
fn body_hash_mismatch_is_reported() {
    let body = br#"{"a":1}"#;
    let url = format!(
        "https://app.example.com/twilio/events?bodySHA256={}",
        hex::encode(Sha256::digest(body))
    );
    let sig = signature(TOKEN, &url, &[]);
    assert_eq!(validate_body(TOKEN, &url, body, Some(&sig)), Ok(()));
    assert_eq!(
        validate_body(TOKEN, &url, br#"{"a":2}"#, Some(&sig)),
        Err(SignatureError::BodyHashMismatch)
    );
    // Upper-case hex is not what Twilio sends; it does not match.
    let upper = format!(
        "https://app.example.com/twilio/events?bodySHA256={}",
        hex::encode_upper(Sha256::digest(body))
    );
    let sig_upper = signature(TOKEN, &upper, &[]);
    assert_eq!(
        validate_body(TOKEN, &upper, body, Some(&sig_upper)),
        Err(SignatureError::BodyHashMismatch)
    );
    // A correctly signed URL without bodySHA256 cannot vouch for any body.
    let plain = "https://app.example.com/twilio/events";
    let sig_plain = signature(TOKEN, plain, &[]);
    assert_eq!(
        validate_body(TOKEN, plain, body, Some(&sig_plain)),
        Err(SignatureError::BodyHashMismatch)
    );
    // A signature made with another token fails before the body is looked at.
    assert_eq!(
        validate_body("other", &url, br#"{"a":2}"#, Some(&sig)),
        Err(SignatureError::Invalid)
    );
}

fn form_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("[A-Za-z]{1,8}", "[ -~]{0,12}|\\PC{0,6}"), 0..8)
}

fn any_url() -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("https"), Just("http"), Just("HTTPS")],
        prop::option::of("[a-z]{1,6}(:[a-z]{1,6})?@"),
        "[A-Za-z0-9]{1,10}\\.(com|io)",
        prop::option::of(1u16..),
        "(/[a-z0-9._-]{0,8}){0,3}",
        prop::option::of("[a-z]{1,5}=[a-z0-9%']{0,6}(&[a-z]{1,5}=[a-z0-9]{0,6}){0,3}"),
    )
        .prop_map(|(scheme, creds, host, port, path, query)| {
            let mut url = format!("{scheme}://{}{host}", creds.unwrap_or_default());
            if let Some(port) = port {
                url.push_str(&format!(":{port}"));
            }
            url.push_str(&path);
            if let Some(query) = query {
                url.push('?');
                url.push_str(&query);
            }
            url
        })
}

proptest! {
    #[test]
    fn signed_requests_validate_in_any_order(
        url in any_url(),
        token in "[0-9a-f]{32}",
        params in form_pairs(),
    ) {
        let sig = signature(&token, &url, &params);
        prop_assert_eq!(sig.len(), 28);
        prop_assert_eq!(validate_form(&token, &url, &params, Some(&sig)), Ok(()));
        let mut reversed = params.clone();
        reversed.reverse();
        prop_assert_eq!(validate_form(&token, &url, &reversed, Some(&sig)), Ok(()));
    }

    #[test]
    fn changing_any_value_is_rejected(
        url in any_url(),
        params in form_pairs().prop_filter("need a parameter", |p| !p.is_empty()),
        index in any::<prop::sample::Index>(),
    ) {
        let sig = signature(TOKEN, &url, &params);
        let mut changed = params.clone();
        let i = index.index(changed.len());
        // `\u{1}` never occurs in generated values, so the changed pair is new and the signed
        // string gets longer: no deduplication or concatenation accident can hide the change.
        changed[i].1.push('\u{1}');
        prop_assert_eq!(
            validate_form(TOKEN, &url, &changed, Some(&sig)),
            Err(SignatureError::Invalid)
        );
        prop_assert_eq!(
            validate_form("another token", &url, &params, Some(&sig)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn port_variants_are_accepted_both_ways(
        host in "[a-z]{1,10}\\.com",
        https in any::<bool>(),
        path in "/[a-z]{0,8}(\\?x=[0-9]{1,3})?",
        params in form_pairs(),
    ) {
        let (scheme, port) = if https { ("https", 443) } else { ("http", 80) };
        let bare = format!("{scheme}://{host}{path}");
        let with_default = format!("{scheme}://{host}:{port}{path}");
        let with_custom = format!("{scheme}://{host}:8443{path}");
        // Twilio may sign any of these; we may be given any of them.
        for (signed, given) in [
            (&with_default, &bare),
            (&bare, &with_default),
            (&bare, &with_custom),
            (&with_custom, &with_custom),
        ] {
            let sig = signature(TOKEN, signed, &params);
            prop_assert_eq!(validate_form(TOKEN, given, &params, Some(&sig)), Ok(()));
        }
        // A different explicit port is a different URL.
        let sig = signature(TOKEN, &format!("{scheme}://{host}:9000{path}"), &params);
        prop_assert_eq!(
            validate_form(TOKEN, &with_custom, &params, Some(&sig)),
            Err(SignatureError::Invalid)
        );
    }

    #[test]
    fn body_requests_validate_and_detect_body_changes(
        url in any_url(),
        body in prop::collection::vec(any::<u8>(), 0..256),
        flip in any::<prop::sample::Index>(),
    ) {
        let hash = hex::encode(Sha256::digest(&body));
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!("{url}{sep}bodySHA256={hash}");
        let sig = signature(TOKEN, &url, &[]);
        prop_assert_eq!(validate_body(TOKEN, &url, &body, Some(&sig)), Ok(()));
        let mut changed = body.clone();
        if changed.is_empty() {
            changed.push(0);
        } else {
            let i = flip.index(changed.len());
            changed[i] ^= 1;
        }
        prop_assert_eq!(
            validate_body(TOKEN, &url, &changed, Some(&sig)),
            Err(SignatureError::BodyHashMismatch)
        );
    }
}
