//! `concierge simulate sms`: signs and posts an inbound SMS webhook exactly as Twilio does,
//! so the whole path can be tried without a Twilio account.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use domain::PhoneNumber;
use secrecy::ExposeSecret;

use crate::app;
use crate::config::Settings;

pub async fn sms(
    settings: &Settings,
    from: &PhoneNumber,
    to: &PhoneNumber,
    body: &str,
    url: Option<String>,
    sid: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let token = app::twilio_auth_token(settings)?.context(
        "no Twilio auth token configured (CONCIERGE_TWILIO__AUTH_TOKEN) to sign the request",
    )?;
    let public = app::public_url(settings);
    let base = url.unwrap_or_else(|| public.clone());
    let sid = sid.unwrap_or_else(|| format!("SM{}", uuid::Uuid::new_v4().simple()));
    let account = settings
        .twilio
        .account_sid
        .clone()
        .unwrap_or_else(|| format!("AC{}", "0".repeat(32)));
    let params: Vec<(String, String)> = [
        ("ToCountry", "US"),
        ("SmsMessageSid", sid.as_str()),
        ("NumMedia", "0"),
        ("SmsSid", sid.as_str()),
        ("SmsStatus", "received"),
        ("Body", body),
        ("To", to.as_str()),
        ("MessageSid", sid.as_str()),
        ("AccountSid", account.as_str()),
        ("From", from.as_str()),
        ("ApiVersion", "2010-04-01"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // Twilio signs the public URL it was configured with.
    let signature = crypto::twilio::signature(
        token.expose_secret(),
        &format!("{public}/webhooks/twilio/sms"),
        &params,
    );
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?
        .post(format!("{base}/webhooks/twilio/sms"))
        .header("X-Twilio-Signature", signature)
        .form(&params)
        .send()
        .await
        .with_context(|| format!("posting to {base}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if json {
        out!(
            "{}",
            serde_json::json!({ "status": status.as_u16(), "message_sid": sid, "body": text })
        );
    } else {
        out!("HTTP {status}  (MessageSid {sid})\n{text}");
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
