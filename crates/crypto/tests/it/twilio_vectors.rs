//! Twilio's official request-validator test vectors, restated as data.
//!
//! Sources (each vector names its file):
//! - PY: twilio/twilio-python `tests/unit/test_request_validator.py`
//! - PHP: twilio/twilio-php `tests/Twilio/Unit/RequestValidatorTest.php`
//! - CS: twilio/twilio-csharp `test/Twilio.Test/Security/RequestValidatorTest.cs`
//! - NODE: twilio/twilio-node `spec/unit/webhooks/webhooks.spec.js` (token `s3cr3t`; those
//!   tests compare against computed signatures, so they check port handling, not bytes)
//!
//! All but NODE use auth token `12345` and the same five voice parameters.

use crypto::twilio::{SignatureError, signature, validate_body, validate_form};

use crate::pairs;

const TOKEN: &str = "12345";
const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
const BODY: &str = "{\"property\": \"value\", \"boolean\": true}";
const BODY_HASH: &str = "0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620";

/// PY/PHP/CS parameters; CS adds them out of alphabetical order on purpose, as here.
fn voice_params() -> Vec<(String, String)> {
    pairs(&[
        ("CallSid", "CA1234567890ABCDE"),
        ("From", "+14158675309"),
        ("Digits", "1234"),
        ("To", "+18005551212"),
        ("Caller", "+14158675309"),
    ])
}

struct Vector {
    source: &'static str,
    /// The URL handed to the validator.
    url: &'static str,
    /// The URL variant the signature was computed over (what Twilio signed).
    signed_url: &'static str,
    signature: &'static str,
}

/// Form-parameter vectors: each must validate for `url`, and must be exactly
/// `signature(TOKEN, signed_url, params)`.
const FORM_VECTORS: &[Vector] = &[
    Vector {
        source: "PY test_compute_signature / PHP testValidate / CS TestValidateDictionary",
        url: URL,
        signed_url: URL,
        signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
    },
    Vector {
        source: "PY test_validation_removes_port_on_https / PHP testValidateRemovesPortHttps / CS TestValidateRemovesPortHttps",
        url: "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        signed_url: URL,
        signature: "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
    },
    Vector {
        source: "PY test_validation_removes_port_on_http / PHP testValidateRemovesPortHttp / CS TestValidateRemovesPortHttp, TestValidateAddsCustomPortHttp",
        url: "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
        signed_url: "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
        signature: "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
    },
    Vector {
        source: "PY test_validation_adds_port_on_https / PHP testValidateAddsPortHttps / CS TestValidateAddsPortHttps",
        url: URL,
        signed_url: "https://mycompany.com:443/myapp.php?foo=1&bar=2",
        signature: "kvajT1Ptam85bY51eRf/AJRuM3w=",
    },
    Vector {
        source: "PY test_validation_adds_port_on_http / PHP testValidateAddsPortHttp / CS TestValidateAddsPortHttp",
        url: "http://mycompany.com/myapp.php?foo=1&bar=2",
        signed_url: "http://mycompany.com:80/myapp.php?foo=1&bar=2",
        signature: "0ZXoZLH/DfblKGATFgpif+LLRf4=",
    },
    Vector {
        source: "CS TestValidateAddsCustomPortHttps",
        url: "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        signed_url: "https://mycompany.com:1234/myapp.php?foo=1&bar=2",
        signature: "CYn1h0gLBdNxDGkKJg6hYohgeD8=",
    },
    Vector {
        source: "CS TestValidateDictionaryMixedCase",
        url: "https://MyCompany.com/myapp.php?foo=1&bar=2",
        signed_url: "https://MyCompany.com/myapp.php?foo=1&bar=2",
        signature: "g9IN/x4Cft2g517EjYvEvM/W7LU=",
    },
    Vector {
        source: "CS TestValidateDictionaryMixedCaseWithPort",
        url: "https://MyCompany.com:1234/myapp.php?foo=1&bar=2",
        signed_url: "https://MyCompany.com:1234/myapp.php?foo=1&bar=2",
        signature: "PCqOZm8cnu/L6+u5i5fuEd+Iac4=",
    },
    Vector {
        source: "CS TestValidateDictionaryMixedCaseAddsPortHttp",
        url: "http://MyCompany.com/myapp.php?foo=1&bar=2",
        signed_url: "http://MyCompany.com/myapp.php?foo=1&bar=2",
        signature: "XY7AlKOKL6im4yWyX84gldUrtis=",
    },
    Vector {
        source: "CS TestValidateCredentialsArePreserved",
        url: "http://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
        signed_url: "http://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
        signature: "PJ08CxXr7KLPjEQCTc8LkUSMwSM=",
    },
    Vector {
        source: "CS TestValidateCredentialsArePreservedUpperCaseScheme",
        url: "HTTP://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
        signed_url: "HTTP://username:password@MyCompany.com/myapp.php?foo=1&bar=2",
        signature: "hy/l8pca+LFms4cvRdv8uiP6NGc=",
    },
    Vector {
        source: "CS TestValidateCredentialsArePreservedMixedCaseCreds",
        url: "http://Username:Password@MyCompany.com/myapp.php?foo=1&bar=2",
        signed_url: "http://Username:Password@MyCompany.com/myapp.php?foo=1&bar=2",
        signature: "SkTSKyDJH9kUlhItI0slbgZ1UsI=",
    },
    Vector {
        source: "PHP testBuildUrlCreds",
        url: "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        signed_url: "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        signature: "CukzLTc1tT5dXEDIHm/tKBanW10=",
    },
    Vector {
        source: "PHP testBuildUrlWithUser",
        url: "https://user@mycompany.com/myapp.php?foo=1&bar=2",
        signed_url: "https://user@mycompany.com/myapp.php?foo=1&bar=2",
        signature: "2YRLlVAflCqxaNicjMpJcSTgzSs=",
    },
    Vector {
        source: "PHP testBuildUrlCredsAddsPort",
        url: "https://user:pass@mycompany.com/myapp.php?foo=1&bar=2",
        signed_url: "https://user:pass@mycompany.com:443/myapp.php?foo=1&bar=2",
        signature: "ZQFR1PTIZXF2MXB8ZnKCvnnA+rI=",
    },
];

