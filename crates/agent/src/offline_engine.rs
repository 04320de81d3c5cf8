//! The offline engine: answers without a model, in English and French. It is the embedded
//! default and the degraded mode when every provider fails.
//!
//! Each message goes through the dialogue policy ([`offline::dialogue::step`]) with the
//! conversation's dialogue state (kept encrypted between messages), and the action it
//! decides is carried out here: small talk and questions are answered, reminders are
//! scheduled through the same store path as the `create_reminder` tool, bookings go to the
//! booking system when one is connected (else to staff), questions go to the knowledge base,
//! and a request for a person hands the conversation off and notifies staff.

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Zoned;
use store::{JobQueue, NewReminder, ReminderStatus, Store};

use crate::offline::Language;
use crate::offline::dialogue::{self, Action, DialogueState};
use crate::profiles::Profiles;
use crate::retrieval::Retriever;
use crate::state::{self, Memory};
use crate::tools::{
    self, BookingError, BookingRequest, Bookings, ToolContext, columns, reminder_id, step_uuid,
};
use crate::{HANDOFF_TOOL, MAX_REPLY_CHARS, TurnEngine, TurnError, TurnInput, TurnOutput};

const REMINDER_ATTEMPTS: u32 = 8;

/// The offline engine (the name is historical: the knowledge base is one of its answers).
pub struct KnowledgeResponder {
    store: Arc<dyn Store>,
    queue: Option<Arc<dyn JobQueue>>,
    bookings: Option<Arc<dyn Bookings>>,
    profiles: Option<Arc<Profiles>>,
    retriever: Option<Arc<Retriever>>,
    time_zone: jiff::tz::TimeZone,
    fallback: String,
}

impl KnowledgeResponder {
    /// An engine answering from `store`, with `fallback` when the knowledge base has no
    /// answer. Dates are read in UTC until [`Self::with_time_zone`].
    #[must_use]
    pub fn new(store: Arc<dyn Store>, fallback: String) -> Self {
        Self {
            store,
            queue: None,
            bookings: None,
            profiles: None,
            retriever: None,
            time_zone: jiff::tz::TimeZone::UTC,
            fallback,
        }
    }

    /// Notifies staff of hand-offs through `queue`.
    #[must_use]
    pub fn with_queue(mut self, queue: Arc<dyn JobQueue>) -> Self {
        self.queue = Some(queue);
        self
    }

    /// Books through a booking system instead of passing requests to staff.
    #[must_use]
    pub fn with_bookings(mut self, bookings: Arc<dyn Bookings>) -> Self {
        self.bookings = Some(bookings);
        self
    }

    /// Reads the business's time zone from the conversation's profile.
    #[must_use]
    pub fn with_profiles(mut self, profiles: Arc<Profiles>) -> Self {
        self.profiles = Some(profiles);
        self
    }

    /// Searches the knowledge base with `retriever` (hybrid when it has an embedder).
    #[must_use]
    pub fn with_retriever(mut self, retriever: Arc<Retriever>) -> Self {
        self.retriever = Some(retriever);
        self
    }

    /// The time zone of dates when the profile names none.
    #[must_use]
    pub fn with_time_zone(mut self, time_zone: jiff::tz::TimeZone) -> Self {
        self.time_zone = time_zone;
        self
    }

    async fn now(&self, input: &TurnInput, profile: Option<&str>) -> Zoned {
        let tz = match &self.profiles {
            Some(profiles) => match profiles.resolve(input.tenant_id, profile).await {
                Ok(p) => p.time_zone(),
                Err(e) => {
                    tracing::warn!(error = %e, "profile unavailable; dates in the default time zone");
                    None
                }
            },
            None => None,
        };
        jiff::Timestamp::now().to_zoned(tz.unwrap_or_else(|| self.time_zone.clone()))
    }

    /// Marks the conversation for staff (and queues their notification). False when there
    /// is no conversation to hand off.
    async fn hand_off(&self, input: &TurnInput, now: &Zoned) -> Result<bool, TurnError> {
        let ctx = context(input, now, 0);
        match &self.queue {
            Some(queue) => Ok(tools::hand_off(
                self.store.as_ref(),
                queue.as_ref(),
                &ctx,
                "requested_by_customer",
            )
            .await?),
            None => {
                let marked = self
                    .store
                    .update_handoff(
                        input.tenant_id,
                        input.conversation_id,
                        domain::HandoffEvent::Request,
                        None,
                    )
                    .await?
                    .is_some();
                if marked {
                    metrics::counter!("concierge_handoffs_total", "event" => "requested_by_customer")
                        .increment(1);
                }
                Ok(marked)
            }
        }
    }

