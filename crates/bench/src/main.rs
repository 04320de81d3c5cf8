//! `concierge-loadgen`: load generator for the Concierge server (SMS webhooks, web chat).
// A CLI: printing the results on stdout is its job.
#![allow(clippy::print_stdout)]

mod chat;
mod histogram;
mod http;
mod report;
mod runner;
mod sms;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::report::Report;
use crate::runner::{Plan, Scenario, Stop};

#[derive(Debug, Parser)]
#[command(
    name = "concierge-loadgen",
    version,
    about = "Load generator for the Concierge server",
    long_about = "Load generator for the Concierge server. Closed loop by default (each worker \
                  sends as soon as its previous request completes); --rate switches to an open \
                  loop on a fixed schedule, with latency measured from each request's scheduled \
                  time. Exits 1 when more than --max-error-pct of the requests failed."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Signed Twilio inbound-SMS webhooks to POST {url}/webhooks/twilio/sms.
    Sms(SmsArgs),
    /// Web-chat turns to POST {url}/api/v1/chat/messages, one conversation per worker.
    Chat(ChatArgs),
    /// A model that answers at once: a local server speaking OpenAI Chat Completions, for
    /// measuring the turn path without model time. Runs until interrupted.
    FakeLlm(FakeLlmArgs),
}

#[derive(Debug, Args)]
struct FakeLlmArgs {
    /// Address to listen on; the base URL to configure is http://<listen>/v1.
    #[arg(long, default_value = "127.0.0.1:8099")]
    listen: std::net::SocketAddr,
    /// What every answer says.
    #[arg(long, default_value = "Happy to help.")]
    text: String,
}

#[derive(Debug, Args)]
struct SmsArgs {
    /// Base URL requests are sent to.
    #[arg(long)]
    url: String,
    /// The server's configured public URL, which the signature covers [default: --url].
    #[arg(long)]
    public_url: Option<String>,
    /// The tenant's Twilio auth token.
    #[arg(long, env = "TWILIO_AUTH_TOKEN", hide_env_values = true)]
    auth_token: String,
    /// The tenant's number (the `To` of every message).
    #[arg(long)]
    to: String,
    /// `AccountSid` sent with every message.
    #[arg(long, default_value = sms::DEFAULT_ACCOUNT_SID)]
    account_sid: String,
    /// Distinct simulated users (`From` numbers), taken round-robin.
    #[arg(long, default_value_t = 10_000)]
    users: u64,
    /// Concurrent workers (connections); in open loop, the most requests in flight.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct ChatArgs {
    /// Base URL requests are sent to.
    #[arg(long)]
    url: String,
    /// API key, sent as `Authorization: Bearer <key>`.
    #[arg(long, env = "CONCIERGE_API_KEY", hide_env_values = true)]
    api_key: String,
    /// Concurrent conversations (one worker and connection each).
    #[arg(long, visible_alias = "concurrency", default_value_t = 20)]
    conversations: usize,
    /// Start a new conversation after this many turns (0: keep each one for the whole run).
    #[arg(long, default_value_t = 0)]
    turns_per_conversation: u64,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Args)]
struct LoadArgs {
    #[command(flatten)]
    stop: StopArgs,
    /// Unmeasured warm-up before measuring (e.g. 3s, 500ms, 0).
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    warmup: Duration,
    /// Open loop: send this many requests per second on a fixed schedule.
    /// Without it, closed loop as fast as the server answers.
    #[arg(long)]
    rate: Option<f64>,
    /// Per-request timeout; a timed-out request is a transport error.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    timeout: Duration,
    /// Runtime worker threads [default: number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
    /// Exit 1 when more than this percentage of the requests failed.
    #[arg(long, default_value_t = 1.0)]
    max_error_pct: f64,
    /// Print one JSON object instead of the text summary.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct StopArgs {
    /// How long to measure after the warm-up (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many requests to measure after the warm-up.
    #[arg(long)]
    requests: Option<u64>,
}

/// Parses `1h`, `2m`, `30s`, `1.5s`, `500ms`, `250us`; a bare number is seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} (use h, m, s, ms, us)"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

impl LoadArgs {
    fn plan(&self, concurrency: usize) -> anyhow::Result<Plan> {
        if concurrency == 0 {
            bail!("concurrency must be at least 1");
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            bail!("--rate must be a positive number of requests per second");
        }
        let stop = match (self.stop.duration, self.stop.requests) {
            (Some(d), None) if !d.is_zero() => Stop::Duration(d),
            (None, Some(n)) if n > 0 => Stop::Requests(n),
            _ => bail!("give a non-zero --duration or --requests"),
        };
        Ok(Plan {
            concurrency,
            warmup: self.warmup,
            stop,
            rate: self.rate,
        })
    }
}

