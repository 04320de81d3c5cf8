//! Carrier keywords (STOP / START / HELP) and what they do to a conversation.

use serde::{Deserialize, Serialize};

/// A message that is exactly one carrier keyword (trimmed, case-insensitive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentKeyword {
    /// STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, REVOKE, OPTOUT.
    OptOut,
    /// START, UNSTOP.
    OptIn,
    /// HELP, INFO.
    Help,
}

impl ConsentKeyword {
    /// Classifies an inbound body. Only a message that is exactly the keyword counts, so
    /// "please stop by tomorrow" is an ordinary message.
    #[must_use]
    pub fn classify(body: &str) -> Option<Self> {
        let word = body.trim().trim_end_matches(['.', '!']);
        if word.len() > 11 {
            return None;
        }
        let upper = word.to_ascii_uppercase();
        match upper.as_str() {
            "STOP" | "STOPALL" | "UNSUBSCRIBE" | "CANCEL" | "END" | "QUIT" | "REVOKE"
            | "OPTOUT" => Some(Self::OptOut),
            "START" | "UNSTOP" => Some(Self::OptIn),
            "HELP" | "INFO" => Some(Self::Help),
            _ => None,
        }
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OptOut => "opt_out",
            Self::OptIn => "opt_in",
            Self::Help => "help",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "opt_out" => Some(Self::OptOut),
            "opt_in" => Some(Self::OptIn),
            "help" => Some(Self::Help),
            _ => None,
        }
    }

    /// The opt-out state after this keyword, given the state before.
    #[must_use]
    pub const fn apply(keyword: Option<Self>, opted_out: bool) -> bool {
        match keyword {
            Some(Self::OptOut) => true,
            Some(Self::OptIn) => false,
            Some(Self::Help) | None => opted_out,
        }
    }
}

/// Whether an inbound message gets an agent turn: never for a keyword (the keyword has its
/// own fixed answer) and never for an opted-out number.
#[must_use]
pub const fn needs_turn(keyword: Option<ConsentKeyword>, opted_out_after: bool) -> bool {
    keyword.is_none() && !opted_out_after
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_are_exact_and_case_insensitive() {
        for w in [
            "STOP",
            "stop",
            " Stop ",
            "STOPALL",
            "unsubscribe",
            "Cancel",
            "END",
            "quit",
            "stop.",
        ] {
            assert_eq!(
                ConsentKeyword::classify(w),
                Some(ConsentKeyword::OptOut),
                "{w}"
            );
        }
        for w in ["START", "unstop"] {
            assert_eq!(
                ConsentKeyword::classify(w),
                Some(ConsentKeyword::OptIn),
                "{w}"
            );
        }
        for w in ["HELP", "info"] {
            assert_eq!(
                ConsentKeyword::classify(w),
                Some(ConsentKeyword::Help),
                "{w}"
            );
        }
        for w in [
            "please stop",
            "stop it",
            "",
            "HELLO",
            "startup",
            "at the end",
        ] {
            assert_eq!(ConsentKeyword::classify(w), None, "{w}");
        }
    }

    #[test]
    fn opted_out_numbers_get_no_turn() {
        assert!(needs_turn(None, false));
        assert!(!needs_turn(None, true));
        assert!(!needs_turn(Some(ConsentKeyword::Help), false));
        assert!(ConsentKeyword::apply(Some(ConsentKeyword::OptOut), false));
        assert!(!ConsentKeyword::apply(Some(ConsentKeyword::OptIn), true));
        assert!(ConsentKeyword::apply(Some(ConsentKeyword::Help), true));
        assert!(ConsentKeyword::apply(None, true));
    }

    #[test]
    fn storage_names_round_trip() {
        for k in [
            ConsentKeyword::OptOut,
            ConsentKeyword::OptIn,
            ConsentKeyword::Help,
        ] {
            assert_eq!(ConsentKeyword::parse(k.as_str()), Some(k));
        }
    }
}
