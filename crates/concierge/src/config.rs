//! Typed configuration: defaults < TOML file < `CONCIERGE_*` environment < command line, loaded once.
//!
//! `load` is the only entry point that reads the outside world (the config file and any `*_FILE`
//! secret files); the environment is passed in so tests never touch the process environment.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use figment::providers::{Format as _, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Prefix of every environment variable we read.
const PREFIX: &str = "CONCIERGE_";
/// Names the TOML file when `--config` is not given.
const CONFIG_VAR: &str = "CONCIERGE_CONFIG";
/// Test-harness knobs; not settings, never warned about.
const TEST_PREFIX: &str = "CONCIERGE_TEST_";
/// `<VAR>_FILE` names a file holding the secret `<VAR>`.
const FILE_SUFFIX: &str = "_FILE";
/// Dotted keys of the settings that hold secrets.
const SECRET_KEYS: [&str; 7] = [
    "database_url",
    "redis_url",
    "master_key",
    "twilio.auth_token",
    "llm.api_key",
    "embeddings.api_key",
    "backup.key",
];
/// What a set secret serializes as.
const REDACTED: &str = "<redacted>";
/// Name of the environment provider in figment's metadata (used to phrase errors).
const ENV_SOURCE: &str = "environment";

/// The whole configuration of one Concierge process.
///
/// `Serialize` redacts secrets (`"<redacted>"` when set, `null` when not), so serializing a
/// `Settings` can never leak one; `Debug` is safe too because secrets are `SecretString`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Directory for the embedded database and other local state.
    pub data_dir: PathBuf,
    /// `sqlite:...` or `postgres://...`; unset means the SQLite file `<data_dir>/concierge.db`.
    #[serde(serialize_with = "redact")]
    pub database_url: Option<SecretString>,
    /// `redis://...`; unset means in-process queues and rate limits.
    #[serde(serialize_with = "redact")]
    pub redis_url: Option<SecretString>,
    /// Public base URL (what Twilio calls), without a trailing slash.
    pub public_url: Option<String>,
    /// Base64 of 32 random bytes; encrypts stored credentials.
    #[serde(serialize_with = "redact")]
    pub master_key: Option<SecretString>,
    pub log_format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `info,concierge=debug`.
    pub log_level: String,
    pub http: HttpSettings,
    pub admin: AdminSettings,
    pub twilio: TwilioSettings,
    pub messaging: MessagingSettings,
    pub worker: WorkerSettings,
    pub database: DatabaseSettings,
    pub llm: LlmSettings,
    pub agent: AgentSettings,
    pub embeddings: EmbeddingSettings,
    pub backup: BackupSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            database_url: None,
            redis_url: None,
            public_url: None,
            master_key: None,
            log_format: LogFormat::default(),
            log_level: "info".to_owned(),
            http: HttpSettings::default(),
            admin: AdminSettings::default(),
            twilio: TwilioSettings::default(),
            messaging: MessagingSettings::default(),
            worker: WorkerSettings::default(),
            database: DatabaseSettings::default(),
            llm: LlmSettings::default(),
            agent: AgentSettings::default(),
            embeddings: EmbeddingSettings::default(),
            backup: BackupSettings::default(),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The public HTTP listener (API, webhooks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    pub request_timeout_secs: u64,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080),
            max_body_bytes: 64 * 1024,
            request_timeout_secs: 30,
        }
    }
}

/// The private listener (metrics, health, admin); never expose it publicly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSettings {
    pub listen: SocketAddr,
}

impl Default for AdminSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9090),
        }
    }
}

/// Twilio REST client and webhook verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwilioSettings {
    pub account_sid: Option<String>,
    #[serde(serialize_with = "redact")]
    pub auth_token: Option<SecretString>,
    pub api_base: String,
    pub timeout_secs: u64,
    /// Minimum gap between two messages from the same sender number.
    pub send_interval_ms: u64,
    pub validate_signatures: bool,
}

impl Default for TwilioSettings {
    fn default() -> Self {
        Self {
            account_sid: None,
            auth_token: None,
            api_base: "https://api.twilio.com".to_owned(),
            timeout_secs: 10,
            send_interval_ms: 1000,
            validate_signatures: true,
        }
    }
}

/// Inbound message handling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MessagingSettings {
    /// Reply inline as TwiML if the agent turn finishes within this budget.
    pub inline_budget_ms: u64,
    /// Sent when the agent cannot answer at all.
    pub fallback_message: String,
    pub max_attempts: u32,
}

impl Default for MessagingSettings {
    fn default() -> Self {
        Self {
            inline_budget_ms: 2000,
            fallback_message: "Thanks for your message! We'll get back to you shortly.".to_owned(),
            max_attempts: 8,
        }
    }
}

/// Background job runner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    pub concurrency: usize,
    pub lease_secs: u64,
    pub poll_interval_ms: u64,
    pub shutdown_grace_secs: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 8,
            lease_secs: 60,
            poll_interval_ms: 1000,
            shutdown_grace_secs: 20,
        }
    }
}

/// Connection pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub acquire_timeout_secs: u64,
    pub statement_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout_secs: 5,
            statement_timeout_secs: 15,
        }
    }
}

/// Which model provider answers turns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LlmProvider {
    /// No model: the offline engine (knowledge base + fallback message) answers.
    #[default]
    None,
    Openai,
    /// Any server speaking OpenAI Chat Completions (Ollama, vLLM, llama.cpp...).
    OpenaiCompatible,
    Anthropic,
    Gemini,
}

/// The model behind the agents. With a provider set, turns go to the model and fall back to
/// the offline engine when it cannot be reached.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmSettings {
    pub provider: LlmProvider,
    /// The provider's model name (required with a provider).
    pub model: String,
    #[serde(serialize_with = "redact")]
    pub api_key: Option<SecretString>,
    /// Overrides the provider's endpoint (required for `openai_compatible`, e.g.
    /// `http://127.0.0.1:11434/v1`).
    pub base_url: Option<String>,
    pub connect_timeout_ms: u64,
    /// Until the response headers arrive.
    pub first_byte_timeout_ms: u64,
    /// The whole model call.
    pub total_timeout_ms: u64,
    /// Calls per turn step, first included, before the offline engine answers.
    pub max_attempts: u32,
    /// Earlier messages sent with each turn.
    pub history_messages: u32,
    /// Rounds of tool calls per turn.
    pub max_tool_rounds: u32,
    pub max_tokens: u32,
    pub system_prompt: String,
    /// Mask e-mail addresses, phone numbers and card numbers before text reaches the model
    /// (restored in its reply).
    pub redact_pii: bool,
    /// The model's price in US dollars per million input tokens (for accounting and budgets).
    pub price_input_per_mtok: f64,
    /// The model's price in US dollars per million output tokens.
    pub price_output_per_mtok: f64,
    /// Prices of other models (agents' model overrides, tenants' own providers), as
    /// `model=input,output` entries separated by `;`, in US dollars per million tokens; a
    /// model is priced by its exact name, else the longest entry it starts with, else at
    /// `price_input_per_mtok`/`price_output_per_mtok`.
    pub prices: String,
    /// Whether tenants' own model endpoints may be `http` or internal addresses (model
    /// servers on the installation's own network); off, they must be public `https` URLs.
    pub tenant_private_endpoints: bool,
    /// Most a tenant may spend on the model per UTC day, in US dollars; 0 means no limit.
    pub tenant_daily_budget_usd: f64,
    /// Most one end user may cost per UTC day, in US dollars; 0 means no limit.
    pub end_user_daily_budget_usd: f64,
    /// The reply once a budget is spent.
    pub budget_message: String,
    /// How long an answer to an identical request is reused (per tenant); 0 turns the cache off.
    pub cache_ttl_secs: u64,
    /// Most answers kept by the response cache.
    pub cache_max_entries: usize,
}

