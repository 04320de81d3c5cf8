//! Role wiring: opens the store, resolves keys, builds the message path and runs the API
//! listener, the admin listener and the worker until a shutdown signal.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use async_trait::async_trait;
use crypto::MasterKey;
use domain::{PhoneNumber, TenantName};
use integrations::pacing::{LocalPacer, Pacer, RedisPacer};
use integrations::twilio::{SmsSender, TwilioClient, TwilioConfig};
use messaging::{Messaging, MessagingConfig, Outbox, OutboxConfig, Vault};
use secrecy::{ExposeSecret, SecretString};
use store::{KbEntryInput, NewTenant, Stores};
use store_postgres::{PgSettings, PgStore};
use store_sqlite::SqliteStore;
use tokio::sync::watch;

use crate::config::{LlmProvider, LlmSettings, Settings};
use crate::telemetry;
use llm::ChatModel;

/// The engine that answers turns: the model from `llm` settings with the offline engine as
/// its fallback, or the offline engine alone.
/// The turn engine, the profile resolver it shares with the outbox, and the knowledge
/// retriever whose index the workers keep up to date.
pub struct Engine {
    pub turns: Arc<dyn agent::TurnEngine>,
    pub profiles: Arc<agent::Profiles>,
    pub retriever: Arc<agent::retrieval::Retriever>,
}

/// Builds the turn engine: a team of agents over the configured model, or the offline
/// engine alone without one. `forced_profile` serves every conversation with that profile
/// (`concierge chat --profile`).
pub fn turn_engine(
    settings: &Settings,
    stores: &Stores,
    forced_profile: Option<String>,
) -> anyhow::Result<Engine> {
    let profiles = Arc::new(agent::Profiles::new(
        stores.data.clone(),
        settings.agent.default_profile.clone(),
        forced_profile,
    ));
    let time_zone = jiff::tz::TimeZone::get(&settings.agent.timezone)
        .with_context(|| format!("agent.timezone {:?}", settings.agent.timezone))?;
    let retriever = Arc::new(agent::retrieval::Retriever::new(
        stores.data.clone(),
        embedder(settings)?,
        agent::retrieval::RetrieverConfig::default(),
    ));
    let offline: Arc<dyn agent::TurnEngine> = Arc::new(
        agent::KnowledgeResponder::new(
            stores.data.clone(),
            settings.messaging.fallback_message.clone(),
        )
        .with_queue(stores.queue.clone())
        .with_profiles(profiles.clone())
        .with_retriever(retriever.clone())
        .with_time_zone(time_zone.clone()),
    );
    let http = model_http(&settings.llm);
    let policy = llm::RetryPolicy {
        max_attempts: settings.llm.max_attempts,
        ..llm::RetryPolicy::default()
    };
    let cache = llm::CacheConfig {
        max_entries: settings.llm.cache_max_entries,
        ttl: Duration::from_secs(settings.llm.cache_ttl_secs),
        ..llm::CacheConfig::default()
    };
    let prices = price_table(&settings.llm)?;
    // The installation's model, behind retries and a breaker; the response cache goes
    // outside both (a hit costs no provider call at all).
    let installation = chat_model(&settings.llm, http, policy)?.map(|chat| {
        let cached = cache
            .is_enabled()
            .then(|| llm::ResponseCache::new(chat.clone(), cache));
        agent::ModelChoice::installation(chat, prices.clone(), cached)
    });
    let models = Arc::new(agent::Models::new(
        installation,
        stores.data.clone(),
        agent::TenantModelsConfig {
            http,
            policy,
            allow_private: settings.llm.tenant_private_endpoints,
            cache,
        },
    ));
    let config = agent::LlmEngineConfig {
        system_prompt: settings.llm.system_prompt.clone(),
        history: settings.llm.history_messages,
        max_tool_rounds: settings.llm.max_tool_rounds,
        max_tokens: settings.llm.max_tokens,
        redact_pii: settings.llm.redact_pii,
        budget: agent::Budget {
            tenant_daily_usd: settings.llm.tenant_daily_budget_usd,
            end_user_daily_usd: settings.llm.end_user_daily_budget_usd,
            message: settings.llm.budget_message.clone(),
        },
        tool_timeout: Duration::from_millis(settings.agent.tool_timeout_ms),
        time_zone,
    };
    let registry = agent::Registry::builtin(
        stores.data.clone(),
        stores.queue.clone(),
        Some(retriever.clone()),
        None,
        config.tool_timeout,
    );
    // Tenants may bring their own model even when the installation has none, so the model
    // engine always runs; a tenant with no model at all is answered by the offline engine.
    let engine = agent::LlmEngine::new(
        models,
        stores.data.clone(),
        registry,
        profiles.clone(),
        offline,
        config,
    );
    Ok(Engine {
        turns: Arc::new(engine),
        profiles,
        retriever,
    })
}

