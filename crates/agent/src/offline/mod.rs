//! What the offline engine understands of a message when no model provider is available.
//!
//! [`understand`] is a pure function: it reads English or French text (case- and
//! accent-insensitive, tolerant of SMS spellings such as "2moro", "tmrw", "rdv", "svp",
//! "pls") and returns an [`Intent`], the [`Language`] and the [`Slots`] it found. Dates and
//! times are resolved against the `now` it is given, in that value's time zone; nothing is
//! read from the clock or the environment. Only the first [`MAX_INPUT_CHARS`] characters are
//! read, so the work is bounded, and no input makes it panic.
//!
//! The parsers are word lists and small hand-written matchers (see `lexicon`, `datetime`,
//! `intent` and `slots`), not a model: they cover the common ways of asking for the few
//! things the offline engine can do, and anything else that looks like a question is
//! [`Intent::Question`], for a knowledge-base search.

mod datetime;
pub mod dialogue;
mod intent;
mod lexicon;
mod slots;

use jiff::Zoned;

pub use lexicon::MAX_INPUT_CHARS;

/// What the user asks for. When several apply, the most specific wins: a reminder, then a
/// human, a change, a cancellation, a booking, a question, then the social ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Make an appointment: "book", "réserver", "prendre rendez-vous".
    Book,
    /// Cancel a booking: "cancel", "annuler", "I can't make it".
    Cancel,
    /// Move a booking: "reschedule", "move", "déplacer", "décaler", "changer".
    Reschedule,
    /// Set a reminder: "remind me", "rappelle-moi de", "n'oublie pas de me rappeler".
    Remind,
    /// Talk to a person: "a human", "un conseiller", "manager", "call me back".
    Handoff,
    /// "hi", "bonjour", "salut", "coucou".
    Greeting,
    /// "thanks", "merci".
    Thanks,
    /// "bye", "au revoir", "à plus".
    Goodbye,
    /// Anything else that looks like a question: search the knowledge base.
    Question,
    /// Nothing recognised.
    Unknown,
}

impl Intent {
    /// A stable lower-case name, for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Book => "book",
            Self::Cancel => "cancel",
            Self::Reschedule => "reschedule",
            Self::Remind => "remind",
            Self::Handoff => "handoff",
            Self::Greeting => "greeting",
            Self::Thanks => "thanks",
            Self::Goodbye => "goodbye",
            Self::Question => "question",
            Self::Unknown => "unknown",
        }
    }
}

/// The language of the message, by its words. Ties (including empty text) are English.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    En,
    Fr,
}

/// A part of the day that was named ("tomorrow morning", "ce soir").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PartOfDay {
    Morning,
    Afternoon,
    Evening,
}

impl PartOfDay {
    /// The hour used when no clock time was given: 9, 14 or 19.
    #[must_use]
    pub const fn default_hour(self) -> u8 {
        match self {
            Self::Morning => 9,
            Self::Afternoon => 14,
            Self::Evening => 19,
        }
    }
}

/// What the message said beyond its intent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Slots {
    /// The date-time meant, in the time zone of `now`. When only a day was said it is the
    /// start of that day and `time_given` is false; when only a part of the day was said
    /// ("tomorrow morning") it is that part's default hour, `time_given` is false and
    /// `part_of_day` says which.
    pub when: Option<Zoned>,
    /// A clock time ("at 9", "21h30", "noon") or an offset ("in 2 hours") was given.
    pub time_given: bool,
    pub part_of_day: Option<PartOfDay>,
    /// The thing to book, lower case as typed: "haircut", "coupe de cheveux", "détartrage".
    pub service: Option<String>,
    /// The user's name, capitalised: "Marie", "John Smith", "Jean-Pierre".
    pub name: Option<String>,
    /// For [`Intent::Remind`], what to be reminded of, as typed: "call Marc".
    pub reminder_text: Option<String>,
}

/// The result of [`understand`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Understanding {
    pub intent: Intent,
    pub language: Language,
    pub slots: Slots,
}

