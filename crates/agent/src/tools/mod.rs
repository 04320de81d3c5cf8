//! The tool registry: typed tools whose arguments are Rust types (their JSON Schema is
//! derived with `schemars` and sent to the model), each run with its own timeout inside a
//! [`ToolContext`] that fixes the tenant, conversation and end user. A tool never takes an
//! end user or tenant as an argument, so a model (or a prompt injection) cannot reach
//! another end user's data; and the runtime only offers, and only runs, the tools the
//! current agent's profile allows.

mod booking;
mod builtin;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use domain::{Channel, ConversationId, EndUserId, MessageId, TenantId};
use llm::ToolSpec;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use store::{JobQueue, Store};

pub use booking::{
    Availability, BOOK_APPOINTMENT, BookingConfirmation, BookingError, BookingRequest, Bookings,
    CANCEL_APPOINTMENT, CHECK_AVAILABILITY,
};
pub use builtin::{
    CANCEL_REMINDER, CREATE_REMINDER, FORGET_FACT, LIST_REMINDERS, MAX_FACTS, MAX_REMINDERS,
    RECALL_FACTS, REMEMBER_FACT, SEARCH_KNOWLEDGE_BASE, parse_when, reminder_id, step_uuid,
};

pub(crate) use builtin::{facts_text, hand_off};

use crate::retrieval::Retriever;
use crate::{HANDOFF_TOOL, TurnError};

/// Every tool a profile may name. Booking tools run only where a booking system is
/// connected; elsewhere they are left out of the agent's tools.
pub const KNOWN: &[&str] = &[
    SEARCH_KNOWLEDGE_BASE,
    REMEMBER_FACT,
    RECALL_FACTS,
    FORGET_FACT,
    CREATE_REMINDER,
    LIST_REMINDERS,
    CANCEL_REMINDER,
    HANDOFF_TOOL,
    CHECK_AVAILABILITY,
    BOOK_APPOINTMENT,
    CANCEL_APPOINTMENT,
];

/// Column names bound into the ciphertexts the agent writes.
pub mod columns {
    pub const FACT: &str = "end_user_facts.text";
    pub const REMINDER: &str = "reminders.text";
    pub const STATE: &str = "conversation_state.data";
    pub const STEP: &str = "turn_steps.detail";
    /// A tenant's own model providers (JSON with API keys).
    pub const MODEL_SETTINGS: &str = "tenant_settings.model_cipher";
}

/// Encrypts and decrypts the end user's data with the tenant's key. The agent never sees
/// keys: the message path hands it one of these per turn.
pub trait Sealer: Send + Sync {
    fn seal(&self, column: &'static str, plaintext: &str) -> Vec<u8>;
    fn open(&self, column: &'static str, ciphertext: &[u8]) -> Result<String, TurnError>;
}

/// Where a tool runs: one turn of one conversation.
pub struct ToolContext<'a> {
    pub tenant: TenantId,
    pub conversation: ConversationId,
    pub end_user: EndUserId,
    /// The inbound message the turn answers.
    pub turn: MessageId,
    pub channel: Channel,
    /// The step's position in the turn; with `turn`, the source of ids that make a
    /// repeated step write nothing twice.
    pub seq: u32,
    /// Now, in the end user's (or the business's) time zone.
    pub now: &'a jiff::Zoned,
    pub sealer: &'a dyn Sealer,
}

/// What a tool returns to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// A tool as the runtime sees it: a name, a schema, and a call on raw JSON arguments.
#[async_trait]
pub trait Tool: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn spec(&self) -> ToolSpec;
    async fn call(&self, ctx: &ToolContext<'_>, arguments: &serde_json::Value) -> ToolOutput;
}

/// A tool with typed arguments; [`typed`] turns it into a [`Tool`].
#[async_trait]
pub trait TypedTool: Send + Sync + 'static {
    type Args: DeserializeOwned + JsonSchema + Send;
    const NAME: &'static str;
    const DESCRIPTION: &'static str;
    async fn run(&self, ctx: &ToolContext<'_>, args: Self::Args) -> ToolOutput;
}

/// A typed tool and its spec, derived once (schema generation is not for every turn).
struct Typed<T> {
    tool: T,
    spec: ToolSpec,
}

/// The JSON Schema of `T` as providers want tool parameters: one inline object, no
/// `$schema` or title.
#[must_use]
pub fn parameters_schema<T: JsonSchema>() -> serde_json::Value {
    let generator = schemars::generate::SchemaSettings::draft07()
        .with(|s| {
            s.inline_subschemas = true;
            s.meta_schema = None;
        })
        .into_generator();
    let mut value = generator.into_root_schema_for::<T>().to_value();
    if let Some(object) = value.as_object_mut() {
        object.remove("title");
        object.remove("$schema");
        object
            .entry("properties")
            .or_insert_with(|| serde_json::json!({}));
    }
    value
}

#[async_trait]
impl<T: TypedTool> Tool for Typed<T> {
    fn name(&self) -> &'static str {
        T::NAME
    }

    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, ctx: &ToolContext<'_>, arguments: &serde_json::Value) -> ToolOutput {
        // Models sometimes send `null` or nothing for a tool without parameters.
        let arguments = if arguments.is_null() {
            serde_json::json!({})
        } else {
            arguments.clone()
        };
        match serde_json::from_value::<T::Args>(arguments) {
            Ok(args) => self.tool.run(ctx, args).await,
            Err(e) => ToolOutput::error(format!(
                "Invalid arguments for {}: {e}. Call it again with arguments matching its schema.",
                T::NAME
            )),
        }
    }
}

