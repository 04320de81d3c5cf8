//! A turn answered by a model: the conversation so far, the tenant's instructions, and the
//! knowledge-base search tool, in a bounded loop of tool calls. When the model cannot be
//! reached (every provider and retry failed) the offline engine answers instead, so a
//! customer always gets a reply.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::{Channel, Direction};
use llm::{ChatModel, ChatRequest, LlmError, Message, Part, Role, ToolCall, ToolChoice, ToolSpec};
use serde_json::json;
use store::{ModelUsage, Store};

use crate::redact::Redactions;
use crate::{
    HANDOFF_TOOL, MAX_REPLY_CHARS, TurnEngine, TurnError, TurnInput, TurnOutput, truncate_chars,
};

const SEARCH_TOOL: &str = "search_knowledge_base";
/// A query the model sends to the search tool is cut to this length.
const MAX_QUERY_CHARS: usize = 300;
/// Knowledge-base text returned to the model per search, in characters.
const MAX_RESULT_CHARS: usize = 4000;

#[derive(Clone, Debug)]
pub struct LlmEngineConfig {
    /// The instructions every conversation starts with.
    pub system_prompt: String,
    /// Earlier messages sent with each turn.
    pub history: u32,
    /// Rounds of tool calls per turn before the model must answer in words.
    pub max_tool_rounds: u32,
    /// Each tool call's own time limit.
    pub tool_timeout: Duration,
    pub max_tokens: u32,
    /// Mask e-mail addresses, phone numbers and card numbers before they reach the model,
    /// and restore them in its reply.
    pub redact_pii: bool,
    /// What the model costs, for accounting and budgets.
    pub prices: Prices,
    /// Daily spending limits; over one, the turn is answered with `budget.message`.
    pub budget: Budget,
}

/// US dollars per million tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Prices {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

impl Prices {
    /// The cost of `usage` in US dollars times 1,000,000 (dollars per million tokens is
    /// micro-dollars per token).
    #[must_use]
    pub fn cost_micros(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let micros = (input_tokens as f64 * self.input_per_mtok
            + output_tokens as f64 * self.output_per_mtok)
            .round()
            .max(0.0) as u64;
        micros
    }

    fn is_set(&self) -> bool {
        self.input_per_mtok > 0.0 || self.output_per_mtok > 0.0
    }
}

/// Daily model budgets in US dollars (0 means none), per tenant and per end user, in UTC days.
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    pub tenant_daily_usd: f64,
    pub end_user_daily_usd: f64,
    /// The reply when a budget is spent.
    pub message: String,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            tenant_daily_usd: 0.0,
            end_user_daily_usd: 0.0,
            message: "Sorry, I can't answer more messages today. A member of our team will get back to you."
                .into(),
        }
    }
}

impl Budget {
    fn is_set(&self) -> bool {
        self.tenant_daily_usd > 0.0 || self.end_user_daily_usd > 0.0
    }
}

fn usd_to_micros(usd: f64) -> u64 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let micros = (usd * 1_000_000.0).round().max(0.0) as u64;
    micros
}

impl Default for LlmEngineConfig {
    fn default() -> Self {
        Self {
            system_prompt:
                "You are the front desk of a small business. Answer briefly and politely. \
                Use the knowledge base tool for facts about the business; never invent prices, \
                hours or policies. If you cannot help, say a member of staff will follow up."
                    .into(),
            history: 12,
            max_tool_rounds: 3,
            tool_timeout: Duration::from_secs(5),
            max_tokens: 400,
            redact_pii: false,
            prices: Prices::default(),
            budget: Budget::default(),
        }
    }
}

pub struct LlmEngine {
    model: Arc<dyn ChatModel>,
    /// Answers to identical requests, kept apart per tenant.
    cache: Option<Arc<llm::ResponseCache>>,
    store: Arc<dyn Store>,
    offline: Arc<dyn TurnEngine>,
    config: LlmEngineConfig,
}

impl LlmEngine {
    #[must_use]
    pub fn new(
        model: Arc<dyn ChatModel>,
        store: Arc<dyn Store>,
        offline: Arc<dyn TurnEngine>,
        config: LlmEngineConfig,
    ) -> Self {
        Self {
            model,
            cache: None,
            store,
            offline,
            config,
        }
    }

