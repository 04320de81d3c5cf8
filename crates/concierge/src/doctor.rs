//! `concierge doctor`: the effective configuration (secrets redacted) and a check of each
//! dependency. Exits non-zero when a required check fails.

use std::process::ExitCode;

use secrecy::ExposeSecret;
use serde::Serialize;

use crate::app;
use crate::config::{self, Settings};

#[derive(Serialize)]
struct Check {
    name: &'static str,
    ok: bool,
    /// Failing a required check makes the exit code non-zero.
    required: bool,
    detail: String,
}

pub async fn run(settings: &Settings, json: bool) -> anyhow::Result<ExitCode> {
    let mut checks = Vec::new();
    match app::open_store(settings).await {
        Ok(stores) => {
            checks.push(Check {
                name: "database",
                ok: true,
                required: true,
                detail: format!("{} reachable", stores.data.backend().as_str()),
            });
            match stores.data.migration_status().await {
                Ok(s) => checks.push(Check {
                    name: "migrations",
                    ok: s.is_current(),
                    required: true,
                    detail: format!("{} of {} applied", s.applied, s.known),
                }),
                Err(e) => checks.push(Check {
                    name: "migrations",
                    ok: false,
                    required: true,
                    detail: e.to_string(),
                }),
            }
        }
        Err(e) => checks.push(Check {
            name: "database",
            ok: false,
            required: true,
            detail: format!("{e:#}"),
        }),
    }
    match &settings.redis_url {
        Some(url) => {
            let result = match integrations::pacing::RedisPacer::connect(url.expose_secret()).await
            {
                Ok(redis) => redis.ping().await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            checks.push(Check {
                name: "redis",
                ok: result.is_ok(),
                required: true,
                detail: result.err().unwrap_or_else(|| "reachable".into()),
            });
        }
        None => checks.push(Check {
            name: "redis",
            ok: true,
            required: false,
            detail: "not configured: in-process pacing".into(),
        }),
    }
    match app::master_key(settings) {
        Ok(key) => checks.push(Check {
            name: "master_key",
            ok: true,
            required: true,
            detail: format!("present (id {})", key.id()),
        }),
        Err(e) => checks.push(Check {
            name: "master_key",
            ok: false,
            required: true,
            detail: format!("{e:#}"),
        }),
    }
    let token = app::twilio_auth_token(settings).ok().flatten();
    checks.push(Check {
        name: "twilio_webhooks",
        ok: token.is_some(),
        required: false,
        detail: if token.is_some() {
            format!("signatures checked against {}", app::public_url(settings))
        } else {
            "no auth token: webhooks answer 503".into()
        },
    });
    let sending = settings.twilio.account_sid.is_some() && settings.twilio.auth_token.is_some();
    checks.push(Check {
        name: "twilio_sending",
        ok: sending,
        required: false,
        detail: if sending {
            format!("via {}", settings.twilio.api_base)
        } else {
            "no account sid/auth token: replies that miss the inline budget are not sent".into()
        },
    });

    let ok = checks.iter().all(|c| c.ok || !c.required);
    if json {
        out!(
            "{}",
            serde_json::json!({ "ok": ok, "config": config::redacted(settings), "checks": checks })
        );
    } else {
        out!("effective configuration (secrets redacted):");
        out!(
            "{}",
            serde_json::to_string_pretty(&config::redacted(settings))?
        );
        out!();
        for c in &checks {
            let mark = if c.ok {
                "ok  "
            } else if c.required {
                "FAIL"
            } else {
                "warn"
            };
            out!("[{mark}] {:<16} {}", c.name, c.detail);
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
