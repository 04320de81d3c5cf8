//! Tokens, spelling normalisation and word lists shared by the offline parsers.
//!
//! Text is cut into words, numbers and single punctuation characters. Each token keeps its
//! byte span in the input (so slots can be copied out as the user typed them) and a
//! normalised form: lower case, accents folded (`é` → `e`, `œ` → `oe`), letters repeated
//! three times or more squeezed (`merciiii` → `merci`), and common SMS spellings made
//! canonical (`2moro` → `tomorrow`, `rdv` stays `rdv`). Runs that mix digits and letters are
//! split into glued tokens (`21h30` → `21` `h` `30`), so `21h30` and `21 h 30` read alike.

use std::ops::Range;

/// Input beyond this many characters is ignored.
pub const MAX_INPUT_CHARS: usize = 2_000;

/// The input cut to [`MAX_INPUT_CHARS`] characters.
pub(crate) fn truncate(text: &str) -> &str {
    match text.char_indices().nth(MAX_INPUT_CHARS) {
        Some((i, _)) => text.get(..i).unwrap_or(text),
        None => text,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Letters (possibly with a few non-ASCII digits).
    Word,
    /// ASCII digits only.
    Num,
    /// One character that is neither alphanumeric nor white space.
    Punct,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    /// Lower case, accents folded, SMS spellings canonical.
    pub(crate) norm: String,
    /// Byte range in the (truncated) input.
    pub(crate) span: Range<usize>,
    pub(crate) kind: Kind,
    /// No white space between this token and the previous one.
    pub(crate) glued: bool,
}

impl Token {
    /// The token as typed.
    pub(crate) fn raw<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.span.clone()).unwrap_or("")
    }

    pub(crate) fn is_word(&self) -> bool {
        matches!(self.kind, Kind::Word | Kind::Num)
    }

    /// Whether the token is this punctuation character.
    pub(crate) fn is_punct(&self, c: &str) -> bool {
        self.kind == Kind::Punct && self.norm == c
    }

    /// The value of a number of at most four digits.
    pub(crate) fn num(&self) -> Option<u32> {
        if self.kind == Kind::Num && self.norm.len() <= 4 {
            self.norm.parse().ok()
        } else {
            None
        }
    }

    /// Whether the token, as typed, starts with an upper-case letter.
    pub(crate) fn capitalised(&self, text: &str) -> bool {
        self.raw(text)
            .chars()
            .next()
            .is_some_and(char::is_uppercase)
    }
}

/// Cuts the text into tokens.
pub(crate) fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut run_start: Option<usize> = None;
    let mut last_end = usize::MAX;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() || (run_start.is_some() && is_combining_mark(c)) {
            if run_start.is_none() {
                run_start = Some(i);
            }
            continue;
        }
        if let Some(start) = run_start.take() {
            push_run(text, start..i, last_end, &mut tokens);
            last_end = i;
        }
        if !c.is_whitespace() {
            let end = i + c.len_utf8();
            tokens.push(Token {
                norm: punct_norm(c).to_owned(),
                span: i..end,
                kind: Kind::Punct,
                glued: i == last_end,
            });
            last_end = end;
        }
    }
    if let Some(start) = run_start {
        push_run(text, start..text.len(), last_end, &mut tokens);
    }
    tokens
}

fn is_combining_mark(c: char) -> bool {
    ('\u{0300}'..='\u{036f}').contains(&c)
}

fn punct_norm(c: char) -> &'static str {
    match c {
        '\'' | '’' | '‘' | '`' | 'ʼ' | '´' => "'",
        '-' | '‐' | '‑' | '–' | '—' => "-",
        '?' | '¿' | '？' => "?",
        '/' => "/",
        ':' => ":",
        '.' => ".",
        ',' => ",",
        '!' => "!",
        '@' => "@",
        '+' => "+",
        '€' | '$' | '£' | '¥' | '%' => "¤",
        _ => "",
    }
}

