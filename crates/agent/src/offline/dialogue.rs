//! The offline engine's dialogue policy: what to do next, given this message and the
//! conversation so far.
//!
//! [`step`] reads one message with [`understand`], combines it with the small
//! [`DialogueState`] kept between messages (a booking being filled in, a reminder waiting
//! for its time or its text, the question last asked, the conversation's language) and
//! returns the next [`Action`]. It is pure: `now` is passed in and nothing is read from the
//! clock; the engine stores the state between messages. Replies are phrased here in English
//! or French, and so are the answers the engine gives after running a tool ([`booked`],
//! [`slot_taken`], [`booking_unavailable`], ...).
//!
//! The NLU reads each message alone, so the short replies that only make sense as the answer
//! to the question just asked ("Marie", "une coupe", "10", "yes", "never mind") are read
//! here, and so is whether a reply names a day or only a time ("10h" keeps the day already
//! chosen).

use jiff::Zoned;
use jiff::civil::{Date, Time};
use serde::{Deserialize, Serialize};

use super::intent::detect_language;
use super::lexicon::{self, Kind, POLITE, Token, Word, has_any, phrase_at};
use super::{Intent, Language, PartOfDay, Understanding, understand};

/// A reminder's text is cut to this many characters.
const MAX_REMINDER_CHARS: usize = 300;
/// A service or a name typed as a bare reply is taken only up to this many characters.
const MAX_BARE_CHARS: usize = 80;
/// At most this many alternative times are offered when a slot is taken.
const MAX_ALTERNATIVES: usize = 5;

/// What is pending between two messages. Small by construction: at most one booking and one
/// reminder being filled in, each with bounded strings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DialogueState {
    /// The language of the conversation, once known.
    language: Option<Lang>,
    booking: Option<BookingDraft>,
    reminder: Option<ReminderDraft>,
    /// What the last reply asked for, so that a bare answer fills it.
    asked: Option<Asked>,
}

/// A booking being filled in. The day and the time are civil values, read in the time zone
/// of `now` when the booking is made.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct BookingDraft {
    service: Option<String>,
    day: Option<Date>,
    time: Option<Time>,
    /// A part of the day said without a clock time: it reads "10" as 10 in the evening.
    part: Option<Part>,
    name: Option<String>,
}

/// A reminder waiting for its time or its text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
struct ReminderDraft {
    text: Option<String>,
    at: Option<Zoned>,
    /// Only a day was given, and 09:00 was chosen: the confirmation says so.
    default_time: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Asked {
    Service,
    Day,
    Time,
    Name,
    /// The booking summary, waiting for yes or no.
    Confirm,
    /// "No" to the summary: what to change.
    Change,
    ReminderWhen,
    ReminderText,
}

impl Asked {
    const fn is_booking(self) -> bool {
        !matches!(self, Self::ReminderWhen | Self::ReminderText)
    }
}

/// [`Language`], as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Lang {
    En,
    Fr,
}

impl From<Language> for Lang {
    fn from(l: Language) -> Self {
        match l {
            Language::En => Self::En,
            Language::Fr => Self::Fr,
        }
    }
}

impl From<Lang> for Language {
    fn from(l: Lang) -> Self {
        match l {
            Lang::En => Self::En,
            Lang::Fr => Self::Fr,
        }
    }
}

/// [`PartOfDay`], as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Part {
    Morning,
    Afternoon,
    Evening,
}

impl From<PartOfDay> for Part {
    fn from(p: PartOfDay) -> Self {
        match p {
            PartOfDay::Morning => Self::Morning,
            PartOfDay::Afternoon => Self::Afternoon,
            PartOfDay::Evening => Self::Evening,
        }
    }
}

/// What the engine does with a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Answer with this text, nothing else to do.
    Reply(String),
    /// Nothing in the message was understood: the engine answers with its operator's
    /// fallback message, or with this built-in one.
    NotUnderstood(String),
    /// Schedule a reminder, then answer with `confirm` (already phrased in the user's
    /// language, with the date and time written out).
    CreateReminder {
        text: String,
        at: Zoned,
        confirm: String,
    },
    /// Every booking slot is filled and the user confirmed: ask the booking tools to book,
    /// then answer with [`booked`], [`slot_taken`] (after
    /// [`DialogueState::booking_slot_taken`]) or [`booking_unavailable`].
    Book {
        service: String,
        at: Zoned,
        name: String,
    },
    /// The user wants to cancel a booking.
    CancelBooking,
    /// The user wants to move a booking, to `at` if they said when; `time_given` is false
    /// when only a day was said (then `at` is the start of that day) or a part of the day
    /// (then `at` is its default hour).
    RescheduleBooking { at: Option<Zoned>, time_given: bool },
    /// The user asks which reminders they have.
    ListReminders,
    /// The user wants to cancel a reminder (which one is not known).
    CancelReminder,
    /// Look this up in the knowledge base; answer with [`no_answer`] if nothing is found.
    SearchKnowledge { query: String },
    /// Hand the conversation to a person, and answer with `reply`.
    Handoff { reply: String },
}

impl DialogueState {
    /// The language of the conversation (English until a message says otherwise).
    #[must_use]
    pub fn language(&self) -> Language {
        self.language.map_or(Language::En, Language::from)
    }

    /// Nothing is pending.
    #[must_use]
    pub const fn is_idle(&self) -> bool {
        self.booking.is_none() && self.reminder.is_none()
    }

    /// The question still waiting for an answer, if any, for the engine to add after an
    /// answer it phrased itself (a knowledge-base answer, [`booked`], ...).
    #[must_use]
    pub fn pending_prompt(&self, now: &Zoned) -> Option<String> {
        let asked = self.asked?;
        Some(prompt(
            asked,
            self.booking.as_ref(),
            self.language(),
            now,
            false,
        ))
    }

    /// After [`Action::Book`] failed because the time was taken: keeps the service, the day
    /// and the name, asks for another time, and returns the message to send.
    pub fn booking_slot_taken(
        &mut self,
        service: &str,
        at: &Zoned,
        name: &str,
        alternatives: &[Zoned],
        now: &Zoned,
    ) -> String {
        let at = at.with_time_zone(now.time_zone().clone());
        self.booking = Some(BookingDraft {
            service: Some(cut(service, MAX_BARE_CHARS)),
            day: Some(at.date()),
            time: None,
            part: None,
            name: Some(cut(name, MAX_BARE_CHARS)),
        });
        self.asked = Some(Asked::Time);
        slot_taken(self.language(), alternatives, now)
    }

    /// Keeps `asked` pointing at a draft that exists, and set whenever one does.
    fn repair(&mut self) {
        let valid = match self.asked {
            Some(a) if a.is_booking() => self.booking.is_some(),
            Some(_) => self.reminder.is_some(),
            None => self.is_idle(),
        };
        if !valid {
            self.asked = self.next_asked();
        }
    }

    /// What to ask next, the reminder first (it is the shorter exchange).
    fn next_asked(&self) -> Option<Asked> {
        if let Some(r) = &self.reminder {
            return Some(if r.text.is_none() {
                Asked::ReminderText
            } else {
                Asked::ReminderWhen
            });
        }
        self.booking.as_ref().map(BookingDraft::missing)
    }

    /// English ties, so a short reply ("Marie", "ok", "10h") keeps the conversation's
    /// language; a longer message switches it when its words say so.
    fn learn_language(&mut self, text: &str, u: &Understanding, words: usize) {
        let decisive = match u.language {
            Language::Fr => true,
            Language::En => english_on_its_merits(text),
        };
        if self.language.is_none() || (decisive && words >= 3) {
            self.language = Some(u.language.into());
        }
    }
}

impl BookingDraft {
    /// The first slot still missing, or the confirmation.
    const fn missing(&self) -> Asked {
        if self.service.is_none() {
            Asked::Service
        } else if self.day.is_none() {
            Asked::Day
        } else if self.time.is_none() {
            Asked::Time
        } else if self.name.is_none() {
            Asked::Name
        } else {
            Asked::Confirm
        }
    }

    fn at(&self, now: &Zoned) -> Option<Zoned> {
        let (day, time) = (self.day?, self.time?);
        day.to_datetime(time).to_zoned(now.time_zone().clone()).ok()
    }
}

/// Whether English won on its own words: the language detector gives English on a tie, so
/// it did only if it still does with one French word more.
fn english_on_its_merits(text: &str) -> bool {
    let probe = format!("{text} je");
    let tokens = lexicon::tokenize(&probe);
    detect_language(&probe, &lexicon::words(&tokens)) == Language::En
}

/// One message, read.
struct Msg<'t> {
    text: &'t str,
    u: Understanding,
    cues: Cues,
}

/// What the dialogue needs to know of a message beyond the NLU's reading.
#[derive(Default)]
struct Cues {
    words: usize,
    question_mark: bool,
    yes: bool,
    no: bool,
    abort: bool,
    /// "yesterday", "hier": the NLU does not read them, and reads "yesterday at 10" as
    /// tomorrow at 10.
    past: bool,
    /// "today", "tonight", "ce soir": a day named that a bare time cannot be told from.
    today: bool,
    /// "my reminders", "mes rappels".
    reminders: bool,
    /// "my appointment": a booking that exists, not the one being filled in.
    existing_booking: bool,
    /// "appointment", "rdv", "booking".
    booking_word: bool,
    /// "the time", "le nom": what to change.
    field: Option<Asked>,
    /// A lone number ("10"), which the NLU does not take for a time.
    number: Option<u32>,
    /// The whole message as a name ("Marie", "jean-pierre dupont").
    bare_name: Option<String>,
    /// The whole message as a service ("une coupe", "a haircut").
    bare_service: Option<String>,
}

