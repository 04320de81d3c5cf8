//! The built-in tools: knowledge search, long-term facts, reminders, and hand-off to a human.

use std::fmt::Write as _;
use std::sync::Arc;

use async_trait::async_trait;
use domain::jobs::JobKind;
use domain::{FactId, MessageId, ReminderId};
use jiff::{ToSpan as _, Zoned};
use schemars::JsonSchema;
use serde::Deserialize;
use store::{JobQueue, NewFact, NewJob, NewReminder, ReminderStatus, Store};

use super::{Tool, ToolContext, ToolOutput, TypedTool, columns, typed, unavailable};
use crate::retrieval::Retriever;
use crate::{HANDOFF_TOOL, truncate_chars};

pub const SEARCH_KNOWLEDGE_BASE: &str = "search_knowledge_base";
pub const REMEMBER_FACT: &str = "remember_fact";
pub const RECALL_FACTS: &str = "recall_facts";
pub const FORGET_FACT: &str = "forget_fact";
pub const CREATE_REMINDER: &str = "create_reminder";
pub const LIST_REMINDERS: &str = "list_reminders";
pub const CANCEL_REMINDER: &str = "cancel_reminder";

/// Facts kept per end user; past that, one must be forgotten first.
pub const MAX_FACTS: u32 = 200;
/// Scheduled reminders per end user.
pub const MAX_REMINDERS: u32 = 50;
const MAX_FACT_CHARS: usize = 500;
const MAX_REMINDER_CHARS: usize = 300;
const MAX_QUERY_CHARS: usize = 300;
/// Knowledge-base text returned per search, in characters.
const MAX_RESULT_CHARS: usize = 4000;
const REMINDER_ATTEMPTS: u32 = 8;

pub(super) fn all(
    store: &Arc<dyn Store>,
    queue: &Arc<dyn JobQueue>,
    retriever: &Arc<Retriever>,
) -> Vec<Arc<dyn Tool>> {
    vec![
        typed(SearchKnowledge(retriever.clone())),
        typed(RememberFact(store.clone())),
        typed(RecallFacts(store.clone())),
        typed(ForgetFact(store.clone())),
        typed(CreateReminder(store.clone())),
        typed(ListReminders(store.clone())),
        typed(CancelReminder(store.clone())),
        typed(HandOff {
            store: store.clone(),
            queue: queue.clone(),
        }),
    ]
}

/// A stable id for what step `seq` of the turn answering `turn` creates: a repeated step
/// (a resumed turn) names the same row, which the store writes once.
#[must_use]
pub fn step_uuid(turn: MessageId, seq: u32) -> uuid::Uuid {
    // Message ids are UUIDv7: the low bits are random, and flipping a few of them keeps the
    // version and variant bits.
    uuid::Uuid::from_u128(turn.into_uuid().as_u128() ^ (u128::from(seq) + 1))
}

#[must_use]
pub fn reminder_id(turn: MessageId, seq: u32) -> ReminderId {
    ReminderId::from_uuid(step_uuid(turn, seq))
}

/// Reads a date-time the model (or a person) wrote: `2026-11-23T09:00` in `now`'s time
/// zone, or with an offset or zone. It must be at least 30 seconds ahead and at most a year.
pub fn parse_when(at: &str, now: &Zoned) -> Result<Zoned, String> {
    let at = at.trim();
    let when = if let Ok(z) = at.parse::<Zoned>() {
        z
    } else if let Ok(ts) = at.parse::<jiff::Timestamp>() {
        ts.to_zoned(now.time_zone().clone())
    } else if let Ok(dt) = at.parse::<jiff::civil::DateTime>() {
        dt.to_zoned(now.time_zone().clone())
            .map_err(|e| format!("{at:?} does not exist in this time zone: {e}"))?
    } else {
        return Err(format!(
            "{at:?} is not a date-time; write it like 2026-11-23T09:00 (local time)"
        ));
    };
    if when.timestamp() < now.timestamp() + 30.seconds() {
        return Err(format!(
            "{} is in the past (it is now {}); ask the person for a later time",
            when.strftime("%Y-%m-%d %H:%M"),
            now.strftime("%Y-%m-%d %H:%M")
        ));
    }
    let limit = now
        .checked_add(1.year())
        .map_err(|e| format!("date arithmetic: {e}"))?;
    if when.timestamp() > limit.timestamp() {
        return Err("reminders can be set at most a year ahead".into());
    }
    Ok(when)
}

/// How a date-time is shown to a model: local, with weekday and zone.
fn show(at: &Zoned) -> String {
    at.strftime("%A %-d %B %Y at %H:%M (%Z)").to_string()
}

struct SearchKnowledge(Arc<Retriever>);

#[derive(Deserialize, JsonSchema)]
struct SearchArgs {
    /// What to look for, in a few words.
    query: String,
}

