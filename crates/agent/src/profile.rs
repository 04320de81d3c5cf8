//! Profiles: the team of agents that serves a tenant's conversations, declared in TOML.
//!
//! A profile names its agents, the one that takes new conversations (`entry`), and for each
//! agent its instructions, model policy, allowed tools and hand-off edges (the colleagues it
//! may pass the conversation to). [`Profile::parse`] is the only way to get a [`Profile`], so
//! a stored or shipped profile is always valid: every edge leads to an agent of the team and
//! every tool is one the runtime knows. Three profiles ship with the binary
//! ([`Profile::builtin`]); tenants store their own versions through the store.

use std::collections::BTreeMap;

use domain::PhoneNumber;
use serde::Deserialize;

use crate::tools;

/// Largest profile source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 64 * 1024;
const MAX_AGENTS: usize = 16;
const MAX_INSTRUCTIONS_CHARS: usize = 8_000;
const MAX_DESCRIPTION_CHARS: usize = 500;
const MAX_STAFF_NUMBERS: usize = 5;

/// The profiles shipped with the binary, by name.
pub const BUILTIN: [&str; 3] = ["receptionist", "assistant", "companion"];

fn builtin_source(name: &str) -> Option<&'static str> {
    match name {
        "receptionist" => Some(include_str!("../profiles/receptionist.toml")),
        "assistant" => Some(include_str!("../profiles/assistant.toml")),
        "companion" => Some(include_str!("../profiles/companion.toml")),
        _ => None,
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProfileError {
    /// Not TOML, or not the profile format (unknown or missing fields).
    #[error("not a valid profile: {0}")]
    Syntax(String),
    /// Well-formed, but inconsistent (an edge to an unknown agent, an unknown tool...).
    #[error("invalid profile: {0}")]
    Invalid(String),
}

/// One agent of a team.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentSpec {
    pub name: String,
    pub description: String,
    pub instructions: String,
    /// Tools this agent may call, by name; calls to any other are refused.
    pub tools: Vec<String>,
    /// Agents this one may pass the conversation to.
    pub handoffs: Vec<String>,
    /// The model at the provider; None: the configured default.
    pub model: Option<String>,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    /// Whether identical requests may be answered from the response cache.
    pub cache: bool,
}

/// A validated team of agents.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: String,
    /// The agent that takes new conversations.
    pub entry: String,
    /// The business's time zone (IANA name), for dates said without one.
    pub timezone: Option<String>,
    /// Staff numbers texted when a conversation is handed to a human.
    pub notify_sms: Vec<PhoneNumber>,
    pub agents: BTreeMap<String, AgentSpec>,
    /// The stored version (0 for a built-in profile).
    pub version: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    #[serde(default)]
    description: String,
    entry: String,
    timezone: Option<String>,
    #[serde(default)]
    staff: StaffFile,
    agents: BTreeMap<String, AgentFile>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StaffFile {
    #[serde(default)]
    notify_sms: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentFile {
    #[serde(default)]
    description: String,
    instructions: String,
    #[serde(default)]
    tools: Vec<String>,
    #[serde(default)]
    handoffs: Vec<String>,
    model: Option<String>,
    temperature: Option<f32>,
    max_tokens: Option<u32>,
    #[serde(default = "yes")]
    cache: bool,
}

const fn yes() -> bool {
    true
}

/// Lower-case ASCII letter first, then letters, digits, `_` or `-`; at most `max` bytes.
fn is_slug(s: &str, max: usize, dash: bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some('a'..='z'))
        && s.len() <= max
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || (dash && c == '-'))
}

/// Whether `name` can name a profile: 1 to 40 of `a-z 0-9 _ -`, starting with a letter.
#[must_use]
pub fn is_valid_name(name: &str) -> bool {
    is_slug(name, 40, true)
}

