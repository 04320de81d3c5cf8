//! Newtype ids (UUIDv7, so they sort by creation time and index well).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered id.
            #[must_use]
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            #[must_use]
            pub const fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            #[must_use]
            pub const fn as_uuid(&self) -> &Uuid {
                &self.0
            }

            #[must_use]
            pub const fn into_uuid(self) -> Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(uuid: Uuid) -> Self {
                Self(uuid)
            }
        }
    };
}

id_type!(
    /// A tenant: one business (or the shared assistant number) and all its data.
    TenantId
);
id_type!(
    /// A contact of a tenant (caller, texter, web visitor).
    EndUserId
);
id_type!(
    /// The single conversation history of one end user with one tenant.
    ConversationId
);
id_type!(
    /// One inbound or outbound message.
    MessageId
);
id_type!(
    /// A durable background job.
    JobId
);
id_type!(
    /// A knowledge-base entry.
    KbEntryId
);
id_type!(
    /// A tenant API key (the key itself is never stored).
    ApiKeyId
);
id_type!(
    /// A staff member of a tenant.
    StaffUserId
);
id_type!(
    /// A long-term fact an agent remembers about an end user.
    FactId
);
id_type!(
    /// A reminder an end user asked for.
    ReminderId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_strings_and_sort_by_creation() {
        let a = TenantId::new();
        let b = TenantId::new();
        assert!(a < b, "UUIDv7 ids must sort by creation time");
        let parsed: TenantId = a.to_string().parse().expect("parse");
        assert_eq!(parsed, a);
        assert!("not-a-uuid".parse::<TenantId>().is_err());
    }
}
