//! Language detection and intent classification, by word lists.
//!
//! Patterns are written on normalised words (lower case, no accents, apostrophes and hyphens
//! split: "n'oublie" is `n oublie`, "rendez-vous" is `rendez vous`). `a|b` matches either
//! word and a trailing `*` any word with that prefix.

use std::ops::Range;

use super::lexicon::{Token, Word, find_any, has_any, mark_all, phrase_at};
use super::{Intent, Language};

const FR_MARKERS: &[&str] = &[
    "je",
    "j",
    "voudrais",
    "veux",
    "aimerais",
    "souhaite",
    "suis",
    "rdv",
    "demain",
    "aujourdhui",
    "bonjour",
    "bonsoir",
    "salut",
    "coucou",
    "merci",
    "svp",
    "stp",
    "pour",
    "un",
    "une",
    "le",
    "les",
    "des",
    "du",
    "de",
    "d",
    "au",
    "aux",
    "avec",
    "dans",
    "est",
    "c",
    "qu",
    "que",
    "quel",
    "quelle",
    "quels",
    "quelles",
    "combien",
    "comment",
    "quand",
    "pourquoi",
    "ou",
    "vous",
    "tu",
    "moi",
    "mon",
    "ma",
    "mes",
    "votre",
    "vos",
    "et",
    "pas",
    "ne",
    "n",
    "m",
    "appelle",
    "rappelle",
    "rappeler",
    "annuler",
    "annule",
    "reserver",
    "prendre",
    "heure",
    "heures",
    "soir",
    "matin",
    "midi",
    "minuit",
    "apres",
    "lundi",
    "mardi",
    "mercredi",
    "jeudi",
    "vendredi",
    "samedi",
    "dimanche",
    "janvier",
    "fevrier",
    "avril",
    "juin",
    "juillet",
    "aout",
    "septembre",
    "octobre",
    "novembre",
    "decembre",
    "prochain",
    "prochaine",
    "humain",
    "personne",
    "conseiller",
    "parler",
    "oui",
    "non",
    "revoir",
    "bientot",
    "journee",
    "soiree",
    "semaine",
    "jour",
    "jours",
    "il",
    "elle",
    "nous",
    "faire",
    "peux",
    "pouvez",
    "ce",
    "cette",
    "ici",
    "chez",
    "sur",
    "oublie",
    "besoin",
    "avez",
    "etes",
    "coupe",
    "h",
    "aprem",
    "voir",
    "demande",
    "ai",
    "mais",
];

const EN_MARKERS: &[&str] = &[
    "i",
    "the",
    "to",
    "for",
    "my",
    "me",
    "you",
    "your",
    "is",
    "are",
    "can",
    "could",
    "would",
    "like",
    "want",
    "need",
    "book",
    "booking",
    "appointment",
    "tomorrow",
    "today",
    "tonight",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "please",
    "at",
    "on",
    "in",
    "with",
    "and",
    "what",
    "when",
    "where",
    "how",
    "why",
    "who",
    "do",
    "does",
    "it",
    "of",
    "have",
    "this",
    "that",
    "next",
    "morning",
    "afternoon",
    "evening",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "january",
    "february",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "cancel",
    "remind",
    "talk",
    "speak",
    "human",
    "person",
    "someone",
    "bye",
    "goodbye",
    "see",
    "be",
    "will",
    "get",
    "an",
    "yes",
    "no",
    "hours",
    "minutes",
    "name",
    "call",
    "am",
    "pm",
    "m",
    "s",
    "d",
    "t",
    "there",
    "please",
    "just",
];