/// The configured embedding provider behind retries and a circuit breaker; None without one.
fn embedder(settings: &Settings) -> anyhow::Result<Option<Arc<dyn llm::Embedder>>> {
    use crate::config::EmbeddingProvider;
    let e = &settings.embeddings;
    let http = model_http(&settings.llm);
    let key = || e.api_key.clone().unwrap_or_else(|| SecretString::from(""));
    let embedder: Arc<dyn llm::Embedder> = match e.provider {
        EmbeddingProvider::None => return Ok(None),
        EmbeddingProvider::Openai | EmbeddingProvider::OpenaiCompatible => {
            let mut config = if e.provider == EmbeddingProvider::Openai {
                llm::embed::OpenAiEmbedConfig::openai(key(), &e.model)
            } else {
                llm::embed::OpenAiEmbedConfig::compatible(
                    "openai_compatible",
                    e.base_url.clone().unwrap_or_default(),
                    &e.model,
                )
            };
            if let Some(base) = &e.base_url {
                config.base_url.clone_from(base);
            }
            config.api_key.clone_from(&e.api_key);
            config.http = http;
            Arc::new(llm::embed::OpenAiEmbedder::new(config)?)
        }
        EmbeddingProvider::Gemini => {
            let mut config = llm::embed::GeminiEmbedConfig::new(key(), &e.model);
            if let Some(base) = &e.base_url {
                config.base_url.clone_from(base);
            }
            config.http = http;
            Arc::new(llm::embed::GeminiEmbedder::new(config)?)
        }
    };
    let policy = llm::RetryPolicy {
        max_attempts: settings.llm.max_attempts,
        ..llm::RetryPolicy::default()
    };
    Ok(Some(Arc::new(llm::Resilient::embedders(
        vec![embedder],
        policy,
    ))))
}

/// Time limits of model calls.
fn model_http(llm: &LlmSettings) -> llm::HttpSettings {
    llm::HttpSettings {
        connect_timeout: Duration::from_millis(llm.connect_timeout_ms),
        first_byte_timeout: Duration::from_millis(llm.first_byte_timeout_ms),
        idle_timeout: Duration::from_millis(llm.first_byte_timeout_ms),
        total_timeout: Duration::from_millis(llm.total_timeout_ms),
        public_only: false,
    }
}

/// `llm.prices` over the default `llm.price_*_per_mtok`.
fn price_table(llm: &LlmSettings) -> anyhow::Result<llm::PriceTable> {
    let entries = llm::PriceTable::parse_entries(&llm.prices).context("llm.prices")?;
    Ok(llm::PriceTable::new(
        llm::Prices {
            input_per_mtok: llm.price_input_per_mtok,
            output_per_mtok: llm.price_output_per_mtok,
        },
        entries,
    ))
}

/// The configured provider behind retries and a circuit breaker; None without one.
fn chat_model(
    llm: &LlmSettings,
    http: llm::HttpSettings,
    policy: llm::RetryPolicy,
) -> anyhow::Result<Option<Arc<dyn ChatModel>>> {
    use llm::ProviderKind;
    let provider = match llm.provider {
        LlmProvider::None => return Ok(None),
        LlmProvider::Openai => ProviderKind::Openai,
        LlmProvider::OpenaiCompatible => ProviderKind::OpenaiCompatible,
        LlmProvider::Anthropic => ProviderKind::Anthropic,
        LlmProvider::Gemini => ProviderKind::Gemini,
    };
    let settings = llm::ProviderSettings {
        provider,
        model: llm.model.clone(),
        base_url: llm.base_url.clone(),
        api_key: llm.api_key.as_ref().map(|k| k.expose_secret().to_owned()),
        input_per_mtok: None,
        output_per_mtok: None,
    };
    let model = settings.build(http)?;
    Ok(Some(Arc::new(llm::Resilient::new(vec![model], policy))))
}

