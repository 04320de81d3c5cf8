//! The service to book, the user's name and the text of a reminder.
//!
//! Each extractor reads the tokens and skips those consumed by a date or time expression,
//! and copies its result from the input as typed.

use super::intent;
use super::lexicon::{self, Kind, POLITE, Token, Word, phrase_at};

/// Words after which a noun phrase names the service: "for a haircut", "pour une coupe",
/// "d'un détartrage", "book a cleaning".
const SERVICE_LEADS: &[&str] = &[
    "for a|an|the|my|some",
    "4 a|an",
    "pour un|une|le|la|l|mon|ma|des|mes",
    "d un|une",
    "book|schedule|get|need|want|like|have|booking a|an",
    "book me a|an",
    "reserver|prendre|faire|avoir|voudrais|veux|aimerais|souhaite|souhaiterais|besoin un|une",
];

/// Words that end a service noun phrase.
const SERVICE_STOP: &[&str] = &[
    "at",
    "on",
    "in",
    "with",
    "and",
    "or",
    "to",
    "for",
    "from",
    "by",
    "please",
    "if",
    "because",
    "asap",
    "this",
    "next",
    "today",
    "tomorrow",
    "tonight",
    "a",
    "an",
    "the",
    "my",
    "your",
    "our",
    "avec",
    "et",
    "ou",
    "pour",
    "dans",
    "chez",
    "vers",
    "le",
    "la",
    "les",
    "l",
    "un",
    "une",
    "ce",
    "cette",
    "cet",
    "svp",
    "stp",
    "si",
    "car",
    "parce",
    "demain",
    "aujourdhui",
    "merci",
    "thanks",
    "me",
    "moi",
    "je",
    "j",
    "i",
    "it",
    "is",
    "est",
    "que",
    "qui",
    "which",
    "that",
    "who",
    "s",
    "il",
    "vous",
    "nous",
    "tout",
    "soon",
    "possible",
    "urgent",
    "mon",
    "ma",
    "mes",
    "notre",
    "votre",
    "when",
    "quand",
    "sil",
    "plait",
    "but",
    "mais",
    "then",
    "puis",
    "so",
    "also",
    "aussi",
    "too",
    "there",
    "here",
    "ici",
    "la",
    "am",
    "pm",
    "h",
    "as",
    "like",
    "comme",
    "what",
    "how",
    "much",
    "combien",
    "cost",
    "coute",
    "price",
    "prix",
    "is",
    "are",
    "do",
    "does",
    "can",
    "could",
    "would",
    "will",
    "you",
    "tu",
    "please",
    "name",
    "nom",
];

/// Words that join two nouns of one service: "coupe de cheveux", "pair of glasses".
const SERVICE_JOIN: &[&str] = &["de", "du", "des", "d", "of"];

/// Leading adjectives dropped from a service: "a new haircut".
const SERVICE_ADJECTIVES: &[&str] = &[
    "new", "nouveau", "nouvel", "nouvelle", "autre", "another", "other", "petit", "petite", "quick",
];

/// Nouns for the booking itself, never the service: "an appointment".
const BOOKING_NOUNS: &[&str] = &[
    "appointment",
    "appointments",
    "rdv",
    "rendez",
    "reservation",
    "reservations",
    "booking",
    "bookings",
    "slot",
    "creneau",
    "session",
    "seance",
];

/// Nouns that follow "a"/"un" but are not something to book.
const NOT_A_SERVICE: &[&str] = &[
    "human",
    "humain",
    "person",
    "personne",
    "agent",
    "conseiller",
    "conseillere",
    "manager",
    "question",
    "questions",
    "moment",
    "minute",
    "minutes",
    "heure",
    "heures",
    "hour",
    "hours",
    "day",
    "days",
    "jour",
    "jours",
    "semaine",
    "week",
    "reminder",
    "rappel",
    "time",
    "fois",
    "refund",
    "remboursement",
    "receipt",
    "recu",
    "facture",
    "invoice",
    "information",
    "info",
    "infos",
    "probleme",
    "problem",
    "souci",
    "call",
    "appel",
    "message",
    "reponse",
    "answer",
    "while",
    "bit",
    "lot",
    "peu",
    "one",
    "thing",
    "chose",
    "favor",
    "favour",
    "service",
    "help",
    "aide",
    "coup",
    "main",
    "quote",
    "devis",
    "someone",
    "quelqu",
    "real",
    "vrai",
    "vraie",
];