const YES: &[&str] = &[
    "yes|yeah|yea|yep|yup|ya|yah|yess|sure|ok|okay|oki|okey|okie|k|kk|alright|absolutely|definitely|certainly|correct|exactly|perfect|great|fine|right|confirm|confirmed|oui|ouais|ouai|ouep|ouaip|voila|parfait|exact|exactement|impeccable|nickel|volontiers|daccord|dac|confirme|super|top|cool",
    "go ahead|for it",
    "sounds good|great|perfect|fine",
    "that s right|fine|correct|perfect|great|good|ok",
    "thats right|fine|correct|perfect|great|good|ok",
    "all good",
    "of course",
    "please do",
    "do it",
    "book it",
    "no problem|worries",
    "d accord",
    "c est bon|ca|parfait|correct|ok|exact|juste|nickel|super|parti",
    "ca marche|va|roule",
    "vas|allez y",
    "bien sur",
    "tout a fait",
    "avec plaisir",
    "je confirme",
    "pas de souci|soucis|probleme|problemes",
    "it s fine|ok|correct|perfect|good|right",
    "why not",
    "pourquoi pas",
];

const NO: &[&str] = &[
    "no|nope|nah|non|nan|nop|negative|wrong|incorrect|pas",
    "not really|quite|right|correct",
    "c est pas ca|bon",
    "ce n est pas ca|bon",
    "that s wrong|not",
    "thats wrong|not",
];

const ABORT: &[&str] = &[
    "never mind|mind",
    "nevermind|nvm",
    "forget it|about it|that",
    "laisse|laissez|laissons|laisses tomber",
    "oublie|oubliez|oublions ca|tout|le",
    "on oublie",
    "stop",
    "abandon|abandonne|abandonner|abandonnez",
    "tant pis",
    "don t bother",
    "dont bother",
    "no longer need",
    "plus besoin",
    "not anymore",
    "changed my mind",
    "change d avis",
];

const PAST: &[&str] = &[
    "yesterday|yday|hier",
    "last night|week|monday|tuesday|wednesday|thursday|friday|saturday|sunday",
    "lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|semaine dernier|derniere",
];

const TODAY: &[&str] = &[
    "today|aujourdhui|tonight",
    "aujourd hui",
    "this morning|afternoon|evening|night",
    "ce|cette matin|soir|midi|apres|aprem|soiree|nuit",
];

const REMINDERS: &[&str] = &[
    "reminders|rappels",
    "my|mes|mon|the|le|your|votre|ton|ce|that|this|cette reminder|rappel",
];

const BOOKING_WORDS: &[&str] = &["appointment*|rdv|rendez|reservation*|booking*"];

const EXISTING_BOOKING: &[&str] =
    &["my|our|mon|ma|notre|mes appointment*|rdv|rendez|reservation*|booking*"];

const FIELDS: &[(&str, Asked)] = &[
    (
        "service|prestation|soin|soins|treatment|type",
        Asked::Service,
    ),
    ("day|date|jour|journee", Asked::Day),
    ("time|hour|heure|horaire", Asked::Time),
    ("name|nom", Asked::Name),
];

/// Words that are never a bare name or a bare service.
const NOT_AN_ANSWER: &[&str] = &[
    "hello", "hi", "hey", "bonjour", "salut", "coucou", "merci", "thanks", "thank", "what", "quoi",
    "pardon", "sorry", "desole", "desolee", "euh", "hmm", "hm", "help", "aide", "why", "pourquoi",
    "comment", "how", "idk", "maybe", "peut", "lol", "hein", "quel", "quelle", "who", "qui", "me",
    "moi", "myself", "rien", "nothing", "personne", "nobody", "cancel", "annuler", "annule",
    "test",
];

/// Leading words dropped from a bare service: "une coupe" → "coupe".
const SERVICE_LEAD: &[&str] = &[
    "a",
    "an",
    "the",
    "some",
    "un",
    "une",
    "le",
    "la",
    "l",
    "les",
    "des",
    "du",
    "de",
    "d",
    "for",
    "pour",
    "just",
    "juste",
    "only",
    "seulement",
];

