//! `concierge profile`: the teams of agents a tenant's conversations are served by. Profiles
//! are TOML (see docs/AGENTS.md); each `set` stores a new version, validated first, so a
//! tenant can go back to an earlier one (`show --version`, then `set` it again).

use std::path::PathBuf;
use std::process::ExitCode;

use agent::Profile;
use anyhow::Context as _;
use clap::Subcommand;

use crate::app;
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// The built-in profiles and the tenant's own, with the tenant's default.
    List {
        #[arg(long)]
        tenant: String,
    },
    /// Print a profile's TOML: the tenant's latest version (or `--version`), else the built-in.
    Show {
        #[arg(long)]
        tenant: Option<String>,
        name: String,
        #[arg(long)]
        version: Option<u32>,
    },
    /// Check a profile file without storing it.
    Validate { file: PathBuf },
    /// Store a profile file as the tenant's next version of the profile it names.
    Set {
        #[arg(long)]
        tenant: String,
        file: PathBuf,
        /// Also make it the tenant's default profile.
        #[arg(long)]
        default: bool,
    },
    /// Every stored version of one of the tenant's profiles, newest first.
    History {
        #[arg(long)]
        tenant: String,
        name: String,
    },
    /// Set (or with `--clear`, remove) the profile the tenant's new conversations get.
    Default {
        #[arg(long)]
        tenant: String,
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        clear: bool,
    },
}

fn read_profile(file: &PathBuf) -> anyhow::Result<(String, Profile)> {
    let meta = std::fs::metadata(file).with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(
        usize::try_from(meta.len()).unwrap_or(usize::MAX) <= agent::profile::MAX_SOURCE_BYTES,
        "{} is larger than {} bytes",
        file.display(),
        agent::profile::MAX_SOURCE_BYTES
    );
    let source =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let profile = Profile::parse(&source).with_context(|| file.display().to_string())?;
    Ok((source, profile))
}