impl Default for LlmSettings {
    fn default() -> Self {
        let engine = agent::LlmEngineConfig::default();
        Self {
            provider: LlmProvider::None,
            model: String::new(),
            api_key: None,
            base_url: None,
            connect_timeout_ms: 3000,
            first_byte_timeout_ms: 15_000,
            total_timeout_ms: 30_000,
            max_attempts: 2,
            history_messages: engine.history,
            max_tool_rounds: engine.max_tool_rounds,
            max_tokens: engine.max_tokens,
            system_prompt: engine.system_prompt,
            redact_pii: engine.redact_pii,
            price_input_per_mtok: 0.0,
            price_output_per_mtok: 0.0,
            prices: String::new(),
            tenant_private_endpoints: false,
            tenant_daily_budget_usd: 0.0,
            end_user_daily_budget_usd: 0.0,
            budget_message: engine.budget.message,
            cache_ttl_secs: 0,
            cache_max_entries: 1000,
        }
    }
}

/// The agent runtime: which team of agents serves conversations, and how tools run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentSettings {
    /// The profile of tenants that chose none: `receptionist`, `assistant`, `companion`,
    /// or the name of a profile the tenant stored.
    pub default_profile: String,
    /// IANA time zone for dates when the profile names none (e.g. `Europe/Paris`).
    pub timezone: String,
    /// Each tool call's own time limit.
    pub tool_timeout_ms: u64,
}

impl Default for AgentSettings {
    fn default() -> Self {
        Self {
            default_profile: "receptionist".to_owned(),
            timezone: "UTC".to_owned(),
            tool_timeout_ms: 5_000,
        }
    }
}

/// Which embedding provider the knowledge-base search uses for its vector half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddingProvider {
    /// Full-text search only.
    #[default]
    None,
    Openai,
    /// Any server speaking the OpenAI embeddings API (Ollama, vLLM, llama.cpp...).
    OpenaiCompatible,
    Gemini,
}

/// Vectors for hybrid knowledge-base search (full text always; vectors when a provider is set).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddingSettings {
    pub provider: EmbeddingProvider,
    /// The provider's embedding model (required with a provider).
    pub model: String,
    #[serde(serialize_with = "redact")]
    pub api_key: Option<SecretString>,
    /// Overrides the provider's endpoint, up to and including `/v1` (required for
    /// `openai_compatible`).
    pub base_url: Option<String>,
    /// How often workers embed new and changed knowledge-base entries.
    pub index_interval_secs: u64,
}

impl Default for EmbeddingSettings {
    fn default() -> Self {
        Self {
            provider: EmbeddingProvider::None,
            model: String::new(),
            api_key: None,
            base_url: None,
            index_interval_secs: 60,
        }
    }
}

/// Backups: where they go, the key that encrypts them, the daily schedule and retention.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BackupSettings {
    /// Directory of backup files; unset means `<data_dir>/backups`.
    pub dir: Option<PathBuf>,
    /// Base64 of 32 random bytes; encrypts backup files.
    #[serde(serialize_with = "redact")]
    pub key: Option<SecretString>,
    /// `HH:MM` (UTC) at which a worker takes the daily backup; unset means no schedule.
    pub daily_at: Option<String>,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
}

impl Default for BackupSettings {
    fn default() -> Self {
        Self {
            dir: None,
            key: None,
            daily_at: None,
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 12,
        }
    }
}

impl BackupSettings {
    /// The schedule as a time of day, if one is set (checked at load time).
    pub fn daily_time(&self) -> Option<jiff::civil::Time> {
        self.daily_at.as_deref().and_then(parse_hh_mm)
    }
}

fn parse_hh_mm(s: &str) -> Option<jiff::civil::Time> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    jiff::civil::Time::new(h.parse().ok()?, m.parse().ok()?, 0, 0).ok()
}

impl Settings {
    /// The explicit database URL, or the SQLite file `sqlite://<data_dir>/concierge.db`.
    pub fn database_url_or_default(&self) -> String {
        match &self.database_url {
            Some(url) => url.expose_secret().to_owned(),
            None => format!("sqlite://{}", self.data_dir.join("concierge.db").display()),
        }
    }

    /// Whether the database is the embedded SQLite one.
    pub fn is_embedded(&self) -> bool {
        has_scheme(&self.database_url_or_default(), &["sqlite:"])
    }