/// Reads a message. `now` is the current time in the end user's (or the tenant's) time
/// zone; relative dates ("tomorrow", "lundi", "in 2 hours") are resolved against it:
///
/// - a weekday is its next occurrence strictly after today ("monday", "next monday",
///   "lundi prochain"), except with "this"/"ce", which may be today;
/// - a time without a day that has already passed today is tomorrow;
/// - a date without a year that has already passed is next year;
/// - a date that does not exist ("31/02") gives no date at all.
#[must_use]
pub fn understand(text: &str, now: Zoned) -> Understanding {
    let text = lexicon::truncate(text);
    let tokens = lexicon::tokenize(text);
    let words = lexicon::words(&tokens);
    let language = intent::detect_language(text, &words);
    let found = datetime::extract(text, &tokens, language, &now);
    let service = slots::service(text, &tokens, &words, &found.consumed);
    let name = slots::name(text, &tokens, &words, &found.consumed);
    let intent = intent::classify(&tokens, &words, found.when.is_some(), service.is_some());
    let (service, reminder_text) = if intent == Intent::Remind {
        (
            None,
            slots::reminder_text(text, &tokens, &words, &found.consumed),
        )
    } else {
        (service, None)
    };
    let (when, time_given, part_of_day) = match found.when {
        Some(w) => (Some(w.at), w.time_given, w.part),
        None => (None, false, None),
    };
    Understanding {
        intent,
        language,
        slots: Slots {
            when,
            time_given,
            part_of_day,
            service,
            name,
            reminder_text,
        },
    }
}

#[cfg(test)]
mod tests {
    use jiff::civil::DateTime;
    use proptest::prelude::*;

    use super::*;

    const PARIS: &str = "2026-11-22T10:00[Europe/Paris]";
    const NEW_YORK: &str = "2026-11-22T10:00[America/New_York]";

    fn at(now: &str, text: &str) -> Understanding {
        understand(text, now.parse().unwrap())
    }