#[async_trait]
impl TypedTool for SearchKnowledge {
    type Args = SearchArgs;
    const NAME: &'static str = SEARCH_KNOWLEDGE_BASE;
    const DESCRIPTION: &'static str = "Search the business's knowledge base (hours, services, prices, policies). Returns the best matching entries.";

    async fn run(&self, ctx: &ToolContext<'_>, args: SearchArgs) -> ToolOutput {
        let query = truncate_chars(&args.query, MAX_QUERY_CHARS);
        match self.0.search(ctx.tenant, &query, 3).await {
            Ok(hits) if hits.is_empty() => ToolOutput::ok("No entry matches."),
            Ok(hits) => {
                let text = hits
                    .iter()
                    .map(|h| format!("## {}\n{}", h.entry.title, h.entry.body))
                    .collect::<Vec<_>>()
                    .join("\n\n");
                ToolOutput::ok(truncate_chars(&text, MAX_RESULT_CHARS))
            }
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct RememberFact(Arc<dyn Store>);

#[derive(Deserialize, JsonSchema)]
struct RememberArgs {
    /// One durable fact about the person, in a short sentence ("Prefers morning appointments").
    fact: String,
}

#[async_trait]
impl TypedTool for RememberFact {
    type Args = RememberArgs;
    const NAME: &'static str = REMEMBER_FACT;
    const DESCRIPTION: &'static str = "Remember a durable fact about the person you are talking to (preferences, people, routines), for later conversations.";

    async fn run(&self, ctx: &ToolContext<'_>, args: RememberArgs) -> ToolOutput {
        let fact = args.fact.trim();
        if fact.is_empty() {
            return ToolOutput::error("The fact is empty.");
        }
        if fact.chars().count() > MAX_FACT_CHARS {
            return ToolOutput::error(format!(
                "A fact is at most {MAX_FACT_CHARS} characters; say it shorter."
            ));
        }
        match self.0.list_facts(ctx.tenant, ctx.end_user, MAX_FACTS).await {
            Ok(facts) if facts.len() >= MAX_FACTS as usize => {
                return ToolOutput::error(
                    "Memory is full for this person: forget an outdated fact first.",
                );
            }
            Ok(_) => {}
            Err(e) => return unavailable(Self::NAME, &e),
        }
        let new = NewFact {
            id: FactId::from_uuid(step_uuid(ctx.turn, ctx.seq)),
            text: ctx.sealer.seal(columns::FACT, fact),
        };
        match self.0.add_fact(ctx.tenant, ctx.end_user, new).await {
            Ok(stored) => ToolOutput::ok(format!("Remembered (fact {}).", stored.id)),
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct RecallFacts(Arc<dyn Store>);

#[derive(Deserialize, JsonSchema)]
struct NoArgs {}

/// The end user's facts as lines `- [id] text`, newest first, at most `limit`.
pub(crate) async fn facts_text(
    store: &dyn Store,
    ctx_tenant: domain::TenantId,
    end_user: domain::EndUserId,
    sealer: &dyn super::Sealer,
    limit: u32,
) -> Result<Option<String>, store::StoreError> {
    let facts = store.list_facts(ctx_tenant, end_user, limit).await?;
    if facts.is_empty() {
        return Ok(None);
    }
    let mut out = String::new();
    for fact in facts {
        // A fact that cannot be decrypted (a damaged row) is skipped, not fatal.
        if let Ok(text) = sealer.open(columns::FACT, &fact.text) {
            let _ = writeln!(out, "- [{}] {text}", fact.id);
        }
    }
    Ok(Some(out))
}

#[async_trait]
impl TypedTool for RecallFacts {
    type Args = NoArgs;
    const NAME: &'static str = RECALL_FACTS;
    const DESCRIPTION: &'static str = "List what you remember about the person you are talking to, newest first, with each fact's id.";

    async fn run(&self, ctx: &ToolContext<'_>, _: NoArgs) -> ToolOutput {
        match facts_text(self.0.as_ref(), ctx.tenant, ctx.end_user, ctx.sealer, 50).await {
            Ok(Some(text)) => ToolOutput::ok(text),
            Ok(None) => ToolOutput::ok("You remember nothing about this person yet."),
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct ForgetFact(Arc<dyn Store>);

#[derive(Deserialize, JsonSchema)]
struct ForgetArgs {
    /// The id of the fact, as recall_facts shows it.
    fact_id: String,
}

#[async_trait]
impl TypedTool for ForgetFact {
    type Args = ForgetArgs;
    const NAME: &'static str = FORGET_FACT;
    const DESCRIPTION: &'static str =
        "Forget one fact about the person, by the id recall_facts shows.";

    async fn run(&self, ctx: &ToolContext<'_>, args: ForgetArgs) -> ToolOutput {
        let Ok(id) = args
            .fact_id
            .trim()
            .trim_matches(['[', ']'])
            .parse::<FactId>()
        else {
            return ToolOutput::error("That is not a fact id; call recall_facts to see them.");
        };
        match self.0.delete_fact(ctx.tenant, ctx.end_user, id).await {
            Ok(true) => ToolOutput::ok("Forgotten."),
            Ok(false) => ToolOutput::error("There is no such fact about this person."),
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct CreateReminder(Arc<dyn Store>);

#[derive(Deserialize, JsonSchema)]
struct CreateReminderArgs {
    /// What to remind the person of, as they would like to read it ("call Marc").
    text: String,
    /// When, as a local date and time in the person's time zone: 2026-11-23T09:00.
    at: String,
}

#[async_trait]
impl TypedTool for CreateReminder {
    type Args = CreateReminderArgs;
    const NAME: &'static str = CREATE_REMINDER;
    const DESCRIPTION: &'static str = "Schedule a reminder message to the person at a date and time (local time). Ask first if the time is unclear.";

    async fn run(&self, ctx: &ToolContext<'_>, args: CreateReminderArgs) -> ToolOutput {
        let text = args.text.trim();
        if text.is_empty() {
            return ToolOutput::error("Say what the reminder is about.");
        }
        if text.chars().count() > MAX_REMINDER_CHARS {
            return ToolOutput::error(format!(
                "A reminder is at most {MAX_REMINDER_CHARS} characters."
            ));
        }
        let when = match parse_when(&args.at, ctx.now) {
            Ok(when) => when,
            Err(e) => return ToolOutput::error(e),
        };
        let id = reminder_id(ctx.turn, ctx.seq);
        match self
            .0
            .list_reminders(ctx.tenant, ctx.end_user, false, MAX_REMINDERS)
            .await
        {
            Ok(list)
                if list.len() >= MAX_REMINDERS as usize && !list.iter().any(|r| r.id == id) =>
            {
                return ToolOutput::error(format!(
                    "This person already has {MAX_REMINDERS} reminders scheduled; cancel one first."
                ));
            }
            Ok(_) => {}
            Err(e) => return unavailable(Self::NAME, &e),
        }
        let reminder = NewReminder {
            id,
            end_user_id: ctx.end_user,
            conversation_id: ctx.conversation,
            channel: ctx.channel,
            text: ctx.sealer.seal(columns::REMINDER, text),
            due_at: when.timestamp(),
            max_attempts: REMINDER_ATTEMPTS,
        };
        match self.0.create_reminder(ctx.tenant, reminder).await {
            Ok(r) => {
                metrics::counter!("concierge_reminders_total", "event" => "created").increment(1);
                ToolOutput::ok(format!("Reminder {} set for {}.", r.id, show(&when)))
            }
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct ListReminders(Arc<dyn Store>);

#[async_trait]
impl TypedTool for ListReminders {
    type Args = NoArgs;
    const NAME: &'static str = LIST_REMINDERS;
    const DESCRIPTION: &'static str =
        "List the person's scheduled reminders (id, when, what), soonest first.";

    async fn run(&self, ctx: &ToolContext<'_>, _: NoArgs) -> ToolOutput {
        let list = match self
            .0
            .list_reminders(ctx.tenant, ctx.end_user, false, MAX_REMINDERS)
            .await
        {
            Ok(list) => list,
            Err(e) => return unavailable(Self::NAME, &e),
        };
        if list.is_empty() {
            return ToolOutput::ok("No reminder is scheduled.");
        }
        let mut out = String::new();
        for r in list
            .iter()
            .filter(|r| r.status == ReminderStatus::Scheduled)
        {
            let text = ctx
                .sealer
                .open(columns::REMINDER, &r.text)
                .unwrap_or_else(|_| "(unreadable)".into());
            let when = r.due_at.to_zoned(ctx.now.time_zone().clone());
            let _ = writeln!(out, "- [{}] {}: {text}", r.id, show(&when));
        }
        ToolOutput::ok(out)
    }
}

struct CancelReminder(Arc<dyn Store>);

#[derive(Deserialize, JsonSchema)]
struct CancelReminderArgs {
    /// The id of the reminder, as list_reminders shows it.
    reminder_id: String,
}

#[async_trait]
impl TypedTool for CancelReminder {
    type Args = CancelReminderArgs;
    const NAME: &'static str = CANCEL_REMINDER;
    const DESCRIPTION: &'static str = "Cancel one of the person's scheduled reminders, by id.";

    async fn run(&self, ctx: &ToolContext<'_>, args: CancelReminderArgs) -> ToolOutput {
        let Ok(id) = args
            .reminder_id
            .trim()
            .trim_matches(['[', ']'])
            .parse::<ReminderId>()
        else {
            return ToolOutput::error("That is not a reminder id; call list_reminders.");
        };
        match self.0.cancel_reminder(ctx.tenant, ctx.end_user, id).await {
            Ok(true) => {
                metrics::counter!("concierge_reminders_total", "event" => "cancelled").increment(1);
                ToolOutput::ok("Cancelled.")
            }
            Ok(false) => ToolOutput::error("No scheduled reminder of this person has that id."),
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

struct HandOff {
    store: Arc<dyn Store>,
    queue: Arc<dyn JobQueue>,
}

#[derive(Deserialize, JsonSchema)]
struct HandOffArgs {
    /// Why a person is needed, in a few words (kept with the conversation for staff).
    #[serde(default)]
    #[allow(dead_code)]
    reason: Option<String>,
}

/// Marks the conversation for a human and enqueues the staff notification (once per
/// hand-off, whatever the retries).
pub(crate) async fn hand_off(
    store: &dyn Store,
    queue: &dyn JobQueue,
    ctx: &ToolContext<'_>,
    event: &'static str,
) -> Result<bool, store::StoreError> {
    let Some(conversation) = store
        .update_handoff(
            ctx.tenant,
            ctx.conversation,
            domain::HandoffEvent::Request,
            None,
        )
        .await?
    else {
        return Ok(false);
    };
    let since = conversation
        .handoff_at
        .map_or(0, jiff::Timestamp::as_millisecond);
    queue
        .enqueue(NewJob {
            kind: JobKind::NotifyStaff,
            tenant_id: Some(ctx.tenant),
            payload: serde_json::json!({ "conversation_id": ctx.conversation }),
            idempotency_key: Some(format!("notify_staff:{}:{since}", ctx.conversation)),
            run_at: None,
            max_attempts: 5,
        })
        .await?;
    metrics::counter!("concierge_handoffs_total", "event" => event).increment(1);
    Ok(true)
}

#[async_trait]
impl TypedTool for HandOff {
    type Args = HandOffArgs;
    const NAME: &'static str = HANDOFF_TOOL;
    const DESCRIPTION: &'static str = "Hand the conversation to a member of staff, who will reply in this conversation; use when the person asks for a human or you cannot help.";

    async fn run(&self, ctx: &ToolContext<'_>, _: HandOffArgs) -> ToolOutput {
        match hand_off(
            self.store.as_ref(),
            self.queue.as_ref(),
            ctx,
            "requested_by_agent",
        )
        .await
        {
            Ok(true) => ToolOutput::ok("Done: a member of staff will reply in this conversation."),
            Ok(false) => ToolOutput::error("This conversation cannot be handed off."),
            Err(e) => unavailable(Self::NAME, &e),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn now() -> Zoned {
        "2026-11-22T15:00[Europe/Paris]".parse().unwrap()
    }

    #[test]
    fn parse_when_reads_local_offset_and_zoned_times() {
        let now = now();
        let local = parse_when("2026-11-23T09:00", &now).unwrap();
        assert_eq!(local.to_string(), "2026-11-23T09:00:00+01:00[Europe/Paris]");
        let offset = parse_when("2026-11-23T09:00:00Z", &now).unwrap();
        assert_eq!(offset.hour(), 10);
        let zoned = parse_when("2026-11-23T09:00[America/New_York]", &now).unwrap();
        assert_eq!(zoned.time_zone().iana_name(), Some("America/New_York"));
        assert!(
            parse_when("2026-11-22T14:00", &now)
                .unwrap_err()
                .contains("past")
        );
        assert!(
            parse_when("2028-01-01T09:00", &now)
                .unwrap_err()
                .contains("year")
        );
        assert!(
            parse_when("tomorrow", &now)
                .unwrap_err()
                .contains("not a date-time")
        );
        // A time skipped by the spring-forward change is refused or moved, never a panic.
        let _ = parse_when("2027-03-28T02:30", &now);
    }

    #[test]
    fn step_ids_are_stable_and_distinct() {
        let turn = MessageId::new();
        assert_eq!(step_uuid(turn, 3), step_uuid(turn, 3));
        assert_ne!(step_uuid(turn, 3), step_uuid(turn, 4));
        assert_ne!(step_uuid(turn, 0), turn.into_uuid());
        assert_eq!(step_uuid(turn, 0).get_version_num(), 7);
    }

    #[test]
    fn argument_schemas_are_plain_objects() {
        let schema = super::super::parameters_schema::<CreateReminderArgs>();
        assert_eq!(schema["type"], "object");
        assert!(schema.get("title").is_none());
        assert_eq!(schema["required"], serde_json::json!(["text", "at"]));
        let empty = super::super::parameters_schema::<NoArgs>();
        assert_eq!(empty["type"], "object");
        assert!(empty["properties"].is_object());
    }
}
