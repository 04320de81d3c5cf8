//! A turn answered by a team of agents that reason with a model: the conversation's current
//! agent (from its profile) gets the conversation so far, what is remembered about the end
//! user, and its allowed tools, in a bounded loop of tool calls; it may pass the
//! conversation to a colleague along the profile's hand-off edges, within the same turn.
//! Every tool step is recorded (encrypted) as it happens, so a turn that is run again after
//! a crash reuses the results of the steps that already ran instead of repeating them. When
//! the model cannot be reached (every provider and retry failed) the offline engine answers
//! instead, so a customer always gets a reply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use domain::{Channel, Direction};
use llm::{ChatModel, ChatRequest, LlmError, Message, Part, Role, ToolCall, ToolChoice, ToolSpec};
use serde_json::json;
use store::{ModelUsage, NewTurnStep, Store};

use crate::models::{ModelChoice, Models};
use crate::profile::{AgentSpec, Profile};
use crate::profiles::Profiles;
use crate::redact::Redactions;
use crate::state::{self, Memory};
use crate::tools::{self, Registry, ToolContext, ToolOutput, columns};
use crate::{MAX_REPLY_CHARS, TurnEngine, TurnError, TurnInput, TurnOutput, truncate_chars};

/// Tool calls run per model answer; more are refused.
const MAX_CALLS_PER_ROUND: usize = 8;
/// Hand-offs between agents within one turn (a ping-pong between two agents stops here).
const MAX_TRANSFERS: usize = 3;
const TRANSFER_PREFIX: &str = "transfer_to_";
/// Facts about the end user put in the instructions of agents that use memory.
const FACTS_IN_CONTEXT: u32 = 20;
/// The rolling summary is cut to this length.
const MAX_SUMMARY_CHARS: usize = 2_000;

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
    /// Daily spending limits; over one, the turn is answered with `budget.message`.
    pub budget: Budget,
    /// The time zone of dates when the profile names none.
    pub time_zone: jiff::tz::TimeZone,
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
            system_prompt: "Answer briefly and politely. Never invent facts about the business \
                (prices, hours, policies): use your tools, and if you cannot help, say a member \
                of staff will follow up."
                .into(),
            history: 12,
            max_tool_rounds: 3,
            tool_timeout: Duration::from_secs(5),
            max_tokens: 400,
            redact_pii: false,
            budget: Budget::default(),
            time_zone: jiff::tz::TimeZone::UTC,
        }
    }
}

pub struct LlmEngine {
    /// The model of each tenant (its own, or the installation's), with prices and cache.
    models: Arc<Models>,
    store: Arc<dyn Store>,
    registry: Registry,
    profiles: Arc<Profiles>,
    offline: Arc<dyn TurnEngine>,
    config: LlmEngineConfig,
}

/// A step recorded by an earlier run of the turn: its tool (or agent) and encrypted detail.
type RecordedStep = (String, Option<Vec<u8>>);

/// What one turn is doing, threaded through the loop.
struct Turn<'a> {
    input: &'a TurnInput,
    profile: Arc<Profile>,
    agent: String,
    /// Agents that spoke in this turn, in order.
    agents: Vec<String>,
    tools: Vec<&'static str>,
    spent: ModelUsage,
    now: jiff::Zoned,
    seq: u32,
    /// Steps a previous run of this turn recorded, by seq (loaded at the first tool call).
    prior: Option<HashMap<u32, RecordedStep>>,
    memory: Memory,
    model: Arc<ModelChoice>,
}

impl LlmEngine {
    #[must_use]
    pub fn new(
        models: Arc<Models>,
        store: Arc<dyn Store>,
        registry: Registry,
        profiles: Arc<Profiles>,
        offline: Arc<dyn TurnEngine>,
        config: LlmEngineConfig,
    ) -> Self {
        Self {
            models,
            store,
            registry,
            profiles,
            offline,
            config,
        }
    }

