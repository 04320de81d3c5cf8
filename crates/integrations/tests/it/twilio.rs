//! The Twilio client against `testkit::fake_twilio`, over real HTTP on 127.0.0.1.

use std::time::{Duration, Instant};

use domain::PhoneNumber;
use integrations::twilio::{OutboundSms, SentSms, SmsError, SmsSender, TwilioClient, TwilioConfig};
use secrecy::SecretString;
use testkit::fake_twilio::FakeTwilio;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "fake-auth-token";
const FROM: &str = "+15557654321";
const TO: &str = "+15551234567";

async fn fake() -> FakeTwilio {
    FakeTwilio::start(SID, TOKEN).await
}

fn config(fake: &FakeTwilio) -> TwilioConfig {
    let mut config = TwilioConfig::new(SID, SecretString::from(TOKEN));
    config.api_base = fake.base_url();
    config
}

fn client(config: TwilioConfig) -> TwilioClient {
    super::install_crypto_provider();
    TwilioClient::new(config).expect("client")
}

fn sms(body: &str) -> OutboundSms {
    OutboundSms {
        from: PhoneNumber::parse(FROM).expect("from"),
        to: PhoneNumber::parse(TO).expect("to"),
        body: body.to_owned(),
        status_callback: None,
    }
}

#[tokio::test]
async fn a_message_is_sent_and_twilio_sid_and_status_returned() {
    let fake = fake().await;
    let sent = client(config(&fake))
        .send_sms(&sms("Your table is booked"))
        .await
        .expect("sent");

    let received = fake.sent();
    assert_eq!(received.len(), 1);
    assert_eq!(
        sent,
        SentSms {
            sid: received[0].sid.clone(),
            status: "queued".to_owned()
        }
    );
    assert!(
        sent.sid.starts_with("SM") && sent.sid.len() == 34,
        "{}",
        sent.sid
    );
    assert_eq!(received[0].body, "Your table is booked");
}

#[tokio::test]
async fn the_request_carries_exactly_the_form_fields_and_basic_auth() {
    let fake = fake().await;
    let mut message = sms("Café & co: 100% booked? +1 = yes");
    message.status_callback = Some("https://app.example.com/twilio/status?t=1&x=y".to_owned());
    client(config(&fake))
        .send_sms(&message)
        .await
        .expect("sent");

    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.path_account_sid, SID);
    assert_eq!(request.basic_auth, Some((SID.to_owned(), TOKEN.to_owned())));
    assert_eq!(
        request.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
    let expected: Vec<(String, String)> = [
        ("To", TO),
        ("From", FROM),
        ("Body", "Café & co: 100% booked? +1 = yes"),
        (
            "StatusCallback",
            "https://app.example.com/twilio/status?t=1&x=y",
        ),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(request.form, expected);
    let received = &fake.sent()[0];
    assert_eq!((received.from.as_str(), received.to.as_str()), (FROM, TO));
    assert_eq!(
        received.status_callback.as_deref(),
        Some("https://app.example.com/twilio/status?t=1&x=y")
    );
}

#[tokio::test]
async fn no_status_callback_field_is_sent_when_none_is_set() {
    let fake = fake().await;
    client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect("sent");
    let form = &fake.requests()[0].form;
    assert!(form.iter().all(|(k, _)| k != "StatusCallback"), "{form:?}");
    assert_eq!(fake.sent()[0].status_callback, None);
}

#[tokio::test]
async fn a_503_is_retried_until_twilio_accepts() {
    let fake = fake().await;
    fake.fail_next(2, 503, None);
    let sent = client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect("sent after retries");
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.sent().len(), 1);
    assert_eq!(fake.sent()[0].sid, sent.sid);
}

