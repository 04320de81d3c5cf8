//! Model providers described as data: which vendor, which model, where, with which key and
//! at what price. The installation's provider comes from its configuration; a tenant may
//! bring its own chain of providers (its own keys, base URLs and models), stored by the
//! platform and turned into a [`ChatModel`] here.

use std::net::IpAddr;
use std::sync::Arc;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::anthropic::{AnthropicChat, AnthropicConfig};
use crate::gemini::{GeminiChat, GeminiConfig};
use crate::openai::{OpenAiChat, OpenAiConfig};
use crate::pricing::{PriceTable, Prices};
use crate::{ChatModel, HttpSettings, LlmError, Resilient, RetryPolicy};

/// Providers in one tenant's fallback chain, at most.
pub const MAX_PROVIDERS: usize = 4;
const MAX_MODEL_CHARS: usize = 200;
const MAX_URL_CHARS: usize = 500;
const MAX_KEY_CHARS: usize = 1_000;
/// Prices above this (US dollars per million tokens) are a typo, not a model.
const MAX_PRICE_PER_MTOK: f64 = 10_000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Openai,
    /// Any server speaking OpenAI Chat Completions (Ollama, vLLM, llama.cpp...): needs a
    /// base URL.
    OpenaiCompatible,
    Anthropic,
    Gemini,
}

impl ProviderKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::OpenaiCompatible => "openai_compatible",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
        }
    }
}

/// One provider: what the model client needs to call it, and its price.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderSettings {
    pub provider: ProviderKind,
    /// The model name at the provider.
    pub model: String,
    /// The provider's endpoint; None: the vendor's public API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// US dollars per million input tokens (accounting and budgets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_per_mtok: Option<f64>,
    /// US dollars per million output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_per_mtok: Option<f64>,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("input_per_mtok", &self.input_per_mtok)
            .field("output_per_mtok", &self.output_per_mtok)
            .finish()
    }
}

/// A tenant's own providers, tried in order (the first that answers wins).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    pub providers: Vec<ProviderSettings>,
}

/// Why settings were refused: the field and the reason, for a 400 answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SettingsError {
    pub field: String,
    pub reason: String,
}

fn refuse(field: impl Into<String>, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        field: field.into(),
        reason: reason.into(),
    }
}