/// The thing to book, lower-cased as typed: "haircut", "coupe de cheveux", "détartrage".
pub(crate) fn service(
    text: &str,
    toks: &[Token],
    words: &[Word<'_>],
    consumed: &[bool],
) -> Option<String> {
    (0..words.len()).find_map(|at| {
        let end = SERVICE_LEADS
            .iter()
            .filter_map(|p| phrase_at(words, at, p))
            .max()?;
        let first = words.get(end)?.tok;
        // The phrase must start right after the lead (no punctuation in between).
        let lead_end = words.get(end.checked_sub(1)?)?.tok;
        if first != lead_end + 1 && !(first == lead_end + 2 && apostrophe(toks, lead_end + 1)) {
            return None;
        }
        noun_phrase(text, toks, consumed, first)
    })
}

fn apostrophe(toks: &[Token], k: usize) -> bool {
    toks.get(k).is_some_and(|t| t.is_punct("'"))
}

fn is_stop(t: &Token) -> bool {
    SERVICE_STOP.contains(&t.norm.as_str())
        || lexicon::weekday(&t.norm).is_some()
        || lexicon::month(&t.norm).is_some()
}

fn noun_phrase(text: &str, toks: &[Token], consumed: &[bool], start: usize) -> Option<String> {
    let usable = |k: usize| {
        toks.get(k).is_some_and(|t| {
            t.kind == Kind::Word
                && !consumed.get(k).copied().unwrap_or(true)
                && !is_stop(t)
                && !SERVICE_JOIN.contains(&t.norm.as_str())
        })
    };
    let mut content: Vec<usize> = Vec::new();
    let mut k = start;
    while content.len() < 4 {
        let Some(t) = toks.get(k) else {
            break;
        };
        if usable(k) {
            content.push(k);
            k += 1;
            continue;
        }
        let Some(&last) = content.last() else {
            break;
        };
        // A hyphen inside a word ("soin-visage") or a joining word ("coupe de cheveux").
        let next = if t.kind == Kind::Punct && t.is_punct("-") && t.glued && last + 1 == k {
            k + 1
        } else if t.kind == Kind::Word && SERVICE_JOIN.contains(&t.norm.as_str()) {
            if apostrophe(toks, k + 1) {
                k + 2
            } else {
                k + 1
            }
        } else {
            break;
        };
        if !usable(next) {
            break;
        }
        k = next;
    }
    // "a new haircut appointment" → "haircut".
    let skip = content
        .iter()
        .take_while(|&&k| {
            toks.get(k)
                .is_some_and(|t| SERVICE_ADJECTIVES.contains(&t.norm.as_str()))
        })
        .count();
    let mut content = content.get(skip..).unwrap_or_default();
    let booking = |k: &usize| {
        toks.get(*k)
            .is_some_and(|t| BOOKING_NOUNS.contains(&t.norm.as_str()))
    };
    if content.first().is_some_and(booking) {
        return None;
    }
    while content.last().is_some_and(booking) {
        content = content.get(..content.len() - 1).unwrap_or_default();
    }
    let first = toks.get(*content.first()?)?;
    let last = toks.get(*content.last()?)?;
    if NOT_A_SERVICE.contains(&first.norm.as_str()) {
        return None;
    }
    let phrase = text.get(first.span.start..last.span.end)?.to_lowercase();
    (phrase.chars().count() >= 2 && phrase.len() <= 80).then_some(phrase)
}

/// Words after which the user gives their name, in any case.
const NAME_STRONG: &[&str] = &[
    "my name is|s",
    "name is",
    "je m appelle",
    "je mappelle",
    "mon nom est",
    "mon nom c est",
    "moi c est",
    "au nom de",
    "de la part de",
    "under the name",
    "under the name of",
    "sous le nom de",
];

/// Words after which a capitalised word is probably a name: "I'm Marc", "c'est Marie".
const NAME_WEAK: &[&str] = &[
    "i m|am", "im", "this is", "it s", "its", "c est", "je suis", "ici",
];

/// Words that are never a name.
const NAME_STOP: &[&str] = &[
    "i",
    "me",
    "my",
    "you",
    "a",
    "an",
    "the",
    "and",
    "or",
    "but",
    "to",
    "for",
    "at",
    "on",
    "in",
    "with",
    "is",
    "am",
    "are",
    "was",
    "be",
    "here",
    "there",
    "this",
    "that",
    "it",
    "not",
    "so",
    "very",
    "just",
    "sorry",
    "ok",
    "okay",
    "fine",
    "good",
    "great",
    "late",
    "back",
    "ready",
    "available",
    "free",
    "busy",
    "looking",
    "calling",
    "going",
    "trying",
    "interested",
    "new",
    "sure",
    "done",
    "home",
    "out",
    "happy",
    "glad",
    "also",
    "still",
    "please",
    "thanks",
    "hello",
    "hi",
    "hey",
    "about",
    "afraid",
    "coming",
    "sick",
    "ill",
    "running",
    "waiting",
    "writing",
    "texting",
    "asking",
    "wondering",
    "booked",
    "confused",
    "unable",
    "able",
    "customer",
    "client",
    "cliente",
    "patient",
    "patiente",
    "je",
    "tu",
    "il",
    "elle",
    "on",
    "nous",
    "vous",
    "un",
    "une",
    "le",
    "la",
    "les",
    "de",
    "du",
    "des",
    "et",
    "ou",
    "mais",
    "pour",
    "au",
    "avec",
    "en",
    "dans",
    "ici",
    "moi",
    "toi",
    "lui",
    "bon",
    "bien",
    "d",
    "accord",
    "dispo",
    "disponible",
    "libre",
    "occupe",
    "occupee",
    "pas",
    "plus",
    "tres",
    "trop",
    "nouveau",
    "nouvelle",
    "retard",
    "possible",
    "urgent",
    "merci",
    "bonjour",
    "salut",
    "svp",
    "stp",
    "desole",
    "desolee",
    "ca",
    "ce",
    "cela",
    "vrai",
    "parfait",
    "super",
    "genial",
    "top",
    "ma",
    "mon",
    "rdv",
    "quoi",
    "voila",
    "encore",
    "deja",
    "malade",
    "en",
    "pret",
    "prete",
    "content",
    "contente",
    "la",
    "noted",
    "correct",
    "right",
    "wrong",
    "yes",
    "no",
    "oui",
    "non",
    "what",
    "who",
    "where",
    "when",
    "how",
    "why",
    "quel",
    "quelle",
    "qui",
    "comment",
    "quand",
    "pourquoi",
    "combien",
    "human",
    "humain",
    "someone",
    "quelqu",
    "possible",
    "dommage",
    "nickel",
    "cool",
    "perfect",
    "appointment",
    "booking",
    "reservation",
    "tomorrow",
    "today",
    "tonight",
    "demain",
    "aujourdhui",
    "soir",
    "matin",
    "morning",
    "evening",
    "afternoon",
    "noon",
    "midi",
    "minuit",
    "midnight",
    "pm",
    "heure",
    "heures",
    "hour",
    "hours",
    "minutes",
    "week",
    "semaine",
];

/// The user's name, capitalised: "my name is marie dupont" → "Marie Dupont".
pub(crate) fn name(
    text: &str,
    toks: &[Token],
    words: &[Word<'_>],
    consumed: &[bool],
) -> Option<String> {
    (0..words.len()).find_map(|at| {
        let (end, strong) = NAME_STRONG
            .iter()
            .filter_map(|p| phrase_at(words, at, p))
            .max()
            .map(|end| (end, true))
            .or_else(|| {
                NAME_WEAK
                    .iter()
                    .filter_map(|p| phrase_at(words, at, p))
                    .max()
                    .map(|end| (end, false))
            })?;
        let lead_end = words.get(end.checked_sub(1)?)?.tok;
        let mut k = lead_end + 1;
        while toks.get(k).is_some_and(|t| t.is_punct(":")) {
            k += 1;
        }
        let mut parts: Vec<String> = Vec::new();
        let mut first_capitalised = false;
        while parts.len() < 3 {
            let Some((part, capitalised, next)) = name_part(text, toks, consumed, k) else {
                break;
            };
            let ok = if parts.is_empty() {
                first_capitalised = capitalised;
                strong || capitalised
            } else {
                capitalised || (strong && !first_capitalised && parts.len() < 2)
            };
            if !ok {
                break;
            }
            parts.push(capitalise(&part));
            k = next;
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    })
}

/// One word of a name ("Marie", "Jean-Pierre", "O'Brien") at `k`: its text, whether it was
/// typed with a capital, and the token after it.
fn name_part(
    text: &str,
    toks: &[Token],
    consumed: &[bool],
    k: usize,
) -> Option<(String, bool, usize)> {
    let first = toks.get(k)?;
    let alphabetic =
        |t: &Token| t.kind == Kind::Word && t.raw(text).chars().all(char::is_alphabetic);
    if !alphabetic(first)
        || consumed.get(k).copied().unwrap_or(true)
        || first.norm.chars().count() < 2
        || NAME_STOP.contains(&first.norm.as_str())
        || lexicon::weekday(&first.norm).is_some()
        || lexicon::month(&first.norm).is_some()
    {
        return None;
    }
    let mut end = k + 1;
    // Glued "-Pierre" or "'Brien".
    while let (Some(sep), Some(next)) = (toks.get(end), toks.get(end + 1))
        && sep.glued
        && next.glued
        && (sep.is_punct("-") || sep.is_punct("'"))
        && alphabetic(next)
    {
        end += 2;
    }
    let last = toks.get(end - 1)?;
    let raw = text.get(first.span.start..last.span.end)?;
    if raw.chars().count() > 40 {
        return None;
    }
    Some((raw.to_owned(), first.capitalised(text), end))
}

/// "marie" → "Marie", "JEAN-PIERRE" → "Jean-Pierre", "McDonald" stays.
fn capitalise(part: &str) -> String {
    part.split('-')
        .map(|seg| {
            let all_upper = seg.chars().filter(|c| c.is_alphabetic()).count() > 1
                && !seg.chars().any(char::is_lowercase);
            let mut chars = seg.chars();
            let Some(head) = chars.next() else {
                return String::new();
            };
            let tail: String = chars.collect();
            let tail = if all_upper { tail.to_lowercase() } else { tail };
            head.to_uppercase().chain(tail.chars()).collect()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Words between the request and what to be reminded of: "remind me, please, ...".
const REMINDER_LEAD: &[&str] = &[
    "me", "moi", "us", "nous", "please", "svp", "stp", "s", "il", "te", "vous", "plait", "for",
    "pour", "also", "aussi", "ok",
];

/// Words that introduce what to be reminded of: "to", "de", "d'", "that", "about".
const REMINDER_INTRO: &[&str] = &["to", "de", "d", "that", "que", "qu", "about", "of", "a"];

/// What to be reminded of: "remind me tomorrow at 9 to call Marc" → "call Marc".
pub(crate) fn reminder_text(
    text: &str,
    toks: &[Token],
    words: &[Word<'_>],
    consumed: &[bool],
) -> Option<String> {
    let trigger = intent::reminder(words)?;
    let trigger_end = words.get(trigger.end.checked_sub(1)?)?.tok + 1;
    let mut kept: Vec<usize> = (trigger_end..toks.len())
        .filter(|&k| !consumed.get(k).copied().unwrap_or(true))
        .collect();
    let norm = |k: usize| toks.get(k).map_or("", |t| t.norm.as_str());
    let is_punct = |k: usize| toks.get(k).is_some_and(|t| t.kind == Kind::Punct);
    // Leading filler, then one introducing word.
    let mut from = 0;
    while let Some(&k) = kept.get(from)
        && (is_punct(k) || REMINDER_LEAD.contains(&norm(k)))
    {
        from += 1;
    }
    if let Some(&k) = kept.get(from)
        && REMINDER_INTRO.contains(&norm(k))
    {
        from += 1;
        if let Some(&a) = kept.get(from)
            && toks.get(a).is_some_and(|t| t.is_punct("'"))
        {
            from += 1;
        }
    }
    kept.drain(..from.min(kept.len()));
    // Trailing punctuation and politeness.
    while let Some(&k) = kept.last()
        && (is_punct(k) || POLITE.contains(&norm(k)) || matches!(norm(k), "pls" | "thx" | "ok"))
    {
        kept.pop();
        if norm(k) == "plait" {
            // "s'il vous plaît"
            while kept
                .last()
                .is_some_and(|&j| is_punct(j) || matches!(norm(j), "s" | "il" | "vous" | "te"))
            {
                kept.pop();
            }
        }
    }
    let mut out = String::new();
    let mut prev: Option<usize> = None;
    for &k in &kept {
        let t = toks.get(k)?;
        if prev.is_some_and(|p| !(t.glued && p + 1 == k)) {
            out.push(' ');
        }
        out.push_str(t.raw(text));
        prev = Some(k);
    }
    let out = out.trim();
    (!out.is_empty()).then(|| out.to_owned())
}

#[cfg(test)]
mod tests {
    use jiff::Zoned;

    use super::*;
    use crate::offline::Language;
    use crate::offline::datetime::extract;
    use crate::offline::lexicon::{tokenize, words};

    type Extractor = fn(&str, &[Token], &[Word<'_>], &[bool]) -> Option<String>;

    fn run(f: Extractor, text: &str) -> Option<String> {
        let now: Zoned = "2026-11-22T10:00[Europe/Paris]".parse().unwrap();
        let toks = tokenize(text);
        let w = words(&toks);
        let consumed = extract(text, &toks, Language::En, &now).consumed;
        f(text, &toks, &w, &consumed)
    }

    #[test]
    fn services() {
        let cases = [
            (
                "I'd like to book an appointment for a haircut tomorrow",
                Some("haircut"),
            ),
            (
                "je voudrais un rdv pour une coupe de cheveux demain",
                Some("coupe de cheveux"),
            ),
            ("j'ai besoin d'un détartrage", Some("détartrage")),
            ("Book a Cleaning for Monday", Some("cleaning")),
            ("for a new haircut appointment please", Some("haircut")),
            ("pour un soin-visage svp", Some("soin-visage")),
            ("je voudrais un rendez-vous", None),
            ("for a human", None),
            ("for 2 people", None),
            ("pour demain", None),
            ("for the 23rd", None),
            ("I need a refund", None),
        ];
        for (text, want) in cases {
            assert_eq!(run(service, text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn names() {
        let cases = [
            ("my name is John Smith", Some("John Smith")),
            ("my name is john smith", Some("John Smith")),
            ("je m'appelle marie", Some("Marie")),
            (
                "Je m'appelle Jean-Pierre Dupont, merci",
                Some("Jean-Pierre Dupont"),
            ),
            ("Bonjour, c'est Marie", Some("Marie")),
            ("c'est pour un rdv", None),
            ("I'm Marc", Some("Marc")),
            ("I'm late", None),
            ("I'm Late", None),
            ("MY NAME IS ALICE", Some("Alice")),
            ("my name is", None),
            ("this is Tomorrow", None),
        ];
        for (text, want) in cases {
            assert_eq!(run(name, text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn reminder_texts() {
        let cases = [
            ("remind me tomorrow at 9 to call Marc", Some("call Marc")),
            (
                "rappelle-moi demain à 9h d'appeler Marc",
                Some("appeler Marc"),
            ),
            ("remind me to call Marc on Monday please", Some("call Marc")),
            (
                "n'oublie pas de me rappeler d'acheter du pain ce soir",
                Some("acheter du pain"),
            ),
            ("set a reminder for tomorrow: dentist", Some("dentist")),
            ("remind me about the meeting", Some("the meeting")),
            (
                "rappelle-moi qu'il faut payer le loyer",
                Some("il faut payer le loyer"),
            ),
            ("remind me", None),
            ("remind me tomorrow", None),
        ];
        for (text, want) in cases {
            assert_eq!(run(reminder_text, text).as_deref(), want, "{text}");
        }
    }

    #[test]
    fn capitalises_names() {
        assert_eq!(capitalise("marie"), "Marie");
        assert_eq!(capitalise("JEAN-PIERRE"), "Jean-Pierre");
        assert_eq!(capitalise("McDonald"), "McDonald");
        assert_eq!(capitalise("élodie"), "Élodie");
    }
}