    /// The tools offered to `agent`: its allowed tools that are available, then one
    /// transfer tool per hand-off edge.
    fn tool_specs(&self, profile: &Profile, agent: &AgentSpec) -> Vec<ToolSpec> {
        let mut specs = self.registry.specs(&agent.tools);
        for edge in &agent.handoffs {
            let description = profile
                .agents
                .get(edge)
                .map_or(String::new(), |a| a.description.clone());
            specs.push(ToolSpec {
                name: format!("{TRANSFER_PREFIX}{edge}"),
                description: format!(
                    "Pass the conversation to your colleague {edge:?}: {description}"
                ),
                parameters: json!({"type": "object", "properties": {}}),
            });
        }
        specs
    }

    fn system_prompt(
        &self,
        turn: &Turn<'_>,
        context: &Context,
        pii: Option<&Redactions>,
    ) -> String {
        let agent = turn.profile.agent(Some(&turn.agent));
        let mut system = String::new();
        if !self.config.system_prompt.trim().is_empty() {
            system.push_str(self.config.system_prompt.trim());
            system.push_str("\n\n");
        }
        system.push_str(&agent.instructions);
        if turn.profile.agents.len() > 1 {
            system.push_str(&format!(
                "\n\nYou are {:?}, one agent of a team; the customer sees one conversation. \
                 To pass the conversation to a colleague, call its transfer tool and let them answer.",
                agent.name
            ));
        }
        let channel = match turn.input.channel {
            Channel::Sms => {
                "The customer is texting: answer in at most three short sentences, plain text."
            }
            Channel::WebChat => "The customer is on the web chat: answer in a few short sentences.",
        };
        system.push_str("\n\n");
        system.push_str(channel);
        system.push_str(&format!(
            "\nIt is now {} ({}).",
            turn.now.strftime("%A %-d %B %Y, %H:%M"),
            turn.now.time_zone().iana_name().unwrap_or("UTC")
        ));
        if let Some(facts) = &context.facts {
            system.push_str("\n\nWhat you remember about this person (facts, with ids):\n");
            system.push_str(facts);
        }
        if let Some(summary) = &context.summary {
            system.push_str("\n\nSummary of the earlier conversation:\n");
            system.push_str(summary);
        }
        if let Some(note) = pii.and_then(Redactions::instructions) {
            system.push_str("\n\n");
            system.push_str(&note);
        }
        system
    }

    fn request(
        &self,
        turn: &Turn<'_>,
        context: &Context,
        pii: &mut Option<Redactions>,
    ) -> ChatRequest {
        let input = turn.input;
        let mut messages: Vec<Message> = Vec::with_capacity(input.history.len() + 1);
        for m in &input.history {
            let text = mask_mut(pii, &m.text);
            messages.push(match m.direction {
                Direction::Inbound => Message::user(text),
                // Staff wrote it while a person had the conversation: the agent reads it
                // as its side's words, marked so it knows a colleague said them.
                Direction::Outbound if m.from_staff => {
                    Message::assistant(format!("[a member of staff wrote] {text}"))
                }
                Direction::Outbound => Message::assistant(text),
            });
        }
        messages.push(Message::user(mask_mut(pii, &input.text)));
        let mut request = ChatRequest::new(messages);
        self.set_agent(&mut request, turn, context, pii.as_ref());
        request
    }

    /// Points `request` at the turn's current agent: its instructions, tools and model policy.
    fn set_agent(
        &self,
        request: &mut ChatRequest,
        turn: &Turn<'_>,
        context: &Context,
        pii: Option<&Redactions>,
    ) {
        let agent = turn.profile.agent(Some(&turn.agent));
        request.system = Some(self.system_prompt(turn, context, pii));
        request.tools = self.tool_specs(&turn.profile, agent);
        request.model = agent.model.clone().unwrap_or_default();
        request.temperature = agent.temperature;
        request.max_tokens = agent.max_tokens.unwrap_or(self.config.max_tokens);
    }