    /// Tidies values and rejects ones no component could use. Messages never include secrets.
    fn finish(mut self) -> anyhow::Result<Self> {
        for secret in [
            &mut self.database_url,
            &mut self.redis_url,
            &mut self.master_key,
        ] {
            drop_if_blank(secret);
        }
        drop_if_blank(&mut self.twilio.auth_token);
        drop_if_blank(&mut self.llm.api_key);
        drop_if_blank(&mut self.backup.key);
        let money = [
            (
                ["llm", "price_input_per_mtok"],
                self.llm.price_input_per_mtok,
            ),
            (
                ["llm", "price_output_per_mtok"],
                self.llm.price_output_per_mtok,
            ),
            (
                ["llm", "tenant_daily_budget_usd"],
                self.llm.tenant_daily_budget_usd,
            ),
            (
                ["llm", "end_user_daily_budget_usd"],
                self.llm.end_user_daily_budget_usd,
            ),
        ];
        for (path, value) in money {
            if !value.is_finite() || value < 0.0 {
                bail!("{} ({}) must be 0 or more", path.join("."), env_name(&path));
            }
        }
        let budgets =
            self.llm.tenant_daily_budget_usd > 0.0 || self.llm.end_user_daily_budget_usd > 0.0;
        if let Err(e) = llm::PriceTable::parse_entries(&self.llm.prices) {
            bail!("llm.prices ({}): {e}", env_name(&["llm", "prices"]));
        }
        let priced = self.llm.price_input_per_mtok > 0.0
            || self.llm.price_output_per_mtok > 0.0
            || !self.llm.prices.trim().is_empty();
        if budgets && !priced {
            bail!(
                "a daily budget is set but the model has no price: set llm.price_input_per_mtok and llm.price_output_per_mtok ({} and {})",
                env_name(&["llm", "price_input_per_mtok"]),
                env_name(&["llm", "price_output_per_mtok"])
            );
        }
        if budgets && self.llm.budget_message.trim().is_empty() {
            bail!("llm.budget_message must not be empty when a budget is set");
        }
        if !agent::profile::is_valid_name(&self.agent.default_profile) {
            bail!(
                "agent.default_profile ({}) must be a profile name such as receptionist",
                env_name(&["agent", "default_profile"])
            );
        }
        if jiff::tz::TimeZone::get(&self.agent.timezone).is_err() {
            bail!(
                "agent.timezone ({}) {:?} is not an IANA time zone such as Europe/Paris",
                env_name(&["agent", "timezone"]),
                self.agent.timezone
            );
        }
        if self.embeddings.provider != EmbeddingProvider::None {
            if self.embeddings.model.trim().is_empty() {
                bail!(
                    "embeddings.model ({}) is required when embeddings.provider is set",
                    env_name(&["embeddings", "model"])
                );
            }
            let keyed = matches!(
                self.embeddings.provider,
                EmbeddingProvider::Openai | EmbeddingProvider::Gemini
            );
            if keyed && self.embeddings.api_key.is_none() {
                bail!(
                    "embeddings.api_key ({} or {}_FILE) is required for this provider",
                    env_name(&["embeddings", "api_key"]),
                    env_name(&["embeddings", "api_key"])
                );
            }
            if self.embeddings.provider == EmbeddingProvider::OpenaiCompatible
                && self.embeddings.base_url.is_none()
            {
                bail!(
                    "embeddings.base_url ({}) is required for openai_compatible",
                    env_name(&["embeddings", "base_url"])
                );
            }
            if let Some(url) = &self.embeddings.base_url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                bail!(
                    "embeddings.base_url ({}) must start with http:// or https://",
                    env_name(&["embeddings", "base_url"])
                );
            }
            if self.embeddings.index_interval_secs == 0 {
                bail!(
                    "embeddings.index_interval_secs ({}) must be more than 0",
                    env_name(&["embeddings", "index_interval_secs"])
                );
            }
        }
        if self.agent.tool_timeout_ms == 0 {
            bail!(
                "agent.tool_timeout_ms ({}) must be more than 0",
                env_name(&["agent", "tool_timeout_ms"])
            );
        }
        if let Some(at) = &self.backup.daily_at {
            if at.trim().is_empty() {
                self.backup.daily_at = None;
            } else if parse_hh_mm(at).is_none() {
                bail!(
                    "backup.daily_at ({}) must be HH:MM in UTC, such as 03:30",
                    env_name(&["backup", "daily_at"])
                );
            }
        }
        if self.backup.keep_daily == 0
            && self.backup.keep_weekly == 0
            && self.backup.keep_monthly == 0
        {
            bail!(
                "backup retention keeps nothing: set at least one of backup.keep_daily, backup.keep_weekly, backup.keep_monthly"
            );
        }
        if self.llm.provider != LlmProvider::None {
            if self.llm.model.trim().is_empty() {
                bail!(
                    "llm.model ({}) is required when llm.provider is set",
                    env_name(&["llm", "model"])
                );
            }
            let needs_key = self.llm.provider != LlmProvider::OpenaiCompatible;
            if needs_key && self.llm.api_key.is_none() {
                bail!(
                    "llm.api_key ({} or {}_FILE) is required for this provider",
                    env_name(&["llm", "api_key"]),
                    env_name(&["llm", "api_key"])
                );
            }
            if self.llm.provider == LlmProvider::OpenaiCompatible && self.llm.base_url.is_none() {
                bail!(
                    "llm.base_url ({}) is required for openai_compatible",
                    env_name(&["llm", "base_url"])
                );
            }
        }
        if let Some(url) = &self.llm.base_url
            && !has_scheme(url, &["http://", "https://"])
        {
            bail!(
                "llm.base_url ({}) must start with http:// or https://",
                env_name(&["llm", "base_url"])
            );
        }

        self.public_url = match self.public_url.take() {
            None => None,
            Some(url) => {
                let url = url.trim().trim_end_matches('/');
                if url.is_empty() {
                    None
                } else if has_scheme(url, &["http://", "https://"]) {
                    Some(url.to_owned())
                } else {
                    bail!(
                        "public_url ({}) must start with http:// or https://, got {url:?}",
                        env_name(&["public_url"])
                    );
                }
            }
        };

        if let Some(url) = &self.database_url
            && !has_scheme(
                url.expose_secret(),
                &["sqlite:", "postgres://", "postgresql://"],
            )
        {
            bail!(
                "database_url ({}) must start with sqlite:, postgres:// or postgresql:// (value not shown)",
                env_name(&["database_url"])
            );
        }
        if let Some(url) = &self.redis_url
            && !has_scheme(
                url.expose_secret(),
                &["redis://", "rediss://", "redis+unix://", "unix://"],
            )
        {
            bail!(
                "redis_url ({}) must start with redis://, rediss://, redis+unix:// or unix:// (value not shown)",
                env_name(&["redis_url"])
            );
        }
        if self.log_level.trim().is_empty() {
            bail!("log_level ({}) must not be empty", env_name(&["log_level"]));
        }

        let at_least_one: [(&[&str], u64); 14] = [
            (&["llm", "connect_timeout_ms"], self.llm.connect_timeout_ms),
            (
                &["llm", "first_byte_timeout_ms"],
                self.llm.first_byte_timeout_ms,
            ),
            (&["llm", "total_timeout_ms"], self.llm.total_timeout_ms),
            (&["llm", "max_attempts"], u64::from(self.llm.max_attempts)),
            (&["llm", "max_tokens"], u64::from(self.llm.max_tokens)),
            (&["http", "max_body_bytes"], self.http.max_body_bytes as u64),
            (
                &["http", "request_timeout_secs"],
                self.http.request_timeout_secs,
            ),
            (&["twilio", "timeout_secs"], self.twilio.timeout_secs),
            (
                &["messaging", "max_attempts"],
                u64::from(self.messaging.max_attempts),
            ),
            (&["worker", "concurrency"], self.worker.concurrency as u64),
            (&["worker", "lease_secs"], self.worker.lease_secs),
            (
                &["worker", "poll_interval_ms"],
                self.worker.poll_interval_ms,
            ),
            (
                &["database", "max_connections"],
                u64::from(self.database.max_connections),
            ),
            (
                &["database", "acquire_timeout_secs"],
                self.database.acquire_timeout_secs,
            ),
        ];
        for (path, value) in at_least_one {
            if value == 0 {
                bail!("{} ({}) must be at least 1", path.join("."), env_name(path));
            }
        }
        // The webhook waits up to the inline budget for the turn, then still has to answer:
        // a request timeout inside the budget would cut replies off with a 503.
        if self.http.request_timeout_secs.saturating_mul(1000) <= self.messaging.inline_budget_ms {
            bail!(
                "http.request_timeout_secs ({}) must be longer than messaging.inline_budget_ms ({})",
                env_name(&["http", "request_timeout_secs"]),
                env_name(&["messaging", "inline_budget_ms"])
            );
        }
        Ok(self)
    }

    /// Legal but probably unintended combinations, reported as warnings.
    fn advisories(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.twilio.validate_signatures {
            out.push(
                "Twilio webhook signature validation is disabled (twilio.validate_signatures = false); \
                 never run like this in production"
                    .to_owned(),
            );
        }
        match (&self.twilio.account_sid, &self.twilio.auth_token) {
            (Some(_), None) => out.push(
                "twilio.account_sid is set but twilio.auth_token is not; Twilio calls will fail"
                    .to_owned(),
            ),
            (None, Some(_)) => out.push(
                "twilio.auth_token is set but twilio.account_sid is not; Twilio calls will fail"
                    .to_owned(),
            ),
            _ => {}
        }
        out
    }
}