#[tokio::test]
async fn retries_stop_after_max_retries_with_a_transient_error() {
    let fake = fake().await;
    fake.fail_next(10, 503, None);
    let mut config = config(&fake);
    config.max_retries = 2;
    let err = client(config)
        .send_sms(&sms("hi"))
        .await
        .expect_err("Twilio keeps failing");
    assert!(matches!(err, SmsError::Transient(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(fake.requests().len(), 3, "one attempt and two retries");
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn a_429_waits_for_retry_after_then_succeeds() {
    let fake = fake().await;
    fake.fail_next(1, 429, Some(20429));
    fake.set_retry_after(Some(1));
    let started = Instant::now();
    client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect("sent after the 429");
    let elapsed = started.elapsed();
    // Plain backoff would retry after 200-300 ms; Retry-After says 1 s.
    assert!(elapsed >= Duration::from_secs(1), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
}

#[tokio::test]
async fn an_opted_out_recipient_gives_opted_out_without_retry() {
    let fake = fake().await;
    fake.opt_out(TO);
    let err = client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect_err("recipient opted out");
    assert!(matches!(err, SmsError::OptedOut), "{err:?}");
    assert!(!err.is_retryable());
    assert_eq!(fake.requests().len(), 1);
    assert!(fake.sent().is_empty());
}

#[tokio::test]
async fn another_400_is_rejected_with_twilio_code_and_not_retried() {
    let fake = fake().await;
    fake.fail_next(1, 400, Some(21211));
    let err = client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect_err("rejected");
    match &err {
        SmsError::Rejected {
            status,
            code,
            message,
        } => {
            assert_eq!((*status, *code), (400, Some(21211)));
            assert_eq!(message, "Injected failure");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(fake.requests().len(), 1, "a 400 is never retried");
    // Display stays free of Twilio's free text, which may quote the number.
    assert_eq!(
        err.to_string(),
        "Twilio rejected the message (HTTP 400, Twilio code Some(21211))"
    );
}

#[tokio::test]
async fn a_wrong_auth_token_is_rejected_with_20003() {
    let fake = fake().await;
    let mut config = config(&fake);
    config.auth_token = SecretString::from("wrong");
    let err = client(config)
        .send_sms(&sms("hi"))
        .await
        .expect_err("unauthenticated");
    assert!(
        matches!(
            err,
            SmsError::Rejected {
                status: 401,
                code: Some(20003),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_500_is_transient_but_not_retried_because_the_message_may_exist() {
    let fake = fake().await;
    fake.fail_next(1, 500, Some(20500));
    let err = client(config(&fake))
        .send_sms(&sms("hi"))
        .await
        .expect_err("server error");
    assert!(matches!(err, SmsError::Transient(_)), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn a_slow_twilio_gives_transient_within_the_timeout_and_is_not_retried() {
    let fake = fake().await;
    fake.set_delay(Duration::from_secs(10));
    let mut config = config(&fake);
    config.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client(config)
        .send_sms(&sms("hi"))
        .await
        .expect_err("timed out");
    let elapsed = started.elapsed();
    assert!(matches!(err, SmsError::Transient(_)), "{err:?}");
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(elapsed >= Duration::from_millis(300), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
    // The fake processed it before answering slowly: retrying would have sent it twice.
    assert_eq!(fake.requests().len(), 1);
    assert_eq!(fake.sent().len(), 1);
}

#[tokio::test]
async fn a_refused_connection_is_retried_with_backoff_then_transient() {
    // A port that was just free: nothing listens there.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let mut config = TwilioConfig::new(SID, SecretString::from(TOKEN));
    config.api_base = format!("http://127.0.0.1:{port}");
    config.max_retries = 2;
    let started = Instant::now();
    let err = client(config)
        .send_sms(&sms("hi"))
        .await
        .expect_err("nothing listens");
    let elapsed = started.elapsed();
    assert!(matches!(err, SmsError::Transient(_)), "{err:?}");
    // Two backoffs of at least 200 ms and 400 ms prove both retries happened.
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
    assert!(!err.to_string().contains(SID), "{err}");
}

#[tokio::test]
async fn missing_credentials_are_not_configured() {
    super::install_crypto_provider();
    let err = TwilioClient::new(TwilioConfig::default()).expect_err("no credentials");
    assert!(matches!(err, SmsError::NotConfigured));
    let err =
        TwilioClient::new(TwilioConfig::new(SID, SecretString::from(""))).expect_err("no token");
    assert!(matches!(err, SmsError::NotConfigured));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn concurrent_sends_are_all_seen_by_wait_for_sent() {
    let fake = fake().await;
    let client = std::sync::Arc::new(client(config(&fake)));
    for i in 0..3 {
        let client = std::sync::Arc::clone(&client);
        tokio::spawn(async move { client.send_sms(&sms(&format!("message {i}"))).await });
    }
    let sent = fake.wait_for_sent(3, Duration::from_secs(5)).await;
    assert_eq!(sent.len(), 3);
    let mut bodies: Vec<_> = sent.iter().map(|s| s.body.as_str()).collect();
    bodies.sort_unstable();
    assert_eq!(bodies, ["message 0", "message 1", "message 2"]);
    let mut sids: Vec<_> = sent.iter().map(|s| s.sid.as_str()).collect();
    sids.sort_unstable();
    sids.dedup();
    assert_eq!(sids.len(), 3, "sids are unique");
}

#[tokio::test]
async fn wait_for_sent_returns_what_arrived_when_the_timeout_passes() {
    let fake = fake().await;
    client(config(&fake))
        .send_sms(&sms("only one"))
        .await
        .expect("sent");
    let started = Instant::now();
    let sent = fake.wait_for_sent(2, Duration::from_millis(200)).await;
    assert_eq!(sent.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(200));
}