pub async fn run(
    settings: &Settings,
    command: ProfileCommand,
    json: bool,
) -> anyhow::Result<ExitCode> {
    if let ProfileCommand::Validate { file } = &command {
        let (_, profile) = read_profile(file)?;
        if json {
            out!(
                "{}",
                serde_json::json!({"valid": true, "name": profile.name, "agents": profile.agents.keys().collect::<Vec<_>>()})
            );
        } else {
            out!(
                "{}: valid profile {:?} with {} agent(s): {}",
                file.display(),
                profile.name,
                profile.agents.len(),
                profile
                    .agents
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let ProfileCommand::Show {
        tenant: None,
        name,
        version: None,
    } = &command
    {
        let source = Profile::builtin_source(name).with_context(|| {
            format!(
                "no built-in profile {name:?}; built-in profiles: {}",
                agent::profile::BUILTIN.join(", ")
            )
        })?;
        out!("{}", source.trim_end());
        return Ok(ExitCode::SUCCESS);
    }
    let stores = app::open_store(settings).await?;
    let data = &stores.data;
    let tenant_of = |t: &str| crate::admin::parse_tenant(t);
    async fn ensure_tenant(stores: &store::Stores, id: domain::TenantId) -> anyhow::Result<()> {
        stores
            .data
            .get_tenant(id)
            .await?
            .with_context(|| format!("no tenant {id}; see `concierge admin tenant list`"))?;
        Ok(())
    }
    match command {
        // Needs no database: answered above.
        ProfileCommand::Validate { .. } => {}
        ProfileCommand::List { tenant } => {
            let tenant = tenant_of(&tenant)?;
            ensure_tenant(&stores, tenant).await?;
            let own = data.list_profiles(tenant).await?;
            let default = data
                .default_profile(tenant)
                .await?
                .unwrap_or_else(|| settings.agent.default_profile.clone());
            let mut rows: Vec<serde_json::Value> = own
                .iter()
                .map(|p| serde_json::json!({"name": p.name, "source": "tenant", "version": p.version, "created_at": p.created_at.to_string(), "default": p.name == default}))
                .collect();
            for name in agent::profile::BUILTIN {
                if !own.iter().any(|p| p.name == name) {
                    rows.push(serde_json::json!({"name": name, "source": "built-in", "version": 0, "created_at": null, "default": name == default}));
                }
            }
            if json {
                out!("{}", serde_json::Value::Array(rows));
            } else {
                for row in rows {
                    out!(
                        "{}{:<20} {:<9} v{}",
                        if row["default"] == true { "* " } else { "  " },
                        row["name"].as_str().unwrap_or_default(),
                        row["source"].as_str().unwrap_or_default(),
                        row["version"]
                    );
                }
            }
        }
        ProfileCommand::Show {
            tenant,
            name,
            version,
        } => {
            let tenant = tenant_of(
                tenant
                    .as_deref()
                    .context("--tenant is required with --version")?,
            )?;
            ensure_tenant(&stores, tenant).await?;
            match data.get_profile(tenant, &name, version).await? {
                Some(stored) => out!("{}", stored.source.trim_end()),
                None if version.is_none() => {
                    let source = Profile::builtin_source(&name)
                        .with_context(|| format!("no profile {name:?} for this tenant"))?;
                    out!("{}", source.trim_end());
                }
                None => anyhow::bail!("no version {} of profile {name:?}", version.unwrap_or(0)),
            }
        }
        ProfileCommand::Set {
            tenant,
            file,
            default,
        } => {
            let tenant = tenant_of(&tenant)?;
            ensure_tenant(&stores, tenant).await?;
            let (source, profile) = read_profile(&file)?;
            let stored = data.put_profile(tenant, &profile.name, &source).await?;
            if default {
                data.set_default_profile(tenant, Some(&profile.name))
                    .await?;
            }
            if json {
                out!(
                    "{}",
                    serde_json::json!({"name": stored.name, "version": stored.version, "default": default})
                );
            } else {
                out!(
                    "stored profile {:?} version {}{}",
                    stored.name,
                    stored.version,
                    if default {
                        " (now the tenant's default)"
                    } else {
                        ""
                    }
                );
            }
        }
        ProfileCommand::History { tenant, name } => {
            let tenant = tenant_of(&tenant)?;
            ensure_tenant(&stores, tenant).await?;
            let versions = data.profile_versions(tenant, &name).await?;
            if json {
                let rows: Vec<_> = versions
                    .iter()
                    .map(|p| serde_json::json!({"version": p.version, "created_at": p.created_at.to_string()}))
                    .collect();
                out!("{}", serde_json::Value::Array(rows));
            } else if versions.is_empty() {
                out!("the tenant has no stored version of {name:?}");
            } else {
                for p in versions {
                    out!("v{:<4} {}", p.version, p.created_at);
                }
            }
        }
        ProfileCommand::Default {
            tenant,
            name,
            clear,
        } => {
            let tenant = tenant_of(&tenant)?;
            ensure_tenant(&stores, tenant).await?;
            if clear {
                data.set_default_profile(tenant, None).await?;
                out!(
                    "the tenant uses the installation default ({})",
                    settings.agent.default_profile
                );
                return Ok(ExitCode::SUCCESS);
            }
            let Some(name) = name else {
                let current = data.default_profile(tenant).await?;
                out!(
                    "{}",
                    current.unwrap_or_else(|| format!(
                        "{} (installation default)",
                        settings.agent.default_profile
                    ))
                );
                return Ok(ExitCode::SUCCESS);
            };
            anyhow::ensure!(
                agent::profiles::exists(data.as_ref(), tenant, &name).await?,
                "no profile {name:?}: store it first with `concierge profile set`, or use a built-in ({})",
                agent::profile::BUILTIN.join(", ")
            );
            data.set_default_profile(tenant, Some(&name)).await?;
            out!("new conversations of this tenant get the profile {name:?}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