impl Cues {
    fn read(text: &str, tokens: &[Token], words: &[Word<'_>], u: &Understanding) -> Self {
        let at_start = |list: &[&str]| list.iter().any(|p| phrase_at(words, 0, p).is_some());
        let field = words.iter().enumerate().find_map(|(i, _)| {
            FIELDS
                .iter()
                .find(|(p, _)| phrase_at(words, i, p).is_some())
                .map(|&(_, f)| f)
        });
        let numbers: Vec<u32> = tokens
            .iter()
            .filter(|t| t.kind == Kind::Num)
            .filter_map(Token::num)
            .collect();
        let nums = tokens.iter().filter(|t| t.kind == Kind::Num).count();
        let number = match numbers[..] {
            [n] if nums == 1 && n <= 24 && words.len() <= 4 && u.slots.when.is_none() => Some(n),
            _ => None,
        };
        let mut cues = Self {
            words: words.len(),
            question_mark: tokens.iter().any(|t| t.is_punct("?")),
            yes: at_start(YES),
            no: !at_start(YES) && at_start(NO),
            abort: words.len() <= 8 && has_any(words, ABORT),
            past: has_any(words, PAST),
            today: has_any(words, TODAY),
            reminders: has_any(words, REMINDERS),
            existing_booking: has_any(words, EXISTING_BOOKING),
            booking_word: has_any(words, BOOKING_WORDS),
            field,
            number,
            bare_name: None,
            bare_service: None,
        };
        let plain = !cues.yes
            && !cues.no
            && !cues.abort
            && !cues.question_mark
            && u.slots.when.is_none()
            && !words.iter().any(|w| NOT_AN_ANSWER.contains(&w.text));
        if plain {
            cues.bare_name = bare_name(text, tokens, words);
            cues.bare_service = bare_service(text, tokens, words);
        }
        cues
    }
}

/// A reply of one to three words, each alphabetic ("Marie", "jean-pierre Dupont",
/// "O'Brien"), capitalised.
fn bare_name(text: &str, tokens: &[Token], words: &[Word<'_>]) -> Option<String> {
    if words.is_empty()
        || words.len() > 3
        || words.iter().any(|w| {
            POLITE.contains(&w.text)
                || lexicon::weekday(w.text).is_some()
                || lexicon::month(w.text).is_some()
        })
    {
        return None;
    }
    let mut parts: Vec<String> = Vec::new();
    let mut joined = false;
    let mut end = false;
    for (k, t) in tokens.iter().enumerate() {
        if end {
            return None;
        }
        let raw = t.raw(text);
        match t.kind {
            Kind::Word if raw.chars().all(char::is_alphabetic) => match parts.last_mut() {
                Some(last) if joined => {
                    last.push_str(raw);
                    joined = false;
                }
                _ => parts.push(raw.to_owned()),
            },
            Kind::Punct
                if (t.is_punct("-") || t.is_punct("'"))
                    && t.glued
                    && !parts.is_empty()
                    && tokens
                        .get(k + 1)
                        .is_some_and(|n| n.glued && n.kind == Kind::Word) =>
            {
                if let Some(last) = parts.last_mut() {
                    last.push_str(raw);
                }
                joined = true;
            }
            Kind::Punct if t.is_punct(".") || t.is_punct("!") => end = true,
            _ => return None,
        }
    }
    let first = parts.first()?;
    if first.chars().count() < 2 || parts.iter().map(String::len).sum::<usize>() > MAX_BARE_CHARS {
        return None;
    }
    Some(
        parts
            .iter()
            .map(|p| capitalise(p))
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// "marie" → "Marie", "JEAN-PIERRE" → "Jean-Pierre", "McDonald" stays.
fn capitalise(part: &str) -> String {
    part.split_inclusive(['-', '\''])
        .map(|seg| {
            let letters = seg.chars().filter(|c| c.is_alphabetic()).count();
            let shouting = letters > 1 && !seg.chars().any(char::is_lowercase);
            let mut chars = seg.chars();
            let Some(head) = chars.next() else {
                return String::new();
            };
            let tail: String = chars.collect();
            let tail = if shouting { tail.to_lowercase() } else { tail };
            head.to_uppercase().chain(tail.chars()).collect()
        })
        .collect()
}

/// A reply of at most five words taken as the thing to book, without its article and
/// trailing politeness, lower case like the NLU's: "une coupe" → "coupe".
fn bare_service(text: &str, tokens: &[Token], words: &[Word<'_>]) -> Option<String> {
    if words.is_empty() || words.len() > 5 {
        return None;
    }
    let mut from = 0;
    while words
        .get(from)
        .is_some_and(|w| SERVICE_LEAD.contains(&w.text))
    {
        from += 1;
    }
    let mut to = words.len();
    while to > from
        && words
            .get(to - 1)
            .is_some_and(|w| POLITE.contains(&w.text) || matches!(w.text, "s" | "il" | "vous"))
    {
        to -= 1;
    }
    let first = tokens.get(words.get(from)?.tok)?;
    let last = tokens.get(words.get(to.checked_sub(1)?)?.tok)?;
    if first.kind != Kind::Word {
        return None;
    }
    let phrase = text.get(first.span.start..last.span.end)?.to_lowercase();
    (phrase.chars().count() >= 2 && phrase.len() <= MAX_BARE_CHARS).then_some(phrase)
}

/// Reads one message and decides what to do, updating `state`. Never panics; only the
/// first [`MAX_INPUT_CHARS`](super::MAX_INPUT_CHARS) characters are read. `now` is the
/// current time in the user's time zone, which is the zone of every date-time returned.
pub fn step(state: &mut DialogueState, text: &str, now: &Zoned) -> Action {
    state.repair();
    let text = lexicon::truncate(text);
    let u = understand(text, now.clone());
    let tokens = lexicon::tokenize(text);
    let words = lexicon::words(&tokens);
    let cues = Cues::read(text, &tokens, &words, &u);
    state.learn_language(text, &u, cues.words);
    let msg = Msg { text, u, cues };
    if let Some(action) = abort(state, &msg, now) {
        return action;
    }
    if let Some(action) = answer(state, &msg, now) {
        return action;
    }
    dispatch(state, &msg, now)
}

/// "never mind", "annuler": drops the draft being filled in, or the one the message names
/// (the other one, if any, is asked about next).
fn abort(state: &mut DialogueState, msg: &Msg<'_>, now: &Zoned) -> Option<Action> {
    let intent = msg.u.intent;
    let cancel = intent == Intent::Cancel && !msg.cues.existing_booking;
    let quiet = matches!(intent, Intent::Unknown | Intent::Thanks)
        || (intent == Intent::Question && !msg.cues.question_mark);
    if state.is_idle() || !(cancel || (msg.cues.abort && quiet)) {
        return None;
    }
    let focus_on_reminder = state.asked.is_some_and(|a| !a.is_booking());
    let reminder = if msg.cues.reminders {
        if state.reminder.is_none() && cancel {
            // "cancel my reminder": one that exists, not the booking being filled in.
            return None;
        }
        state.reminder.is_some()
    } else if msg.cues.booking_word && state.booking.is_some() {
        false
    } else {
        focus_on_reminder
    };
    Some(drop_draft(state, reminder, now))
}

/// Drops the reminder or the booking being filled in, and asks about the other one, if any.
fn drop_draft(state: &mut DialogueState, reminder: bool, now: &Zoned) -> Action {
    let lang = state.language();
    let dropped = if reminder {
        state.reminder = None;
        t(lang, "OK, no reminder then.", "D'accord, pas de rappel.")
    } else {
        state.booking = None;
        t(
            lang,
            "OK, I've dropped that booking request.",
            "D'accord, j'abandonne cette demande de réservation.",
        )
    };
    state.asked = state.next_asked();
    Action::Reply(join(dropped, &continue_prompt(state, lang, now)))
}

/// The message as an answer to what was asked, if it is one.
fn answer(state: &mut DialogueState, msg: &Msg<'_>, now: &Zoned) -> Option<Action> {
    let asked = state.asked?;
    let lang = state.language();
    let intent = msg.u.intent;
    let slots = &msg.u.slots;
    let has_slots = slots.when.is_some() || slots.service.is_some() || slots.name.is_some();
    let answers = match intent {
        Intent::Unknown | Intent::Book => true,
        Intent::Question => !msg.cues.question_mark,
        Intent::Reschedule => !msg.cues.existing_booking,
        // "oui merci", "no thanks".
        Intent::Thanks | Intent::Greeting => has_slots || msg.cues.yes || msg.cues.no,
        _ => false,
    };
    match asked {
        Asked::ReminderWhen => answer_reminder_when(state, msg, now, answers),
        Asked::ReminderText => {
            // "book the restaurant" is something to be reminded of; "book a haircut on
            // Friday" is a booking.
            let booking = slots.service.is_some() || slots.when.is_some();
            let text_reply = answers
                && !matches!(intent, Intent::Greeting | Intent::Thanks)
                && !(intent == Intent::Book && booking);
            text_reply.then(|| answer_reminder_text(state, msg, now))
        }
        _ if !answers => None,
        _ => answer_booking(state, msg, now, asked, lang),
    }
}

fn answer_booking(
    state: &mut DialogueState,
    msg: &Msg<'_>,
    now: &Zoned,
    asked: Asked,
    lang: Language,
) -> Option<Action> {
    let booking = state.booking.as_mut()?;
    let yes = msg.cues.yes && !msg.cues.question_mark;
    let no = msg.cues.no && !msg.cues.question_mark;
    match merge_booking(booking, msg, Some(asked), lang, now) {
        Merged::Changed => return Some(booking_reply(state, lang, now, None)),
        Merged::Past => return Some(booking_reply(state, lang, now, Some(past_day(lang)))),
        Merged::Nothing => {}
    }
    match asked {
        Asked::Confirm if yes => return Some(confirm_booking(state, lang, now)),
        Asked::Confirm if no => {
            state.asked = Some(Asked::Change);
            return Some(Action::Reply(change_prompt(lang).to_owned()));
        }
        Asked::Change => {
            if let Some(field) = msg.cues.field {
                match field {
                    Asked::Service => booking.service = None,
                    Asked::Day => booking.day = None,
                    Asked::Time => booking.time = None,
                    _ => booking.name = None,
                }
                return Some(booking_reply(state, lang, now, None));
            }
            if yes {
                return Some(booking_reply(state, lang, now, None));
            }
            if no {
                return Some(drop_draft(state, false, now));
            }
        }
        _ => {}
    }
    (msg.u.intent == Intent::Unknown).then(|| Action::Reply(didnt_catch(state, lang, now)))
}

enum Merged {
    Nothing,
    Changed,
    /// "yesterday": nothing of the date was taken.
    Past,
}

/// Takes what the message says of the booking. `asked` lets a bare reply fill the slot
/// that was asked for.
fn merge_booking(
    b: &mut BookingDraft,
    msg: &Msg<'_>,
    asked: Option<Asked>,
    lang: Language,
    now: &Zoned,
) -> Merged {
    let u = &msg.u;
    let bare = u.intent == Intent::Unknown;
    let mut changed = false;
    if let Some(s) = u.slots.service.clone().or_else(|| {
        (bare && asked == Some(Asked::Service))
            .then(|| msg.cues.bare_service.clone())
            .flatten()
    }) {
        b.service = Some(s);
        changed = true;
    }
    if let Some(n) = u.slots.name.clone().or_else(|| {
        (bare && asked == Some(Asked::Name))
            .then(|| msg.cues.bare_name.clone())
            .flatten()
    }) {
        b.name = Some(cut(&n, MAX_BARE_CHARS));
        changed = true;
    }
    if msg.cues.past && (u.slots.when.is_some() || msg.cues.words <= 4) {
        b.day = None;
        return Merged::Past;
    }
    let part = b.part;
    let lone = || {
        let n = msg.cues.number?;
        matches!(asked, Some(Asked::Time | Asked::Confirm | Asked::Change))
            .then(|| lone_time(n, lang, part, now))
            .flatten()
    };
    if let Some(w) = &u.slots.when {
        if names_day(msg, w, now) {
            b.day = Some(w.date());
            if u.slots.time_given {
                b.time = Some(w.time());
                b.part = u.slots.part_of_day.map(Part::from);
            } else if let Some(p) = u.slots.part_of_day {
                b.part = Some(p.into());
                b.time = None;
            }
        } else if u.slots.time_given {
            let with_part = match (u.slots.part_of_day, part) {
                (None, Some(p)) => time_with_part(msg.text, p, lang, now),
                _ => None,
            };
            b.time = Some(with_part.unwrap_or_else(|| w.time()));
            if let Some(p) = u.slots.part_of_day {
                b.part = Some(p.into());
            }
        } else if let Some(p) = u.slots.part_of_day {
            b.part = Some(p.into());
            b.time = None;
        }
        changed = true;
    } else if let Some(time) = lone() {
        b.time = Some(time);
        changed = true;
    }
    if changed {
        Merged::Changed
    } else {
        Merged::Nothing
    }
}

/// Whether the message names a day, as opposed to only a time or a part of the day ("at
/// 10", "10h", "in the afternoon"), which then applies to the day already chosen.
///
/// The NLU does not say: it resolves a bare time to today or tomorrow. Read again from the
/// start of today and from the start of yesterday, a bare time falls on that same day at
/// the same clock time; a named day does not fall on both (but "today" does, so it is
/// looked for by word), and an offset ("in 2 hours") moves its clock time.
fn names_day(msg: &Msg<'_>, when: &Zoned, now: &Zoned) -> bool {
    if msg.cues.today {
        return true;
    }
    let tz = now.time_zone();
    let lands_on = |day: Date| {
        day.to_zoned(tz.clone()).ok().is_some_and(|start| {
            understand(msg.text, start)
                .slots
                .when
                .is_some_and(|w| w.date() == day && w.time() == when.time())
        })
    };
    let today = now.date();
    let Ok(yesterday) = today.yesterday() else {
        return true;
    };
    !(lands_on(today) && lands_on(yesterday))
}

fn part_words(lang: Language, part: Part) -> &'static str {
    match (lang, part) {
        (Language::En, Part::Morning) => " in the morning",
        (Language::En, Part::Afternoon) => " in the afternoon",
        (Language::En, Part::Evening) => " in the evening",
        (Language::Fr, Part::Morning) => " du matin",
        (Language::Fr, Part::Afternoon) => " de l'après-midi",
        (Language::Fr, Part::Evening) => " du soir",
    }
}

/// The clock time of a reply read in the part of the day said before: "8" in the evening
/// is 20:00.
fn time_with_part(text: &str, part: Part, lang: Language, now: &Zoned) -> Option<Time> {
    let probe = format!("{text}{}", part_words(lang, part));
    let u = understand(&probe, now.clone());
    u.slots.time_given.then_some(u.slots.when?.time())
}

/// A lone number as an hour, read as the NLU reads "at 10" / "à 10h".
fn lone_time(n: u32, lang: Language, part: Option<Part>, now: &Zoned) -> Option<Time> {
    let text = match lang {
        Language::En => format!("at {n}"),
        Language::Fr => format!("à {n}h"),
    };
    if let Some(p) = part
        && let Some(time) = time_with_part(&text, p, lang, now)
    {
        return Some(time);
    }
    let u = understand(&text, now.clone());
    u.slots.time_given.then_some(u.slots.when?.time())
}

/// Checks the draft (a day or a time that has passed is dropped, and said so), then asks for
/// what is missing or for confirmation.
fn booking_reply(
    state: &mut DialogueState,
    lang: Language,
    now: &Zoned,
    prefix: Option<&str>,
) -> Action {
    let turn = booking_turn(state, lang, now);
    Action::Reply(match prefix {
        Some(p) => join(p, &turn),
        None => turn,
    })
}

/// The next booking question, with what was dropped as passed; sets `asked`.
fn booking_turn(state: &mut DialogueState, lang: Language, now: &Zoned) -> String {
    let Some(b) = state.booking.as_mut() else {
        state.asked = state.next_asked();
        return continue_prompt(state, lang, now);
    };
    let mut passed = None;
    if b.day.is_some_and(|d| d < now.date()) {
        b.day = None;
        passed = Some(past_day(lang));
    } else if b.day.is_some() && b.time.is_some() {
        match b.at(now) {
            Some(at) if at > *now => {}
            Some(_) => {
                b.time = None;
                passed = Some(past_time(lang));
            }
            None => b.day = None,
        }
    }
    let asked = b.missing();
    state.asked = Some(asked);
    let question = prompt(asked, Some(b), lang, now, false);
    match passed {
        Some(p) => join(p, &question),
        None => question,
    }
}

/// "yes" to the summary.
fn confirm_booking(state: &mut DialogueState, lang: Language, now: &Zoned) -> Action {
    let ready = state.booking.as_ref().and_then(|b| {
        let at = b.at(now).filter(|at| at > now)?;
        Some((b.service.clone()?, at, b.name.clone()?))
    });
    let Some((service, at, name)) = ready else {
        return booking_reply(state, lang, now, None);
    };
    state.booking = None;
    state.asked = state.next_asked();
    Action::Book { service, at, name }
}

/// The question for `asked`. `hint` adds examples of answers.
fn prompt(
    asked: Asked,
    booking: Option<&BookingDraft>,
    lang: Language,
    now: &Zoned,
    hint: bool,
) -> String {
    let hint_for = |en: &'static str, fr: &'static str| if hint { t(lang, en, fr) } else { "" };
    match asked {
        Asked::Service => t(
            lang,
            "What would you like to book?",
            "Que souhaitez-vous réserver ?",
        )
        .to_owned(),
        Asked::Day => format!(
            "{}{}",
            t(
                lang,
                "Which day suits you?",
                "Quel jour vous conviendrait ?"
            ),
            hint_for(
                " (for example \"tomorrow\", \"Friday\" or \"24 November\")",
                " (par exemple « demain », « vendredi » ou « 24 novembre »)"
            )
        ),
        Asked::Time => format!(
            "{}{}",
            t(
                lang,
                "What time would suit you?",
                "Quelle heure vous conviendrait ?"
            ),
            hint_for(
                " (for example \"10:30\" or \"3pm\")",
                " (par exemple « 10h30 » ou « 15h »)"
            )
        ),
        Asked::Name => t(
            lang,
            "May I have your name?",
            "À quel nom dois-je réserver ?",
        )
        .to_owned(),
        Asked::Confirm => match booking.and_then(|b| Some((b, b.at(now)?))) {
            Some((b, at)) => summary(b, &at, lang, now),
            None => prompt(Asked::Time, booking, lang, now, hint),
        },
        Asked::Change => change_prompt(lang).to_owned(),
        Asked::ReminderWhen => format!(
            "{}{}",
            t(
                lang,
                "When should I remind you?",
                "Quand dois-je vous le rappeler ?"
            ),
            hint_for(
                " (for example \"tomorrow at 9\" or \"in 2 hours\")",
                " (par exemple « demain à 9h » ou « dans 2 heures »)"
            )
        ),
        Asked::ReminderText => t(
            lang,
            "What should I remind you about?",
            "Que dois-je vous rappeler ?",
        )
        .to_owned(),
    }
}

fn summary(b: &BookingDraft, at: &Zoned, lang: Language, now: &Zoned) -> String {
    let service = b.service.as_deref().unwrap_or_default();
    let name = b.name.as_deref().unwrap_or_default();
    match lang {
        Language::En => format!(
            "Shall I book {} for {name} {}?",
            with_article(service),
            when_in_sentence(lang, at, now)
        ),
        Language::Fr => format!(
            "Je récapitule : {service} pour {name}, {}. Je réserve ?",
            format_when(lang, at, now)
        ),
    }
}

fn change_prompt(lang: Language) -> &'static str {
    t(
        lang,
        "What would you like to change: the service, the day, the time or the name? You can also say \"cancel\" to drop it.",
        "Que souhaitez-vous changer : la prestation, le jour, l'heure ou le nom ? Vous pouvez aussi dire « annuler » pour abandonner.",
    )
}

/// The question still pending, after something else was served.
fn continue_prompt(state: &DialogueState, lang: Language, now: &Zoned) -> String {
    state
        .asked
        .map(|a| prompt(a, state.booking.as_ref(), lang, now, false))
        .unwrap_or_default()
}

fn didnt_catch(state: &DialogueState, lang: Language, now: &Zoned) -> String {
    let sorry = t(
        lang,
        "Sorry, I didn't catch that.",
        "Désolé, je n'ai pas bien compris.",
    );
    match state.asked {
        Some(a) => join(sorry, &prompt(a, state.booking.as_ref(), lang, now, true)),
        None => sorry.to_owned(),
    }
}

fn answer_reminder_when(
    state: &mut DialogueState,
    msg: &Msg<'_>,
    now: &Zoned,
    answers: bool,
) -> Option<Action> {
    let lang = state.language();
    let takes_time = answers && msg.u.intent != Intent::Book && msg.u.intent != Intent::Reschedule;
    if !takes_time {
        return None;
    }
    if msg.cues.past && (msg.u.slots.when.is_some() || msg.cues.words <= 4) {
        return Some(reminder_reply(state, lang, now, Some(past_time(lang))));
    }
    let when = reminder_when(&msg.u).or_else(|| {
        let n = msg.cues.number?;
        let text = match lang {
            Language::En => format!("at {n}"),
            Language::Fr => format!("à {n}h"),
        };
        reminder_when(&understand(&text, now.clone()))
    });
    match when {
        Some((at, default_time)) => {
            let r = state.reminder.get_or_insert_default();
            r.at = Some(at);
            r.default_time = default_time;
            Some(reminder_reply(state, lang, now, None))
        }
        None => {
            (msg.u.intent == Intent::Unknown).then(|| Action::Reply(didnt_catch(state, lang, now)))
        }
    }
}

/// The reply to "What should I remind you about?", read as a reminder request so that the
/// NLU strips "to"/"de" and any date in it.
fn answer_reminder_text(state: &mut DialogueState, msg: &Msg<'_>, now: &Zoned) -> Action {
    let lang = state.language();
    let lead = match lang {
        Language::En => "remind me ",
        Language::Fr => "n'oublie pas de me rappeler ",
    };
    let u = understand(&format!("{lead}{}", msg.text), now.clone());
    let when = reminder_when(&u).filter(|_| !msg.cues.past);
    if u.slots.reminder_text.is_none() && when.is_none() {
        return Action::Reply(didnt_catch(state, lang, now));
    }
    let r = state.reminder.get_or_insert_default();
    if let Some(text) = &u.slots.reminder_text {
        r.text = Some(cut(text, MAX_REMINDER_CHARS));
    }
    if let Some((at, default_time)) = when {
        r.at = Some(at);
        r.default_time = default_time;
    }
    reminder_reply(state, lang, now, None)
}

/// When to remind: the date-time said, or 09:00 of the day said (the flag says so).
fn reminder_when(u: &Understanding) -> Option<(Zoned, bool)> {
    let w = u.slots.when.as_ref()?;
    if u.slots.time_given || u.slots.part_of_day.is_some() {
        return Some((w.clone(), false));
    }
    let nine = Time::constant(9, 0, 0, 0);
    let at = w
        .date()
        .to_datetime(nine)
        .to_zoned(w.time_zone().clone())
        .ok()?;
    Some((at, true))
}

/// Creates the reminder if it has a text and a time to come, else asks for what is missing.
fn reminder_reply(
    state: &mut DialogueState,
    lang: Language,
    now: &Zoned,
    prefix: Option<&str>,
) -> Action {
    let r = state.reminder.get_or_insert_default();
    let mut prefix = prefix;
    if r.at.as_ref().is_some_and(|at| at <= now) {
        r.at = None;
        prefix = Some(past_time(lang));
    }
    let asked = match (&r.text, &r.at) {
        (Some(text), Some(at)) => {
            let (text, at) = (text.clone(), at.clone());
            let mut confirm = reminder_confirmation(lang, &text, &at, now, r.default_time);
            state.reminder = None;
            if state.booking.is_some() {
                confirm = join(&confirm, &booking_turn(state, lang, now));
            } else {
                state.asked = None;
            }
            return Action::CreateReminder { text, at, confirm };
        }
        (None, _) => Asked::ReminderText,
        (Some(_), None) => Asked::ReminderWhen,
    };
    state.asked = Some(asked);
    let question = prompt(asked, None, lang, now, false);
    Action::Reply(match prefix {
        Some(p) => join(p, &question),
        None => question,
    })
}

fn reminder_confirmation(
    lang: Language,
    text: &str,
    at: &Zoned,
    now: &Zoned,
    default_time: bool,
) -> String {
    let when = when_in_sentence(lang, at, now);
    let mut out = match lang {
        Language::En => {
            let first = text.split_whitespace().next().map(lexicon::fold);
            let noun = first.as_deref().is_some_and(|w| {
                matches!(
                    w,
                    "the" | "a" | "an" | "my" | "your" | "his" | "her" | "our" | "their"
                )
            });
            let intro = if noun { "about" } else { "to" };
            format!("OK, I'll remind you {when} {intro} {text}.")
        }
        Language::Fr => format!(
            "C'est noté, je vous rappellerai {when} {}.",
            french_reminder_object(text)
        ),
    };
    if default_time {
        out.push(' ');
        out.push_str(t(
            lang,
            "You didn't give a time, so I chose 09:00.",
            "Vous n'avez pas précisé d'heure, j'ai donc choisi 09:00.",
        ));
    }
    out
}

/// "appeler Marc" → "d'appeler Marc", "sortir les poubelles" → "de sortir les poubelles";
/// anything that does not start with a verb is quoted.
fn french_reminder_object(text: &str) -> String {
    let folded = lexicon::fold(text);
    let first = folded
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default();
    let clitic = matches!(
        first,
        "me" | "m" | "te" | "t" | "se" | "s" | "nous" | "vous" | "lui" | "leur" | "y" | "en"
    );
    let infinitive = ["er", "ir", "re", "oir"]
        .iter()
        .any(|e| first.len() > 2 && first.ends_with(e));
    if !(clitic || infinitive) {
        return format!(": « {text} »");
    }
    if first.starts_with(['a', 'e', 'i', 'o', 'u', 'y', 'h']) {
        format!("d'{text}")
    } else {
        format!("de {text}")
    }
}

/// Serves a message that answered nothing pending.
fn dispatch(state: &mut DialogueState, msg: &Msg<'_>, now: &Zoned) -> Action {
    let lang = state.language();
    let u = &msg.u;
    match u.intent {
        Intent::Book => {
            let b = state.booking.get_or_insert_default();
            let past = matches!(merge_booking(b, msg, None, lang, now), Merged::Past);
            booking_reply(state, lang, now, past.then(|| past_day(lang)))
        }
        Intent::Remind => remind(state, msg, now),
        Intent::Cancel if msg.cues.reminders => Action::CancelReminder,
        Intent::Cancel => Action::CancelBooking,
        Intent::Reschedule => match (&mut state.booking, msg.cues.existing_booking) {
            (Some(b), false) => match merge_booking(b, msg, None, lang, now) {
                Merged::Changed => booking_reply(state, lang, now, None),
                Merged::Past => booking_reply(state, lang, now, Some(past_day(lang))),
                Merged::Nothing => {
                    state.asked = Some(Asked::Change);
                    Action::Reply(change_prompt(lang).to_owned())
                }
            },
            _ => Action::RescheduleBooking {
                at: u.slots.when.clone(),
                time_given: u.slots.time_given,
            },
        },
        Intent::Handoff => Action::Handoff {
            reply: t(
                lang,
                "I've asked a member of our team to get back to you here as soon as possible.",
                "J'ai demandé à un membre de notre équipe de vous répondre ici dès que possible.",
            )
            .to_owned(),
        },
        Intent::Greeting if state.is_idle() => Action::Reply(
            t(
                lang,
                "Hello! I can book an appointment, set a reminder or answer your questions. How can I help?",
                "Bonjour ! Je peux prendre un rendez-vous, programmer un rappel ou répondre à vos questions. Que puis-je faire pour vous ?",
            )
            .to_owned(),
        ),
        Intent::Greeting => Action::Reply(join(
            t(lang, "Hello!", "Bonjour !"),
            &continue_prompt(state, lang, now),
        )),
        Intent::Thanks => Action::Reply(join(
            t(lang, "You're welcome!", "Je vous en prie !"),
            &continue_prompt(state, lang, now),
        )),
        Intent::Goodbye => {
            *state = DialogueState {
                language: state.language,
                ..DialogueState::default()
            };
            Action::Reply(
                t(
                    lang,
                    "Goodbye, have a nice day!",
                    "Au revoir, bonne journée !",
                )
                .to_owned(),
            )
        }
        Intent::Question | Intent::Unknown if msg.cues.reminders && msg.cues.words <= 6 => {
            Action::ListReminders
        }
        Intent::Question => Action::SearchKnowledge {
            query: msg.text.trim().to_owned(),
        },
        Intent::Unknown => {
            let c = &msg.cues;
            if c.words == 0 || u.slots.when.is_some() {
                Action::NotUnderstood(fallback(lang).to_owned())
            } else if c.yes || c.no || c.abort {
                // Nothing is pending here: an answer to a question was taken before.
                Action::Reply(
                    t(
                        lang,
                        "OK. Is there anything else I can do for you?",
                        "D'accord. Puis-je faire autre chose pour vous ?",
                    )
                    .to_owned(),
                )
            } else {
                Action::SearchKnowledge {
                    query: msg.text.trim().to_owned(),
                }
            }
        }
    }
}

/// A reminder request: merged into the one pending, if any.
fn remind(state: &mut DialogueState, msg: &Msg<'_>, now: &Zoned) -> Action {
    let lang = state.language();
    let slots = &msg.u.slots;
    if msg.cues.reminders && slots.reminder_text.is_none() && slots.when.is_none() {
        return Action::ListReminders;
    }
    let r = state.reminder.get_or_insert_default();
    if let Some(text) = &slots.reminder_text {
        r.text = Some(cut(text, MAX_REMINDER_CHARS));
    }
    if msg.cues.past && (slots.when.is_some() || msg.cues.words <= 6) {
        r.at = None;
        return reminder_reply(state, lang, now, Some(past_time(lang)));
    }
    if let Some((at, default_time)) = reminder_when(&msg.u) {
        r.at = Some(at);
        r.default_time = default_time;
    }
    reminder_reply(state, lang, now, None)
}

fn t(lang: Language, en: &'static str, fr: &'static str) -> &'static str {
    match lang {
        Language::En => en,
        Language::Fr => fr,
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (_, true) => a.to_owned(),
        (true, false) => b.to_owned(),
        (false, false) => format!("{a} {b}"),
    }
}

/// The first `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn past_day(lang: Language) -> &'static str {
    t(
        lang,
        "That day has already passed.",
        "Ce jour est déjà passé.",
    )
}

fn past_time(lang: Language) -> &'static str {
    t(
        lang,
        "That time has already passed.",
        "Cette heure est déjà passée.",
    )
}