/// Opens the configured database and applies migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Stores> {
    if settings.is_embedded() {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("creating data directory {}", settings.data_dir.display()))?;
    }
    connect_store(settings, true).await
}

/// Connects to the configured database, applying migrations when `migrate` is set (the
/// embedded SQLite file is created on first connection).
pub async fn connect_store(settings: &Settings, migrate: bool) -> anyhow::Result<Stores> {
    let url = settings.database_url_or_default();
    if settings.is_embedded() {
        let store = SqliteStore::connect(&url)
            .await
            .context("opening the SQLite database")?;
        if migrate {
            store
                .migrate()
                .await
                .context("migrating the SQLite database")?;
        }
        Ok(Stores::new(store))
    } else {
        let pg = PgSettings {
            max_connections: settings.database.max_connections,
            acquire_timeout: Duration::from_secs(settings.database.acquire_timeout_secs),
            statement_timeout: Duration::from_secs(settings.database.statement_timeout_secs),
        };
        let store = PgStore::connect(&url, &pg)
            .await
            .context("connecting to PostgreSQL")?;
        if migrate {
            store
                .migrate()
                .await
                .context("migrating the PostgreSQL database")?;
        }
        Ok(Stores::new(store))
    }
}

/// Where a secret the embedded default generates on first start lives, and whether it is
/// already there (for `doctor`, which must not create anything).
pub fn generated_secret_path(settings: &Settings, file: &str) -> Option<(PathBuf, bool)> {
    settings.is_embedded().then(|| {
        let path = settings.data_dir.join(file);
        let exists = path.exists();
        (path, exists)
    })
}

pub const MASTER_KEY_FILE: &str = "master.key";
pub const DEV_TOKEN_FILE: &str = "twilio-dev-auth-token";

/// Reads a secret kept in the data directory, generating it on first use (embedded
/// default only: production passes keys through configuration).
pub(crate) fn data_dir_secret(
    dir: &Path,
    file: &str,
    generate: impl FnOnce() -> String,
    what: &str,
) -> anyhow::Result<String> {
    let path = dir.join(file);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(existing.trim().to_owned());
    }
    std::fs::create_dir_all(dir)?;
    let value = generate();
    write_private(&path, &value).with_context(|| format!("writing {}", path.display()))?;
    tracing::warn!(path = %path.display(), "generated a {what} for the embedded default; set it in configuration for production");
    Ok(value)
}

#[cfg(unix)]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(value.as_bytes())?;
    f.write_all(b"\n")
}

#[cfg(not(unix))]
fn write_private(path: &Path, value: &str) -> std::io::Result<()> {
    std::fs::write(path, format!("{value}\n"))
}

/// The master key: configured, or (embedded default) generated into the data directory.
pub fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    let encoded = match &settings.master_key {
        Some(key) => key.expose_secret().to_owned(),
        None if settings.is_embedded() => data_dir_secret(
            &settings.data_dir,
            MASTER_KEY_FILE,
            || MasterKey::generate().to_base64(),
            "master key",
        )?,
        None => bail!(
            "CONCIERGE_MASTER_KEY is required with PostgreSQL (base64 of 32 random bytes: `openssl rand -base64 32`)"
        ),
    };
    MasterKey::from_base64(&encoded).map_err(|e| anyhow::anyhow!("CONCIERGE_MASTER_KEY: {e}"))
}

/// The Twilio auth token that signs webhooks: configured, or (embedded default) a
/// development token in the data directory so `concierge simulate sms` works offline.
pub fn twilio_auth_token(settings: &Settings) -> anyhow::Result<Option<SecretString>> {
    if let Some(token) = &settings.twilio.auth_token {
        return Ok(Some(token.clone()));
    }
    if settings.is_embedded() {
        let token = data_dir_secret(
            &settings.data_dir,
            DEV_TOKEN_FILE,
            || uuid::Uuid::new_v4().simple().to_string(),
            "development Twilio auth token",
        )?;
        return Ok(Some(SecretString::from(token)));
    }
    Ok(None)
}