impl Profile {
    /// Parses and validates a profile's TOML source.
    pub fn parse(source: &str) -> Result<Self, ProfileError> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(ProfileError::Invalid(format!(
                "the profile is {} bytes; at most {MAX_SOURCE_BYTES} are accepted",
                source.len()
            )));
        }
        let file: ProfileFile =
            toml::from_str(source).map_err(|e| ProfileError::Syntax(e.message().to_owned()))?;
        let invalid = |m: String| Err(ProfileError::Invalid(m));
        if !is_valid_name(&file.name) {
            return invalid(format!(
                "name {:?}: use 1 to 40 lower-case letters, digits, '_' or '-', starting with a letter",
                file.name
            ));
        }
        if file.description.chars().count() > MAX_DESCRIPTION_CHARS {
            return invalid(format!(
                "description: at most {MAX_DESCRIPTION_CHARS} characters"
            ));
        }
        if let Some(tz) = &file.timezone
            && jiff::tz::TimeZone::get(tz).is_err()
        {
            return invalid(format!("timezone {tz:?} is not a known IANA time zone"));
        }
        if file.staff.notify_sms.len() > MAX_STAFF_NUMBERS {
            return invalid(format!(
                "staff.notify_sms: at most {MAX_STAFF_NUMBERS} numbers"
            ));
        }
        let notify_sms = file
            .staff
            .notify_sms
            .iter()
            .map(|n| {
                PhoneNumber::parse(n)
                    .map_err(|e| ProfileError::Invalid(format!("staff.notify_sms {n:?}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if file.agents.is_empty() {
            return invalid("a profile needs at least one agent ([agents.NAME])".into());
        }
        if file.agents.len() > MAX_AGENTS {
            return invalid(format!("at most {MAX_AGENTS} agents"));
        }
        if !file.agents.contains_key(&file.entry) {
            return invalid(format!("entry {:?} is not one of the agents", file.entry));
        }
        let mut agents = BTreeMap::new();
        for (name, agent) in file.agents.iter() {
            let at = |m: String| ProfileError::Invalid(format!("agents.{name}: {m}"));
            if !is_slug(name, 32, false) {
                return Err(at(
                    "agent names are 1 to 32 lower-case letters, digits or '_', starting with a letter"
                        .into(),
                ));
            }
            if agent.instructions.trim().is_empty() {
                return Err(at("instructions are required".into()));
            }
            if agent.instructions.chars().count() > MAX_INSTRUCTIONS_CHARS {
                return Err(at(format!(
                    "instructions: at most {MAX_INSTRUCTIONS_CHARS} characters"
                )));
            }
            if agent.description.chars().count() > MAX_DESCRIPTION_CHARS {
                return Err(at(format!(
                    "description: at most {MAX_DESCRIPTION_CHARS} characters"
                )));
            }
            for tool in &agent.tools {
                if !tools::KNOWN.contains(&tool.as_str()) {
                    return Err(at(format!(
                        "unknown tool {tool:?}; known tools: {}",
                        tools::KNOWN.join(", ")
                    )));
                }
            }
            if has_duplicates(&agent.tools) || has_duplicates(&agent.handoffs) {
                return Err(at("a tool or hand-off is listed twice".into()));
            }
            for edge in &agent.handoffs {
                if edge == name {
                    return Err(at("an agent cannot hand off to itself".into()));
                }
                if !file.agents.contains_key(edge) {
                    return Err(at(format!("hand-off to {edge:?}, which is not an agent")));
                }
            }
            if let Some(t) = agent.temperature
                && !(0.0..=2.0).contains(&t)
            {
                return Err(at("temperature must be between 0 and 2".into()));
            }
            if agent.max_tokens == Some(0) || agent.max_tokens.is_some_and(|m| m > 32_000) {
                return Err(at("max_tokens must be between 1 and 32000".into()));
            }
            if agent
                .model
                .as_ref()
                .is_some_and(|m| m.trim().is_empty() || m.len() > 200)
            {
                return Err(at("model must be a non-empty name".into()));
            }
            agents.insert(
                name.clone(),
                AgentSpec {
                    name: name.clone(),
                    description: agent.description.clone(),
                    instructions: agent.instructions.trim().to_owned(),
                    tools: agent.tools.clone(),
                    handoffs: agent.handoffs.clone(),
                    model: agent.model.clone(),
                    temperature: agent.temperature,
                    max_tokens: agent.max_tokens,
                    cache: agent.cache,
                },
            );
        }
        Ok(Self {
            name: file.name,
            description: file.description,
            entry: file.entry,
            timezone: file.timezone,
            notify_sms,
            agents,
            version: 0,
        })
    }

    /// A profile shipped with the binary.
    #[must_use]
    pub fn builtin(name: &str) -> Option<Self> {
        let source = builtin_source(name)?;
        // Shipped profiles are checked by a test; a broken one is simply absent.
        Self::parse(source).ok()
    }

    /// The TOML source of a shipped profile (to start a tenant's own version from).
    #[must_use]
    pub fn builtin_source(name: &str) -> Option<&'static str> {
        builtin_source(name)
    }

    /// The agent called `name`, or the entry agent when there is none by that name (a
    /// conversation whose agent was removed from a newer version of the profile).
    #[must_use]
    pub fn agent(&self, name: Option<&str>) -> &AgentSpec {
        name.and_then(|n| self.agents.get(n))
            .or_else(|| self.agents.get(&self.entry))
            .or_else(|| self.agents.values().next())
            .unwrap_or_else(|| unreachable_agent())
    }

    /// The business's time zone, if the profile names one.
    #[must_use]
    pub fn time_zone(&self) -> Option<jiff::tz::TimeZone> {
        self.timezone
            .as_deref()
            .and_then(|tz| jiff::tz::TimeZone::get(tz).ok())
    }
}

/// `parse` refuses a profile without agents, so this cannot be reached.
#[cold]
fn unreachable_agent() -> &'static AgentSpec {
    static EMPTY: std::sync::OnceLock<AgentSpec> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| AgentSpec {
        name: "agent".into(),
        description: String::new(),
        instructions: "Answer briefly and politely.".into(),
        tools: Vec::new(),
        handoffs: Vec::new(),
        model: None,
        temperature: None,
        max_tokens: None,
        cache: true,
    })
}

