//! PII redaction before text leaves for a model provider: e-mail addresses, phone numbers and
//! payment card numbers become placeholders (`[EMAIL_1]`, `[PHONE_1]`, `[CARD_1]`), and the
//! originals are put back into what the model writes.
//!
//! One [`Redactions`] lives for one turn, so the same value gets the same placeholder in the
//! history, the new message and the tool arguments. The scanner is deliberately conservative
//! about numbers: dates, times, prices and short codes are left alone (a phone number needs
//! at least 9 digits, or 8 after a `+`; a card number 13 to 19 digits that pass the Luhn
//! check).

use std::fmt::Write as _;

/// What was masked in one turn, to unmask the model's text.
#[derive(Debug, Default)]
pub struct Redactions {
    /// (placeholder, original), in order of first appearance.
    values: Vec<(String, String)>,
    counts: [usize; 3],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Email,
    Phone,
    Card,
}

impl Kind {
    const fn label(self) -> &'static str {
        match self {
            Self::Email => "EMAIL",
            Self::Phone => "PHONE",
            Self::Card => "CARD",
        }
    }

    const fn index(self) -> usize {
        match self {
            Self::Email => 0,
            Self::Phone => 1,
            Self::Card => 2,
        }
    }

    /// The metric label.
    const fn metric(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Phone => "phone",
            Self::Card => "card",
        }
    }
}

impl Redactions {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// How many distinct values were masked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.values.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    fn placeholder(&mut self, kind: Kind, original: &str) -> String {
        if let Some((p, _)) = self.values.iter().find(|(_, o)| o == original) {
            return p.clone();
        }
        self.counts[kind.index()] += 1;
        let p = format!("[{}_{}]", kind.label(), self.counts[kind.index()]);
        self.values.push((p.clone(), original.to_owned()));
        metrics::counter!("concierge_pii_redactions_total", "kind" => kind.metric()).increment(1);
        p
    }

    /// `text` with every e-mail address, phone number and card number replaced by its
    /// placeholder.
    pub fn mask(&mut self, text: &str) -> String {
        let chars: Vec<(usize, char)> = text.char_indices().collect();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < chars.len() {
            let found = email_at(&chars, i).map(|(end, kind)| (end, Some(kind)));
            if let Some((end, kind)) = found.or_else(|| number_at(&chars, i)) {
                let start_byte = chars[i].0;
                let end_byte = chars.get(end).map_or(text.len(), |c| c.0);
                let original = &text[start_byte..end_byte];
                match kind {
                    Some(kind) => {
                        let p = self.placeholder(kind, original);
                        out.push_str(&p);
                    }
                    // A number that is neither: copied whole, never rescanned from inside.
                    None => out.push_str(original),
                }
                i = end.max(i + 1);
            } else {
                out.push(chars[i].1);
                i += 1;
            }
        }
        out
    }

    /// `text` with each placeholder replaced by the value it stands for.
    #[must_use]
    pub fn unmask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        // Longest placeholders first, so [PHONE_1] never eats into [PHONE_10].
        let mut values: Vec<&(String, String)> = self.values.iter().collect();
        values.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        for (p, original) in values {
            if out.contains(p.as_str()) {
                out = out.replace(p.as_str(), original);
            }
        }
        out
    }

    /// A line for the system prompt that tells the model what the placeholders are.
    #[must_use]
    pub fn instructions(&self) -> Option<String> {
        if self.values.is_empty() {
            return None;
        }
        let mut names = String::new();
        for (i, (p, _)) in self.values.iter().enumerate() {
            if i > 0 {
                names.push_str(", ");
            }
            let _ = write!(names, "{p}");
        }
        Some(format!(
            "Some of the customer's personal details are hidden as placeholders ({names}). \
             Use a placeholder exactly as written when you need that detail; never guess it."
        ))
    }
}

fn is_local(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '%' | '+' | '-')
}

fn is_domain(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-')
}

/// An e-mail address starting at `i`: the end index.
fn email_at(chars: &[(usize, char)], i: usize) -> Option<(usize, Kind)> {
    // Only start at the beginning of a local part.
    if i > 0 && is_local(chars[i - 1].1) {
        return None;
    }
    let mut j = i;
    while j < chars.len() && is_local(chars[j].1) {
        j += 1;
    }
    if j == i || j >= chars.len() || chars[j].1 != '@' {
        return None;
    }
    let domain_start = j + 1;
    let mut k = domain_start;
    while k < chars.len() && is_domain(chars[k].1) {
        k += 1;
    }
    // Trailing dots and hyphens are punctuation, not part of the address.
    while k > domain_start && matches!(chars[k - 1].1, '.' | '-') {
        k -= 1;
    }
    let domain: String = chars[domain_start..k].iter().map(|c| c.1).collect();
    let (_, tld) = domain.rsplit_once('.')?;
    (tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic())).then_some((k, Kind::Email))
}