impl ModelSettings {
    /// Checks every provider: a known model name, an endpoint the installation allows
    /// (see [`check_endpoint`]), a key where the vendor needs one, sane prices.
    pub fn validate(&self, allow_private: bool) -> Result<(), SettingsError> {
        if self.providers.is_empty() || self.providers.len() > MAX_PROVIDERS {
            return Err(refuse(
                "providers",
                format!("give 1 to {MAX_PROVIDERS} providers"),
            ));
        }
        for (i, p) in self.providers.iter().enumerate() {
            let field = |name: &str| format!("providers[{i}].{name}");
            let model = p.model.trim();
            if model.is_empty() || model.chars().count() > MAX_MODEL_CHARS || model != p.model {
                return Err(refuse(
                    field("model"),
                    format!("1 to {MAX_MODEL_CHARS} characters, no surrounding spaces"),
                ));
            }
            if p.model.chars().any(char::is_control) {
                return Err(refuse(field("model"), "no control characters"));
            }
            match &p.base_url {
                Some(url) => {
                    check_endpoint(url, allow_private).map_err(|r| refuse(field("base_url"), r))?;
                }
                None if p.provider == ProviderKind::OpenaiCompatible => {
                    return Err(refuse(field("base_url"), "required for openai_compatible"));
                }
                None => {}
            }
            match &p.api_key {
                Some(key)
                    if key.is_empty()
                        || key.len() > MAX_KEY_CHARS
                        || key.chars().any(|c| c.is_control() || c == ' ') =>
                {
                    return Err(refuse(
                        field("api_key"),
                        format!("1 to {MAX_KEY_CHARS} characters without spaces"),
                    ));
                }
                None if p.provider != ProviderKind::OpenaiCompatible => {
                    return Err(refuse(
                        field("api_key"),
                        format!("required for {}", p.provider.as_str()),
                    ));
                }
                _ => {}
            }
            for (name, price) in [
                ("input_per_mtok", p.input_per_mtok),
                ("output_per_mtok", p.output_per_mtok),
            ] {
                if let Some(v) = price
                    && !(v.is_finite() && (0.0..=MAX_PRICE_PER_MTOK).contains(&v))
                {
                    return Err(refuse(
                        field(name),
                        format!(
                            "a price from 0 to {MAX_PRICE_PER_MTOK} US dollars per million tokens"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The prices these providers declare, by model, over `base` (the installation's table).
    #[must_use]
    pub fn prices(&self, base: &PriceTable) -> PriceTable {
        let own = self
            .providers
            .iter()
            .filter(|p| p.input_per_mtok.is_some() || p.output_per_mtok.is_some())
            .map(|p| {
                (
                    p.model.clone(),
                    Prices {
                        input_per_mtok: p.input_per_mtok.unwrap_or(0.0),
                        output_per_mtok: p.output_per_mtok.unwrap_or(0.0),
                    },
                )
            });
        base.with(own)
    }

    /// The chain as one model: retries, a breaker per provider, fallback in order.
    pub fn build(
        &self,
        http: HttpSettings,
        policy: RetryPolicy,
    ) -> Result<Arc<dyn ChatModel>, LlmError> {
        let providers = self
            .providers
            .iter()
            .map(|p| p.build(http))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Arc::new(Resilient::new(providers, policy)))
    }
}

impl ProviderSettings {
    /// The provider's adapter (no retries: see [`ModelSettings::build`]).
    pub fn build(&self, http: HttpSettings) -> Result<Arc<dyn ChatModel>, LlmError> {
        let key = || SecretString::from(self.api_key.clone().unwrap_or_default());
        Ok(match self.provider {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                // `compatible` takes the key as given (local servers take none).
                let mut config = if self.provider == ProviderKind::Openai {
                    OpenAiConfig::openai(key(), &self.model)
                } else {
                    OpenAiConfig {
                        api_key: self.api_key.clone().map(SecretString::from),
                        ..OpenAiConfig::compatible(self.provider.as_str(), "", &self.model)
                    }
                };
                if let Some(base) = &self.base_url {
                    config.base_url.clone_from(base);
                }
                config.http = http;
                Arc::new(OpenAiChat::new(config)?)
            }
            ProviderKind::Anthropic => {
                let mut config = AnthropicConfig::new(key(), &self.model);
                if let Some(base) = &self.base_url {
                    config.base_url.clone_from(base);
                }
                config.http = http;
                Arc::new(AnthropicChat::new(config)?)
            }
            ProviderKind::Gemini => {
                let mut config = GeminiConfig::new(key(), &self.model);
                if let Some(base) = &self.base_url {
                    config.base_url.clone_from(base);
                }
                config.http = http;
                Arc::new(GeminiChat::new(config)?)
            }
        })
    }
}

/// Whether a model endpoint is acceptable: an absolute `http(s)` URL without credentials,
/// query or fragment. Unless `allow_private`, it must be `https` and must not name a
/// loopback, private, link-local or otherwise internal address (or `localhost`); names are
/// checked again when connecting (the client resolves to public addresses only).
pub fn check_endpoint(raw: &str, allow_private: bool) -> Result<(), String> {
    if raw.len() > MAX_URL_CHARS {
        return Err(format!("at most {MAX_URL_CHARS} characters"));
    }
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold credentials (use api_key)".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or fragment".into());
    }
    let Some(host) = url.host() else {
        return Err("must name a host".into());
    };
    if allow_private {
        return Ok(());
    }
    if url.scheme() != "https" {
        return Err("must be https".into());
    }
    let internal = match host {
        url::Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            name == "localhost"
                || name.ends_with(".localhost")
                || name.ends_with(".internal")
                || !name.contains('.')
        }
        url::Host::Ipv4(ip) => !is_public(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => !is_public(IpAddr::V6(ip)),
    };
    if internal {
        return Err("must be a public address".into());
    }
    Ok(())
}

/// Whether an address is on the public internet (not loopback, private, link-local, shared,
/// documentation, multicast, unspecified, or an IPv4 address wrapped in IPv6 that is not).
#[must_use]
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 to anything
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(url: Option<&str>) -> ProviderSettings {
        ProviderSettings {
            provider: ProviderKind::Openai,
            model: "gpt-4o-mini".into(),
            base_url: url.map(str::to_owned),
            api_key: Some("sk-test".into()),
            input_per_mtok: None,
            output_per_mtok: None,
        }
    }

    #[test]
    fn endpoints_of_a_tenant_stay_public() {
        for ok in [
            "https://api.openai.com/v1",
            "https://llm.example.com:8443/v1",
            "https://[2606:4700::1111]/v1",
        ] {
            assert_eq!(check_endpoint(ok, false), Ok(()), "{ok}");
        }
        for bad in [
            "http://api.openai.com/v1",
            "https://localhost/v1",
            "https://api.localhost/v1",
            "https://127.0.0.1/v1",
            "https://10.0.0.8/v1",
            "https://172.16.3.4/v1",
            "https://192.168.1.1/v1",
            "https://169.254.169.254/latest",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::1]/",
            "https://[fd00::1]/",
            "https://[fe80::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://metadata.google.internal/",
            "https://intranet/",
            "https://user:pw@api.openai.com/v1",
            "https://api.openai.com/v1?x=1",
            "ftp://api.openai.com/",
            "not a url",
        ] {
            assert!(check_endpoint(bad, false).is_err(), "{bad}");
        }
        // An installation that allows private endpoints (a model server on its own network).
        assert_eq!(check_endpoint("http://127.0.0.1:11434/v1", true), Ok(()));
        assert!(check_endpoint("file:///etc/passwd", true).is_err());
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let ok = ModelSettings {
            providers: vec![openai(None)],
        };
        assert_eq!(ok.validate(false), Ok(()));
        assert_eq!(
            ModelSettings { providers: vec![] }
                .validate(false)
                .unwrap_err()
                .field,
            "providers"
        );
        let mut p = openai(None);
        p.api_key = None;
        assert_eq!(
            ModelSettings { providers: vec![p] }
                .validate(false)
                .unwrap_err()
                .field,
            "providers[0].api_key"
        );
        let mut p = openai(None);
        p.provider = ProviderKind::OpenaiCompatible;
        p.api_key = None;
        assert_eq!(
            ModelSettings {
                providers: vec![openai(None), p]
            }
            .validate(false)
            .unwrap_err()
            .field,
            "providers[1].base_url"
        );
        let mut p = openai(Some("https://10.1.1.1/v1"));
        assert_eq!(
            ModelSettings {
                providers: vec![p.clone()]
            }
            .validate(false)
            .unwrap_err()
            .field,
            "providers[0].base_url"
        );
        p.base_url = None;
        p.input_per_mtok = Some(f64::NAN);
        assert_eq!(
            ModelSettings {
                providers: vec![p.clone()]
            }
            .validate(false)
            .unwrap_err()
            .field,
            "providers[0].input_per_mtok"
        );
        p.input_per_mtok = Some(0.15);
        p.model = " gpt".into();
        assert!(
            ModelSettings { providers: vec![p] }
                .validate(false)
                .is_err()
        );
        let five = ModelSettings {
            providers: vec![openai(None); 5],
        };
        assert!(five.validate(false).is_err());
        // Unknown fields are refused, so a typo never silently drops a setting.
        let typo = r#"{"providers":[{"provider":"openai","model":"m","api_key":"k","base_ulr":"https://x.example"}]}"#;
        assert!(serde_json::from_str::<ModelSettings>(typo).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let text = format!("{:?}", openai(None));
        assert!(!text.contains("sk-test"), "{text}");
    }

    #[test]
    fn declared_prices_override_the_installation_table() {
        let base = PriceTable::new(
            Prices::default(),
            [(
                "gpt-4o-mini".to_owned(),
                Prices {
                    input_per_mtok: 1.0,
                    output_per_mtok: 1.0,
                },
            )],
        );
        let mut p = openai(None);
        p.input_per_mtok = Some(0.15);
        p.output_per_mtok = Some(0.6);
        let table = ModelSettings { providers: vec![p] }.prices(&base);
        assert_eq!(table.for_model("gpt-4o-mini").input_per_mtok, 0.15);
        assert_eq!(
            table.for_model("gpt-4o-mini-2024-07-18").output_per_mtok,
            0.6
        );
    }
}
