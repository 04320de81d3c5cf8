//! `concierge healthcheck`: asks a running server for `/health` (or `/ready`) and exits 0 on
//! `200 OK`, 1 otherwise, printing one line. It is the image's Docker `HEALTHCHECK` (the
//! distroless image has no curl), so it opens no database and reads no key, and it never
//! exits 2, which Docker reserves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use crate::config::{self, CliOverrides};

/// The whole check, connecting included.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Checks `<url>/health` (`/ready` with `ready`); without `url`, the configured public
/// listener (`http.listen`, so `--listen` and `CONCIERGE_HTTP__LISTEN` apply).
pub async fn run(
    url: Option<String>,
    ready: bool,
    config_file: Option<&Path>,
    env: &[(String, String)],
    overrides: &CliOverrides,
    json: bool,
) -> ExitCode {
    let base = match url {
        Some(url) => url.trim().trim_end_matches('/').to_owned(),
        None => match config::load(config_file, env, overrides) {
            Ok(loaded) => base_url(loaded.settings.http.listen),
            Err(err) => {
                return report(
                    json,
                    "",
                    None,
                    &format!("cannot find the listen address: {err:#}; pass --url"),
                    Duration::ZERO,
                );
            }
        },
    };
    let url = format!("{base}{}", if ready { "/ready" } else { "/health" });
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return report(
            json,
            &url,
            None,
            "--url must start with http:// or https://",
            Duration::ZERO,
        );
    }
    let client = match reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            return report(
                json,
                &url,
                None,
                &format!("cannot build the HTTP client: {err}"),
                Duration::ZERO,
            );
        }
    };
    let started = Instant::now();
    match client.get(&url).send().await {
        Ok(response) => {
            let status = response.status();
            let detail = status.canonical_reason().unwrap_or_default().to_owned();
            report(
                json,
                &url,
                Some(status.as_u16()),
                &detail,
                started.elapsed(),
            )
        }
        Err(err) => {
            let detail = if err.is_timeout() {
                format!("no answer within {} s", TIMEOUT.as_secs())
            } else {
                let err = err.without_url();
                let mut text = err.to_string();
                let mut source = std::error::Error::source(&err);
                while let Some(e) = source {
                    text.push_str(": ");
                    text.push_str(&e.to_string());
                    source = e.source();
                }
                text
            };
            report(json, &url, None, &detail, started.elapsed())
        }
    }
}

/// `http://` + the listen address, with a wildcard address replaced by 127.0.0.1: the check
/// runs next to the server. IPv4 loopback for `[::]` too, since containers often have no
/// `::1` while a `[::]` listener also accepts IPv4.
pub fn base_url(listen: SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        listen.ip()
    };
    format!("http://{}", SocketAddr::new(ip, listen.port()))
}

/// Prints the one line and picks the exit code: 0 only for `200`.
fn report(json: bool, url: &str, status: Option<u16>, detail: &str, took: Duration) -> ExitCode {
    let healthy = status == Some(200);
    if json {
        out!(
            "{}",
            serde_json::json!({
                "url": url,
                "healthy": healthy,
                "status": status,
                "detail": detail,
                "elapsed_ms": u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            })
        );
    } else {
        let verdict = if healthy { "healthy" } else { "unhealthy" };
        match status {
            Some(code) => out!(
                "{verdict}: GET {url} -> {code} {detail} ({} ms)",
                took.as_millis()
            ),
            None if url.is_empty() => out!("{verdict}: {detail}"),
            None => out!("{verdict}: GET {url} failed: {detail}"),
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listeners_are_checked_on_loopback() {
        let addr = |s: &str| s.parse::<SocketAddr>().expect("addr");
        assert_eq!(base_url(addr("0.0.0.0:8080")), "http://127.0.0.1:8080");
        assert_eq!(base_url(addr("[::]:8080")), "http://127.0.0.1:8080");
        assert_eq!(base_url(addr("10.1.2.3:80")), "http://10.1.2.3:80");
        assert_eq!(base_url(addr("[::1]:9000")), "http://[::1]:9000");
    }
}
