//! E.164 phone numbers, parsed once at the edge.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A phone number in E.164 form: `+` then 8 to 15 digits, the first not zero.
///
/// Construction is the only validation: a `PhoneNumber` that exists is well-formed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PhoneNumber(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    #[error("a phone number must start with '+' and a country code")]
    MissingPlus,
    #[error(
        "a phone number may contain only digits after '+' (spaces, dots, dashes and parentheses are ignored)"
    )]
    InvalidCharacter,
    #[error("a phone number has 8 to 15 digits after '+'")]
    Length,
    #[error("a country code never starts with 0")]
    LeadingZero,
}

impl PhoneNumber {
    /// Parses a number written in international form. Spaces, dots, dashes and parentheses
    /// are accepted as separators (`+33 6 12-34-56-78`); anything else is refused.
    pub fn parse(input: &str) -> Result<Self, PhoneNumberError> {
        let trimmed = input.trim();
        let rest = trimmed
            .strip_prefix('+')
            .ok_or(PhoneNumberError::MissingPlus)?;
        let mut digits = String::with_capacity(16);
        digits.push('+');
        for c in rest.chars() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                _ => return Err(PhoneNumberError::InvalidCharacter),
            }
        }
        let count = digits.len() - 1;
        if !(8..=15).contains(&count) {
            return Err(PhoneNumberError::Length);
        }
        if digits.as_bytes()[1] == b'0' {
            return Err(PhoneNumberError::LeadingZero);
        }
        Ok(Self(digits))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A form safe for logs: country code and the last two digits only.
    #[must_use]
    pub fn redacted(&self) -> String {
        let digits = &self.0[1..];
        let tail = &digits[digits.len() - 2..];
        format!("+{}…{}", &digits[..1], tail)
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Debug never prints the full number, so a stray `{:?}` cannot leak PII into logs.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.redacted())
    }
}

impl std::str::FromStr for PhoneNumber {
    type Err = PhoneNumberError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for PhoneNumber {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PhoneNumber {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_international_forms() {
        assert_eq!(
            PhoneNumber::parse("+15005550006").unwrap().as_str(),
            "+15005550006"
        );
        assert_eq!(
            PhoneNumber::parse(" +33 6 12-34.56(78) ").unwrap().as_str(),
            "+33612345678"
        );
    }

    #[test]
    fn refuses_what_is_not_e164() {
        assert_eq!(
            PhoneNumber::parse("15005550006"),
            Err(PhoneNumberError::MissingPlus)
        );
        assert_eq!(
            PhoneNumber::parse("+1500555000a"),
            Err(PhoneNumberError::InvalidCharacter)
        );
        assert_eq!(
            PhoneNumber::parse("+1234567"),
            Err(PhoneNumberError::Length)
        );
        assert_eq!(
            PhoneNumber::parse("+1234567890123456"),
            Err(PhoneNumberError::Length)
        );
        assert_eq!(
            PhoneNumber::parse("+0612345678"),
            Err(PhoneNumberError::LeadingZero)
        );
        assert_eq!(PhoneNumber::parse(""), Err(PhoneNumberError::MissingPlus));
        assert_eq!(
            PhoneNumber::parse("whatsapp:+1500555"),
            Err(PhoneNumberError::MissingPlus)
        );
    }

    #[test]
    fn debug_and_redacted_hide_the_number() {
        let p = PhoneNumber::parse("+33612345678").unwrap();
        assert_eq!(format!("{p:?}"), "PhoneNumber(+3…78)");
        assert!(!format!("{p:?}").contains("612345"));
    }

    proptest! {
        #[test]
        fn parse_is_idempotent_on_valid_numbers(first in 1u8..=9, rest in proptest::collection::vec(0u8..=9, 7..=14)) {
            let raw = format!("+{first}{}", rest.iter().map(u8::to_string).collect::<String>());
            let parsed = PhoneNumber::parse(&raw).unwrap();
            prop_assert_eq!(parsed.as_str(), raw.as_str());
            prop_assert_eq!(PhoneNumber::parse(parsed.as_str()).unwrap(), parsed);
        }

        #[test]
        fn whatever_is_accepted_is_canonical_e164(s in ".{0,40}") {
            if let Ok(p) = PhoneNumber::parse(&s) {
                let digits = &p.as_str()[1..];
                prop_assert!(p.as_str().starts_with('+'));
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!((8..=15).contains(&digits.len()));
            }
        }
    }
}