/// A run of digits with single separators starting at `i`: where it ends, and whether it is
/// a phone or card number.
fn number_at(chars: &[(usize, char)], i: usize) -> Option<(usize, Option<Kind>)> {
    let c = chars[i].1;
    let plus = c == '+';
    if !(plus || c.is_ascii_digit() || c == '(') {
        return None;
    }
    // Not in the middle of a word or of a longer number.
    if i > 0 && (chars[i - 1].1.is_ascii_alphanumeric() || chars[i - 1].1 == '+') {
        return None;
    }
    let mut digits = String::new();
    let mut j = if plus { i + 1 } else { i };
    let mut end = j;
    let mut last_separator = false;
    while j < chars.len() {
        let ch = chars[j].1;
        if ch.is_ascii_digit() {
            digits.push(ch);
            last_separator = false;
            j += 1;
            end = j;
        } else if matches!(ch, ' ' | '-' | '.' | '(' | ')') && !last_separator {
            // A separator must be followed by more of the number.
            last_separator = ch != ')';
            j += 1;
            if ch == ')' {
                end = j;
            }
        } else {
            break;
        }
    }
    if digits.is_empty() {
        return None;
    }
    if end < chars.len() && chars[end].1.is_ascii_alphabetic() {
        return Some((end, None));
    }
    let n = digits.len();
    if (13..=19).contains(&n) && !plus && luhn(&digits) {
        return Some((end, Some(Kind::Card)));
    }
    let phone = if plus {
        (8..=15).contains(&n)
    } else {
        (9..=15).contains(&n)
    };
    Some((end, phone.then_some(Kind::Phone)))
}

fn luhn(digits: &str) -> bool {
    let mut sum = 0;
    for (i, d) in digits.bytes().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::Redactions;

    #[test]
    fn masks_and_restores_the_three_kinds() {
        let mut r = Redactions::new();
        let masked = r.mask(
            "I'm jane.doe+spa@example.co.uk, call me on +33 6 12 34 56 78 or (415) 555-0134. \
             Card 4242 4242 4242 4242.",
        );
        assert_eq!(
            masked,
            "I'm [EMAIL_1], call me on [PHONE_1] or [PHONE_2]. Card [CARD_1]."
        );
        assert_eq!(r.len(), 4);
        let reply = r.unmask("Noted: [EMAIL_1] and [PHONE_2].");
        assert_eq!(
            reply,
            "Noted: jane.doe+spa@example.co.uk and (415) 555-0134."
        );
        // The same value keeps its placeholder.
        assert_eq!(r.mask("again +33 6 12 34 56 78"), "again [PHONE_1]");
        assert!(r.instructions().unwrap().contains("[CARD_1]"));
    }

    #[test]
    fn leaves_dates_times_prices_and_words_alone() {
        let mut r = Redactions::new();
        for text in [
            "Book me for 2026-11-24 at 9:30, it's 45.50 EUR, room 1204.",
            "rappelle-moi demain à 9h d'appeler Marc",
            "order A1234567890 is late",
            "an @ sign alone, and user@localhost",
            "1234 5678 9012 3456 is not a valid card",
        ] {
            assert_eq!(r.mask(text), text);
        }
        assert!(r.is_empty());
        assert_eq!(r.instructions(), None);
    }

    #[test]
    fn french_numbers_and_trailing_punctuation() {
        let mut r = Redactions::new();
        assert_eq!(
            r.mask("Mon numéro : 06 12 34 56 78. Mail: marc@exemple.fr."),
            "Mon numéro : [PHONE_1]. Mail: [EMAIL_1]."
        );
        assert_eq!(r.unmask("[PHONE_1]"), "06 12 34 56 78");
    }

    proptest::proptest! {
        #[test]
        fn unmask_undoes_mask(text in "[a-z0-9 @.+()\\-]{0,80}") {
            let mut r = Redactions::new();
            let masked = r.mask(&text);
            proptest::prop_assert_eq!(r.unmask(&masked), text);
        }
    }

    #[test]
    fn unmasking_never_confuses_placeholder_numbers() {
        let mut r = Redactions::new();
        let text: String = (0..11)
            .map(|i| format!("+1 415 555 {:04} ", 1000 + i))
            .collect();
        let masked = r.mask(&text);
        assert!(masked.contains("[PHONE_11]"));
        assert_eq!(r.unmask(&masked), text);
    }
}
