//! `concierge doctor`: the effective configuration (secrets redacted) and a check of each
//! dependency. Exits non-zero when a required check fails.

use std::path::PathBuf;
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
    let embedded_db = settings
        .is_embedded()
        .then(|| settings.database_url_or_default())
        .map(|url| {
            PathBuf::from(
                url.trim_start_matches("sqlite://")
                    .trim_start_matches("sqlite:"),
            )
        });
    match embedded_db {
        // Looking must not create: the file appears at the first `serve` or `migrate`.
        Some(path) if !path.exists() => checks.push(Check {
            name: "database",
            ok: false,
            required: true,
            detail: format!(
                "{} does not exist yet: `concierge migrate` or the first start creates it",
                path.display()
            ),
        }),
        _ => match app::connect_store(settings, false).await {
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
                        detail: if s.is_current() {
                            format!("{} of {} applied", s.applied, s.known)
                        } else {
                            format!(
                                "{} of {} applied: run `concierge migrate` (serve also migrates at start)",
                                s.applied, s.known
                            )
                        },
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
        },
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
    match app::generated_secret_path(settings, app::MASTER_KEY_FILE) {
        Some((path, false)) if settings.master_key.is_none() => checks.push(Check {
            name: "master_key",
            ok: true,
            required: true,
            detail: format!(
                "not set: the first start generates one into {}",
                path.display()
            ),
        }),
        _ => match app::master_key(settings) {
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
        },
    }
    let token_file = app::generated_secret_path(settings, app::DEV_TOKEN_FILE);
    let pending_token =
        settings.twilio.auth_token.is_none() && matches!(token_file, Some((_, false)));
    let token = if pending_token {
        None
    } else {
        app::twilio_auth_token(settings).ok().flatten()
    };
    checks.push(Check {
        name: "twilio_webhooks",
        ok: token.is_some() || pending_token,
        required: false,
        detail: if token.is_some() {
            format!("signatures checked against {}", app::public_url(settings))
        } else if pending_token {
            "not set: the first start generates a development token into the data directory".into()
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

    let (backups_ok, backups_required, detail) = crate::backup::doctor(settings);
    checks.push(Check {
        name: "backups",
        ok: backups_ok,
        required: backups_required,
        detail,
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