    /// Serves identical requests (same tenant, instructions, history, tools and settings)
    /// from `cache` for its time to live.
    #[must_use]
    pub fn with_cache(mut self, cache: Arc<llm::ResponseCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: SEARCH_TOOL.into(),
            description:
                "Search the business's knowledge base (hours, services, prices, policies). \
                Returns the best matching entries."
                    .into(),
            parameters: json!({
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for"}},
                "required": ["query"]
            }),
        }]
    }

    fn request(&self, input: &TurnInput, pii: &mut Option<Redactions>) -> ChatRequest {
        let mut text = |t: &str| match pii {
            Some(r) => r.mask(t),
            None => t.to_owned(),
        };
        let mut messages: Vec<Message> = input
            .history
            .iter()
            .map(|m| match m.direction {
                Direction::Inbound => Message::user(text(&m.text)),
                Direction::Outbound => Message::assistant(text(&m.text)),
            })
            .collect();
        messages.push(Message::user(text(&input.text)));
        let channel = match input.channel {
            Channel::Sms => {
                "The customer is texting: answer in at most three short sentences, plain text."
            }
            Channel::WebChat => "The customer is on the web chat: answer in a few short sentences.",
        };
        let mut request = ChatRequest::new(messages);
        let mut system = format!("{}\n\n{channel}", self.config.system_prompt);
        if let Some(note) = pii.as_ref().and_then(Redactions::instructions) {
            system.push_str("\n\n");
            system.push_str(&note);
        }
        request.system = Some(system);
        request.tools = Self::tools();
        request.max_tokens = self.config.max_tokens;
        request
    }

    /// Runs one tool call; failures become error results the model can read, never a
    /// failed turn.
    async fn call_tool(
        &self,
        input: &TurnInput,
        call: &ToolCall,
        pii: Option<&Redactions>,
    ) -> (String, bool) {
        metrics::counter!("concierge_tool_calls_total", "tool" => tool_label(&call.name))
            .increment(1);
        if call.name == HANDOFF_TOOL {
            let handoff = self
                .store
                .set_handoff(input.tenant_id, input.conversation_id, true);
            return match tokio::time::timeout(self.config.tool_timeout, handoff).await {
                Ok(Ok(Some(_))) => {
                    metrics::counter!("concierge_handoffs_total", "event" => "requested_by_agent")
                        .increment(1);
                    (
                        "Done: a member of staff will reply in this conversation.".into(),
                        false,
                    )
                }
                Ok(Ok(None)) => ("This conversation cannot be handed off.".into(), true),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "hand-off failed");
                    metrics::counter!("concierge_tool_errors_total", "tool" => HANDOFF_TOOL)
                        .increment(1);
                    (
                        "The hand-off failed; apologise and ask the customer to call.".into(),
                        true,
                    )
                }
                Err(_) => ("The hand-off did not finish in time.".into(), true),
            };
        }
        if call.name != SEARCH_TOOL {
            // Unknown or not allowed for this agent: refused, recorded, answered sensibly.
            tracing::warn!(tool = %tool_label(&call.name), "model called a tool it does not have");
            metrics::counter!("concierge_tool_errors_total", "tool" => "unknown").increment(1);
            return (format!("There is no tool named {:?}.", call.name), true);
        }
        let Some(query) = call.arguments.get("query").and_then(|q| q.as_str()) else {
            return (
                "The argument \"query\" (a string) is required.".into(),
                true,
            );
        };
        let query = match pii {
            Some(r) => r.unmask(query),
            None => query.to_owned(),
        };
        let query = truncate_chars(&query, MAX_QUERY_CHARS);
        let search = self.store.search_kb(input.tenant_id, &query, 3);
        match tokio::time::timeout(self.config.tool_timeout, search).await {
            Ok(Ok(hits)) if hits.is_empty() => ("No entry matches.".into(), false),
            Ok(Ok(hits)) => {
                let text = hits
                    .iter()
                    .map(|h| format!("## {}\n{}", h.entry.title, h.entry.body))
                    .collect::<Vec<_>>()
                    .join("\n\n");
                (truncate_chars(&text, MAX_RESULT_CHARS), false)
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "knowledge-base search failed");
                metrics::counter!("concierge_tool_errors_total", "tool" => SEARCH_TOOL)
                    .increment(1);
                ("The knowledge base is unavailable right now.".into(), true)
            }
            Err(_) => {
                metrics::counter!("concierge_tool_errors_total", "tool" => SEARCH_TOOL)
                    .increment(1);
                ("The knowledge base did not answer in time.".into(), true)
            }
        }
    }

    /// The reply text (empty if the model gave none) and the tools that ran.
    async fn converse(
        &self,
        input: &TurnInput,
        tools: &mut Vec<&'static str>,
        spent: &mut ModelUsage,
    ) -> Result<String, LlmError> {
        let scoped;
        let model: &dyn ChatModel = match &self.cache {
            Some(cache) => {
                scoped = cache.scoped(input.tenant_id.to_string());
                &scoped
            }
            None => self.model.as_ref(),
        };
        let mut pii = self.config.redact_pii.then(Redactions::new);
        let mut request = self.request(input, &mut pii);
        for round in 0..=self.config.max_tool_rounds {
            if round == self.config.max_tool_rounds {
                // Tool budget spent (a loop, or a stubborn model): answer with what you have.
                request.tool_choice = ToolChoice::None;
            }
            let started = Instant::now();
            let response = model.complete(&request).await?;
            metrics::histogram!("concierge_model_seconds", "provider" => self.model.provider().to_owned())
                .record(started.elapsed().as_secs_f64());
            // A cached answer was billed when it was first made.
            if !response.usage.from_cache {
                spent.calls += 1;
                spent.input_tokens += response.usage.input_tokens;
                spent.output_tokens += response.usage.output_tokens;
                spent.cost_micros += self
                    .config
                    .prices
                    .cost_micros(response.usage.input_tokens, response.usage.output_tokens);
            }
            let calls: Vec<ToolCall> = response.tool_calls().into_iter().cloned().collect();
            if calls.is_empty() || request.tool_choice == ToolChoice::None {
                let reply = response.text().trim().to_owned();
                return Ok(match &pii {
                    Some(r) => r.unmask(&reply),
                    None => reply,
                });
            }
            request.messages.push(Message {
                role: Role::Assistant,
                parts: response.parts.clone(),
            });
            let mut results = Vec::with_capacity(calls.len());
            for call in calls.iter().take(8) {
                tools.push(tool_label(&call.name));
                let (content, is_error) = self.call_tool(input, call, pii.as_ref()).await;
                results.push(Part::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content,
                    is_error,
                });
            }
            for call in calls.iter().skip(8) {
                results.push(Part::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: "Too many tool calls at once; ask again.".into(),
                    is_error: true,
                });
            }
            request.messages.push(Message {
                role: Role::User,
                parts: results,
            });
        }
        Ok(String::new())
    }
}