fn has_duplicates(items: &[String]) -> bool {
    let mut seen = std::collections::HashSet::new();
    !items.iter().all(|i| seen.insert(i))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn shipped_profiles_are_valid() {
        for name in BUILTIN {
            let source = builtin_source(name).unwrap();
            let profile = Profile::parse(source).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(profile.name, name);
        }
        let receptionist = Profile::builtin("receptionist").unwrap();
        let names: Vec<&str> = receptionist.agents.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "booking",
                "closing",
                "escalation",
                "faq",
                "objections",
                "qualification",
                "triage"
            ]
        );
        assert_eq!(receptionist.entry, "triage");
    }

    fn minimal(extra: &str) -> String {
        format!("name = \"p\"\nentry = \"a\"\n{extra}\n[agents.a]\ninstructions = \"hi\"\n")
    }

    #[test]
    fn refuses_inconsistent_profiles_with_a_message_naming_the_field() {
        let cases = [
            (
                "name = \"P Q\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"",
                "name",
            ),
            (
                "name = \"p\"\nentry = \"b\"\n[agents.a]\ninstructions = \"x\"",
                "entry",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"\nhandoffs = [\"zz\"]",
                "agents.a: hand-off",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"\nhandoffs = [\"a\"]",
                "itself",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"\ntools = [\"rm_rf\"]",
                "unknown tool",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[agents.a]\ninstructions = \" \"",
                "instructions",
            ),
            (
                "name = \"p\"\nentry = \"a\"\ntimezone = \"Mars/Olympus\"\n[agents.a]\ninstructions = \"x\"",
                "timezone",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[staff]\nnotify_sms = [\"12\"]\n[agents.a]\ninstructions = \"x\"",
                "notify_sms",
            ),
            (
                "name = \"p\"\nentry = \"a\"\n[agents.a]\ninstructions = \"x\"\ntemperature = 9.0",
                "temperature",
            ),
            (
                "name = \"p\"\nentry = \"a\"\nagents = {}",
                "at least one agent",
            ),
        ];
        for (source, needle) in cases {
            let err = Profile::parse(source).unwrap_err().to_string();
            assert!(err.contains(needle), "{source:?}: {err}");
        }
    }

    #[test]
    fn refuses_unknown_fields_and_bad_toml() {
        assert!(matches!(
            Profile::parse(&minimal("colour = \"red\"")),
            Err(ProfileError::Syntax(_))
        ));
        assert!(matches!(
            Profile::parse("name = "),
            Err(ProfileError::Syntax(_))
        ));
        let huge = "#".repeat(MAX_SOURCE_BYTES + 1);
        assert!(matches!(
            Profile::parse(&huge),
            Err(ProfileError::Invalid(_))
        ));
    }

    #[test]
    fn an_unknown_agent_name_falls_back_to_the_entry_agent() {
        let p = Profile::parse(&minimal("timezone = \"Europe/Paris\"")).unwrap();
        assert_eq!(p.agent(Some("gone")).name, "a");
        assert_eq!(p.agent(None).name, "a");
        assert!(p.time_zone().is_some());
        assert!(p.agent(None).cache);
    }
}