/// Values given on the command line; each `Some` overrides everything else.
#[derive(Debug, Default, Clone)]
pub struct CliOverrides {
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    pub listen: Option<SocketAddr>,
    pub admin_listen: Option<SocketAddr>,
    pub public_url: Option<String>,
}

impl CliOverrides {
    fn apply(&self, settings: &mut Settings) {
        if let Some(dir) = &self.data_dir {
            settings.data_dir.clone_from(dir);
        }
        if let Some(url) = &self.database_url {
            settings.database_url = Some(SecretString::from(url.as_str()));
        }
        if let Some(url) = &self.redis_url {
            settings.redis_url = Some(SecretString::from(url.as_str()));
        }
        if let Some(addr) = self.listen {
            settings.http.listen = addr;
        }
        if let Some(addr) = self.admin_listen {
            settings.admin.listen = addr;
        }
        if let Some(url) = &self.public_url {
            settings.public_url = Some(url.clone());
        }
    }
}

/// The loaded settings plus warnings for `main` to log once tracing is up.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    pub warnings: Vec<String>,
}

/// Loads the configuration.
///
/// Layers, later wins: defaults < TOML file < environment `CONCIERGE_*` < `cli`.
///
/// - The file is `config_file`, else the path in `CONCIERGE_CONFIG`, else none. A file that was
///   named but cannot be read is an error.
/// - In the environment `__` separates nesting (`CONCIERGE_HTTP__LISTEN` is `http.listen`) and
///   top-level keys keep their underscores (`CONCIERGE_DATABASE_URL` is `database_url`). Names
///   are matched case-insensitively. An empty value counts as unset.
/// - Each secret (`database_url`, `redis_url`, `master_key`, `twilio.auth_token`) may instead be
///   read from the file named by `<VAR>_FILE`, with trailing newlines trimmed; setting both is an
///   error.
/// - Unknown `CONCIERGE_*` variables are warnings (with a suggestion when one is close), except
///   `CONCIERGE_CONFIG` and `CONCIERGE_TEST_*`. Unknown keys in the TOML file are errors.
pub fn load(
    config_file: Option<&Path>,
    env: &[(String, String)],
    cli: &CliOverrides,
) -> anyhow::Result<Loaded> {
    let specs = schema();
    let mut warnings = Vec::new();
    let env_layer = EnvLayer::from_vars(&specs, env, &mut warnings)?;

    let file_from_env = if config_file.is_none() {
        env.iter()
            .find(|(name, value)| name.eq_ignore_ascii_case(CONFIG_VAR) && !value.is_empty())
            .map(|(_, value)| PathBuf::from(value))
    } else {
        None
    };
    let config_file = config_file.or(file_from_env.as_deref());

    let mut figment = Figment::new();
    if let Some(path) = config_file {
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        if !meta.is_file() {
            bail!("config file {} is not a regular file", path.display());
        }
        figment = figment.merge(Toml::file_exact(path));
    }
    figment = figment.merge(env_layer);

    let mut settings: Settings = figment.extract().map_err(describe_figment_error)?;
    cli.apply(&mut settings);
    let settings = settings.finish()?;
    warnings.extend(settings.advisories());
    Ok(Loaded { settings, warnings })
}

/// The effective configuration with secrets redacted (`"<redacted>"` when set, `null` when
/// unset), for `concierge doctor`.
pub fn redacted(settings: &Settings) -> serde_json::Value {
    // Fails only for a non-UTF-8 `data_dir`; report that rather than panic.
    serde_json::to_value(settings).unwrap_or_else(
        |err| serde_json::json!({ "error": format!("cannot render settings: {err}") }),
    )
}

/// One setting, for generating `docs/CONFIGURATION.md` and checking it in CI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SettingDoc {
    /// Environment variable, e.g. `CONCIERGE_HTTP__LISTEN`. Secrets also accept `<env>_FILE`.
    pub env: String,
    /// Dotted key as in the TOML file, e.g. `http.listen`.
    pub key: String,
    /// The default rendered as text; empty when unset by default.
    pub default: String,
    pub secret: bool,
}

/// Every setting with its environment variable and default: top-level keys first, then each
/// table, alphabetically.
pub fn reference() -> Vec<SettingDoc> {
    schema()
        .into_iter()
        .map(|spec| SettingDoc {
            key: spec.path.join("."),
            default: match &spec.default {
                serde_json::Value::Null => String::new(),
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            },
            env: spec.env,
            secret: spec.secret,
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Schema: derived from the serialized defaults so it cannot drift from the structs.

struct KeySpec {
    path: Vec<String>,
    env: String,
    default: serde_json::Value,
    secret: bool,
}

impl KeySpec {
    /// Numbers and booleans go through figment's value parsing; everything else (strings,
    /// paths, addresses, enums, optional strings, secrets) is taken verbatim, so a numeric-looking
    /// token or SID stays a string.
    fn parses_value(&self) -> bool {
        matches!(
            self.default,
            serde_json::Value::Number(_) | serde_json::Value::Bool(_)
        )
    }
}

fn schema() -> Vec<KeySpec> {
    fn walk(prefix: &[String], value: &serde_json::Value, out: &mut Vec<KeySpec>) {
        let serde_json::Value::Object(map) = value else {
            return;
        };
        for (key, child) in map {
            let mut path = prefix.to_vec();
            path.push(key.clone());
            if child.is_object() {
                walk(&path, child, out);
            } else {
                let dotted = path.join(".");
                out.push(KeySpec {
                    env: env_name(&path),
                    secret: SECRET_KEYS.contains(&dotted.as_str()),
                    default: child.clone(),
                    path,
                });
            }
        }
    }

    // The defaults hold no secrets and a UTF-8 data_dir, so this cannot fail in practice; the
    // unit tests check the schema is complete.
    let defaults = serde_json::to_value(Settings::default()).unwrap_or(serde_json::Value::Null);
    let mut out = Vec::new();
    walk(&[], &defaults, &mut out);
    out.sort_by(|a, b| (a.path.len(), &a.path).cmp(&(b.path.len(), &b.path)));
    out
}

/// `["http", "listen"]` -> `CONCIERGE_HTTP__LISTEN`.
fn env_name<S: AsRef<str>>(path: &[S]) -> String {
    let joined: Vec<String> = path
        .iter()
        .map(|p| p.as_ref().to_ascii_uppercase())
        .collect();
    format!("{PREFIX}{}", joined.join("__"))
}

// ---------------------------------------------------------------------------------------------
// Environment layer.

/// The `CONCIERGE_*` settings found in the given environment, as a figment provider whose
/// errors name the variable.
struct EnvLayer {
    entries: Vec<(Vec<String>, Value)>,
}

impl EnvLayer {
    fn from_vars(
        specs: &[KeySpec],
        env: &[(String, String)],
        warnings: &mut Vec<String>,
    ) -> anyhow::Result<Self> {
        let by_env: HashMap<&str, &KeySpec> = specs.iter().map(|s| (s.env.as_str(), s)).collect();
        // Keyed by the setting's canonical variable name; an empty value counts as unset.
        let mut direct: BTreeMap<&str, &str> = BTreeMap::new();
        let mut files: BTreeMap<&str, &str> = BTreeMap::new();

        for (name, value) in env {
            let upper = name.to_ascii_uppercase();
            if !upper.starts_with(PREFIX) || upper == CONFIG_VAR || upper.starts_with(TEST_PREFIX) {
                continue;
            }
            if let Some(spec) = by_env.get(upper.as_str()) {
                if !value.is_empty() {
                    direct.insert(spec.env.as_str(), value.as_str());
                }
                continue;
            }
            if let Some(spec) = upper
                .strip_suffix(FILE_SUFFIX)
                .and_then(|base| by_env.get(base))
            {
                if spec.secret {
                    if !value.is_empty() {
                        files.insert(spec.env.as_str(), value.as_str());
                    }
                } else {
                    warnings.push(format!(
                        "unknown setting {name} (only secrets can be read from a file; set {} instead)",
                        spec.env
                    ));
                }
                continue;
            }
            warnings.push(match suggest(&upper, specs) {
                Some(candidate) => format!("unknown setting {name} (did you mean {candidate}?)"),
                None => format!("unknown setting {name}"),
            });
        }

        let mut entries = Vec::new();
        for spec in specs {
            let env = spec.env.as_str();
            let raw = match (direct.get(env), files.get(env)) {
                (None, None) => continue,
                (Some(_), Some(_)) => {
                    bail!("both {env} and {env}{FILE_SUFFIX} are set; set only one of them")
                }
                (Some(value), None) => (*value).to_owned(),
                (None, Some(path)) => read_secret_file(env, Path::new(path))?,
            };
            let value = if spec.parses_value() {
                let Ok(parsed) = raw.parse::<Value>();
                parsed
            } else {
                Value::from(raw)
            };
            entries.push((spec.path.clone(), value));
        }
        Ok(Self { entries })
    }
}

impl Provider for EnvLayer {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_SOURCE).interpolater(|_: &Profile, keys: &[&str]| env_name(keys))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (path, value) in &self.entries {
            insert_path(&mut root, path, value.clone());
        }
        Ok(Profile::Default.collect(root))
    }
}

fn insert_path(dict: &mut Dict, path: &[String], value: Value) {
    match path {
        [] => {}
        [key] => {
            dict.insert(key.clone(), value);
        }
        [table, rest @ ..] => {
            let child = dict
                .entry(table.clone())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, child) = child {
                insert_path(child, rest, value);
            }
        }
    }
}