/// Wraps a typed tool for the registry.
pub fn typed<T: TypedTool>(tool: T) -> Arc<dyn Tool> {
    let spec = ToolSpec {
        name: T::NAME.into(),
        description: T::DESCRIPTION.into(),
        parameters: parameters_schema::<T::Args>(),
    };
    Arc::new(Typed { tool, spec })
}

/// The tools available in this installation, by name.
#[derive(Clone)]
pub struct Registry {
    tools: BTreeMap<&'static str, Arc<dyn Tool>>,
    timeout: Duration,
}

impl Registry {
    /// The built-in tools over `store` (and `queue`, for staff notifications), searching
    /// the knowledge base with `retriever` (full text only when None), plus the booking
    /// tools when a booking system is connected.
    #[must_use]
    pub fn builtin(
        store: Arc<dyn Store>,
        queue: Arc<dyn JobQueue>,
        retriever: Option<Arc<Retriever>>,
        bookings: Option<Arc<dyn Bookings>>,
        timeout: Duration,
    ) -> Self {
        let mut registry = Self {
            tools: BTreeMap::new(),
            timeout,
        };
        let retriever = retriever.unwrap_or_else(|| {
            Arc::new(Retriever::new(
                store.clone(),
                None,
                crate::retrieval::RetrieverConfig::default(),
            ))
        });
        for tool in builtin::all(&store, &queue, &retriever) {
            registry.register(tool);
        }
        if let Some(bookings) = bookings {
            for tool in booking::all(&bookings) {
                registry.register(tool);
            }
        }
        registry
    }

    /// Adds (or replaces) a tool. Its name must be one of [`KNOWN`] for profiles to allow it.
    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.name(), tool);
    }

    #[must_use]
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// The specs of the tools in `allowed` that are available, in `allowed`'s order.
    #[must_use]
    pub fn specs(&self, allowed: &[String]) -> Vec<ToolSpec> {
        allowed
            .iter()
            .filter_map(|name| self.tools.get(name.as_str()))
            .map(|tool| tool.spec())
            .collect()
    }

    /// Runs `name` if `allowed` lets this agent call it, within the registry's timeout.
    /// Refusals and failures come back as error outputs the model can read.
    pub async fn call(
        &self,
        allowed: &[String],
        name: &str,
        ctx: &ToolContext<'_>,
        arguments: &serde_json::Value,
    ) -> (&'static str, ToolOutput) {
        let label = label(name);
        let Some(tool) = self.tools.get(name) else {
            tracing::warn!(tool = label, "model called a tool that does not exist");
            metrics::counter!("concierge_tool_errors_total", "tool" => "unknown").increment(1);
            return (
                label,
                ToolOutput::error(format!("There is no tool named {name:?}.")),
            );
        };
        if !allowed.iter().any(|a| a == name) {
            // A prompt injection or a confused model: refused and recorded, never run.
            tracing::warn!(
                tool = label,
                "model called a tool this agent may not use; refused"
            );
            metrics::counter!("concierge_tool_refusals_total", "tool" => label).increment(1);
            return (
                label,
                ToolOutput::error(format!(
                    "You may not use {name:?} here. Use only the tools you were given."
                )),
            );
        }
        metrics::counter!("concierge_tool_calls_total", "tool" => label).increment(1);
        let started = std::time::Instant::now();
        let output = match tokio::time::timeout(self.timeout, tool.call(ctx, arguments)).await {
            Ok(output) => output,
            Err(_) => ToolOutput::error(format!("{name} did not finish in time; try later.")),
        };
        metrics::histogram!("concierge_tool_seconds", "tool" => label)
            .record(started.elapsed().as_secs_f64());
        if output.is_error {
            metrics::counter!("concierge_tool_errors_total", "tool" => label).increment(1);
        }
        (label, output)
    }
}

/// A bounded metric label for a tool name a model chose.
#[must_use]
pub fn label(name: &str) -> &'static str {
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("unknown")
}

/// The store error a tool reports to the model, logged without user data.
fn unavailable(tool: &'static str, e: &store::StoreError) -> ToolOutput {
    tracing::warn!(tool, error = %e, "tool failed");
    ToolOutput::error("That is unavailable right now; apologise and offer to try again later.")
}