/// Pushes one alphanumeric run: whole if it is a known SMS spelling, else split where digits
/// meet letters.
fn push_run(text: &str, span: Range<usize>, last_end: usize, tokens: &mut Vec<Token>) {
    let Some(raw) = text.get(span.clone()) else {
        return;
    };
    let folded = fold(raw);
    if let Some(canon) = canonical(&folded) {
        tokens.push(Token {
            norm: canon.to_owned(),
            span: span.clone(),
            kind: Kind::Word,
            glued: span.start == last_end,
        });
        return;
    }
    let mut piece_start = 0;
    let mut piece_digits = None;
    let mut first = true;
    let mut flush = |from: usize, to: usize, digits: bool, first: bool| {
        let Some(piece) = raw.get(from..to) else {
            return;
        };
        let norm = if digits {
            piece.to_owned()
        } else {
            let f = fold(piece);
            canonical(&f).map_or(f, str::to_owned)
        };
        if norm.is_empty() {
            return;
        }
        tokens.push(Token {
            norm,
            span: span.start + from..span.start + to,
            kind: if digits { Kind::Num } else { Kind::Word },
            glued: !first || span.start == last_end,
        });
    };
    for (i, c) in raw.char_indices() {
        let digit = c.is_ascii_digit();
        match piece_digits {
            None => piece_digits = Some(digit),
            Some(d) if d != digit && !is_combining_mark(c) => {
                flush(piece_start, i, d, first);
                first = false;
                piece_start = i;
                piece_digits = Some(digit);
            }
            Some(_) => {}
        }
    }
    if let Some(d) = piece_digits {
        flush(piece_start, raw.len(), d, first);
    }
}

/// Lower case, accents folded, letters repeated three times or more squeezed to one.
pub(crate) fn fold(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars().flat_map(char::to_lowercase) {
        match c {
            'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' => out.push('a'),
            'ç' | 'ć' | 'č' => out.push('c'),
            'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ė' | 'ę' => out.push('e'),
            'ì' | 'í' | 'î' | 'ï' | 'ī' => out.push('i'),
            'ñ' => out.push('n'),
            'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => out.push('o'),
            'ù' | 'ú' | 'û' | 'ü' | 'ū' => out.push('u'),
            'ý' | 'ÿ' => out.push('y'),
            'œ' => out.push_str("oe"),
            'æ' => out.push_str("ae"),
            'ß' => out.push_str("ss"),
            c if is_combining_mark(c) => {}
            c => out.push(c),
        }
    }
    squeeze(&out)
}

fn squeeze(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        let mut j = i + 1;
        while chars.get(j) == Some(&c) {
            j += 1;
        }
        let run = j - i;
        if c.is_ascii_alphabetic() && run >= 3 {
            out.push(c);
        } else {
            for _ in 0..run {
                out.push(c);
            }
        }
        i = j;
    }
    out
}

/// SMS and informal spellings, mapped to one canonical word.
fn canonical(w: &str) -> Option<&'static str> {
    Some(match w {
        "tmrw" | "tmr" | "tmrow" | "tmro" | "tmw" | "2moro" | "2morro" | "2morrow" | "2mrw"
        | "2mro" | "2moz" | "tomoro" | "tomorow" | "tommorow" | "tommorrow" | "tomorro"
        | "tomoz" | "tomorrow" => "tomorrow",
        "2day" | "tday" | "tdy" | "today" => "today",
        "tonite" | "2nite" | "2night" | "tonigth" | "tonight" => "tonight",
        "dmain" | "2main" | "dem1" | "dmn" | "demin" | "demain" => "demain",
        "auj" | "ajd" | "ajrd" | "aujd" | "aujourdhui" | "ojd" => "aujourdhui",
        "rdv" | "rdvs" | "rendezvous" | "rv" => "rdv",
        "appt" | "appts" | "appointement" | "apointment" | "appointment" => "appointment",
        "pls" | "plz" | "plse" | "pleaz" | "please" => "please",
        "thx" | "thnx" | "thanx" | "thks" | "tks" | "tx" | "ty" | "tyvm" | "thankyou"
        | "thanks" => "thanks",
        "mrc" | "mci" | "merci" => "merci",
        "bjr" | "bjour" | "bonjoor" | "bonjour" => "bonjour",
        "slt" | "salut" => "salut",
        "bsr" | "bonsoir" => "bonsoir",
        "cya" | "bye" | "byebye" => "bye",
        "aprem" | "aprm" => "aprem",
        "ds" | "dans" => "dans",
        "pr" | "pour" => "pour",
        "avc" | "avec" => "avec",
        "qd" | "qnd" | "quand" => "quand",
        "u" | "you" => "you",
        "ur" | "your" => "your",
        "wanna" | "want" => "want",
        "coucou" | "cc" => "coucou",
        _ => return None,
    })
}