fn read_secret_file(env: &str, path: &Path) -> anyhow::Result<String> {
    // The io::Error names the cause (not found, permission denied), never the content.
    let content = std::fs::read_to_string(path).map_err(|err| {
        anyhow::anyhow!(
            "{env}{FILE_SUFFIX}: cannot read secret file {}: {err}",
            path.display()
        )
    })?;
    let secret = content.trim_end_matches(['\n', '\r']);
    if secret.is_empty() {
        bail!(
            "{env}{FILE_SUFFIX}: secret file {} is empty",
            path.display()
        );
    }
    Ok(secret.to_owned())
}

/// The known variable an unknown one most likely meant: equal once underscores are ignored
/// (`CONCIERGE_HTTP_LISTEN` -> `CONCIERGE_HTTP__LISTEN`), else within two edits.
fn suggest(upper: &str, specs: &[KeySpec]) -> Option<String> {
    let candidates: Vec<String> = specs
        .iter()
        .flat_map(|spec| {
            let file = spec.secret.then(|| format!("{}{FILE_SUFFIX}", spec.env));
            std::iter::once(spec.env.clone()).chain(file)
        })
        .collect();
    let squash = |s: &str| s.replace('_', "");
    let wanted = squash(upper);
    if let Some(hit) = candidates.iter().find(|c| squash(c) == wanted) {
        return Some(hit.clone());
    }
    candidates
        .into_iter()
        .map(|c| (edit_distance(&squash(&c), &wanted), c))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Rewrites figment's errors so env errors name the variable and secret values never appear.
fn describe_figment_error(err: figment::Error) -> anyhow::Error {
    let messages: Vec<String> = err.into_iter().map(|e| describe_one(&e)).collect();
    anyhow::anyhow!("invalid configuration: {}", messages.join("; "))
}

fn describe_one(err: &figment::Error) -> String {
    let key = err.path.join(".");
    let what = if SECRET_KEYS.contains(&key.as_str()) {
        "invalid value (not shown: secret)".to_owned()
    } else {
        first_and_last_line(&err.kind.to_string())
    };
    match &err.metadata {
        Some(md) if md.name == ENV_SOURCE => format!("{}: {what}", env_name(&err.path)),
        Some(md) => {
            let origin = match md.source.as_ref().and_then(figment::Source::file_path) {
                Some(path) => path.display().to_string(),
                None => md.name.to_string(),
            };
            if key.is_empty() {
                format!("{origin}: {what}")
            } else {
                format!("{key} in {origin}: {what}")
            }
        }
        None if key.is_empty() => what,
        None => format!("{key}: {what}"),
    }
}

/// TOML syntax errors quote the offending line, which may hold a secret; keep the position (first
/// line) and the reason (last line) only.
fn first_and_last_line(message: &str) -> String {
    let mut lines = message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty());
    match (lines.next(), lines.next_back()) {
        (Some(first), Some(last)) => format!("{first}: {last}"),
        (Some(first), None) => first.to_owned(),
        _ => message.to_owned(),
    }
}

fn redact<S: Serializer>(secret: &Option<SecretString>, serializer: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => serializer.serialize_str(REDACTED),
        None => serializer.serialize_none(),
    }
}

fn drop_if_blank(secret: &mut Option<SecretString>) {
    if secret
        .as_ref()
        .is_some_and(|s| s.expose_secret().trim().is_empty())
    {
        *secret = None;
    }
}