    /// Runs one tool call of the model (or replays it from a previous run of this turn).
    async fn call_tool(
        &self,
        turn: &mut Turn<'_>,
        call: &ToolCall,
        sealer_pii: Option<&Redactions>,
    ) -> Result<ToolOutput, TurnError> {
        let seq = turn.seq;
        turn.seq += 1;
        let input = turn.input;
        if turn.prior.is_none() {
            let steps = self
                .store
                .turn_steps(input.tenant_id, input.message_id)
                .await?;
            turn.prior = Some(
                steps
                    .into_iter()
                    .map(|s| (s.seq, (s.name, s.detail)))
                    .collect(),
            );
        }
        let label = tools::label(&call.name);
        turn.tools.push(label);
        // A resumed turn: the same step already ran; give the model its recorded result.
        if let Some((name, Some(detail))) = turn.prior.as_ref().and_then(|p| p.get(&seq))
            && name == label
            && let Ok(json) = input.sealer.open(columns::STEP, detail)
            && let Ok(recorded) = serde_json::from_str::<serde_json::Value>(&json)
        {
            metrics::counter!("concierge_tool_replays_total", "tool" => label).increment(1);
            return Ok(ToolOutput {
                content: recorded["result"].as_str().unwrap_or_default().to_owned(),
                is_error: recorded["is_error"].as_bool().unwrap_or(true),
            });
        }
        let arguments = match sealer_pii {
            Some(r) => unmask_json(r, &call.arguments),
            None => call.arguments.clone(),
        };
        let ctx = ToolContext {
            tenant: input.tenant_id,
            conversation: input.conversation_id,
            end_user: input.end_user_id,
            turn: input.message_id,
            channel: input.channel,
            seq,
            now: &turn.now,
            sealer: input.sealer.as_ref(),
        };
        let agent = turn.profile.agent(Some(&turn.agent));
        let (label, output) = self
            .registry
            .call(&agent.tools, &call.name, &ctx, &arguments)
            .await;
        let detail = json!({"result": output.content, "is_error": output.is_error}).to_string();
        self.store
            .record_turn_step(
                input.tenant_id,
                input.conversation_id,
                input.message_id,
                NewTurnStep {
                    seq,
                    kind: "tool".into(),
                    name: label.into(),
                    is_error: output.is_error,
                    detail: Some(input.sealer.seal(columns::STEP, &detail)),
                },
            )
            .await?;
        Ok(output)
    }

    /// Moves the turn to `target` if the current agent has that edge.
    async fn transfer(
        &self,
        turn: &mut Turn<'_>,
        target: &str,
        transfers: &mut usize,
    ) -> Result<ToolOutput, TurnError> {
        let seq = turn.seq;
        turn.seq += 1;
        let current = turn.profile.agent(Some(&turn.agent));
        if !current.handoffs.iter().any(|h| h == target) {
            metrics::counter!("concierge_tool_refusals_total", "tool" => "transfer").increment(1);
            return Ok(ToolOutput::error(format!(
                "You cannot pass the conversation to {target:?}; answer the customer yourself."
            )));
        }
        if *transfers >= MAX_TRANSFERS {
            return Ok(ToolOutput::error(
                "Too many transfers in this turn: answer the customer yourself now.",
            ));
        }
        *transfers += 1;
        let input = turn.input;
        self.store
            .record_turn_step(
                input.tenant_id,
                input.conversation_id,
                input.message_id,
                NewTurnStep {
                    seq,
                    kind: "handoff".into(),
                    name: target.to_owned(),
                    is_error: false,
                    detail: None,
                },
            )
            .await?;
        metrics::counter!("concierge_agent_handoffs_total").increment(1);
        turn.agent = target.to_owned();
        turn.agents.push(target.to_owned());
        turn.tools.push("transfer");
        Ok(ToolOutput::ok(format!(
            "You are now {target:?}: continue the conversation with the customer."
        )))
    }

