//! Job kinds and the retry policy of the durable queue (pure arithmetic; the queue itself
//! lives in the store crates).

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What a job does. Payloads carry ids only, never PII.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// Run the agent turn for an inbound message and record the reply.
    Turn,
    /// Send an outbound SMS through the provider's REST API.
    SendSms,
    /// Take the scheduled backup (one per day, whichever worker claims it).
    Backup,
    /// Deliver a reminder an end user asked for, when it is due.
    Reminder,
    /// Tell the tenant's staff that a conversation was handed to a human.
    NotifyStaff,
}

impl JobKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Turn => "turn",
            Self::SendSms => "send_sms",
            Self::Backup => "backup",
            Self::Reminder => "reminder",
            Self::NotifyStaff => "notify_staff",
        }
    }

    #[must_use]
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "turn" => Some(Self::Turn),
            "send_sms" => Some(Self::SendSms),
            "backup" => Some(Self::Backup),
            "reminder" => Some(Self::Reminder),
            "notify_staff" => Some(Self::NotifyStaff),
            _ => None,
        }
    }

    pub const ALL: [Self; 5] = [
        Self::Turn,
        Self::SendSms,
        Self::Backup,
        Self::Reminder,
        Self::NotifyStaff,
    ];
}

/// Exponential backoff with a cap: `base * 2^(attempt-1)`, at most `cap`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base: Duration::from_secs(2),
            cap: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// Delay before the next attempt after `attempts` failed ones, or `None` when the job
    /// has used all its attempts and goes to the dead-letter state.
    #[must_use]
    pub fn next_delay(&self, attempts: u32) -> Option<Duration> {
        if attempts >= self.max_attempts {
            return None;
        }
        let exp = attempts.saturating_sub(1).min(30);
        let delay = self.base.saturating_mul(1u32 << exp);
        Some(delay.min(self.cap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_then_dead_letters() {
        let p = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_secs(1),
            cap: Duration::from_secs(5),
        };
        assert_eq!(p.next_delay(1), Some(Duration::from_secs(1)));
        assert_eq!(p.next_delay(2), Some(Duration::from_secs(2)));
        assert_eq!(p.next_delay(3), Some(Duration::from_secs(4)));
        assert_eq!(p.next_delay(4), Some(Duration::from_secs(5)));
        assert_eq!(p.next_delay(5), None);
        assert_eq!(
            JobKind::parse(JobKind::SendSms.as_str()),
            Some(JobKind::SendSms)
        );
    }
}