    async fn act(
        &self,
        input: &TurnInput,
        dialogue: &mut DialogueState,
        action: Action,
        idle_before: bool,
        now: &Zoned,
    ) -> Result<TurnOutput, TurnError> {
        let lang = dialogue.language();
        let out = |reply: String, answered_by: &'static str, tools: Vec<&'static str>| TurnOutput {
            reply: Some(crate::truncate_chars(&reply, MAX_REPLY_CHARS)),
            answered_by,
            tools,
            agents: Vec::new(),
        };
        Ok(match action {
            // Nothing understood: the operator's fallback message, not the built-in one.
            Action::NotUnderstood(_) => out(self.fallback.clone(), "fallback", Vec::new()),
            Action::Reply(text) => {
                let label = if idle_before && dialogue.is_idle() {
                    "small_talk"
                } else {
                    "dialogue"
                };
                out(text, label, Vec::new())
            }
            Action::SearchKnowledge { query } => {
                let hits = match &self.retriever {
                    Some(r) => r.search(input.tenant_id, &query, 1).await?,
                    None => self.store.search_kb(input.tenant_id, &query, 1).await?,
                };
                let (mut reply, label) = match hits.into_iter().next() {
                    Some(hit) => (hit.entry.body, "knowledge_base"),
                    None => (self.fallback.clone(), "fallback"),
                };
                if let Some(prompt) = dialogue.pending_prompt(now) {
                    reply = format!("{reply}\n\n{prompt}");
                }
                out(reply, label, Vec::new())
            }
            Action::Handoff { reply } => {
                if self.hand_off(input, now).await? {
                    out(reply, "handoff", vec![HANDOFF_TOOL])
                } else {
                    // Only promise a person once the conversation is really marked for one.
                    out(self.fallback.clone(), "fallback", Vec::new())
                }
            }
            Action::CreateReminder { text, at, confirm } => {
                let message = match lang {
                    Language::En => format!("Reminder: {text}"),
                    Language::Fr => format!("Rappel : {text}"),
                };
                let reminder = NewReminder {
                    id: reminder_id(input.message_id, 0),
                    end_user_id: input.end_user_id,
                    conversation_id: input.conversation_id,
                    channel: input.channel,
                    text: input.sealer.seal(columns::REMINDER, &message),
                    due_at: at.timestamp(),
                    max_attempts: REMINDER_ATTEMPTS,
                };
                match self.store.create_reminder(input.tenant_id, reminder).await {
                    Ok(_) => {
                        metrics::counter!("concierge_reminders_total", "event" => "created")
                            .increment(1);
                        out(confirm, "reminder", vec![tools::CREATE_REMINDER])
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "offline reminder not scheduled");
                        out(
                            dialogue::reminder_failed(lang).to_owned(),
                            "reminder",
                            vec![tools::CREATE_REMINDER],
                        )
                    }
                }
            }
            Action::ListReminders => {
                let list = self
                    .store
                    .list_reminders(
                        input.tenant_id,
                        input.end_user_id,
                        false,
                        tools::MAX_REMINDERS,
                    )
                    .await?;
                out(
                    reminders_text(input, &list, lang, now),
                    "reminder",
                    vec![tools::LIST_REMINDERS],
                )
            }
            Action::CancelReminder => {
                let list = self
                    .store
                    .list_reminders(
                        input.tenant_id,
                        input.end_user_id,
                        false,
                        tools::MAX_REMINDERS,
                    )
                    .await?;
                let scheduled: Vec<_> = list
                    .iter()
                    .filter(|r| r.status == ReminderStatus::Scheduled)
                    .collect();
                let reply = match scheduled.as_slice() {
                    [only] => {
                        self.store
                            .cancel_reminder(input.tenant_id, input.end_user_id, only.id)
                            .await?;
                        metrics::counter!("concierge_reminders_total", "event" => "cancelled")
                            .increment(1);
                        let when = only.due_at.to_zoned(now.time_zone().clone());
                        match lang {
                            Language::En => format!(
                                "Done: your reminder for {} is cancelled.",
                                dialogue::format_when(lang, &when, now)
                            ),
                            Language::Fr => format!(
                                "C'est fait : votre rappel de {} est annulé.",
                                dialogue::format_when(lang, &when, now)
                            ),
                        }
                    }
                    [] => match lang {
                        Language::En => "You have no reminder to cancel.".to_owned(),
                        Language::Fr => "Vous n'avez aucun rappel à annuler.".to_owned(),
                    },
                    _ => {
                        let list = reminders_text(input, &list, lang, now);
                        let ask = match lang {
                            Language::En => {
                                "Several are scheduled; I've asked a member of our team to cancel the right one with you."
                            }
                            Language::Fr => {
                                "Plusieurs sont prévus : j'ai demandé à un membre de notre équipe d'annuler le bon avec vous."
                            }
                        };
                        self.hand_off(input, now).await?;
                        format!("{list}\n{ask}")
                    }
                };
                out(reply, "reminder", vec![tools::CANCEL_REMINDER])
            }
            Action::Book { service, at, name } => {
                let Some(bookings) = &self.bookings else {
                    self.hand_off(input, now).await?;
                    return Ok(out(
                        dialogue::booking_unavailable(lang).to_owned(),
                        "booking",
                        vec![HANDOFF_TOOL],
                    ));
                };
                let request = BookingRequest {
                    end_user: input.end_user_id,
                    conversation: input.conversation_id,
                    service: service.clone(),
                    at: at.clone(),
                    name: name.clone(),
                    idempotency_key: format!("book:{}", step_uuid(input.message_id, 0)),
                };
                match bookings.book(input.tenant_id, request).await {
                    Ok(done) => out(
                        dialogue::booked(lang, &done.service, &done.at, &name, now),
                        "booking",
                        vec![tools::BOOK_APPOINTMENT],
                    ),
                    Err(BookingError::Unavailable) => {
                        let alternatives = bookings
                            .availability(input.tenant_id, &service, &at)
                            .await
                            .map(|a| a.starts)
                            .unwrap_or_default();
                        let reply =
                            dialogue.booking_slot_taken(&service, &at, &name, &alternatives, now);
                        out(
                            reply,
                            "booking",
                            vec![tools::BOOK_APPOINTMENT, tools::CHECK_AVAILABILITY],
                        )
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "offline booking failed; passed to staff");
                        self.hand_off(input, now).await?;
                        out(
                            dialogue::booking_unavailable(lang).to_owned(),
                            "booking",
                            vec![tools::BOOK_APPOINTMENT, HANDOFF_TOOL],
                        )
                    }
                }
            }
            Action::CancelBooking | Action::RescheduleBooking { .. } => {
                // Which booking, and moving it, needs the booking system's references: staff
                // handle it until the booking flow knows them.
                self.hand_off(input, now).await?;
                out(
                    dialogue::booking_unavailable(lang).to_owned(),
                    "booking",
                    vec![HANDOFF_TOOL],
                )
            }
        })
    }
}