/// Where Twilio reaches this server: configured, or the local listener.
pub fn public_url(settings: &Settings) -> String {
    settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", settings.http.listen))
}

/// The demo tenant of the embedded default, created once on an empty database.
pub const DEMO_NUMBER: &str = "+15005550006";

async fn ensure_demo_tenant(stores: &Stores) -> anyhow::Result<()> {
    if !stores.data.list_tenants().await?.is_empty() {
        return Ok(());
    }
    let tenant = stores
        .data
        .create_tenant(NewTenant {
            name: TenantName::parse("Demo Dental")?,
            phone_numbers: vec![PhoneNumber::parse(DEMO_NUMBER)?],
        })
        .await?;
    for (title, body) in [
        (
            "Opening hours",
            "We are open Monday to Friday from 9am to 6pm, and Saturday from 9am to noon.",
        ),
        (
            "Prices",
            "A check-up costs 60 euros and a scale and polish 80 euros. We accept cards and cash.",
        ),
        (
            "Address and parking",
            "We are at 12 Harbour Street. Free parking behind the building.",
        ),
    ] {
        stores
            .data
            .add_kb_entry(
                tenant.id,
                KbEntryInput {
                    title: title.into(),
                    body: body.into(),
                },
            )
            .await?;
    }
    tracing::info!(tenant_id = %tenant.id, number = DEMO_NUMBER, "created the demo tenant");
    Ok(())
}

/// Which roles this process runs. `worker: None` means: with the embedded default only.
pub struct Roles {
    pub api: bool,
    pub worker: Option<bool>,
}

struct RedisProbe(Arc<RedisPacer>);

#[async_trait]
impl api::Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