    /// One utterance a line: where "now" is (`P` Paris, `NY` New York, both at
    /// 2026-11-22T10:00, a Sunday), the expected intent, language and local date-time (`-`
    /// for none), then the text after `|`.
    const TABLE: &str = "
P  remind     en 2026-11-23T09:00 | remind me tomorrow at 9 to call Marc
P  remind     fr 2026-11-23T09:00 | rappelle-moi demain à 9h d'appeler Marc
P  remind     en 2026-11-22T12:00 | remind me in 2 hours to take my pills
P  remind     fr 2026-11-22T10:30 | rappelle-moi dans 30 min de sortir le gâteau
P  remind     fr 2026-11-23T00:00 | n'oublie pas de me rappeler d'appeler le dentiste lundi
P  remind     en -                | remind me to call mom
P  book       en 2026-11-23T15:00 | Hi, I'd like to book an appointment for a haircut tomorrow at 3pm. My name is John Smith
P  book       fr 2026-11-23T00:00 | bonjour, je voudrais un rdv demain
P  book       fr 2026-11-23T14:30 | Bonjour, je m'appelle Marie, je voudrais prendre rendez-vous pour un détartrage lundi prochain à 14h30
P  book       en 2026-11-27T09:00 | can I get a cleaning on friday morning?
P  book       fr 2026-11-23T09:00 | rdv 2moro 9h svp
P  book       en 2026-11-23T10:00 | can i come in tmrw at 10am pls
P  book       en 2026-11-22T19:00 | book me in for tonight
P  book       fr 2026-11-22T20:00 | réserver pour ce soir 20h
P  book       fr 2026-12-03T09:00 | je voudrais un rdv le 3 décembre à 9h
P  book       en 2026-11-23T09:30 | appointment on Nov 23 at 9:30am
P  book       en 2026-11-23T12:00 | can I book for 23/11 at noon
P  book       fr 2026-11-23T12:00 | rdv le 23/11/2026 à midi
P  book       en 2026-11-30T16:15 | book for 2026-11-30 at 4:15pm
P  book       fr 2026-11-22T11:00 | je voudrais réserver pour aujourd'hui à 11h
P  book       en 2026-11-23T09:00 | can I come at 9?
P  book       en 2026-11-22T14:00 | any availability this afternoon?
P  book       fr 2026-11-28T09:00 | dispo samedi matin ?
P  book       fr 2026-11-23T00:00 | rdv à minuit
P  book       fr 2026-11-25T00:00 | j'ai besoin d'un rdv dans 3 jours
P  book       en 2026-11-24T16:00 | Hey, this is Sarah, can I get a manicure next Tuesday at 4?
P  book       fr 2026-11-22T21:00 | un rendez-vous le soir à 9 svp
P  book       en 2026-11-28T00:00 | I'm looking for a haircut on Saturday
P  book       en 2026-12-05T10:00 | Can I have an appointment at 10 on the 5th?
P  book       fr -                | rdv le 31/02
P  cancel     en 2026-11-23T00:00 | I need to cancel my appointment tomorrow
P  cancel     fr 2026-11-24T00:00 | annuler mon rdv de mardi svp
P  cancel     fr 2026-11-26T00:00 | je ne pourrai pas venir jeudi
P  reschedule en 2026-11-27T10:00 | Can I move my appointment to Friday at 10?
P  reschedule fr 2026-11-26T15:00 | je voudrais décaler mon rdv à jeudi 15h
P  reschedule en 2026-11-24T14:00 | could we reschedule to the day after tomorrow in the afternoon
P  reschedule fr 2026-11-23T00:00 | Je voudrais changer mon rendez-vous de demain
P  handoff    en -                | I want to talk to a human
P  handoff    en -                | Can I speak to the manager?
P  handoff    fr -                | je veux parler à un conseiller svp
P  handoff    fr -                | un humain stp
P  handoff    fr -                | rappelez-moi svp
P  greeting   en -                | hello
P  greeting   fr -                | Bonjour !
P  greeting   fr -                | coucou
P  thanks     en -                | thanks!
P  thanks     fr -                | merci beaucoup
P  goodbye    en -                | bye
P  goodbye    fr -                | Au revoir, bonne journée
P  goodbye    fr -                | à plus
P  question   en -                | What are your opening hours?
P  question   fr -                | c'est combien une coupe ?
P  question   en -                | how much is a haircut?
P  question   fr -                | bonjour, c'est pour savoir si vous faites les colorations
P  unknown    en -                | asdfghjkl
P  unknown    en -                |
P  unknown    en -                | 🙂🙂🙂
P  unknown    en -                | ???
NY book       en 2026-11-30T14:30 | book me for 11/30 at 2:30pm
NY book       en 2026-11-23T09:00 | appointment tomorrow at 9am
NY book       en 2026-11-23T08:00 | can I come in at 8?
";

    fn intent_named(name: &str) -> Intent {
        use Intent::*;
        [
            Book, Cancel, Reschedule, Remind, Handoff, Greeting, Thanks, Goodbye, Question, Unknown,
        ]
        .into_iter()
        .find(|i| i.as_str() == name)
        .unwrap()
    }

    #[test]
    fn understands_utterances() {
        let mut count = 0;
        for line in TABLE.lines().filter(|l| !l.trim().is_empty()) {
            let (head, text) = line.split_once('|').unwrap();
            let text = text.trim();
            let [place, intent, language, when] = head.split_whitespace().collect::<Vec<_>>()[..]
            else {
                panic!("bad line {line:?}");
            };
            let now = if place == "NY" { NEW_YORK } else { PARIS };
            let u = at(now, text);
            assert_eq!(u.intent, intent_named(intent), "intent of {text:?}");
            let language = if language == "fr" {
                Language::Fr
            } else {
                Language::En
            };
            assert_eq!(u.language, language, "language of {text:?}");
            let want = (when != "-").then(|| when.parse::<DateTime>().unwrap());
            assert_eq!(
                u.slots.when.as_ref().map(Zoned::datetime),
                want,
                "when of {text:?}"
            );
            if let Some(z) = &u.slots.when {
                let zone = if place == "NY" {
                    "America/New_York"
                } else {
                    "Europe/Paris"
                };
                assert_eq!(z.time_zone().iana_name(), Some(zone), "zone of {text:?}");
            }
            count += 1;
        }
        assert!(count >= 60, "{count} cases");
    }