/// "a haircut", "an eyebrow wax", "nails", "the full treatment".
fn with_article(service: &str) -> String {
    let first = service.split_whitespace().next().unwrap_or_default();
    let determined = matches!(
        first,
        "a" | "an" | "the" | "my" | "some" | "your" | "our" | "his" | "her" | "their"
    );
    let plural = service.ends_with('s') && !service.ends_with("ss");
    if determined || plural || service.is_empty() {
        service.to_owned()
    } else if service.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {service}")
    } else {
        format!("a {service}")
    }
}

const WEEKDAYS_EN: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const WEEKDAYS_FR: [&str; 7] = [
    "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_FR: [&str; 12] = [
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
];

/// A date-time for people, in the time zone of `now`: "today at 09:00", "tomorrow at
/// 09:00", "Tuesday 24 November at 09:00" ("... 2027 at ..." in another year); in French
/// "aujourd'hui à 09:00", "demain à 09:00", "mardi 24 novembre à 09:00".
#[must_use]
pub fn format_when(lang: Language, at: &Zoned, now: &Zoned) -> String {
    let at = at.with_time_zone(now.time_zone().clone());
    let time = format!("{:02}:{:02}", at.hour(), at.minute());
    let day = day_words(lang, at.date(), now.date());
    match lang {
        Language::En => format!("{day} at {time}"),
        Language::Fr => format!("{day} à {time}"),
    }
}