#[test]
fn official_form_vectors_validate() {
    let params = voice_params();
    for v in FORM_VECTORS {
        assert_eq!(
            signature(TOKEN, v.signed_url, &params),
            v.signature,
            "{}: signature bytes",
            v.source
        );
        assert_eq!(
            validate_form(TOKEN, v.url, &params, Some(v.signature)),
            Ok(()),
            "{}: validation",
            v.source
        );
    }
}

/// CS TestValidateDictionaryMixedCase*WithIncorrectSignature: the lower-case host's signature
/// must not validate a mixed-case URL, which proves nothing is lower-cased.
#[test]
fn official_mixed_case_urls_reject_the_lower_case_signature() {
    let params = voice_params();
    for url in [
        "https://MyCompany.com/myapp.php?foo=1&bar=2",
        "https://MyCompany.com:1234/myapp.php?foo=1&bar=2",
        "http://MyCompany.com/myapp.php?foo=1&bar=2",
    ] {
        assert_eq!(
            validate_form(TOKEN, url, &params, Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")),
            Err(SignatureError::Invalid),
            "{url}"
        );
    }
}

/// PHP testFailsWhenIncorrect ("FAIL") and CS TestValidateFailsWhenIncorrect.
#[test]
fn official_incorrect_signatures_fail() {
    let params = voice_params();
    for bad in ["FAIL", "NOTRSOYDt4T1cUTdK1PDd93/VVr8B8="] {
        assert_eq!(
            validate_form(TOKEN, URL, &params, Some(bad)),
            Err(SignatureError::Invalid)
        );
    }
}

/// PY test_compute_signature_duplicate_multi_dict / _query_dict
/// (`Digits` = 5678, 1234) and PHP testValidateWithArrayAndDuplicates
/// (`Digits` = 5678, 1234, 1234): both sign to the same value.
#[test]
fn official_repeated_parameter_vector() {
    const EXPECTED: &str = "IK+Dwps556ElfBT0I3Rgjkr1wJU=";
    let python = pairs(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
    ]);
    let php = pairs(&[
        ("Sid", "CA123"),
        ("SidAccount", "AC123"),
        ("Digits", "5678"),
        ("Digits", "1234"),
        ("Digits", "1234"),
    ]);
    assert_eq!(signature(TOKEN, URL, &python), EXPECTED);
    assert_eq!(signature(TOKEN, URL, &php), EXPECTED);
    assert_eq!(validate_form(TOKEN, URL, &php, Some(EXPECTED)), Ok(()));
}