    /// Keeps the rolling summary ahead of the history window. When a message the summary
    /// does not cover is about to leave a full window (it is among the oldest two), the
    /// older half of the window is folded into the summary with one short model call. The
    /// window slides by about two messages a turn, so this runs every few turns and every
    /// message is summarised before it leaves. A failed call leaves the summary as it was
    /// (the next turn tries again).
    async fn refresh_summary(&self, turn: &mut Turn<'_>, pii: &mut Option<Redactions>) {
        let history = &turn.input.history;
        let window = self.config.history as usize;
        if window < 4 || history.len() < window {
            return;
        }
        let half = window / 2;
        let through = turn.memory.summary_through;
        if through.is_some_and(|t| history[1].id <= t) {
            return;
        }
        let mut transcript = String::new();
        for m in history[..half]
            .iter()
            .filter(|m| through.is_none_or(|t| m.id > t))
        {
            let who = match m.direction {
                Direction::Inbound => "Customer",
                Direction::Outbound if m.from_staff => "Staff",
                Direction::Outbound => "Us",
            };
            transcript.push_str(&format!("{who}: {}\n", mask_mut(pii, &m.text)));
        }
        let previous = turn
            .memory
            .summary
            .as_deref()
            .map(|s| mask_mut(pii, s))
            .unwrap_or_else(|| "(none yet)".into());
        let mut request = ChatRequest::new(vec![Message::user(format!(
            "Summary so far:\n{previous}\n\nMessages that follow it:\n{transcript}"
        ))]);
        request.system = Some(
            "Update the summary of this customer conversation for a colleague who will take \
             it over. Keep names, dates, times, requests, commitments and open questions; drop \
             small talk. Write at most 120 words, plain text, no preamble."
                .into(),
        );
        request.max_tokens = 300;
        request.tool_choice = ToolChoice::None;
        let started = Instant::now();
        let model = turn.model.clone();
        match model.chat.complete(&request).await {
            Ok(response) => {
                metrics::histogram!("concierge_model_seconds", "provider" => model.chat.provider().to_owned())
                    .record(started.elapsed().as_secs_f64());
                charge(&model.prices, &mut turn.spent, &response, &request.model);
                let text = response.text().trim().to_owned();
                if text.is_empty() {
                    return;
                }
                let text = match pii.as_ref() {
                    Some(r) => r.unmask(&text),
                    None => text,
                };
                turn.memory.summary = Some(truncate_chars(&text, MAX_SUMMARY_CHARS));
                turn.memory.summary_through = Some(history[half - 1].id);
                metrics::counter!("concierge_summaries_total", "outcome" => "ok").increment(1);
            }
            Err(e) => {
                tracing::warn!(kind = e.kind(), "rolling summary not updated");
                metrics::counter!("concierge_summaries_total", "outcome" => "error").increment(1);
            }
        }
    }

    async fn facts(&self, input: &TurnInput) -> Result<Option<String>, TurnError> {
        Ok(tools::facts_text(
            self.store.as_ref(),
            input.tenant_id,
            input.end_user_id,
            input.sealer.as_ref(),
            FACTS_IN_CONTEXT,
        )
        .await?)
    }