/// Exit codes: 0 success, 1 too many failed requests (or none measured), 2 bad arguments or
/// set-up failure (clap uses 2 for usage errors too).
fn main() -> ExitCode {
    match try_main() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn try_main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Sms(args) => args.load.threads,
        Command::Chat(args) => args.load.threads,
        Command::FakeLlm(_) => Some(1),
    };
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = threads {
        runtime.worker_threads(threads.max(1));
    }
    runtime
        .build()
        .context("starting the async runtime")?
        .block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Sms(args) => {
            let plan = args.load.plan(args.concurrency)?;
            let client = http::client(plan.concurrency, args.load.timeout)?;
            let public_url = args.public_url.as_deref().unwrap_or(&args.url);
            let scenario = sms::Sms::new(
                client,
                sms::SmsConfig {
                    url: &args.url,
                    public_url,
                    auth_token: args.auth_token.clone(),
                    to: &args.to,
                    account_sid: args.account_sid.clone(),
                    users: args.users,
                },
            )?;
            let target = format!("{}{}", args.url.trim_end_matches('/'), sms::PATH);
            eprintln!("sms: signing over {}", scenario.signed_url());
            execute("sms", &target, scenario, plan, &args.load).await
        }
        Command::Chat(args) => {
            let plan = args.load.plan(args.conversations)?;
            let client = http::client(plan.concurrency, args.load.timeout)?;
            let scenario = chat::Chat::new(
                client,
                &args.url,
                &args.api_key,
                args.turns_per_conversation,
            )?;
            let target = format!("{}{}", args.url.trim_end_matches('/'), chat::PATH);
            execute("chat", &target, scenario, plan, &args.load).await
        }
        Command::FakeLlm(args) => {
            let fake = testkit::fake_llm::FakeOpenAi::start_on(args.listen, false).await;
            fake.set_default_text(&args.text);
            eprintln!("fake-llm: listening; base URL {}", fake.base_url());
            tokio::signal::ctrl_c()
                .await
                .context("waiting for Ctrl-C")?;
            eprintln!("fake-llm: answered {} requests", fake.calls());
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn execute<S: Scenario>(
    name: &'static str,
    target: &str,
    scenario: S,
    plan: Plan,
    load: &LoadArgs,
) -> anyhow::Result<ExitCode> {
    eprintln!(
        "{name}: {target}, {} {}, warm-up {:?}, {}",
        plan.concurrency,
        if plan.rate.is_some() {
            "max in flight"
        } else {
            "workers"
        },
        plan.warmup,
        match (plan.stop, plan.rate) {
            (Stop::Duration(d), None) => format!("closed loop for {d:?}"),
            (Stop::Requests(n), None) => format!("closed loop for {n} requests"),
            (Stop::Duration(d), Some(r)) => format!("{r} req/s for {d:?}"),
            (Stop::Requests(n), Some(r)) => format!("{r} req/s for {n} requests"),
        }
    );
    let result = runner::run(Arc::new(scenario), plan).await?;
    let report = Report {
        scenario: name,
        target,
        plan,
        result: &result,
    };
    if load.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.human());
    }
    if result.stats.requests() == 0 {
        eprintln!("error: no request was measured");
        return Ok(ExitCode::FAILURE);
    }
    let error_pct = report.error_rate() * 100.0;
    if error_pct > load.max_error_pct {
        eprintln!(
            "error: {error_pct:.2} % of the requests failed (limit {} %)",
            load.max_error_pct
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3 days").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_cli_parses_the_documented_invocations() {
        let cli = Cli::try_parse_from([
            "concierge-loadgen",
            "sms",
            "--url",
            "http://127.0.0.1:8080",
            "--auth-token",
            "T",
            "--to",
            "+15550000000",
            "--users",
            "10000",
            "--concurrency",
            "32",
            "--duration",
            "30s",
            "--rate",
            "500",
            "--json",
        ])
        .unwrap();
        let Command::Sms(args) = cli.command else {
            panic!("not sms")
        };
        let plan = args.load.plan(args.concurrency).unwrap();
        assert_eq!(plan.stop, Stop::Duration(Duration::from_secs(30)));
        assert_eq!(plan.rate, Some(500.0));
        assert_eq!(plan.warmup, Duration::from_secs(3));
        assert!(args.load.json);

        let cli = Cli::try_parse_from([
            "concierge-loadgen",
            "chat",
            "--url",
            "http://127.0.0.1:8080",
            "--api-key",
            "K",
            "--conversations",
            "20",
            "--requests",
            "1000",
        ])
        .unwrap();
        let Command::Chat(args) = cli.command else {
            panic!("not chat")
        };
        assert_eq!(
            args.load.plan(args.conversations).unwrap().stop,
            Stop::Requests(1000)
        );

        // Exactly one of --duration and --requests.
        let base = ["concierge-loadgen", "chat", "--url", "u", "--api-key", "K"];
        assert!(Cli::try_parse_from(base).is_err());
        let both = [&base[..], &["--duration", "1s", "--requests", "5"]].concat();
        assert!(Cli::try_parse_from(both).is_err());
    }
}