/// PY test_compute_hash_unicode / PHP testValidateBody / CS TestValidateBody: the body hash.
/// PY test_validation_of_body_succeeds / PHP testValidateWithBody / CS TestValidateWithBody:
/// the URL carrying it is signed without parameters.
#[test]
fn official_body_sha256_vector() {
    let url = format!("{URL}&bodySHA256={BODY_HASH}");
    assert_eq!(signature(TOKEN, &url, &[]), "a9nBmqA0ju/hNViExpshrM61xv4=");
    assert_eq!(
        validate_body(
            TOKEN,
            &url,
            BODY.as_bytes(),
            Some("a9nBmqA0ju/hNViExpshrM61xv4=")
        ),
        Ok(())
    );
}

/// CS TestValidateWithOnlyHash: `bodySHA256` as the only query parameter.
#[test]
fn official_body_sha256_only_parameter_vector() {
    let url = format!("https://mycompany.com/myapp.php?bodySHA256={BODY_HASH}");
    assert_eq!(
        validate_body(
            TOKEN,
            &url,
            BODY.as_bytes(),
            Some("y77kIzt2vzLz71DgmJGsen2scGs=")
        ),
        Ok(())
    );
}

/// CS TestValidateWithBodyWithoutSignature / PHP testValidateBodyWithoutSignature and
/// testValidateBodyWithoutQueryString: a form signature does not validate a body request.
#[test]
fn official_body_without_hash_fails() {
    for url in [URL, "https://mycompany.com/myapp.php"] {
        assert!(
            validate_body(
                TOKEN,
                url,
                BODY.as_bytes(),
                Some("RSOYDt4T1cUTdK1PDd93/VVr8B8=")
            )
            .is_err(),
            "{url}"
        );
    }
}

/// NODE "when the signature is derived from an URL with/without port": a signature over
/// `:443` validates the bare URL and the other way round; NODE "should return false when the
/// signature URL does not match the target URL".
#[test]
fn node_port_and_mismatch_cases() {
    const NODE_TOKEN: &str = "s3cr3t";
    let with_port = "https://example.com:443/path?test=param";
    let without_port = "https://example.com/path?test=param";
    for signed in [with_port, without_port] {
        let sig = signature(NODE_TOKEN, signed, &[]);
        for target in [with_port, without_port] {
            assert_eq!(
                validate_form(NODE_TOKEN, target, &[], Some(&sig)),
                Ok(()),
                "signed {signed}, target {target}"
            );
        }
    }
    let sig = signature(NODE_TOKEN, without_port, &[]);
    assert_eq!(
        validate_form(
            NODE_TOKEN,
            "https://example.com/path?test=param2",
            &[],
            Some(&sig)
        ),
        Err(SignatureError::Invalid)
    );
}

/// NODE's single-quote cases pass there only because WHATWG URL parsing turns `'` into `%27`
/// in the query. We sign the exact string on purpose (no normalisation), so the two spellings
/// are different URLs here; Concierge's webhook URLs never contain quotes.
#[test]
fn escaping_is_not_normalised() {
    const NODE_TOKEN: &str = "s3cr3t";
    let raw = "https://example.com/path?test=param'WithQuote";
    let escaped = "https://example.com/path?test=param%27WithQuote";
    let sig = signature(NODE_TOKEN, raw, &[]);
    assert_eq!(validate_form(NODE_TOKEN, raw, &[], Some(&sig)), Ok(()));
    assert_eq!(
        validate_form(NODE_TOKEN, escaped, &[], Some(&sig)),
        Err(SignatureError::Invalid)
    );
}