/// Case-insensitive scheme prefix check.
fn has_scheme(url: &str, prefixes: &[&str]) -> bool {
    prefixes.iter().any(|prefix| {
        url.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A file under the temp dir, removed on drop.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(content: &str) -> Self {
            static NEXT: AtomicUsize = AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = std::env::temp_dir()
                .join(format!("concierge-config-test-{}-{n}", std::process::id()));
            std::fs::write(&path, content).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }

        fn display(&self) -> String {
            self.0.display().to_string()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load_env(pairs: &[(&str, &str)]) -> anyhow::Result<Loaded> {
        load(None, &vars(pairs), &CliOverrides::default())
    }

    fn error_of(result: anyhow::Result<Loaded>) -> String {
        format!("{:#}", result.expect_err("expected an error"))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults() {
        let loaded = load_env(&[]).unwrap();
        let s = loaded.settings;
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert!(s.database_url.is_none() && s.redis_url.is_none() && s.master_key.is_none());
        assert_eq!(s.public_url, None);
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.log_level, "info");
        assert_eq!(s.http.listen, addr("127.0.0.1:8080"));
        assert_eq!(s.http.max_body_bytes, 65536);
        assert_eq!(s.http.request_timeout_secs, 30);
        assert_eq!(s.admin.listen, addr("127.0.0.1:9090"));
        assert_eq!(s.twilio.account_sid, None);
        assert!(s.twilio.auth_token.is_none());
        assert_eq!(s.twilio.api_base, "https://api.twilio.com");
        assert_eq!(s.twilio.timeout_secs, 10);
        assert_eq!(s.twilio.send_interval_ms, 1000);
        assert!(s.twilio.validate_signatures);
        assert_eq!(s.messaging.inline_budget_ms, 2000);
        assert_eq!(
            s.messaging.fallback_message,
            "Thanks for your message! We'll get back to you shortly."
        );
        assert_eq!(s.messaging.max_attempts, 8);
        assert_eq!(
            s.worker,
            WorkerSettings {
                concurrency: 8,
                lease_secs: 60,
                poll_interval_ms: 1000,
                shutdown_grace_secs: 20
            }
        );
        assert_eq!(
            s.database,
            DatabaseSettings {
                max_connections: 16,
                acquire_timeout_secs: 5,
                statement_timeout_secs: 15
            }
        );
    }

    #[test]
    fn toml_file_layer() {
        let file = TempFile::new(
            r#"
            data_dir = "/var/lib/concierge"
            log_format = "json"
            public_url = "https://example.com/"
            master_key = "a2V5"

            [http]
            listen = "0.0.0.0:8000"

            [worker]
            concurrency = 2

            [twilio]
            account_sid = "AC123"
            auth_token = "tok"
            "#,
        );
        let s = load(Some(file.path()), &[], &CliOverrides::default())
            .unwrap()
            .settings;
        assert_eq!(s.data_dir, PathBuf::from("/var/lib/concierge"));
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.public_url.as_deref(), Some("https://example.com"));
        assert_eq!(s.master_key.unwrap().expose_secret(), "a2V5");
        assert_eq!(s.http.listen, addr("0.0.0.0:8000"));
        assert_eq!(
            s.http.request_timeout_secs, 30,
            "untouched keys in a table keep defaults"
        );
        assert_eq!(s.worker.concurrency, 2);
        assert_eq!(s.worker.lease_secs, 60);
        assert_eq!(s.twilio.auth_token.unwrap().expose_secret(), "tok");
    }

    #[test]
    fn a_model_provider_needs_what_it_needs() {
        let refused = |pairs: &[(&str, &str)], needle: &str| {
            let Err(err) = load_env(pairs) else {
                panic!("{pairs:?} should be refused");
            };
            assert!(err.to_string().contains(needle), "{err}");
        };
        refused(
            &[("CONCIERGE_LLM__PROVIDER", "anthropic")],
            "CONCIERGE_LLM__MODEL",
        );
        refused(
            &[
                ("CONCIERGE_LLM__PROVIDER", "anthropic"),
                ("CONCIERGE_LLM__MODEL", "claude"),
            ],
            "CONCIERGE_LLM__API_KEY",
        );
        refused(
            &[
                ("CONCIERGE_LLM__PROVIDER", "openai_compatible"),
                ("CONCIERGE_LLM__MODEL", "llama3"),
            ],
            "CONCIERGE_LLM__BASE_URL",
        );
        refused(
            &[
                ("CONCIERGE_LLM__PROVIDER", "openai_compatible"),
                ("CONCIERGE_LLM__MODEL", "llama3"),
                ("CONCIERGE_LLM__BASE_URL", "localhost:11434"),
            ],
            "http",
        );
        refused(
            &[("CONCIERGE_LLM__PROVIDER", "skynet")],
            "CONCIERGE_LLM__PROVIDER",
        );
        let ok = load_env(&[
            ("CONCIERGE_LLM__PROVIDER", "openai_compatible"),
            ("CONCIERGE_LLM__MODEL", "llama3"),
            ("CONCIERGE_LLM__BASE_URL", "http://127.0.0.1:11434/v1"),
        ])
        .unwrap()
        .settings;
        assert_eq!(ok.llm.provider, LlmProvider::OpenaiCompatible);
        assert!(ok.llm.api_key.is_none());
    }

    #[test]
    fn request_timeout_must_outlast_the_inline_budget() {
        let Err(err) = load_env(&[
            ("CONCIERGE_HTTP__REQUEST_TIMEOUT_SECS", "2"),
            ("CONCIERGE_MESSAGING__INLINE_BUDGET_MS", "2000"),
        ]) else {
            panic!("a timeout inside the budget is refused");
        };
        assert!(
            err.to_string()
                .contains("CONCIERGE_HTTP__REQUEST_TIMEOUT_SECS"),
            "{err}"
        );
        assert!(
            load_env(&[
                ("CONCIERGE_HTTP__REQUEST_TIMEOUT_SECS", "3"),
                ("CONCIERGE_MESSAGING__INLINE_BUDGET_MS", "2000"),
            ])
            .is_ok()
        );
    }

    #[test]
    fn budgets_need_prices_and_money_is_never_negative() {
        let Err(err) = load_env(&[("CONCIERGE_LLM__TENANT_DAILY_BUDGET_USD", "5")]) else {
            panic!("a budget without a price is refused");
        };
        assert!(err.to_string().contains("no price"), "{err}");
        let Err(err) = load_env(&[("CONCIERGE_LLM__PRICE_INPUT_PER_MTOK", "-1")]) else {
            panic!("a negative price is refused");
        };
        assert!(
            err.to_string()
                .contains("CONCIERGE_LLM__PRICE_INPUT_PER_MTOK"),
            "{err}"
        );
        let ok = load_env(&[
            ("CONCIERGE_LLM__END_USER_DAILY_BUDGET_USD", "0.25"),
            ("CONCIERGE_LLM__PRICE_INPUT_PER_MTOK", "2.5"),
            ("CONCIERGE_LLM__PRICE_OUTPUT_PER_MTOK", "10"),
        ])
        .unwrap();
        assert!((ok.settings.llm.end_user_daily_budget_usd - 0.25).abs() < f64::EPSILON);
        let Err(err) = load_env(&[("CONCIERGE_BACKUP__DAILY_AT", "3h30")]) else {
            panic!("a malformed schedule is refused");
        };
        assert!(err.to_string().contains("HH:MM"), "{err}");
        assert!(load_env(&[("CONCIERGE_BACKUP__DAILY_AT", "03:30")]).is_ok());
    }

    #[test]
    fn config_file_from_env_var() {
        let file = TempFile::new("log_level = \"debug\"\n");
        let loaded = load_env(&[(CONFIG_VAR, &file.display())]).unwrap();
        assert_eq!(loaded.settings.log_level, "debug");
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    #[test]
    fn explicit_config_file_beats_env_var() {
        let explicit = TempFile::new("log_level = \"warn\"\n");
        let from_env = TempFile::new("log_level = \"debug\"\n");
        let env = vars(&[(CONFIG_VAR, &from_env.display())]);
        let s = load(Some(explicit.path()), &env, &CliOverrides::default())
            .unwrap()
            .settings;
        assert_eq!(s.log_level, "warn");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let path = std::env::temp_dir().join("concierge-config-test-does-not-exist.toml");
        let err = error_of(load(Some(&path), &[], &CliOverrides::default()));
        assert!(
            err.contains("concierge-config-test-does-not-exist.toml"),
            "{err}"
        );
    }

    #[test]
    fn unknown_key_in_file_is_an_error() {
        let file = TempFile::new("[http]\nlisen = \"0.0.0.0:1\"\n");
        let err = error_of(load(Some(file.path()), &[], &CliOverrides::default()));
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn env_overrides_file() {
        let file = TempFile::new("log_level = \"debug\"\n[http]\nlisten = \"0.0.0.0:8000\"\n");
        let env = vars(&[
            ("CONCIERGE_HTTP__LISTEN", "0.0.0.0:7000"),
            ("CONCIERGE_LOG_LEVEL", "trace"),
        ]);
        let s = load(Some(file.path()), &env, &CliOverrides::default())
            .unwrap()
            .settings;
        assert_eq!(s.http.listen, addr("0.0.0.0:7000"));
        assert_eq!(s.log_level, "trace");
    }

    #[test]
    fn cli_overrides_env() {
        let env = vars(&[
            ("CONCIERGE_HTTP__LISTEN", "0.0.0.0:7000"),
            ("CONCIERGE_ADMIN__LISTEN", "0.0.0.0:7001"),
            ("CONCIERGE_DATA_DIR", "/env"),
            ("CONCIERGE_DATABASE_URL", "postgres://env/db"),
            ("CONCIERGE_REDIS_URL", "redis://env"),
            ("CONCIERGE_PUBLIC_URL", "https://env.example"),
        ]);
        let cli = CliOverrides {
            data_dir: Some(PathBuf::from("/cli")),
            database_url: Some("postgres://cli/db".to_owned()),
            redis_url: Some("redis://cli".to_owned()),
            listen: Some(addr("127.0.0.1:1")),
            admin_listen: Some(addr("127.0.0.1:2")),
            public_url: Some("https://cli.example//".to_owned()),
        };
        let s = load(None, &env, &cli).unwrap().settings;
        assert_eq!(s.http.listen, addr("127.0.0.1:1"));
        assert_eq!(s.admin.listen, addr("127.0.0.1:2"));
        assert_eq!(s.data_dir, PathBuf::from("/cli"));
        assert_eq!(s.database_url.unwrap().expose_secret(), "postgres://cli/db");
        assert_eq!(s.redis_url.unwrap().expose_secret(), "redis://cli");
        assert_eq!(s.public_url.as_deref(), Some("https://cli.example"));
    }

    #[test]
    fn nested_env_keys_and_value_types() {
        let loaded = load_env(&[
            ("CONCIERGE_WORKER__CONCURRENCY", "3"),
            ("CONCIERGE_DATABASE__MAX_CONNECTIONS", "4"),
            ("CONCIERGE_HTTP__MAX_BODY_BYTES", "1024"),
            ("CONCIERGE_TWILIO__VALIDATE_SIGNATURES", "false"),
            ("CONCIERGE_TWILIO__ACCOUNT_SID", "12345"),
            ("CONCIERGE_TWILIO__AUTH_TOKEN", "987654"),
            (
                "CONCIERGE_MESSAGING__FALLBACK_MESSAGE",
                "[back soon], 1: ok",
            ),
            ("CONCIERGE_LOG_FORMAT", "json"),
            ("concierge_log_level", "debug"),
        ])
        .unwrap();
        let s = loaded.settings;
        assert_eq!(s.worker.concurrency, 3);
        assert_eq!(s.database.max_connections, 4);
        assert_eq!(s.http.max_body_bytes, 1024);
        assert!(!s.twilio.validate_signatures);
        // Numeric-looking strings stay strings.
        assert_eq!(s.twilio.account_sid.as_deref(), Some("12345"));
        assert_eq!(s.twilio.auth_token.unwrap().expose_secret(), "987654");
        assert_eq!(s.messaging.fallback_message, "[back soon], 1: ok");
        assert_eq!(s.log_format, LogFormat::Json);
        assert_eq!(s.log_level, "debug", "names match case-insensitively");
        assert!(
            loaded
                .warnings
                .iter()
                .any(|w| w.contains("signature validation is disabled")),
            "{:?}",
            loaded.warnings
        );
    }

    #[test]
    fn empty_env_value_counts_as_unset() {
        let s = load_env(&[
            ("CONCIERGE_REDIS_URL", ""),
            ("CONCIERGE_WORKER__CONCURRENCY", ""),
        ])
        .unwrap()
        .settings;
        assert!(s.redis_url.is_none());
        assert_eq!(s.worker.concurrency, 8);
    }

    #[test]
    fn secrets_from_files_trim_trailing_newline() {
        let key = TempFile::new("c2VjcmV0\n");
        let token = TempFile::new("tok en\r\n");
        let db = TempFile::new("postgres://u:p@h/db\n\n");
        let s = load_env(&[
            ("CONCIERGE_MASTER_KEY_FILE", &key.display()),
            ("CONCIERGE_TWILIO__AUTH_TOKEN_FILE", &token.display()),
            ("CONCIERGE_DATABASE_URL_FILE", &db.display()),
            ("CONCIERGE_TWILIO__ACCOUNT_SID", "AC1"),
        ])
        .unwrap()
        .settings;
        assert_eq!(s.master_key.unwrap().expose_secret(), "c2VjcmV0");
        assert_eq!(s.twilio.auth_token.unwrap().expose_secret(), "tok en");
        assert_eq!(
            s.database_url.unwrap().expose_secret(),
            "postgres://u:p@h/db"
        );
    }

    #[test]
    fn secret_file_overrides_toml_file() {
        let config = TempFile::new("master_key = \"from-toml\"\n");
        let key = TempFile::new("from-file\n");
        let env = vars(&[("CONCIERGE_MASTER_KEY_FILE", &key.display())]);
        let s = load(Some(config.path()), &env, &CliOverrides::default())
            .unwrap()
            .settings;
        assert_eq!(s.master_key.unwrap().expose_secret(), "from-file");
    }

    #[test]
    fn secret_and_its_file_both_set_is_an_error() {
        let key = TempFile::new("from-file\n");
        let err = error_of(load_env(&[
            ("CONCIERGE_MASTER_KEY", "hunter2"),
            ("CONCIERGE_MASTER_KEY_FILE", &key.display()),
        ]));
        assert!(
            err.contains("CONCIERGE_MASTER_KEY") && err.contains("CONCIERGE_MASTER_KEY_FILE"),
            "{err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("from-file"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_secret_file_names_the_variable() {
        let missing = std::env::temp_dir().join("concierge-config-test-no-such-secret");
        let err = error_of(load_env(&[(
            "CONCIERGE_TWILIO__AUTH_TOKEN_FILE",
            missing.to_str().unwrap(),
        )]));
        assert!(err.contains("CONCIERGE_TWILIO__AUTH_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn empty_secret_file_is_an_error() {
        let key = TempFile::new("\n");
        let err = error_of(load_env(&[("CONCIERGE_MASTER_KEY_FILE", &key.display())]));
        assert!(
            err.contains("CONCIERGE_MASTER_KEY_FILE") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn unknown_variables_warn_with_a_suggestion() {
        let loaded = load_env(&[
            ("CONCIERGE_HTTP_LISTEN", "0.0.0.0:1"),
            ("CONCIERGE_MASTERKEY_FILE", "/nope"),
            ("CONCIERGE_LOG_LEVLE", "debug"),
            ("CONCIERGE_SOMETHING_ELSE_ENTIRELY", "x"),
            ("CONCIERGE_HTTP__LISTEN_FILE", "/nope"),
            ("CONCIERGE_TEST_FAKE_CLOCK", "1"),
            ("CONCIERGE_CONFIG", ""),
            ("PATH", "/bin"),
        ])
        .unwrap();
        assert_eq!(loaded.warnings, vec![
            "unknown setting CONCIERGE_HTTP_LISTEN (did you mean CONCIERGE_HTTP__LISTEN?)".to_owned(),
            "unknown setting CONCIERGE_MASTERKEY_FILE (did you mean CONCIERGE_MASTER_KEY_FILE?)".to_owned(),
            "unknown setting CONCIERGE_LOG_LEVLE (did you mean CONCIERGE_LOG_LEVEL?)".to_owned(),
            "unknown setting CONCIERGE_SOMETHING_ELSE_ENTIRELY".to_owned(),
            "unknown setting CONCIERGE_HTTP__LISTEN_FILE (only secrets can be read from a file; set CONCIERGE_HTTP__LISTEN instead)".to_owned(),
        ]);
        // An unknown variable is not applied.
        assert_eq!(loaded.settings.http.listen, addr("127.0.0.1:8080"));
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        for (var, value) in [
            ("CONCIERGE_HTTP__LISTEN", "notanaddr"),
            ("CONCIERGE_WORKER__CONCURRENCY", "many"),
            ("CONCIERGE_WORKER__CONCURRENCY", "-1"),
            ("CONCIERGE_MESSAGING__MAX_ATTEMPTS", "1.5"),
            ("CONCIERGE_TWILIO__VALIDATE_SIGNATURES", "maybe"),
            ("CONCIERGE_LOG_FORMAT", "xml"),
        ] {
            let err = error_of(load_env(&[(var, value)]));
            assert!(err.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn out_of_range_values_name_the_variable() {
        let err = error_of(load_env(&[("CONCIERGE_WORKER__CONCURRENCY", "0")]));
        assert!(err.contains("CONCIERGE_WORKER__CONCURRENCY"), "{err}");
        let err = error_of(load_env(&[("CONCIERGE_PUBLIC_URL", "example.com")]));
        assert!(err.contains("CONCIERGE_PUBLIC_URL"), "{err}");
    }

    #[test]
    fn bad_secret_values_are_not_echoed() {
        let err = error_of(load_env(&[(
            "CONCIERGE_DATABASE_URL",
            "mysql://u:hunter2@h/db",
        )]));
        assert!(err.contains("CONCIERGE_DATABASE_URL"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");

        let file = TempFile::new("master_key = 123456789\n");
        let err = error_of(load(Some(file.path()), &[], &CliOverrides::default()));
        assert!(err.contains("master_key"), "{err}");
        assert!(!err.contains("123456789"), "{err}");
    }

    #[test]
    fn toml_syntax_errors_do_not_quote_the_line() {
        let file = TempFile::new("master_key = \"hunter2\n");
        let err = error_of(load(Some(file.path()), &[], &CliOverrides::default()));
        assert!(
            err.contains(&file.display()) && err.contains("line 1"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redacted_hides_secrets() {
        let s = load_env(&[
            ("CONCIERGE_MASTER_KEY", "s3cr3t-key"),
            ("CONCIERGE_DATABASE_URL", "postgres://u:s3cr3t-pw@h/db"),
            ("CONCIERGE_TWILIO__AUTH_TOKEN", "s3cr3t-token"),
            ("CONCIERGE_TWILIO__ACCOUNT_SID", "AC1"),
        ])
        .unwrap()
        .settings;
        let value = redacted(&s);
        assert_eq!(value["master_key"], REDACTED);
        assert_eq!(value["database_url"], REDACTED);
        assert_eq!(value["twilio"]["auth_token"], REDACTED);
        assert_eq!(value["redis_url"], serde_json::Value::Null);
        assert_eq!(value["twilio"]["account_sid"], "AC1");
        assert_eq!(value["http"]["listen"], "127.0.0.1:8080");
        let rendered = value.to_string();
        assert!(!rendered.contains("s3cr3t"), "{rendered}");
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }

    #[test]
    fn reference_lists_every_key() {
        let docs = reference();
        let find = |env: &str| {
            docs.iter()
                .find(|d| d.env == env)
                .unwrap_or_else(|| panic!("{env} missing"))
        };

        let listen = find("CONCIERGE_HTTP__LISTEN");
        assert_eq!(
            (listen.key.as_str(), listen.default.as_str(), listen.secret),
            ("http.listen", "127.0.0.1:8080", false)
        );
        let key = find("CONCIERGE_MASTER_KEY");
        assert_eq!(
            (key.key.as_str(), key.default.as_str(), key.secret),
            ("master_key", "", true)
        );
        assert!(find("CONCIERGE_DATABASE_URL").secret);
        assert!(find("CONCIERGE_REDIS_URL").secret);
        assert!(find("CONCIERGE_TWILIO__AUTH_TOKEN").secret);
        assert_eq!(find("CONCIERGE_HTTP__MAX_BODY_BYTES").default, "65536");
        assert_eq!(
            find("CONCIERGE_TWILIO__VALIDATE_SIGNATURES").default,
            "true"
        );
        assert_eq!(find("CONCIERGE_LOG_FORMAT").default, "text");
        assert_eq!(docs.iter().filter(|d| d.secret).count(), SECRET_KEYS.len());
        assert!(find("CONCIERGE_LLM__API_KEY").secret);
        assert_eq!(find("CONCIERGE_LLM__PROVIDER").default, "none");
        assert!(find("CONCIERGE_BACKUP__KEY").secret);
        assert_eq!(find("CONCIERGE_BACKUP__KEEP_DAILY").default, "7");
        assert_eq!(docs.len(), 63);
        assert_eq!(docs[0].env, "CONCIERGE_DATA_DIR", "top-level keys first");

        // Suggestions rely on names being distinct once underscores are ignored.
        let mut squashed: Vec<String> = docs.iter().map(|d| d.env.replace('_', "")).collect();
        squashed.sort();
        squashed.dedup();
        assert_eq!(squashed.len(), docs.len());
    }

    #[test]
    fn every_reference_key_is_settable_from_env() {
        // Each key's default, fed back through its variable, loads without error or warning.
        let docs = reference();
        let env: Vec<(String, String)> = docs
            .iter()
            .filter(|d| !d.default.is_empty())
            .map(|d| (d.env.clone(), d.default.clone()))
            .collect();
        let loaded = load(None, &env, &CliOverrides::default()).unwrap();
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
        assert_eq!(redacted(&loaded.settings), redacted(&Settings::default()));
    }

    #[test]
    fn database_url_or_default_and_embedded() {
        let s = Settings::default();
        assert_eq!(s.database_url_or_default(), "sqlite://./data/concierge.db");
        assert!(s.is_embedded());

        let cli = CliOverrides {
            data_dir: Some(PathBuf::from("/srv/c")),
            ..CliOverrides::default()
        };
        let s = load(None, &[], &cli).unwrap().settings;
        assert_eq!(s.database_url_or_default(), "sqlite:///srv/c/concierge.db");

        let s = load_env(&[("CONCIERGE_DATABASE_URL", "postgres://u:p@h/db")])
            .unwrap()
            .settings;
        assert_eq!(s.database_url_or_default(), "postgres://u:p@h/db");
        assert!(!s.is_embedded());

        let s = load_env(&[("CONCIERGE_DATABASE_URL", "sqlite::memory:")])
            .unwrap()
            .settings;
        assert!(s.is_embedded());
    }

    #[test]
    fn suggestion_distance() {
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