fn context<'a>(input: &'a TurnInput, now: &'a Zoned, seq: u32) -> ToolContext<'a> {
    ToolContext {
        tenant: input.tenant_id,
        conversation: input.conversation_id,
        end_user: input.end_user_id,
        turn: input.message_id,
        channel: input.channel,
        seq,
        now,
        sealer: input.sealer.as_ref(),
    }
}

fn reminders_text(
    input: &TurnInput,
    list: &[store::Reminder],
    lang: Language,
    now: &Zoned,
) -> String {
    let scheduled: Vec<_> = list
        .iter()
        .filter(|r| r.status == ReminderStatus::Scheduled)
        .collect();
    if scheduled.is_empty() {
        return match lang {
            Language::En => "You have no reminders scheduled.".into(),
            Language::Fr => "Vous n'avez aucun rappel prévu.".into(),
        };
    }
    let mut text = match lang {
        Language::En => "Your reminders:".to_owned(),
        Language::Fr => "Vos rappels :".to_owned(),
    };
    for r in scheduled {
        let what = input
            .sealer
            .open(columns::REMINDER, &r.text)
            .unwrap_or_default();
        let when = r.due_at.to_zoned(now.time_zone().clone());
        text.push_str(&format!(
            "\n- {}: {what}",
            dialogue::format_when(lang, &when, now)
        ));
    }
    text
}

#[async_trait]
impl TurnEngine for KnowledgeResponder {
    async fn run(&self, input: TurnInput) -> Result<TurnOutput, TurnError> {
        let loaded = state::load(
            self.store.as_ref(),
            input.sealer.as_ref(),
            input.tenant_id,
            input.conversation_id,
            input.state.as_ref(),
        )
        .await?;
        let now = self.now(&input, loaded.stored.profile.as_deref()).await;
        let mut dialogue: DialogueState = loaded
            .memory
            .dialogue
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let idle_before = dialogue.is_idle();
        let action = dialogue::step(&mut dialogue, &input.text, &now);
        let output = self
            .act(&input, &mut dialogue, action, idle_before, &now)
            .await?;
        let memory = Memory {
            dialogue: (dialogue != DialogueState::default())
                .then(|| serde_json::to_value(&dialogue).ok())
                .flatten(),
            ..loaded.memory.clone()
        };
        state::save(
            self.store.as_ref(),
            input.sealer.as_ref(),
            input.tenant_id,
            input.conversation_id,
            &loaded,
            loaded.stored.profile.as_deref(),
            loaded.stored.agent.as_deref(),
            &memory,
        )
        .await?;
        Ok(output)
    }