    #[test]
    fn the_two_reminder_examples() {
        let en = at(PARIS, "remind me tomorrow at 9 to call Marc");
        let fr = at(PARIS, "rappelle-moi demain à 9h d'appeler Marc");
        let nine: Zoned = "2026-11-23T09:00[Europe/Paris]".parse().unwrap();
        for (u, text) in [(en, "call Marc"), (fr, "appeler Marc")] {
            assert_eq!(u.intent, Intent::Remind);
            assert_eq!(u.slots.reminder_text.as_deref(), Some(text));
            assert_eq!(u.slots.when.as_ref(), Some(&nine));
            assert!(u.slots.time_given);
            assert_eq!(u.slots.service, None);
        }
    }

    #[test]
    fn bookings_carry_service_and_name() {
        let cases = [
            (
                "Hi, I'd like to book an appointment for a haircut tomorrow at 3pm. My name is John Smith",
                Some("haircut"),
                Some("John Smith"),
            ),
            (
                "Bonjour, je m'appelle Marie, je voudrais prendre rendez-vous pour un détartrage lundi prochain à 14h30",
                Some("détartrage"),
                Some("Marie"),
            ),
            (
                "Hey, this is Sarah, can I get a manicure next Tuesday at 4?",
                Some("manicure"),
                Some("Sarah"),
            ),
            (
                "je voudrais un rdv pour une coupe de cheveux, c'est Paul",
                Some("coupe de cheveux"),
                Some("Paul"),
            ),
            ("book a cleaning, I'm Ana", Some("cleaning"), Some("Ana")),
            ("bonjour je voudrais un rdv demain", None, None),
        ];
        for (text, service, name) in cases {
            let u = at(PARIS, text);
            assert_eq!(u.intent, Intent::Book, "{text}");
            assert_eq!(u.slots.service.as_deref(), service, "{text}");
            assert_eq!(u.slots.name.as_deref(), name, "{text}");
        }
    }

    #[test]
    fn day_only_and_part_of_day_are_flagged() {
        let u = at(PARIS, "rdv demain");
        assert!(!u.slots.time_given);
        assert_eq!(u.slots.part_of_day, None);
        let u = at(PARIS, "rdv demain matin");
        assert!(!u.slots.time_given);
        assert_eq!(u.slots.part_of_day, Some(PartOfDay::Morning));
        let u = at(PARIS, "rdv demain matin à 10h");
        assert!(u.slots.time_given);
        let u = at(PARIS, "rdv dans 2 heures");
        assert!(u.slots.time_given);
    }

    #[test]
    fn times_across_dst_changes_are_wall_clock_times() {
        // Paris springs forward on 2026-03-29 at 02:00.
        let u = at(
            "2026-03-28T10:00[Europe/Paris]",
            "remind me tomorrow at 9 to stretch",
        );
        assert_eq!(
            u.slots.when.map(|z| z.to_string()).as_deref(),
            Some("2026-03-29T09:00:00+02:00[Europe/Paris]")
        );
        // New York falls back on 2026-11-01 at 02:00.
        let u = at(
            "2026-10-31T10:00[America/New_York]",
            "appointment tomorrow at 9",
        );
        assert_eq!(
            u.slots.when.map(|z| z.to_string()).as_deref(),
            Some("2026-11-01T09:00:00-05:00[America/New_York]")
        );
        let u = at("2026-10-31T10:00[America/New_York]", "rdv dans 24 heures");
        assert_eq!(
            u.slots.when.map(|z| z.to_string()).as_deref(),
            Some("2026-11-01T09:00:00-05:00[America/New_York]")
        );
    }

