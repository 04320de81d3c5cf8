//! Concierge domain types: typed ids, parsed value objects and the pure rules of the message
//! path. Nothing here performs I/O; storage, HTTP and crypto live in other crates.

pub mod consent;
pub mod handoff;
pub mod ids;
pub mod jobs;
pub mod message;
pub mod phone;
pub mod tenant;

pub use consent::ConsentKeyword;
pub use handoff::{Handoff, HandoffEvent};
pub use ids::{
    ApiKeyId, ConversationId, EndUserId, FactId, JobId, KbEntryId, MessageId, ReminderId,
    StaffUserId, TenantId,
};
pub use message::{Channel, Direction, MessageStatus};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use tenant::{TenantName, TenantNameError};