fn day_words(lang: Language, date: Date, today: Date) -> String {
    if date == today {
        return t(lang, "today", "aujourd'hui").to_owned();
    }
    if today.tomorrow().is_ok_and(|d| d == date) {
        return t(lang, "tomorrow", "demain").to_owned();
    }
    let weekday = usize::from(date.weekday().to_monday_zero_offset().unsigned_abs());
    let month = usize::from(date.month().unsigned_abs().saturating_sub(1));
    let year = if date.year() == today.year() {
        String::new()
    } else {
        format!(" {}", date.year())
    };
    match lang {
        Language::En => format!(
            "{} {} {}{year}",
            WEEKDAYS_EN.get(weekday).unwrap_or(&""),
            date.day(),
            MONTHS_EN.get(month).unwrap_or(&"")
        ),
        Language::Fr => {
            let day = if date.day() == 1 {
                "1er".to_owned()
            } else {
                date.day().to_string()
            };
            format!(
                "{} {day} {}{year}",
                WEEKDAYS_FR.get(weekday).unwrap_or(&""),
                MONTHS_FR.get(month).unwrap_or(&"")
            )
        }
    }
}

/// [`format_when`] as it reads inside a sentence: "on Tuesday 24 November at 09:00", but
/// "tomorrow at 09:00".
fn when_in_sentence(lang: Language, at: &Zoned, now: &Zoned) -> String {
    let when = format_when(lang, at, now);
    let local = at.with_time_zone(now.time_zone().clone()).date();
    let relative = local == now.date() || now.date().tomorrow().is_ok_and(|d| d == local);
    if lang == Language::En && !relative {
        format!("on {when}")
    } else {
        when
    }
}

/// The answer after a booking was made.
#[must_use]
pub fn booked(lang: Language, service: &str, at: &Zoned, name: &str, now: &Zoned) -> String {
    match lang {
        Language::En => format!(
            "You're booked: {} for {name} {}.",
            with_article(service),
            when_in_sentence(lang, at, now)
        ),
        Language::Fr => format!(
            "C'est réservé : {service} pour {name}, {}.",
            format_when(lang, at, now)
        ),
    }
}

/// The answer when no booking system is connected: the request goes to the staff.
#[must_use]
pub fn booking_unavailable(lang: Language) -> &'static str {
    t(
        lang,
        "I can't book directly at the moment, so I've passed your request on to our team; they'll confirm with you here.",
        "Je ne peux pas réserver directement pour le moment : j'ai transmis votre demande à notre équipe, qui vous confirmera le rendez-vous ici.",
    )
}

