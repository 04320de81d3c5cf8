//! Logging (text or JSON, never secrets or PII) and the Prometheus recorder.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, Settings};

pub struct Telemetry;

static METRICS: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();

/// The Prometheus handle of a long-running role.
pub fn metrics_handle() -> Option<PrometheusHandle> {
    METRICS.get().cloned()
}

/// Starts logging; long-running roles also get the metrics recorder. One-shot commands log
/// warnings and errors only, to stderr, so their stdout stays machine-readable.
pub fn init(settings: &Settings, long_running: bool) -> anyhow::Result<Telemetry> {
    let level = if long_running {
        settings.log_level.clone()
    } else {
        "warn".to_owned()
    };
    let filter = EnvFilter::try_from_env("RUST_LOG").or_else(|_| EnvFilter::try_new(&level))?;
    let registry = tracing_subscriber::registry().with(filter);
    match settings.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init()?,
    }
    if long_running {
        let handle = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])?
            // Counts, not seconds: how many message-path writes shared one transaction.
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full("concierge_db_batch_size".into()),
                &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            )?
            .install_recorder()?;
        let _ = METRICS.set(handle);
    }
    Ok(Telemetry)
}
