//! Dates and times in English and French, resolved against "now" in the user's time zone.
//!
//! The parser walks the tokens once and collects facts: a day (an explicit date beats a
//! weekday, which beats "today"/"tomorrow"), a clock time, a part of the day, or an exact
//! offset ("in 2 hours"). The first fact of each kind wins. Facts are then resolved with
//! jiff's civil types and `to_zoned`, so a time on a day with a DST change is the wall-clock
//! time the user meant (a time inside a spring-forward gap moves forward, as jiff's
//! "compatible" rule does). Tokens that belong to a date or time expression, with the small
//! words that introduce them ("at", "on", "le", "à", "du"), are marked as consumed so the
//! slot extractors can leave them out.

use jiff::civil::{Date, Time, Weekday};
use jiff::{Span, Zoned};

use super::lexicon::{self, Token};
use super::{Language, PartOfDay};

/// A resolved date or date-time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct When {
    pub(crate) at: Zoned,
    pub(crate) time_given: bool,
    pub(crate) part: Option<PartOfDay>,
}

pub(crate) struct Extracted {
    pub(crate) when: Option<When>,
    /// One flag per token: part of a date or time expression.
    pub(crate) consumed: Vec<bool>,
}

pub(crate) fn extract(text: &str, tokens: &[Token], language: Language, now: &Zoned) -> Extracted {
    let mut parser = Parser {
        text,
        toks: tokens,
        language,
        now,
        today: now.date(),
        consumed: vec![false; tokens.len()],
        facts: Facts::default(),
    };
    parser.run();
    let when = parser.resolve();
    Extracted {
        when,
        consumed: parser.consumed,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meridiem {
    Am,
    Pm,
}

#[derive(Clone, Copy, Debug)]
struct Clock {
    hour: u8,
    minute: u8,
    meridiem: Option<Meridiem>,
    /// Written with a leading zero ("07:30"): taken as a 24-hour time.
    padded: bool,
    /// Noon or midnight: never shifted.
    fixed: bool,
}

#[derive(Default)]
struct Facts {
    /// The day, with its rank: 3 explicit date, 2 weekday, 1 relative word.
    day: Option<(u8, Date)>,
    /// A date was written but does not exist (31/02): nothing is resolved.
    bad_day: bool,
    time: Option<Clock>,
    part: Option<PartOfDay>,
    /// "in 2 hours": an exact instant.
    exact: Option<Zoned>,
    /// The token after the last day expression ("tomorrow 9").
    day_end: Option<usize>,
    /// The token after the last weekday ("mardi 24").
    weekday_end: Option<usize>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Glue {
    /// Introducing words are not taken.
    None,
    /// "at", "on", "le", "à", "the", ...
    Normal,
    /// Also "du", "de", "d'" ("du matin", "de l'après-midi").
    Part,
}

struct Match {
    end: usize,
    glue: Glue,
    consume: bool,
}

impl Match {
    fn take(end: usize) -> Option<Self> {
        Some(Self {
            end,
            glue: Glue::Normal,
            consume: true,
        })
    }
}

const GLUE: &[&str] = &[
    "at", "on", "for", "by", "around", "in", "the", "le", "la", "l", "a", "pour", "vers", "avant",
    "des", "dans", "en",
];
const PART_GLUE: &[&str] = &["du", "de", "d"];

const NOT_A_TIME_AFTER: &[&str] = &[
    "people",
    "person",
    "persons",
    "ppl",
    "pers",
    "personnes",
    "personne",
    "adults",
    "adultes",
    "enfants",
    "kids",
    "children",
    "minute",
    "minutes",
    "min",
    "mins",
    "mn",
    "day",
    "days",
    "jour",
    "jours",
    "week",
    "weeks",
    "semaine",
    "semaines",
    "euros",
    "euro",
    "eur",
    "dollars",
    "hours",
    "hour",
    "times",
    "fois",
    "x",
];

struct Parser<'a> {
    text: &'a str,
    toks: &'a [Token],
    language: Language,
    now: &'a Zoned,
    today: Date,
    consumed: Vec<bool>,
    facts: Facts,
}

impl Parser<'_> {
    fn tok(&self, i: usize) -> Option<&Token> {
        self.toks.get(i)
    }

    /// The normalised word at `i`, or "" for punctuation or past the end.
    fn w(&self, i: usize) -> &str {
        self.toks
            .get(i)
            .filter(|t| t.is_word())
            .map_or("", |t| t.norm.as_str())
    }

    fn num(&self, i: usize) -> Option<u32> {
        self.tok(i)?.num()
    }

    fn glued(&self, i: usize) -> bool {
        self.tok(i).is_some_and(|t| t.glued)
    }

    fn glued_punct(&self, i: usize, c: &str) -> bool {
        self.tok(i).is_some_and(|t| t.glued && t.is_punct(c))
    }

    /// Pattern words from `i` (`a|b` for alternatives); a hyphen or apostrophe glued between
    /// two words is skipped ("après-midi", "aujourd'hui"). Returns the end (exclusive).
    fn phrase(&self, i: usize, pattern: &str) -> Option<usize> {
        let mut j = i;
        for (k, p) in pattern.split(' ').enumerate() {
            if k > 0 {
                while self
                    .tok(j)
                    .is_some_and(|t| t.glued && (t.is_punct("-") || t.is_punct("'")))
                {
                    j += 1;
                }
            }
            let t = self.tok(j)?;
            if !t.is_word() || !p.split('|').any(|alt| alt == t.norm) {
                return None;
            }
            j += 1;
        }
        Some(j)
    }

    fn run(&mut self) {
        let mut i = 0;
        while i < self.toks.len() {
            match self.step(i) {
                Some(m) => {
                    if m.consume {
                        let start = self.glue_back(i, m.glue);
                        for c in self.consumed.iter_mut().take(m.end).skip(start) {
                            *c = true;
                        }
                    }
                    i = m.end.max(i + 1);
                }
                None => i += 1,
            }
        }
    }

    fn step(&mut self, i: usize) -> Option<Match> {
        if !self.tok(i)?.is_word() {
            return None;
        }
        if let Some(end) = self.greeting(i) {
            return Some(Match {
                end,
                glue: Glue::None,
                consume: false,
            });
        }
        self.offset(i)
            .or_else(|| self.iso_date(i))
            .or_else(|| self.numeric_date(i))
            .or_else(|| self.named_day(i))
            .or_else(|| self.month_date(i))
            .or_else(|| self.weekday(i))
            .or_else(|| self.day_of_month(i))
            .or_else(|| self.part_of_day(i))
            .or_else(|| self.clock(i))
    }

    /// Extends a match backwards over the small words that introduce it.
    fn glue_back(&self, mut start: usize, glue: Glue) -> usize {
        if glue == Glue::None {
            return start;
        }
        for _ in 0..2 {
            let Some(prev) = start.checked_sub(1) else {
                break;
            };
            if self.consumed.get(prev).copied().unwrap_or(true) {
                break;
            }
            let Some(t) = self.tok(prev) else {
                break;
            };
            if t.is_punct("'") && self.glued(start) {
                // Elided article: "l'après-midi", "d'ici".
                let Some(before) = prev.checked_sub(1) else {
                    break;
                };
                let word = self.w(before);
                if word == "l" || (glue == Glue::Part && word == "d") {
                    start = before;
                    continue;
                }
                break;
            }
            if t.is_punct("@")
                || (t.is_word()
                    && (GLUE.contains(&t.norm.as_str())
                        || (glue == Glue::Part && PART_GLUE.contains(&t.norm.as_str()))))
            {
                start = prev;
                continue;
            }
            break;
        }
        start
    }

    /// "good morning", "bonne soirée": greetings, not times.
    fn greeting(&self, i: usize) -> Option<usize> {
        self.phrase(i, "good morning|afternoon|evening|night|day")
            .or_else(|| self.phrase(i, "bonne journee|soiree|nuit|matinee|aprem"))
            .or_else(|| self.phrase(i, "bonne|bon apres midi"))
            .or_else(|| self.phrase(i, "bon aprem"))
    }

    fn set_day(&mut self, rank: u8, date: Option<Date>, end: usize) {
        match date {
            None => self.facts.bad_day = true,
            Some(d) => {
                if self.facts.day.is_none_or(|(r, _)| rank > r) {
                    self.facts.day = Some((rank, d));
                }
            }
        }
        self.facts.day_end = Some(end);
    }

    fn set_part(&mut self, part: PartOfDay) {
        if self.facts.part.is_none() {
            self.facts.part = Some(part);
        }
    }

    fn add_days(&self, days: i64) -> Option<Date> {
        self.today
            .checked_add(Span::new().try_days(days).ok()?)
            .ok()
    }

    /// "in 2 hours", "dans 30 min", "in 3 days", "dans une demi-heure", "dans 1h30".
    fn offset(&mut self, i: usize) -> Option<Match> {
        if !matches!(self.w(i), "in" | "dans" | "within") {
            return None;
        }
        let j = i + 1;
        const FIXED: &[(&str, i64)] = &[
            ("an hour and a half", 90),
            ("une heure et demie|demi", 90),
            ("half an hour", 30),
            ("half hour", 30),
            ("une demi|demie heure", 30),
            ("demi|demie heure", 30),
            ("un quart d heure", 15),
            ("quart d heure", 15),
        ];
        for (pattern, minutes) in FIXED {
            if let Some(end) = self.phrase(j, pattern) {
                return self.exact_in(*minutes, end);
            }
        }
        if let Some(h) = self.num(j)
            && self.w(j + 1) == "h"
            && self.glued(j + 1)
            && self.glued(j + 2)
            && let Some(m) = self.num(j + 2).filter(|m| *m < 60)
        {
            return self.exact_in(i64::from(h) * 60 + i64::from(m), j + 3);
        }
        let amount = i64::from(self.num(j).or_else(|| lexicon::number_word(self.w(j)))?);
        let (minutes_per, days_per) = match self.w(j + 1) {
            "hour" | "hours" | "hr" | "hrs" | "h" | "heure" | "heures" => (60, 0),
            "minute" | "minutes" | "min" | "mins" | "mn" | "mnt" | "mnts" => (1, 0),
            "day" | "days" | "jour" | "jours" => (0, 1),
            "week" | "weeks" | "wk" | "wks" | "semaine" | "semaines" => (0, 7),
            _ => return None,
        };
        let mut end = j + 2;
        if days_per > 0 {
            let date = self.add_days(amount.checked_mul(days_per)?);
            self.set_day(1, date, end);
            return Match::take(end);
        }
        let mut extra = 0;
        if minutes_per == 60
            && let Some(e) = self
                .phrase(end, "et demi|demie")
                .or_else(|| self.phrase(end, "and a half"))
        {
            extra = 30;
            end = e;
        }
        self.exact_in(amount.checked_mul(minutes_per)?.checked_add(extra)?, end)
    }

    fn exact_in(&mut self, minutes: i64, end: usize) -> Option<Match> {
        let at = self
            .now
            .checked_add(Span::new().try_minutes(minutes).ok()?)
            .ok()?;
        if self.facts.exact.is_none() {
            self.facts.exact = Some(at);
        }
        Match::take(end)
    }

    /// "2026-11-23".
    fn iso_date(&mut self, i: usize) -> Option<Match> {
        let t = self.tok(i)?;
        if t.norm.len() != 4 {
            return None;
        }
        let y = t.num()?;
        let glued = self.glued_punct(i + 1, "-")
            && self.glued(i + 2)
            && self.glued_punct(i + 3, "-")
            && self.glued(i + 4);
        if !glued {
            return None;
        }
        let m = self.num(i + 2)?;
        let d = self.num(i + 4)?;
        self.set_day(3, make_date(y, m, d), i + 5);
        Match::take(i + 5)
    }

    /// "23/11", "23/11/2026", "23.11.2026", "23-11-26"; "11/23" in English in the Americas.
    fn numeric_date(&mut self, i: usize) -> Option<Match> {
        let short = |t: &Token| t.norm.len() <= 2;
        let a = self.tok(i).filter(|t| short(t))?.num()?;
        let sep = self.tok(i + 1).filter(|t| t.glued)?.norm.clone();
        if !matches!(sep.as_str(), "/" | "." | "-") || !self.glued(i + 2) {
            return None;
        }
        let b = self.tok(i + 2).filter(|t| short(t))?.num()?;
        let year = if self.glued_punct(i + 3, &sep) && self.glued(i + 4) {
            self.tok(i + 4)
                .filter(|t| t.norm.len() == 2 || t.norm.len() == 4)
                .and_then(Token::num)
                .map(|y| if y < 100 { 2000 + y } else { y })
        } else {
            None
        };
        if sep != "/" && year.is_none() {
            return None;
        }
        if a == 0 || b == 0 || (a > 12 && b > 12) {
            return None;
        }
        let month_first = b > 12 || (a <= 12 && self.month_first());
        let (m, d) = if month_first { (a, b) } else { (b, a) };
        let end = if year.is_some() { i + 5 } else { i + 3 };
        let date = match year {
            Some(y) => make_date(y, m, d),
            None => self.next_month_day(m, d),
        };
        self.set_day(3, date, end);
        Match::take(end)
    }

    /// Whether an ambiguous "05/06" is month first: English in a time zone of the Americas.
    fn month_first(&self) -> bool {
        self.language == Language::En
            && self
                .now
                .time_zone()
                .iana_name()
                .is_some_and(|n| n.starts_with("America/") || n.starts_with("US/"))
    }

    /// The next occurrence (today included) of a month and day, within a few years.
    fn next_month_day(&self, m: u32, d: u32) -> Option<Date> {
        let m = i8::try_from(m).ok()?;
        let d = i8::try_from(d).ok()?;
        let y0 = self.today.year();
        (0..=4i16)
            .filter_map(|k| y0.checked_add(k))
            .filter_map(|y| Date::new(y, m, d).ok())
            .find(|date| *date >= self.today)
    }

    /// "today", "tomorrow", "après-demain", "tonight", "ce soir", "this morning", ...
    fn named_day(&mut self, i: usize) -> Option<Match> {
        use PartOfDay::{Afternoon, Evening, Morning};
        const DAYS: &[(&str, i64, Option<PartOfDay>)] = &[
            ("day after tomorrow", 2, None),
            ("apres demain", 2, None),
            ("overmorrow", 2, None),
            ("today", 0, None),
            ("aujourdhui", 0, None),
            ("aujourd hui", 0, None),
            ("tomorrow", 1, None),
            ("demain", 1, None),
            ("tonight", 0, Some(Evening)),
            ("ce soir", 0, Some(Evening)),
            ("cette nuit|soiree", 0, Some(Evening)),
            ("this evening", 0, Some(Evening)),
            ("ce matin", 0, Some(Morning)),
            ("cette matinee", 0, Some(Morning)),
            ("this morning", 0, Some(Morning)),
            ("this afternoon|aprem|arvo", 0, Some(Afternoon)),
            ("cet|cette apres midi", 0, Some(Afternoon)),
            ("cet|cette aprem", 0, Some(Afternoon)),
        ];
        let (end, days, part) = DAYS
            .iter()
            .find_map(|(p, days, part)| self.phrase(i, p).map(|end| (end, *days, *part)))?;
        let date = self.add_days(days);
        self.set_day(1, date, end);
        if let Some(part) = part {
            self.set_part(part);
        }
        Match::take(end)
    }

    /// A day of the month: "23", "23rd", "1er", "premier".
    fn day_number(&self, i: usize) -> Option<(u32, usize)> {
        if matches!(self.w(i), "premier" | "first") {
            return Some((1, i + 1));
        }
        let t = self.tok(i)?;
        if t.norm.len() > 2 {
            return None;
        }
        let d = t.num().filter(|d| (1..=31).contains(d))?;
        let suffix = matches!(
            self.w(i + 1),
            "st" | "nd" | "rd" | "th" | "er" | "ere" | "e" | "eme"
        ) && self.glued(i + 1);
        Some((d, if suffix { i + 2 } else { i + 1 }))
    }

    /// An optional year after a month date: ", 2026" or "2026".
    fn year_after(&self, k: usize) -> (Option<u32>, usize) {
        let k2 = if self.tok(k).is_some_and(|t| t.is_punct(",")) {
            k + 1
        } else {
            k
        };
        match self
            .tok(k2)
            .filter(|t| t.norm.len() == 4)
            .and_then(Token::num)
        {
            Some(y) if (1900..=2999).contains(&y) => (Some(y), k2 + 1),
            _ => (None, k),
        }
    }

    /// "23 novembre", "le 3 décembre", "3rd of December", "Nov 23", "December 3rd, 2026".
    fn month_date(&mut self, i: usize) -> Option<Match> {
        let (d, m, k) = if let Some((d, mut k)) = self.day_number(i) {
            if matches!(self.w(k), "of" | "de") {
                k += 1;
            }
            let m = lexicon::month(self.w(k))?;
            (d, m, k + 1)
        } else {
            let m = lexicon::month(self.w(i))?;
            let mut k = i + 1;
            if self.w(k) == "the" {
                k += 1;
            }
            let (d, k2) = self.day_number(k)?;
            // "May 3pm" or "mar 9h" is not a date.
            if self.glued_punct(k2, ":")
                || matches!(self.w(k2), "h" | "am" | "pm" | "heure" | "heures")
            {
                return None;
            }
            (d, m, k2)
        };
        let (year, end) = self.year_after(k);
        let m = u32::try_from(m).ok()?;
        let date = match year {
            Some(y) => make_date(y, m, d),
            None => self.next_month_day(m, d),
        };
        self.set_day(3, date, end);
        Match::take(end)
    }

    /// A day of the month without a month: "the 5th", "le 5", "le 1er", "mardi 24".
    fn day_of_month(&mut self, i: usize) -> Option<Match> {
        if matches!(self.w(i), "premier" | "first") {
            return None;
        }
        let (d, end) = self.day_number(i)?;
        let english_ordinal = end > i + 1 && matches!(self.w(i + 1), "st" | "nd" | "rd" | "th");
        let after_le = i
            .checked_sub(1)
            .is_some_and(|p| self.w(p) == "le" && !self.consumed.get(p).copied().unwrap_or(true));
        let after_weekday = self.facts.weekday_end == Some(i) && d > 12;
        if !(english_ordinal || after_le || after_weekday) || self.timeish(end) {
            return None;
        }
        let date = self.next_day_of_month(d);
        self.set_day(3, date, end);
        Match::take(end)
    }

    /// Whether the token at `k` makes the number before it a time or a quantity.
    fn timeish(&self, k: usize) -> bool {
        self.glued_punct(k, ":")
            || self.glued_punct(k, ".")
            || matches!(self.w(k), "h" | "heure" | "heures" | "am" | "pm" | "o")
            || NOT_A_TIME_AFTER.contains(&self.w(k))
            || self.tok(k).is_some_and(|t| t.glued && t.is_word())
    }

    /// The next occurrence (today included) of a day of the month, within a year.
    fn next_day_of_month(&self, d: u32) -> Option<Date> {
        let d = i8::try_from(d).ok()?;
        let mut first = self.today.first_of_month();
        for _ in 0..12 {
            if let Ok(date) = Date::new(first.year(), first.month(), d)
                && date >= self.today
            {
                return Some(date);
            }
            first = first.checked_add(Span::new().try_months(1).ok()?).ok()?;
        }
        None
    }

    /// "monday", "next monday", "lundi prochain", "this friday", "ce vendredi".
    fn weekday(&mut self, i: usize) -> Option<Match> {
        let (this, k) = match self.w(i) {
            "this" | "ce" | "cette" => (true, i + 1),
            "next" | "coming" => (false, i + 1),
            _ => (false, i),
        };
        let wd = lexicon::weekday(self.w(k))?;
        let mut end = k + 1;
        if let Some(e) = self
            .phrase(end, "prochain|prochaine")
            .or_else(|| self.phrase(end, "qui vient"))
        {
            end = e;
        }
        let date = self.next_weekday(wd, this);
        self.set_day(2, date, end);
        self.facts.weekday_end = Some(end);
        Match::take(end)
    }

    /// The next such weekday strictly after today, or from today on for "this friday".
    fn next_weekday(&self, wd: Weekday, today_counts: bool) -> Option<Date> {
        let diff = (wd.to_monday_zero_offset() - self.today.weekday().to_monday_zero_offset())
            .rem_euclid(7);
        let diff = if diff == 0 && !today_counts { 7 } else { diff };
        self.add_days(i64::from(diff))
    }

    /// "morning", "le matin", "l'après-midi", "du soir", "in the evening".
    fn part_of_day(&mut self, i: usize) -> Option<Match> {
        let (part, end) = if let Some(end) = self.phrase(i, "apres midi") {
            (PartOfDay::Afternoon, end)
        } else if let Some(end) = self.phrase(i, "du mat") {
            (PartOfDay::Morning, end)
        } else {
            let part = match self.w(i) {
                "morning" | "matin" | "matinee" => PartOfDay::Morning,
                "afternoon" | "aprem" | "arvo" => PartOfDay::Afternoon,
                "evening" | "soir" | "soiree" | "night" | "nuit" => PartOfDay::Evening,
                _ => return None,
            };
            (part, i + 1)
        };
        self.set_part(part);
        Some(Match {
            end,
            glue: Glue::Part,
            consume: true,
        })
    }

    /// Whether the word before `i` introduces a time: "at", "@", "à", "vers", ...
    fn marker_before(&self, i: usize) -> bool {
        let Some(prev) = i.checked_sub(1) else {
            return false;
        };
        let Some(t) = self.tok(prev) else {
            return false;
        };
        if t.is_punct("@") {
            return true;
        }
        match t.norm.as_str() {
            "at" | "vers" | "around" | "by" | "before" | "avant" | "des" | "until" | "till"
            | "jusqu" => t.is_word(),
            // "à", or "a" in French text where the accent was left out.
            "a" => self.language == Language::Fr || !t.raw(self.text).eq_ignore_ascii_case("a"),
            _ => false,
        }
    }

    /// "am", "pm", "a.m.", "p.m." at `k`.
    fn meridiem(&self, k: usize) -> Option<(Meridiem, usize)> {
        match self.w(k) {
            "am" => return Some((Meridiem::Am, k + 1)),
            "pm" => return Some((Meridiem::Pm, k + 1)),
            _ => {}
        }
        let m = match self.w(k) {
            "a" => Meridiem::Am,
            "p" => Meridiem::Pm,
            _ => return None,
        };
        if self.glued_punct(k + 1, ".") && self.w(k + 2) == "m" && self.glued(k + 2) {
            let end = if self.glued_punct(k + 3, ".") {
                k + 4
            } else {
                k + 3
            };
            return Some((m, end));
        }
        None
    }

    /// Two-digit minutes at `k`.
    fn minutes(&self, k: usize) -> Option<u8> {
        let t = self.tok(k)?;
        if t.norm.len() != 2 {
            return None;
        }
        u8::try_from(t.num()?).ok().filter(|m| *m < 60)
    }

    fn set_time(&mut self, clock: Clock) {
        if self.facts.time.is_none() {
            self.facts.time = Some(clock);
        }
    }

    /// Clock times: "9", "at 9", "9am", "9:30", "9.30pm", "21h", "21h30", "9 heures",
    /// "noon", "midi", "minuit", "half past 9", "9h et demie".
    fn clock(&mut self, i: usize) -> Option<Match> {
        let fixed = match self.w(i) {
            "noon" | "midday" | "midi" => Some(12),
            "midnight" | "minuit" => Some(0),
            _ => None,
        };
        if let Some(hour) = fixed {
            let (minute, end) = self.half_or_quarter(i + 1).unwrap_or((0, i + 1));
            self.set_time(Clock {
                hour,
                minute,
                meridiem: None,
                padded: false,
                fixed: true,
            });
            return Match::take(end);
        }
        for (pattern, minute, back) in [
            ("half past", 30u8, false),
            ("quarter past", 15, false),
            ("quarter to", 45, true),
        ] {
            if let Some(k) = self.phrase(i, pattern) {
                let h = u8::try_from(self.num(k)?).ok()?;
                let hour = if back { h.checked_sub(1)? } else { h };
                let (meridiem, end) = self
                    .meridiem(k + 1)
                    .map_or((None, k + 1), |(m, e)| (Some(m), e));
                return self.finish_clock(hour, minute, meridiem, false, end);
            }
        }
        let t = self.tok(i)?;
        if t.norm.len() > 2 {
            return None;
        }
        let hour = u8::try_from(t.num()?).ok()?;
        let padded = t.norm.len() == 2 && t.norm.starts_with('0');
        let mut minute = 0;
        let mut end = i + 1;
        let mut written_as_time = false;
        if self.glued_punct(i + 1, ":")
            && self.glued(i + 2)
            && let Some(m) = self.minutes(i + 2)
        {
            minute = m;
            end = i + 3;
            written_as_time = true;
        } else if self.glued_punct(i + 1, ".")
            && self.glued(i + 2)
            && let Some(m) = self.minutes(i + 2)
        {
            // "9.30" is a time only with am/pm or after "at"; else it may be a price.
            if self.meridiem(i + 3).is_some() || self.marker_before(i) {
                minute = m;
                end = i + 3;
                written_as_time = true;
            } else {
                return None;
            }
        } else if self.w(i + 1) == "h" || matches!(self.w(i + 1), "heure" | "heures") {
            end = i + 2;
            written_as_time = true;
            if let Some(m) = self.minutes(i + 2)
                && !NOT_A_TIME_AFTER.contains(&self.w(i + 3))
            {
                minute = m;
                end = i + 3;
            } else if let Some((m, e)) = self.half_or_quarter(i + 2) {
                minute = m;
                end = e;
            } else if let Some(e) = self
                .phrase(i + 2, "moins le quart")
                .or_else(|| self.phrase(i + 2, "moins quart"))
            {
                return self.finish_clock(hour.checked_sub(1)?, 45, None, padded, e);
            }
        }
        let mut meridiem = None;
        if let Some((m, e)) = self.meridiem(end) {
            meridiem = Some(m);
            end = e;
            written_as_time = true;
        } else if let Some(e) = self.phrase(end, "o clock") {
            end = e;
            written_as_time = true;
        }
        if !written_as_time {
            let after_day = self.facts.day_end == Some(i) && (1..=12).contains(&hour);
            if !(self.marker_before(i) || after_day)
                || NOT_A_TIME_AFTER.contains(&self.w(i + 1))
                || self.tok(i + 1).is_some_and(|t| {
                    t.glued && (t.is_word() || ["/", "-", "+", "@", "¤"].contains(&t.norm.as_str()))
                })
            {
                return None;
            }
        }
        self.finish_clock(hour, minute, meridiem, padded, end)
    }

    /// "et demie" / "et quart" / "and a half" after an hour.
    fn half_or_quarter(&self, k: usize) -> Option<(u8, usize)> {
        if let Some(e) = self.phrase(k, "et demi|demie") {
            return Some((30, e));
        }
        self.phrase(k, "et quart").map(|e| (15, e))
    }

    fn finish_clock(
        &mut self,
        hour: u8,
        minute: u8,
        meridiem: Option<Meridiem>,
        padded: bool,
        end: usize,
    ) -> Option<Match> {
        let valid = match meridiem {
            Some(_) => (1..=12).contains(&hour),
            None => hour <= 23,
        };
        if !valid || minute > 59 {
            return None;
        }
        self.set_time(Clock {
            hour,
            minute,
            meridiem,
            padded,
            fixed: false,
        });
        Match::take(end)
    }

    fn resolve(&self) -> Option<When> {
        let f = &self.facts;
        if f.bad_day {
            return None;
        }
        if let Some(at) = &f.exact {
            return Some(When {
                at: at.clone(),
                time_given: true,
                part: None,
            });
        }
        let (mut date, day_given) = match f.day {
            Some((_, d)) => (d, true),
            None if f.time.is_some() || f.part.is_some() => (self.today, false),
            None => return None,
        };
        let tz = self.now.time_zone().clone();
        let (hour, minute, time_given) = match (f.time.and_then(|c| to_24h(c, f.part)), f.part) {
            (Some((h, m)), _) => (h, m, true),
            (None, Some(p)) => (p.default_hour(), 0, false),
            (None, None) => {
                return Some(When {
                    at: date.to_zoned(tz).ok()?,
                    time_given: false,
                    part: None,
                });
            }
        };
        let time = Time::new(i8::try_from(hour).ok()?, i8::try_from(minute).ok()?, 0, 0).ok()?;
        if day_given
            && f.part == Some(PartOfDay::Evening)
            && f.time.is_some_and(|c| c.fixed && c.hour == 0)
        {
            // "ce soir à minuit": the midnight that ends this evening.
            date = date.tomorrow().ok()?;
        }
        let mut at = date.to_datetime(time).to_zoned(tz.clone()).ok()?;
        if !day_given && at < *self.now {
            at = date.tomorrow().ok()?.to_datetime(time).to_zoned(tz).ok()?;
        }
        Some(When {
            at,
            time_given,
            part: f.part,
        })
    }
}

fn make_date(y: u32, m: u32, d: u32) -> Option<Date> {
    Date::new(
        i16::try_from(y).ok()?,
        i8::try_from(m).ok()?,
        i8::try_from(d).ok()?,
    )
    .ok()
}

/// The hour on a 24-hour clock. Without am/pm: after "afternoon"/"evening" 1–11 means the
/// afternoon or evening; with no part of the day, 1–6 (not written "01"–"06") means the
/// afternoon, since appointments at 3 am are rare.
fn to_24h(c: Clock, part: Option<PartOfDay>) -> Option<(u8, u8)> {
    let h = c.hour;
    let hour = if c.fixed {
        h
    } else {
        match (c.meridiem, part) {
            (Some(Meridiem::Am), _) => h % 12,
            (Some(Meridiem::Pm), _) => h % 12 + 12,
            (None, Some(PartOfDay::Afternoon | PartOfDay::Evening)) if (1..=11).contains(&h) => {
                h + 12
            }
            (None, None) if !c.padded && (1..=6).contains(&h) => h + 12,
            (None, _) => h,
        }
    };
    (hour <= 23 && c.minute <= 59).then_some((hour, c.minute))
}

#[cfg(test)]
mod tests {
    use jiff::civil::DateTime;

    use super::*;
    use crate::offline::lexicon::tokenize;

    fn at(now: &str, text: &str, lang: Language) -> Option<(DateTime, bool)> {
        let now: Zoned = now.parse().unwrap();
        let toks = tokenize(text);
        extract(text, &toks, lang, &now)
            .when
            .map(|w| (w.at.datetime(), w.time_given))
    }

    const PARIS: &str = "2026-11-22T10:00[Europe/Paris]";

    #[test]
    fn resolves_dates_and_times() {
        use Language::{En, Fr};
        // (text, language, expected local date-time, time given)
        let cases: &[(&str, Language, Option<&str>, bool)] = &[
            ("today", En, Some("2026-11-22T00:00"), false),
            ("aujourd'hui à 15h", Fr, Some("2026-11-22T15:00"), true),
            ("tomorrow", En, Some("2026-11-23T00:00"), false),
            ("2moro at 9", En, Some("2026-11-23T09:00"), true),
            ("après-demain", Fr, Some("2026-11-24T00:00"), false),
            (
                "the day after tomorrow at noon",
                En,
                Some("2026-11-24T12:00"),
                true,
            ),
            ("tonight", En, Some("2026-11-22T19:00"), false),
            ("ce soir à 8h", Fr, Some("2026-11-22T20:00"), true),
            ("tonight at 9", En, Some("2026-11-22T21:00"), true),
            ("monday", En, Some("2026-11-23T00:00"), false),
            ("sunday", En, Some("2026-11-29T00:00"), false),
            ("lundi prochain", Fr, Some("2026-11-23T00:00"), false),
            ("next friday 3pm", En, Some("2026-11-27T15:00"), true),
            ("ce vendredi", Fr, Some("2026-11-27T00:00"), false),
            ("ce dimanche", Fr, Some("2026-11-22T00:00"), false),
            ("in 2 hours", En, Some("2026-11-22T12:00"), true),
            ("dans 30 min", Fr, Some("2026-11-22T10:30"), true),
            ("dans une demi-heure", Fr, Some("2026-11-22T10:30"), true),
            ("dans 1h30", Fr, Some("2026-11-22T11:30"), true),
            ("in 3 days", En, Some("2026-11-25T00:00"), false),
            ("23/11", Fr, Some("2026-11-23T00:00"), false),
            ("23/11/2026 à 9h30", Fr, Some("2026-11-23T09:30"), true),
            ("1/11", Fr, Some("2027-11-01T00:00"), false),
            ("Nov 23", En, Some("2026-11-23T00:00"), false),
            ("December 3rd, 2027", En, Some("2027-12-03T00:00"), false),
            ("23 novembre", Fr, Some("2026-11-23T00:00"), false),
            ("le 3 décembre à 14h", Fr, Some("2026-12-03T14:00"), true),
            ("le 1er janvier", Fr, Some("2027-01-01T00:00"), false),
            ("2026-11-23", En, Some("2026-11-23T00:00"), false),
            ("at 9", En, Some("2026-11-23T09:00"), true),
            ("at 11", En, Some("2026-11-22T11:00"), true),
            ("9am", En, Some("2026-11-23T09:00"), true),
            ("9:30", En, Some("2026-11-23T09:30"), true),
            ("9.30pm", En, Some("2026-11-22T21:30"), true),
            ("21h", Fr, Some("2026-11-22T21:00"), true),
            ("21h30", Fr, Some("2026-11-22T21:30"), true),
            ("à 9h", Fr, Some("2026-11-23T09:00"), true),
            ("à 9 heures et demie", Fr, Some("2026-11-23T09:30"), true),
            ("noon", En, Some("2026-11-22T12:00"), true),
            ("midi", Fr, Some("2026-11-22T12:00"), true),
            ("minuit", Fr, Some("2026-11-23T00:00"), true),
            ("in the afternoon", En, Some("2026-11-22T14:00"), false),
            ("in the morning", En, Some("2026-11-23T09:00"), false),
            ("demain matin", Fr, Some("2026-11-23T09:00"), false),
            ("demain l'après-midi", Fr, Some("2026-11-23T14:00"), false),
            ("demain soir à 9", Fr, Some("2026-11-23T21:00"), true),
            ("9h du soir", Fr, Some("2026-11-22T21:00"), true),
            ("at 3", En, Some("2026-11-22T15:00"), true),
            ("at 03:00", En, Some("2026-11-23T03:00"), true),
            ("12am tomorrow", En, Some("2026-11-23T00:00"), true),
            ("half past 9 tomorrow", En, Some("2026-11-23T09:30"), true),
            ("tomorrow 10", En, Some("2026-11-23T10:00"), true),
            ("on the 5th", En, Some("2026-12-05T00:00"), false),
            ("le 22 à 18h", Fr, Some("2026-11-22T18:00"), true),
            ("mardi 24", Fr, Some("2026-11-24T00:00"), false),
            ("à 8h du mat", Fr, Some("2026-11-23T08:00"), true),
            ("le 2 personnes", Fr, None, false),
            ("31/02", Fr, None, false),
            ("30 février", Fr, None, false),
            ("29/02", Fr, Some("2028-02-29T00:00"), false),
            ("it costs 9.50", En, None, false),
            ("for 2 people", En, None, false),
            ("good morning", En, None, false),
            ("bonne soirée", Fr, None, false),
            ("25h", Fr, None, false),
            ("13pm", En, None, false),
            ("", En, None, false),
        ];
        for (text, lang, want, time_given) in cases {
            let got = at(PARIS, text, *lang);
            let want = want.map(|w| (w.parse::<DateTime>().unwrap(), *time_given));
            assert_eq!(got, want, "{text:?}");
        }
    }

    #[test]
    fn ambiguous_numeric_dates_follow_the_locale() {
        let ny = "2026-11-22T10:00[America/New_York]";
        let day = |s: &str| Some((s.parse::<DateTime>().unwrap(), false));
        assert_eq!(at(ny, "12/05", Language::En), day("2026-12-05T00:00"));
        assert_eq!(at(ny, "12/05", Language::Fr), day("2027-05-12T00:00"));
        assert_eq!(at(PARIS, "12/05", Language::En), day("2027-05-12T00:00"));
        assert_eq!(at(ny, "11/23", Language::En), day("2026-11-23T00:00"));
    }

    #[test]
    fn wall_clock_times_survive_dst_changes() {
        let now: Zoned = "2026-03-28T10:00[Europe/Paris]".parse().unwrap();
        let when = |text: &str| {
            let toks = tokenize(text);
            extract(text, &toks, Language::En, &now).when.unwrap().at
        };
        let z = when("tomorrow at 9");
        assert_eq!(z.to_string(), "2026-03-29T09:00:00+02:00[Europe/Paris]");
        // 02:30 does not exist that night: jiff moves it forward.
        let z = when("tomorrow at 02:30");
        assert_eq!(z.to_string(), "2026-03-29T03:30:00+02:00[Europe/Paris]");
        // Elapsed time, not wall-clock time.
        let z = when("in 24 hours");
        assert_eq!(z.to_string(), "2026-03-29T11:00:00+02:00[Europe/Paris]");
    }

    #[test]
    fn consumed_tokens_cover_the_expression_and_its_preposition() {
        let text = "call Marc on Monday at 9 please";
        let toks = tokenize(text);
        let now: Zoned = PARIS.parse().unwrap();
        let ex = extract(text, &toks, Language::En, &now);
        let kept: Vec<&str> = toks
            .iter()
            .zip(&ex.consumed)
            .filter(|(_, c)| !**c)
            .map(|(t, _)| t.raw(text))
            .collect();
        assert_eq!(kept, ["call", "Marc", "please"]);
    }
}