/// A word of the text (numbers included, punctuation left out) and the token it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word<'t> {
    pub(crate) text: &'t str,
    pub(crate) tok: usize,
}

pub(crate) fn words(tokens: &[Token]) -> Vec<Word<'_>> {
    tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_word())
        .map(|(tok, t)| Word {
            text: t.norm.as_str(),
            tok,
        })
        .collect()
}

fn word_matches(word: &str, pattern: &str) -> bool {
    pattern.split('|').any(|alt| match alt.strip_suffix('*') {
        Some(prefix) => word.starts_with(prefix),
        None => alt == word,
    })
}

/// Whether `pattern` (words separated by spaces; `a|b` matches either word; an alternative
/// ending in `*` matches any word with that prefix) occurs at word `at`. Returns the end
/// (exclusive).
pub(crate) fn phrase_at(words: &[Word<'_>], at: usize, pattern: &str) -> Option<usize> {
    let mut i = at;
    for p in pattern.split(' ') {
        let w = words.get(i)?;
        if !word_matches(w.text, p) {
            return None;
        }
        i += 1;
    }
    Some(i)
}

/// The earliest occurrence of any of the patterns (the longest one at that place), as a
/// range of word indices.
pub(crate) fn find_any(words: &[Word<'_>], patterns: &[&str]) -> Option<Range<usize>> {
    (0..words.len()).find_map(|at| {
        patterns
            .iter()
            .filter_map(|p| phrase_at(words, at, p))
            .max()
            .map(|end| at..end)
    })
}

pub(crate) fn has_any(words: &[Word<'_>], patterns: &[&str]) -> bool {
    find_any(words, patterns).is_some()
}

/// Every word index covered by an occurrence of any of the patterns.
pub(crate) fn mark_all(words: &[Word<'_>], patterns: &[&str], mask: &mut [bool]) {
    for at in 0..words.len() {
        for p in patterns {
            if let Some(end) = phrase_at(words, at, p) {
                for m in mask.iter_mut().take(end).skip(at) {
                    *m = true;
                }
            }
        }
    }
}

/// Month number of a month name or abbreviation (English or French).
pub(crate) fn month(w: &str) -> Option<i8> {
    Some(match w {
        "january" | "jan" | "janvier" | "janv" => 1,
        "february" | "feb" | "febr" | "fevrier" | "fev" | "fevr" => 2,
        "march" | "mar" | "mars" => 3,
        "april" | "apr" | "avril" | "avr" => 4,
        "may" | "mai" => 5,
        "june" | "jun" | "juin" => 6,
        "july" | "jul" | "juillet" | "juil" => 7,
        "august" | "aug" | "aout" => 8,
        "september" | "sep" | "sept" | "septembre" => 9,
        "october" | "oct" | "octobre" => 10,
        "november" | "nov" | "novembre" => 11,
        "december" | "dec" | "decembre" => 12,
        _ => return None,
    })
}

/// Weekday of a weekday name. Ambiguous abbreviations (`mon`, `sat`, `sun`, `mar`, ...)
/// are left out.
pub(crate) fn weekday(w: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday as W;
    Some(match w {
        "monday" | "lundi" => W::Monday,
        "tuesday" | "tues" | "tue" | "mardi" => W::Tuesday,
        "wednesday" | "wed" | "weds" | "wednes" | "mercredi" => W::Wednesday,
        "thursday" | "thu" | "thur" | "thurs" | "jeudi" => W::Thursday,
        "friday" | "fri" | "vendredi" => W::Friday,
        "saturday" | "samedi" => W::Saturday,
        "sunday" | "dimanche" => W::Sunday,
        _ => return None,
    })
}

/// Small numbers written as words, for "in two hours" / "dans deux heures".
pub(crate) fn number_word(w: &str) -> Option<u32> {
    Some(match w {
        "a" | "an" | "one" | "un" | "une" => 1,
        "two" | "deux" => 2,
        "three" | "trois" => 3,
        "four" | "quatre" => 4,
        "five" | "cinq" => 5,
        "six" => 6,
        "seven" | "sept" => 7,
        "eight" | "huit" => 8,
        "nine" | "neuf" => 9,
        "ten" | "dix" => 10,
        "eleven" | "onze" => 11,
        "twelve" | "douze" => 12,
        "fifteen" | "quinze" => 15,
        "twenty" | "vingt" => 20,
        "thirty" | "trente" => 30,
        "forty" | "quarante" => 40,
        "fifty" | "cinquante" => 50,
        _ => return None,
    })
}

/// Words of politeness that carry no content.
pub(crate) const POLITE: &[&str] = &["please", "svp", "stp", "merci", "thanks", "plait"];

#[cfg(test)]
mod tests {
    use super::*;

    fn norms(text: &str) -> Vec<String> {
        tokenize(text).into_iter().map(|t| t.norm).collect()
    }

    #[test]
    fn tokens_are_folded_split_and_canonical() {
        let cases: &[(&str, &[&str])] = &[
            (
                "Rendez-vous à 21h30",
                &["rendez", "-", "vous", "a", "21", "h", "30"],
            ),
            ("2moro 9am", &["tomorrow", "9", "am"]),
            ("MERCIIII!!", &["merci", "!", "!"]),
            ("l'après-midi", &["l", "'", "apres", "-", "midi"]),
            ("23/11/2026", &["23", "/", "11", "/", "2026"]),
            ("Cœur ß", &["coeur", "ss"]),
            ("e\u{301}te\u{301}", &["ete"]),
            ("rdv 1er déc", &["rdv", "1", "er", "dec"]),
            ("9.30pm", &["9", ".", "30", "pm"]),
            ("", &[]),
            ("🙂 👍", &["", ""]),
        ];
        for (text, want) in cases {
            assert_eq!(norms(text), *want, "{text}");
        }
    }

    #[test]
    fn glue_and_spans_follow_the_input() {
        let text = "à 9h30, OK";
        let toks = tokenize(text);
        let glued: Vec<bool> = toks.iter().map(|t| t.glued).collect();
        assert_eq!(glued, [false, false, true, true, true, false]);
        let raws: Vec<&str> = toks.iter().map(|t| t.raw(text)).collect();
        assert_eq!(raws, ["à", "9", "h", "30", ",", "OK"]);
        assert!(toks.get(5).is_some_and(|t| t.capitalised(text)));
        assert_eq!(toks.get(1).and_then(Token::num), Some(9));
    }

    #[test]
    fn phrases_match_alternatives_and_prefixes() {
        let toks = tokenize("je voudrais annuler mon rendez-vous");
        let w = words(&toks);
        assert_eq!(find_any(&w, &["annul*"]), Some(2..3));
        assert_eq!(find_any(&w, &["rendez vous", "mon"]), Some(3..4));
        assert_eq!(find_any(&w, &["mon rendez", "mon"]), Some(3..5));
        assert!(has_any(&w, &["je voudrais|veux"]));
        assert!(!has_any(&w, &["book*"]));
    }

    #[test]
    fn truncation_keeps_char_boundaries() {
        let long = "é".repeat(MAX_INPUT_CHARS + 10);
        assert_eq!(truncate(&long).chars().count(), MAX_INPUT_CHARS);
        assert_eq!(truncate("short"), "short");
    }
}
