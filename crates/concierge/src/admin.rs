//! `concierge admin`: tenants, API keys and knowledge-base entries, written straight to the
//! database, so a running server sees them at once.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use domain::{PhoneNumber, TenantId, TenantName};
use store::{KbEntryInput, NewApiKey, NewTenant, StoreError};

use crate::app;
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Tenants.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Tenant API keys.
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
    /// Knowledge-base entries.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and assign it one or more Twilio numbers.
    Create {
        #[arg(long)]
        name: String,
        /// E.164 number routed to this tenant (repeatable).
        #[arg(long = "phone", required = true)]
        phones: Vec<String>,
    },
    /// List tenants.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and only its digest is stored.
    Create {
        #[arg(long)]
        tenant: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum KbCommand {
    /// Add an entry.
    Add {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        title: String,
        #[arg(long)]
        body: String,
    },
}

fn tenant_json(t: &store::Tenant) -> serde_json::Value {
    serde_json::json!({
        "id": t.id,
        "name": t.name.as_str(),
        "phone_numbers": t.phone_numbers,
        "created_at": t.created_at.to_string(),
    })
}

pub fn parse_tenant(raw: &str) -> anyhow::Result<TenantId> {
    raw.parse().map_err(|_| {
        anyhow::anyhow!("--tenant must be a tenant id (a UUID); see `concierge admin tenant list`")
    })
}

pub async fn run(
    settings: &Settings,
    command: AdminCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let stores = app::open_store(settings).await?;
    match command {
        AdminCommand::Tenant {
            command: TenantCommand::Create { name, phones },
        } => {
            let name = TenantName::parse(&name).map_err(|e| anyhow::anyhow!("--name: {e}"))?;
            let phone_numbers = phones
                .iter()
                .map(|p| PhoneNumber::parse(p).map_err(|e| anyhow::anyhow!("--phone {p:?}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let tenant = match stores
                .data
                .create_tenant(NewTenant {
                    name,
                    phone_numbers,
                })
                .await
            {
                Err(StoreError::Conflict(m)) => anyhow::bail!("{m}"),
                other => other?,
            };
            if json {
                out!("{}", tenant_json(&tenant));
            } else {
                out!(
                    "created tenant {} ({}) with {}",
                    tenant.id,
                    tenant.name.as_str(),
                    join(&tenant.phone_numbers)
                );
            }
        }
        AdminCommand::Tenant {
            command: TenantCommand::List,
        } => {
            let tenants = stores.data.list_tenants().await?;
            if json {
                out!(
                    "{}",
                    serde_json::Value::Array(tenants.iter().map(tenant_json).collect())
                );
            } else {
                for t in &tenants {
                    out!("{}  {}  {}", t.id, t.name.as_str(), join(&t.phone_numbers));
                }
            }
        }
        AdminCommand::ApiKey {
            command: ApiKeyCommand::Create { tenant },
        } => {
            let tenant = parse_tenant(&tenant)?;
            let generated = crypto::api_key::generate();
            let record = match stores
                .data
                .create_api_key(
                    tenant,
                    NewApiKey {
                        prefix: generated.prefix.clone(),
                        digest: generated.digest,
                    },
                )
                .await
            {
                Err(StoreError::NotFound) => anyhow::bail!("no tenant {tenant}"),
                other => other.context("creating the API key")?,
            };
            if json {
                out!(
                    "{}",
                    serde_json::json!({ "id": record.id, "tenant_id": tenant, "prefix": record.prefix, "key": generated.key })
                );
            } else {
                out!("{}", generated.key);
                eprintln!(
                    "API key {} for tenant {tenant}: shown once, store it now.",
                    record.id
                );
            }
        }
        AdminCommand::Kb {
            command:
                KbCommand::Add {
                    tenant,
                    title,
                    body,
                },
        } => {
            let tenant = parse_tenant(&tenant)?;
            let (title, body) = (title.trim().to_owned(), body.trim().to_owned());
            anyhow::ensure!(
                !title.is_empty() && title.chars().count() <= 200,
                "--title must have 1 to 200 characters"
            );
            anyhow::ensure!(
                !body.is_empty() && body.chars().count() <= 20_000,
                "--body must have 1 to 20,000 characters"
            );
            let entry = match stores
                .data
                .add_kb_entry(tenant, KbEntryInput { title, body })
                .await
            {
                Err(StoreError::NotFound) => anyhow::bail!("no tenant {tenant}"),
                other => other?,
            };
            if json {
                out!(
                    "{}",
                    serde_json::json!({ "id": entry.id, "tenant_id": tenant, "title": entry.title, "body": entry.body, "created_at": entry.created_at.to_string() })
                );
            } else {
                out!("added entry {} to tenant {tenant}", entry.id);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn join(phones: &[PhoneNumber]) -> String {
    phones
        .iter()
        .map(PhoneNumber::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