/// The answer when the time asked for is taken, offering up to five other times.
#[must_use]
pub fn slot_taken(lang: Language, alternatives: &[Zoned], now: &Zoned) -> String {
    let sorry = t(
        lang,
        "Sorry, that time is no longer available.",
        "Désolé, ce créneau n'est plus disponible.",
    );
    let offers: Vec<String> = alternatives
        .iter()
        .take(MAX_ALTERNATIVES)
        .map(|at| format_when(lang, at, now))
        .collect();
    let list = match offers.as_slice() {
        [] => {
            return join(
                sorry,
                t(
                    lang,
                    "Which other time would suit you?",
                    "Quelle autre heure vous conviendrait ?",
                ),
            );
        }
        [one] => one.clone(),
        [init @ .., last] => format!("{} {} {last}", init.join(", "), t(lang, "or", "ou")),
    };
    match lang {
        Language::En => format!("{sorry} I can offer {list}. Which would suit you?"),
        Language::Fr => format!("{sorry} Je peux vous proposer {list}. Lequel vous conviendrait ?"),
    }
}

/// The answer when the knowledge base has nothing.
#[must_use]
pub fn no_answer(lang: Language) -> &'static str {
    t(
        lang,
        "Sorry, I don't have an answer to that. You can ask to speak to a member of our team.",
        "Désolé, je n'ai pas de réponse à cette question. Vous pouvez demander à parler à un membre de notre équipe.",
    )
}

/// The answer to a message that asks for nothing the offline engine can do.
#[must_use]
pub fn fallback(lang: Language) -> &'static str {
    t(
        lang,
        "Sorry, I didn't understand. I can book an appointment, set a reminder or answer your questions.",
        "Désolé, je n'ai pas compris. Je peux prendre un rendez-vous, programmer un rappel ou répondre à vos questions.",
    )
}

/// The answer when a reminder could not be scheduled.
#[must_use]
pub fn reminder_failed(lang: Language) -> &'static str {
    t(
        lang,
        "Sorry, I couldn't set that reminder. Please try again in a moment.",
        "Désolé, je n'ai pas pu enregistrer ce rappel. Merci de réessayer dans un instant.",
    )
}

#[cfg(test)]
mod tests {
    use jiff::civil::DateTime;
    use proptest::prelude::*;

    use super::*;

    const PARIS: &str = "2026-11-22T15:00[Europe/Paris]";
    const NEW_YORK: &str = "2026-11-22T15:00[America/New_York]";

    fn zoned(s: &str) -> Zoned {
        s.parse().unwrap()
    }

    /// Conversations, separated by blank lines. `@ P` or `@ NY` says where "now" is (both
    /// 2026-11-22T15:00, a Sunday), `>` is what the user says, and the line after it the
    /// expected action: `<` a reply (exact text), or `=` one of `book service | local
    /// date-time | name`, `remind text | local date-time | confirmation`, `search query`,
    /// `handoff`, `cancel-booking`, `cancel-reminder`, `list-reminders`, `reschedule
    /// local date-time` (or `-`).
    const SCRIPTS: &str = r#"
@ P
> I'd like to book a haircut
< Which day suits you?
> tomorrow at 10
< May I have your name?
> Marie
< Shall I book a haircut for Marie tomorrow at 10:00?
> yes
= book haircut | 2026-11-23T10:00 | Marie

@ P
> bonjour, je voudrais un rdv
< Que souhaitez-vous réserver ?
> une coupe
< Quel jour vous conviendrait ?
> mardi
< Quelle heure vous conviendrait ?
> 10h
< À quel nom dois-je réserver ?
> je m'appelle marie
< Je récapitule : coupe pour Marie, mardi 24 novembre à 10:00. Je réserve ?
> oui
= book coupe | 2026-11-24T10:00 | Marie

@ P
> Hi, I'd like to book an appointment for a haircut tomorrow at 3pm. My name is John Smith
< Shall I book a haircut for John Smith tomorrow at 15:00?
> no
< What would you like to change: the service, the day, the time or the name? You can also say "cancel" to drop it.
> the time
< What time would suit you?
> 4pm
< Shall I book a haircut for John Smith tomorrow at 16:00?
> sure
= book haircut | 2026-11-23T16:00 | John Smith

@ P
> can I get a manicure on friday at 11? it's John Smith
< Shall I book a manicure for John Smith on Friday 27 November at 11:00?
> no, at 2pm
< Shall I book a manicure for John Smith on Friday 27 November at 14:00?
> actually saturday
< Shall I book a manicure for John Smith on Saturday 28 November at 14:00?
> Yes please
= book manicure | 2026-11-28T14:00 | John Smith

@ P
> book a cleaning
< Which day suits you?
> what are your opening hours?
= search what are your opening hours?
> friday morning
< What time would suit you?
> remind me tomorrow at 9 to call Marc
= remind call Marc | 2026-11-23T09:00 | OK, I'll remind you tomorrow at 09:00 to call Marc. What time would suit you?
> 10
< May I have your name?
> I want to talk to a human
= handoff
> hello
< Hello! May I have your name?
> it's Ana
< Shall I book a cleaning for Ana on Friday 27 November at 10:00?
> yep
= book cleaning | 2026-11-27T10:00 | Ana

@ P
> je voudrais réserver un soin demain soir
< Quelle heure vous conviendrait ?
> 8h
< À quel nom dois-je réserver ?
> jean-pierre dupont
< Je récapitule : soin pour Jean-Pierre Dupont, demain à 20:00. Je réserve ?
> d'accord
= book soin | 2026-11-23T20:00 | Jean-Pierre Dupont

@ P
> je voudrais réserver une coupe demain
< Quelle heure vous conviendrait ?
> laisse tomber
< D'accord, j'abandonne cette demande de réservation.
> 10h
< Désolé, je n'ai pas compris. Je peux prendre un rendez-vous, programmer un rappel ou répondre à vos questions.

@ P
> book a haircut for tomorrow
< What time would suit you?
> never mind
< OK, I've dropped that booking request.
> yes
< OK. Is there anything else I can do for you?

@ P
> book a haircut for tomorrow at 11
< May I have your name?
> cancel
< OK, I've dropped that booking request.

@ P
> can I book a haircut today at 9?
< That time has already passed. What time would suit you?
> 17h
< May I have your name?
> yesterday at 10
< That day has already passed. Which day suits you?
> hmm
< Sorry, I didn't catch that. Which day suits you? (for example "tomorrow", "Friday" or "24 November")
> the day after tomorrow
< May I have your name?
> Bob
< Shall I book a haircut for Bob on Tuesday 24 November at 17:00?
> ok
= book haircut | 2026-11-24T17:00 | Bob

@ P
> rappelle-moi demain à 9h d'appeler Marc
= remind appeler Marc | 2026-11-23T09:00 | C'est noté, je vous rappellerai demain à 09:00 d'appeler Marc.

@ P
> remind me to call Marc
< When should I remind you?
> tomorrow 9am
= remind call Marc | 2026-11-23T09:00 | OK, I'll remind you tomorrow at 09:00 to call Marc.

@ P
> remind me on tuesday at 9 to call Marc
= remind call Marc | 2026-11-24T09:00 | OK, I'll remind you on Tuesday 24 November at 09:00 to call Marc.

@ P
> rappelle-moi mardi à 9h d'appeler Marc
= remind appeler Marc | 2026-11-24T09:00 | C'est noté, je vous rappellerai mardi 24 novembre à 09:00 d'appeler Marc.

@ P
> n'oublie pas de me rappeler d'appeler le dentiste lundi
= remind appeler le dentiste | 2026-11-23T09:00 | C'est noté, je vous rappellerai demain à 09:00 d'appeler le dentiste. Vous n'avez pas précisé d'heure, j'ai donc choisi 09:00.

@ P
> rappelle-moi ce soir de sortir les poubelles
= remind sortir les poubelles | 2026-11-22T19:00 | C'est noté, je vous rappellerai aujourd'hui à 19:00 de sortir les poubelles.

@ P
> remind me tomorrow at 8
< What should I remind you about?
> to water the plants
= remind water the plants | 2026-11-23T08:00 | OK, I'll remind you tomorrow at 08:00 to water the plants.

@ P
> remind me
< What should I remind you about?
> the meeting with Paul
< When should I remind you?
> 9
= remind the meeting with Paul | 2026-11-23T09:00 | OK, I'll remind you tomorrow at 09:00 about the meeting with Paul.

@ P
> remind me today at 9 to call Marc
< That time has already passed. When should I remind you?
> in 2 hours
= remind call Marc | 2026-11-22T17:00 | OK, I'll remind you today at 17:00 to call Marc.

@ P
> rappelle-moi d'appeler Marc
< Quand dois-je vous le rappeler ?
> hier
< Cette heure est déjà passée. Quand dois-je vous le rappeler ?
> annuler
< D'accord, pas de rappel.

@ P
> remind me to call Marc
< When should I remind you?
> book a haircut tomorrow at 10
< May I have your name?
> Zoe
< Shall I book a haircut for Zoe tomorrow at 10:00?
> yes
= book haircut | 2026-11-23T10:00 | Zoe
> at 6pm
= remind call Marc | 2026-11-22T18:00 | OK, I'll remind you today at 18:00 to call Marc.

@ P
> hello
< Hello! I can book an appointment, set a reminder or answer your questions. How can I help?
> c'est combien une coupe ?
= search c'est combien une coupe ?
> merci
< Je vous en prie !
> I need to cancel my appointment
= cancel-booking
> move my appointment to friday at 10
= reschedule 2026-11-27T10:00
> what are my reminders?
= list-reminders
> annule mon rappel
= cancel-reminder
> je veux parler à un conseiller
= handoff
> au revoir
< Au revoir, bonne journée !

@ P
> je voudrais réserver une coupe demain à 10h, c'est Paul
< Je récapitule : coupe pour Paul, demain à 10:00. Je réserve ?
> non merci
< Que souhaitez-vous changer : la prestation, le jour, l'heure ou le nom ? Vous pouvez aussi dire « annuler » pour abandonner.
> non
< D'accord, j'abandonne cette demande de réservation.

@ P
> book a haircut
< Which day suits you?
> cancel my reminder
= cancel-reminder
> remind me to call Marc
< When should I remind you?
> cancel the appointment
< OK, I've dropped that booking request. When should I remind you?
> in 2 hours
= remind call Marc | 2026-11-22T17:00 | OK, I'll remind you today at 17:00 to call Marc.

@ P
> remind me
< What should I remind you about?
> in 2 hours
< What should I remind you about?
> to stretch
= remind stretch | 2026-11-22T17:00 | OK, I'll remind you today at 17:00 to stretch.

@ NY
> book me for 11/30 at 2:30pm
< What would you like to book?
> a manicure please
< May I have your name?
> my name is Sarah Connor
< Shall I book a manicure for Sarah Connor on Monday 30 November at 14:30?
> that's right
= book manicure | 2026-11-30T14:30 | Sarah Connor

@ NY
> remind me in 2 hours to take my pills
= remind take my pills | 2026-11-22T17:00 | OK, I'll remind you today at 17:00 to take my pills.
> remind me tomorrow to call mom
= remind call mom | 2026-11-23T09:00 | OK, I'll remind you tomorrow at 09:00 to call mom. You didn't give a time, so I chose 09:00.
"#;

