//! Command-line interface: global configuration flags and the subcommands.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use domain::PhoneNumber;

use crate::config::{self, CliOverrides};
use crate::{admin, app, backup, chat, doctor, healthcheck, infra, profiles, simulate, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "concierge",
    version,
    about = "Concierge: a multi-tenant AI agent platform in one binary"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML configuration file (also CONCIERGE_CONFIG).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded default (SQLite, generated keys).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// sqlite://... or postgres://...
    #[arg(long, global = true)]
    pub database_url: Option<String>,
    #[arg(long, global = true)]
    pub redis_url: Option<String>,
    /// Public listener (API, webhooks, health).
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Admin listener (metrics); keep it private.
    #[arg(long, global = true)]
    pub admin_listen: Option<SocketAddr>,
    /// The base URL Twilio calls (used to verify signatures).
    #[arg(long, global = true)]
    pub public_url: Option<String>,
    /// Machine-readable output (accepted anywhere, also as the last argument).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API and webhooks (and run the worker too on the embedded SQLite default).
    Serve,
    /// Run background jobs (turns, outbound SMS).
    Worker,
    /// Serve and run the worker in one process.
    All,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the effective configuration (secrets redacted) and check every dependency.
    Doctor,
    /// Administration: tenants, API keys, knowledge base.
    Admin {
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Talk to a tenant's agents in the terminal, through the real turn path: each line you
    /// type is an inbound message, recorded and answered like any other.
    Chat {
        /// The tenant's id (`concierge admin tenant list`).
        #[arg(long)]
        tenant: String,
        /// Text as this phone number, to the tenant's first number (an SMS conversation,
        /// remembered across sessions); without it, a new web-chat conversation.
        #[arg(long = "as")]
        as_phone: Option<PhoneNumber>,
        /// Serve the conversation with this profile (built-in or the tenant's), whatever
        /// the tenant's default.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Agent profiles: the teams of agents that serve a tenant's conversations.
    Profile {
        #[command(subcommand)]
        command: profiles::ProfileCommand,
    },
    /// Send a signed test webhook to a running server, as Twilio would.
    Simulate {
        #[command(subcommand)]
        command: SimulateCommand,
    },
    /// Configuration reference.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Backups: create (encrypted, checksummed, verified, rotated), list, verify.
    Backup {
        #[command(subcommand)]
        command: backup::BackupCommand,
    },
    /// Restore a backup into an empty database (SQLite or PostgreSQL, whichever wrote it).
    Restore {
        /// The backup file (`concierge-<time>.ccbk`).
        file: std::path::PathBuf,
        /// Read and check everything and write it in a transaction, then roll it back.
        #[arg(long)]
        dry_run: bool,
    },
    /// Read a Hetzner Cloud project: inventory and deployment plan (never changes anything).
    Infra {
        #[command(subcommand)]
        command: infra::InfraCommand,
    },
    /// Ask a running server for /health (or /ready): exit 0 on 200, 1 otherwise. The image's
    /// Docker HEALTHCHECK; opens no database.
    Healthcheck {
        /// Server base URL (default: http://127.0.0.1:<port of http.listen>).
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        /// Check /ready (the server's dependencies too) instead of /health.
        #[arg(long)]
        ready: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// An inbound SMS from `--from` to the tenant number `--to`.
    Sms {
        #[arg(long)]
        from: PhoneNumber,
        #[arg(long)]
        to: PhoneNumber,
        #[arg(long)]
        body: String,
        /// Server base URL (default: the configured public URL).
        #[arg(long)]
        url: Option<String>,
        /// MessageSid to use (default: a new random one); reuse one to test replays.
        #[arg(long)]
        sid: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Every setting with its environment variable and default, as a Markdown table.
    Reference,
}

pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let overrides = CliOverrides {
        data_dir: cli.global.data_dir.clone(),
        database_url: cli.global.database_url.clone(),
        redis_url: cli.global.redis_url.clone(),
        listen: cli.global.listen,
        admin_listen: cli.global.admin_listen,
        public_url: cli.global.public_url.clone(),
    };
    let env: Vec<(String, String)> = std::env::vars().collect();
    if let Command::Config {
        command: ConfigCommand::Reference,
    } = cli.command
    {
        out!("{}", config_reference_markdown());
        return Ok(ExitCode::SUCCESS);
    }
    // Neither needs the configuration to be valid, nor opens the store.
    match cli.command {
        Command::Infra { command } => return infra::run(command, &env, cli.global.json).await,
        Command::Healthcheck { url, ready } => {
            let config_file = cli.global.config.as_deref();
            let json = cli.global.json;
            return Ok(healthcheck::run(url, ready, config_file, &env, &overrides, json).await);
        }
        _ => {}
    }
    let loaded = config::load(cli.global.config.as_deref(), &env, &overrides)
        .context("loading configuration")?;
    let long_running = matches!(cli.command, Command::Serve | Command::Worker | Command::All);
    let _telemetry = telemetry::init(&loaded.settings, long_running)?;
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    let settings = loaded.settings;
    let json = cli.global.json;
    match cli.command {
        Command::Serve => {
            app::serve(
                settings,
                app::Roles {
                    api: true,
                    worker: None,
                },
            )
            .await
        }
        Command::All => {
            app::serve(
                settings,
                app::Roles {
                    api: true,
                    worker: Some(true),
                },
            )
            .await
        }
        Command::Worker => {
            app::serve(
                settings,
                app::Roles {
                    api: false,
                    worker: Some(true),
                },
            )
            .await
        }
        Command::Migrate => {
            let store = app::open_store(&settings).await?;
            let status = store.data.migration_status().await?;
            if json {
                out!(
                    "{}",
                    serde_json::json!({ "applied": status.applied, "known": status.known })
                );
            } else {
                out!("migrations applied: {} of {}", status.applied, status.known);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => doctor::run(&settings, json).await,
        Command::Admin { command } => admin::run(&settings, command, json).await,
        Command::Simulate {
            command:
                SimulateCommand::Sms {
                    from,
                    to,
                    body,
                    url,
                    sid,
                },
        } => simulate::sms(&settings, &from, &to, &body, url, sid, json).await,
        Command::Chat {
            tenant,
            as_phone,
            profile,
        } => chat::run(&settings, &tenant, as_phone, profile, json).await,
        Command::Profile { command } => profiles::run(&settings, command, json).await,
        Command::Backup { command } => backup::run(&settings, command, json).await,
        Command::Restore { file, dry_run } => {
            backup::restore(&settings, &file, dry_run, json).await
        }
        Command::Config { .. } => Ok(ExitCode::SUCCESS),
        // Dispatched before the configuration is loaded.
        Command::Infra { .. } | Command::Healthcheck { .. } => Ok(ExitCode::SUCCESS),
    }
}

fn config_reference_markdown() -> String {
    let mut out = String::from(
        "| Environment variable | Key | Default | Secret (`_FILE` accepted) |\n|---|---|---|---|\n",
    );
    for doc in config::reference() {
        let default = if doc.default.is_empty() {
            "(unset)".to_owned()
        } else {
            format!("`{}`", doc.default)
        };
        out.push_str(&format!(
            "| `{}` | `{}` | {} | {} |\n",
            doc.env,
            doc.key,
            default.replace('|', "\\|"),
            if doc.secret { "yes" } else { "" }
        ));
    }
    out
}
