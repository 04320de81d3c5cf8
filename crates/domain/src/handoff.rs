//! Who answers a conversation: the agents, or a person. Hand-off is a small state machine
//! that never lets the agents and a member of staff both reply:
//!
//! ```text
//!   bot --request--> pending --take--> human --release--> bot
//!    \______________________take______/  ^      pending --release--> bot
//! ```
//!
//! - `Bot`: the agents answer every message.
//! - `Pending`: the agents (or the customer, or staff) asked for a person; no new agent turn
//!   starts, and a turn already running may still send its reply (the one that tells the
//!   customer a person will follow up).
//! - `Human`: a member of staff has taken the conversation; no agent reply is sent, even one
//!   from a turn that was already running.

use std::fmt;
use std::str::FromStr;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Handoff {
    #[default]
    Bot,
    Pending,
    Human,
}

/// What moves a conversation between [`Handoff`] states.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandoffEvent {
    /// An agent, the customer or staff asks for a person.
    Request,
    /// A member of staff takes the conversation (explicitly, or by replying).
    Take,
    /// Staff give the conversation back to the agents.
    Release,
}

impl Handoff {
    /// The state after `event`. Every event is accepted in every state: a request while a
    /// person already has the conversation changes nothing, a release of a conversation the
    /// agents already have changes nothing, so retried calls are harmless.
    #[must_use]
    pub const fn after(self, event: HandoffEvent) -> Self {
        match (self, event) {
            (Self::Bot, HandoffEvent::Request) => Self::Pending,
            (state, HandoffEvent::Request) => state,
            (_, HandoffEvent::Take) => Self::Human,
            (_, HandoffEvent::Release) => Self::Bot,
        }
    }

    /// Whether a new agent turn may start for a message in this state.
    #[must_use]
    pub const fn agents_answer(self) -> bool {
        matches!(self, Self::Bot)
    }

    /// Whether the reply of an agent turn that is already running may still be sent.
    #[must_use]
    pub const fn agent_reply_allowed(self) -> bool {
        !matches!(self, Self::Human)
    }

    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Bot => "bot",
            Self::Pending => "pending",
            Self::Human => "human",
        }
    }
}

impl fmt::Display for Handoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown hand-off state {0:?} (expected bot, pending or human)")]
pub struct HandoffParseError(String);

impl FromStr for Handoff {
    type Err = HandoffParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "bot" => Ok(Self::Bot),
            "pending" => Ok(Self::Pending),
            "human" => Ok(Self::Human),
            other => Err(HandoffParseError(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATES: [Handoff; 3] = [Handoff::Bot, Handoff::Pending, Handoff::Human];
    const EVENTS: [HandoffEvent; 3] = [
        HandoffEvent::Request,
        HandoffEvent::Take,
        HandoffEvent::Release,
    ];

    #[test]
    fn transitions() {
        use Handoff::{Bot, Human, Pending};
        use HandoffEvent::{Release, Request, Take};
        let table = [
            (Bot, Request, Pending),
            (Pending, Request, Pending),
            (Human, Request, Human),
            (Bot, Take, Human),
            (Pending, Take, Human),
            (Human, Take, Human),
            (Bot, Release, Bot),
            (Pending, Release, Bot),
            (Human, Release, Bot),
        ];
        for (from, event, to) in table {
            assert_eq!(from.after(event), to, "{from} + {event:?}");
        }
    }

    #[test]
    fn agents_and_a_person_never_both_answer() {
        for state in STATES {
            // A person answers only in `Human`; agents never reply there.
            if state == Handoff::Human {
                assert!(!state.agents_answer() && !state.agent_reply_allowed());
            }
            // New turns start only with the agents in charge.
            assert_eq!(state.agents_answer(), state == Handoff::Bot);
        }
        // Every event is idempotent.
        for state in STATES {
            for event in EVENTS {
                assert_eq!(state.after(event).after(event), state.after(event));
            }
        }
    }

    #[test]
    fn parses_what_it_prints() {
        for state in STATES {
            assert_eq!(state.as_str().parse::<Handoff>().unwrap(), state);
        }
        assert!("Bot".parse::<Handoff>().is_err());
    }
}