    fn check(now: &Zoned, input: &str, want: &str, got: &Action) {
        let ctx = format!("after {input:?}: got {got:?}");
        let local = |s: &str| s.trim().parse::<DateTime>().unwrap();
        let zone = |z: &Zoned| {
            assert_eq!(z.time_zone(), now.time_zone(), "zone, {ctx}");
        };
        if let Some(text) = want.strip_prefix("< ") {
            let said = match got {
                Action::NotUnderstood(t) => Action::Reply(t.clone()),
                other => other.clone(),
            };
            assert_eq!(said, Action::Reply(text.to_owned()), "{ctx}");
            return;
        }
        let want = want.strip_prefix("= ").unwrap();
        let (kind, rest) = want.split_once(' ').unwrap_or((want, ""));
        let fields: Vec<&str> = rest.split(" | ").collect();
        match (kind, got) {
            ("book", Action::Book { service, at, name }) => {
                assert_eq!(service, fields[0], "{ctx}");
                assert_eq!(at.datetime(), local(fields[1]), "{ctx}");
                assert_eq!(name, fields[2], "{ctx}");
                zone(at);
            }
            ("remind", Action::CreateReminder { text, at, confirm }) => {
                assert_eq!(text, fields[0], "{ctx}");
                assert_eq!(at.datetime(), local(fields[1]), "{ctx}");
                assert_eq!(confirm, fields[2], "{ctx}");
                zone(at);
            }
            ("search", Action::SearchKnowledge { query }) => assert_eq!(query, rest, "{ctx}"),
            ("handoff", Action::Handoff { reply }) => assert!(!reply.is_empty(), "{ctx}"),
            ("cancel-booking", Action::CancelBooking)
            | ("cancel-reminder", Action::CancelReminder)
            | ("list-reminders", Action::ListReminders) => {}
            ("reschedule", Action::RescheduleBooking { at, .. }) => {
                let want = (rest != "-").then(|| local(rest));
                assert_eq!(at.as_ref().map(Zoned::datetime), want, "{ctx}");
            }
            _ => panic!("expected {want}, {ctx}"),
        }
    }

    #[test]
    fn scripted_conversations() {
        let mut scripts = 0;
        for script in SCRIPTS.split("\n\n").filter(|s| !s.trim().is_empty()) {
            let mut lines = script.lines().filter(|l| !l.trim().is_empty());
            let now = match lines.next() {
                Some("@ P") => zoned(PARIS),
                Some("@ NY") => zoned(NEW_YORK),
                other => panic!("bad script start {other:?}"),
            };
            let mut state = DialogueState::default();
            let mut steps = 0;
            while let Some(input) = lines.next() {
                let input = input.strip_prefix("> ").unwrap();
                let want = lines.next().unwrap();
                let got = step(&mut state, input, &now);
                check(&now, input, want, &got);
                assert_consistent(&state);
                let json = serde_json::to_string(&state).unwrap();
                let back: DialogueState = serde_json::from_str(&json).unwrap();
                assert_eq!(back, state, "round trip of {json}");
                steps += 1;
            }
            assert!(steps > 0);
            scripts += 1;
        }
        assert!(scripts >= 20, "{scripts} scripts");
    }

    fn assert_consistent(state: &DialogueState) {
        match state.asked {
            Some(a) if a.is_booking() => assert!(state.booking.is_some(), "{state:?}"),
            Some(_) => assert!(state.reminder.is_some(), "{state:?}"),
            None => assert!(state.is_idle(), "{state:?}"),
        }
    }

    #[test]
    fn short_replies_keep_the_language() {
        let now = zoned(PARIS);
        let mut state = DialogueState::default();
        step(&mut state, "je voudrais réserver une coupe", &now);
        assert_eq!(state.language(), Language::Fr);
        // "Marie" and "ok" are English by default: a tie.
        step(&mut state, "demain à 10h", &now);
        step(&mut state, "Marie", &now);
        assert_eq!(state.language(), Language::Fr);
        assert!(matches!(step(&mut state, "ok", &now), Action::Book { .. }));
        // A whole English sentence switches.
        let reply = step(&mut state, "I would like to book a massage", &now);
        assert_eq!(state.language(), Language::En);
        assert_eq!(reply, Action::Reply("Which day suits you?".into()));
    }

    #[test]
    fn the_nlu_reads_these_replies_as_nothing() {
        // Why the dialogue reads bare replies itself; if the NLU learns them, the
        // workarounds here can go.
        let now = zoned(PARIS);
        for text in [
            "Marie",
            "une coupe",
            "10",
            "yes",
            "never mind",
            "laisse tomber",
        ] {
            let u = understand(text, now.clone());
            assert_eq!(u.intent, Intent::Unknown, "{text}");
            assert_eq!(u.slots, super::super::Slots::default(), "{text}");
        }
        // And "yesterday at 10" as tomorrow at 10.
        let u = understand("yesterday at 10", now.clone());
        assert_eq!(
            u.slots.when.map(|w| w.datetime()),
            Some("2026-11-23T10:00".parse().unwrap())
        );
    }

    #[test]
    fn bare_names_and_services() {
        let read = |text: &str| {
            let u = understand(text, zoned(PARIS));
            let tokens = lexicon::tokenize(text);
            let words = lexicon::words(&tokens);
            let c = Cues::read(text, &tokens, &words, &u);
            (c.bare_name, c.bare_service)
        };
        let names = [
            ("Marie", Some("Marie")),
            ("marie", Some("Marie")),
            ("John Smith", Some("John Smith")),
            ("jean-pierre DUPONT", Some("Jean-Pierre Dupont")),
            ("o'brien", Some("O'Brien")),
            ("Marie.", Some("Marie")),
            ("ok", None),
            ("oui", None),
            ("what?", None),
            ("a b c d", None),
            ("Marie, merci", None),
            ("tomorrow", None),
            ("R2D2", None),
        ];
        for (text, want) in names {
            assert_eq!(read(text).0.as_deref(), want, "{text}");
        }
        let services = [
            ("une coupe", Some("coupe")),
            ("a haircut please", Some("haircut")),
            ("Coupe de cheveux", Some("coupe de cheveux")),
            ("the full treatment", Some("full treatment")),
            ("une", None),
            ("non", None),
            ("tomorrow at 10", None),
        ];
        for (text, want) in services {
            assert_eq!(read(text).1.as_deref(), want, "{text}");
        }
    }

    #[test]
    fn a_bare_time_keeps_the_day_and_a_named_day_replaces_it() {
        let now = zoned(PARIS);
        let read = |text: &str| {
            let u = understand(text, now.clone());
            let tokens = lexicon::tokenize(text);
            let words = lexicon::words(&tokens);
            let cues = Cues::read(text, &tokens, &words, &u);
            let when = u.slots.when.clone().unwrap();
            let msg = Msg { text, u, cues };
            names_day(&msg, &when, &now)
        };
        for text in [
            "at 10",
            "10h",
            "4pm",
            "à 9h30",
            "in the afternoon",
            "le soir",
        ] {
            assert!(!read(text), "{text}");
        }
        for text in [
            "tomorrow at 10",
            "today at 10",
            "ce soir",
            "friday",
            "sunday at 10",
            "le 3 décembre",
            "in 2 hours",
            "22/11 à 16h",
        ] {
            assert!(read(text), "{text}");
        }
    }

    #[test]
    fn dates_are_written_for_people() {
        let now = zoned(PARIS);
        let cases = [
            (
                "2026-11-22T09:00[Europe/Paris]",
                "today at 09:00",
                "aujourd'hui à 09:00",
            ),
            (
                "2026-11-23T09:00[Europe/Paris]",
                "tomorrow at 09:00",
                "demain à 09:00",
            ),
            (
                "2026-11-24T09:05[Europe/Paris]",
                "Tuesday 24 November at 09:05",
                "mardi 24 novembre à 09:05",
            ),
            (
                "2027-01-01T18:30[Europe/Paris]",
                "Friday 1 January 2027 at 18:30",
                "vendredi 1er janvier 2027 à 18:30",
            ),
            // Shown in the user's zone: 2026-11-24T03:00 in New York.
            (
                "2026-11-24T09:00[Europe/Paris]",
                "Tuesday 24 November at 09:00",
                "mardi 24 novembre à 09:00",
            ),
        ];
        for (at, en, fr) in cases {
            let at = zoned(at);
            assert_eq!(format_when(Language::En, &at, &now), en);
            assert_eq!(format_when(Language::Fr, &at, &now), fr);
        }
        let ny = zoned(NEW_YORK);
        let at = zoned("2026-11-24T09:00[Europe/Paris]");
        assert_eq!(
            format_when(Language::En, &at, &ny),
            "Tuesday 24 November at 03:00"
        );
    }