/// Metric label for a tool name the model chose: only known names, so a model cannot
/// create unbounded label values.
fn tool_label(name: &str) -> &'static str {
    match name {
        SEARCH_TOOL => SEARCH_TOOL,
        HANDOFF_TOOL => HANDOFF_TOOL,
        _ => "unknown",
    }
}

impl LlmEngine {
    /// Which daily budget, if any, is already spent. A store failure does not block the
    /// turn (it is logged): a budget is a brake, not a dependency.
    async fn budget_spent(&self, input: &TurnInput) -> Option<&'static str> {
        let budget = &self.config.budget;
        if !budget.is_set() {
            return None;
        }
        let day = store::utc_day(jiff::Timestamp::now());
        let totals = match self
            .store
            .model_usage_on(input.tenant_id, input.end_user_id, day)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "could not read today's model usage; the budget is not checked");
                return None;
            }
        };
        let over = |limit: f64, spent: u64| limit > 0.0 && spent >= usd_to_micros(limit);
        if over(budget.tenant_daily_usd, totals.tenant.cost_micros) {
            Some("tenant")
        } else if over(budget.end_user_daily_usd, totals.end_user.cost_micros) {
            Some("end_user")
        } else {
            None
        }
    }

    /// Counts what the turn spent, once per turn, and persists it when accounting is on
    /// (prices or budgets configured).
    async fn account(&self, input: &TurnInput, spent: ModelUsage) {
        if spent.calls == 0 {
            return;
        }
        let tenant = input.tenant_id.to_string();
        let provider = self.model.provider().to_owned();
        metrics::counter!("concierge_model_tokens_total", "provider" => provider.clone(), "tenant" => tenant.clone(), "kind" => "input")
            .increment(spent.input_tokens);
        metrics::counter!("concierge_model_tokens_total", "provider" => provider.clone(), "tenant" => tenant.clone(), "kind" => "output")
            .increment(spent.output_tokens);
        if !(self.config.prices.is_set() || self.config.budget.is_set()) {
            return;
        }
        metrics::counter!("concierge_model_cost_microusd_total", "provider" => provider, "tenant" => tenant)
            .increment(spent.cost_micros);
        let day = store::utc_day(jiff::Timestamp::now());
        if let Err(e) = self
            .store
            .record_model_usage(input.tenant_id, input.end_user_id, day, spent)
            .await
        {
            tracing::warn!(error = %e, "could not record model usage");
        }
    }
}

#[async_trait]
impl TurnEngine for LlmEngine {
    async fn run(&self, input: TurnInput) -> Result<TurnOutput, TurnError> {
        if let Some(scope) = self.budget_spent(&input).await {
            // Never a silent failure: the customer gets a polite answer, operators an event.
            tracing::warn!(tenant = %input.tenant_id, scope, "daily model budget spent; answered with the budget message");
            metrics::counter!("concierge_budget_refusals_total", "scope" => scope).increment(1);
            return Ok(TurnOutput {
                reply: Some(truncate_chars(&self.config.budget.message, MAX_REPLY_CHARS)),
                answered_by: "budget",
                tools: Vec::new(),
            });
        }
        let mut tools = Vec::new();
        let mut spent = ModelUsage::default();
        let result = self.converse(&input, &mut tools, &mut spent).await;
        self.account(&input, spent).await;
        match result {
            Ok(reply) if !reply.is_empty() => Ok(TurnOutput {
                reply: Some(truncate_chars(&reply, MAX_REPLY_CHARS)),
                answered_by: "llm",
                tools,
            }),
            Ok(_) => {
                tracing::warn!("the model answered nothing; the offline engine answers");
                metrics::counter!("concierge_model_fallbacks_total", "reason" => "empty")
                    .increment(1);
                self.offline.run(input).await
            }
            Err(e) => {
                tracing::warn!(
                    kind = e.kind(),
                    "model unavailable; the offline engine answers"
                );
                metrics::counter!("concierge_model_fallbacks_total", "reason" => e.kind())
                    .increment(1);
                let mut out = self.offline.run(input).await?;
                out.answered_by = "offline";
                Ok(out)
            }
        }
    }

    fn history_window(&self) -> u32 {
        self.config.history
    }
}
