//! Message attributes: channel, direction and delivery status.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }

            #[must_use]
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where a message came from or goes to. The agent sees only this, never the transport.
    Channel { Sms => "sms", WebChat => "web_chat" }
);

string_enum!(
    /// Inbound (from the end user) or outbound (to the end user).
    Direction { Inbound => "inbound", Outbound => "outbound" }
);

string_enum!(
    /// Lifecycle of a message. Outbound messages move forward through `rank`; a late status
    /// callback never moves a message back (Twilio callbacks may arrive out of order).
    MessageStatus {
        Received => "received",
        Queued => "queued",
        Sending => "sending",
        Sent => "sent",
        Delivered => "delivered",
        Undelivered => "undelivered",
        Failed => "failed",
        Read => "read",
        RepliedInline => "replied_inline",
    }
);

impl MessageStatus {
    /// Maps a Twilio `MessageStatus` value; unknown values are ignored by the caller.
    #[must_use]
    pub fn from_twilio(s: &str) -> Option<Self> {
        match s {
            "accepted" | "scheduled" | "queued" => Some(Self::Queued),
            "sending" => Some(Self::Sending),
            "sent" => Some(Self::Sent),
            "delivered" => Some(Self::Delivered),
            "undelivered" => Some(Self::Undelivered),
            "failed" | "canceled" => Some(Self::Failed),
            "read" => Some(Self::Read),
            "received" | "receiving" => Some(Self::Received),
            _ => None,
        }
    }

    /// Order of progress; a status update applies only when it does not go backwards.
    #[must_use]
    pub const fn rank(self) -> i16 {
        match self {
            Self::Received => 0,
            Self::Queued => 1,
            Self::Sending => 2,
            Self::Sent | Self::RepliedInline => 3,
            Self::Undelivered | Self::Failed => 4,
            Self::Delivered => 5,
            Self::Read => 6,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_only_move_forward() {
        for s in [
            MessageStatus::Received,
            MessageStatus::Queued,
            MessageStatus::Sending,
            MessageStatus::Sent,
            MessageStatus::Delivered,
            MessageStatus::Undelivered,
            MessageStatus::Failed,
            MessageStatus::Read,
            MessageStatus::RepliedInline,
        ] {
            assert_eq!(MessageStatus::parse(s.as_str()), Some(s));
        }
        assert!(MessageStatus::Delivered.rank() > MessageStatus::Sent.rank());
        assert!(MessageStatus::Sent.rank() > MessageStatus::Queued.rank());
        assert_eq!(
            MessageStatus::from_twilio("accepted"),
            Some(MessageStatus::Queued)
        );
        assert_eq!(MessageStatus::from_twilio("bogus"), None);
        assert_eq!(Channel::parse("web_chat"), Some(Channel::WebChat));
        assert_eq!(Direction::parse("outbound"), Some(Direction::Outbound));
    }
}