    #[test]
    fn tool_answers_are_phrased() {
        let now = zoned(PARIS);
        let at = zoned("2026-11-24T10:00[Europe/Paris]");
        assert_eq!(
            booked(Language::En, "haircut", &at, "Marie", &now),
            "You're booked: a haircut for Marie on Tuesday 24 November at 10:00."
        );
        assert_eq!(
            booked(Language::Fr, "coupe", &at, "Marie", &now),
            "C'est réservé : coupe pour Marie, mardi 24 novembre à 10:00."
        );
        let alternatives = [
            zoned("2026-11-23T10:00[Europe/Paris]"),
            zoned("2026-11-23T11:00[Europe/Paris]"),
            zoned("2026-11-24T09:00[Europe/Paris]"),
        ];
        assert_eq!(
            slot_taken(Language::En, &alternatives, &now),
            "Sorry, that time is no longer available. I can offer tomorrow at 10:00, tomorrow at 11:00 or Tuesday 24 November at 09:00. Which would suit you?"
        );
        assert_eq!(
            slot_taken(Language::Fr, &alternatives[..1], &now),
            "Désolé, ce créneau n'est plus disponible. Je peux vous proposer demain à 10:00. Lequel vous conviendrait ?"
        );
        assert_eq!(
            slot_taken(Language::En, &[], &now),
            "Sorry, that time is no longer available. Which other time would suit you?"
        );
        for lang in [Language::En, Language::Fr] {
            for text in [
                booking_unavailable(lang),
                no_answer(lang),
                fallback(lang),
                reminder_failed(lang),
            ] {
                assert!(text.len() > 20, "{text}");
            }
        }
        assert_ne!(no_answer(Language::En), no_answer(Language::Fr));
        assert_eq!(with_article("eyebrow wax"), "an eyebrow wax");
        assert_eq!(with_article("nails"), "nails");
        assert_eq!(with_article("a massage"), "a massage");
        assert_eq!(
            french_reminder_object("payer le loyer"),
            "de payer le loyer"
        );
        assert_eq!(
            french_reminder_object("il faut payer le loyer"),
            ": « il faut payer le loyer »"
        );
        assert_eq!(
            french_reminder_object("m'acheter du pain"),
            "de m'acheter du pain"
        );
    }

    #[test]
    fn a_taken_slot_asks_for_another_time_on_the_same_day() {
        let now = zoned(PARIS);
        let mut state = DialogueState::default();
        for text in ["book a haircut tomorrow at 10 for Marie", "yes"] {
            step(&mut state, text, &now);
        }
        let at = zoned("2026-11-23T10:00[Europe/Paris]");
        let reply = state.booking_slot_taken("haircut", &at, "Marie", &[], &now);
        assert_eq!(
            reply,
            "Sorry, that time is no longer available. Which other time would suit you?"
        );
        assert_eq!(
            state.pending_prompt(&now).as_deref(),
            Some("What time would suit you?")
        );
        assert_eq!(
            step(&mut state, "11h", &now),
            Action::Reply("Shall I book a haircut for Marie tomorrow at 11:00?".into())
        );
        let Action::Book { at, .. } = step(&mut state, "ok", &now) else {
            panic!("no booking");
        };
        assert_eq!(at, zoned("2026-11-23T11:00[Europe/Paris]"));
        assert!(state.is_idle());
        assert_eq!(state.pending_prompt(&now), None);
    }

    #[test]
    fn a_confirmation_that_comes_too_late_asks_again() {
        let mut state = DialogueState::default();
        let now = zoned(PARIS);
        step(&mut state, "book a haircut today at 16:00, I'm Ana", &now);
        let later = zoned("2026-11-22T16:30[Europe/Paris]");
        assert_eq!(
            step(&mut state, "yes", &later),
            Action::Reply("That time has already passed. What time would suit you?".into())
        );
    }

    #[test]
    fn the_state_round_trips_through_json() {
        let now = zoned(PARIS);
        let mut state = DialogueState::default();
        step(&mut state, "remind me tomorrow at 8", &now);
        step(&mut state, "je voudrais réserver un soin samedi soir", &now);
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"language\":\"fr\""), "{json}");
        assert!(json.contains("2026-11-28"), "{json}");
        assert!(
            json.contains("2026-11-23T08:00:00+01:00[Europe/Paris]"),
            "{json}"
        );
        let back: DialogueState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        // Older or partial states read as far as they go.
        let empty: DialogueState = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, DialogueState::default());
    }

    #[test]
    fn a_damaged_state_is_repaired() {
        let now = zoned(PARIS);
        let mut state: DialogueState =
            serde_json::from_str(r#"{"asked":"confirm","language":"en"}"#).unwrap();
        assert!(matches!(step(&mut state, "yes", &now), Action::Reply(_)));
        assert_consistent(&state);
        let mut state: DialogueState = serde_json::from_str(
            r#"{"booking":{"service":"haircut","day":"2026-11-01","time":"10:00","name":"Bo"},"asked":"confirm"}"#,
        )
        .unwrap();
        assert_eq!(
            step(&mut state, "yes", &now),
            Action::Reply("That day has already passed. Which day suits you?".into())
        );
    }

    #[test]
    fn huge_and_extreme_inputs() {
        let now = zoned(PARIS);
        let mut state = DialogueState::default();
        let huge = "what ".repeat(100_000);
        let Action::SearchKnowledge { query } = step(&mut state, &huge, &now) else {
            panic!("not a search");
        };
        assert!(query.chars().count() <= super::super::MAX_INPUT_CHARS);
        step(&mut state, "remind me to", &now);
        let long_text = format!("remind me tomorrow at 9 to {}", "x".repeat(5_000));
        let Action::CreateReminder { text, .. } = step(&mut state, &long_text, &now) else {
            panic!("no reminder");
        };
        assert!(text.chars().count() <= MAX_REMINDER_CHARS);
        let utc = jiff::tz::TimeZone::UTC;
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        for now in [
            jiff::Timestamp::MAX.to_zoned(utc.clone()),
            jiff::Timestamp::MIN.to_zoned(utc),
            jiff::Timestamp::MAX.to_zoned(paris.clone()),
            jiff::Timestamp::MIN.to_zoned(paris),
        ] {
            let mut state = DialogueState::default();
            for text in VOCABULARY {
                let action = step(&mut state, text, &now);
                assert_sound(&action, &now);
                assert_consistent(&state);
            }
        }
    }

    const VOCABULARY: &[&str] = &[
        "I'd like to book a haircut",
        "je voudrais un rdv",
        "tomorrow at 10",
        "demain",
        "10h",
        "10",
        "at 3",
        "friday morning",
        "in the evening",
        "today at 9",
        "yesterday",
        "hier à 10h",
        "Marie",
        "je m'appelle Paul",
        "une coupe",
        "yes",
        "oui",
        "no",
        "non",
        "the time",
        "le nom",
        "never mind",
        "cancel",
        "annuler",
        "remind me to call Marc",
        "remind me",
        "rappelle-moi demain à 9h d'appeler Marc",
        "in 2 hours",
        "what are my reminders?",
        "I want to talk to a human",
        "hello",
        "merci",
        "bye",
        "what are your opening hours?",
        "move my appointment to friday",
        "change it to 11",
        "",
        "???",
        "🙂",
        "31/02",
    ];

    /// What must hold of any action: reminders and bookings are in the future, in the
    /// user's zone, with bounded text.
    fn assert_sound(action: &Action, now: &Zoned) {
        match action {
            Action::CreateReminder { text, at, confirm } => {
                assert!(at > now, "{action:?}");
                assert_eq!(at.time_zone(), now.time_zone());
                assert!(!text.is_empty() && text.chars().count() <= MAX_REMINDER_CHARS);
                assert!(!confirm.is_empty());
            }
            Action::Book { service, at, name } => {
                assert!(at > now, "{action:?}");
                assert_eq!(at.time_zone(), now.time_zone());
                assert!(!service.is_empty() && !name.is_empty());
            }
            Action::Reply(text) | Action::NotUnderstood(text) | Action::Handoff { reply: text } => {
                assert!(!text.is_empty(), "{action:?}");
            }
            _ => {}
        }
    }

    fn run_all(texts: &[String], now: &Zoned) {
        let mut state = DialogueState::default();
        for text in texts {
            let action = step(&mut state, text, now);
            assert_sound(&action, now);
            assert_consistent(&state);
            let json = serde_json::to_string(&state).unwrap();
            assert!(json.len() < 2_000, "state grew to {} bytes", json.len());
            let back: DialogueState = serde_json::from_str(&json).unwrap();
            assert_eq!(back, state);
        }
    }

    proptest! {
        #[test]
        fn any_text_in_any_state(texts in prop::collection::vec(any::<String>(), 0..6)) {
            run_all(&texts, &zoned(PARIS));
        }

        #[test]
        fn conversations_from_the_vocabulary(
            picks in prop::collection::vec(
                (prop::sample::select(VOCABULARY), "\\PC{0,12}"),
                0..12,
            ),
            new_york in any::<bool>(),
        ) {
            let texts: Vec<String> = picks
                .into_iter()
                .map(|(word, noise)| if noise.len() % 3 == 0 { format!("{word} {noise}") } else { word.to_owned() })
                .collect();
            let now = zoned(if new_york { NEW_YORK } else { PARIS });
            run_all(&texts, &now);
        }
    }
}