pub async fn serve(settings: Settings, roles: Roles) -> anyhow::Result<ExitCode> {
    let metrics = telemetry_handle()?;
    let stores = open_store(&settings).await?;
    if settings.is_embedded() {
        ensure_demo_tenant(&stores).await?;
    }
    let master = master_key(&settings)?;
    let vault = Arc::new(Vault::new(master, stores.data.clone()));
    let engine = turn_engine(&settings, &stores, None)?;
    let node_id = format!(
        "{}-{}",
        std::process::id(),
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );

    let mut probes: Vec<Arc<dyn api::Probe>> = Vec::new();
    let pacer: Arc<dyn Pacer> = match &settings.redis_url {
        Some(url) => {
            let redis = Arc::new(
                RedisPacer::connect(url.expose_secret())
                    .await
                    .context("connecting to Redis")?,
            );
            probes.push(Arc::new(RedisProbe(redis.clone())));
            redis
        }
        None => Arc::new(LocalPacer::new()),
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();

    // Admin listener: metrics, never public.
    let admin_listener = tokio::net::TcpListener::bind(settings.admin.listen)
        .await
        .with_context(|| format!("binding the admin listener on {}", settings.admin.listen))?;
    let render: Arc<dyn Fn() -> String + Send + Sync> = Arc::new(move || metrics.render());
    {
        let mut rx = shutdown_rx.clone();
        tasks.spawn(async move {
            let _ = axum::serve(admin_listener, api::admin_router(render))
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await;
        });
    }
    tasks.spawn(jobs::monitor_queue(
        stores.queue.clone(),
        Duration::from_secs(5),
        shutdown_rx.clone(),
    ));

    let run_worker = roles.worker.unwrap_or(settings.is_embedded());
    if run_worker {
        let sender: Arc<dyn SmsSender> =
            match (&settings.twilio.account_sid, &settings.twilio.auth_token) {
                (Some(sid), Some(token)) => Arc::new(
                    TwilioClient::new(TwilioConfig {
                        api_base: settings.twilio.api_base.clone(),
                        timeout: Duration::from_secs(settings.twilio.timeout_secs),
                        ..TwilioConfig::new(sid.clone(), token.clone())
                    })
                    .map_err(|e| anyhow::anyhow!("Twilio client: {e}"))?,
                ),
                _ => Arc::new(Unconfigured),
            };
        let outbox = Arc::new(
            Outbox::new(
                stores.clone(),
                vault.clone(),
                engine.turns.clone(),
                sender,
                pacer,
                OutboxConfig {
                    public_url: settings.public_url.clone(),
                    send_interval: Duration::from_millis(settings.twilio.send_interval_ms),
                    turn_timeout: Duration::from_secs(60),
                    send_max_attempts: settings.messaging.max_attempts,
                },
            )
            .with_profiles(engine.profiles.clone()),
        );
        let runner = jobs::Runner::new(
            stores.queue.clone(),
            outbox,
            jobs::RunnerConfig {
                concurrency: settings.worker.concurrency,
                lease: Duration::from_secs(settings.worker.lease_secs),
                poll_interval: Duration::from_millis(settings.worker.poll_interval_ms),
                retry: domain::jobs::RetryPolicy {
                    max_attempts: settings.messaging.max_attempts,
                    ..Default::default()
                },
                node_id: node_id.clone(),
                shutdown_grace: Duration::from_secs(settings.worker.shutdown_grace_secs),
            },
        );
        let runner = match settings.backup.daily_time() {
            Some(at) => {
                let config = crate::backup::BackupConfig::from_settings(&settings)
                    .context("backup.daily_at is set")?;
                tracing::info!(at = %at, dir = %config.dir.display(), "daily backups scheduled (UTC)");
                tasks.spawn(jobs::schedule_daily(
                    stores.queue.clone(),
                    domain::jobs::JobKind::Backup,
                    at,
                    3,
                    shutdown_rx.clone(),
                ));
                tasks.spawn(crate::backup::watch_directory(
                    config.dir.clone(),
                    shutdown_rx.clone(),
                ));
                runner.with_maintenance(crate::backup::maintenance(stores.clone(), config))
            }
            None => runner,
        };
        tasks.spawn(runner.run(shutdown_rx.clone()));
        if settings.embeddings.provider != crate::config::EmbeddingProvider::None {
            tasks.spawn(engine.retriever.clone().index_loop(
                Duration::from_secs(settings.embeddings.index_interval_secs),
                shutdown_rx.clone(),
            ));
        }
    }

    if roles.api {
        let messaging = Arc::new(Messaging::new(
            stores.clone(),
            vault,
            engine.turns.clone(),
            MessagingConfig {
                inline_budget: Duration::from_millis(settings.messaging.inline_budget_ms),
                max_attempts: settings.messaging.max_attempts,
                node_id,
            },
        ));
        let state = api::AppState::new(
            stores.clone(),
            messaging,
            api::ApiConfig {
                public_url: public_url(&settings),
                twilio_auth_token: twilio_auth_token(&settings)?,
                validate_signatures: settings.twilio.validate_signatures,
                max_body_bytes: settings.http.max_body_bytes,
                request_timeout: Duration::from_secs(settings.http.request_timeout_secs),
                default_profile: settings.agent.default_profile.clone(),
                tenant_private_endpoints: settings.llm.tenant_private_endpoints,
            },
            probes,
        );
        let listener = tokio::net::TcpListener::bind(settings.http.listen)
            .await
            .with_context(|| format!("binding {}", settings.http.listen))?;
        tracing::info!(listen = %settings.http.listen, admin = %settings.admin.listen, worker = run_worker, backend = stores.data.backend().as_str(), "concierge is serving");
        let mut rx = shutdown_rx.clone();
        tasks.spawn(async move {
            if let Err(e) = axum::serve(listener, api::router(state))
                .with_graceful_shutdown(async move {
                    let _ = rx.wait_for(|s| *s).await;
                })
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
    } else {
        tracing::info!(admin = %settings.admin.listen, backend = stores.data.backend().as_str(), "concierge worker is running");
    }

    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests and jobs");
    let _ = shutdown_tx.send(true);
    let grace = Duration::from_secs(settings.worker.shutdown_grace_secs + 5);
    if tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} })
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within the grace period");
    }
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn telemetry_handle() -> anyhow::Result<metrics_exporter_prometheus::PrometheusHandle> {
    let handle = telemetry::metrics_handle().context("metrics recorder not installed")?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// Used when Twilio credentials are not configured: outbound SMS fail fast and visibly.
struct Unconfigured;

#[async_trait]
impl SmsSender for Unconfigured {
    async fn send_sms(
        &self,
        _sms: &integrations::twilio::OutboundSms,
    ) -> Result<integrations::twilio::SentSms, integrations::twilio::SmsError> {
        Err(integrations::twilio::SmsError::NotConfigured)
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
