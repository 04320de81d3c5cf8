//! Simulated inbound SMS: signed Twilio webhooks to `POST /webhooks/twilio/sms`.
//!
//! Each request carries the form parameters Twilio sends for an inbound message, with a
//! unique `MessageSid` and a `From` number taken round-robin from the simulated users, and is
//! signed with the tenant's auth token over the server's public URL, exactly as Twilio does.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use domain::PhoneNumber;

use crate::http;
use crate::runner::Scenario;
use crate::stats::Outcome;

/// The webhook path, appended to both the target and the public URL.
pub const PATH: &str = "/webhooks/twilio/sms";
/// User `i` texts from `+1555` followed by the 7 digits of `FIRST_USER + i`.
const FIRST_USER: u64 = 1_000_000;
/// How many distinct `From` numbers that scheme allows.
pub const MAX_USERS: u64 = 9_000_000;
/// Used when no `--account-sid` is given.
pub const DEFAULT_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";

/// Where users text from: city, state, zip (Twilio leaves them empty when unknown).
const PLACES: &[(&str, &str, &str)] = &[
    ("NEW YORK", "NY", "10001"),
    ("CHICAGO", "IL", "60601"),
    ("AUSTIN", "TX", "73301"),
    ("SEATTLE", "WA", "98101"),
    ("BOSTON", "MA", "02108"),
    ("", "", ""),
    ("DENVER", "CO", "80202"),
    ("MIAMI", "FL", "33101"),
];

/// Message texts, with characters that need form-encoding (`&`, `+`, `=`, `%`, accents,
/// emoji) so that a signature computed over the wrong (encoded) form shows up at once.
const BODIES: &[&str] = &[
    "Hi, can I book a table for 2 tonight at 8pm?",
    "What are your opening hours on Sunday?",
    "Yes",
    "Please move my appointment to Tuesday 10:30 & send a confirmation",
    "Is 50% off still valid? Code=SPRING+2",
    "Merci ! À demain 😊",
    "STOP",
    "Can you remind me what I ordered last time?",
];

/// The SMS webhook scenario.
pub struct Sms {
    client: reqwest::Client,
    /// Where requests are sent.
    post_url: String,
    /// The URL the signature covers (the server's configured public URL + `PATH`).
    signed_url: String,
    auth_token: String,
    to: String,
    account_sid: String,
    users: u64,
    /// Makes `MessageSid`s unique across runs.
    nonce: u64,
}

/// A request body ready to send, and its `X-Twilio-Signature`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedForm {
    pub body: String,
    pub signature: String,
}

pub struct SmsConfig<'a> {
    pub url: &'a str,
    pub public_url: &'a str,
    pub auth_token: String,
    pub to: &'a str,
    pub account_sid: String,
    pub users: u64,
}

impl Sms {
    /// # Errors
    /// When `to` is not an E.164 number, falls among the simulated users' numbers, or `users`
    /// is out of range.
    pub fn new(client: reqwest::Client, config: SmsConfig<'_>) -> anyhow::Result<Self> {
        let to = PhoneNumber::parse(config.to)
            .with_context(|| format!("--to {:?} is not an E.164 phone number", config.to))?;
        if !(1..=MAX_USERS).contains(&config.users) {
            bail!("--users must be between 1 and {MAX_USERS}");
        }
        if user_index(to.as_str()).is_some_and(|i| i < config.users) {
            bail!(
                "--to {to} is also a simulated user's number (+15551000000 and up): choose another"
            );
        }
        Ok(Self {
            client,
            post_url: format!("{}{PATH}", config.url.trim_end_matches('/')),
            signed_url: format!("{}{PATH}", config.public_url.trim_end_matches('/')),
            auth_token: config.auth_token,
            to: to.as_str().to_owned(),
            account_sid: config.account_sid,
            users: config.users,
            nonce: run_nonce(),
        })
    }

    #[must_use]
    pub fn signed_url(&self) -> &str {
        &self.signed_url
    }