/// French or English, by counting marker words; accented letters count for French. A tie is
/// English.
pub(crate) fn detect_language(text: &str, words: &[Word<'_>]) -> Language {
    let mut fr = 0usize;
    let mut en = 0usize;
    for w in words {
        if FR_MARKERS.contains(&w.text) {
            fr += 1;
        }
        if EN_MARKERS.contains(&w.text) {
            en += 1;
        }
    }
    if text
        .chars()
        .any(|c| "éèêàçùâîôûëïœÉÈÊÀÇ\u{300}\u{301}".contains(c))
    {
        fr += 2;
    }
    if fr > en { Language::Fr } else { Language::En }
}

const REMIND: &[&str] = &[
    "remind*",
    "oublie pas de me rappel*|rapel*",
    "oublie pas me rappel*|rapel*",
    "oubliez pas de me rappel*|rapel*",
    "fais|fait|faites moi penser",
    "don t let me forget",
    "dont let me forget",
    "un|une rappel",
];

/// "rappelle-moi": a reminder when followed by "de"/"que", else a call-back request.
const RAPPEL_ME: &[&str] = &[
    "rappelle|rappelez|rappel|rapelle|rapelez|rappelles moi|nous",
    "me|nous rappeler|rappelle|rappelez|rapeler|rappeller|rapelle",
];

const CALL_BACK: &[&str] = &[
    "call me back",
    "call me",
    "callback",
    "call back",
    "call us",
];

const HANDOFF: &[&str] = &[
    "human|humans|humain|humaine|humains",
    "real|actual|live person|human|agent",
    "vraie|vrai personne|humain",
    "personne reelle|physique",
    "etre humain",
    "quelqu un",
    "quelquun",
    "someone|somebody|anyone",
    "conseiller|conseillere|conseillers|conseilleres",
    "agent|agents",
    "manager|managers",
    "operator|operateur|operatrice",
    "representative",
    "staff",
    "gerant|gerante",
    "receptionist|receptionniste",
    "secretary|secretaire",
    "the boss",
    "le patron",
];

/// "talk to X" / "parler à X", unless X is the bot itself.
const TALK_TO: &[&str] = &[
    "talk|speak|chat to|with",
    "parler a|avec|au|aux",
    "joindre|contacter quelqu|un|une|le|la|votre",
];

const CANCEL: &[&str] = &[
    "cancel*",
    "annul*",
    "call off",
    "call it off",
    "cant make it",
    "can t make it",
    "cannot make it",
    "won t make it",
    "wont make it",
    "won t be able to come|make",
    "wont be able to come|make",
    "ne pourrai|pourrais|peux|pourra pas venir",
    "pourrai|pourrais|peux pas venir",
    "supprim* mon|ma|le|la|notre rdv|rendez|reservation",
    "delete|drop my appointment|booking|reservation",
];

const RESCHEDULE: &[&str] = &[
    "reschedul*",
    "re schedule",
    "postpon*",
    "push back",
    "push it back",
    "decal*",
    "deplac*",
    "reporter|reporte|reportez|reporterai|reporterais|reportons",
    "another|different time|day|date|slot",
    "autre jour|heure|date|creneau|moment|horaire",
    "rebook*",
];

const RESCHEDULE_WEAK: &[&str] = &[
    "change*", "modif*", "move", "bouger", "avancer", "switch", "instead",
];

const NEW_ONE: &[&str] = &["new|nouveau|nouvel|nouvelle|another|autre"];

const BOOK_NOUNS: &[&str] = &[
    "appointment*",
    "rdv",
    "rendez vous",
    "reservation*",
    "booking*",
    "slot|slots",
    "creneau*",
    "disponibilit*",
    "availabilit*",
    "available",
    "dispo|dispos|disponible|disponibles",
];

const BOOK_VERBS: &[&str] = &[
    "book|booked|bookin",
    "reserv*",
    "schedul*",
    "prendre|prends|pris rdv|rendez|un|une",
    "fixer|fixe un|une|rdv",
];

const POSSESSIVE_BOOKING: &[&str] = &[
    "my|our|mon|ma|notre|mes appointment*|rdv|rendez|reservation*|booking*",
    "the appointment*|booking*",
];

const WANT: &[&str] = &[
    "want",
    "looking for",
    "cherche|cherchais|recherche",
    "like",
    "need",
    "voudrais|voudrait|voulais|voulait|voudrions",
    "veux|veut",
    "aimerais|aimerait|aimerions",
    "souhait*",
    "besoin",
    "can|could|may i|we",
    "puis je",
    "je peux|pourrais",
    "possible",
    "do you have",
    "have you got",
    "avez vous",
    "vous avez",
    "any",
];

const COME: &[&str] = &[
    "come",
    "coming",
    "venir",
    "viens",
    "passer",
    "passe",
    "drop by|in",
    "stop by",
    "pop in",
];

const INTERROGATIVES: &[&str] = &[
    "what|whats|when|where|who|whom|whose|why|how|which",
    "do|does|did|is|are|can|could|would|will|should|may|have|has|am",
    "quel|quelle|quels|quelles|quoi|quand|ou|comment|combien|pourquoi|qui",
    "avez|etes|faites|pouvez|peut|puis|acceptez|prenez|vendez|proposez|fermez|ouvrez",
    "y a t il",
    "est ce",
];

const QUESTION_PHRASES: &[&str] = &[
    "est ce que|qu",
    "want|like to know",
    "tell me",
    "voudrais|veux|aimerais savoir",
    "dites|dis moi",
    "info|infos|information|informations|renseignement*",
    "wondering",
    "me demandais",
    "pour savoir",
    "savoir si",
    "do you",
    "si vous faites|avez|etes|proposez|acceptez|prenez",
    "vous faites|proposez|acceptez|prenez|vendez",
];

const FAQ_TOPICS: &[&str] = &[
    "price|prices|pricing",
    "prix",
    "tarif*",
    "cost|costs",
    "how much",
    "hours",
    "horaire*",
    "open|opening|opened|opens",
    "ouvert*",
    "ferme|fermes|fermez|fermeture",
    "closed|closing|closes",
    "address*",
    "adresse",
    "parking",
    "located|location",
    "acces",
    "payment|pay|paiement|payer",
    "card|carte|cash|especes",
    "insurance|mutuelle",
    "menu",
    "delivery|livraison",
    "wifi",
];

const GREETING: &[&str] = &[
    "hi|hii|hello|helo|hey|heya|hiya|howdy|yo|hola|greetings",
    "good morning|afternoon|evening|day",
    "bonjour|bonsoir|salut|coucou|allo|alo|wesh",
    "bon matin",
];

const THANKS: &[&str] = &[
    "thanks|merci|cheers|gracias|remerci*|thank",
    "thank you|u",
    "thanks|thank you a lot",
    "thanks|thank you so|very much",
    "merci beaucoup|bien|infiniment|encore",
    "much appreciated",
    "appreciate it",
];

const GOODBYE: &[&str] = &[
    "bye",
    "goodbye",
    "good bye",
    "see you|ya",
    "au revoir",
    "aurevoir",
    "a plus|bientot|demain|tantot",
    "a plus tard",
    "a tout a l heure",
    "bonne journee|soiree|nuit|fin|continuation|weekend|semaine",
    "good night",
    "have a good|nice|great day|evening|night|weekend|one",
    "ciao|tchao|tchuss",
    "take care",
    "talk soon",
];

/// Words that carry no request of their own.
const FILLER: &[&str] = &[
    "ok|okay|oki|okey|k|kk|oui|yes|yeah|yep|yup|no|non|nope|please|svp|stp|hmm|ah|oh|euh|lol",
    "so|alors|bien|well|super|great|cool|parfait|perfect|top|np|sure|again|encore|tres|very",
    "ca marche",
    "d accord",
    "daccord|dac",
];

/// What the text asks for. `has_when` and `has_service` are the slots already found.
pub(crate) fn classify(
    tokens: &[Token],
    words: &[Word<'_>],
    has_when: bool,
    has_service: bool,
) -> Intent {
    if words.is_empty() {
        return Intent::Unknown;
    }
    let cancel = find_any(words, CANCEL);
    if let Some(remind) = reminder(words)
        && cancel.as_ref().is_none_or(|c| c.start > remind.start)
    {
        return Intent::Remind;
    }
    if handoff(words) {
        return Intent::Handoff;
    }
    let book_noun = has_any(words, BOOK_NOUNS);
    if has_any(words, RESCHEDULE)
        || (has_any(words, RESCHEDULE_WEAK) && (book_noun || has_when))
        || (cancel.is_some() && has_any(words, NEW_ONE))
    {
        return Intent::Reschedule;
    }
    if cancel.is_some() {
        return Intent::Cancel;
    }
    let book_verb = has_any(words, BOOK_VERBS);
    let want = has_any(words, WANT);
    if has_any(words, POSSESSIVE_BOOKING) && !book_verb {
        // "when is my appointment?": about a booking that exists.
        return Intent::Question;
    }
    if book_verb
        || book_noun
        || (want && (has_when || has_service))
        || (has_when && has_any(words, COME))
    {
        return Intent::Book;
    }
    if is_question(tokens, words) {
        return Intent::Question;
    }
    if has_any(words, GOODBYE) || see_you_later(tokens) {
        return Intent::Goodbye;
    }
    if has_any(words, THANKS) {
        return Intent::Thanks;
    }
    if has_any(words, GREETING) {
        return Intent::Greeting;
    }
    Intent::Unknown
}

/// The words that ask for a reminder ("remind", "rappelle-moi"), if any.
pub(crate) fn reminder(words: &[Word<'_>]) -> Option<Range<usize>> {
    if let Some(r) = find_any(words, REMIND) {
        // "remind me when my appointment is" asks a question.
        let next = phrase_at(words, r.end, "me|us").unwrap_or(r.end);
        let asks = phrase_at(
            words,
            next,
            "when|what|where|which|how|quand|quel|quelle|ou|combien",
        )
        .is_some();
        if !asks {
            return Some(r);
        }
    }
    let r = find_any(words, RAPPEL_ME)?;
    let tail = words.get(r.end..).unwrap_or_default();
    has_any(tail, &["de|d|que|qu"]).then_some(r)
}

fn handoff(words: &[Word<'_>]) -> bool {
    if has_any(words, HANDOFF) || has_any(words, CALL_BACK) {
        return true;
    }
    // A "rappelez-moi" that is not a reminder is a call-back request.
    if has_any(words, RAPPEL_ME) {
        return true;
    }
    (0..words.len()).any(|at| {
        TALK_TO.iter().any(|p| {
            phrase_at(words, at, p).is_some_and(|end| {
                words
                    .get(end)
                    .is_none_or(|w| !matches!(w.text, "you" | "vous" | "toi" | "it" | "this"))
            })
        })
    })
}

/// "a+" / "@+": French SMS for "see you".
fn see_you_later(tokens: &[Token]) -> bool {
    tokens.windows(2).any(|pair| match pair {
        [a, plus] => (a.norm == "a" || a.is_punct("@")) && plus.glued && plus.is_punct("+"),
        _ => false,
    })
}

fn is_question(tokens: &[Token], words: &[Word<'_>]) -> bool {
    if has_any(words, QUESTION_PHRASES) || has_any(words, FAQ_TOPICS) {
        return true;
    }
    let mut social = vec![false; words.len()];
    for list in [GREETING, THANKS, GOODBYE, FILLER] {
        mark_all(words, list, &mut social);
    }
    let Some(first) = social.iter().position(|s| !s) else {
        return false;
    };
    if words.get(first..).is_some_and(|rest| {
        INTERROGATIVES
            .iter()
            .any(|p| phrase_at(rest, 0, p).is_some())
    }) {
        return true;
    }
    tokens.iter().any(|t| t.is_punct("?"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offline::lexicon::{tokenize, words};

    fn lang(text: &str) -> Language {
        let toks = tokenize(text);
        detect_language(text, &words(&toks))
    }

    fn intent(text: &str, has_when: bool, has_service: bool) -> Intent {
        let toks = tokenize(text);
        classify(&toks, &words(&toks), has_when, has_service)
    }

    #[test]
    fn detects_the_language() {
        let cases = [
            ("bonjour je voudrais un rdv", Language::Fr),
            ("rdv demain 9h stp", Language::Fr),
            ("Réserver", Language::Fr),
            ("hi can i book for tomorrow", Language::En),
            ("ok", Language::En),
            ("", Language::En),
            ("merci", Language::Fr),
            ("thx", Language::En),
        ];
        for (text, want) in cases {
            assert_eq!(lang(text), want, "{text}");
        }
    }

    #[test]
    fn classifies_without_slots() {
        use Intent::*;
        let cases = [
            ("can you remind me to call Marc", Remind),
            ("rappelle-moi d'appeler Marc", Remind),
            ("n'oublie pas de me rappeler", Remind),
            ("rappelez-moi svp", Handoff),
            ("call me back", Handoff),
            ("I want to talk to someone", Handoff),
            ("je veux parler à un humain", Handoff),
            ("can I speak to you", Question),
            ("cancel my reminder", Cancel),
            ("I can't make it", Cancel),
            ("je ne pourrai pas venir", Cancel),
            ("cancel and book a new one", Reschedule),
            ("reschedule please", Reschedule),
            ("change my appointment", Reschedule),
            ("change", Unknown),
            ("when is my appointment?", Question),
            ("remind me when my appointment is", Question),
            ("book", Book),
            ("un rdv svp", Book),
            ("what are your opening hours", Question),
            ("horaires", Question),
            ("hello?", Greeting),
            ("merci, au revoir", Goodbye),
            ("a+", Goodbye),
            ("thank you very much", Thanks),
            ("coucou", Greeting),
            ("blah blah", Unknown),
            ("blah blah?", Question),
            ("???", Unknown),
        ];
        for (text, want) in cases {
            assert_eq!(intent(text, false, false), want, "{text}");
        }
    }

    #[test]
    fn slots_tip_the_balance() {
        assert_eq!(intent("I'd like a haircut", false, true), Intent::Book);
        assert_eq!(intent("I'd like a haircut", false, false), Intent::Unknown);
        assert_eq!(intent("can I come", true, false), Intent::Book);
        assert_eq!(intent("move it", true, false), Intent::Reschedule);
    }
}