    fn settings_changed(&self, tenant: domain::TenantId) {
        if let Some(profiles) = &self.profiles {
            profiles.invalidate(tenant);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use domain::{Channel, ConversationId, EndUserId, MessageId, PhoneNumber, TenantName};
    use store::{KbEntryInput, NewTenant};

    use super::*;
    use crate::tools::Sealer;

    struct Plain;

    impl Sealer for Plain {
        fn seal(&self, _: &'static str, plaintext: &str) -> Vec<u8> {
            plaintext.as_bytes().to_vec()
        }

        fn open(&self, _: &'static str, ciphertext: &[u8]) -> Result<String, TurnError> {
            String::from_utf8(ciphertext.to_vec())
                .map_err(|e| TurnError::Unavailable(e.to_string()))
        }
    }

    async fn run_on(db: &testkit::TestDb) {
        let stores = db.stores();
        let t = stores
            .data
            .create_tenant(NewTenant {
                name: TenantName::parse("Acme").unwrap(),
                phone_numbers: vec![PhoneNumber::parse("+15550000001").unwrap()],
            })
            .await
            .unwrap()
            .id;
        stores
            .data
            .add_kb_entry(
                t,
                KbEntryInput {
                    title: "Opening hours".into(),
                    body: "Mon-Fri 9-17.".into(),
                },
            )
            .await
            .unwrap();
        let engine = KnowledgeResponder::new(stores.data.clone(), "We'll call you back.".into())
            .with_queue(stores.queue.clone());
        let input = |text: &str| TurnInput {
            tenant_id: t,
            conversation_id: ConversationId::new(),
            end_user_id: EndUserId::new(),
            message_id: MessageId::new(),
            channel: Channel::Sms,
            text: text.into(),
            history: Vec::new(),
            sealer: Arc::new(Plain),
            state: None,
        };
        let out = engine
            .run(input("what are your opening hours"))
            .await
            .unwrap();
        assert_eq!(
            out,
            TurnOutput {
                reply: Some("Mon-Fri 9-17.".into()),
                answered_by: "knowledge_base",
                tools: Vec::new(),
                agents: Vec::new(),
            }
        );
        let out = engine.run(input("Bonjour !")).await.unwrap();
        assert_eq!(out.answered_by, "small_talk");
        assert!(out.reply.unwrap().starts_with("Bonjour !"));
        let out = engine.run(input("thanks a lot")).await.unwrap();
        assert_eq!(out.reply.as_deref(), Some("You're welcome!"));
        // A greeting with a question in it is a question.
        let out = engine
            .run(input("hi, what are your opening hours?"))
            .await
            .unwrap();
        assert_eq!(out.answered_by, "knowledge_base");
        let out = engine.run(input("do you sell bicycles")).await.unwrap();
        assert_eq!(out.answered_by, "fallback");

        // Asking for a person marks the conversation for staff, in the customer's language.
        let conversation = testkit::web_chat_conversation(&stores, t).await;
        let mut ask = input("Je voudrais parler à un conseiller s'il vous plaît");
        ask.conversation_id = conversation;
        let out = engine.run(ask).await.unwrap();
        assert_eq!(out.answered_by, "handoff");
        assert!(out.reply.unwrap().starts_with("J'ai demandé"));
        let flagged = stores
            .data
            .get_conversation(t, conversation)
            .await
            .unwrap()
            .unwrap();
        assert!(flagged.handoff_at.is_some());
        // Without a real conversation there is nobody to hand to: no promise is made.
        let out = engine
            .run(input("can I talk to a human please"))
            .await
            .unwrap();
        assert_eq!(
            (out.reply.as_deref(), out.answered_by),
            (Some("We'll call you back."), "fallback")
        );
    }

    #[tokio::test]
    async fn answers_from_the_knowledge_base_or_falls_back_on_each_backend() {
        for db in testkit::TestDb::each().await {
            run_on(&db).await;
            db.cleanup().await;
        }
    }
}