    /// The form parameters of message `seq`, in the order Twilio sends them.
    #[must_use]
    pub fn params(&self, seq: u64) -> Vec<(String, String)> {
        let user = seq % self.users;
        let (city, state, zip) = PLACES[index(user, PLACES.len())];
        let body = BODIES[index(seq, BODIES.len())];
        let sid = message_sid(self.nonce, seq);
        let from = from_number(user);
        let pairs: [(&str, &str); 19] = [
            ("ToCountry", "US"),
            ("ToState", "CA"),
            ("SmsMessageSid", &sid),
            ("NumMedia", "0"),
            ("ToCity", "SAN FRANCISCO"),
            ("FromZip", zip),
            ("SmsSid", &sid),
            ("FromState", state),
            ("SmsStatus", "received"),
            ("FromCity", city),
            ("Body", body),
            ("FromCountry", "US"),
            ("To", &self.to),
            ("ToZip", "94105"),
            ("NumSegments", "1"),
            ("MessageSid", &sid),
            ("AccountSid", &self.account_sid),
            ("From", &from),
            ("ApiVersion", "2010-04-01"),
        ];
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    /// The encoded body and signature of message `seq`.
    ///
    /// # Errors
    /// When the form cannot be encoded (never, for string pairs).
    pub fn signed_form(&self, seq: u64) -> anyhow::Result<SignedForm> {
        let params = self.params(seq);
        let body = serde_urlencoded::to_string(&params).context("encoding the form")?;
        let signature = crypto::twilio::signature(&self.auth_token, &self.signed_url, &params);
        Ok(SignedForm { body, signature })
    }

    /// The HTTP request for message `seq`.
    ///
    /// # Errors
    /// See [`Sms::signed_form`].
    pub fn request(&self, seq: u64) -> anyhow::Result<reqwest::RequestBuilder> {
        let form = self.signed_form(seq)?;
        Ok(self
            .client
            .post(&self.post_url)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header("X-Twilio-Signature", form.signature)
            .body(form.body))
    }
}

impl Scenario for Sms {
    type Worker = ();

    fn worker(&self, _index: usize) {}