    /// The reply text (empty if the model gave none).
    async fn converse(&self, turn: &mut Turn<'_>) -> Result<Result<String, LlmError>, TurnError> {
        let input = turn.input;
        let uses_memory = |agent: &AgentSpec| {
            agent
                .tools
                .iter()
                .any(|t| t == tools::RECALL_FACTS || t == tools::REMEMBER_FACT)
        };
        let mut pii = self.config.redact_pii.then(Redactions::new);
        let mut context = Context {
            facts: None,
            summary: turn.memory.summary.clone().map(|s| mask_mut(&mut pii, &s)),
        };
        let mut facts_loaded = false;
        if uses_memory(turn.profile.agent(Some(&turn.agent))) {
            context.facts = self.facts(input).await?.map(|f| mask_mut(&mut pii, &f));
            facts_loaded = true;
        }
        let mut request = self.request(turn, &context, &mut pii);
        let mut transfers = 0;
        for round in 0..=self.config.max_tool_rounds {
            if round == self.config.max_tool_rounds {
                // Tool budget spent (a loop, or a stubborn model): answer with what you have.
                request.tool_choice = ToolChoice::None;
            }
            let agent = turn.profile.agent(Some(&turn.agent));
            let scoped;
            let choice = turn.model.clone();
            let model: &dyn ChatModel = match &choice.cache {
                Some(cache) if agent.cache => {
                    scoped = cache.scoped(input.tenant_id.to_string());
                    &scoped
                }
                _ => choice.chat.as_ref(),
            };
            let started = Instant::now();
            let response = match model.complete(&request).await {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            metrics::histogram!("concierge_model_seconds", "provider" => choice.chat.provider().to_owned())
                .record(started.elapsed().as_secs_f64());
            // A cached answer was billed when it was first made.
            if !response.usage.from_cache {
                charge(&choice.prices, &mut turn.spent, &response, &request.model);
            }
            let calls: Vec<ToolCall> = response.tool_calls().into_iter().cloned().collect();
            if calls.is_empty() || request.tool_choice == ToolChoice::None {
                let reply = response.text().trim().to_owned();
                if !reply.is_empty() {
                    self.refresh_summary(turn, &mut pii).await;
                }
                return Ok(Ok(match &pii {
                    Some(r) => r.unmask(&reply),
                    None => reply,
                }));
            }
            request.messages.push(Message {
                role: Role::Assistant,
                parts: response.parts.clone(),
            });
            let agent_before = turn.agent.clone();
            let mut results = Vec::with_capacity(calls.len());
            for (i, call) in calls.iter().enumerate() {
                let output = if i >= MAX_CALLS_PER_ROUND {
                    ToolOutput::error("Too many tool calls at once; ask again.")
                } else if let Some(target) = call.name.strip_prefix(TRANSFER_PREFIX) {
                    self.transfer(turn, target, &mut transfers).await?
                } else {
                    self.call_tool(turn, call, pii.as_ref()).await?
                };
                results.push(Part::ToolResult {
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    content: output.content,
                    is_error: output.is_error,
                });
            }
            request.messages.push(Message {
                role: Role::User,
                parts: results,
            });
            if turn.agent != agent_before {
                if !facts_loaded && uses_memory(turn.profile.agent(Some(&turn.agent))) {
                    context.facts = self.facts(input).await?.map(|f| mask_mut(&mut pii, &f));
                    facts_loaded = true;
                }
                self.set_agent(&mut request, turn, &context, pii.as_ref());
            }
        }
        Ok(Ok(String::new()))
    }
}

/// Adds one model call's usage to what the turn spent, priced as the model that answered
/// (as the provider names it; the one asked for when it names none).
fn charge(
    prices: &llm::PriceTable,
    spent: &mut ModelUsage,
    response: &llm::ChatResponse,
    asked: &str,
) {
    let usage = &response.usage;
    let model = if response.model.is_empty() {
        asked
    } else {
        &response.model
    };
    spent.calls += 1;
    spent.input_tokens += usage.input_tokens;
    spent.output_tokens += usage.output_tokens;
    spent.cost_micros += prices
        .for_model(model)
        .cost_micros(usage.input_tokens, usage.output_tokens);
}

/// What the agent is told beyond the messages: remembered facts and the rolling summary,
/// already masked when PII redaction is on.
struct Context {
    facts: Option<String>,
    summary: Option<String>,
}

fn mask_mut(pii: &mut Option<Redactions>, text: &str) -> String {
    match pii {
        Some(r) => r.mask(text),
        None => text.to_owned(),
    }
}

/// Restores masked values in every string of a tool call's arguments.
fn unmask_json(pii: &Redactions, value: &serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::String(s) => serde_json::Value::String(pii.unmask(s)),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(|v| unmask_json(pii, v)).collect())
        }
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), unmask_json(pii, v)))
                .collect(),
        ),
        other => other.clone(),
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
    async fn account(&self, input: &TurnInput, model: &ModelChoice, spent: ModelUsage) {
        if spent.calls == 0 {
            return;
        }
        let tenant = input.tenant_id.to_string();
        let provider = model.chat.provider().to_owned();
        metrics::counter!("concierge_model_tokens_total", "provider" => provider.clone(), "tenant" => tenant.clone(), "kind" => "input")
            .increment(spent.input_tokens);
        metrics::counter!("concierge_model_tokens_total", "provider" => provider.clone(), "tenant" => tenant.clone(), "kind" => "output")
            .increment(spent.output_tokens);
        if !(model.prices.is_set() || self.config.budget.is_set()) {
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
        let Some(model) = self
            .models
            .for_tenant(input.tenant_id, input.sealer.as_ref())
            .await?
        else {
            // No model for this tenant: the offline engine is the engine.
            return self.offline.run(input).await;
        };
        if let Some(scope) = self.budget_spent(&input).await {
            // Never a silent failure: the customer gets a polite answer, operators an event.
            tracing::warn!(tenant = %input.tenant_id, scope, "daily model budget spent; answered with the budget message");
            metrics::counter!("concierge_budget_refusals_total", "scope" => scope).increment(1);
            return Ok(TurnOutput {
                reply: Some(truncate_chars(&self.config.budget.message, MAX_REPLY_CHARS)),
                answered_by: "budget",
                tools: Vec::new(),
                agents: Vec::new(),
            });
        }
        let loaded = state::load(
            self.store.as_ref(),
            input.sealer.as_ref(),
            input.tenant_id,
            input.conversation_id,
            input.state.as_ref(),
        )
        .await?;
        let profile = self
            .profiles
            .resolve(input.tenant_id, loaded.stored.profile.as_deref())
            .await?;
        let agent = profile.agent(loaded.stored.agent.as_deref()).name.clone();
        let tz = profile
            .time_zone()
            .unwrap_or_else(|| self.config.time_zone.clone());
        let mut turn = Turn {
            input: &input,
            profile: profile.clone(),
            agents: vec![agent.clone()],
            agent,
            tools: Vec::new(),
            spent: ModelUsage::default(),
            now: jiff::Timestamp::now().to_zoned(tz),
            seq: 0,
            prior: None,
            memory: loaded.memory.clone(),
            model: model.clone(),
        };
        let result = self.converse(&mut turn).await;
        self.account(&input, &model, turn.spent).await;
        let result = result?;
        let (tools, agents) = (
            std::mem::take(&mut turn.tools),
            std::mem::take(&mut turn.agents),
        );
        match result {
            Ok(reply) if !reply.is_empty() => {
                state::save(
                    self.store.as_ref(),
                    input.sealer.as_ref(),
                    input.tenant_id,
                    input.conversation_id,
                    &loaded,
                    Some(&profile.name),
                    Some(&turn.agent),
                    &turn.memory,
                )
                .await?;
                Ok(TurnOutput {
                    reply: Some(truncate_chars(&reply, MAX_REPLY_CHARS)),
                    answered_by: "llm",
                    tools,
                    agents,
                })
            }
            Ok(_) => {
                tracing::warn!("the model answered nothing; the offline engine answers");
                metrics::counter!("concierge_model_fallbacks_total", "reason" => "empty")
                    .increment(1);
                let mut out = self.offline.run(input).await?;
                out.tools.splice(0..0, tools);
                Ok(out)
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
                out.tools.splice(0..0, tools);
                Ok(out)
            }
        }
    }

    fn history_window(&self, tenant: domain::TenantId) -> u32 {
        // A tenant known to have no model is answered by the offline engine, which reads no
        // history: do not make the message path load it.
        if self.models.known_without_model(tenant) {
            0
        } else {
            self.config.history
        }
    }

    fn settings_changed(&self, tenant: domain::TenantId) {
        self.models.forget(tenant);
        self.profiles.invalidate(tenant);
        self.offline.settings_changed(tenant);
    }
}