    #[test]
    fn time_zone_database_is_available() {
        assert!(jiff::tz::TimeZone::get("Europe/Paris").is_ok());
        assert!(jiff::tz::TimeZone::get("America/New_York").is_ok());
    }

    #[test]
    fn huge_inputs_are_cut() {
        let long = format!("rdv demain {}", "bla ".repeat(100_000));
        let u = at(PARIS, &long);
        assert_eq!(u.intent, Intent::Book);
        // Beyond the limit, nothing is read.
        let late = format!("{} remind me tomorrow", "x".repeat(MAX_INPUT_CHARS));
        assert_eq!(at(PARIS, &late).intent, Intent::Unknown);
    }

    #[test]
    fn extreme_now_values_do_not_panic() {
        let utc = jiff::tz::TimeZone::UTC;
        let paris = jiff::tz::TimeZone::get("Europe/Paris").unwrap();
        let nows = [
            jiff::Timestamp::MAX.to_zoned(utc.clone()),
            jiff::Timestamp::MIN.to_zoned(utc),
            jiff::Timestamp::MAX.to_zoned(paris.clone()),
            jiff::Timestamp::MIN.to_zoned(paris),
        ];
        let texts = [
            "in 9999 weeks",
            "dans 9999 heures",
            "tomorrow at 9",
            "31/12",
            "29/02",
            "next monday",
            "ce soir à minuit",
            "at 9",
            "le 1er janvier",
        ];
        for now in nows {
            for text in texts {
                let _ = understand(text, now.clone());
            }
        }
    }

    /// A deterministic fuzz loop over strings built from the parsers' own vocabulary.
    #[test]
    fn generated_word_salad_never_panics() {
        const PIECES: &[&str] = &[
            "at",
            "à",
            "9",
            "h",
            "30",
            ":",
            "/",
            ".",
            "-",
            "'",
            "demain",
            "tomorrow",
            "le",
            "31",
            "02",
            "2026",
            "pm",
            "am",
            "dans",
            "in",
            "2",
            "hours",
            "heures",
            "et",
            "demie",
            "remind",
            "me",
            "to",
            "rappelle",
            "moi",
            "de",
            "d",
            "my",
            "name",
            "is",
            "c",
            "est",
            "for",
            "a",
            "pour",
            "une",
            "coupe",
            "midi",
            "minuit",
            "noon",
            "lundi",
            "monday",
            "this",
            "next",
            "prochain",
            "soir",
            "matin",
            "?",
            "😀",
            "É",
            "ß",
            "0",
            "00",
            "99",
            "9999",
            "1er",
            "rd",
            "of",
            "december",
            "nov",
            "half",
            "past",
            "quarter",
            "moins",
            "quart",
            "o'clock",
            "a.m.",
            "apres",
            "midi",
            "aujourd'hui",
            "\u{301}",
            ",",
            "@",
            "+",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3_000 {
            let len = next() % 12;
            let mut text = String::new();
            for _ in 0..len {
                let i = usize::try_from(next() % PIECES.len() as u64).unwrap();
                text.push_str(PIECES[i]);
                if next() % 3 != 0 {
                    text.push(' ');
                }
            }
            let u = at(PARIS, &text);
            if let Some(z) = &u.slots.when {
                assert_eq!(z.time_zone().iana_name(), Some("Europe/Paris"), "{text:?}");
            }
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_text(text in "\\PC{0,200}") {
            let _ = at(PARIS, &text);
        }

        #[test]
        fn never_panics_on_any_chars(text in any::<String>()) {
            let _ = at(NEW_YORK, &text);
        }

        #[test]
        fn numeric_dates_never_panic(d in 0u32..100, m in 0u32..100, y in 0u32..10_000) {
            let _ = at(PARIS, &format!("rdv le {d}/{m}/{y} à {d}h{m}"));
            let _ = at(PARIS, &format!("{y}-{m}-{d} {d}:{m}pm"));
        }
    }
}