    async fn call(&self, _worker: &mut (), seq: u64) -> Outcome {
        let request = match self.request(seq) {
            Ok(request) => request,
            Err(e) => return Outcome::Transport(format!("{e:#}")),
        };
        http::exchange(request, |body| {
            if body.starts_with(b"<?xml") {
                Outcome::Ok
            } else {
                Outcome::BadBody(format!(
                    "expected TwiML, got {:?}",
                    crate::stats::snippet(body)
                ))
            }
        })
        .await
    }
}

/// The `From` number of user `index`.
#[must_use]
pub fn from_number(index: u64) -> String {
    format!("+1555{:07}", FIRST_USER + index)
}

/// Which user texts from `number`, if it is of the simulated users' form.
fn user_index(number: &str) -> Option<u64> {
    let digits = number.strip_prefix("+1555")?;
    if digits.len() != 7 {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_sub(FIRST_USER)
}

/// `"SM"` and 32 lower-case hex digits: the run's nonce, then a bijective mix of `seq`, so
/// that every message of a run has its own SID and they do not look sequential.
#[must_use]
pub fn message_sid(nonce: u64, seq: u64) -> String {
    format!("SM{nonce:016x}{:016x}", mix64(seq))
}

/// `value % len` as an index (`len` is a small table length).
fn index(value: u64, len: usize) -> usize {
    // `len` fits u64 and the remainder is below `len`, so both conversions are lossless.
    usize::try_from(value % len as u64).unwrap_or(0)
}

/// The `splitmix64` finaliser: a bijection on `u64` that scrambles its bits.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A value that differs between runs: the clock and the process id, mixed.
fn run_nonce() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    // Truncation is fine: we only want bits that change.
    #[allow(clippy::cast_possible_truncation)]
    let nanos = nanos as u64;
    mix64(nanos ^ (u64::from(std::process::id()) << 32))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::HashSet;

    use super::*;

    const TOKEN: &str = "12345678901234567890123456789012";

    fn sms(public_url: &str) -> Sms {
        http::install_crypto_provider();
        Sms::new(
            reqwest::Client::new(),
            SmsConfig {
                url: "http://127.0.0.1:8080/",
                public_url,
                auth_token: TOKEN.to_owned(),
                to: "+15550000000",
                account_sid: DEFAULT_ACCOUNT_SID.to_owned(),
                users: 10_000,
            },
        )
        .unwrap()
    }

    #[test]
    fn the_request_carries_the_signature_twilio_would_send() {
        let sms = sms("https://concierge.example.com");
        for seq in [0, 1, 5, 3, 9_999, 10_000, 123_456_789] {
            let params = sms.params(seq);
            let request = sms.request(seq).unwrap().build().unwrap();

            assert_eq!(request.method(), reqwest::Method::POST);
            assert_eq!(
                request.url().as_str(),
                "http://127.0.0.1:8080/webhooks/twilio/sms"
            );
            assert_eq!(
                request.headers()["content-type"],
                "application/x-www-form-urlencoded"
            );
            let header = request.headers()["x-twilio-signature"].to_str().unwrap();
            let url = "https://concierge.example.com/webhooks/twilio/sms";
            assert_eq!(header, crypto::twilio::signature(TOKEN, url, &params));

            // What the server decodes from the body is what was signed.
            let body = request.body().unwrap().as_bytes().unwrap();
            let decoded: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap();
            assert_eq!(decoded, params);
            assert_eq!(
                crypto::twilio::validate_form(TOKEN, url, &decoded, Some(header)),
                Ok(())
            );
            assert_eq!(
                crypto::twilio::validate_form("another token", url, &decoded, Some(header)),
                Err(crypto::twilio::SignatureError::Invalid)
            );
        }
    }

    #[test]
    fn the_public_url_defaults_to_the_target() {
        let sms = sms("http://127.0.0.1:8080");
        assert_eq!(
            sms.signed_url(),
            "http://127.0.0.1:8080/webhooks/twilio/sms"
        );
        let form = sms.signed_form(7).unwrap();
        assert_eq!(
            form.signature,
            crypto::twilio::signature(TOKEN, sms.signed_url(), &sms.params(7))
        );
    }

    #[test]
    fn params_look_like_twilio() {
        let sms = sms("http://127.0.0.1:8080");
        let params = sms.params(42);
        let get = |name: &str| {
            let values: Vec<&str> = params
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert_eq!(values.len(), 1, "{name} appears {} times", values.len());
            values[0].to_owned()
        };
        assert_eq!(params.len(), 19);
        let sid = get("MessageSid");
        assert_eq!(sid.len(), 34);
        assert!(sid.starts_with("SM"));
        assert!(sid[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(get("SmsSid"), sid);
        assert_eq!(get("SmsMessageSid"), sid);
        assert_eq!(get("AccountSid").len(), 34);
        assert_eq!(get("To"), "+15550000000");
        assert_eq!(get("From"), "+15551000042");
        assert_eq!(get("NumMedia"), "0");
        assert_eq!(get("SmsStatus"), "received");
        assert_eq!(get("ApiVersion"), "2010-04-01");
        assert!(!get("Body").is_empty());
    }

    #[test]
    fn sids_are_unique_and_users_cycle() {
        let sms = sms("http://127.0.0.1:8080");
        let mut sids = HashSet::new();
        for seq in 0..50_000 {
            assert!(sids.insert(message_sid(sms.nonce, seq)));
        }
        assert_eq!(from_number(0), "+15551000000");
        assert_eq!(from_number(MAX_USERS - 1), "+15559999999");
        for i in [0, 1, 9_999, MAX_USERS - 1] {
            assert!(PhoneNumber::parse(&from_number(i)).is_ok());
        }
        let from = |seq| {
            sms.params(seq)
                .into_iter()
                .find(|(n, _)| n == "From")
                .unwrap()
                .1
        };
        assert_eq!(from(3), from(10_003));
        assert_ne!(from(3), from(4));
    }

    #[test]
    fn a_to_number_among_the_users_is_refused() {
        http::install_crypto_provider();
        let config = |to| SmsConfig {
            url: "http://x",
            public_url: "http://x",
            auth_token: TOKEN.to_owned(),
            to,
            account_sid: DEFAULT_ACCOUNT_SID.to_owned(),
            users: 10,
        };
        assert!(Sms::new(reqwest::Client::new(), config("+15551000009")).is_err());
        assert!(Sms::new(reqwest::Client::new(), config("+15551000010")).is_ok());
        assert!(Sms::new(reqwest::Client::new(), config("+15550999999")).is_ok());
        assert!(Sms::new(reqwest::Client::new(), config("5550000000")).is_err());
        assert_eq!(user_index(&from_number(1234)), Some(1234));
        assert_eq!(user_index("+155510000001"), None);
    }
}
